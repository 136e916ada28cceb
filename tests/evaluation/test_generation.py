"""Generation: the order and batches of the test instances, the cache key, the generation cache's
files (finished, partial, torn), resuming a checkpoint, and the preallocated key/value cache."""

import json

import pytest
from eval_world import one_thread, world  # noqa: F401 (fixtures)

from pronounce.core.artifacts import ArrowWriter
from pronounce.evaluation import generation as G
from pronounce.evaluation import kvcache
from pronounce.task.materialize import SCHEMA as INSTANCE_SCHEMA
from pronounce.training.checkpoints import EvalError


def test_generation_version_is_pinned():
    # Bumping it orphans every cached generation: a deliberate act, never a side effect of a refactor.
    assert G.GENERATION_VERSION == 3


def test_instances_come_by_task_then_duration(world):
    rows = G.test_instances(world / "materialized")
    assert [(r["task"], r["utt_id"]) for r in rows] == [
        (task, u) for task in ("apa", "mdd") for u in ("u2", "u3", "u1")]  # 0.6 s, 0.9 s, 1.2 s
    assert set(rows[0]) == {"utt_id", "task", "prompt", "audio_row", "duration"}


def _materialized(folder, keys):
    folder.mkdir()
    w = ArrowWriter(folder / "test.arrow", INSTANCE_SCHEMA)
    for utt, task in keys:
        w.write({"utt_id": utt, "split": "test", "task": task, "prompt": "p", "answer": "{}", "text": "p",
                 "audio_row": 0, "duration": 1.0, "input_ids": [0]})
    w.close()
    return folder


def test_instances_refuse_an_empty_or_duplicated_test_split(tmp_path):
    with pytest.raises(EvalError, match="test.arrow has no instances"):
        G.test_instances(_materialized(tmp_path / "empty", []))
    with pytest.raises(EvalError, match=r"test.arrow has duplicate \(utt_id, task\) instances"):
        G.test_instances(_materialized(tmp_path / "dup", [("u1", "apa"), ("u1", "mdd"), ("u1", "apa")]))


def test_batches_never_mix_tasks_when_a_task_does_not_fill_its_last_batch():
    rows = [{"utt_id": f"u{i}", "task": task} for task in ("apa", "mdd") for i in range(3)]
    batches = G.make_batches(rows, 2)
    assert [[(r["task"], r["utt_id"]) for r in b] for b in batches] == [
        [("apa", "u0"), ("apa", "u1")], [("apa", "u2")], [("mdd", "u0"), ("mdd", "u1")], [("mdd", "u2")]]
    assert [len(b) for b in G.make_batches(rows, 3)] == [3, 3]


def test_cache_key_changes_with_everything_a_generation_depends_on():
    gp = {"batch_size": 8, "max_new_tokens": 160, "cpu_threads": 1}
    key, parts = G.cache_key("a" * 64, "b" * 64, gp, "c" * 64)
    assert len(key) == 24 and int(key, 16) >= 0
    assert G.cache_key("a" * 64, "b" * 64, dict(gp), "c" * 64)[0] == key  # a pure function of its inputs
    assert parts["generation_version"] == G.GENERATION_VERSION and parts["eval"] == gp
    assert parts["code"] == G.generation_code()
    assert set(parts["versions"]) == {"torch", "transformers", "peft"}
    others = {G.cache_key("x" * 64, "b" * 64, gp, "c" * 64)[0], G.cache_key("a" * 64, "x" * 64, gp, "c" * 64)[0],
              G.cache_key("a" * 64, "b" * 64, {**gp, "batch_size": 1}, "c" * 64)[0],
              G.cache_key("a" * 64, "b" * 64, gp, "x" * 64)[0],
              # the same test set prompted otherwise (the base model: without control tokens)
              G.cache_key("a" * 64, "b" * 64, gp, "c" * 64, prompts={"apa": ["<|user|><|audio|>Rate"]})[0]}
    assert len(others) == 5 and key not in others
    assert G.cache_key("a" * 64, "b" * 64, gp, "c" * 64, prompts={"apa": ["x"]})[0] == \
        G.cache_key("a" * 64, "b" * 64, gp, "c" * 64, prompts={"apa": ["x"]})[0]


