"""Preflight: what the configured run will cost, measured before it costs it.

(~480 lines, over the ~300 guide: the checks, the probe and the projection read as one
procedure, and its table is what a user reads before spending GPU hours; pronounce.checks.fullsize
runs the same procedure on a weightless stand-in of the real model.)

    python -m pronounce.checks.preflight            # a table; exit 1 with one line per failed check
    python -m pronounce.checks.preflight --json     # the same report for machines

For the configured base model (models/base if built from the same model.base, else built or
referenced into a scratch folder by the base stage's own code), corpus (data/decoded if decoded,
else decoded into the scratch folder) and recipe (train.profile) it runs:

1. the checks, before any weight is loaded: the checkpoint is in transformers' native layout;
   processor.audio_token_id is the model's audio_config.audio_token_id; each config's LoRA
   targets are 4 projections in each text layer and none of the audio encoder's; trainable
   parameters per config, the Unfreeze strategy's audio encoder and projector exactly (on the
   meta device, so the real model costs no memory here);
2. per config, a few training steps through the pipeline's own path (load_base_model,
   build_peft_model, PronunciationCollator, its trainer with the recipe's SFTConfig) at the recipe's
   batch shape on the LONGEST training clips, one batch per task in turn (the APA prompt is the
   longer one), then one batched generation (generation.Generator) of the longest test clips, made
   to run the full eval.max_new_tokens;
3. peak memory (torch.cuda.max_memory_allocated; on a CPU the process's peak RSS), step and
   generation speed, and the projected wall time and memory of the whole `dvc repro` per config,
   against the device's memory. Upper bounds: training = micro-batches per epoch x epochs x step
   time (all batches as long as the longest), evaluation = checkpoints evaluated x batches x batch
   time (every answer max length). Training is also projected at the probe's padded tokens/s over
   the corpus's own token count (the expected figure).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import heapq
import json
import math
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from ..core.params import Params

PROJECTIONS_PER_LAYER = 4  # qkv_proj, o_proj, gate_up_proj, down_proj


class PreflightError(Exception):
    """A check failed: the run would fail or silently train the wrong thing."""


# --------------------------------------------------------------------------- inputs


def resolve_inputs(params: Params, base_dir, decoded_dir, work: Path, standin: bool = False
                   ) -> tuple[str, str | None, Path]:
    """(model source, revision, decoded folder): the built ones when they match params; with
    `standin`, base_dir is a weightless stand-in folder (pronounce.checks.fullsize), taken as it is."""
    from ..data.decode import run_decode
    from ..model.base import run_base
    from ..model.manifest import MANIFEST, resolve_base

    manifest = Path(base_dir) / MANIFEST
    built = json.loads(manifest.read_text(encoding="utf-8")) if manifest.is_file() else {}
    if standin:
        source, revision = str(base_dir), None
    else:
        if built.get("base") != params.model.base:
            base_dir = work / "base"
            run_base(params.model.base, params.model.revision, params.seed, base_dir,
                     attn_implementation=params.model.attn_implementation)  # as the base stage records it
        source, revision = resolve_base(base_dir)
    decoded = Path(decoded_dir)
    if not all((decoded / f).is_file() for f in ("train.arrow", "test.arrow", "report.json")):
        decoded = work / "decoded"
        d = params.data
        run_decode(d.corpus, decoded, d.max_seconds, d.max_reject_fraction, progress=False)
    return source, revision, decoded


def check_layout(source: str, revision: str | None) -> str:
    """The loader's own layout check (config.json only, no weights): the model_type, or a
    PreflightError with the fix."""
    from ..model.loader import LayoutError, check_native_layout, hub_config, local_folder

    try:
        local = local_folder(source)
        config = check_native_layout(local if local is not None else hub_config(source, revision))
    except LayoutError as e:
        raise PreflightError(f"layout: {e}") from None
    return config["model_type"]


def scan_split(decoded: Path, split: str, processor, n: int) -> tuple[dict, int, int, dict]:
    """The instances of the n longest clips of a split, by task; its utterance count; the
    token count of all its instances (prompt, audio placeholders, answer, <|end|>); and the
    longest answer of each task in tokens, <|end|> included."""
    from ..core.artifacts import iter_batches
    from ..task.materialize import LABEL_COLUMNS, instances

    tok = processor.tokenizer
    prompt_len: dict[str, int] = {}
    heap, row, tokens, longest = [], 0, 0, {}
    for batch in iter_batches(decoded / f"{split}.arrow", LABEL_COLUMNS):
        answers, tasks = [], []
        for utt in batch.to_pylist():
            item = (utt["duration"], -row, row, utt)  # ties: the earlier row
            (heapq.heappush if len(heap) < n else heapq.heappushpop)(heap, item)
            for inst in instances(utt, row, processor.audio_token):
                if inst["task"] not in prompt_len:  # the placeholder counts as its audio tokens, below
                    prompt_len[inst["task"]] = len(tok(inst["prompt"])["input_ids"]) - 1
                # one audio token per 80 ms (as train.with_lengths), and <|end|> after the answer
                tokens += prompt_len[inst["task"]] + math.ceil(utt["duration"] * 100 / 8) + 1
                answers.append(inst["answer"])
                tasks.append(inst["task"])
            row += 1
        for task, ids in zip(tasks, tok(answers)["input_ids"] if answers else []):
            tokens += len(ids)
            longest[task] = max(longest.get(task, 0), len(ids) + 1)
    by_task: dict[str, list] = {}
    for _, _, audio_row, utt in sorted(heap, reverse=True):
        for inst in instances(utt, audio_row, processor.audio_token):
            by_task.setdefault(inst["task"], []).append(inst)
    return by_task, row, tokens, longest


# --------------------------------------------------------------------------- checks


def check_setup(params: Params, names: list[str], source: str, revision, processor) -> dict:
    """Every static check; PreflightError (or the guard's own error) on the first that fails. Per
    config: LoRA targets and trainable parameters of the adapter run_train builds, on the meta
    device from the checkpoint's config (the real model costs no memory here)."""
    import torch
    from peft.tuners.tuners_utils import check_target_module_exists
    from transformers import Phi4MultimodalConfig, Phi4MultimodalForCausalLM

    from ..model.guards import check_audio_token
    from ..model.processor import check_vocab
    from ..training.adapters import AUDIO_MODULES, build_peft_model, lora_config

    kind = check_layout(source, revision)
    config = Phi4MultimodalConfig.from_pretrained(source, revision=revision)
    checks = {"layout": kind, "audio_token_id": check_audio_token(config, processor), "configs": {}}
    layers = config.num_hidden_layers
    for name in names:
        job = params.train_job(name)
        with torch.device("meta"):
            model = Phi4MultimodalForCausalLM(config)
        check_vocab(model, processor)
        peft_cfg, _ = lora_config(job, source, revision)
        targets = {n: m for n, m in model.named_modules()
                   if isinstance(m, torch.nn.Linear) and check_target_module_exists(peft_cfg, n)}
        audio = [n for n in targets if not n.startswith("model.layers.")]
        if audio or len(targets) != PROJECTIONS_PER_LAYER * layers:
            raise PreflightError(
                f"lora ({name}): the target regex matches {len(targets)} modules, {len(audio)} outside the text "
                f"decoder (e.g. {audio[:2]}); expected {PROJECTIONS_PER_LAYER} x {layers} text-layer projections")
        lora_expected = peft_cfg.r * sum(m.in_features + m.out_features for m in targets.values())
        # the Unfreeze strategy's audio encoder and projector, every weight of them
        audio_expected = sum(p.numel() for m in AUDIO_MODULES for p in model.get_submodule(m).parameters()
                             ) if job.config.unfreeze_audio else 0
        model = build_peft_model(model, job, source, revision, processor)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        lora = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and ".lora_" in n)
        if lora != lora_expected:
            raise PreflightError(f"lora ({name}): {lora} LoRA parameters, expected r x (in + out) = {lora_expected}")
        audio = sum(p.numel() for n, p in model.named_parameters()
                    if p.requires_grad and any(f"{m}." in n for m in AUDIO_MODULES))
        if audio != audio_expected:
            raise PreflightError(f"unfreeze_audio ({name}): {audio} trainable audio encoder/projector parameters, "
                                 f"expected {audio_expected}")
        checks["configs"][name] = {"lora_modules": len(targets), "lora_r": peft_cfg.r, "lora_params": lora,
                                   "audio_params": audio, "trainable_params": trainable}
        del model
    return checks


