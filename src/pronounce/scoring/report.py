"""Stage `report`: metrics/report.md, our results in the layout of the paper's Table 3 beside the
paper's, and the plot data of the cross-config plots (`dvc plots show`).

Reads scores/<config>/{details,utterances}.json of every config (pronounce.scoring.score) and the
training loss DVCLive logged (dvclive/<config>/plots/metrics/train/loss.tsv). The report prints,
in this order: a smoke run's warning, the verdicts at a glance (pronounce.scoring.verdicts), the
Table 3 layout, what produced our rows, each epoch minus the paper's row, the headline, undefined
values, intervals and comparisons (pronounce.scoring.uncertainty), MDD both ways (verdicts) and the
counts. Wherever ours stands beside Table 3's precision, recall or F1 it is the paper-style metric,
labelled so (paper.JUDGED_BY). Plot data: metrics/plots/vs_paper.json (ours with 95% intervals
against the paper's, each row naming the run: a smoke run says so) and train_loss.json.

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
from .intervals import TOO_FEW, VERDICTS
from .paper import (
    HEADLINE,
    JUDGED_BY,
    MDD_CONTEXT,
    PAPER_SOURCE,
    PAPER_STYLE_NAMES,
    PAPER_STYLE_NOTE,
    PAPER_STYLE_SHORT,
    PAPER_TABLE3,
    PAPER_TARGET_EPOCH,
    PAPER_TEST_UTTERANCES,
    fmt,
    judged_label,
    paper_fmt,
)
from .tables import config_rows, listed, markdown
from .uncertainty import render_sections

COLUMNS = [  # (Table 3 key, header): the paper's Table 3 order; ours in each is paper.JUDGED_BY's metric
    (k, h if JUDGED_BY[k] == k else f"{h} (paper-style)") for k, h in (
        ("accuracy_pcc", "Acc. PCC"), ("fluency_pcc", "Flu. PCC"), ("prosodic_pcc", "Pros. PCC"),
        ("total_pcc", "Total PCC"), ("wer", "WER"), ("per", "PER"), ("f1", "F1"), ("precision", "Precision"),
        ("recall", "Recall"))
]
LOWER_IS_BETTER = {"wer", "per"}

TINY_WARNING = (
    "> **⚠️ SMOKE RUN: NOT A REPRODUCTION.** These numbers come from `builtin:tiny`, a tiny\n"
    "> randomly initialised model of Phi-4-multimodal's architecture, trained for minutes on a\n"
    "> CPU. They only show that the pipeline runs end to end; they say nothing about the paper's\n"
    "> method. For a reproduction set `model.base` to `microsoft/Phi-4-multimodal-instruct`,\n"
    "> `data.corpus` to the full speechocean762 and `train.profile` to `paper`, and run on a GPU.\n"
)

MACHINE_NOTE = (  # issue 18: a user must tell kernel noise from a regression
    "> **Machine-dependent:** the data and the base model are the same bytes on any machine (their\n"
    "> `dvc.lock` hashes); training, and so every number below, depends on the CPU's (or GPU's)\n"
    "> floating-point kernels. On another machine the loss curves agree over the first steps and\n"
    "> the adapters, predictions and these numbers differ slightly: `python -m pronounce.checks.repro_check`\n"
    "> tells that from a regression (README, \"Reproducibility\").\n"
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


def _tsv(path, column: str) -> pd.DataFrame:
    """One DVCLive metric file: step -> value. The dtypes are fixed (a column of whole numbers
    would read as int: JSON 1, not 1.0), and pandas 3's default parser reads floats as float()
    does, bit for bit, so train_loss.json keeps the bytes of the csv-module reader before it."""
    return pd.read_csv(path, sep="\t", usecols=["step", column], dtype={"step": "int64", column: "float64"})


def read_loss(dvclive_dir, name) -> list[dict]:
    """Training loss of one config from DVCLive's TSV files, each step with its epoch (None where
    epoch.tsv lacks the step or is absent); [] when the config logged no loss."""
    folder = Path(dvclive_dir) / name / "plots" / "metrics" / "train"
    if not (folder / "loss.tsv").is_file():
        return []
    loss = _tsv(folder / "loss.tsv", "loss")
    if (folder / "epoch.tsv").is_file():
        loss = loss.merge(_tsv(folder / "epoch.tsv", "epoch").drop_duplicates("step", keep="last"), on="step", how="left")
    else:
        loss["epoch"] = float("nan")
    # NaN (no epoch logged for the step) -> None: JSON null, not the invalid NaN
    loss["epoch"] = loss["epoch"].astype(object).where(loss["epoch"].notna(), None)
    return loss.assign(config=name)[["config", "step", "epoch", "loss"]].to_dict("records")


# --------------------------------------------------------------------------- tables


TABLE3_HEADER = ["Config", "Strategy", "Epoch", "Source", *[h for _, h in COLUMNS], "Parsed (APA/MDD)"]


def _metric_cells(metrics: dict | None) -> list[str]:
    """Ours under each Table 3 column: the metric it is judged against (paper-style P/R/F1)."""
    return [fmt(None if metrics is None else metrics.get(JUDGED_BY[k])) for k, _ in COLUMNS]


def _paper_cells(row: dict) -> list[str]:
    """A Table 3 row as the paper prints it (its decimals, its one underlined p-value)."""
    return [paper_fmt(row["strategy"], row["epoch"], k, row.get(k)) for k, _ in COLUMNS]


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
    return markdown(frame[TABLE3_HEADER], TABLE3_HEADER, "llll" + "r" * (len(COLUMNS) + 1))


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
                cells = ["(not in Table 3)"] + [""] * (len(COLUMNS) - 1)
            else:
                cells = [_signed(e["diff"].get(JUDGED_BY[k])) for k, _ in COLUMNS]
            rows.append([BASE_LABEL if epoch == "0" else name, "none" if epoch == "0" else d["strategy"], epoch, *cells])
    return markdown(rows, ["Config", "Strategy", "Epoch", *[h for _, h in COLUMNS]], "llr" + "r" * len(COLUMNS))


def headline(details: dict[str, dict]) -> list[str]:
    rows = []
    for name, d in details.items():
        m = d["metrics"]
        epoch = m.get("epoch")
        rows.append([name, f"ours, final adapter (epoch {epoch if epoch is not None else '?'})",
                     *[fmt(m.get(JUDGED_BY[k])) for k, _ in COLUMNS]])
        paper = m.get("paper") or {}
        pe = m.get("paper_epoch", PAPER_TARGET_EPOCH)
        rows.append(["", f"paper, {d['strategy']} epoch {pe}"
                     + (" (our choice)" if pe != epoch else ""),
                     *[paper_fmt(d["strategy"], pe, k, paper.get(k)) for k, _ in COLUMNS]])
        diff = m.get("diff") or {}
        rows.append(["", "ours − paper", *[_signed(diff.get(JUDGED_BY[k])) for k, _ in COLUMNS]])
    return markdown(rows, ["Config", "Row", *[h for _, h in COLUMNS]], "ll" + "r" * len(COLUMNS))


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


# --------------------------------------------------------------------------- verdicts at a glance


VERDICT_COLUMNS = ("consistent", "above", "below", TOO_FEW, "n/a")


def _kind(v: str | None) -> str:
    """A verdict's column: consistent, above, below, too few (any "too few (n = k)"), n/a (None)."""
    if v is None:
        return "n/a"
    return TOO_FEW if v.startswith(TOO_FEW) else v


