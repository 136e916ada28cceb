"""Stage `report`: metrics/report.md, our results in the layout of the paper's Table 3 beside the
paper's, and the plot data of the cross-config plots (`dvc plots show`).

Reads scores/<config>/{details,utterances}.json of every config (pronounce.scoring.score) and the
training loss DVCLive logged (dvclive/<config>/plots/metrics/train/loss.tsv). The report prints,
in this order: a smoke run's warning, the verdicts at a glance (pronounce.scoring.verdicts), the
Table 3 layout, what produced our rows, each epoch minus the paper's row, the headline, undefined
values, intervals and comparisons (pronounce.scoring.uncertainty), MDD both ways (verdicts) and the
counts. Wherever ours stands beside Table 3's precision, recall or F1 it is the paper-style metric,
labelled so (paper.JUDGED_BY). Plot data (pronounce.scoring.plot_data): metrics/plots/vs_paper.json
(ours with 95% intervals against the paper's, each row naming the run) and train_loss.json.

What each section means: docs/scoring.md, the `report` section.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..core.artifacts import atomic_write_text, write_json
from ..core.errors import PipelineError
from ..core.params import BUILTIN_TINY, ReportJob
from ..task.predictions import BASE_LABEL, BASE_NAME, FINAL
from .paper import (
    HEADLINE,
    JUDGED_BY,
    PAPER_SOURCE,
    PAPER_STYLE_SHORT,
    PAPER_TABLE3,
    PAPER_TARGET_EPOCH,
    PAPER_TEST_UTTERANCES,
    TABLE3_COLUMNS,
    fmt,
    paper_fmt,
)
from .plot_data import read_loss, run_label, vs_paper_rows
from .tables import config_rows, listed, markdown
from .uncertainty import render_sections
from .verdicts import mdd_section, verdict_summary

LOWER_IS_BETTER = {"wer", "per"}

TINY_WARNING = (
    "> **⚠️ SMOKE RUN: NOT A REPRODUCTION.** These numbers come from `builtin:tiny`, a tiny\n"
    "> randomly initialised model of Phi-4-multimodal's architecture, trained for minutes on a\n"
    "> CPU. They only show that the pipeline runs end to end; they say nothing about the paper's\n"
    "> method. For a reproduction set `model.base` to `microsoft/Phi-4-multimodal-instruct`,\n"
    "> `data.corpus` to the full speechocean762 and `train.profile` to `paper`, and run on a GPU.\n"
)

MACHINE_NOTE = (  # a user must tell kernel noise from a regression
    "> **Machine-dependent:** the data and the base model are the same bytes on any machine (their\n"
    "> `dvc.lock` hashes); training, and so every number below, depends on the CPU's (or GPU's)\n"
    "> floating-point kernels. On another machine the loss curves agree over the first steps and\n"
    "> the adapters, predictions and these numbers differ slightly: `python -m pronounce.checks.repro_check`\n"
    "> tells that from a regression (docs/reproducibility.md).\n"
)


class ReportError(PipelineError):
    """An input of the report is missing (run the score stages first)."""


def _fmt_p(v) -> str:
    return "n/a" if v is None else f"{v:.2g}"


def load_utterance_tables(scores_dir, configs) -> dict[str, dict]:
    """scores/<config>/utterances.json of every config: the per-utterance statistics the paired
    comparisons between configs resample."""
    out = {}
    for name in configs:
        path = Path(scores_dir) / name / "utterances.json"
        if not path.is_file():
            raise ReportError(f"{path} not found: run `dvc repro score@{name}` first")
        out[name] = json.loads(path.read_text(encoding="utf-8"))
    return out


def load_details(scores_dir, configs) -> dict[str, dict]:
    out = {}
    for name in configs:
        path = Path(scores_dir) / name / "details.json"
        if not path.is_file():
            raise ReportError(f"{path} not found: run `dvc repro score@{name}` first")
        out[name] = json.loads(path.read_text(encoding="utf-8"))
    return out


# --------------------------------------------------------------------------- tables


TABLE3_HEADER = ["Config", "Strategy", "Epoch", "Source", *[h for _, h in TABLE3_COLUMNS], "Parsed (APA/MDD)"]


def _metric_cells(metrics: dict | None) -> list[str]:
    """Ours under each Table 3 column: the metric it is judged against (paper-style P/R/F1)."""
    return [fmt(None if metrics is None else metrics.get(JUDGED_BY[k])) for k, _ in TABLE3_COLUMNS]


def _paper_cells(row: dict) -> list[str]:
    """A Table 3 row as the paper prints it (its decimals, its one underlined p-value)."""
    return [paper_fmt(row["strategy"], row["epoch"], k, row.get(k)) for k, _ in TABLE3_COLUMNS]


def table3(details: dict[str, dict]) -> list[str]:
    """The base model's row and the paper's epoch 0, then one block per strategy: the paper's
    epochs of that strategy and every config of it, by epoch, ours before the paper's."""
    first = next(iter(details.values()))
    base = next((c for k, c in first["checkpoints"].items() if k.startswith(f"{BASE_NAME}/")), None)
    paper0 = next(r for r in PAPER_TABLE3 if r["epoch"] == 0)
    strategies = list(dict.fromkeys(d["strategy"] for d in details.values()))
    # sort keys: block (-1: epoch 0, then each strategy in config order), epoch, ours (0) before
    # the paper (1), config order
    keys, cells = [], []
    if base is not None:
        keys.append((-1, 0, 0, 0))
        cells.append([BASE_LABEL, "none", 0, "**ours**", *_metric_cells(base["metrics"]), _parsed(base)])
    keys.append((-1, 0, 1, 0))
    cells.append(["", "none", 0, "paper", *_paper_cells(paper0), ""])
    for i, (name, d) in enumerate(details.items()):
        for key, label, c in config_rows(d):
            keys.append((strategies.index(d["strategy"]), key, 0, i))
            cells.append([name, d["strategy"], label, "**ours**", *_metric_cells(c["metrics"]), _parsed(c)])
    for r in PAPER_TABLE3:
        if r["strategy"] in strategies:
            keys.append((strategies.index(r["strategy"]), r["epoch"], 1, 0))
            cells.append(["", r["strategy"], r["epoch"], "paper", *_paper_cells(r), ""])
    order = ["block", "epoch", "source", "config"]
    frame = pd.concat([pd.DataFrame(keys, columns=order), pd.DataFrame(cells, columns=TABLE3_HEADER, dtype=object)],
                      axis=1).sort_values(order, kind="stable")
    return markdown(frame[TABLE3_HEADER], TABLE3_HEADER, "llll" + "r" * (len(TABLE3_COLUMNS) + 1))


