"""The report's sections on uncertainty (pronounce.scoring.report renders them after its tables), and a
command line for what one run's report cannot hold:

    python -m pronounce.scoring.uncertainty --compare RUN_A RUN_B [--config NAME]
        each run's scores/ folder (e.g. two `dvc exp` results checked out, or copies): whether
        each metric's change from A to B exceeds its paired interval (same test utterances,
        resampled on the same speakers, under A's score.intervals settings)
    python -m pronounce.scoring.uncertainty --seeds RUN ... [--config NAME]
        several runs of one setup that differ in the training seed: mean ± std over them, the
        field's way of reporting seed variance

Sections: intervals and verdicts against the paper, SCC and RMSE beside each PCC, paired
comparisons (consecutive epochs, from the score stage; configs, computed here on the same
resampled speakers), and the APA PCC with unparsed answers counted as the worst case.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from ..task.predictions import BASE_NAME, FINAL
from .bootstrap import EVENT_KINDS
from .intervals import compare_tables, settings_of
from .paper import HEADLINE, JUDGED_BY, PAPER_STYLE_NAMES, PAPER_STYLE_SHORT, fmt, judged_label, paper_fmt
from .tables import listed, markdown

ASPECTS = ("accuracy", "fluency", "prosodic", "total")
COMPARED = (*HEADLINE, *PAPER_STYLE_NAMES)  # the metrics the paired comparisons list
VERDICT_NOTE = (
    "A verdict says where the paper's published value lies against our 95% interval: **consistent** "
    "(inside it), **above** (our whole interval is above the paper's value; for WER and PER that is worse) "
    "or **below**; **too few (n = k)** where the metric rests on fewer events than "
    "`score.intervals.min_events` (scored answers for a PCC; utterances for WER, PER and the paper-style "
    "precision, recall and F1; mispronounced phones and rejections for the standard ones): an interval over "
    "so few is no evidence either way. Our "
    "interval covers test-set sampling only (which speakers and utterances were "
    "tested), not the variation between training runs (seeds, data order, hardware): a verdict of "
    "above/below says the paper's number is unlikely under *our* run's sampling error, not that the "
    "paper's method differs from ours. The paper publishes no intervals, so its own uncertainty is not "
    "in the comparison either; seed variance needs several runs (`--seeds`, docs/experiments.md).")


def _ci(c: dict | None) -> str:
    """[low, high]; "too few (n = k)" where the events were too few for one; else n/a."""
    if c and c.get("too_few"):
        return c["too_few"]
    if not c or c.get("low") is None:
        return "n/a"
    return f"[{c['low']:.3f}, {c['high']:.3f}]"


def level_line(details: dict) -> str:
    plan = next(iter(details.values()))["intervals"]
    what = ("speaker-clustered bootstrap (speakers resampled with replacement, all their utterances kept)"
            if plan["level"] == "speaker" else "**utterance-level** bootstrap (utterances resampled i.i.d.)")
    line = (f"Intervals: {int(plan['confidence'] * 100)}% percentile intervals, {what}, "
            f"{plan['n_resamples']} resamples, seed {plan['seed']}, {plan['n_speakers']} speakers.")
    line += f" {plan['reason']}." if plan.get("reason") else ""
    minima = plan.get("min_events") or {}
    if minima:
        line += (" No interval, verdict or paired test below `score.intervals.min_events`: "
                 + ", ".join(f"{minima[k]} {EVENT_KINDS[k][minima[k] != 1]}" for k in EVENT_KINDS if k in minima)
                 + ".")
    return line


def verdict_table(details: dict) -> list[str]:# (report imports this module: import here, at use)

    rows = []
    for name, d in details.items():
        for epoch, e in sorted(d["metrics"]["epochs"].items(), key=lambda kv: int(kv[0])):
            if e.get("paper") is None or (epoch == "0" and name != next(iter(details))):
                continue
            for k in HEADLINE:
                ours = JUDGED_BY[k]  # the paper-style metric for P/R/F1
                rows.append([name if epoch != "0" else "base", epoch, judged_label(k), fmt(e.get(ours)),
                             _ci(e.get(f"{ours}_ci")), paper_fmt(d["strategy"], int(epoch), k, e["paper"][k]),
                             e.get("verdict", {}).get(ours) or "n/a"])
    return markdown(rows, ["Config", "Epoch", "Metric", "Ours", "95% interval", "Paper", "Verdict"], "lllrrrl")


def apa_table(details: dict) -> list[str]:

    rows = []
    for name, ckpt, c in listed(details):
        iv = c["intervals"]
        for a in ASPECTS:
            rows.append([name, ckpt, a, f"{fmt(iv[f'{a}_pcc']['value'])} {_ci(iv[f'{a}_pcc'])}",
                         f"{fmt(iv[f'{a}_scc']['value'])} {_ci(iv[f'{a}_scc'])}",
                         f"{fmt(iv[f'{a}_rmse']['value'])} {_ci(iv[f'{a}_rmse'])}",
                         fmt(c["metrics"].get(f"{a}_pcc_unparsed_worst"))])
    return markdown(rows, ["Config", "Checkpoint", "Aspect", "PCC [95%]", "SCC [95%]", "RMSE [95%]",
                           "PCC, unparsed as worst"], "lllrrrr")


def comparison_rows(label: str, comp: dict, keys=COMPARED) -> list[list]:
    rows = []
    for k in keys:
        m = comp["metrics"][k]
        star = "**yes**" if m["significant"] else ("no" if m["significant"] is not None else m.get("too_few") or "n/a")
        diff = "n/a" if m["diff"] is None else f"{m['diff']:+.3f}"
        p = "n/a" if m["p_value"] is None else f"{m['p_value']:.3g}"
        rows.append([label, k, diff, _ci(m), p, star])
    return rows


COMPARISON_HEADER = ["Comparison (A − B)", "Metric", "Difference", "Paired 95% interval", "p", "Significant"]


def config_comparisons(details: dict, tables: dict) -> list[dict]:
    """Final adapter of each config minus the first config's, paired on the same speakers."""
    names = list(details)
    out = []
    for other in names[1:]:
        settings = settings_of(details[names[0]]["intervals"])  # the effective level (speaker or utterance)
        got = compare_tables(tables[other], FINAL, tables[names[0]], FINAL, settings)
        out.append({**got, "a": f"{other} final", "b": f"{names[0]} final"})
    return out


