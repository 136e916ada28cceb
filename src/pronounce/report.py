"""Stage `report`: metrics/report.md, our results in the layout of the paper's Table 3, beside
the paper's, plus the plot data of the cross-config plots (dvc plots show). (~315 lines: the
report's sections in the order they print.)

Reads scores/<config>/details.json of every config in params.yaml (pronounce.score) and the
training loss DVCLive logged (dvclive/<config>/plots/metrics/train/loss.tsv).

Outputs:
  metrics/report.md                Table 3 layout (config x epoch rows, metric columns), ours
                                   beside the paper's row of the same epoch and strategy (epoch 0:
                                   the base model with its speech LoRA); every epoch's difference
                                   from that row; the headline (final adapter vs the paper's row
                                   of its epoch); undefined values with their reasons; PCC
                                   p-values and n; parse rates. It names the base model and
                                   corpus that produced our numbers, and warns loudly when the
                                   base is `builtin:tiny` (a smoke run, not a reproduction).
  metrics/plots/vs_paper.json      our headline metrics against the paper's targets
  metrics/plots/train_loss.json    training loss per config
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from .artifacts import atomic_write_text, write_json
from .errors import PipelineError
from .paper import HEADLINE, PAPER_SOURCE, PAPER_TABLE3, PAPER_TARGET_EPOCH, PAPER_TEST_UTTERANCES, fmt
from .params import BUILTIN_TINY
from .predictions import BASE_LABEL, BASE_NAME, FINAL

COLUMNS = [  # (metric key, header): the paper's Table 3 order
    ("accuracy_pcc", "Acc. PCC"), ("fluency_pcc", "Flu. PCC"), ("prosodic_pcc", "Pros. PCC"),
    ("total_pcc", "Total PCC"), ("wer", "WER"), ("per", "PER"), ("f1", "F1"), ("precision", "Precision"),
    ("recall", "Recall"),
]
LOWER_IS_BETTER = {"wer", "per"}

TINY_WARNING = (
    "> **⚠️ SMOKE RUN: NOT A REPRODUCTION.** These numbers come from `builtin:tiny`, a tiny\n"
    "> randomly initialised model of Phi-4-multimodal's architecture, trained for minutes on a\n"
    "> CPU. They only show that the pipeline runs end to end; they say nothing about the paper's\n"
    "> method. For a reproduction set `model.base` to `microsoft/Phi-4-multimodal-instruct`,\n"
    "> `data.corpus` to the full speechocean762 and `train.profile` to `paper`, and run on a GPU.\n"
)


class ReportError(PipelineError):
    """An input of the report is missing (run the score stages first)."""


def _fmt_p(v) -> str:
    return "n/a" if v is None else f"{v:.2g}"


def load_details(scores_dir, configs) -> dict[str, dict]:
    out = {}
    for name in configs:
        path = Path(scores_dir) / name / "details.json"
        if not path.is_file():
            raise ReportError(f"{path} not found: run `dvc repro score@{name}` first")
        out[name] = json.loads(path.read_text(encoding="utf-8"))
    return out


def read_loss(dvclive_dir, name) -> list[dict]:
    """Training loss of one config from DVCLive's TSV files; [] when it logged none."""
    folder = Path(dvclive_dir) / name / "plots" / "metrics" / "train"
    loss_path = folder / "loss.tsv"
    if not loss_path.is_file():
        return []
    epoch_of = {}
    if (folder / "epoch.tsv").is_file():
        with open(folder / "epoch.tsv", encoding="utf-8", newline="") as f:
            epoch_of = {int(r["step"]): float(r["epoch"]) for r in csv.DictReader(f, delimiter="\t")}
    with open(loss_path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [{"config": name, "step": int(r["step"]), "epoch": epoch_of.get(int(r["step"])), "loss": float(r["loss"])}
            for r in rows]


# --------------------------------------------------------------------------- tables


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _metric_cells(metrics: dict | None) -> list[str]:
    return [fmt(None if metrics is None else metrics.get(k)) for k, _ in COLUMNS]


def _our_rows(details: dict) -> list[tuple]:
    """(sort key, epoch label, checkpoint) of one config's own checkpoints (not the base model's).
    The final adapter's row stands for the epoch it is byte-identical to."""
    final = details["checkpoints"][FINAL]
    rows = [(10**9 if final["epoch"] is None else final["epoch"],
             "final" if final["epoch"] is None else f"{final['epoch']} (final)", final)]
    for ckpt, c in details["checkpoints"].items():
        if ckpt != FINAL and not ckpt.startswith(f"{BASE_NAME}/") and c["epoch"] != final["epoch"]:
            rows.append((c["epoch"], str(c["epoch"]), c))
    return sorted(rows, key=lambda r: r[0])


def listed(details: dict[str, dict]) -> list[tuple[str, str, dict]]:
    """(config label, checkpoint label, checkpoint) of every row the report shows: the base model
    once, then each config's checkpoints (an epoch identical to the final adapter only once)."""
    out = []
    first = next(iter(details.values()))
    for ckpt, c in first["checkpoints"].items():
        if ckpt.startswith(f"{BASE_NAME}/"):
            out.append((BASE_LABEL, "epoch 0", c))
    for name, d in details.items():
        for _, label, c in _our_rows(d):
            out.append((name, f"epoch {label}", c))
    return out


def table3(details: dict[str, dict]) -> list[str]:
    """The base model's row and the paper's epoch 0, then one block per strategy: the paper's
    epochs of that strategy and every config of it, by epoch, ours before the paper's."""
    header = ["Config", "Strategy", "Epoch", "Source", *[h for _, h in COLUMNS], "Parsed (APA/MDD)"]
    lines = [_row(header), _row(["---"] * 3 + [":---"] + ["---:"] * (len(COLUMNS) + 1))]
    first = next(iter(details.values()))
    base = next((c for k, c in first["checkpoints"].items() if k.startswith(f"{BASE_NAME}/")), None)
    paper0 = next(r for r in PAPER_TABLE3 if r["epoch"] == 0)
    if base is not None:
        lines.append(_row([BASE_LABEL, "none", 0, "**ours**", *_metric_cells(base["metrics"]), _parsed(base)]))
    lines.append(_row(["", "none", 0, "paper", *_metric_cells(paper0), ""]))
    strategies = list(dict.fromkeys(d["strategy"] for d in details.values()))
    for strategy in strategies:
        entries = []
        for i, (name, d) in enumerate(details.items()):
            if d["strategy"] == strategy:
                for key, label, c in _our_rows(d):
                    entries.append(((key, 0, i), [name, strategy, label, "**ours**", *_metric_cells(c["metrics"]),
                                                  _parsed(c)]))
        for r in PAPER_TABLE3:
            if r["strategy"] == strategy:
                entries.append(((r["epoch"], 1, 0), ["", strategy, r["epoch"], "paper", *_metric_cells(r), ""]))
        lines += [_row(cells) for _, cells in sorted(entries, key=lambda e: e[0])]
    return lines


def _parsed(c: dict) -> str:
    return f"{fmt(c['parse']['apa']['parse_rate'], 2)} / {fmt(c['parse']['mdd']['parse_rate'], 2)}"


def epoch_diffs(details: dict[str, dict]) -> list[str]:
    """Every evaluated epoch of every config minus the paper's row of that epoch and strategy
    (epoch 0: the paper's "no training" row); an epoch Table 3 lacks says so."""
    lines = [_row(["Config", "Strategy", "Epoch", *[h for _, h in COLUMNS]]),
             _row(["---", "---", "---:"] + ["---:"] * len(COLUMNS))]
    for i, (name, d) in enumerate(details.items()):
        for epoch, e in sorted(d["metrics"].get("epochs", {}).items(), key=lambda kv: int(kv[0])):
            if epoch == "0" and i:
                continue  # the base model once, as in the table above
            if e.get("paper") is None:
                cells = ["(not in Table 3)"] + [""] * (len(COLUMNS) - 1)
            else:
                cells = [_signed(e["diff"].get(k)) for k, _ in COLUMNS]
            lines.append(_row([BASE_LABEL if epoch == "0" else name, "none" if epoch == "0" else d["strategy"],
                               epoch, *cells]))
    return lines


def headline(details: dict[str, dict]) -> list[str]:
    lines = [_row(["Config", "Row", *[h for _, h in COLUMNS]]), _row(["---", ":---"] + ["---:"] * len(COLUMNS))]
    for name, d in details.items():
        m = d["metrics"]
        epoch = m.get("epoch")
        lines.append(_row([name, f"ours, final adapter (epoch {epoch if epoch is not None else '?'})",
                           *[fmt(m[k]) for k, _ in COLUMNS]]))
        paper = m.get("paper") or {}
        lines.append(_row(["", f"paper, {d['strategy']} epoch {m.get('paper_epoch', PAPER_TARGET_EPOCH)}",
                           *[fmt(paper.get(k)) for k, _ in COLUMNS]]))
        diff = m.get("diff") or {}
        lines.append(_row(["", "ours − paper", *[_signed(diff.get(k)) for k, _ in COLUMNS]]))
    return lines


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
        for what in ("wer", "per"):
            if c[what]["reason"]:
                by_reason.setdefault(c[what]["reason"], []).append(what.upper())
        for why, metrics in by_reason.items():
            notes.append(f"- {name}, {ckpt}: {', '.join(metrics)}: {why}")
    return notes


def pcc_details(details: dict[str, dict]) -> list[str]:
    aspects = list(next(iter(details.values()))["checkpoints"][FINAL]["apa"])
    lines = [_row(["Config", "Checkpoint", *[f"{a}: r (p, n)" for a in aspects], "Unparsed (dropped)"]),
             _row(["---", "---"] + ["---:"] * (len(aspects) + 1))]
    for name, ckpt, c in listed(details):
        cells = [f"{fmt(r['value'])} (p={_fmt_p(r['p_value'])}, n={r['n']})" for r in c["apa"].values()]
        lines.append(_row([name, ckpt, *cells, next(iter(c["apa"].values()))["n_dropped"]]))
    return lines


def mdd_details(details: dict[str, dict]) -> list[str]:
    lines = [_row(["Config", "Checkpoint", "TA", "FR", "FA", "TR", "TR correct", "Diag. acc.", "FRR",
                   "WER errors / words", "PER errors / phones", "Cut at max_new_tokens"]),
             _row(["---", "---"] + ["---:"] * 10)]
    for name, ckpt, c in listed(details):
        n = c["mdd_counts"]
        lines.append(_row([name, ckpt, n["ta"], n["fr"], n["fa"], n["tr"], n["tr_correct"],
                           fmt(c["mdd"]["diagnosis_accuracy"]), fmt(c["mdd"]["false_rejection_rate"]),
                           f"{c['wer']['errors']} / {c['wer']['ref_length']}",
                           f"{c['per']['errors']} / {c['per']['ref_length']}", c.get("truncated", 0)]))
    return lines


# --------------------------------------------------------------------------- plot data


def vs_paper_rows(details: dict[str, dict]) -> list[dict]:
    rows = []
    for name, d in details.items():
        m = d["metrics"]
        epoch = m.get("epoch")
        for key, _ in COLUMNS:
            if m.get(key) is not None:
                rows.append({"metric": key, "config": name, "source": "ours",
                             "series": f"{name} (e{epoch if epoch is not None else '?'})",
                             "value": m[key]})
            if (m.get("paper") or {}).get(key) is not None:
                rows.append({"metric": key, "config": name, "source": "paper",
                             "series": f"paper {d['strategy']} (e{m.get('paper_epoch', PAPER_TARGET_EPOCH)})",
                             "value": m["paper"][key]})
    # one paper bar per (metric, series) even when two configs share a strategy
    seen, out = set(), []
    for r in rows:
        k = (r["metric"], r["series"])
        if k not in seen:
            seen.add(k)
            out.append(r)
    return out


# --------------------------------------------------------------------------- the stage


def render(params: dict, details: dict[str, dict], n_test: int) -> str:
    base, corpus = params["model"]["base"], params["data"]["corpus"]
    revision = params["model"].get("revision")
    parts = []
    if base == BUILTIN_TINY:  # the very first line: nobody may take a smoke run for a reproduction
        parts += [TINY_WARNING]
    parts += [
        "# Results: Ahn & Nam (2025) reproduction",
        "",
        f"Our rows were produced by base model **`{base}`**"
        + (f" (revision `{revision}`)" if revision else "")
        + f" on corpus **`{corpus}`** ({n_test} test utterances), training profile "
        f"`{params['train']['profile']}`. The paper's rows are from {PAPER_SOURCE} "
        f"(Phi-4-multimodal-instruct, speechocean762, {PAPER_TEST_UTTERANCES} test utterances).",
        "",
    ]
    if n_test != PAPER_TEST_UTTERANCES:
        parts += [f"> Note: our test set has {n_test} utterances, the paper's {PAPER_TEST_UTTERANCES}: "
                  "the rows are not directly comparable.", ""]
    parts += ["## Table 3 layout: ours beside the paper's", "",
              f"Epoch 0 is the untrained base model with its speech LoRA ({BASE_LABEL}: the shipped model "
              "switches that adapter on for every audio input; the paper's \"no training\" row). PCC: Pearson r "
              "with the human sentence scores; WER/PER: lower is better; F1/precision/recall: "
              "mispronunciation detection (TA/FR/FA/TR counting). Parsed: share of answers that parsed.", ""]
    parts += table3(details) + [""]
    parts += ["## Each epoch minus the paper's row of that epoch and strategy", "",
              "Ours − paper (PCC, F1, precision, recall: positive is better; WER/PER: negative is better).", ""]
    parts += epoch_diffs(details) + [""]
    parts += ["## Headline: final adapter vs the paper's row of its epoch (Table 3; epoch "
              f"{PAPER_TARGET_EPOCH}, the paper's headline, where Table 3 has no such epoch)", ""]
    parts += headline(details) + [""]
    notes = undefined_notes(details)
    if notes:
        parts += ["## Undefined values", ""] + notes + [""]
    # the rule the scores were counted under, as the score stage recorded it
    parts += ["## How unparsed answers count", "", next(iter(details.values()))["unparsed_rule"], ""]
    parts += ["## APA: PCC p-values and n", ""] + pcc_details(details) + [""]
    parts += ["## MDD: counts", ""] + mdd_details(details) + [""]
    parts += ["Plots: `dvc plots show` (predicted vs human scores, PER vs accuracy as in the paper's "
              "Figure 5, ours vs the paper, training loss).", ""]
    return "\n".join(parts)


def run_report(params: dict, scores_dir, dvclive_dir, out_md, plots_dir, log=print) -> str:
    configs = list(params["configs"])
    details = load_details(scores_dir, configs)
    n_test = next(iter(details.values()))["checkpoints"][FINAL]["n_utterances"]
    text = render(params, details, n_test)
    out_md = Path(out_md)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_md, text)
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    write_json(plots_dir / "vs_paper.json", vs_paper_rows(details))
    write_json(plots_dir / "train_loss.json", [r for name in configs for r in read_loss(dvclive_dir, name)])
    if log:
        log(f"report: {out_md} ({len(configs)} config(s), base {params['model']['base']})")
    return text