def verdict_rows(details: dict[str, dict]) -> list[tuple[str, str, dict, tuple]]:
    """(ours, the paper's row, its entry in the metrics: our values, `<metric>_ci`, `paper`, `verdict`
    keyed by our metric; (strategy, epoch) of the paper's row) at the paper's epochs: every evaluated epoch that Table 3 has (epoch 0, the
    base model, once), and a final adapter of an epoch it lacks against PAPER_TARGET_EPOCH (our
    choice of headline, labelled so)."""
    out = []
    for i, (name, d) in enumerate(details.items()):
        m = d["metrics"]
        judged = set()
        for epoch, e in sorted(m.get("epochs", {}).items(), key=lambda kv: int(kv[0])):
            if e.get("paper") is None or (epoch == "0" and i):
                continue
            judged.add(epoch)
            ours = f"{BASE_LABEL}, epoch 0" if epoch == "0" else f"{name}, epoch {epoch}"
            theirs = "none, epoch 0" if epoch == "0" else f"{d['strategy']}, epoch {epoch}"
            out.append((ours, theirs, e, (d["strategy"], int(epoch))))
        final_epoch = m.get("epoch")
        if m.get("paper") is not None and str(final_epoch) not in judged:
            pe = m.get("paper_epoch")
            theirs = f"{d['strategy']}, epoch {pe}" + (
                f" (our choice of headline: Table 3 has no epoch {final_epoch})" if pe != final_epoch else "")
            out.append((f"{name}, epoch {final_epoch} (final)", theirs, m, (d["strategy"], pe)))
    return out


