"""The preflight's probe: a few training steps and one batched generation of one config, through
the training and evaluate stages' own code (set-up, trainer, collator, Generator), timed and with
their peak memory. What makes it a probe and not a run: the LONGEST clips, one micro-batch per
step, a generation forced to the full `eval.max_new_tokens`, nothing saved. The first step of
each task and the first generation are warm-up, untimed (a cold prefill once made the time per
token negative). pronounce.checks.projection turns these figures into the whole run's.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import os
import resource
import time
from pathlib import Path

from ..core.params import Params


class PreflightError(Exception):
    """A check failed: the run would fail or silently train the wrong thing."""


def train_device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sync_reset(device, reset: bool) -> None:
    """Wait for the device; with `reset`, free what is unreferenced and restart its peak."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if reset:
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)


def device_memory(device) -> tuple[int, int, str]:
    """(peak bytes, total bytes, device name): the accelerator's peak allocated since the last
    reset; on a CPU the process's peak RSS (ru_maxrss, KiB on Linux, never reset: it bounds every
    phase) and the machine's memory."""
    import torch

    if device.type == "cuda":
        return (int(torch.cuda.max_memory_allocated(device)), int(torch.cuda.get_device_properties(device).total_memory),
                torch.cuda.get_device_name(device))
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), f"cpu ({os.cpu_count()} cores)")


class StepClock:
    """generate's streamer as a clock: put() comes with the prompt, then once per new token
    (after that token is on the host, so the device has finished its step)."""

    def __init__(self, device):
        self.device, self.times = device, []

    def put(self, value) -> None:
        _sync_reset(self.device, False)
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass

    def split(self, t0: float) -> tuple[float, float]:
        """(prefill, per new token) of a generation started at `t0`: the prefill is the batch's
        set-up and forward up to the first new token; each later token costs the mean of the
        decode steps after it (0.0 with a single new token: no decode step to time)."""
        if len(self.times) < 2:
            raise PreflightError("the probe's generation produced no token to time")
        first, last, n = self.times[1], self.times[-1], len(self.times) - 1
        return first - t0, (last - first) / (n - 1) if n > 1 else 0.0


