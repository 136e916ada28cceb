"""Converting the Hub's `main` layout (remote code, phi4mm) to the native one (pronounce.model.convert).

The main-layout checkpoints here are written by an inverse mapping of this file's own
(`to_main_layout`), from the published layouts: a tiny native model goes out in the main
layout, comes back through `convert_checkpoint`, and must give the same logits (and the same
speech LoRA) as the model it came from.
"""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from pronounce.model import convert as C
from pronounce.model import loader as M
from pronounce.model import processor as MP
from pronounce.model import tiny as T
from pronounce.task import prompts

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "data" / "speechocean762-mini"
# The published main config.json (as NVIDIA/TensorRT-LLM's test_modeling_phi4mm.py vendors it,
# with its 32 decoder layers and 24 audio blocks restored, and its speech/vision LoRA settings).
MAIN_CONFIG = ROOT / "tests" / "assets" / "phi4mm_main_config.json"
TARGET = re.compile(M.SPEECH_LORA_TARGETS)

# native name -> main name, the inverse of the published renames (written independently).
_ENC = "model.embed_tokens_extend.audio_embed.encoder.encoders."
INVERSE = (
    (r"^(model\.embed_tokens_extend\.audio_embed\.encoder\.encoders\.\d+\.feed_forward_(in|out))\.gate_up_proj\.",
     r"\1.net.0.linear."),
    (r"^(model\.embed_tokens_extend\.audio_embed\.encoder\.encoders\.\d+\.feed_forward_(in|out))\.down_proj\.",
     r"\1.net.2."),
    (r"^(model\.embed_tokens_extend\.audio_embed\.encoder\.encoders\.\d+\.self_attn)\.(q|k|v)_proj\.",
     r"\1.linear_\2."),
    (r"^(model\.embed_tokens_extend\.audio_embed\.encoder\.encoders\.\d+\.self_attn)\.o_proj\.", r"\1.linear_out."),
    (r"^model\.embed_tokens_extend\.audio_embed\.up_proj_for_speech\.",
     "model.embed_tokens_extend.audio_embed.audio_projection.speech.0."),
    (r"^model\.embed_tokens_extend\.audio_embed\.down_proj_for_speech\.",
     "model.embed_tokens_extend.audio_embed.audio_projection.speech.2."),
    (r"^model\.embed_tokens_extend\.audio_embed\.up_proj_for_vision_speech\.",
     "model.embed_tokens_extend.audio_embed.audio_projection.vision.0."),
    (r"^model\.embed_tokens_extend\.audio_embed\.down_proj_for_vision_speech\.",
     "model.embed_tokens_extend.audio_embed.audio_projection.vision.2."),
    (r"^model\.embed_tokens_extend\.image_embed\.img_projection_up\.",
     "model.embed_tokens_extend.image_embed.img_projection.0."),
    (r"^model\.embed_tokens_extend\.image_embed\.img_projection_down\.",
     "model.embed_tokens_extend.image_embed.img_projection.2."),
    (r"^model\.embed_tokens_extend\.image_embed\.global_img_feature_extensor$",
     "model.embed_tokens_extend.image_embed.glb_GN"),
    (r"^model\.embed_tokens_extend\.image_embed\.sub_img_feature_extensor$",
     "model.embed_tokens_extend.image_embed.sub_GN"),
)


def main_key(native: str) -> str:
    for pattern, replacement in INVERSE:
        key, n = re.subn(pattern, replacement, native)
        if n:
            return key
    return native