def _parsed(c: dict) -> str:
    return f"{fmt(c['parse']['apa']['parse_rate'], 2)} / {fmt(c['parse']['mdd']['parse_rate'], 2)}"


def epoch_diffs(details: dict[str, dict]) -> list[str]:
    """Every evaluated epoch of every config minus the paper's row of that epoch and strategy
    (epoch 0: the paper's "no training" row); an epoch Table 3 lacks says so."""
    rows = []
    for i, (name, d) in enumerate(details.items()):
        for epoch, e in sorted(d["metrics"].get("epochs", {}).items(), key=lambda kv: int(kv[0])):
            if epoch == "0" and i:
                continue  # the base model once, as in the table above
            if e.get("paper") is None:
                cells = ["(not in Table 3)"] + [""] * (len(TABLE3_COLUMNS) - 1)
            else:
                cells = [_signed(e["diff"].get(JUDGED_BY[k])) for k, _ in TABLE3_COLUMNS]
            rows.append([BASE_LABEL if epoch == "0" else name, "none" if epoch == "0" else d["strategy"], epoch, *cells])
    return markdown(rows, ["Config", "Strategy", "Epoch", *[h for _, h in TABLE3_COLUMNS]],
                    "llr" + "r" * len(TABLE3_COLUMNS))


def headline(details: dict[str, dict]) -> list[str]:
    rows = []
    for name, d in details.items():
        m = d["metrics"]
        epoch = m.get("epoch")
        rows.append([name, f"ours, final adapter (epoch {epoch if epoch is not None else '?'})",
                     *[fmt(m.get(JUDGED_BY[k])) for k, _ in TABLE3_COLUMNS]])
        paper = m.get("paper") or {}
        pe = m.get("paper_epoch", PAPER_TARGET_EPOCH)
        rows.append(["", f"paper, {d['strategy']} epoch {pe}"
                     + (" (our choice)" if pe != epoch else ""),
                     *[paper_fmt(d["strategy"], pe, k, paper.get(k)) for k, _ in TABLE3_COLUMNS]])
        diff = m.get("diff") or {}
        rows.append(["", "ours − paper", *[_signed(diff.get(JUDGED_BY[k])) for k, _ in TABLE3_COLUMNS]])
    return markdown(rows, ["Config", "Row", *[h for _, h in TABLE3_COLUMNS]], "ll" + "r" * len(TABLE3_COLUMNS))