def probe_config(params: Params, name: str, source, revision, processor, decoded: Path, train_rows, test_rows,
                 steps: int, work: Path, standin=None) -> dict:
    """Training steps, then one generation, of one config; times and peaks. `standin(job, source)`:
    the base model to adapt instead of loading source's weights (pronounce.checks.fullsize)."""
    import datasets
    import torch
    from transformers import TrainerCallback

    from ..core.determinism import set_determinism
    from ..data.audio import AudioStore
    from ..evaluation.generation import Generator, merge_token_rows
    from ..training.adapters import install_tied_token_head, training_model
    from ..training.collator import PronunciationCollator
    from ..training.train import sft_config, trainer_class

    device, job = train_device(), params.train_job(name)
    recipe = job.recipe
    bs = recipe.batch_size
    # run_train's set-up: the run's kernels, then its model (dtype, attention, guards, adapter).
    set_determinism(job.seed, job.determinism)
    if recipe.cpu_threads and device.type == "cpu":
        torch.set_num_threads(recipe.cpu_threads)
    model = training_model(job, source, revision, processor, params.model.attn_implementation,
                           base_model=standin(job, source) if standin else None)

    tasks = sorted(train_rows, key=lambda t: -len(train_rows[t][0]["prompt"]))  # the longer prompt first
    order = [r for i in range(steps) for r in train_rows[tasks[i % len(tasks)]][:bs]]
    store = AudioStore(decoded / "train.arrow")
    shapes, times, forward, optimizer, losses = [], [], [], [], []
    collate = PronunciationCollator(processor, audio_lookup=lambda row: store[row["audio_row"]])

    def collator(rows):
        batch = collate(rows)
        shapes.append((*batch["input_ids"].shape, int(batch["attention_mask"].sum())))
        return batch

    class StepTimer(TrainerCallback):  # a step: forward (compute_loss), backward, optimizer
        def on_step_begin(self, args, state, control, **kw):
            _sync_reset(device, False)
            self.t0 = time.perf_counter()

        def on_pre_optimizer_step(self, args, state, control, **kw):
            _sync_reset(device, False)
            self.t_opt = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            _sync_reset(device, False)
            times.append(time.perf_counter() - self.t0)
            optimizer.append(time.perf_counter() - self.t_opt)

    # The run's SFTConfig; only what makes this a probe differs: a fixed number of optimizer
    # steps of one micro-batch each, in our order, nothing saved or logged.
    args = dataclasses.replace(sft_config(recipe, work / f"run-{name}", job.seed), max_steps=steps,
                               gradient_accumulation_steps=1, save_strategy="no", report_to=[], logging_steps=steps,
                               train_sampling_strategy="sequential", disable_tqdm=True)
    trainer = trainer_class()(model=model, args=args, train_dataset=datasets.Dataset.from_list(order),
                              data_collator=collator, processing_class=processor, callbacks=[StepTimer()],
                              audio_learning_rate=recipe.audio_learning_rate)
    install_tied_token_head(model)  # as run_train
    compute_loss = trainer.compute_loss

    def timed_loss(*a, **kw):  # the forward pass and the loss (trl's fused LM head)
        t0 = time.perf_counter()
        out = compute_loss(*a, **kw)
        _sync_reset(device, False)
        forward.append(time.perf_counter() - t0)
        losses.append(float((out[0] if isinstance(out, tuple) else out).detach()))
        return out

    trainer.compute_loss = timed_loss
    _sync_reset(device, True)
    trainer.train()
    train_peak = device_memory(device)[0]
    # A step that runs but computes garbage (a NaN, or a loss of exactly 0 on an untrained
    # model) would otherwise pass: the probe's figures are only worth something if it learned.
    norms = [h["grad_norm"] for h in trainer.state.log_history if "grad_norm" in h]
    if not all(math.isfinite(x) and x > 0 for x in losses + norms):
        raise PreflightError(f"{name}: the probe's training steps computed losses {losses} and gradient norms "
                             f"{norms}: a finite, positive loss and gradient are expected (a numerics fault)")
    # The first step of each task warms kernels and the allocator. Batches come in `order`.
    measured = list(range(len(tasks), len(times))) or list(range(len(times)))
    del trainer
    gc.collect()  # the trainer's reference cycles hold the optimizer's state (3.7 GB fp32 for r=320) until collected
    model.eval()
    # As the evaluate stage's load_model: the token rows merged, or every decode step copies the
    # embedding matrix twice (the generation projected is the stage's).
    merge_token_rows(model)

    if params.eval.cpu_threads and device.type == "cpu":
        torch.set_num_threads(params.eval.cpu_threads)
    _sync_reset(device, True)  # the optimizer's state is gone, as in the evaluate stage
    test_store = AudioStore(decoded / "test.arrow")
    gen_rows = test_rows[tasks[0]][:params.eval.batch_size]
    lookup = lambda row: test_store[row["audio_row"]]  # noqa: E731
    # Warm-up (one new token, untimed): the first generation pays for kernel selection and the
    # allocator. Timed once warm, by the clock of each decode step: a prefill timed on its own cold
    # run and subtracted from a warm whole once gave a negative time per token.
    Generator(model, processor, lookup, 1)(gen_rows)
    generate = Generator(model, processor, lookup, params.eval.max_new_tokens)
    model.generation_config.min_new_tokens = params.eval.max_new_tokens  # the worst case: no early stop
    clock = StepClock(device)
    t0 = time.perf_counter()
    out = generate(gen_rows, streamer=clock)
    _sync_reset(device, False)
    gen_s = time.perf_counter() - t0
    prefill_s, token_s = clock.split(t0)
    gen_peak = device_memory(device)[0]
    new_tokens = max(r["n_tokens"] for r in out)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    del model, generate
    gc.collect()
    mean = lambda xs: sum(xs[i] for i in measured) / len(measured)  # noqa: E731
    return {"step_seconds": mean(times), "forward_seconds": mean(forward), "optimizer_seconds": mean(optimizer),
            "backward_seconds": mean(times) - mean(forward) - mean(optimizer), "steps": len(times), "step_shapes": shapes,
            "padded_tokens_per_s": sum(shapes[i][0] * shapes[i][1] for i in measured) / sum(times[i] for i in measured),
            "tokens_per_step": max(s[2] for s in shapes), "train_peak_bytes": train_peak,
            "gen_batch": len(gen_rows), "gen_new_tokens": new_tokens, "gen_batch_seconds": gen_s,
            "gen_prefill_seconds": prefill_s, "gen_token_seconds": token_s,
            "gen_peak_bytes": gen_peak, "weights_bytes": weights}
