"""Convert a local copy of Phi-4-multimodal-instruct's ``main`` layout to the native one.

The Hub repo's ``main`` branch is the original remote-code checkpoint (``model_type: phi4mm``, some
modules under other names, both LoRAs folded into the decoder's projections), which transformers'
native ``Phi4MultimodalForCausalLM`` cannot read. This rewrites such a folder into the layout of
transformers' own conversion (``refs/pr/70``): native config, renamed weights with the base layers
un-folded, the speech LoRA as a PEFT adapter folder ``speech-lora/``, tokenizer files copied, a
native feature-extractor config. The vision LoRA is dropped (audio-only). Every tensor is
accounted for: a weight the native model lacks, or a native weight nothing maps to, is an error
naming the keys, checked against the native model on the meta device (no memory). Weights are
read and written one safetensors shard at a time.

Public API: MAIN_MODEL_TYPE, native_key, convert_config, convert_checkpoint, write_adapter_config.
Why, and where the mapping comes from: docs/stages.md#converting-the-remote-code-checkpoint
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from ..task import prompts
from .loader import SPEECH_LORA_DIR, SPEECH_LORA_TARGETS, LayoutError

MAIN_MODEL_TYPE = "phi4mm"

_AUDIO = r"model\.embed_tokens_extend\.audio_embed\."
_IMAGE = r"model\.embed_tokens_extend\.image_embed\."
_BLOCK = _AUDIO + r"encoder\.encoders\.\d+\."
# main name -> native name; keys that match none keep their name (the decoder, norms, the
# audio encoder's convolutions and embeddings, the vision tower).
RENAMES = tuple((re.compile(a), b) for a, b in (
    (rf"^({_BLOCK}feed_forward_(?:in|out))\.net\.0\.linear\.", r"\1.gate_up_proj."),
    (rf"^({_BLOCK}feed_forward_(?:in|out))\.net\.2\.", r"\1.down_proj."),
    (rf"^({_BLOCK}self_attn)\.linear_([qkv])\.", r"\1.\2_proj."),
    (rf"^({_BLOCK}self_attn)\.linear_out\.", r"\1.o_proj."),
    (rf"^({_AUDIO})audio_projection\.speech\.0\.", r"\1up_proj_for_speech."),
    (rf"^({_AUDIO})audio_projection\.speech\.2\.", r"\1down_proj_for_speech."),
    (rf"^({_AUDIO})audio_projection\.vision\.0\.", r"\1up_proj_for_vision_speech."),
    (rf"^({_AUDIO})audio_projection\.vision\.2\.", r"\1down_proj_for_vision_speech."),
    (rf"^({_IMAGE})img_projection\.0\.", r"\1img_projection_up."),
    (rf"^({_IMAGE})img_projection\.2\.", r"\1img_projection_down."),
    (rf"^({_IMAGE})glb_GN$", r"\1global_img_feature_extensor"),
    (rf"^({_IMAGE})sub_GN$", r"\1sub_img_feature_extensor"),
))
_LORA = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>[AB])\.(?P<adapter>[^.]+)\.weight$")
_BASE_LAYER = re.compile(r"^(?P<module>.+)\.base_layer\.(?P<name>weight|bias)$")

# Files taken over as they are (tokenizer, chat template, generation defaults); the remote
# code (*.py), processor configs naming remote classes and any pickle are never copied.
COPIED_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "added_tokens.json",
                "special_tokens_map.json", "chat_template.jinja", "chat_template.json", "generation_config.json")
# Config keys that point at remote code; dropped from every copied JSON file.
_REMOTE_KEYS = ("auto_map",)


def native_key(key: str) -> tuple[str, str | None]:
    """(part, native name) of a main-layout weight: part is ``model``, ``speech`` (a
    speech-lora key, un-prefixed as PEFT writes it) or ``vision`` (dropped, name None)."""
    lora = _LORA.match(key)
    if lora:
        if lora["adapter"] == "speech":
            return "speech", f"{lora['module']}.lora_{lora['ab']}.weight"
        if lora["adapter"] == "vision":
            return "vision", None
        raise LayoutError(f"unknown LoRA adapter {lora['adapter']!r} in weight {key!r} (known: speech, vision)")
    base = _BASE_LAYER.match(key)
    if base:
        return "model", f"{base['module']}.{base['name']}"
    for pattern, replacement in RENAMES:
        new, n = pattern.subn(replacement, key)
        if n:
            return "model", new
    return "model", key


def _own_fields(cls) -> set[str]:
    """The fields a native sub-config defines (not those every PretrainedConfig has)."""
    from dataclasses import fields

    from transformers import PretrainedConfig

    return {f.name for f in fields(cls)} - {f.name for f in fields(PretrainedConfig)}


def convert_config(main: dict, end_token_id: int | None = None):
    """The native ``Phi4MultimodalConfig`` of a main-layout ``config.json`` (a dict, not changed).

    ``end_token_id`` (``<|end|>``, 200020 in the real tokenizer) joins ``eos_token_id``: the
    remote code stops at it through its generation config, the native port through the model
    config as well (transformers' conversion does the same).
    """
    from transformers import Phi4MultimodalAudioConfig, Phi4MultimodalConfig, Phi4MultimodalVisionConfig

    if main.get("model_type") != MAIN_MODEL_TYPE:
        raise LayoutError(f"not a {MAIN_MODEL_TYPE} config (model_type {main.get('model_type')!r})")
    cfg = json.loads(json.dumps(main))  # a deep copy
    # Remote-code bookkeeping, the LoRA settings (they go to speech-lora/) and the attention
    # implementation (ours comes from params, never from a checkpoint).
    for key in ("_name_or_path", "architectures", "auto_map", "model_type", "speech_lora", "vision_lora",
                "transformers_version", "_attn_implementation"):
        cfg.pop(key, None)
    embd = cfg.pop("embd_layer")
    audio = dict(cfg.pop("audio_processor")["config"])
    for key in ("activation_checkpointing", "cnn_layer_norm", "input_layer", "batch_norm",
                "encoder_embedding_config", "ext_pw_kernel_size", "bias_in_glu", "causal"):
        audio.pop(key, None)  # fixed in the native encoder (or training-only)
    renamed = {"attention_dim": "hidden_size", "attention_heads": "num_attention_heads",
               "linear_units": "intermediate_size"}
    for old, new in renamed.items():
        audio[new] = audio.pop(old)
    audio["nemo_conv_channels"] = audio.pop("nemo_conv_settings")["conv_channels"]
    audio["bias_max_distance"] = audio.pop("relative_attention_bias_args")["t5_bias_max_distance"]
    if "depthwise_seperable_out_channel" in audio:  # the remote code's spelling (kept too, as upstream)
        audio.setdefault("depthwise_separable_out_channel", audio["depthwise_seperable_out_channel"])
    # The embedding layers' settings that the native sub-configs define: downsample_rate for
    # audio, crop_size for vision on the real checkpoint (whose SigLIP tower is fixed in the
    # remote code; a tiny test checkpoint states its own sizes here).
    audio_fields, vision_fields = _own_fields(Phi4MultimodalAudioConfig), _own_fields(Phi4MultimodalVisionConfig)
    audio.update({k: v for k, v in embd.get("audio_embd_layer", {}).items() if k in audio_fields})
    vision = {k: v for k, v in embd.get("image_embd_layer", {}).items() if k in vision_fields}
    if end_token_id is not None:
        eos = cfg.get("eos_token_id")
        eos = list(eos) if isinstance(eos, list) else [eos]
        cfg["eos_token_id"] = eos if end_token_id in eos else eos + [end_token_id]
    config = Phi4MultimodalConfig(**cfg, audio_config=Phi4MultimodalAudioConfig(**audio),
                                  vision_config=Phi4MultimodalVisionConfig(**vision))
    config.architectures = ["Phi4MultimodalForCausalLM"]
    return config


def _token_id(src: Path, token: str) -> int:
    """The id of an added token, from tokenizer.json (or tokenizer_config.json's added_tokens_decoder)."""
    if (src / "tokenizer.json").is_file():
        added = json.loads((src / "tokenizer.json").read_text(encoding="utf-8")).get("added_tokens", [])
        ids = [t["id"] for t in added if t.get("content") == token]
    else:
        decoder = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8")).get("added_tokens_decoder", {})
        ids = [int(i) for i, t in decoder.items() if t.get("content") == token]
    if len(ids) != 1:
        raise LayoutError(f"the tokenizer of {str(src)!r} has no single {token!r} token")
    return ids[0]


def _shards(folder: Path) -> list[str]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    if (folder / "model.safetensors").is_file():
        return ["model.safetensors"]
    raise FileNotFoundError(f"{str(folder)!r} has no model.safetensors or model.safetensors.index.json")


def _expected(config) -> tuple[dict, dict]:
    """Native weight shapes, and the speech LoRA's expected (in, out) per target module."""
    import torch
    from transformers import Phi4MultimodalForCausalLM

    with torch.device("meta"):
        model = Phi4MultimodalForCausalLM(config)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if config.tie_word_embeddings:
        shapes.pop("lm_head.weight")  # tied: never stored
    pattern = re.compile(SPEECH_LORA_TARGETS)
    targets = {n: (m.in_features, m.out_features) for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and pattern.fullmatch(n)}
    return shapes, targets


def _names(keys, limit: int = 8) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _check_speech_lora(speech: dict, targets: dict, r: int) -> None:
    want = {}
    for module, (n_in, n_out) in targets.items():
        want[f"{module}.lora_A.weight"] = (r, n_in)
        want[f"{module}.lora_B.weight"] = (n_out, r)
    got = {k: tuple(v.shape) for k, v in speech.items()}
    missing, extra = set(want) - set(got), set(got) - set(want)
    wrong = [k for k in set(want) & set(got) if want[k] != got[k]]
    if missing or extra or wrong:
        raise LayoutError(f"the speech LoRA does not fit the native model (r={r}): missing {_names(missing)}; "
                          f"unexpected {_names(extra)}; wrong shape {_names(wrong)}")


def write_adapter_config(folder: Path, r: int, alpha, dropout) -> None:
    from peft import LoraConfig

    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=SPEECH_LORA_TARGETS,
                     task_type="CAUSAL_LM")
    cfg.save_pretrained(str(folder))
    path = folder / "adapter_config.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["base_model_name_or_path"] = None  # no machine-specific path: the output is content-hashed
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _copy_files(src: Path, out: Path) -> list[str]:
    copied = []
    for name in COPIED_FILES:
        if not (src / name).is_file():
            continue
        if name.endswith(".json"):
            data = json.loads((src / name).read_text(encoding="utf-8"))
            for key in _REMOTE_KEYS:
                data.pop(key, None)
            (out / name).write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                                    encoding="utf-8")
        else:
            shutil.copyfile(src / name, out / name)
        copied.append(name)
    return copied


