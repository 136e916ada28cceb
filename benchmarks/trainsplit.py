"""Where a training stage's time goes: one config trained through `run_train` (the train stage's
own function, the smoke recipe of params.yaml unless overridden) with timers around the
trainer's parts, in one process:

    python -m benchmarks.trainsplit [--config paper_r64] [--epochs N] [--set key=value ...] [--ws DIR]

Prints `TRAINSPLIT_RESULT {json}`: seconds in data loading (the dataloader's fetch, of which the
collator and its feature extraction), forward (trl's compute_loss: the model's forward and the
fused loss), backward, optimizer (grad clipping and norm, AdamW, scheduler, zero_grad), logging
(Trainer.log: DVCLive and TensorBoard), checkpoint writing (each epoch's checkpoint and the
callbacks that copy its adapter), the rest of the loop, and the set-up and final save outside it.
`--set` edits params.yaml's dict before it is parsed (e.g. `train.recipes.smoke.learning_rate=2e-3`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

MARK = "TRAINSPLIT_RESULT "


class Timers:
    def __init__(self):
        self.seconds, self.calls, self.depth = defaultdict(float), defaultdict(int), defaultdict(int)
        self.cpu = defaultdict(float)  # this thread's CPU time: steadier than wall time on shared cores

    def wrap(self, owner, name: str, key: str) -> None:
        """Time every call of owner.name under `key` (re-entrant calls counted once)."""
        fn = getattr(owner, name)
        timers = self

        def timed(*args, **kwargs):
            timers.depth[key] += 1
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                timers.depth[key] -= 1
                if not timers.depth[key]:
                    timers.seconds[key] += time.perf_counter() - start
                    timers.cpu[key] += time.thread_time() - cpu
                    timers.calls[key] += 1
        setattr(owner, name, timed)


def set_key(raw: dict, dotted: str, value: str) -> None:
    import yaml

    *path, last = dotted.split(".")
    node = raw
    for p in path:
        node = node[p]
    node[last] = yaml.safe_load(value)


def profile(ws: Path, config: str, edits: list[str], out: Path, torch_steps: int = 0) -> dict:
    import accelerate
    import torch
    import transformers
    from transformers import TrainerCallback

    from pronounce.core.cli import tune_malloc
    from pronounce.core.params import parse_params
    from pronounce.training import collator as coll
    from pronounce.training import train as train_mod

    tune_malloc()  # as run_stage does
    from .groups import read_params

    raw = read_params()
    for e in edits:
        set_key(raw, *e.split("=", 1))
    params = parse_params(raw)
    job = params.train_job(config)

    t = Timers()
    t.wrap(transformers.Trainer, "get_batch_samples", "data")
    t.wrap(coll.PronunciationCollator, "__call__", "data.collator")
    t.wrap(coll.PronunciationCollator, "_audio_features", "data.collator.features")
    t.wrap(accelerate.Accelerator, "backward", "backward")
    t.wrap(transformers.Trainer, "log", "logging")
    t.wrap(transformers.Trainer, "_save_checkpoint", "checkpoint")
    t.wrap(transformers.trainer_callback.CallbackHandler, "on_save", "checkpoint.epoch_adapter_copy")
    t.wrap(transformers.Trainer, "_clip_grad_norm", "optimizer.clip")
    from trl import SFTTrainer

    t.wrap(SFTTrainer, "compute_loss", "forward")
    t.wrap(SFTTrainer, "training_step", "step.train")
    marks = {}

    class StepClock(TrainerCallback):
        """optimizer = from training_step's return to on_step_end; loop = the whole train loop."""

        def on_train_begin(self, args, state, control, **kw):
            marks["loop_start"], marks["loop_cpu"] = time.perf_counter(), time.thread_time()

        def on_step_begin(self, args, state, control, **kw):
            marks["step_start"] = time.perf_counter()
            if torch_steps and state.global_step == 2:  # past the first steps' warm-up
                from torch.profiler import ProfilerActivity
                from torch.profiler import profile as torch_profile

                marks["prof"] = torch_profile(activities=[ProfilerActivity.CPU])
                marks["prof"].__enter__()

        def on_step_end(self, args, state, control, **kw):
            t.seconds["optimizer"] += time.perf_counter() - marks["after_train"]
            t.cpu["optimizer"] += time.thread_time() - marks["after_train_cpu"]
            t.calls["optimizer"] += 1
            if "prof" in marks and state.global_step == 2 + torch_steps:
                marks["prof"].__exit__(None, None, None)
                marks["ops"] = [{"op": e.key, "self_cpu_ms_per_step": round(e.self_cpu_time_total / 1000 / torch_steps, 1),
                                 "calls_per_step": e.count / torch_steps}
                                for e in sorted(marks["prof"].key_averages(), key=lambda e: -e.self_cpu_time_total)[:25]]

        def on_train_end(self, args, state, control, **kw):
            marks["loop_end"], marks["loop_cpu_end"] = time.perf_counter(), time.thread_time()

    orig_step = SFTTrainer.training_step

    def training_step(self, *a, **kw):
        r = orig_step(self, *a, **kw)
        marks["after_train"], marks["after_train_cpu"] = time.perf_counter(), time.thread_time()
        return r
    SFTTrainer.training_step = training_step

    run0 = time.perf_counter()
    timing = train_mod.run_train(job, ws / "base", ws / "decoded", ws / "materialized", out / "model", out / "live",
                                 runs_dir=out / "runs", callbacks=[StepClock()])
    run_seconds = time.perf_counter() - run0
    loop = marks["loop_end"] - marks["loop_start"]
    s = dict(t.seconds)
    parts = {k: s.get(k, 0.0) for k in ("data", "forward", "backward", "optimizer", "logging", "checkpoint")}
    parts["checkpoint"] += s.get("checkpoint.epoch_adapter_copy", 0.0)
    parts["other_in_loop"] = loop - sum(parts.values())
    c = dict(t.cpu)
    cpu_parts = {k: c.get(k, 0.0) for k in ("data", "forward", "backward", "optimizer", "logging", "checkpoint")}
    cpu_parts["checkpoint"] += c.get("checkpoint.epoch_adapter_copy", 0.0)
    loop_cpu = marks["loop_cpu_end"] - marks["loop_cpu"]
    cpu_parts["other_in_loop"] = loop_cpu - sum(cpu_parts.values())
    steps = timing["steps"]
    return {"config": config, "edits": edits, "steps": steps, "epochs": job.recipe.epochs,
            "threads": torch.get_num_threads(),
            "setup_s": round(run_seconds - timing["seconds"], 2),  # model load, peft, trainer, final save
            "train_s": round(timing["seconds"], 2), "loop_s": round(loop, 2),
            "per_step_ms": {k: round(1000 * v / steps, 1) for k, v in parts.items()},
            "seconds": {k: round(v, 2) for k, v in parts.items()},
            "detail_s": {k: round(v, 2) for k, v in s.items()}, "calls": dict(t.calls),
            "share": {k: round(v / loop, 3) for k, v in parts.items()},
            "loop_cpu_s": round(loop_cpu, 2), "cpu_per_step_ms": {k: round(1000 * v / steps, 1) for k, v in cpu_parts.items()},
            "cpu_share": {k: round(v / loop_cpu, 3) for k, v in cpu_parts.items()},
            "detail_cpu_s": {k: round(v, 2) for k, v in c.items()},
            "train_loss": timing["train_loss"],
            "checkpoints": t.calls.get("checkpoint", 0),
            "per_checkpoint_s": round(parts["checkpoint"] / max(t.calls.get("checkpoint", 0), 1), 3),
            **({"torch_ops": marks["ops"]} if "ops" in marks else {})}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.trainsplit", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="paper_r64")
    p.add_argument("--set", action="append", default=[], help="params.yaml key=value (YAML value), repeatable")
    p.add_argument("--epochs", type=int, default=0, help="shorthand for --set train.recipes.smoke.epochs=N")
    p.add_argument("--ws", default="", help="prepared workspace (benchmarks.workspace.prepare_small); made if absent")
    p.add_argument("--out", default="", help="where the run writes (default: under --ws)")
    p.add_argument("--torch-profile", type=int, default=0, metavar="N",
                   help="also torch.profiler's top ops (self CPU per step) over N steps from step 3")
    args = p.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from .workspace import prepare_small

    import tempfile
    ws = Path(args.ws or tempfile.mkdtemp(prefix="pronounce-trainsplit-"))
    prepare_small(ws)
    edits = args.set + ([f"train.recipes.smoke.epochs={args.epochs}"] if args.epochs else [])
    out = Path(args.out or ws / f"run-{args.config}-{os.getpid()}")
    r = profile(ws, args.config, edits, out, args.torch_profile)
    print(MARK + json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
