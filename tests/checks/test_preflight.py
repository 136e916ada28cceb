"""The preflight on the tiny model: its report, its projections, and broken setups it must stop."""

import json
import math
import shutil

import pytest
import yaml
from conftest import BUNDLED, raw_params

from pronounce.checks.preflight import PreflightError, main, run_preflight
from pronounce.core.params import parse_params
from pronounce.model.guards import AudioTokenMismatch
from pronounce.model.tiny import (
    TINY_BPE_VOCAB_SIZE,
    TINY_HEADS,
    TINY_HIDDEN,
    TINY_KV_HEADS,
    TINY_MLP,
    TINY_SPECIAL_TOKENS,
)


def preflight_params() -> dict:
    """params.yaml's dict on the bundled corpus with the smoke recipe."""
    p = raw_params()
    p["data"]["corpus"] = str(BUNDLED)
    p["train"]["profile"] = "smoke"
    p["eval"]["max_new_tokens"] = 8  # seconds, not minutes; the projection scales with it anyway
    return p


@pytest.fixture
def params():
    return preflight_params()


@pytest.fixture(scope="module")
def report():
    p = parse_params(preflight_params())
    # No models/base or data/decoded there: both are made in a scratch folder.
    return p, run_preflight(p, base_dir="/nonexistent/base", decoded_dir="/nonexistent/decoded", steps=3,
                            log=lambda m: None)


def lora_sizes(hidden, inter, heads, kv, layers):
    """r-independent LoRA size per unit rank: in + out features of the 4 projections, every layer."""
    head = hidden // heads
    qkv, gate_up = hidden + 2 * kv * head, 2 * inter
    return layers * ((hidden + qkv) + (hidden + hidden) + (hidden + gate_up) + (inter + hidden))


@pytest.mark.slow  # the preflight runs training steps and a generation
def test_the_report_holds_every_check_and_figure(report):
    p, r = report
    checks = r["checks"]
    assert checks["layout"] == "phi4_multimodal"
    # <|audio|> is the 7th special token after the BPE vocabulary: 2048 + 6
    assert checks["audio_token_id"] == TINY_BPE_VOCAB_SIZE + TINY_SPECIAL_TOKENS.index("<|audio|>") == 2054
    per_unit = lora_sizes(TINY_HIDDEN, TINY_MLP, TINY_HEADS, TINY_KV_HEADS, 2)  # the tiny model's shapes
    audio = tiny_audio_params()
    epochs = p.train.recipes["smoke"].epochs  # the projection scales with the recipe's epochs
    batch = p.train.recipes["smoke"].batch_size
    for name, x in r["configs"].items():
        assert x["lora_modules"] == 2 * 4  # 2 text layers x 4 projections
        assert x["lora_params"] == x["lora_r"] * per_unit
        # besides the adapter: the embedding rows of the two control tokens <|APA|>/<|MDD|> (2 x
        # hidden; lm_head is tied to them), the same for every config; Unfreeze's audio encoder and projector
        assert x["audio_params"] == (audio if p.configs[name].unfreeze_audio else 0)
        assert x["trainable_params"] == x["lora_params"] + 2 * TINY_HIDDEN + x["audio_params"]
        assert x["steps"] == 3 and len(x["step_shapes"]) == 3
        rows, width, tokens = max(x["step_shapes"], key=lambda s: s[1])
        assert rows == batch and 0 < tokens <= rows * width and x["tokens_per_step"] == tokens
        # the longest clip's audio placeholders alone (one per 80 ms) fit in the widest batch
        assert width > math.ceil(r["longest_train_seconds"] * 100 / 8)
        assert x["step_seconds"] > 0 and x["gen_batch_seconds"] > 0
        assert x["train_peak_bytes"] > 0 and x["gen_peak_bytes"] > 0
        assert x["gen_batch"] == 8 and x["gen_new_tokens"] == 8  # made to run the full max_new_tokens
        proj = x["projected"]
        assert proj["micro_batches_per_epoch"] == math.ceil(2 * 67 / batch)  # bundled corpus: 67 train utterances
        assert proj["train_seconds"] == pytest.approx(proj["micro_batches_per_epoch"] * epochs * x["step_seconds"])
        # at the probe's padded tokens/s over the corpus's tokens: below the bound of all-longest batches
        assert proj["train_seconds_expected"] == pytest.approx(epochs * r["train_tokens_per_epoch"] / x["padded_tokens_per_s"])
        assert 0 < proj["train_seconds_expected"] < proj["train_seconds"]
        assert proj["checkpoints_evaluated"] == 2  # eval.epochs last:2, the final adapter being the last epoch's
        assert proj["eval_batches"] == 2 * math.ceil(40 / 8)
        assert proj["eval_seconds"] == pytest.approx(2 * proj["eval_batches"] * x["gen_batch_seconds"])
        assert x["fits"] is (proj["peak_bytes"] <= r["device_memory_bytes"])
        # a step is its forward (compute_loss), backward and optimizer; a generation its prefill and new tokens
        assert x["forward_seconds"] > 0 and x["optimizer_seconds"] > 0
        assert x["forward_seconds"] + x["backward_seconds"] + x["optimizer_seconds"] == pytest.approx(x["step_seconds"])
        # timed warm, each decode step on its own clock: positive, and within the batch's time
        assert x["gen_prefill_seconds"] > 0 and x["gen_token_seconds"] > 0
        assert x["gen_prefill_seconds"] + 7 * x["gen_token_seconds"] <= x["gen_batch_seconds"]
        # answers stop at their task's longest training answer (<= max_new_tokens = 8 here)
        assert set(proj["answer_tokens"]) == {"apa", "mdd"} and all(0 < n <= 8 for n in proj["answer_tokens"].values())
        assert proj["eval_seconds_expected"] == pytest.approx(2 * sum(
            math.ceil(40 / 8) * (x["gen_prefill_seconds"] + x["gen_token_seconds"] * n) for n in proj["answer_tokens"].values()))
        assert x["eval_batch_fits"] is None  # measured on a GPU only
        assert x["weights_bytes"] > 0
    assert r["configs"]["pretrained_r320"]["lora_params"] == 5 * r["configs"]["paper_r64"]["lora_params"]
    assert r["configs"]["unfreeze"]["lora_params"] == r["configs"]["pretrained_r320"]["lora_params"]
    assert r["configs"]["unfreeze"]["audio_params"] > 0
    total = r["projected"]
    assert total["total_seconds"] == pytest.approx(total["base_eval_seconds"] + sum(
        x["projected"]["train_seconds"] + x["projected"]["eval_seconds"] for x in r["configs"].values()))
    assert total["total_seconds_expected"] == pytest.approx(total["base_eval_seconds"] + sum(
        x["projected"]["train_seconds_expected"] + x["projected"]["eval_seconds_expected"] for x in r["configs"].values()))
    assert total["eval_share_expected"] == pytest.approx(total["eval_seconds_expected"] / total["total_seconds_expected"])
    assert total["generations"] == 40 * 2 * (1 + 3 * 2)  # 40 test utterances x 2 tasks x (base + 2 per config)
    assert r["projected_for"] == {"train_utterances": 67, "test_utterances": 40,
                                  "train_tokens_per_epoch": r["train_tokens_per_epoch"]}
    # every instance holds at least its clip's audio tokens and a prompt; the longest is the widest
    assert r["train_tokens_per_epoch"] > 2 * 67 * 10
    assert total["peak_bytes"] == max(x["projected"]["peak_bytes"] for x in r["configs"].values())
    assert total["fits"] is True and r["train_utterances"] == 67 and r["test_utterances"] == 40


