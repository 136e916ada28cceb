"""Preflight: what the configured run will cost, measured before it costs it.

    python -m pronounce.checks.preflight            # a table; exit 1 with one line per failed check
    python -m pronounce.checks.preflight --json     # the same report for machines

For the configured base model, corpus and recipe (built or decoded into a scratch folder when
models/base or data/decoded are not theirs) it runs: 1. the checks, before any weight is loaded
(native layout, audio token id, each config's LoRA targets and trainable parameters, on the meta
device); 2. per config, a few training steps and one batched generation through the pipeline's
own code on the longest clips (pronounce.checks.probe); 3. the projected time and peak memory of
the whole `dvc repro` per config, against the device's (pronounce.checks.projection). About 13 s
on 2 CPU cores for the embedded default; pronounce.checks.fullsize runs it on a weightless
stand-in of the real model. Why, and what each step measures: docs/real-run.md#preflight
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import math
import sys
import tempfile
from pathlib import Path

from ..core.params import Params
from .probe import PreflightError, device_memory, probe_config, train_device
from .projection import eval_batch_that_fits, project, table, totals

PROJECTIONS_PER_LAYER = 4  # qkv_proj, o_proj, gate_up_proj, down_proj


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


# --------------------------------------------------------------------------- the procedure


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
                  "profile": params.train.profile, "device": device_memory(device)[2],
                  "device_memory_bytes": device_memory(device)[1], "checks": None, "configs": {}}
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
    report["projected"] = totals(report["configs"], n_test, report["device_memory_bytes"])
    return report


# --------------------------------------------------------------------------- command line


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
