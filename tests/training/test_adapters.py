"""pronounce.training.adapters.lora_config for pretrained_r320: every field of the speech LoRA's
adapter_config.json that changes the adapter is carried; any other non-default one is refused
by name."""

import json
import re

import pytest
from conftest import raw_params

from pronounce.core.errors import PipelineError
from pronounce.core.params import parse_params
from pronounce.model import loader as M
from pronounce.training.adapters import lora_config

LAYER0_DOWN = "model.layers.0.mlp.down_proj"


def base_with_speech_lora(tmp_path, **fields):
    """A base folder whose speech-lora/adapter_config.json is the real one's (speech_lora_config,
    as the conversion writes it) with `fields` changed; lora_config reads only the config."""
    folder = tmp_path / "base" / M.SPEECH_LORA_DIR
    M.speech_lora_config().save_pretrained(str(folder))
    path = folder / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))
    (folder / "adapter_model.safetensors").write_bytes(b"")
    return str(tmp_path / "base")


def pretrained_config(base):
    return lora_config(parse_params(raw_params()).train_job("pretrained_r320"), base, None)[0]


def test_every_field_that_changes_the_adapter_is_carried_and_takes_effect(tmp_path):
    from peft import get_peft_model
    from transformers import Phi4MultimodalForCausalLM

    from pronounce.model.tiny import build_tiny_tokenizer, tiny_config

    fields = {"r": 8, "lora_alpha": 32, "use_rslora": True, "rank_pattern": {LAYER0_DOWN: 4},
              "alpha_pattern": {LAYER0_DOWN: 2}, "bias": "lora_only", "lora_dropout": 0.0}
    cfg = pretrained_config(base_with_speech_lora(tmp_path / "a", **fields))
    for key, value in fields.items():
        assert getattr(cfg, key) == value, key
    assert cfg.target_modules == M.SPEECH_LORA_TARGETS and cfg.task_type == "CAUSAL_LM"
    assert pretrained_config(base_with_speech_lora(tmp_path / "dora", use_dora=True)).use_dora is True
    layered = {"target_modules": ["qkv_proj", "down_proj"], "layers_to_transform": [0], "layers_pattern": "layers"}
    cfg_layered = pretrained_config(base_with_speech_lora(tmp_path / "b", **layered))
    assert (set(cfg_layered.target_modules), cfg_layered.layers_to_transform, cfg_layered.layers_pattern) == (
        {"qkv_proj", "down_proj"}, [0], "layers")

    # On the tiny model: the per-module rank and alpha, rank-stabilised scaling; only layer 0.
    tiny = tiny_config(build_tiny_tokenizer())
    layers = get_peft_model(Phi4MultimodalForCausalLM(tiny), cfg).base_model.model.model.layers
    down, qkv = layers[0].mlp.down_proj, layers[0].self_attn.qkv_proj
    assert down.r["default"] == 4 and down.scaling["default"] == pytest.approx(2 / 4 ** 0.5)
    assert qkv.r["default"] == 8 and qkv.scaling["default"] == pytest.approx(32 / 8 ** 0.5)
    layers = get_peft_model(Phi4MultimodalForCausalLM(tiny), cfg_layered).base_model.model.model.layers
    assert hasattr(layers[0].self_attn.qkv_proj, "lora_A") and not hasattr(layers[1].self_attn.qkv_proj, "lora_A")


@pytest.mark.parametrize("fields, named", [
    ({"use_qalora": True}, "use_qalora=True"),
    ({"layer_replication": [[0, 1], [0, 1]]}, "layer_replication="),
    ({"init_lora_weights": "pissa"}, "init_lora_weights='pissa'"),
    ({"modules_to_save": ["lm_head"]}, "modules_to_save=['lm_head']"),
    ({"a_field_from_a_newer_peft": 3}, "a_field_from_a_newer_peft=3"),
])
def test_a_field_the_copy_does_not_carry_is_refused_by_name(tmp_path, fields, named):
    with pytest.raises(PipelineError, match=f"adapter_config.json sets {re.escape(named)}.*does not carry"):
        pretrained_config(base_with_speech_lora(tmp_path, **fields))


def test_fields_at_their_defaults_pass(tmp_path):
    # what any peft writes: every field, most at their defaults; an unknown one left unset
    cfg = pretrained_config(base_with_speech_lora(tmp_path, a_field_from_a_newer_peft=None, init_lora_weights=True))
    assert (cfg.r, cfg.lora_alpha, cfg.lora_dropout) == (M.SPEECH_LORA_R, M.SPEECH_LORA_ALPHA, M.SPEECH_LORA_DROPOUT)
