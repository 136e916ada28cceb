"""The report's verdicts against the paper: at a glance (one row per row of ours, the first
section of metrics/report.md) and in its MDD section, where the paper-style P/R/F1 are judged and
the field's standard counting stands, with no verdict, beside the field's published results.

Kept out of pronounce.scoring.report so that the stage reads as its sections' order; both parts
share `verdict_rows`, the pairing of our rows with Table 3's.
"""

from __future__ import annotations

from ..task.predictions import BASE_LABEL
from .intervals import TOO_FEW, VERDICTS
from .paper import (
    HEADLINE,
    JUDGED_BY,
    MDD_CONTEXT,
    PAPER_STYLE_NAMES,
    PAPER_STYLE_NOTE,
    fmt,
    paper_fmt,
)
from .tables import listed, markdown

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


# --------------------------------------------------------------------------- MDD both ways


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