def _write_feature_extractor(src: Path, out: Path, main: dict) -> None:
    """A native ``Phi4MultimodalFeatureExtractor`` config with the main layout's audio rates."""
    from transformers import Phi4MultimodalFeatureExtractor

    kwargs = {"audio_compression_rate": main["embd_layer"]["audio_embd_layer"].get("compression_rate", 8),
              "audio_downsample_rate": main["embd_layer"]["audio_embd_layer"].get("downsample_rate", 1)}
    pre = src / "preprocessor_config.json"
    if pre.is_file():
        data = json.loads(pre.read_text(encoding="utf-8"))
        kwargs.update({k: data[k] for k in ("audio_compression_rate", "audio_downsample_rate", "audio_feat_stride")
                       if k in data})
    Phi4MultimodalFeatureExtractor(**kwargs).save_pretrained(str(out))


def convert_checkpoint(src, out) -> dict:
    """Write the native layout of main-layout folder ``src`` into ``out``; return a summary.

    ``out`` gets config.json, the weights (one output shard per input shard, same names, and
    the index when the input had one), speech-lora/, preprocessor_config.json and the
    tokenizer/generation files of ``COPIED_FILES`` that ``src`` has.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    src, out = Path(src), Path(out)
    main = json.loads((src / "config.json").read_text(encoding="utf-8"))
    if not any((src / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        raise LayoutError(f"{str(src)!r} has no tokenizer files (tokenizer.json / tokenizer_config.json)")
    config = convert_config(main, end_token_id=_token_id(src, prompts.END))
    shapes, targets = _expected(config)
    out.mkdir(parents=True, exist_ok=True)
    shard_names = _shards(src)

    weight_map, speech, seen = {}, {}, {}
    dropped = {"vision_lora": 0, "tied_lm_head": 0}
    unexpected, wrong_shape = [], []
    for shard in shard_names:
        tensors = {}
        with safe_open(str(src / shard), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open has no __iter__)
                part, name = native_key(key)
                if part == "vision":
                    dropped["vision_lora"] += 1
                    continue
                if part == "speech":
                    speech[name] = f.get_tensor(key)
                    continue
                if name == "lm_head.weight" and config.tie_word_embeddings:
                    dropped["tied_lm_head"] += 1  # the native model ties it to embed_tokens
                    continue
                if name in seen:
                    raise LayoutError(f"weights {seen[name]!r} and {key!r} both map to {name!r}")
                seen[name] = key
                if name not in shapes:
                    unexpected.append(key)
                    continue
                tensor = f.get_tensor(key)
                if tuple(tensor.shape) != shapes[name]:
                    wrong_shape.append(f"{key} {tuple(tensor.shape)} (native {shapes[name]})")
                    continue
                tensors[name] = tensor.contiguous()
        save_file(tensors, str(out / shard), metadata={"format": "pt"})
        weight_map.update({name: shard for name in tensors})
        del tensors  # one shard in memory at a time
    missing = set(shapes) - set(weight_map)
    if missing or unexpected or wrong_shape:
        for shard in shard_names:
            (out / shard).unlink(missing_ok=True)
        raise LayoutError(f"{str(src)!r} does not convert to the native layout: missing {_names(missing)}; "
                          f"unexpected {_names(unexpected)}; wrong shape {_names(wrong_shape)}")
    if shard_names != ["model.safetensors"]:
        index = {"metadata": {}, "weight_map": dict(sorted(weight_map.items()))}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n",
                                                          encoding="utf-8")

    lora = main.get("speech_lora") or {}
    r = int(lora.get("r", 320))
    _check_speech_lora(speech, targets, r)
    folder = out / SPEECH_LORA_DIR
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in speech.items()}, str(folder / "adapter_model.safetensors"),
              metadata={"format": "pt"})
    write_adapter_config(folder, r, lora.get("lora_alpha", 2 * r), lora.get("dp", 0.01))

    config.save_pretrained(str(out))
    _write_feature_extractor(src, out, main)
    copied = _copy_files(src, out)
    return {"converted_from": MAIN_MODEL_TYPE, "tensors": len(weight_map), "speech_lora_tensors": len(speech),
            "speech_lora_r": r, "dropped": dropped, "copied": copied}
