"""The GPU figures of `pronounce.bench`: a full-size, randomly initialised Phi-4-multimodal
(`Phi4MultimodalConfig()` defaults are the real model's shapes), LoRA training steps in bf16
at the paper's batch shape, and batched generation: tokens/s, peak GPU memory and model
FLOPs utilisation. Without CUDA it only counts the model's parameters (built on `meta`).

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
    "lora": {"r": 64, "alpha": 128, "dropout": 0.05,
             "target_modules": r"model\.layers\.\d+\.(self_attn\.(qkv|o)_proj|mlp\.(gate_up|down)_proj)"},
    "gradient_checkpointing": True, "learning_rate": 2e-5,
}


def peak_tflops(name: str) -> float | None:
    for key, tflops in PEAK_BF16_TFLOPS:
        if key.lower() in name.lower():
            return tflops
    return None


def model_sizes(config, lora: dict) -> dict:
    """Parameter counts of the model (built on the meta device: no memory, no weights).
    `flops_params` (N in 6*N*tokens) leaves out the input embedding table (a lookup) and the
    vision tower (unused for audio)."""
    import torch
    from transformers import Phi4MultimodalForCausalLM

    with torch.device("meta"):
        model = Phi4MultimodalForCausalLM(config)
    groups = {"embed_tokens": 0, "text_layers": 0, "lm_head": 0, "audio": 0, "vision": 0, "other": 0}
    pattern = re.compile(lora["target_modules"])
    lora_params = 0
    for name, p in model.named_parameters():
        key = ("audio" if ".audio_embed" in name else "vision" if ".image_embed" in name
               else "embed_tokens" if name.startswith("model.embed_tokens.") else "lm_head" if name.startswith("lm_head")
               else "text_layers" if name.startswith("model.layers.") else "other")
        groups[key] += p.numel()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and pattern.fullmatch(name):
            lora_params += lora["r"] * (module.in_features + module.out_features)
    total = sum(groups.values())
    return {"total_params": total, **{f"{k}_params": v for k, v in groups.items()},
            "flops_params": total - groups["embed_tokens"] - groups["vision"], "lora_params": lora_params}


def _clips(n: int):
    import numpy as np
    import soundfile as sf

    from .data import BUNDLED

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


def gpu_figures(a: dict) -> dict:
    """Train and generation measurements on CUDA; {"skipped": ...} without it. `a["device"]`
    and `a["config_dir"]` (e.g. the tiny model's folder) let the code path be exercised on a CPU."""
    import torch
    from transformers import Phi4MultimodalConfig, Phi4MultimodalForCausalLM

    a = {**DEFAULTS, **a}
    config = Phi4MultimodalConfig.from_pretrained(a["config_dir"]) if a.get("config_dir") else Phi4MultimodalConfig()
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
    lora = a["lora"]
    model = get_peft_model(model, LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                                             target_modules=lora["target_modules"], task_type="CAUSAL_LM"))
    if a["gradient_checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    build_s = time.perf_counter() - start

    # -- training steps
    model.train()
    batch = make_batch(config, a, device, dtype, for_generation=False)
    tokens = int(batch["attention_mask"].sum())
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=a["learning_rate"])
    for step in range(a["warmup"] + a["steps"]):
        if step == a["warmup"]:
            _sync(device)
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        last_loss = float(loss)
        opt.step()
        opt.zero_grad(set_to_none=True)
    _sync(device)
    train_s = (time.perf_counter() - t0) / a["steps"]  # (float(loss) synchronised each step too)
    train_peak = torch.cuda.max_memory_allocated(device) if cuda else None
    del opt
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

    peak = peak_tflops(name)
    n = sizes["flops_params"]
    achieved = 6 * n * tokens / train_s
    return {
        "device": name, "dtype": str(dtype).removeprefix("torch."), "model": sizes, "build_seconds": build_s,
        "memory_total_bytes": torch.cuda.get_device_properties(device).total_memory if cuda else None,
        "train": {"batch_size": a["batch_size"], "tokens_per_step": tokens, "seq_len": int(batch["input_ids"].shape[1]),
                  "step_seconds": train_s, "last_loss": last_loss, "tokens_per_s": tokens / train_s, "peak_memory_bytes": train_peak,
                  "gradient_checkpointing": a["gradient_checkpointing"], "lora": lora,
                  "model_flops_per_s": achieved, "peak_flops_per_s": peak * 1e12 if peak else None,
                  "mfu": achieved / (peak * 1e12) if peak else None},
        "generate": {"batch_size": a["batch_size"], "new_tokens": a["gen_tokens"],
                     "batched_tokens_per_s": a["batch_size"] * a["gen_tokens"] / batched_s,
                     "single_tokens_per_s": a["gen_tokens"] / single_s, "peak_memory_bytes": gen_peak},
    }

