"""builtin:tiny is the real model in every structural way: only the sizes (and what follows from
them) differ, each difference listed with its reason in tiny.ALLOWED_DIFFERENCES."""

import copy
import json
import re

import pytest
from conftest import ROOT

from pronounce.model import tiny as T
from pronounce.model.loader import REAL_CONFIG, SPEECH_LORA_DIR, real_config, speech_lora_config
from pronounce.model.processor import load_processor
from pronounce.task import prompts
from pronounce.training.adapters import control_token_ids


@pytest.fixture(scope="module")
def tiny_dir(tiny_base):
    return tiny_base  # the test run's models/base: build_tiny_model(seed=1234) plus base.json


@pytest.fixture(scope="module")
def tiny_cfg(tiny_dir):
    from transformers import Phi4MultimodalConfig

    return Phi4MultimodalConfig.from_pretrained(tiny_dir)  # as the pipeline loads it


def differences(real, tiny, path="") -> list[str]:
    """Dotted paths of every field whose value differs (or exists on one side only), recursively."""
    if isinstance(real, dict) and isinstance(tiny, dict):
        return [d for key in sorted(set(real) | set(tiny), key=str)
                for d in differences(real.get(key, "<absent>"), tiny.get(key, "<absent>"), f"{path}{key}.")]
    return [] if real == tiny else [path.rstrip(".")]


def test_the_tiny_configuration_differs_from_the_real_one_only_where_the_table_says(tiny_cfg):
    assert set(tiny_cfg.to_dict()) >= {"audio_config", "vision_config"}
    found = set(differences(real_config().to_dict(), tiny_cfg.to_dict())) - {"transformers_version"}
    unexplained = sorted(found - set(T.ALLOWED_DIFFERENCES))
    assert not unexplained, f"differences from the real configuration with no stated reason: {unexplained}"
    stale = sorted(set(T.ALLOWED_DIFFERENCES) - found)
    assert not stale, f"ALLOWED_DIFFERENCES lists fields that no longer differ: {stale}"
    assert all(len(reason) > 20 for reason in T.ALLOWED_DIFFERENCES.values())


def test_the_walk_sees_a_structural_change():
    """The walk itself can fail: an untied head or another rope type is a difference it names."""
    real = real_config().to_dict()
    changed = copy.deepcopy(real)
    changed["tie_word_embeddings"] = False
    changed["rope_parameters"]["rope_type"] = "default"
    changed["audio_config"]["bias_max_distance"] = 100
    assert differences(real, changed) == ["audio_config.bias_max_distance", "rope_parameters.rope_type",
                                          "tie_word_embeddings"]


def test_the_vendored_config_is_the_reference_one():
    reference = ROOT.parent / "shared" / "reference" / "phi4-multimodal-instruct" / "config.json"
    if not reference.is_file():
        pytest.skip(f"{reference} is not on this machine")
    assert json.loads(REAL_CONFIG.read_text()) == json.loads(reference.read_text())


def test_what_the_allowed_sizes_keep(tiny_cfg):
    """Within the allowed differences, the rules the real model follows still hold."""
    real = real_config()
    assert tiny_cfg.tie_word_embeddings is True
    ratio = lambda c: c.num_attention_heads / c.num_key_value_heads  # noqa: E731
    assert ratio(tiny_cfg) == ratio(real) == 3
    for cfg in (real, tiny_cfg):  # head_dim = hidden / heads; one rope factor per rotary frequency
        head_dim = cfg.hidden_size // cfg.num_attention_heads
        assert head_dim * cfg.num_attention_heads == cfg.hidden_size
        rotary = int(head_dim * cfg.rope_parameters["partial_rotary_factor"])
        for key in ("short_factor", "long_factor"):
            assert len(cfg.rope_parameters[key]) == rotary // 2, key
    assert set(tiny_cfg.rope_parameters["short_factor"]) == set(real.rope_parameters["short_factor"]) == {1.0}
    assert tiny_cfg.rope_parameters["long_factor"][0] == real.rope_parameters["long_factor"][0]
    assert tiny_cfg.rope_parameters["long_factor"][-1] == real.rope_parameters["long_factor"][-1]
    assert tiny_cfg.intermediate_size / tiny_cfg.hidden_size == real.intermediate_size / real.hidden_size
    audio, real_audio = tiny_cfg.audio_config, real.audio_config
    assert audio.ext_pw_out_channel == audio.depthwise_separable_out_channel == audio.hidden_size
    assert real_audio.ext_pw_out_channel == real_audio.depthwise_separable_out_channel == real_audio.hidden_size