def main_config(native: dict) -> dict:
    """A phi4mm config.json for a native config (the remote code's field names)."""
    a, v = native["audio_config"], native["vision_config"]
    rope = native["rope_parameters"]
    cfg = {k: val for k, val in native.items()
           if k not in ("audio_config", "vision_config", "architectures", "model_type", "rope_parameters",
                        "transformers_version", "dtype", "eos_token_id")}
    cfg.update(
        model_type="phi4mm", architectures=["Phi4MMForCausalLM"],
        auto_map={"AutoConfig": "configuration_phi4mm.Phi4MMConfig",
                  "AutoModelForCausalLM": "modeling_phi4mm.Phi4MMForCausalLM"},
        _attn_implementation="flash_attention_2",
        eos_token_id=native["eos_token_id"][0],  # <|end|> is the generation config's business on main
        rope_theta=rope["rope_theta"], partial_rotary_factor=rope["partial_rotary_factor"],
        rope_scaling=({"type": "longrope", **{k: rope[k] for k in ("short_factor", "long_factor")}}
                      if rope["rope_type"] == "longrope" else None),  # as the real main config spells it
        torch_dtype="float32",
        speech_lora={"r": M.SPEECH_LORA_R, "lora_alpha": M.SPEECH_LORA_ALPHA, "dp": M.SPEECH_LORA_DROPOUT,
                     "layer": "((layers.*self_attn\\.(qkv|o)_proj)|(layers.*mlp\\.(gate_up|down)_proj))"},
        vision_lora={"r": 4, "lora_alpha": 8, "dp": 0.0, "layer": "layers.*"},
        audio_processor={"name": "cascades", "config": {
            "attention_dim": a["hidden_size"], "attention_heads": a["num_attention_heads"],
            "linear_units": a["intermediate_size"], "num_blocks": a["num_blocks"],
            "nemo_conv_settings": {"conv_channels": a["nemo_conv_channels"]},
            "relative_attention_bias_args": {"t5_bias_max_distance": a["bias_max_distance"], "type": "t5"},
            "depthwise_seperable_out_channel": a["depthwise_separable_out_channel"],
            **{k: a[k] for k in ("activation", "chunk_size", "conv_activation", "conv_glu_type",
                                 "depthwise_multiplier", "dropout_rate", "ext_pw_out_channel", "input_size",
                                 "kernel_size", "left_chunk", "time_reduction", "audio_token_id")},
            "input_layer": "nemo_conv", "causal": True, "batch_norm": False, "bias_in_glu": True,
            "cnn_layer_norm": True, "ext_pw_kernel_size": 1, "encoder_embedding_config": {"input_size": 80},
            "activation_checkpointing": {"interval": 1, "module": "transformer", "offload": False},
        }},
        embd_layer={
            "embedding_cls": "image_audio",
            "audio_embd_layer": {"compression_rate": 8, "downsample_rate": a["downsample_rate"],
                                 "embedding_cls": "audio", "projection_cls": "mlp", "use_qformer": False},
            # The real remote code fixes its SigLIP tower; a tiny one states its sizes here.
            "image_embd_layer": {"embedding_cls": "tune_image", "use_hd_transform": True,
                                 **{k: v[k] for k in ("crop_size", "hidden_size", "intermediate_size",
                                                      "num_hidden_layers", "num_attention_heads", "image_size",
                                                      "patch_size", "image_token_id")}},
        },
    )
    return cfg


def to_main_layout(native: Path, out: Path, seed: int = 5) -> Path:
    """Write native folder `native` (with its speech-lora/) in the Hub main's layout, in 2 shards."""
    out.mkdir(parents=True)
    config = json.loads((native / "config.json").read_text())
    (out / "config.json").write_text(json.dumps(main_config(config), indent=2))
    weights = load_file(str(native / "model.safetensors"))
    lora = load_file(str(native / M.SPEECH_LORA_DIR / "adapter_model.safetensors"))
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for key, tensor in weights.items():
        module, _, leaf = key.rpartition(".")
        if TARGET.fullmatch(module):  # the LoRA folded in: base layer, speech and vision adapters
            tensors[f"{module}.base_layer.{leaf}"] = tensor
            for ab in "AB":
                tensors[f"{module}.lora_{ab}.speech.weight"] = lora.pop(f"{module}.lora_{ab}.weight")
            tensors[f"{module}.lora_A.vision.weight"] = torch.randn(4, tensor.shape[1], generator=gen)
            tensors[f"{module}.lora_B.vision.weight"] = torch.randn(tensor.shape[0], 4, generator=gen)
        else:
            tensors[main_key(key)] = tensor
    assert not lora  # every speech LoRA tensor went into the main layout
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    weight_map = {}
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(out / shard), metadata={"format": "pt"})
        weight_map.update({k: shard for k in keys})
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    for name in ("tokenizer.json", "chat_template.jinja", "generation_config.json"):
        shutil.copyfile(native / name, out / name)
    tok_cfg = json.loads((native / "tokenizer_config.json").read_text())
    tok_cfg["auto_map"] = {"AutoProcessor": "processing_phi4mm.Phi4MMProcessor"}
    (out / "tokenizer_config.json").write_text(json.dumps(tok_cfg))
    (out / "preprocessor_config.json").write_text(json.dumps({
        "auto_map": {"AutoFeatureExtractor": "processing_phi4mm.Phi4MMAudioFeatureExtractor"},
        "feature_extractor_type": "Phi4MMAudioFeatureExtractor", "audio_compression_rate": 8,
        "audio_downsample_rate": 1, "audio_feat_stride": 1}))
    (out / "modeling_phi4mm.py").write_text("raise SystemExit('remote code must never run')\n")
    return out