def verdict_summary(details: dict[str, dict]) -> list[str]:
    """The report's first section: one sentence with the counts, then one row per row of ours."""
    rows, total = [], dict.fromkeys(VERDICT_COLUMNS, 0)
    for ours, theirs, entry, _ in verdict_rows(details):
        counts = dict.fromkeys(VERDICT_COLUMNS, 0)
        verdicts = entry.get("verdict") or {}
        for k in HEADLINE:
            counts[_kind(verdicts.get(JUDGED_BY[k]))] += 1
        for k, v in counts.items():
            total[k] += v
        rows.append([ours, theirs, *[str(counts[k]) for k in VERDICT_COLUMNS]])
    n = sum(total.values())
    sentence = (f"**Of {n} Table 3 numbers set beside ours: " + ", ".join(f"{total[k]} {k}" for k in VERDICT_COLUMNS)
                + ".**" if n else "**No row of ours stands beside a row of Table 3.**")
    header = ["Ours", "Against the paper's", *[k.capitalize() for k in VERDICT_COLUMNS[:-1]], "n/a"]
    return [sentence, "",
            f"{VERDICTS[0].capitalize()}: the paper's value inside our 95% interval; {VERDICTS[1]} / "
            f"{VERDICTS[2]}: our whole interval above / below it (for WER and PER above is worse); too few: fewer "
            "events than `score.intervals.min_events` (e.g. scored answers behind a PCC, utterances behind WER, PER and "
            "the paper-style precision, recall and F1), so no interval or verdict; n/a: no interval (the metric is undefined, e.g. no answer parsed). Precision, recall and F1 "
            f"are judged paper-style: {PAPER_STYLE_NOTE}; the standard MDD counting gets no verdict. Per metric: "
            "\"Intervals and verdicts against the paper\" below.", "",
            *markdown(rows, header, "ll" + "r" * len(VERDICT_COLUMNS))]


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


STANDARD_MDD = ("precision", "recall", "f1")  # the field's counting (TA/FR/FA/TR): no paper verdict


def _with_interval(value, ci: dict | None) -> str:
    """"0.123 [0.100, 0.150]"; the value with "too few (n = k)" or alone where there is no interval."""
    if ci and ci.get("too_few"):
        return f"{fmt(value)}, {ci['too_few']}"
    if value is None or not ci or ci.get("low") is None:
        return fmt(value)
    return f"{fmt(value)} [{ci['low']:.3f}, {ci['high']:.3f}]"


def mdd_paper_style(details: dict[str, dict]) -> list[str]:
    """The paper-style P/R/F1 at the paper's epochs (verdict_rows): ours with its 95% interval, the
    paper's value and the verdict, one row per row of ours."""
    rows = []
    for ours, theirs, e, (strategy, epoch) in verdict_rows(details):
        cells = []
        for key, name in zip(STANDARD_MDD, PAPER_STYLE_NAMES):
            cells += [_with_interval(e.get(name), e.get(f"{name}_ci")),
                      paper_fmt(strategy, epoch, key, (e.get("paper") or {}).get(key)),
                      (e.get("verdict") or {}).get(name) or "n/a"]
        rows.append([ours, theirs, *cells])
    header = ["Ours", "Against the paper's", *[f"{k} {h}" for k in ("P", "R", "F1")
                                                for h in ("[95%]", "paper", "verdict")]]
    return markdown(rows, header, "ll" + "rrl" * 3)