def test_the_special_token_layout_is_the_real_ones(tiny_dir, tiny_cfg):
    """pad = bos = eos[0] (<|endoftext|>), eos[1] = <|end|>, the audio placeholder's id in the
    config and the processor, and a vocabulary padded past the tokenizer in which the task
    tokens, added by load_processor, get ids of their own (as 200,064 rows pad the real one)."""
    real = real_config()
    for cfg in (real, tiny_cfg):
        assert cfg.pad_token_id == cfg.bos_token_id == cfg.eos_token_id[0] and len(cfg.eos_token_id) == 2
        assert cfg.vocab_size % 64 == 0
    assert (real.pad_token_id, real.eos_token_id[1], real.audio_config.audio_token_id) == (199999, 200020, 200011)
    bare = load_processor(tiny_dir, add_control_tokens=False)
    assert prompts.APA_TOKEN not in bare.tokenizer.get_vocab(), "the task tokens are new, as for the real tokenizer"
    processor = load_processor(tiny_dir)
    tok = processor.tokenizer
    assert tok.convert_ids_to_tokens(tiny_cfg.eos_token_id) == [T.ENDOFTEXT, prompts.END]
    assert tok.pad_token_id == tok.eos_token_id == tiny_cfg.pad_token_id
    assert processor.audio_token_id == tiny_cfg.audio_config.audio_token_id
    ids = control_token_ids(processor)
    assert len(bare.tokenizer) <= min(ids) and max(ids) < tiny_cfg.vocab_size, "inside the padding rows"


def test_the_speech_lora_has_the_real_structure(tiny_dir):
    """r 320, alpha 640, dropout 0.01 and the text decoder's four projections of every layer."""
    from safetensors.torch import load_file

    saved = json.loads((tiny_dir / SPEECH_LORA_DIR / "adapter_config.json").read_text())
    real = speech_lora_config()
    assert (saved["r"], saved["lora_alpha"], saved["lora_dropout"]) == (real.r, real.lora_alpha, real.lora_dropout)
    assert (saved["r"], saved["lora_alpha"], saved["lora_dropout"]) == (320, 640, 0.01)
    assert saved["target_modules"] == real.target_modules
    keys = load_file(tiny_dir / SPEECH_LORA_DIR / "adapter_model.safetensors")
    layers = {int(re.search(r"layers\.(\d+)\.", k).group(1)) for k in keys}
    assert layers == set(range(T.TINY_LAYERS))
    assert len(keys) == 2 * 4 * T.TINY_LAYERS  # lora_A and lora_B of four projections per layer


def test_the_docs_list_the_table():
    page = (ROOT / "docs" / "tiny-model.md").read_text(encoding="utf-8")
    missing = [field for field in T.ALLOWED_DIFFERENCES if f"`{field}`" not in page]
    assert not missing, f"docs/tiny-model.md's table lacks {missing}"


def test_the_output_norm_lets_a_token_be_likely(tiny_dir):
    """tiny.calibrate_output: with the final norm's weight at transformers' 1, a hidden state aligned
    with a token's embedding row gives it at most ~0.8% (the tied head's logits stay under ~3); at
    OUTPUT_NORM_WEIGHT the model can be confident, as a trained one is."""
    import torch

    from pronounce.model.loader import load_base_model

    model = load_base_model(tiny_dir)
    assert torch.all(model.model.norm.weight == T.OUTPUT_NORM_WEIGHT)
    emb = model.get_output_embeddings().weight.detach()
    token = 100
    aligned = emb[token] / emb[token].norm() * T.TINY_HIDDEN**0.5  # what RMSNorm leaves: norm sqrt(hidden)

    def best(weight):
        return torch.softmax(emb @ (aligned * weight), 0)[token].item()
    assert best(1.0) < 0.01  # transformers' initialisation: never confident
    assert best(T.OUTPUT_NORM_WEIGHT) > 0.5
    with torch.no_grad():  # and the model's own head applies it (its last norm feeds lm_head)
        hidden = model.model.norm(aligned[None, None])
    assert torch.softmax(model.lm_head(hidden)[0, 0], 0)[token].item() > 0.5
