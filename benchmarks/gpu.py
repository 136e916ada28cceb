"""The GPU figures of the benchmarks: the full-size Phi-4-multimodal built from the REAL
configuration (its vendored config.json: 24 heads, tied lm_head, longrope;
`Phi4MultimodalConfig()`'s defaults are another model), randomly initialised, LoRA training steps
at the paper's batch shape, and batched generation: tokens/s, peak GPU memory, model FLOPs
utilisation. Each figure compares like with like: training through the pipeline's path (trl's
fused LM head, `model(..., fused_lm_head=True)`, as SFTTrainer calls it) against training the
same batch through the plain full-logits loss; batched generation against one prompt at a time.
Without CUDA it only counts the model's parameters and FLOPs (built on `meta`).

Model FLOPs of a LoRA step on a frozen base (`train_flops`): 4*N_text per token (forward 2N, and
the backward's activation gradients 2N: frozen weights need no weight gradients), 6*N_lora per
token for the adapter, causal attention (forward and backward, 3x the forward's 2*L^2*d per
layer), the LM head on the answer tokens only (the fused head projects only labelled positions),
and the frozen audio encoder's forward. The usual 6*N*tokens (N the non-embedding parameters, as
if every weight were trained) is reported beside it as `util_6n`, named so.

Sequences are synthetic but shaped like the paper's instances: real bundled clips through the
real feature extractor (so the audio placeholder counts are the real ones), and random text ids
of the length the real tokenizer gives the prompts and answers (approximately: the APA prompt
is ~1,900 characters, ~450 tokens; the MDD prompt ~120; answers ~25 and ~60).
"""

from __future__ import annotations

import re
import time

# Dense (no sparsity) bf16 tensor-core peak, TFLOP/s, by a substring of torch.cuda.get_device_name().
# First match wins, so the more specific names come first.
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("GH200", 989.0), ("H200", 989.0), ("H100", 989.0),
    ("H800", 989.0), ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0),
    ("L40", 181.0), ("A40", 150.0), ("L4", 121.0), ("A10", 125.0), ("RTX 4090", 165.0),
    ("RTX 3090", 71.0),
)

DEFAULTS = {
    "batch_size": 8, "steps": 10, "warmup": 2, "gen_tokens": 64, "gen_single": 2,
    "apa_prompt_tokens": 450, "mdd_prompt_tokens": 120, "apa_answer_tokens": 25, "mdd_answer_tokens": 60,
    "gradient_checkpointing": True, "learning_rate": 2e-5,
}


def real_config():
    """Phi-4-multimodal-instruct's own configuration (the project's vendored copy of the real
    config.json, pronounce/reference/), not the class defaults."""
    from pronounce.model.loader import real_config as vendored

    return vendored()


def peak_tflops(name: str) -> float | None:
    for key, tflops in PEAK_BF16_TFLOPS:
        if key.lower() in name.lower():
            return tflops
    return None


def model_sizes(config, lora: dict) -> dict:
    """Parameter counts of the model (built on the meta device: no memory, no weights).
    `text_params` (N_text) is the text decoder without its embedding (its layers and final
    norm: what every token is multiplied through); the LM head is counted as a matmul of
    `hidden x vocab` whether or not it is tied (`lm_head_params` is 0 when tied: no own weights).
    `flops_params` (N of the 6*N convention) leaves out the input embedding (a lookup) and the
    vision tower (unused for audio)."""
    import torch
    from transformers import Phi4MultimodalForCausalLM

    with torch.device("meta"):
        model = Phi4MultimodalForCausalLM(config)
    groups = {"embed_tokens": 0, "text_layers": 0, "lm_head": 0, "audio": 0, "vision": 0, "other": 0}
    pattern = re.compile(lora["target_modules"])
    lora_params = lora_modules = 0
    for name, p in model.named_parameters():
        key = ("audio" if ".audio_embed" in name else "vision" if ".image_embed" in name
               else "embed_tokens" if name.startswith("model.embed_tokens.") else "lm_head" if name.startswith("lm_head")
               else "text_layers" if name.startswith(("model.layers.", "model.norm.")) else "other")
        groups[key] += p.numel()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and pattern.fullmatch(name):
            lora_params += lora["r"] * (module.in_features + module.out_features)
            lora_modules += 1
    total = sum(groups.values())
    return {"total_params": total, **{f"{k}_params": v for k, v in groups.items()},
            "text_params": groups["text_layers"], "lm_head_matmul_params": config.hidden_size * config.vocab_size,
            "tied_lm_head": bool(config.tie_word_embeddings),
            "flops_params": total - groups["embed_tokens"] - groups["vision"], "lora_params": lora_params,
            "lora_modules": lora_modules}