def tiny_audio_params() -> int:
    """The tiny model's audio encoder and speech projector, counted from its modules."""
    import torch
    from transformers import Phi4MultimodalForCausalLM

    from pronounce.model.tiny import build_tiny_tokenizer, tiny_config
    from pronounce.training.adapters import AUDIO_MODULES

    with torch.device("meta"):
        model = Phi4MultimodalForCausalLM(tiny_config(build_tiny_tokenizer()))
    return sum(p.numel() for m in AUDIO_MODULES for p in model.get_submodule(m).parameters())


def _broken_base(tmp_path, edit, tiny_base):
    base = tmp_path / "base"
    shutil.copytree(tiny_base, base)  # the test run's models/base (builtin:tiny, seed 1234), a copy to break
    config = json.loads((base / "config.json").read_text())
    edit(config)
    (base / "config.json").write_text(json.dumps(config))
    return base


def test_a_mismatched_audio_token_id_stops_it(params, tmp_path, tiny_base):
    base = _broken_base(tmp_path, lambda c: c["audio_config"].update(audio_token_id=c["vision_config"]["image_token_id"]),
                        tiny_base)
    with pytest.raises(AudioTokenMismatch, match=r"processor\.audio_token_id is \d+ .*audio_config\.audio_token_id is \d+: the model would ignore"):
        run_preflight(parse_params(params), base_dir=base, decoded_dir=tmp_path / "none", log=lambda m: None)