def _signed(v) -> str:
    return "n/a" if v is None else f"{v:+.3f}"


def undefined_notes(details: dict[str, dict]) -> list[str]:
    """One line per (row, reason): which metrics are undefined and why."""
    notes = []
    for name, ckpt, c in listed(details):
        by_reason: dict[str, list[str]] = {}
        for aspect, r in c["apa"].items():
            if r["reason"]:
                by_reason.setdefault(r["reason"], []).append(f"{aspect} PCC")
        for metric, why in c["mdd"]["reasons"].items():
            if metric in HEADLINE:
                by_reason.setdefault(why, []).append(metric)
        for metric, why in c.get("mdd_paper_style", {}).get("reasons", {}).items():
            by_reason.setdefault(why, []).append(metric)
        for what in ("wer", "per"):
            if c[what]["reason"]:
                by_reason.setdefault(c[what]["reason"], []).append(what.upper())
        for metric, iv in c.get("intervals", {}).items():
            if iv.get("too_few"):
                why = f"no interval, verdict or paired test: {iv['reason']}"
                by_reason.setdefault(why, []).append(metric)
        for why, metrics in by_reason.items():
            notes.append(f"- {name}, {ckpt}: {', '.join(metrics)}: {why}")
    return notes


def pcc_details(details: dict[str, dict]) -> list[str]:
    aspects = list(next(iter(details.values()))["checkpoints"][FINAL]["apa"])
    rows = [[name, ckpt, *[f"{fmt(r['value'])} (p={_fmt_p(r['p_value'])}, n={r['n']})" for r in c["apa"].values()],
             next(iter(c["apa"].values()))["n_dropped"]] for name, ckpt, c in listed(details)]
    header = ["Config", "Checkpoint", *[f"{a}: r (p, n)" for a in aspects], "Unparsed (dropped)"]
    return markdown(rows, header, "ll" + "r" * (len(aspects) + 1))


def mdd_details(details: dict[str, dict]) -> list[str]:
    header = ["Config", "Checkpoint", "TA", "FR", "FA", "TR", "TR correct", "Diag. acc.", "FRR",
              "WER errors / words", "PER errors / phones", "Cut at max_new_tokens"]
    rows = []
    for name, ckpt, c in listed(details):
        n = c["mdd_counts"]
        rows.append([name, ckpt, n["ta"], n["fr"], n["fa"], n["tr"], n["tr_correct"],
                     fmt(c["mdd"]["diagnosis_accuracy"]), fmt(c["mdd"]["false_rejection_rate"]),
                     f"{c['wer']['errors']} / {c['wer']['ref_length']}",
                     f"{c['per']['errors']} / {c['per']['ref_length']}", c.get("truncated", 0)])
    return markdown(rows, header, "ll" + "r" * 10)


# --------------------------------------------------------------------------- the stage


