"""The built-in tiny Phi-4-multimodal and the one loader for every base model."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from pronounce.core.params import BUILTIN_TINY
from pronounce.model import loader as M
from pronounce.model import processor as MP
from pronounce.model import tiny as T
from pronounce.task import prompts

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "data" / "speechocean762-mini"
SEED = 1234


def wave(utt: str) -> np.ndarray:
    clip, sr = sf.read(CORPUS / "WAVE" / f"SPEAKER{utt[1:5]}" / f"{utt}.WAV", dtype="float32")
    assert sr == 16000
    return clip


@pytest.fixture(scope="module")
def tiny(tiny_base) -> Path:
    return tiny_base  # the test run's models/base: build_tiny_model(seed=SEED) plus base.json


@pytest.fixture(scope="module")
def processor(tiny):
    return MP.load_processor(tiny)


def test_folder_layout(tiny):
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
                 "tokenizer_config.json", "preprocessor_config.json",
                 "speech-lora/adapter_config.json", "speech-lora/adapter_model.safetensors"):
        assert (tiny / name).is_file(), name
    assert not list(tiny.rglob("*.bin")) and not list(tiny.rglob("*.py"))  # safetensors only, no remote code
    config = json.loads((tiny / "config.json").read_text())
    assert config["model_type"] == "phi4_multimodal"
    assert config["architectures"] == ["Phi4MultimodalForCausalLM"]
    assert config["num_hidden_layers"] == 2 and config["audio_config"]["time_reduction"] == 8


def test_config_token_ids_match_tokenizer(tiny, processor):
    tok = processor.tokenizer
    model = M.load_base_model(tiny)
    cfg = model.config
    eot, end = tok.convert_tokens_to_ids(T.ENDOFTEXT), tok.convert_tokens_to_ids(prompts.END)
    assert processor.audio_token == "<|audio|>"
    assert cfg.audio_config.audio_token_id == processor.audio_token_id == tok.convert_tokens_to_ids("<|audio|>")
    assert cfg.vision_config.image_token_id == processor.image_token_id == tok.convert_tokens_to_ids("<|image|>")
    assert cfg.vocab_size == T.TINY_VOCAB_SIZE > len(tok), "padded past the tokenizer, as the real model"
    assert tok.convert_tokens_to_ids(prompts.APA_TOKEN) >= len(tok) - 2, "added by load_processor, in the padding"
    assert tok.pad_token_id == tok.eos_token_id == tok.bos_token_id == eot == cfg.pad_token_id
    assert end in model.generation_config.eos_token_id and eot in model.generation_config.eos_token_id
    assert model.generation_config.pad_token_id == eot


def test_reload_gives_identical_logits_with_audio(tiny, processor):
    built, _ = T.tiny_model(SEED)  # the in-memory model build_tiny_model saved
    loaded = M.load_base_model(tiny).eval()
    clips = [wave("000010011"), wave("000010035")]
    texts = [prompts.user_turn("apa", processor.audio_token), prompts.user_turn("mdd", processor.audio_token)]
    batch = processor(text=texts, audio=clips, sampling_rate=16000, padding=True, return_tensors="pt")
    assert {"audio_input_features", "audio_embed_sizes", "audio_attention_mask"} <= set(batch)
    with torch.no_grad():
        a = built(**batch).logits
        b = loaded(**batch).logits
        no_audio = loaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.isfinite(a).all()
    assert torch.equal(a, b)
    assert not torch.allclose(a, no_audio)  # the audio really reaches the decoder


def test_build_is_byte_identical(tmp_path):
    first = T.build_tiny_model(tmp_path / "a", seed=7)
    second = T.build_tiny_model(tmp_path / "b", seed=7)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for rel in files:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel
    other = T.build_tiny_model(tmp_path / "c", seed=8)
    assert (other / "model.safetensors").read_bytes() != (first / "model.safetensors").read_bytes()


def test_speech_lora_targets_only_the_text_decoder(tiny):
    from peft import PeftModel
    from safetensors.torch import load_file

    folder = M.speech_lora_path(tiny)
    assert folder == tiny / "speech-lora"
    cfg = json.loads((folder / "adapter_config.json").read_text())
    assert (cfg["r"], cfg["lora_alpha"], cfg["lora_dropout"]) == (320, 640, 0.01)
    assert cfg["peft_type"] == "LORA" and cfg["task_type"] == "CAUSAL_LM"
    # Laid out like the real adapter: no "base_model.model." prefix on the keys.
    keys = load_file(str(folder / "adapter_model.safetensors")).keys()
    assert all(k.startswith("model.layers.") for k in keys)

    base = M.load_base_model(tiny)
    # The audio encoder has modules with the same leaf names; the regex must skip them.
    assert any(n.startswith("model.embed_tokens_extend.audio_embed") and n.endswith("o_proj")
               for n, _ in base.named_modules())
    # A bare PeftModel.from_pretrained builds the right modules but, with the real adapter's
    # un-prefixed keys, loads no weights (it only warns): hence M.load_speech_lora.
    with pytest.warns(UserWarning, match="missing adapter keys"):
        peft_model = PeftModel.from_pretrained(base, str(folder))
    assert peft_model.peft_config["default"].r == 320
    lora = [n for n, _ in peft_model.named_modules() if n.endswith("lora_A")]
    assert len(lora) == 2 * 4  # 2 layers x qkv_proj, o_proj, gate_up_proj, down_proj
    assert all(n.startswith("base_model.model.model.layers.") for n in lora)
    assert not any("audio" in n or "embed_tokens_extend" in n for n in lora)


def test_load_speech_lora_loads_the_weights(tiny):
    from safetensors.torch import load_file

    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    base = M.load_base_model(tiny).eval()
    with torch.no_grad():
        before = base(input_ids=ids).logits
    peft_model = M.load_speech_lora(base, tiny)
    stored = load_file(str(tiny / "speech-lora" / "adapter_model.safetensors"))
    qkv = peft_model.base_model.model.model.layers[1].self_attn.qkv_proj
    loaded_b = qkv.lora_B["default"].weight
    assert torch.equal(loaded_b, stored["model.layers.1.self_attn.qkv_proj.lora_B.weight"])
    assert loaded_b.abs().sum() > 0
    with torch.no_grad():
        after = peft_model(input_ids=ids).logits
    assert not torch.allclose(before, after)  # loading the adapter is observable
    assert not any(p.requires_grad for p in peft_model.parameters())
    trainable = M.load_speech_lora(M.load_base_model(tiny), tiny, is_trainable=True)
    names = [n for n, p in trainable.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)


def _corpus_answers():
    scores = json.loads((CORPUS / "resource" / "scores.json").read_text())
    for item in scores.values():
        yield prompts.apa_answer(item)
        yield prompts.mdd_answer(item["text"], [p.rstrip("012") for w in item["words"] for p in w["phones"].split()])


def test_tokenizer_round_trips_prompts_and_answers(processor):
    tok = processor.tokenizer
    texts = [
        '{"accuracy": 8, "fluency": 9, "prosodic": 9, "total": 8}',
        '{"word_transcript": "WE CALL IT BEAR", "phoneme_transcript": "W IY K AO L IH T B EH R"}',
        '{"word_transcript": "I\'M OK", "phoneme_transcript": "AY <unk> M OW K EY"}',
        "{'accuracy': 10, 'fluency': 0}",
        *_corpus_answers(),
    ]
    for task in prompts.TASKS:
        texts.append(prompts.user_turn(task, processor.audio_token) + prompts.answer_turn(texts[0]))
    for text in texts:
        ids = tok(text)["input_ids"]
        assert tok.decode(ids) == text
    for special in (*prompts.CONTROL_TOKENS.values(), prompts.USER, prompts.ASSISTANT, prompts.END,
                    processor.audio_token, T.ENDOFTEXT):
        ids = tok(special, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, special  # atomic
    user = tok(prompts.user_turn("apa", processor.audio_token))["input_ids"]
    assert user[:3] == tok.convert_tokens_to_ids([prompts.USER, prompts.APA_TOKEN, processor.audio_token])
    assert user[-2:] == tok.convert_tokens_to_ids([prompts.END, prompts.ASSISTANT])
    assert tok.decode(tok(texts[0] + prompts.END)["input_ids"], skip_special_tokens=True) == texts[0]


def test_processor_is_audio_only_and_needs_no_torchvision(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # any import of it now fails
    proc = MP.load_processor(tiny)
    assert isinstance(proc.image_processor, MP.AudioOnlyImageProcessor)
    clip = wave("000010011")
    out = proc(text=[prompts.user_turn("mdd", proc.audio_token)], audio=[clip], sampling_rate=16000,
               return_tensors="pt")
    frames = (len(clip) - 400) // 160 + 1
    assert out["audio_input_features"].shape == (1, frames, 80)
    assert out["audio_embed_sizes"].tolist() == [math.ceil(frames / 8)]
    assert int((out["input_ids"] == proc.audio_token_id).sum()) == math.ceil(frames / 8)
    with pytest.raises(ValueError, match="audio-only"):
        proc.image_processor(np.zeros((4, 4, 3)))


def test_missing_or_incomplete_folder_is_a_clear_error(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        M.load_base_model(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        M.load_base_model(empty)
    with pytest.raises(FileNotFoundError, match="speech-lora"):
        M.speech_lora_path(empty)
    with pytest.raises(ValueError, match="builtin:tiny"):
        M.load_base_model(BUILTIN_TINY)

def _copy(tiny: Path, dst: Path) -> Path:
    import shutil

    return Path(shutil.copytree(tiny, dst))


def test_only_the_native_layout_loads(tiny, tmp_path):
    assert M.check_native_layout(tiny)["model_type"] == "phi4_multimodal"
    assert M.check_native_layout(tiny / "config.json")["model_type"] == "phi4_multimodal"
    folder = _copy(tiny, tmp_path / "main-like")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "phi4mm"}))
    with pytest.raises(M.LayoutError, match=r"remote-code layout \(model_type 'phi4mm'\).*revision refs/pr/70.*convert"):
        M.load_base_model(folder)
    with pytest.raises(M.LayoutError, match=r"model_type 'llama'; expected 'phi4_multimodal'"):
        M.check_native_layout({"model_type": "llama"})
    (folder / "config.json").write_text("{not json")
    with pytest.raises(M.LayoutError, match="cannot read the model config"):
        M.check_native_layout(folder)


def test_a_missing_or_unexpected_weight_is_an_error_naming_it(tiny, tmp_path):
    from safetensors.torch import save_file

    folder = _copy(tiny, tmp_path / "broken")
    weights = load_weights(folder)
    weights.pop("model.layers.1.mlp.down_proj.weight")
    weights["model.layers.1.mlp.extra.weight"] = torch.zeros(3)
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(M.LayoutError, match=r"missing 1: model\.layers\.1\.mlp\.down_proj\.weight; "
                                            r"unexpected 1: model\.layers\.1\.mlp\.extra\.weight"):
        M.load_base_model(folder)


def load_weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_attention_implementation_is_ours_not_the_checkpoints(tiny, tmp_path):
    from transformers import Phi4MultimodalForCausalLM

    folder = _copy(tiny, tmp_path / "fa2")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "_attn_implementation": "flash_attention_2"}))
    # What a bare from_pretrained does with such a config where flash-attn is not installed: fail.
    if importlib.util.find_spec("flash_attn") is None:
        with pytest.raises(ImportError, match="flash_attn|FlashAttention"):
            Phi4MultimodalForCausalLM.from_pretrained(folder)
    assert M.load_base_model(folder).config._attn_implementation == "sdpa"
    assert M.load_base_model(folder, attn_implementation="eager").config._attn_implementation == "eager"
    with pytest.raises(ValueError, match="attn_implementation 'flash' is not one of eager, sdpa"):
        M.load_base_model(folder, attn_implementation="flash")


@pytest.mark.parametrize("which", ["real", "tiny"])
def test_flash_attention_2_is_the_text_decoders_only(which, processor):
    """The audio encoder passes a 4-D float mask plus a relative-position bias, which FA2 cannot
    take: under model.attn_implementation flash_attention_2 it stays on sdpa (no flash-attn here,
    so checked on the configuration from_pretrained resolves, as it sets each sub-config)."""
    config = M.real_config() if which == "real" else T.tiny_config(processor.tokenizer)
    config._attn_implementation = M.attn_implementations("flash_attention_2")  # what the loader passes
    assert config._attn_implementation == "flash_attention_2"
    assert config.audio_config._attn_implementation == "sdpa" and config.vision_config._attn_implementation == "sdpa"
    M.check_audio_attention(config)
    for name in ("sdpa", "eager"):  # every other choice is the whole model's
        config._attn_implementation = M.attn_implementations(name)
        assert (config._attn_implementation, config.audio_config._attn_implementation) == (name, name)

    config._attn_implementation = "flash_attention_2"  # set on the whole model, as a bare from_pretrained does
    assert config.audio_config._attn_implementation == "flash_attention_2"
    with pytest.raises(M.LayoutError, match="audio encoder is set to attn_implementation 'flash_attention_2'.*"
                                            "set model.attn_implementation to sdpa"):
        M.check_audio_attention(config)