def attention_flops(config, seq_lens) -> int:
    """Forward FLOPs of causal self-attention (QK^T and AV, half the square) over all layers."""
    d = config.num_attention_heads * (config.hidden_size // config.num_attention_heads)
    return sum(2 * L * L * d for L in seq_lens) * config.num_hidden_layers


def train_flops(config, sizes: dict, seq_lens, label_tokens: int, audio_tokens: int, lm_head_trained=False) -> dict:
    """Model FLOPs of one LoRA training step on a frozen base (see the module doc), by term, and
    the 6*N*tokens of the dense-training convention beside them."""
    tokens = sum(seq_lens)
    terms = {
        "text_4n": 4 * sizes["text_params"] * tokens,
        "lora_6n": 6 * sizes["lora_params"] * tokens,
        "attention": 3 * attention_flops(config, seq_lens),
        "lm_head": (6 if lm_head_trained else 4) * sizes["lm_head_matmul_params"] * label_tokens,
        "audio_forward": 2 * sizes["audio_params"] * audio_tokens,
    }
    return {"terms": terms, "model_flops": sum(terms.values()), "six_n_flops": 6 * sizes["flops_params"] * tokens,
            "tokens": tokens, "label_tokens": label_tokens, "audio_tokens": audio_tokens}


def _clips(n: int):
    import numpy as np
    import soundfile as sf

    from . import BUNDLED

    files = sorted((BUNDLED / "WAVE").rglob("*.WAV"))
    return [np.asarray(sf.read(files[i % len(files)], dtype="float32")[0]) for i in range(n)]


def make_batch(config, a: dict, device, dtype, for_generation: bool):
    """A right-padded training batch (labels on the answers) or a left-padded prompt batch."""
    import torch
    from transformers import Phi4MultimodalFeatureExtractor

    fe = Phi4MultimodalFeatureExtractor()
    audio = fe(_clips(a["batch_size"]), sampling_rate=16000, return_tensors="pt", padding="longest")
    gen = torch.Generator().manual_seed(0)
    audio_id = config.audio_config.audio_token_id
    high = min(config.vocab_size - 64, 100_000)  # ordinary ids: clear of the special tokens
    seqs, prompt_lens = [], []
    for i, n_audio in enumerate(audio["audio_embed_sizes"].tolist()):
        task = ("apa", "mdd")[i % 2]
        head = torch.randint(0, high, (2,), generator=gen)
        prompt = torch.randint(0, high, (a[f"{task}_prompt_tokens"],), generator=gen)
        answer = torch.randint(0, high, (0 if for_generation else a[f"{task}_answer_tokens"],), generator=gen)
        prompt_ids = torch.cat([head, torch.full((n_audio,), audio_id), prompt])
        seqs.append(torch.cat([prompt_ids, answer]))
        prompt_lens.append(len(prompt_ids))
    width = max(len(s) for s in seqs)
    pad = config.pad_token_id if config.pad_token_id is not None else 0
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    for i, s in enumerate(seqs):
        span = slice(width - len(s), width) if for_generation else slice(0, len(s))
        ids[i, span], mask[i, span] = s, 1
        if not for_generation:
            labels[i, prompt_lens[i]:len(s)] = s[prompt_lens[i]:]
    batch = {"input_ids": ids, "attention_mask": mask, **audio}
    if not for_generation:
        batch["labels"] = labels
    return {k: (v.to(device, dtype) if v.is_floating_point() else v.to(device)) for k, v in batch.items()}


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _train_steps(model, batch, a: dict, device, fused: bool) -> dict:
    """Warm-up, then timed optimizer steps of one micro-batch each; seconds per step, peak memory.
    `fused`: the pipeline's loss (trl's fused LM head, labelled positions only), else the plain
    full-logits loss of the model's own forward."""
    import torch

    cuda = device.type == "cuda"
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=a["learning_rate"])
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)
    for step in range(a["warmup"] + a["steps"]):
        if step == a["warmup"]:
            _sync(device)
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
        with autocast:  # as the trainer's bf16 mixed precision
            loss = model(**batch, fused_lm_head=True).loss if fused else model(**batch).loss
        loss.backward()
        last_loss = loss.detach().item()  # (synchronises each step too)
        opt.step()
        opt.zero_grad(set_to_none=True)
    _sync(device)
    seconds = (time.perf_counter() - t0) / a["steps"]
    del opt
    return {"step_seconds": seconds, "last_loss": last_loss,
            "peak_memory_bytes": torch.cuda.max_memory_allocated(device) if cuda else None}


