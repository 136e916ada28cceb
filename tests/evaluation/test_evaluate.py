"""The evaluate stage with the tiny model: the JSONL rows, the cache (no second generation), resuming
an interrupted checkpoint, byte-identical epochs generated once, epoch 0 with the speech LoRA, and
the eval params. (Checkpoint discovery: test_checkpoints; the generator and its cache:
test_generation; the files' format: test_predictions.)"""

import json
import shutil
from dataclasses import dataclass

import pytest
from conftest import ROOT
from eval_world import one_thread, world  # noqa: F401 (fixtures)

from pronounce.core.errors import ParamsError
from pronounce.core.params import EvalJob, load_params, parse_params
from pronounce.evaluation import evaluate as E
from pronounce.evaluation import generation as G
from pronounce.model.tiny import AUDIO_TOKEN
from pronounce.task import prompts
from pronounce.task.predictions import BASE_LABEL, read_jsonl
from pronounce.training.checkpoints import adapter_digest

ROW_KEYS = {"utt_id", "task", "checkpoint", "epoch", "raw", "n_tokens", "stopped", "status", "flags", "fields"}


@pytest.fixture(scope="module", autouse=True)
def single_thread(one_thread):  # noqa: F811 (the fixture imported above)
    """Every test here on one torch thread (see eval_world.one_thread)."""
    yield


def params(batch_size=4, epochs="all", max_new_tokens=6):
    return EvalJob("cfg", seed=0, model_base="builtin:tiny", batch_size=batch_size, max_new_tokens=max_new_tokens,
                   cpu_threads=1, determinism="seeded", epochs=epochs)


def evaluate(world, out, cache, p=None, model_dir="models/cfg"):
    return E.run_evaluate(p or params(), world / "models" / "base", world / "decoded", world / "materialized",
                          None if model_dir is None else world / model_dir, out, cache_dir=cache, progress=False,
                          log=None)


def count_generate_calls(monkeypatch):
    calls = []
    original = G.Generator.__call__

    def counting(self, rows):
        calls.append([(r["utt_id"], r["task"]) for r in rows])
        return original(self, rows)

    monkeypatch.setattr(G.Generator, "__call__", counting)
    return calls


def test_writes_rows_and_reuses_the_cache(world, tmp_path, monkeypatch):
    calls = count_generate_calls(monkeypatch)
    out, cache = tmp_path / "pred", tmp_path / "cache"
    summary = evaluate(world, out, cache)
    assert sorted(p.name for p in out.iterdir()) == ["epoch-1.jsonl", "epoch-2.jsonl", "final.jsonl", "summary.json"]
    # two distinct adapters x 2 batches (3 instances per task, batch size 4, one task per batch):
    # epoch-2 == final is generated once
    assert len(calls) == 4
    assert calls[0] == [("u2", "apa"), ("u3", "apa"), ("u1", "apa")]  # by task, then duration
    assert calls[1] == [("u2", "mdd"), ("u3", "mdd"), ("u1", "mdd")]
    by_name = {c["name"]: c for c in summary["checkpoints"]}
    assert by_name["epoch-2"]["same_as"] == "final" and by_name["final"]["epoch"] == 2
    assert by_name["epoch-1"]["adapter_sha256"] != by_name["final"]["adapter_sha256"]

    final = read_jsonl(out / "final.jsonl")
    assert [(r["utt_id"], r["task"]) for r in final] == [(u, t) for u in ("u1", "u2", "u3") for t in ("apa", "mdd")]
    for r in final:
        assert set(r) == ROW_KEYS
        assert r["checkpoint"] == "final" and r["epoch"] == 2
        assert isinstance(r["raw"], str) and 0 <= r["n_tokens"] <= 6
        assert r["stopped"] in ("eos", "max_new_tokens")
        assert r["status"] and isinstance(r["flags"], list)
        assert AUDIO_TOKEN not in r["raw"]  # the placeholder is suppressed
    epoch2 = read_jsonl(out / "epoch-2.jsonl")
    assert [r["raw"] for r in epoch2] == [r["raw"] for r in final] and epoch2[0]["checkpoint"] == "epoch-2"
    assert not list(cache.glob("*.partial.jsonl"))
    first = {p.name: p.read_bytes() for p in out.iterdir()}

    # Second run: everything comes from the cache; generating or even loading a model is an error.
    def boom(*args, **kwargs):
        raise AssertionError("generated again")

    monkeypatch.setattr(G.Generator, "__call__", boom)
    monkeypatch.setattr(E, "load_model", boom)
    shutil.rmtree(out)  # DVC deletes a stage's outputs before rerunning it
    evaluate(world, out, cache)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first  # byte-identical