# --------------------------------------------------------------------------- measurements


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


def _memory(device) -> tuple[int, int, str]:
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
    train_peak = _memory(device)[0]
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
    gen_peak = _memory(device)[0]
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


def project(params: Params, probe: dict, n_train_utts: int, n_test_utts: int, train_tokens: int,
            answer_tokens: dict) -> dict:
    """The whole `dvc repro` of one config from its probe: upper bounds (see the module doc);
    training at the probe's (padded) tokens/s over the corpus's own token count; evaluation with
    each batch stopping at its task's longest training answer (`answer_tokens`, <|end|> included;
    a trained adapter's batch stops when its last row does) at the probe's prefill + per-token time."""
    from ..training.checkpoints import select_epochs

    recipe, procs = params.train.recipe, params.train.num_processes
    micro = math.ceil(2 * n_train_utts / (recipe.batch_size * procs))  # APA + MDD per utterance
    epochs = recipe.epochs
    chosen = select_epochs(params.eval.epochs_for(params.train.profile), range(1, epochs + 1))
    checkpoints = len(chosen) + (epochs not in chosen)  # the final adapter is the last epoch's
    per_task = math.ceil(n_test_utts / params.eval.batch_size)  # one task per batch
    stop = {t: min(n, params.eval.max_new_tokens) for t, n in answer_tokens.items()}
    expected_batches = sum(per_task * (probe["gen_prefill_seconds"] + probe["gen_token_seconds"] * n)
                           for n in stop.values())
    return {"micro_batches_per_epoch": micro, "epochs": epochs, "train_seconds": micro * epochs * probe["step_seconds"],
            "train_seconds_expected": epochs * train_tokens / procs / probe["padded_tokens_per_s"],
            "checkpoints_evaluated": checkpoints, "eval_batches": 2 * per_task, "answer_tokens": stop,
            "eval_seconds": checkpoints * 2 * per_task * probe["gen_batch_seconds"],
            "eval_seconds_expected": checkpoints * expected_batches,
            "peak_bytes": max(probe["train_peak_bytes"], probe["gen_peak_bytes"])}