def test_cache_key_covers_the_code_generation_runs_and_only_that(tmp_path):
    """An edit to a module generating runs (here audio_mask.py, which the model loader installs)
    misses the cache; an edit to one it does not run (parse.py, applied after the cache) hits it."""
    import shutil

    from pronounce.core.code_deps import SRC

    src = tmp_path / "src"
    shutil.copytree(SRC / "pronounce", src / "pronounce", ignore=shutil.ignore_patterns("__pycache__"))
    code = G.generation_code(src)
    assert code == G.generation_code()  # a copy of the same source: the same digest
    assert {"pronounce/evaluation/generation.py", "pronounce/training/collator.py", "pronounce/model/loader.py",
            "pronounce/model/audio_mask.py", "pronounce/evaluation/kvcache.py", "pronounce/core/determinism.py",
            "pronounce/core/code_deps.py"} <= set(code["modules"])
    assert not {"pronounce/task/parse.py", "pronounce/evaluation/evaluate.py",
                "pronounce/scoring/score.py"} & set(code["modules"])
    gp = {"batch_size": 8, "max_new_tokens": 160, "cpu_threads": 1}
    key = G.cache_key("a" * 64, "b" * 64, gp, "c" * 64, code)[0]

    def edited(module):
        path = src / "pronounce" / module
        original = path.read_text()
        path.write_text(original + "\n# a fix\n")
        try:
            return G.cache_key("a" * 64, "b" * 64, gp, "c" * 64, G.generation_code(src))[0]
        finally:
            path.write_text(original)

    assert edited("model/audio_mask.py") != key
    assert edited("training/collator.py") != key
    assert edited("evaluation/generation.py") != key
    assert edited("task/parse.py") == key
    assert edited("scoring/score.py") == key


def _gen(utt, task, raw="{}"):
    return {"utt_id": utt, "task": task, "raw": raw, "n_tokens": 1, "stopped": "eos"}


def test_cache_stores_sorted_rows_atomically_and_drops_the_partial_file(tmp_path):
    cache = G.GenerationCache(tmp_path / "cache")
    rows = [_gen("u2", "mdd"), _gen("u1", "mdd", "é"), _gen("u1", "apa")]
    cache.append_partial("k", 0, rows[:1])
    cache.store("k", rows, {"checkpoint": "cfg/final"})
    # one line per generation, sorted by (utt_id, task), keys sorted, ASCII-escaped
    assert (tmp_path / "cache" / "k.jsonl").read_text(encoding="utf-8") == (
        '{"n_tokens": 1, "raw": "{}", "stopped": "eos", "task": "apa", "utt_id": "u1"}\n'
        '{"n_tokens": 1, "raw": "\\u00e9", "stopped": "eos", "task": "mdd", "utt_id": "u1"}\n'
        '{"n_tokens": 1, "raw": "{}", "stopped": "eos", "task": "mdd", "utt_id": "u2"}\n')
    assert json.loads((tmp_path / "cache" / "k.meta.json").read_text()) == {"checkpoint": "cfg/final"}
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["k.jsonl", "k.meta.json"]
    expected = {("u1", "apa"), ("u1", "mdd"), ("u2", "mdd")}
    assert cache.load("k", expected) == sorted(rows, key=lambda r: (r["utt_id"], r["task"]))
    assert cache.load("k", expected | {("u3", "apa")}) is None  # another test set: generate again
    assert cache.load("missing", expected) is None
    (tmp_path / "cache" / "k.jsonl").write_text("{not json\n")
    assert cache.load("k", expected) is None  # a damaged entry is regenerated, not trusted


def test_partial_file_keeps_finished_batches_and_ignores_a_torn_or_foreign_line(tmp_path):
    cache = G.GenerationCache(tmp_path)
    batches = [[_gen("u1", "apa")], [_gen("u2", "apa")], [_gen("u1", "mdd")]]
    cache.append_partial("k", 0, batches[0])
    cache.append_partial("k", 2, [_gen("u9", "mdd")])  # rows of another split: not this batch
    cache.append_partial("k", 7, batches[1])  # no such batch
    with open(tmp_path / "k.partial.jsonl", "a", encoding="utf-8") as f:
        f.write('{"batch": 1, "rows": [')  # killed mid-write
    assert cache.load_partial("k", batches) == {0: batches[0]}
    assert cache.load_partial("other", batches) == {}