def test_the_paper_recipe_on_a_torch_without_a_gpu_stops_it_with_one_line(params, tmp_path, capsys, monkeypatch):
    """As the train stage would refuse it (train.recipes.paper.allow_cpu false), before any model or
    corpus is touched; the smoke recipe runs on this CPU (the report fixture)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    params["train"]["profile"] = "paper"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)  # no models/base, no data/decoded: nothing is built before the refusal
    assert main([]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("preflight: FAILED params.yaml: train.profile paper is a GPU recipe")
    assert "train.recipes.paper.allow_cpu: true" in err[0] and not (tmp_path / "models").exists()


def test_the_remote_code_layout_stops_it_with_one_line(params, tmp_path, capsys, monkeypatch, tiny_base):
    _broken_base(tmp_path / "models", lambda c: c.update(model_type="phi4mm"), tiny_base)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)  # models/base is the broken one; data/decoded is made
    assert main([]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("preflight: FAILED layout: ")
    assert "model_type 'phi4mm'" in err[-1] and "refs/pr/70" in err[-1]


def test_an_unknown_config_is_named(params):
    with pytest.raises(PreflightError, match="no config 'nope'"):
        run_preflight(parse_params(params), configs=["nope"], log=lambda m: None)


def test_a_scratch_base_is_built_with_the_params_attention(tmp_path):
    """A base the preflight builds itself records model.attn_implementation, as the base stage's does."""
    from pronounce.checks.preflight import resolve_inputs
    from pronounce.model.manifest import MANIFEST

    p = preflight_params()
    p["model"]["attn_implementation"] = "eager"
    decoded = tmp_path / "decoded"  # already decoded: resolve_inputs takes it as it is
    decoded.mkdir()
    for name in ("train.arrow", "test.arrow", "report.json"):
        (decoded / name).write_text("")
    source, _, got = resolve_inputs(parse_params(p), tmp_path / "no-base", decoded, tmp_path)
    assert got == decoded
    assert json.loads((tmp_path / "base" / MANIFEST).read_text())["attn_implementation"] == "eager"


def test_the_probe_generates_as_the_evaluate_stage_does(params, monkeypatch, tmp_path):
    """After its training steps, the probe generates with the task-token rows merged into the
    embedding, as the evaluate stage's model does (generation.load_model): unmerged, every decode
    step would copy the embedding matrix twice and the projected evaluation would not be the stage's."""
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer

    from pronounce.evaluation import generation
    seen = []
    call = generation.Generator.__call__

    def recording(self, rows, **kw):
        seen.append([m.merged for m in self.model.modules() if isinstance(m, TrainableTokensLayer)])
        return call(self, rows, **kw)

    monkeypatch.setattr(generation.Generator, "__call__", recording)
    run_preflight(parse_params(params), base_dir="/nonexistent/base", decoded_dir=tmp_path / "decoded", steps=1,
                  configs=["paper_r64"], log=lambda m: None)
    assert seen and all(layers == [True, True] for layers in seen)  # the input embedding and the tied lm_head


def test_generation_is_timed_warm_so_no_figure_goes_negative(params, monkeypatch, tmp_path):
    """The first generation pays for warm-up (here made 5 s slower than the rest): the figures come
    from a warm run, each decode step on its own clock, so the prefill and the time per new token
    are positive and add up within the batch's time (a cold prefill subtracted from a warm whole
    once gave a negative time per token)."""
    import time

    from pronounce.evaluation import generation
    call, calls = generation.Generator.__call__, []

    def first_is_slow(self, rows, **kw):
        calls.append(rows)
        if len(calls) == 1:
            time.sleep(5)
        return call(self, rows, **kw)

    monkeypatch.setattr(generation.Generator, "__call__", first_is_slow)
    r = run_preflight(parse_params(params), base_dir="/nonexistent/base", decoded_dir=tmp_path / "decoded", steps=1,
                      configs=["paper_r64"], log=lambda m: None)
    x = r["configs"]["paper_r64"]
    assert len(calls) == 2 and x["gen_new_tokens"] == 8
    assert x["gen_prefill_seconds"] > 0 and x["gen_token_seconds"] > 0
    assert x["gen_prefill_seconds"] + 7 * x["gen_token_seconds"] <= x["gen_batch_seconds"] < 5  # not the slowed first call


def test_a_probe_that_computes_nan_stops_it(params, tmp_path, tiny_base):
    """A step that runs but computes garbage (here a NaN final norm: every logit NaN) fails the
    preflight by name, with the losses it saw, instead of printing a table of times."""
    import torch
    from safetensors.torch import load_file, save_file

    base = _broken_base(tmp_path, lambda c: None, tiny_base)
    path = base / "model.safetensors"
    weights = load_file(path)
    weights["model.norm.weight"] = torch.full_like(weights["model.norm.weight"], float("nan"))
    save_file(weights, path, metadata={"format": "pt"})
    with pytest.raises(PreflightError, match=r"paper_r64: the probe's training steps computed losses \[nan\]"):
        run_preflight(parse_params(params), base_dir=base, decoded_dir=tmp_path / "none", steps=1,
                      configs=["paper_r64"], log=lambda m: None)