def test_changed_eval_params_miss_the_cache(world, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    evaluate(world, tmp_path / "a", cache, params(epochs="none"))
    calls = count_generate_calls(monkeypatch)
    evaluate(world, tmp_path / "b", cache, params(epochs="none", max_new_tokens=5))
    assert len(calls) == 2  # a new key: generated again


def test_interrupted_checkpoint_resumes_from_its_last_batch(world, tmp_path, monkeypatch):
    reference = tmp_path / "ref"
    evaluate(world, reference, tmp_path / "cache-ref", params(batch_size=2, epochs="none"))

    original = G.Generator.__call__
    calls = []

    def dies_on_second_batch(self, rows):
        calls.append(rows)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, rows)

    monkeypatch.setattr(G.Generator, "__call__", dies_on_second_batch)
    cache = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        evaluate(world, tmp_path / "out", cache, params(batch_size=2, epochs="none"))
    assert not (tmp_path / "out").exists()  # nothing that looks finished
    assert len(list(cache.glob("*.partial.jsonl"))) == 1

    resumed = count_generate_calls(monkeypatch)
    monkeypatch.setattr(G.Generator, "__call__", lambda self, rows: (resumed.append(rows), original(self, rows))[1])
    evaluate(world, tmp_path / "out", cache, params(batch_size=2, epochs="none"))
    assert len(resumed) == 3  # batches 2-4 of 4 (2+1 APA, 2+1 MDD); batch 1 came from the partial file
    assert (tmp_path / "out" / "final.jsonl").read_bytes() == (reference / "final.jsonl").read_bytes()


def test_batch_size_one_and_sorted_batches_are_well_formed(world, tmp_path):
    results = {}
    for bs in (1, 6):
        evaluate(world, tmp_path / f"bs{bs}", tmp_path / "cache", params(batch_size=bs, epochs="none"))
        rows = read_jsonl(tmp_path / f"bs{bs}" / "final.jsonl")
        assert [(r["utt_id"], r["task"]) for r in rows] == [(u, t) for u in ("u1", "u2", "u3") for t in ("apa", "mdd")]
        assert all(set(r) == ROW_KEYS for r in rows)
        results[bs] = rows
    summary = json.loads((tmp_path / "bs1" / "summary.json").read_text())
    assert summary["eval"] == {"batch_size": 1, "max_new_tokens": 6, "cpu_threads": 1}
    # (That the texts do not depend on the batch size is test_audio_mask's; float rounding could
    # still flip a near-tied token, which is why the batch size is part of the cache key.)
    assert {c["cache_key"] for c in summary["checkpoints"]}.isdisjoint(
        c["cache_key"] for c in json.loads((tmp_path / "bs6" / "summary.json").read_text())["checkpoints"])


def test_base_model_is_epoch_zero_with_its_speech_lora(world, tmp_path):
    """The "no training" row is the base model as it hears: with its speech LoRA switched on."""
    import torch

    from pronounce.data.audio import AudioStore
    from pronounce.model.loader import load_base_model, speech_lora_path
    from pronounce.model.processor import load_processor
    from pronounce.training.collator import PronunciationCollator

    base = world / "models" / "base"
    summary = evaluate(world, tmp_path / "base", tmp_path / "cache", model_dir=None)
    assert summary["model"] == BASE_LABEL == "base + speech LoRA (no training)"
    assert [c["name"] for c in summary["checkpoints"]] == ["epoch-0"]
    (ckpt,) = summary["checkpoints"]
    assert ckpt["adapter"] == "speech-lora"
    assert ckpt["adapter_sha256"] == adapter_digest(speech_lora_path(base))
    assert json.loads((tmp_path / "base" / "summary.json").read_text())["model"] == BASE_LABEL
    rows = read_jsonl(tmp_path / "base" / "epoch-0.jsonl")
    assert len(rows) == 6 and {r["epoch"] for r in rows} == {0}

    # the loader evaluate uses for epoch 0 really switches the speech LoRA on: other logits
    processor = load_processor(base)
    store = AudioStore(world / "decoded" / "test.arrow")
    batch = PronunciationCollator(processor, audio_lookup=lambda r: store[r["audio_row"]]).collate_for_generation(
        G.test_instances(world / "materialized")[:2])
    heard = E.load_model(str(base), None, processor, speech_lora_path(base), speech_lora=True)
    assert heard.active_adapters == ["default"]
    with torch.inference_mode():
        ours = heard(**batch).logits
        bare = load_base_model(base).eval()(**batch).logits
    assert (ours - bare).abs().max().item() > 1e-4


