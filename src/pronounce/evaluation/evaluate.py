"""Stage `evaluate`: greedy generation on the test split, both tasks, for one trained config (its
final adapter and the per-epoch adapters `eval.epochs` selects) or for the untrained base model
(the paper's "no training" row, epoch 0).

The base model is evaluated WITH its speech LoRA (the shipped model switches it on for every audio
input, so the bare base model is not how it hears; BASE_LABEL names the row) and WITHOUT the
control tokens (the paper's baseline is the model "for inference without control tokens or
additional training", section 3.1); a trained config's prompts carry <|APA|>/<|MDD|> as in
training. Writes predictions/<config>/ (predictions/base/): final.jsonl, epoch-<k>.jsonl (one
object per test instance, sorted by (utt_id, task): pronounce.task.predictions) and summary.json
(model, prompts, checkpoints, adapter hashes, cache keys, shared generations, parse summaries),
byte-identical on a rerun. Which adapters: pronounce.training.checkpoints; the batching, generator
and cache: pronounce.evaluation.generation. Why: docs/stages.md, `evaluate`.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..core.artifacts import atomic_dir, dir_digest, file_digest, write_json
from ..core.params import EvalJob
from ..task.parse import parse_output
from ..task.predictions import BASE_LABEL, sort_rows, write_jsonl
from ..training.checkpoints import Checkpoint, adapter_digest, find_checkpoints
from .generation import (
    GenerationCache,
    Generator,
    cache_key,
    generate_checkpoint,
    load_model,
    make_batches,
    task_prompts,
    test_instances,
)


def prediction_rows(checkpoint, generations: list[dict]) -> list[dict]:
    """One checkpoint's generations (utt_id, task, raw, n_tokens, stopped) as prediction rows,
    each answer parsed; `checkpoint` names them (its .name and .epoch)."""
    rows = []
    for g in sort_rows(generations):
        result = parse_output(g["task"], g["raw"])
        rows.append({
            "utt_id": g["utt_id"], "task": g["task"], "checkpoint": checkpoint.name, "epoch": checkpoint.epoch,
            "raw": g["raw"], "n_tokens": g["n_tokens"], "stopped": g["stopped"],
            "status": result.status, "flags": list(result.flags), "fields": result.fields,
        })
    return rows


def _deterministic(seed: int, mode: str) -> None:
    from ..core.determinism import set_determinism

    set_determinism(seed, mode)  # the same switch as training's (eval.determinism)


def gen_params(job: EvalJob) -> dict:
    """The eval params that shape a generation (and so key the cache; the thread count may change
    a CPU's floating-point summation order)."""
    return {"batch_size": job.batch_size, "max_new_tokens": job.max_new_tokens, "cpu_threads": job.cpu_threads}


def set_threads(n: int) -> None:
    import torch

    if n and not torch.cuda.is_available():
        torch.set_num_threads(n)


def run_evaluate(job: EvalJob, base_dir, decoded_dir, materialized_dir, model_dir, out_dir,
                 cache_dir="runs/eval-cache", progress=True, log=print) -> dict:
    """Evaluate config `job.name` (adapters under `model_dir`), or the base model when `model_dir`
    is None (then the name is only the label). Returns the summary written to out_dir/summary.json."""
    from ..data.audio import AudioStore
    from ..model.loader import speech_lora_path
    from ..model.manifest import base_attn_implementation, resolve_base
    from ..model.processor import load_processor
    from ..task.parse import ParseResult, summarise

    name = job.name
    started = time.perf_counter()
    _deterministic(job.seed, job.determinism)
    set_threads(job.cpu_threads)
    source, revision = resolve_base(base_dir)
    if model_dir is None:
        folder = speech_lora_path(source, revision)
        checkpoints = [Checkpoint("epoch-0", 0, folder, adapter_digest(folder), speech_lora=True)]
    else:
        checkpoints = find_checkpoints(model_dir, job.epochs)

    control_tokens = model_dir is not None  # the base model: none (section 3.1 of the paper)
    instances = test_instances(materialized_dir, control_tokens)
    prompts = task_prompts(instances)
    expected = {(r["utt_id"], r["task"]) for r in instances}
    batches = make_batches(instances, job.batch_size)
    test_hash = file_digest([Path(materialized_dir) / "test.arrow", Path(decoded_dir) / "test.arrow"])
    base_hash = dir_digest(base_dir)
    gp = gen_params(job)
    cache = GenerationCache(cache_dir)
    store = AudioStore(Path(decoded_dir) / "test.arrow")
    processor = None
    stats = {"generated": [], "cached": [], "shared": []}

    by_name = {}
    for ckpt in checkpoints:
        ckpt.key, key_parts = cache_key(ckpt.digest, base_hash, gp, test_hash, prompts=prompts)
        if ckpt.same_as is not None:
            ckpt.rows = by_name[ckpt.same_as].rows
            stats["shared"].append(ckpt.name)
        else:
            rows = cache.load(ckpt.key, expected)
            if rows is not None:
                stats["cached"].append(ckpt.name)
            else:
                if processor is None:
                    processor = load_processor(source, revision)
                model = load_model(source, revision, processor, ckpt.folder, ckpt.speech_lora,
                                   base_attn_implementation(base_dir))
                generate = Generator(model, processor, lambda row: store[row["audio_row"]], gp["max_new_tokens"])
                rows = generate_checkpoint(generate, batches, cache, ckpt.key, f"evaluate {name} {ckpt.name}",
                                           progress)
                del model, generate
                cache.store(ckpt.key, rows, {"checkpoint": f"{name}/{ckpt.name}", **key_parts})
                stats["generated"].append(ckpt.name)
            ckpt.rows = rows
        by_name[ckpt.name] = ckpt

    summary = {"config": name, "model_base": job.model_base,
               "model": BASE_LABEL if model_dir is None else f"base + {name} adapter", "eval": gp,
               "epochs_param": job.epochs if model_dir is not None else None,
               "control_tokens": control_tokens, "prompts": prompts,
               "test_instances": len(instances), "checkpoints": []}
    with atomic_dir(out_dir) as tmp:
        for ckpt in checkpoints:
            rows = prediction_rows(ckpt, ckpt.rows)
            write_jsonl(tmp / f"{ckpt.name}.jsonl", rows)
            parse = {task: summarise(ParseResult(r["fields"], r["status"], tuple(r["flags"]))
                                     for r in rows if r["task"] == task)
                     for task in ("apa", "mdd")}
            summary["checkpoints"].append({
                "name": ckpt.name, "epoch": ckpt.epoch, "file": f"{ckpt.name}.jsonl",
                "adapter": ckpt.folder.name,  # adapter, epoch-<k>, or the base model's speech-lora
                "adapter_sha256": ckpt.digest, "cache_key": ckpt.key, "same_as": ckpt.same_as,
                "truncated": sum(r["stopped"] == "max_new_tokens" for r in rows),
                "parse": parse,
            })
        write_json(tmp / "summary.json", summary)
    seconds = time.perf_counter() - started
    # Wall-clock figures vary run to run: logged, and kept out of the DVC outputs.
    timing = {"config": name, "seconds": round(seconds, 2), **stats}
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    write_json(Path(cache_dir) / f"timing-{name}.json", timing)
    if log:
        log(f"evaluate {name}: {len(checkpoints)} checkpoint(s) x {len(instances)} instances; "
            f"generated {stats['generated'] or 'none'}, from cache {stats['cached'] or 'none'}, "
            f"shared {stats['shared'] or 'none'}; {seconds:.1f} s")
    return summary