def gpu_figures(a: dict) -> dict:
    """Train and generation measurements on CUDA; {"skipped": ...} without it. `a["device"]`
    and `a["config_dir"]` (e.g. the tiny model's folder) let the code path be exercised on a CPU."""
    import torch
    from transformers import Phi4MultimodalConfig, Phi4MultimodalForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    a = {**DEFAULTS, **a}
    if "lora" not in a:  # the pipeline's own fresh adapter (params.yaml lora), never a copy of it
        from dataclasses import asdict

        from pronounce.core.params import load_params

        from . import ROOT

        a["lora"] = asdict(load_params(ROOT / "params.yaml").lora)
    config = Phi4MultimodalConfig.from_pretrained(a["config_dir"]) if a.get("config_dir") else real_config()
    sizes = model_sizes(config, a["lora"])
    device = torch.device(a.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type != "cuda" and not a.get("device"):
        return {"skipped": "no CUDA device", "model": sizes}
    from peft import LoraConfig, get_peft_model

    cuda = device.type == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    torch.manual_seed(0)
    start = time.perf_counter()
    with torch.device(device):
        model = Phi4MultimodalForCausalLM._from_config(config, dtype=dtype)
    # As SFTTrainer: the fused head on the base model, before PEFT wraps it.
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    lora = a["lora"]
    model = get_peft_model(model, LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                                             target_modules=lora["target_modules"], task_type="CAUSAL_LM"))
    if a["gradient_checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    build_s = time.perf_counter() - start

    # -- training: the pipeline's fused loss, then the plain loss on the same batch
    model.train()
    batch = make_batch(config, a, device, dtype, for_generation=False)
    seq_lens = batch["attention_mask"].sum(dim=1).tolist()
    flops = train_flops(config, sizes, seq_lens, int((batch["labels"][:, 1:] != -100).sum()),
                        int(batch["audio_embed_sizes"].sum()))
    fused = _train_steps(model, batch, a, device, fused=True)
    plain = _train_steps(model, batch, a, device, fused=False)
    model.eval()

    # -- generation: the batch at once, then a few of its rows one at a time
    gen = make_batch(config, a, device, dtype, for_generation=True)
    kw = dict(max_new_tokens=a["gen_tokens"], min_new_tokens=a["gen_tokens"], do_sample=False,
              pad_token_id=config.pad_token_id if config.pad_token_id is not None else 0)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode():
        model.generate(**{k: v[:1] for k, v in gen.items()}, max_new_tokens=2, do_sample=False,
                       pad_token_id=kw["pad_token_id"])  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        model.generate(**gen, **kw)
        _sync(device)
        batched_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(a["gen_single"]):
            row = {k: v[i:i + 1] for k, v in gen.items()}
            keep = row["attention_mask"][0].bool()  # drop the left padding of a row alone
            row["input_ids"], row["attention_mask"] = row["input_ids"][:, keep], row["attention_mask"][:, keep]
            model.generate(**row, **kw)
        _sync(device)
        single_s = (time.perf_counter() - t0) / a["gen_single"]
    gen_peak = torch.cuda.max_memory_allocated(device) if cuda else None

    peak = peak_tflops(name) * 1e12 if peak_tflops(name) else None
    step_s, tokens = fused["step_seconds"], flops["tokens"]
    return {
        "device": name, "dtype": str(dtype).removeprefix("torch."), "model": sizes, "build_seconds": build_s,
        "memory_total_bytes": torch.cuda.get_device_properties(device).total_memory if cuda else None,
        "train": {"batch_size": a["batch_size"], "tokens_per_step": tokens, "seq_len": int(batch["input_ids"].shape[1]),
                  "step_seconds": step_s, "last_loss": fused["last_loss"], "tokens_per_s": tokens / step_s,
                  "peak_memory_bytes": fused["peak_memory_bytes"], "gradient_checkpointing": a["gradient_checkpointing"],
                  "lora": lora, "flops": flops, "model_flops_per_s": flops["model_flops"] / step_s,
                  "peak_flops_per_s": peak, "mfu": flops["model_flops"] / step_s / peak if peak else None,
                  "util_6n": flops["six_n_flops"] / step_s / peak if peak else None,
                  "plain_loss": {**plain, "tokens_per_s": tokens / plain["step_seconds"]}},
        "generate": {"batch_size": a["batch_size"], "new_tokens": a["gen_tokens"],
                     "batched_tokens_per_s": a["batch_size"] * a["gen_tokens"] / batched_s,
                     "single_tokens_per_s": a["gen_tokens"] / single_s, "peak_memory_bytes": gen_peak},
    }