def eval_batch_that_fits(probe: dict, device_bytes: int, cuda: bool, headroom: float = 0.9) -> int | None:
    """The largest evaluation batch the device holds, from the probe's generation peak: the
    weights plus a per-row share (key/value cache, activations) times the batch, within
    `headroom` of the device. None on a CPU (its peak RSS is the whole process's, training's too)."""
    per_row = (probe["gen_peak_bytes"] - probe["weights_bytes"]) / probe["gen_batch"]
    if not cuda or per_row <= 0:
        return None
    return int((headroom * device_bytes - probe["weights_bytes"]) // per_row)


def run_preflight(params: Params, base_dir="models/base", decoded_dir="data/decoded", steps: int = 4,
                  configs: list[str] | None = None, log=print, standin=None, utterances=None) -> dict:
    """The checks, the probe of each config and the projection (see the module doc). `standin`:
    base_dir is a weightless stand-in and standin(job, source) builds each config's base model
    (pronounce.checks.fullsize). `utterances`: (train, test) utterance counts to project for instead of
    the corpus's own (its mean tokens per utterance scaled to them)."""
    from ..model.processor import load_processor
    from ..training.train import check_device

    names = configs or list(params.configs)
    unknown = [n for n in names if n not in params.configs]
    if unknown:
        raise PreflightError(f"configs: no config {unknown[0]!r} (have: {', '.join(params.configs)})")
    check_device(params.train_job(names[0]))  # the run would refuse a GPU recipe on a CPU: so does its preview
    device = train_device()
    with tempfile.TemporaryDirectory(prefix="pronounce-preflight-") as tmp:
        work = Path(tmp)
        source, revision, decoded = resolve_inputs(params, base_dir, decoded_dir, work, standin=standin is not None)
        processor = load_processor(source, revision)
        report = {"base": params.model.base, "source": source, "revision": revision, "decoded": str(decoded),
                  "profile": params.train.profile, "device": _memory(device)[2],
                  "device_memory_bytes": _memory(device)[1], "checks": None, "configs": {}}
        report["checks"] = check_setup(params, names, source, revision, processor)
        log(f"preflight: checks passed ({', '.join(names)}); measuring on {report['device']} ...")
        bs = max(params.train.recipe.batch_size, params.eval.batch_size)
        train_rows, n_train, train_tokens, answer_tokens = scan_split(decoded, "train", processor, bs)
        test_rows, n_test, _, _ = scan_split(decoded, "test", processor, bs)
        report.update(train_utterances=n_train, test_utterances=n_test, train_tokens_per_epoch=train_tokens,
                      longest_train_seconds=train_rows["apa"][0]["duration"])
        if utterances is not None:
            train_tokens = round(train_tokens * utterances[0] / n_train)
            n_train, n_test = utterances
        report["projected_for"] = {"train_utterances": n_train, "test_utterances": n_test,
                                   "train_tokens_per_epoch": train_tokens}
        for name in names:
            probe = probe_config(params, name, source, revision, processor, decoded, train_rows, test_rows, steps, work,
                                 standin)
            report["configs"][name] = {**report["checks"]["configs"][name], **probe,
                                       "eval_batch_fits": eval_batch_that_fits(probe, report["device_memory_bytes"],
                                                                               device.type == "cuda"),
                                       "projected": project(params, probe, n_train, n_test, train_tokens,
                                                            answer_tokens)}
    cfgs = report["configs"].values()
    # The untrained base model generates to max_new_tokens (it has not learned to stop): the bound.
    base_eval = min(c["gen_batch_seconds"] for c in cfgs) * next(iter(cfgs))["projected"]["eval_batches"]
    evals = sum(c["projected"]["eval_seconds"] for c in cfgs) + base_eval
    evals_expected = sum(c["projected"]["eval_seconds_expected"] for c in cfgs) + base_eval
    train = sum(c["projected"]["train_seconds"] for c in cfgs)
    train_expected = sum(c["projected"]["train_seconds_expected"] for c in cfgs)
    peak = max(c["projected"]["peak_bytes"] for c in cfgs)
    report["projected"] = {"base_eval_seconds": base_eval, "total_seconds": train + evals,
                           "total_seconds_expected": train_expected + evals_expected,
                           "eval_seconds": evals, "eval_seconds_expected": evals_expected,
                           "eval_share_expected": evals_expected / (train_expected + evals_expected),
                           "generations": n_test * 2 * (1 + sum(c["projected"]["checkpoints_evaluated"] for c in cfgs)),
                           "peak_bytes": peak, "fits": peak <= report["device_memory_bytes"]}
    for c in cfgs:
        c["fits"] = c["projected"]["peak_bytes"] <= report["device_memory_bytes"]
    return report


# --------------------------------------------------------------------------- output


def _gib(b: int) -> str:
    return f"{b / 2**30:.2f} GiB"


def _hours(s: float) -> str:
    return f"{s / 3600:.2f} h" if s >= 360 else f"{s:.0f} s"


def table(r: dict) -> str:
    c, t, f = r["checks"], r["projected"], r["projected_for"]
    lines = [f"preflight: {r['base']} ({r['source']}, revision {r['revision']}), recipe {r['profile']}, corpus "
             f"{r['decoded']} ({r['train_utterances']} train / {r['test_utterances']} test utterances; projected "
             f"for {f['train_utterances']} / {f['test_utterances']})",
             f"device: {r['device']}, {_gib(r['device_memory_bytes'])}",
             f"checks: layout {c['layout']} ok; audio_token_id {c['audio_token_id']} ok; LoRA targets ok", "",
             "| config | LoRA modules | trainable | step: batch x len, s | train peak | generation: batch x new, s "
             "| gen peak | train, projected | eval, projected | fits |", "|---" * 10 + "|"]
    for name, x in r["configs"].items():
        p, shape = x["projected"], max(x["step_shapes"], key=lambda s: s[1])
        audio = f" (audio encoder + projector {x['audio_params']:,})" if x["audio_params"] else ""
        lines.append(
            f"| {name} | {x['lora_modules']} (r {x['lora_r']}) | {x['trainable_params']:,}{audio} | {shape[0]} x {shape[1]}, "
            f"{x['step_seconds']:.3f} | {_gib(x['train_peak_bytes'])} | {x['gen_batch']} x {x['gen_new_tokens']}, "
            f"{x['gen_batch_seconds']:.2f} | {_gib(x['gen_peak_bytes'])} | {_hours(p['train_seconds_expected'])} "
            f"(bound: {p['micro_batches_per_epoch']} x {p['epochs']} steps, {_hours(p['train_seconds'])}) | "
            f"{_hours(p['eval_seconds_expected'])} (bound: {p['checkpoints_evaluated']} x {p['eval_batches']} "
            f"batches, {_hours(p['eval_seconds'])}) | {'yes' if x['fits'] else '**no**'} |")
    lines.append("")
    for name, x in r["configs"].items():
        fits = x["eval_batch_fits"]
        lines.append(f"{name}: step {x['step_seconds']:.2f} s = forward {x['forward_seconds']:.2f} + backward "
                     f"{x['backward_seconds']:.2f} + optimizer {x['optimizer_seconds']:.2f}; generation: prefill "
                     f"{x['gen_prefill_seconds']:.2f} s + {x['gen_token_seconds']:.3f} s per new token; answers stop "
                     f"at {x['projected']['answer_tokens']} tokens; weights {_gib(x['weights_bytes'])}; evaluation "
                     f"batch that fits: {fits if fits is not None else 'measured on a GPU only'}")
    if r.get("build_seconds"):
        lines.append(f"model built in {', '.join(f'{s:.0f}' for s in r['build_seconds'])} s")
    if r.get("matmul"):
        lines.append(f"matrix products: {r['matmul']}")
    lines += ["", f"whole dvc repro, projected: {_hours(t['total_seconds_expected'])} (upper bound "
              f"{_hours(t['total_seconds'])}); evaluation {_hours(t['eval_seconds_expected'])} "
              f"({100 * t['eval_share_expected']:.0f}%; {t['generations']:,} generations, the base model's "
              f"{_hours(t['base_eval_seconds'])} to max_new_tokens); "
              f"peak {_gib(t['peak_bytes'])} of {_gib(r['device_memory_bytes'])}: "
              f"{'fits' if t['fits'] else 'DOES NOT FIT'} this device"]
    return "\n".join(lines)


def _params(path, overrides):
    """params.yaml with `-S key=value` overrides (values read as YAML, as DVC reads them), validated."""
    import yaml

    from ..core.errors import ParamsError
    from ..core.params import load_params, parse_params

    if not overrides:
        return load_params(path)
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    for item in overrides:
        key, sep, value = item.partition("=")
        *parents, leaf = key.split(".")
        node = raw
        for name in parents:
            node = node.get(name) if isinstance(node, dict) else None
        if not sep or not isinstance(node, dict) or leaf not in node:
            raise ParamsError(f"-S {item!r}: not KEY=VALUE with KEY a param of {path} (e.g. -S train.profile=paper)")
        node[leaf] = yaml.safe_load(value)
    return parse_params(raw)


def main(argv=None) -> int:
    from ..core.cli import tune_malloc
    from ..core.errors import PipelineError
    from ..core.params import load_params

    p = argparse.ArgumentParser(prog="python -m pronounce.checks.preflight", description=__doc__.split("\n\n")[0])
    p.add_argument("--params", default="params.yaml")
    p.add_argument("-S", "--set-param", action="append", default=[], metavar="KEY=VALUE",
                   help="override a param as `dvc exp run -S` does (repeatable), e.g. -S train.profile=paper")
    p.add_argument("--config", action="append", help="only this config (repeatable; default: all)")
    p.add_argument("--steps", type=int, default=4, help="training steps per config (default 4; the first per task "
                                                       "is warm-up)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    a = p.parse_args(argv)
    tune_malloc()
    try:  # the trainer's and loaders' chatter to stderr: stdout is the report alone
        with contextlib.redirect_stdout(sys.stderr):
            report = run_preflight(_params(a.params, a.set_param), steps=max(1, a.steps), configs=a.config,
                                   log=lambda m: print(m, file=sys.stderr))
    except (PreflightError, PipelineError) as e:
        print(f"preflight: FAILED {e}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2, sort_keys=True) if a.json else table(report))
    return 0 if report["projected"]["fits"] else 1


if __name__ == "__main__":
    sys.exit(main())
