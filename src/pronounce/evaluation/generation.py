"""Batched greedy generation of the test split's answers, with a cache that survives the stage.

Instances are sorted by task, then clip duration (then utt_id), cut into batches of
`eval.batch_size` that never mix tasks, left-padded, and generated greedily to the generation
config's eos or `eval.max_new_tokens` (audio/image placeholders suppressed). A clip's logits do
not depend on its batch-mates beyond float rounding (~1e-6 on the tiny model: audio_mask), which
could still flip a near-tied token, so the batch size is part of every cache key. On a CPU the
key/value cache is preallocated (pronounce.evaluation.kvcache); a trained adapter's token rows are
merged into the embedding once (`merge_token_rows`): the same logits, no matrix copied per step.
The cache, runs/eval-cache/, is keyed by adapter, base model, generation params, test set, library
versions, GENERATION_VERSION and the source of every module generating runs (GENERATION_MODULES
and their imports: a fix to audio_mask.py misses it, one to parse.py does not); an interrupted
checkpoint resumes from its last finished batch. Why: docs/stages.md#the-generation-cache-outside-dvc
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from ..core.artifacts import atomic_write_text, write_json
from ..task.predictions import sort_rows
from ..training.checkpoints import EvalError

# Bump when the meaning of a cached generation changes (decoding, stop rule, batching order):
# old cache entries then stop matching.
GENERATION_VERSION = 3  # 2: batches grouped by task (a prompt length per batch); 3: never mixed at the border
# What a generation runs, as modules: this one (batching, loading, the generator) with what it
# imports (collator, model, audio_mask, kvcache, ...), and the seeding the evaluate stage does
# first. Not the parsing or scoring of the answers, which never reach the cache.
GENERATION_MODULES = ("pronounce.evaluation.generation", "pronounce.core.determinism")


# --------------------------------------------------------------------------- instances


def test_instances(materialized_dir, control_tokens: bool = True) -> list[dict]:
    """The test split's instances (utt_id, task, prompt, audio_row, duration), generation order:
    sorted by task, then clip duration, then utt_id: a batch holds one task's prompts (the APA prompt
    is ~380 tokens longer than the MDD one), so little of it is padding. Without `control_tokens`,
    each prompt loses its <|APA|>/<|MDD|> (the untrained base model's prompts, prompts.user_turn)."""
    from ..task.materialize import load_instances
    from ..task.prompts import without_control_token

    ds = load_instances(materialized_dir, "test").select_columns(["utt_id", "task", "prompt", "audio_row", "duration"])
    rows = ds.to_list()
    if not rows:
        raise EvalError(f"{materialized_dir}/test.arrow has no instances")
    keys = [(r["utt_id"], r["task"]) for r in rows]
    if len(set(keys)) != len(keys):
        raise EvalError(f"{materialized_dir}/test.arrow has duplicate (utt_id, task) instances")
    if not control_tokens:
        try:
            rows = [{**r, "prompt": without_control_token(r["prompt"], r["task"])} for r in rows]
        except ValueError as e:
            raise EvalError(f"{materialized_dir}/test.arrow: {e}") from None
    return sorted(rows, key=lambda r: (r["task"], r["duration"], r["utt_id"]))


def task_prompts(rows: list[dict]) -> dict[str, list[str]]:
    """{task: its distinct prompts} of the instances (one per task: a prompt names no utterance),
    recorded in predictions/<config>/summary.json and hashed into the cache key."""
    out: dict[str, set] = {}
    for r in rows:
        out.setdefault(r["task"], set()).add(r["prompt"])
    return {t: sorted(p) for t, p in sorted(out.items())}


def make_batches(rows: list[dict], batch_size: int) -> list[list[dict]]:
    """Consecutive rows in batches of `batch_size`, never mixing tasks: each task's last batch may
    be short (rows come sorted by task, so a plain cut would mix APA and MDD prompts)."""
    batches = []
    for i, row in enumerate(rows):
        if not batches or len(batches[-1]) == batch_size or batches[-1][-1]["task"] != row["task"]:
            batches.append([])
        batches[-1].append(row)
    return batches


# --------------------------------------------------------------------------- cache


def generation_code(src=None) -> dict:
    """The sha256 of the source of GENERATION_MODULES and every project module they import
    (under `src`, default: the installed package's folder), and those modules' files."""
    from ..core.code_deps import SRC, source_digest

    digest, files = source_digest(list(GENERATION_MODULES), SRC if src is None else src)
    return {"sha256": digest, "modules": files}


def cache_key(adapter: str, base: str, gen_params: dict, test: str, code: dict | None = None,
              prompts: dict | None = None) -> tuple[str, dict]:
    """(key, what it hashes): everything a cached generation depends on. `code`: generation_code()
    unless given; `prompts`: task_prompts() of the instances generated from (the base model's lack
    the control tokens the materialized test set has, so the test set's hash alone does not say them)."""
    import peft
    import torch
    import transformers

    parts = {
        "code": generation_code() if code is None else code,
        "adapter": adapter,
        "base": base,
        "eval": gen_params,
        "test": test,
        "prompts": hashlib.sha256(json.dumps(prompts, sort_keys=True).encode()).hexdigest() if prompts else None,
        "generation_version": GENERATION_VERSION,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24], parts


class GenerationCache:
    """runs/eval-cache/<key>.jsonl (finished) and <key>.partial.jsonl (batches so far)."""

    def __init__(self, folder):
        self.folder = Path(folder)

    def _path(self, key, suffix=".jsonl") -> Path:
        return self.folder / f"{key}{suffix}"

    def load(self, key: str, expected: set) -> list[dict] | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
        except ValueError:
            return None
        if {(r["utt_id"], r["task"]) for r in rows} != expected or len(rows) != len(expected):
            return None  # not this test set after all: regenerate
        return rows

    def load_partial(self, key: str, batches: list[list[dict]]) -> dict[int, list[dict]]:
        """Finished batches of an interrupted run, by index; a torn last line is ignored."""
        path = self._path(key, ".partial.jsonl")
        done = {}
        if not path.is_file():
            return done
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
                b, rows = entry["batch"], entry["rows"]
            except (ValueError, KeyError, TypeError):
                continue
            if not isinstance(b, int) or not 0 <= b < len(batches):
                continue
            if [(r["utt_id"], r["task"]) for r in rows] == [(r["utt_id"], r["task"]) for r in batches[b]]:
                done[b] = rows
        return done

    def append_partial(self, key: str, b: int, rows: list[dict]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self._path(key, ".partial.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps({"batch": b, "rows": rows}, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def store(self, key: str, rows: list[dict], meta: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self._path(key), "".join(json.dumps(r, sort_keys=True) + "\n" for r in sort_rows(rows)))
        write_json(self._path(key, ".meta.json"), meta)
        self._path(key, ".partial.jsonl").unlink(missing_ok=True)


# --------------------------------------------------------------------------- generation


def merge_token_rows(model) -> int:
    """Write the adapter's trained token rows (PEFT trainable tokens: the control tokens) into the
    embedding, and into a tied lm_head, once; returns how many layers were merged.

    Unmerged, every forward rebuilds the whole embedding matrix with the rows swapped in
    (TrainableTokensLayer.get_merged_weights: an index_copy of 200,064 x 3,072 on the real
    model, for the input embedding and again for the tied lm_head, at every decode step).
    Merged, the layers read the same values from the base weight: the same lookups and the same
    matmul, so the same logits, bit for bit (tested, tied and untied). The LoRA stays unmerged:
    folding it into the weights would round differently."""
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer

    layers = [m for m in model.modules() if isinstance(m, TrainableTokensLayer) and not m.merged]
    for layer in layers:
        layer.merge()
    return len(layers)


def load_model(source, revision, processor, adapter: Path | None, speech_lora: bool = False,
               attn_implementation: str | None = None):
    """The base model with `adapter` (a trained adapter folder; with `speech_lora`, the base
    model's own speech LoRA), in inference mode, its token rows merged (merge_token_rows)."""
    import torch

    from ..model.guards import check_audio_token
    from ..model.loader import load_base_model, load_speech_lora
    from ..model.processor import check_vocab

    attn = {"attn_implementation": attn_implementation} if attn_implementation else {}  # else the loader's default
    model = load_base_model(source, revision, **attn)
    check_audio_token(model, processor)
    check_vocab(model, processor)
    if speech_lora:
        model = load_speech_lora(model, source, revision)
    elif adapter is not None:
        from peft import PeftModel

        # restores the LoRA, any modules_to_save and the control tokens' trainable rows
        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
        merge_token_rows(model)
    if torch.cuda.is_available():
        model = model.to("cuda")
    return model.eval()


class Generator:
    """Batched greedy generation with one model (base or base + adapter)."""

    def __init__(self, model, processor, audio_lookup, max_new_tokens: int):
        import torch

        from ..model.processor import suppressed_token_ids
        from ..training.collator import PronunciationCollator

        self.model = model
        self.tokenizer = processor.tokenizer
        self.collator = PronunciationCollator(processor, audio_lookup=audio_lookup)
        self.max_new_tokens = max_new_tokens
        gc = model.generation_config
        eos = gc.eos_token_id
        self.eos = [eos] if isinstance(eos, int) else list(eos or [])
        if not self.eos:
            raise EvalError("the base model's generation_config has no eos_token_id: generation would never stop")
        self.pad = gc.pad_token_id if gc.pad_token_id is not None else self.eos[0]
        self.suppress = suppressed_token_ids(processor)
        self.device = next(model.parameters()).device
        self.dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype
        self._torch = torch

    def _cache_kwargs(self, prompt_len: int) -> dict:
        """On a CPU, a key/value cache preallocated for the whole generation (`growing_cache`):
        byte-identical generations, without the default cache's copy of itself at every step.
        On a GPU that copy is cheap and generate keeps its default cache (numerics unchanged).
        None where the model generates without a cache (generation_config.use_cache False): given
        one anyway, generate feeds the whole sequence at every step and appends all of it to the
        cache, so attention reads every earlier key twice (the tiny model's tokens then differ from
        about the 5th; tested)."""
        gc = self.model.generation_config
        if self.device.type != "cpu" or gc.cache_implementation is not None or gc.use_cache is False:
            return {}
        from .kvcache import growing_cache

        return {"cache": growing_cache(self.model.config, prompt_len + self.max_new_tokens)}

    def __call__(self, rows: list[dict], streamer=None) -> list[dict]:
        """The answers to `rows`, one batch. `streamer`: generate's hook, called with the prompt and
        then with each new token (the preflight times the decode steps with it)."""
        torch = self._torch
        batch = self.collator.collate_for_generation(rows)
        batch = {k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device))
                 for k, v in batch.items()}
        with torch.inference_mode():
            out = self.model.generate(
                **batch,
                **self._cache_kwargs(batch["input_ids"].shape[1]),
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                num_beams=1,
                eos_token_id=self.eos,
                pad_token_id=self.pad,
                suppress_tokens=self.suppress or None,
                streamer=streamer,
            )
        prompt_len = batch["input_ids"].shape[1]
        results = []
        for i, row in enumerate(rows):
            tokens = out[i, prompt_len:].tolist()
            stop = next((j for j, t in enumerate(tokens) if t in self.eos), None)
            kept = tokens if stop is None else tokens[:stop]
            results.append({
                "utt_id": row["utt_id"],
                "task": row["task"],
                "raw": self.tokenizer.decode(kept, skip_special_tokens=False, clean_up_tokenization_spaces=False),
                "n_tokens": len(kept),
                "stopped": "max_new_tokens" if stop is None else "eos",
            })
        return results


def generate_checkpoint(generate, batches, cache: GenerationCache, key: str, desc: str, progress=True) -> list[dict]:
    """All batches of one checkpoint, resuming from the partial cache; one partial line per batch."""
    from tqdm import tqdm

    done = cache.load_partial(key, batches)
    rows = [r for b in sorted(done) for r in done[b]]
    todo = [b for b in range(len(batches)) if b not in done]
    bar = tqdm(total=sum(len(b) for b in batches), initial=len(rows), desc=desc, unit="inst",
               disable=not progress, file=sys.stderr)
    for b in todo:
        got = generate(batches[b])
        cache.append_partial(key, b, got)
        rows += got
        bar.update(len(got))
    bar.close()
    return rows
