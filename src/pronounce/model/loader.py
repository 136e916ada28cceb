"""Loading the base model, tiny or real: the model and its speech LoRA (its processor is
pronounce.model.processor).

Everything goes through transformers' NATIVE port (``Phi4MultimodalForCausalLM``): never
``trust_remote_code``, weights as safetensors only. (``builtin:tiny`` is built by
``pronounce.model.tiny``; a local copy of the Hub's remote-code layout is converted by
``pronounce.model.convert``.)

Loading is strict (``load_base_model``): only the native layout (``check_native_layout``),
every weight accounted for, the attention implementation ours, never the checkpoint's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..core.errors import PipelineError
from .audio_mask import mask_audio_padding

# The speech LoRA of Phi-4-multimodal-instruct, as transformers' conversion script writes
# it (convert_phi4_multimodal_weights_to_hf.py): the text decoder's layers only. The
# pattern is matched (re.fullmatch) against module names of Phi4MultimodalForCausalLM, so
# the audio encoder's modules of the same names (model.embed_tokens_extend.audio_embed.
# encoder.encoders.N.self_attn.o_proj, ...feed_forward_in.gate_up_proj, ...) are not targets.
SPEECH_LORA_DIR = "speech-lora"
SPEECH_LORA_TARGETS = r"model.layers.\d+.((self_attn.(qkv|o)_proj)|(mlp.(gate_up|down)_proj))"
SPEECH_LORA_R = 320
SPEECH_LORA_ALPHA = 640
SPEECH_LORA_DROPOUT = 0.01

_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")

NATIVE_MODEL_TYPE = "phi4_multimodal"  # transformers' native port: the only layout we load
REMOTE_MODEL_TYPE = "phi4mm"  # the original remote-code checkpoint (the Hub repo's main branch)
# Hub ids whose default branch is not the native layout -> the revision that is. The Hub's main
# of Phi-4-multimodal-instruct is the remote-code checkpoint; the converted one lives on the
# unmerged pull-request branch refs/pr/70 (what transformers' and vLLM's own tests load).
NATIVE_REVISIONS = {"microsoft/Phi-4-multimodal-instruct": "refs/pr/70"}
DEFAULT_ATTN_IMPLEMENTATION = "sdpa"
# The audio encoder adds its padding mask and a relative-position bias to the attention logits (a
# 4-D float mask), which FlashAttention-2 cannot take: under flash_attention_2 only the text
# decoder uses it, and the encoders keep sdpa (attn_implementations).
ENCODER_ATTN_IMPLEMENTATIONS = ("eager", "sdpa")
# The real model's native configuration (microsoft/Phi-4-multimodal-instruct at refs/pr/70, as
# transformers loads it; the published config.json), for
# structural checks and estimates without the weights.
REAL_CONFIG = Path(__file__).resolve().parent / "reference" / "phi4_multimodal_config.json"


class LayoutError(PipelineError, ValueError):
    """A checkpoint that is not in transformers' native Phi-4-multimodal layout (one line, with the fix)."""


def speech_lora_config():
    """The real model's speech-lora LoraConfig (r=320, alpha=640, dropout 0.01, text decoder only)."""
    from peft import LoraConfig

    return LoraConfig(
        r=SPEECH_LORA_R,
        lora_alpha=SPEECH_LORA_ALPHA,
        lora_dropout=SPEECH_LORA_DROPOUT,
        target_modules=SPEECH_LORA_TARGETS,
        task_type="CAUSAL_LM",
    )


def _looks_like_path(base: str) -> bool:
    return (
        os.path.isabs(base)
        or base.startswith((".", "~"))
        or base.count("/") != 1
        or os.sep != "/" and os.sep in base
    )


def local_folder(base) -> Path | None:
    """The local folder named by ``base``; None for a Hub id. Raises for a missing local path."""
    if isinstance(base, os.PathLike):
        base = os.fspath(base)
    if not isinstance(base, str) or not base:
        raise ValueError(f"base model must be a local folder or a Hub id, got {base!r}")
    if base.startswith("builtin:"):
        raise ValueError(
            f"{base!r} is not a folder: build it first (the base stage, pronounce.model.base.run_base)"
        )
    path = Path(base).expanduser()
    if path.exists():
        if not path.is_dir():
            raise NotADirectoryError(f"base model path {str(path)!r} is not a folder")
        return path
    if _looks_like_path(base):
        raise FileNotFoundError(f"base model folder {str(path)!r} does not exist")
    return None  # a Hub id such as microsoft/Phi-4-multimodal-instruct


def check_model_folder(path: Path) -> None:
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    if not any((path / f).is_file() for f in _WEIGHT_FILES):
        missing.append("model.safetensors (or model.safetensors.index.json)")
    if missing:
        raise FileNotFoundError(
            f"base model folder {str(path)!r} is missing {', '.join(missing)}; "
            "expected a Hugging Face model folder with safetensors weights"
        )


def _resolve_dtype(dtype):
    import torch

    if dtype is None or dtype == "auto":
        return "auto"
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str):
        value = getattr(torch, dtype.removeprefix("torch."), None)
        if isinstance(value, torch.dtype):
            return value
    raise ValueError(f"unknown dtype {dtype!r}")