def build_native(folder: Path, tied: bool) -> Path:
    """A tiny native model saved like builtin:tiny, with its lm_head tied (as the real one) or not."""
    from transformers import Phi4MultimodalFeatureExtractor, Phi4MultimodalForCausalLM

    tokenizer = T.build_tiny_tokenizer()
    config = T.tiny_config(tokenizer)
    config.tie_word_embeddings = tied
    torch.manual_seed(3)
    model = Phi4MultimodalForCausalLM(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    Phi4MultimodalFeatureExtractor().save_pretrained(folder)
    T.write_tiny_speech_lora(model, folder / M.SPEECH_LORA_DIR, seed=3)
    return folder


def audio_batch(processor):
    import soundfile as sf

    clips = [sf.read(CORPUS / "WAVE" / "SPEAKER0001" / f"{u}.WAV", dtype="float32")[0]
             for u in ("000010011", "000010035")]
    texts = [prompts.user_turn(t, processor.audio_token) + prompts.answer_turn('{"x": 1}') for t in prompts.TASKS]
    return processor(text=texts, audio=clips, sampling_rate=16000, padding=True, return_tensors="pt")


def test_real_main_config_converts_to_the_real_native_config():
    """The published main config.json gives exactly the native config transformers loads (shared reference)."""
    native = C.convert_config(json.loads(MAIN_CONFIG.read_text()), end_token_id=200020)
    got = json.loads(native.to_json_string())
    want = json.loads(M.REAL_CONFIG.read_text())
    got.pop("architectures")
    assert got == want
    assert native.audio_config.audio_token_id == 200011 and native.eos_token_id == [199999, 200020]
    assert "_attn_implementation" not in got
    with pytest.raises(M.LayoutError, match="not a phi4mm config"):
        C.convert_config(want)


def test_native_key_mapping():
    assert C.native_key("model.layers.3.mlp.down_proj.base_layer.weight") == ("model", "model.layers.3.mlp.down_proj.weight")
    assert C.native_key("model.layers.3.self_attn.qkv_proj.lora_B.speech.weight") == (
        "speech", "model.layers.3.self_attn.qkv_proj.lora_B.weight")
    assert C.native_key("model.layers.3.self_attn.qkv_proj.lora_A.vision.weight") == ("vision", None)
    assert C.native_key(_ENC + "7.self_attn.linear_out.bias") == ("model", _ENC + "7.self_attn.o_proj.bias")
    assert C.native_key(_ENC + "0.feed_forward_out.net.0.linear.weight") == (
        "model", _ENC + "0.feed_forward_out.gate_up_proj.weight")
    assert C.native_key("model.norm.weight") == ("model", "model.norm.weight")
    with pytest.raises(M.LayoutError, match="unknown LoRA adapter 'music'"):
        C.native_key("model.layers.0.mlp.down_proj.lora_A.music.weight")


@pytest.mark.parametrize("tied", [True, False], ids=["tied-lm-head", "own-lm-head"])
def test_main_layout_converts_to_the_same_model(tmp_path, tied):
    native = build_native(tmp_path / "native", tied)
    main = to_main_layout(native, tmp_path / "main")
    # What the issue saw: the native class cannot use a main-layout folder; our loader says why.
    with pytest.raises(M.LayoutError, match=r"remote-code layout .*refs/pr/70"):
        M.load_base_model(main)

    out = tmp_path / "converted"
    summary = C.convert_checkpoint(main, out)
    n_targets = 2 * 4  # 2 layers x qkv, o, gate_up, down
    assert summary["speech_lora_tensors"] == 2 * n_targets and summary["dropped"]["vision_lora"] == 2 * n_targets
    assert not list(out.rglob("*.py")) and not list(out.rglob("*.bin"))
    assert "auto_map" not in json.loads((out / "tokenizer_config.json").read_text())
    config = json.loads((out / "config.json").read_text())
    want = json.loads((native / "config.json").read_text())
    for cfg in (config, want):
        cfg.pop("transformers_version")
    # Two keys the main layout spells its own way and the conversion keeps (as transformers' own
    # does, see the shared real config, and so builtin:tiny): the top-level rotary factor and the
    # misspelled channels.
    assert config["partial_rotary_factor"] == want["rope_parameters"]["partial_rotary_factor"]
    a = config["audio_config"]
    assert a["depthwise_seperable_out_channel"] == a["depthwise_separable_out_channel"]
    assert config == want  # otherwise the config converts back exactly (token ids and sizes included)
    assert "_attn_implementation" not in config

    # The same weights: the converted model gives the native model's logits, with audio.
    processor = MP.load_processor(native)
    batch = audio_batch(processor)
    a = M.load_base_model(native).eval()
    b = M.load_base_model(out).eval()
    assert b.config._attn_implementation == "sdpa"  # not the main config's flash_attention_2
    with torch.no_grad():
        assert torch.equal(a(**batch).logits, b(**batch).logits)
    # The speech LoRA comes out un-folded, tensor for tensor, and loads onto the converted model.
    lora_a = load_file(str(native / "speech-lora" / "adapter_model.safetensors"))
    lora_b = load_file(str(out / "speech-lora" / "adapter_model.safetensors"))
    assert lora_a.keys() == lora_b.keys() and all(torch.equal(lora_a[k], lora_b[k]) for k in lora_a)
    adapter = json.loads((out / "speech-lora" / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"], adapter["lora_dropout"]) == (320, 640, 0.01)
    assert adapter["target_modules"] == M.SPEECH_LORA_TARGETS
    with torch.no_grad():
        la = M.load_speech_lora(a, native)(**batch).logits
        lb = M.load_speech_lora(b, out)(**batch).logits
    assert torch.equal(la, lb)
    # The converted processor speaks the same tokens and features.
    converted = audio_batch(MP.load_processor(out))
    for key in ("input_ids", "audio_input_features", "audio_embed_sizes"):
        np.testing.assert_array_equal(converted[key].numpy(), batch[key].numpy())


def test_conversion_is_byte_reproducible(tmp_path):
    main = to_main_layout(build_native(tmp_path / "native", True), tmp_path / "main")
    first, second = C.convert_checkpoint(main, tmp_path / "a"), C.convert_checkpoint(main, tmp_path / "b")
    assert first == second
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def _rewrite(main: Path, edit) -> None:
    index = json.loads((main / "model.safetensors.index.json").read_text())
    shard = "model-00001-of-00002.safetensors"
    tensors = load_file(str(main / shard))
    edit(tensors)
    save_file(tensors, str(main / shard), metadata={"format": "pt"})
    index["weight_map"] = {k: v for k, v in index["weight_map"].items() if v != shard} | {k: shard for k in tensors}
    (main / "model.safetensors.index.json").write_text(json.dumps(index))


def test_an_incomplete_or_foreign_checkpoint_is_refused_naming_the_keys(tmp_path):
    main = to_main_layout(build_native(tmp_path / "native", True), tmp_path / "main")
    first = load_file(str(main / "model-00001-of-00002.safetensors"))
    plain = next(k for k in sorted(first) if "lora" not in k and "base_layer" not in k)
    _rewrite(main, lambda t: t.pop(plain))
    with pytest.raises(M.LayoutError, match=rf"missing .*{re.escape(C.native_key(plain)[1])}"):
        C.convert_checkpoint(main, tmp_path / "out1")
    _rewrite(main, lambda t: t.update({plain: first[plain], "model.extra_head.weight": torch.zeros(2)}))
    with pytest.raises(M.LayoutError, match=r"unexpected model\.extra_head\.weight"):
        C.convert_checkpoint(main, tmp_path / "out2")
    assert not list((tmp_path / "out2").glob("*.safetensors"))  # nothing half-written left behind
    lora_key = next(k for k in sorted(first) if ".lora_B.speech." in k)
    _rewrite(main, lambda t: (t.pop("model.extra_head.weight"), t.pop(lora_key)))
    with pytest.raises(M.LayoutError, match=rf"speech LoRA .*missing {re.escape(C.native_key(lora_key)[1])}"):
        C.convert_checkpoint(main, tmp_path / "out3")