def test_generate_checkpoint_resumes_after_the_finished_batches(tmp_path):
    cache = G.GenerationCache(tmp_path)
    batches = [[_gen("u1", "apa")], [_gen("u2", "apa")], [_gen("u1", "mdd")]]
    cache.append_partial("k", 1, batches[1])
    asked = []

    def generate(rows):
        asked.append([(r["utt_id"], r["task"]) for r in rows])
        return [dict(r, raw="new") for r in rows]

    rows = G.generate_checkpoint(generate, batches, cache, "k", "test", progress=False)
    assert asked == [[("u1", "apa")], [("u1", "mdd")]]  # batch 1 came from the partial file
    assert [(r["utt_id"], r["task"], r["raw"]) for r in rows] == [
        ("u2", "apa", "{}"), ("u1", "apa", "new"), ("u1", "mdd", "new")]
    assert cache.load_partial("k", batches).keys() == {0, 1, 2}


def test_generator_needs_an_eos_token(world):
    from pronounce.model.loader import load_base_model
    from pronounce.model.processor import load_processor

    base = world / "models" / "base"
    model = load_base_model(base)
    model.generation_config.eos_token_id = None
    with pytest.raises(EvalError, match="generation_config has no eos_token_id"):
        G.Generator(model, load_processor(base), lambda r: None, 4)


def test_growing_cache_generates_byte_identical_tokens(world, monkeypatch):
    """The preallocated cache is an optimisation only: the same tokens as generate's default cache."""
    from pronounce.data.audio import AudioStore
    from pronounce.model.loader import load_base_model
    from pronounce.model.processor import load_processor

    base = world / "models" / "base"
    store = AudioStore(world / "decoded" / "test.arrow")
    rows = G.test_instances(world / "materialized")
    generate = G.Generator(load_base_model(base).eval(), load_processor(base), lambda r: store[r["audio_row"]], 12)
    caches = []
    original = kvcache.growing_cache
    monkeypatch.setattr(kvcache, "growing_cache", lambda *a: caches.append(original(*a)) or caches[-1])
    ours = [generate(rows), generate(rows[:1])]
    assert len(caches) == 2 and type(caches[0].layers[0]).__name__ == "GrowingLayer"
    monkeypatch.setattr(G.Generator, "_cache_kwargs", lambda self, prompt_len: {})
    assert [generate(rows), generate(rows[:1])] == ours