def real_config():
    """``Phi4MultimodalConfig`` of the real model (build it on ``torch.device("meta")`` for sizes)."""
    from transformers import Phi4MultimodalConfig

    return Phi4MultimodalConfig.from_dict(json.loads(REAL_CONFIG.read_text(encoding="utf-8")))


def default_revision(base: str, revision: str | None) -> str | None:
    """The revision to load a Hub id at: ``revision`` if given, else the known native-layout
    revision of a known Hub id (``NATIVE_REVISIONS``), else None (the default branch)."""
    return revision if revision is not None else NATIVE_REVISIONS.get(base)


def check_native_layout(folder_or_config) -> dict:
    """The config (a dict) of a native-layout checkpoint; a one-line LayoutError otherwise.

    Takes a model folder, its config.json, or the config as a dict. ``phi4mm`` (the Hub's
    ``main``: remote code, LoRA folded into the base layers) would load with every decoder and
    audio weight missing and randomly initialised, so it is refused with the fix.
    """
    if isinstance(folder_or_config, dict):
        config, where = folder_or_config, "the checkpoint"
    else:
        path = Path(folder_or_config)
        path = path / "config.json" if path.is_dir() else path
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise LayoutError(f"cannot read the model config {str(path)!r}: {e}") from None
        where = str(path.parent)
    model_type = config.get("model_type")
    if model_type == NATIVE_MODEL_TYPE:
        return config
    if model_type == REMOTE_MODEL_TYPE:
        raise LayoutError(
            f"{where} is Phi-4-multimodal's remote-code layout (model_type {REMOTE_MODEL_TYPE!r}), not the native "
            f"{NATIVE_MODEL_TYPE!r} one: load the Hub id at revision refs/pr/70 (model.revision), or point "
            f"model.base at a local copy of it and let the base stage convert it"
        )
    raise LayoutError(f"{where} has model_type {model_type!r}; expected {NATIVE_MODEL_TYPE!r} (Phi-4-multimodal)")


def hub_config(repo_id: str, revision: str | None) -> dict:
    """config.json of a Hub model at ``revision``: from the cache when it holds it (pronounce.core.hub),
    else one small download."""
    from ..core import hub

    path = hub.file_at(repo_id, hub.resolve(repo_id, revision), "config.json")
    return json.loads(path.read_text(encoding="utf-8"))


def _has_weights(folder: Path) -> bool:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values())
        return (folder / "config.json").is_file() and all((folder / s).is_file() for s in shards)
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def has_processor(folder: Path) -> bool:
    return (folder / "preprocessor_config.json").is_file() and any(
        (folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))


def _has_speech_lora(folder: Path) -> bool:
    return all((folder / SPEECH_LORA_DIR / f).is_file() for f in ("adapter_config.json", "adapter_model.safetensors"))


def hub_source(base: str, revision: str | None, has) -> tuple[str, str | None]:
    """Where to load Hub id ``base`` from: the cache's snapshot folder at the resolved commit when
    ``has(folder)`` (nothing is requested: a node without network runs from a cache filled by
    `hf download` elsewhere), else the id at that commit (downloaded into the cache)."""
    from ..core import hub

    asked = default_revision(base, revision)
    commit = hub.resolve(base, asked)
    folder = hub.snapshot(base, commit)
    if folder is not None and has(folder):
        return str(folder), None
    if hub.offline():
        raise hub.HubError(f"the cache holds {base} at {commit} only in part and HF_HUB_OFFLINE is set: run "
                           f"`{hub.download_command(base, asked)}` on a machine with network and use its HF_HOME here")
    return base, commit


def hub_errors(source: str, revision: str | None):
    """One line for a failed download of a Hub id; nothing to catch for a local folder."""
    import contextlib

    from ..core import hub

    return hub.hub_errors(source, revision) if revision is not None else contextlib.nullcontext()


def attn_implementations(attn_implementation: str):
    """What from_pretrained is asked for: `attn_implementation` throughout, except that under
    flash_attention_2 the audio encoder (and the vision encoder, never run) keep sdpa."""
    if attn_implementation in ENCODER_ATTN_IMPLEMENTATIONS:
        return attn_implementation
    return {"": attn_implementation, "audio_config": "sdpa", "vision_config": "sdpa"}


def check_audio_attention(config) -> None:
    """One line naming the fix if the audio encoder would run an attention that cannot take its
    float mask and relative-position bias (e.g. flash_attention_2 set on the whole model)."""
    got = getattr(config.audio_config, "_attn_implementation", None)
    if got is not None and got not in ENCODER_ATTN_IMPLEMENTATIONS:
        raise LayoutError(f"the audio encoder is set to attn_implementation {got!r}, which cannot take its float "
                          f"attention mask and relative-position bias: load with pronounce.model.loader.load_base_model "
                          f"(it keeps the encoder on sdpa) or set model.attn_implementation to sdpa")