def comparisons_section(details: dict, tables: dict) -> list[str]:

    rows = []
    for c in config_comparisons(details, tables):
        rows += comparison_rows(f"{c['a']} − {c['b']}", c)
    for name, d in details.items():
        for c in d.get("epoch_comparisons", []):
            b = "base" if c["b"].startswith(f"{BASE_NAME}/") else c["b"]
            rows += comparison_rows(f"{name}: {c['a']} − {b}", c)
    return markdown(rows, COMPARISON_HEADER, "llrrrl")


def render_sections(details: dict, tables: dict) -> list[str]:
    parts = ["## Intervals and verdicts against the paper", "", level_line(details), "", VERDICT_NOTE, "",
             f"Precision, recall and F1: {PAPER_STYLE_SHORT}; the standard MDD counting gets no "
             "verdict (\"MDD: paper-style and standard counting\" below).", ""]
    parts += verdict_table(details) + [""]
    parts += ["## APA: PCC, Spearman (SCC) and RMSE with intervals", "",
              "SCC is re-ranked in every resample. The last column counts each unparsed APA answer as the "
              "worst answer (the scale's far end from the human score) instead of leaving it out.", ""]
    parts += apa_table(details) + [""]
    parts += ["## Paired comparisons", "",
              "Each difference is **paired**: both sides scored on the same test utterances and resampled "
              "on the same speakers, so what the two share (hard speakers, hard sentences) cancels. "
              "Significant: p < 0.05, i.e. the paired 95% interval excludes 0. Positive is better for PCC, "
              "precision, recall and F1; negative for WER and PER. \"too few (n = k)\": fewer events on one side "
              "than `score.intervals.min_events` (the smaller count shown): no interval and no test.", ""]
    parts += comparisons_section(details, tables) + [""]
    return parts


# --------------------------------------------------------------------------- several runs


def _run(scores_dir, config: str | None) -> tuple[str, dict, dict]:
    folder = Path(scores_dir)
    names = sorted(p.name for p in folder.iterdir() if (p / "details.json").is_file())
    if not names:
        raise SystemExit(f"{folder}: no <config>/details.json: give a run's scores/ folder")
    name = config or names[0]
    d = json.loads((folder / name / "details.json").read_text(encoding="utf-8"))
    t = json.loads((folder / name / "utterances.json").read_text(encoding="utf-8"))
    return name, d, t


def compare_runs(run_a, run_b, config=None) -> str:

    name, da, ta = _run(run_a, config)
    _, _, tb = _run(run_b, name)
    plan = da["intervals"]
    got = compare_tables(tb, FINAL, ta, FINAL, settings_of(plan))
    lines = [f"# {name}: run B − run A (final adapters), paired", "",
             f"A: {run_a}; B: {run_b}. Same test utterances, resampled on the same speakers "
             f"({got['plan']['level']} level, {plan['n_resamples']} resamples, seed {plan['seed']}). "
             "A change *exceeds its interval* when the paired 95% interval of B − A excludes 0 (Significant).", ""]
    keys = [*COMPARED, *(f"{a}_scc" for a in ASPECTS)]
    return "\n".join(lines + markdown(comparison_rows("B − A", got, keys), COMPARISON_HEADER, "llrrrl")) + "\n"


def seed_summary(runs, config=None) -> str:
    """Mean ± sample std over runs of the final adapter's headline metrics."""

    got = [_run(r, config) for r in runs]
    rows = []
    for k in COMPARED:
        values = [d["metrics"].get(k) for _, d, _ in got if d["metrics"].get(k) is not None]
        sd = statistics.stdev(values) if len(values) > 1 else None
        rows.append([k, len(values), fmt(statistics.fmean(values)) if values else "n/a",
                     "n/a" if sd is None else fmt(sd), " ".join(fmt(v) for v in values)])
    head = [f"# {got[0][0]}: final adapter over {len(got)} runs (mean ± std over seeds)", "",
            "Seed variance: each run trained with another `seed`; std is the sample standard deviation. "
            "This is the variation between training runs that a single run's interval does not cover.", ""]
    return "\n".join(head + markdown(rows, ["Metric", "Runs", "Mean", "Std", "Each run"], "lrrrl")) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"), help="two runs' scores/ folders")
    g.add_argument("--seeds", nargs="+", metavar="RUN", help="several runs' scores/ folders")
    p.add_argument("--config", help="the config to read (default: the first, by name)")
    a = p.parse_args(argv)
    print(compare_runs(*a.compare, a.config) if a.compare else seed_summary(a.seeds, a.config), end="")


if __name__ == "__main__":
    main()