def mdd_standard(details: dict[str, dict]) -> list[str]:
    """The field's TA/FR/FA/TR counting with its intervals, no verdict; then the field's published
    speechocean762 results (paper.MDD_CONTEXT), as context."""
    rows = []
    for name, ckpt, c in listed(details):
        iv = c.get("intervals", {})
        rows.append([name, ckpt, *[_with_interval(c["metrics"].get(k), iv.get(k)) for k in STANDARD_MDD], "ours"])
    for r in MDD_CONTEXT:
        rows.append([r["system"], "published (context, not a target)", *[fmt(r[k]) for k in STANDARD_MDD],
                     f"{r['source']}; {r['checked']}"])
    return markdown(rows, ["System", "Checkpoint", "Precision [95%]", "Recall [95%]", "F1 [95%]", "Source"],
                    "llrrrl")


def mdd_section(details: dict[str, dict]) -> list[str]:
    return ["## MDD: paper-style and standard counting", "",
            f"**Paper-style**: {PAPER_STYLE_NOTE}. Table 3's precision, recall and F1 are judged against these. "
            "A reconstruction: the paper says only that they compare \"the model outputs with reference phoneme "
            "transcriptions\"; this reading fits all 9 rows of its Table 3, no alignment-based one does.", "",
            *mdd_paper_style(details), "",
            "**Standard counting** (TA/FR/FA/TR against the canonical and annotated phones, "
            "`mdd_scoring.md`): values and 95% intervals, no paper verdict (the paper's numbers are not this "
            "metric). Beside them the field's published speechocean762 results, as **context, not targets**: "
            "both systems are given the canonical phones of the prompt text, which our model (like the paper's) "
            "is not: it transcribes the audio alone.", "",
            *mdd_standard(details)]


# --------------------------------------------------------------------------- plot data


def run_label(job: ReportJob) -> str:
    """What produced our numbers, in a line the plots carry (a smoke run says it is not a reproduction)."""
    if job.model.base == BUILTIN_TINY:
        return f"SMOKE RUN, NOT A REPRODUCTION: {BUILTIN_TINY}, {job.corpus}, profile {job.profile}"
    return f"{job.model.base}, {job.corpus}, profile {job.profile}"


def vs_paper_rows(details: dict[str, dict], run: str = "") -> list[dict]:
    """Plot data: each config's final adapter and the paper's row it stands beside, per metric; ours
    with its 95% interval (`low`, `high`: None where there is none, e.g. too few events), every row
    with `run` (run_label), which the plot prints above the bars."""
    rows = []
    for name, d in details.items():
        m = d["metrics"]
        epoch = m.get("epoch")
        for key, _ in COLUMNS:
            ours = JUDGED_BY[key]  # the metric of ours the paper's number is judged against
            label = judged_label(key)  # "precision (paper-style)": the panel says what ours is
            note = None if ours == key else PAPER_STYLE_SHORT
            if m.get(ours) is not None:
                ci = m.get(f"{ours}_ci") or {}
                rows.append({"metric": label, "ours_metric": ours, "note": note, "config": name, "source": "ours",
                             "series": f"{name} (e{epoch if epoch is not None else '?'})",
                             "value": m[ours], "low": ci.get("low"), "high": ci.get("high"), "run": run})
            if (m.get("paper") or {}).get(key) is not None:
                rows.append({"metric": label, "ours_metric": ours, "note": note, "config": name, "source": "paper",
                             "series": f"paper {d['strategy']} (e{m.get('paper_epoch', PAPER_TARGET_EPOCH)})",
                             "value": m["paper"][key], "low": None, "high": None, "run": run})
    # one paper bar per (metric, series) even when two configs share a strategy
    seen, out = set(), []
    for r in rows:
        k = (r["metric"], r["series"])
        if k not in seen:
            seen.add(k)
            out.append(r)
    return out


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