def test_the_base_model_is_prompted_without_control_tokens_and_a_config_with_them(world, tmp_path, monkeypatch):
    """The paper's baseline is the model "for inference without control tokens or additional
    training" (section 3.1): epoch 0's prompts are the task prompts alone; a trained config's
    carry <|APA|>/<|MDD|>, as in training. Checked on what reaches the generator, and recorded."""
    seen = []
    original = G.Generator.__call__

    def recording(self, rows):
        seen.extend((r["task"], r["prompt"]) for r in rows)
        return original(self, rows)

    monkeypatch.setattr(G.Generator, "__call__", recording)
    base = evaluate(world, tmp_path / "base", tmp_path / "cache", model_dir=None)
    heard_by_base, seen[:] = list(seen), []
    trained = evaluate(world, tmp_path / "cfg", tmp_path / "cache", params(epochs="none"))
    expected = {task: prompts.user_turn(task, AUDIO_TOKEN, control_token=False) for task in prompts.TASKS}
    assert len(heard_by_base) == 6 and all(p == expected[t] for t, p in heard_by_base)
    assert not any(tok in p for _, p in heard_by_base for tok in prompts.CONTROL_TOKENS.values())
    assert len(seen) == 6 and all(p == prompts.user_turn(t, AUDIO_TOKEN) for t, p in seen)
    assert all(prompts.CONTROL_TOKENS[t] in p for t, p in seen)
    assert base["control_tokens"] is False and base["prompts"] == {t: [expected[t]] for t in prompts.TASKS}
    assert trained["control_tokens"] is True
    assert trained["prompts"] == {t: [prompts.user_turn(t, AUDIO_TOKEN)] for t in prompts.TASKS}


def with_epochs(epochs, profile="smoke"):
    import yaml

    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    raw["eval"]["epochs"], raw["train"]["profile"] = epochs, profile
    return parse_params(raw)


def test_params_schema_accepts_the_eval_section():
    for ok, want in (("all", "all"), ("none", "none"), ("last:2", "last:2"), ([1, 2, 3], (1, 2, 3)),
                     ({"paper": "all", "smoke": "last:2"}, "last:2")):
        assert with_epochs(ok).eval_job("paper_r64").epochs == want
    for bad in ("last:0", "first", [0], 3, {}, {"smoke": "first"}, {"smoke": [0]}):
        with pytest.raises(ParamsError, match=r"eval.epochs must be (all, none, last:<n>|str or list or dict)"):
            with_epochs(bad)


def test_eval_epochs_follow_the_training_profile(tmp_path):
    import yaml

    shipped = load_params(ROOT / "params.yaml")
    assert shipped.train.recipes["paper"].epochs == 4  # Table 3's epochs 1-4
    for profile, want in (("paper", "all"), ("smoke", "last:2")):
        assert shipped.eval.epochs_for(profile) == want
        assert with_epochs({"paper": "all", "smoke": "last:2"}, profile).eval_job("pretrained_r320").epochs == want
    assert with_epochs([1, 3], "paper").eval_job("paper_r64").epochs == (1, 3)  # one value for every profile
    assert with_epochs([1, 3]).eval_job("base").epochs is None  # the base model: epoch 0 only
    with pytest.raises(ParamsError, match=r"eval.epochs has no entry for train.profile 'paper' \(it has smoke\)"):
        with_epochs({"smoke": "all"}).eval.epochs_for("paper")
    path = ROOT / "params.yaml"
    text = yaml.safe_load(path.read_text(encoding="utf-8"))
    text["eval"]["epochs"] = {"smoke": "all"}
    text["train"]["profile"] = "paper"
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(text), encoding="utf-8")
    with pytest.raises(ParamsError, match="eval.epochs has no entry for train.profile 'paper'"):
        load_params(bad)


APA = '{"accuracy": 8, "fluency": 7, "prosodic": 6, "total": 7}'
MDD = '{"word_transcript": "a cat", "phoneme_transcript": "AH K AE T"}'


@dataclass
class Named:
    name: str
    epoch: int | None


def gen(utt, task, raw, stopped="eos"):
    return {"utt_id": utt, "task": task, "raw": raw, "n_tokens": 7, "stopped": stopped}


def test_prediction_rows_are_sorted_and_parsed():
    rows = E.prediction_rows(Named("epoch-2", 2), [gen("u2", "apa", APA), gen("u1", "mdd", MDD),
                                                 gen("u1", "apa", "I cannot rate this.", "max_new_tokens")])
    assert [(r["utt_id"], r["task"]) for r in rows] == [("u1", "apa"), ("u1", "mdd"), ("u2", "apa")]
    assert rows[0] == {"utt_id": "u1", "task": "apa", "checkpoint": "epoch-2", "epoch": 2,
                       "raw": "I cannot rate this.", "n_tokens": 7, "stopped": "max_new_tokens",
                       "status": "no_fields", "flags": [], "fields": None}
    assert rows[1]["status"] == "json" and rows[1]["fields"] == {"word_transcript": "a cat",
                                                                  "phoneme_transcript": ["AH", "K", "AE", "T"]}
    assert rows[2]["fields"] == {"accuracy": 8, "fluency": 7, "prosodic": 6, "total": 7}
    assert E.prediction_rows(Named("final", None), [gen("u1", "apa", APA)])[0]["epoch"] is None