def _check_loading_info(info: dict, tied: bool, source: str) -> None:
    missing = [k for k in info.get("missing_keys", ()) if not (tied and k == "lm_head.weight")]
    problems = {"missing": sorted(missing), "unexpected": sorted(info.get("unexpected_keys", ())),
                "mismatched": sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys", ()))}
    problems = {what: keys for what, keys in problems.items() if keys}
    if problems:
        listed = "; ".join(f"{what} {len(keys)}: {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}"
                           for what, keys in problems.items())
        raise LayoutError(f"base model {source!r} does not match Phi4MultimodalForCausalLM's weights ({listed}); "
                          "nothing is loaded with random weights")


def load_base_model(base, revision: str | None = None, dtype=None,
                    attn_implementation: str = DEFAULT_ATTN_IMPLEMENTATION, **kwargs):
    """Load ``Phi4MultimodalForCausalLM`` from a local folder (tiny or real) or a Hub id, strictly.

    ``dtype``: None/"auto" (the checkpoint's own: float32 for the tiny model, bfloat16 for the
    real one), a torch dtype or its name. ``revision`` pins a Hub commit/branch (ignored for
    local folders; None = ``default_revision``). The checkpoint must be the native layout
    (``check_native_layout``), and every weight must load: a missing one (but the tied
    lm_head), an unexpected or a mis-shaped one is an error naming the keys, never a warning
    over random weights. ``attn_implementation`` is ours (params ``model.attn_implementation``):
    a checkpoint config's ``_attn_implementation`` (flash_attention_2 on the Hub's main) is
    not honoured; flash_attention_2 is the text decoder's only (``attn_implementations``).
    Extra keyword arguments go to ``from_pretrained`` (e.g. device_map).
    """
    from transformers import Phi4MultimodalForCausalLM

    from ..core.params import ATTN_IMPLEMENTATIONS

    if attn_implementation not in ATTN_IMPLEMENTATIONS:
        raise ValueError(f"attn_implementation {attn_implementation!r} is not one of {', '.join(ATTN_IMPLEMENTATIONS)}")
    local = local_folder(base)
    if local is not None:
        check_model_folder(local)
        config = check_native_layout(local)
        source, revision = str(local), None
    else:
        source, revision = hub_source(base, revision, _has_weights)
        config = check_native_layout(hub_config(base, revision) if revision else Path(source))
    with hub_errors(source, revision):
        model, info = Phi4MultimodalForCausalLM.from_pretrained(
            source, revision=revision, dtype=_resolve_dtype(dtype), use_safetensors=True,
            attn_implementation=attn_implementations(attn_implementation), output_loading_info=True, **kwargs
        )
    _check_loading_info(info, bool(config.get("tie_word_embeddings")), source)
    check_audio_attention(model.config)
    mask_audio_padding(model)  # transformers 5.24 adds the audio padding mask as +1/+0 (audio_mask.py)
    return model


def speech_lora_path(base, revision: str | None = None) -> Path:
    """The folder of the base model's ``speech-lora`` PEFT adapter (downloaded for a Hub id)."""
    local = local_folder(base)
    if local is None:
        from ..core import hub

        source, commit = hub_source(base, revision, _has_speech_lora)
        local = Path(source) if commit is None else hub.files_at(
            base, commit, [f"{SPEECH_LORA_DIR}/adapter_config.json", f"{SPEECH_LORA_DIR}/adapter_model.safetensors"])
    folder = local / SPEECH_LORA_DIR
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"speech LoRA adapter folder {str(folder)!r} is missing {name}")
    return folder


def load_speech_lora(model, base, revision: str | None = None, adapter_name: str = "default",
                     is_trainable: bool = False):
    """Wrap ``model`` in a PeftModel carrying the base model's speech LoRA, weights loaded.

    Use this rather than a bare ``PeftModel.from_pretrained(model, speech_lora_path(...))``:
    the real speech-lora (written by transformers' conversion script) stores its keys without
    PEFT's ``base_model.model.`` prefix, and PeftModel.from_pretrained then only warns
    "Found missing adapter keys" and leaves every lora_B at zero (the adapter silently does
    nothing). The tiny model's speech-lora has the same layout. This loader accepts both
    layouts and raises if any adapter weight is missing or unexpected.
    """
    from peft import PeftConfig, PeftModel, set_peft_model_state_dict
    from safetensors.torch import load_file

    folder = speech_lora_path(base, revision)
    config = PeftConfig.from_pretrained(str(folder))
    config.inference_mode = not is_trainable
    peft_model = PeftModel(model, config, adapter_name=adapter_name)
    prefix = "base_model.model."
    state = load_file(str(folder / "adapter_model.safetensors"))
    state = {(k if k.startswith(prefix) else prefix + k): v for k, v in state.items()}
    result = set_peft_model_state_dict(peft_model, state, adapter_name=adapter_name)
    missing = [k for k in result.missing_keys if "lora_" in k and f".{adapter_name}." in k]
    if missing or result.unexpected_keys:
        raise RuntimeError(
            f"speech LoRA {str(folder)!r} does not fit the model: missing {missing[:5]}, "
            f"unexpected {list(result.unexpected_keys)[:5]}"
        )
    if not is_trainable:
        peft_model.eval()
    return peft_model