def test_generation_without_the_cache_gives_the_cached_tokens(world):
    """A model whose generation config turns the key/value cache off (the trainer sets
    config.use_cache False; a model built from that config inherits it) must still generate the
    same tokens: the Generator then passes no cache object (given one, generate fed the whole
    sequence at every step and appended all of it, so attention read every earlier key again;
    here that changed the answers from their 2nd-3rd token)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from pronounce.data.audio import AudioStore
    from pronounce.model.loader import load_base_model
    from pronounce.model.processor import load_processor

    base = world / "models" / "base"
    store = AudioStore(world / "decoded" / "test.arrow")
    rows = G.test_instances(world / "materialized")
    rows = [rows[0], rows[3]]  # one clip per task: the uncached path is a prefill per token
    torch.manual_seed(1)  # a random LoRA strong enough that the tiny model's answers vary token to token
    model = get_peft_model(load_base_model(base), LoraConfig(
        r=4, lora_alpha=32, target_modules=r"model\.layers\.\d+\.self_attn\.(qkv|o)_proj", init_lora_weights=False,
        task_type="CAUSAL_LM")).eval()
    model.generation_config.min_new_tokens = 16  # no early stop: every row runs all the steps
    generate = G.Generator(model, load_processor(base), lambda r: store[r["audio_row"]], 16)
    cached = generate(rows)
    assert all(r["n_tokens"] == 16 for r in cached)
    assert all(len(set(generate.tokenizer(r["raw"])["input_ids"])) > 4 for r in cached)  # not one token repeated
    model.generation_config.use_cache = False
    assert generate._cache_kwargs(10) == {}
    assert generate(rows) == cached


def _with_token_rows(model, processor, tied: bool):
    """`model` in an adapter like a trained one: a LoRA and the control tokens' rows as PEFT
    trainable tokens, the rows drawn far from the base ones (so they move the answers); with
    `tied`, lm_head tied to the input embedding, as in the real model (and builtin:tiny); without,
    lm_head given its own copy of the matrix (a checkpoint with an untied head)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from pronounce.training.adapters import check_tied_tokens, control_token_ids

    if tied:
        model.config.tie_word_embeddings = True
        model.lm_head.weight = model.model.embed_tokens.weight
    else:
        model.config.tie_word_embeddings = False
        model.lm_head.weight = torch.nn.Parameter(model.model.embed_tokens.weight.detach().clone())
    torch.manual_seed(3)
    model = get_peft_model(model, LoraConfig(
        r=4, lora_alpha=8, target_modules=r"model\.layers\.\d+\.self_attn\.(qkv|o)_proj", init_lora_weights=False,
        trainable_token_indices=control_token_ids(processor), task_type="CAUSAL_LM"))
    if tied:
        check_tied_tokens(model)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "trainable_tokens_delta" in name:
                param.normal_(0, 0.5)
    return model.eval()


@pytest.mark.parametrize("tied", [False, True])
def test_merged_token_rows_give_the_unmerged_models_answers(world, tied, tmp_path):
    """generation.load_model merges the trained token rows into the embedding (and the tied
    lm_head) once, instead of PEFT copying the whole matrix at every decode step: the same
    logits bit for bit, the same answers."""
    import copy

    import torch
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer

    from pronounce.data.audio import AudioStore
    from pronounce.model.loader import load_base_model
    from pronounce.model.processor import load_processor
    from pronounce.training.adapters import control_token_ids

    base = world / "models" / "base"
    processor = load_processor(base)
    store = AudioStore(world / "decoded" / "test.arrow")
    rows = G.test_instances(world / "materialized")
    unmerged = _with_token_rows(load_base_model(base), processor, tied)
    merged = copy.deepcopy(unmerged)
    assert G.merge_token_rows(merged) == (2 if tied else 1)  # the embedding, and the tied lm_head
    assert G.merge_token_rows(merged) == 0  # once
    assert all(m.merged for m in merged.modules() if isinstance(m, TrainableTokensLayer))
    inner = merged.get_base_model()
    ids = control_token_ids(processor)
    delta = next(p for n, p in merged.named_parameters() if "trainable_tokens_delta" in n)
    assert torch.equal(inner.model.embed_tokens.token_adapter.base_layer.weight[ids], delta)
    if tied:  # still one matrix, which lm_head reads
        assert inner.lm_head.token_adapter.base_layer.weight is inner.model.embed_tokens.token_adapter.base_layer.weight

    batch = G.Generator(merged, processor, lambda r: store[r["audio_row"]], 12).collator.collate_for_generation(rows)
    with torch.inference_mode():
        logits = [m(**batch).logits for m in (unmerged, merged)]
        plain = load_base_model(base).eval()(**batch).logits
    assert torch.equal(logits[0], logits[1])
    assert not torch.equal(logits[0][..., ids], plain[..., ids])  # the rows matter: the check can fail
    answers = [G.Generator(m, processor, lambda r: store[r["audio_row"]], 12)(rows) for m in (unmerged, merged)]
    assert answers[0] == answers[1]
    if tied:  # the evaluate stage's loader merges them, both layers (builtin:tiny is tied, as the real model)
        unmerged.save_pretrained(str(tmp_path / "adapter"))
        loaded = G.load_model(str(base), None, processor, tmp_path / "adapter")
        assert [m.merged for m in loaded.modules() if isinstance(m, TrainableTokensLayer)] == [True, True]
        with torch.inference_mode():
            assert torch.equal(loaded(**batch).logits, logits[0])
