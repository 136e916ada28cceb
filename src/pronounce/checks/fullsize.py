"""The real model's architecture at full size, with random weights: the preflight without a download.

    python -m pronounce.checks.fullsize                      # every config, the paper recipe's shapes
    python -m pronounce.checks.fullsize --batch-size 2 --new-tokens 8   # a CPU: the two longest clips (~23 GiB)
    python -m pronounce.checks.fullsize --layers 2           # reduced depth, full widths (a few GB)

A weightless stand-in base folder (the vendored real config, a tokenizer at the real special-token
ids, the feature extractor, a random r=320 speech-lora/) goes to a scratch folder; each config's
base model is built in memory directly in bf16 (never fp32: those weights alone are 19 GB), then
goes through the training stage's set-up (adapters.training_model) and the preflight's probe at
the paper's recipe (precision bf16-any: bf16 on a CPU too), projected for speechocean762's 2,500 +
2,500 utterances. On a GPU it gives the real step time and memory, before any download.
Why, and what ran where: docs/real-run.md, "The full-size check".
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

from ..task import prompts

# The real tokenizer's special tokens at their ids (those between are reserved tokens here).
SPECIAL_TOKENS = {199999: "<|endoftext|>", 200010: "<|endoftext10|>", 200011: "<|endoftext11|>",
                  200019: prompts.ASSISTANT, 200020: prompts.END, 200021: prompts.USER, 200022: "<|system|>"}
FULL_CORPUS_UTTERANCES = (2500, 2500)  # speechocean762: train, test
KNOWN_FAILURES = {  # (exception type, words in its message): the one line that names it
    (AttributeError, "TrainableTokensWrapper", "bias"):
        "known failure: trl's fused LM head reads lm_head.bias, which PEFT's "
        "TrainableTokensWrapper of the tied lm_head lacks; fixed by the tied-head change to the adapter set-up",
}


def real_id_tokenizer():
    """The tiny byte-level BPE with the real special-token ids (filler entries pad the gaps):
    the real vocabulary's size and ids, a much smaller text vocabulary (text tokens differ)."""
    from tokenizers import AddedToken, Tokenizer
    from transformers import PreTrainedTokenizerFast

    from ..model.tiny import build_tiny_tokenizer

    tiny = json.loads(build_tiny_tokenizer().backend_tokenizer.to_str())
    vocab = tiny["model"]["vocab"]
    vocab.update({f"<filler{i}>": i for i in range(len(vocab), min(SPECIAL_TOKENS))})
    tiny["model"]["vocab"], tiny["added_tokens"] = vocab, []
    raw = Tokenizer.from_str(json.dumps(tiny))
    raw.add_special_tokens([AddedToken(SPECIAL_TOKENS.get(i, f"<|reserved_{i}|>"), special=True, normalized=False)
                            for i in range(min(SPECIAL_TOKENS), max(SPECIAL_TOKENS) + 1)])
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                  pad_token="<|endoftext|>", unk_token="<|endoftext|>",
                                  clean_up_tokenization_spaces=False, model_max_length=131072)
    for i, token in SPECIAL_TOKENS.items():
        if tok.convert_tokens_to_ids(token) != i:
            raise RuntimeError(f"the stand-in tokenizer put {token} at {tok.convert_tokens_to_ids(token)}, not {i}")
    return tok


def fullsize_config(layers: int | None = None):
    """The real configuration; with `layers`, that many text layers, audio blocks and vision
    layers (every width and the vocabulary stay full: a check of the code path in a few GB)."""
    from ..model.loader import real_config

    config = real_config()
    if layers is not None:
        config.num_hidden_layers = layers
        config.audio_config.num_blocks = layers
        config.vision_config.num_hidden_layers = layers
    return config


def write_standin(folder: Path, config, seed: int) -> Path:
    """A base model folder without weights: config.json, the stand-in tokenizer, the feature
    extractor and a speech-lora/ of random weights (what pretrained_r320 starts from)."""
    import torch
    from transformers import Phi4MultimodalFeatureExtractor, Phi4MultimodalForCausalLM

    from ..model.loader import SPEECH_LORA_DIR
    from ..model.tiny import write_tiny_speech_lora  # the tiny model's speech LoRA writer: shapes from the modules

    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    real_id_tokenizer().save_pretrained(folder)
    Phi4MultimodalFeatureExtractor().save_pretrained(folder)
    with torch.device("meta"):
        shapes = Phi4MultimodalForCausalLM(config)
    write_tiny_speech_lora(shapes, folder / SPEECH_LORA_DIR, seed)
    return folder


def random_base_model(config, seed: int, attn_implementation: str, precision: str = "bf16-any"):
    """The base model with random weights, built directly in bf16 (fp32 for `precision` fp32), as
    load_base_model returns one (the audio encoder's padding mask fixed)."""
    import torch
    from transformers import Phi4MultimodalForCausalLM
    from transformers.initialization import no_init_weights

    from ..model.audio_mask import mask_audio_padding

    torch.manual_seed(seed)
    # Built without torch's own per-layer initialisation, then given transformers' _init_weights
    # once (the same distributions, all finite, checked): the default draws every weight twice.
    with no_init_weights():
        model = Phi4MultimodalForCausalLM._from_config(config, dtype=torch.float32 if precision == "fp32" else torch.bfloat16,
                                                       attn_implementation=attn_implementation)
    model.init_weights()
    mask_audio_padding(model)
    return model.eval()


