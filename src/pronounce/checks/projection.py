"""The preflight's projection: the whole `dvc repro` of each config and in all, from its probe
(pronounce.checks.probe), and the table a user reads before spending GPU hours. Upper bounds
(every training batch as long as the longest, every answer as long as `eval.max_new_tokens`)
beside the expected figures (the corpus's own token count at the probe's tokens/s; answers that
stop at their task's longest training answer); the untrained base model never learned to stop,
so its evaluation is always the bound. Why, and the paper run's counts: docs/real-run.md.
"""

from __future__ import annotations

import math

from ..core.params import Params


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


def totals(configs: dict, n_test_utts: int, device_bytes: int) -> dict:
    """The whole `dvc repro` from each config's projection (`configs`: the report's, each marked
    `fits` here): training and evaluation, bound and expected, with the untrained base model's
    evaluation; the generations; the peak against the device's memory."""
    cfgs = configs.values()
    # The untrained base model generates to max_new_tokens (it has not learned to stop): the bound.
    base_eval = min(c["gen_batch_seconds"] for c in cfgs) * next(iter(cfgs))["projected"]["eval_batches"]
    evals = sum(c["projected"]["eval_seconds"] for c in cfgs) + base_eval
    evals_expected = sum(c["projected"]["eval_seconds_expected"] for c in cfgs) + base_eval
    train = sum(c["projected"]["train_seconds"] for c in cfgs)
    train_expected = sum(c["projected"]["train_seconds_expected"] for c in cfgs)
    peak = max(c["projected"]["peak_bytes"] for c in cfgs)
    projected = {"base_eval_seconds": base_eval, "total_seconds": train + evals,
                 "total_seconds_expected": train_expected + evals_expected,
                 "eval_seconds": evals, "eval_seconds_expected": evals_expected,
                 "eval_share_expected": evals_expected / (train_expected + evals_expected),
                 "generations": n_test_utts * 2 * (1 + sum(c["projected"]["checkpoints_evaluated"] for c in cfgs)),
                 "peak_bytes": peak, "fits": peak <= device_bytes}
    for c in cfgs:
        c["fits"] = c["projected"]["peak_bytes"] <= device_bytes
    return projected


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