def render(job: ReportJob, details: dict[str, dict], n_test: int, tables: dict[str, dict]) -> str:
    base, corpus, revision = job.model.base, job.corpus, job.model.revision
    parts = []
    if base == BUILTIN_TINY:  # the very first line: nobody may take a smoke run for a reproduction
        parts += [TINY_WARNING]
    parts += [MACHINE_NOTE]
    parts += ["# Results: Ahn & Nam (2025) reproduction", ""]
    # at a glance: the verdicts first, then the table they summarise, then what produced them
    parts += ["## Verdicts at a glance", ""] + verdict_summary(details) + [""]
    parts += ["## Table 3 layout: ours beside the paper's", "",
              f"Epoch 0 is the untrained base model with its speech LoRA ({BASE_LABEL}: the shipped model "
              "switches that adapter on for every audio input; the paper's \"no training\" row), prompted without "
              "the control tokens, as the paper's baseline. PCC: Pearson r "
              "with the human sentence scores; WER/PER: lower is better; F1/precision/recall: "
              f"mispronunciation detection, {PAPER_STYLE_SHORT}; the standard TA/FR/FA/TR counting is in \"MDD: "
              "paper-style and standard counting\". Parsed: share of answers that parsed. "
              "The paper's values are printed with its own decimals; \"(p ≥ 0.05)\" marks the one PCC its caption "
              "underlines as not significant.", ""]
    parts += table3(details) + [""]
    parts += [
        f"Our rows were produced by base model **`{base}`**"
        + (f" (revision `{revision}`)" if revision else "")
        + f" on corpus **`{corpus}`** ({n_test} test utterances), training profile "
        f"`{job.profile}`. The paper's rows are from {PAPER_SOURCE} "
        f"(Phi-4-multimodal-instruct, speechocean762, {PAPER_TEST_UTTERANCES} test utterances).",
        "",
    ]
    if n_test != PAPER_TEST_UTTERANCES:
        parts += [f"> Note: our test set has {n_test} utterances, the paper's {PAPER_TEST_UTTERANCES}: "
                  "the rows are not directly comparable.", ""]
    parts += ["## Which config stands beside which of the paper's strategies", "",
              "The paper compares two strategies, LoRA-only and Unfreeze, and states no LoRA rank.", ""]
    parts += markdown([[name, d["strategy"], d["strategy_reading"]] for name, d in details.items()],
                      ["config", "paper's strategy", "why"], "lll") + [""]
    parts += ["## Each epoch minus the paper's row of that epoch and strategy", "",
              "Ours − paper (PCC, F1, precision, recall: positive is better; WER/PER: negative is better).", ""]
    parts += epoch_diffs(details) + [""]
    parts += ["## Headline: final adapter vs the paper's row of its epoch (Table 3; where it has no such "
              f"epoch, its epoch {PAPER_TARGET_EPOCH}: our choice, the paper names no headline epoch and bolds "
              "its best value of each metric across epochs)", ""]
    parts += headline(details) + [""]
    notes = undefined_notes(details)
    if notes:
        parts += ["## Undefined values", ""] + notes + [""]
    # the rule the scores were counted under, as the score stage recorded it
    first = next(iter(details.values()))
    parts += ["## How unparsed answers count", "", first["unparsed_rule"], ""]
    parts += [first["unparsed_apa_worst"], ""] if "unparsed_apa_worst" in first else []
    parts += render_sections(details, tables)
    parts += ["## APA: PCC p-values and n", ""] + pcc_details(details) + [""]
    parts += mdd_section(details) + [""]
    parts += ["## MDD: counts", ""] + mdd_details(details) + [""]
    parts += ["Plots: `dvc plots show` (predicted vs human scores, PER vs accuracy as in the paper's "
              "Figure 5, ours vs the paper, training loss).", ""]
    return "\n".join(parts)


def run_report(job: ReportJob, scores_dir, dvclive_dir, out_md, plots_dir, log=print) -> str:
    configs = list(job.configs)
    details = load_details(scores_dir, configs)
    n_test = next(iter(details.values()))["checkpoints"][FINAL]["n_utterances"]
    text = render(job, details, n_test, load_utterance_tables(scores_dir, configs))
    out_md = Path(out_md)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_md, text)
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    write_json(plots_dir / "vs_paper.json", vs_paper_rows(details, run_label(job)))
    write_json(plots_dir / "train_loss.json", [r for name in configs for r in read_loss(dvclive_dir, name)])
    if log:
        log(f"report: {out_md} ({len(configs)} config(s), base {job.model.base})")
    return text