def standin_builder(config, seed: int, attn_implementation: str, precision: str, seconds: list):
    """build(job, source): each config's random base model (random_base_model), from its own copy
    of `config`, its build time appended to `seconds`. Not one config object for all: the
    trainer sets `use_cache = False` on the config of the model it trains (transformers'
    Trainer.__init__, unconditionally), and a model built later from that object inherits it
    in its generation config, so the second config generated without its key/value cache (a
    prefill per new token: 42x slower at 1 layer, 14.7x at 2; tested)."""
    import copy
    import time

    def build(job, source):
        t0 = time.perf_counter()
        model = random_base_model(copy.deepcopy(config), seed, attn_implementation, precision)
        seconds.append(time.perf_counter() - t0)
        return model

    return build


def fullsize_params(params, batch_size: int | None, new_tokens: int | None, precision: str = "bf16-any"):
    """params with the paper recipe at `precision` (bf16-any, or fp32 for a reduced model on a CPU
    without bf16 matrix kernels); optionally another micro-batch (train and eval) and
    eval.max_new_tokens (a CPU cannot afford the paper's shapes at full size)."""
    # allow_cpu: this check runs the paper recipe on a CPU by design (random weights, a few steps)
    recipe = dataclasses.replace(params.train.recipes["paper"], precision=precision, allow_cpu=True)
    if batch_size:
        recipe = dataclasses.replace(recipe, batch_size=batch_size)
    train = dataclasses.replace(params.train, profile="paper", recipes={**params.train.recipes, "paper": recipe})
    ev = params.eval
    # cpu_threads 0: torch's default, every core (the embedded default's 1 is for its tiny matrices).
    ev = dataclasses.replace(ev, batch_size=batch_size or ev.batch_size, max_new_tokens=new_tokens or ev.max_new_tokens,
                             cpu_threads=0)
    return dataclasses.replace(params, train=train, eval=ev)


def run_fullsize(params, layers: int | None = None, batch_size: int | None = None, new_tokens: int | None = None,
                 steps: int = 1, configs: list[str] | None = None, decoded_dir="data/decoded", log=print,
                 precision: str = "bf16-any") -> dict:
    """The preflight's report (checks, probe, projection) of the stand-in at full size (or `layers`).

    On a CPU without bf16 matrix kernels (AVX2 only: torch's bf16 matmul there is a reference loop,
    ~300x slower than float32), bf16's matrix products run in float32 and round to bf16 once
    (pronounce.checks.cpu_bf16: a GPU's bf16 GEMM), and the report says so. `precision` fp32 builds fp32
    weights instead (a reduced model: fp32 weights at full size need ~26 GiB)."""
    from .cpu_bf16 import fp32_matmul_if_needed
    from .preflight import run_preflight
    from .probe import train_device

    params = fullsize_params(params, batch_size, new_tokens, precision)
    config = fullsize_config(layers)
    build_seconds = []
    build = standin_builder(config, params.seed, params.model.attn_implementation, precision, build_seconds)

    matmul, matmul_note = fp32_matmul_if_needed(precision, train_device().type)
    with tempfile.TemporaryDirectory(prefix="pronounce-fullsize-") as tmp, matmul:
        folder = write_standin(Path(tmp) / "base", config, params.seed)
        report = run_preflight(params, base_dir=folder, decoded_dir=decoded_dir, steps=steps, configs=configs,
                               log=log, standin=build, utterances=FULL_CORPUS_UTTERANCES)
    report["base"] = f"random weights, {config.num_hidden_layers} layers ({'full size' if layers is None else 'reduced'})"
    report["build_seconds"] = build_seconds
    if matmul_note:
        report["matmul"] = matmul_note
    return report


def main(argv=None) -> int:
    from ..core.cli import tune_malloc
    from ..core.errors import PipelineError
    from ..core.params import load_params
    from .probe import PreflightError
    from .projection import table

    p = argparse.ArgumentParser(prog="python -m pronounce.checks.fullsize", description=__doc__.split("\n\n")[0])
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--config", action="append", help="only this config (repeatable; default: all)")
    p.add_argument("--layers", type=int, help="text layers, audio blocks and vision layers (default: the real ones)")
    p.add_argument("--batch-size", type=int, help="training and generation micro-batch (default: the paper's)")
    p.add_argument("--new-tokens", type=int, help="tokens generated (default: eval.max_new_tokens)")
    p.add_argument("--steps", type=int, default=1, help="optimizer steps per config (default 1)")
    p.add_argument("--precision", choices=("bf16-any", "fp32"), default="bf16-any",
                   help="bf16-any (default; the real run's weights; on a CPU without bf16 matrix kernels their "
                        "products run in float32) or fp32 (fp32 weights: a reduced model)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    a = p.parse_args(argv)
    tune_malloc()
    try:  # the trainer's chatter to stderr: stdout is the report alone
        with contextlib.redirect_stdout(sys.stderr):
            report = run_fullsize(load_params(a.params), a.layers, a.batch_size, a.new_tokens, max(1, a.steps),
                                  a.config, log=lambda m: print(m, file=sys.stderr), precision=a.precision)
    except (PreflightError, PipelineError) as e:
        print(f"fullsize: FAILED {e}", file=sys.stderr)
        return 1
    except Exception as e:
        known = next((line for (kind, *words), line in KNOWN_FAILURES.items()
                      if isinstance(e, kind) and all(w in str(e) for w in words)), None)
        if known is None:
            raise
        print(f"fullsize: FAILED {type(e).__name__}: {e}: {known}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2, sort_keys=True) if a.json else table(report))
    return 0 if report["projected"]["fits"] else 1


if __name__ == "__main__":
    sys.exit(main())
