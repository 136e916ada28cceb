"""Which reading of the paper's MDD precision/recall/F1 its own Table 3 supports: a simulation.

`python -m pronounce.scoring.mdd_paper_fit [--out FILE]` writes the fit table (markdown; 5.3
CPU-minutes measured; docs/mdd-paper-fit.md is its output). Every candidate reading
(pronounce.scoring.mdd_readings) is scored on recognised sequences simulated at each Table 3 row's
PER from the corpus's annotated ones (pronounce.scoring.mdd_simulation), at the corpus's own error
mix and at mixes searched over `GRID` for each group of rows (`DESIGNS`: one mix per model,
judged), the few best re-scored on more draws (`refine`). The table scores every reading at its
mixes on fresh draws, the two best on three more seeds; a reading fits when every row is within
VALUE_TOL (P, R, F1) and SHAPE_TOL (P - R) on all four draws (`chosen_reading`). A reconstruction:
the paper's code is not public. Why, in full: docs/scoring.md#how-the-paper-style-reading-was-chosen
"""

from __future__ import annotations

import argparse
import sys

from ..core.errors import PipelineError
from .mdd_readings import READINGS
from .mdd_simulation import annotated_mix, draw_noise, load, simulate
from .paper import PAPER_TABLE3

# A reading fits when, in every row, P, R and F1 are within VALUE_TOL of the paper's and P - R
# within SHAPE_TOL of the paper's P - R. VALUE_TOL: the paper's test-set sampling (measured on the
# chosen reading's simulation: SD 0.006 over 2,500 utterances drawn i.i.d.; doubled for speaker
# clustering, 95% +-0.024), the simulation's own (SD 0.0055 at 16 replicates, 0.008 at 8) and
# Table 3's rounding (0.0005), together ~0.03. SHAPE_TOL: P - R moves little with sampling (SD
# 0.0007), but one mix serves four epochs whose P - R differ (0.000-0.009 in the trained rows).
VALUE_TOL = 0.03
SHAPE_TOL = 0.01
CORPUS = "data/speechocean762-mini"
# The search: deletion and insertion shares on a 0.05 grid, three utterance spreads.
GRID = {"step": 0.05, "top_del": 0.3, "top_ins": 0.2, "cvs": (0.0, 0.5, 1.0)}


# --------------------------------------------------------------------------- the fit


def deviation(sim: dict, row: dict) -> float:
    """The worst of |dP|, |dR|, |dF1| over VALUE_TOL and |d(P - R)| over SHAPE_TOL: <= 1 fits."""
    d = [abs(sim[k] - row[k]) / VALUE_TOL for k in ("precision", "recall", "f1")]
    d.append(abs((sim["precision"] - sim["recall"]) - (row["precision"] - row["recall"])) / SHAPE_TOL)
    return max(d)


def score_all(utts, noises, mix, rows=PAPER_TABLE3) -> list[dict]:
    """[{row, per (realised), reading -> {precision, recall, f1}}] for each row at one mix."""
    out = []
    for row in rows:
        pairs, got = simulate(utts, noises, row["per"], mix)
        res = {}
        for rd in READINGS:
            p, r, f = rd.score(pairs)
            res[rd.name] = {"precision": p, "recall": r, "f1": f}
        out.append({"row": row, "per": got, "readings": res})
    return out


def grid(step: float, top_del: float, top_ins: float, cvs) -> list[tuple[float, float, float]]:
    return [(round(a * step, 6), round(b * step, 6), cv) for cv in cvs
            for a in range(round(top_del / step) + 1) for b in range(round(top_ins / step) + 1)]


def _rows(*strategies) -> tuple:
    return tuple(i for i, row in enumerate(PAPER_TABLE3) if row["strategy"] in strategies)


# How many mixes the table may use, and for which rows (indices into PAPER_TABLE3). The fit table
# is judged by "per model": the untrained model and the two trainings (LoRA alone; LoRA with the
# audio encoder) need not err alike; the stricter designs are shown beside it.
DESIGNS = {
    "per model": {"untrained": _rows("none"), "LoRA": _rows("LoRA"), "Unfreeze": _rows("Unfreeze")},
    "trained shared": {"untrained": _rows("none"), "trained": _rows("LoRA", "Unfreeze")},
    "one mix": {"all": _rows("none", "LoRA", "Unfreeze")},
}
JUDGED = "per model"
# The mixes (del, ins, cv) the default run chose for the chosen reading, one per model (the fit
# table, docs/mdd-paper-fit.md; a test keeps the two in step).
FITTED = {"untrained": (0.15, 0.0, 1.0), "LoRA": (0.15, 0.1, 0.5), "Unfreeze": (0.15, 0.1, 0.0)}


def search(utts, noises, mixes, log=None) -> dict:
    """{mix: score_all at that mix}: every reading on every row, for each mix."""
    out = {}
    for k, mix in enumerate(mixes):
        out[mix] = score_all(utts, noises, mix)
        if log:
            log(f"mix {k + 1}/{len(mixes)}: del {mix[0]:.2f}, ins {mix[1]:.2f}, cv {mix[2]:.1f}")
    return out


def best_mix(table: dict, reading: str, rows) -> tuple:
    """The mix of the searched table whose worst deviation over `rows` is the smallest."""
    return min(table, key=lambda mix: max(deviation(table[mix][i]["readings"][reading], table[mix][i]["row"])
                                          for i in rows))


def refine(utts, table: dict, chosen: dict, seed: int, reps: int, readings: int = 4, top: int = 5, log=None):
    """The search's few best mixes per group of the judged design, for its `readings` best readings,
    re-scored on `reps` replicates of another seed and the best kept: with few replicates the
    search's winner is partly luck (its SD 0.011 at 4 replicates is a third of the tolerance)."""
    groups = DESIGNS[JUDGED]
    rank = sorted(chosen, key=lambda k: max(deviation(table[chosen[k][g]][i]["readings"][k], PAPER_TABLE3[i])
                                            for g, rows in groups.items() for i in rows))[:readings]
    noises = draw_noise(utts, reps, seed)
    for g, rows in groups.items():
        def worst_of(mix, k):
            return max(deviation(table[mix][i]["readings"][k], PAPER_TABLE3[i]) for i in rows)
        candidates = sorted({m for k in rank for m in sorted(table, key=lambda m: worst_of(m, k))[:top]})
        if log:
            log(f"refining {g}: {len(candidates)} mixes")
        again = {m: score_all(utts, noises, m, [PAPER_TABLE3[i] for i in rows]) for m in candidates}
        for k in rank:
            chosen[k][g] = min(candidates, key=lambda m: max(deviation(r["readings"][k], r["row"]) for r in again[m]))
    return chosen


def check_seeds(utts, chosen: dict, names, seeds, reps: int) -> dict:
    """{reading: [worst deviation on fresh draws of each seed]} at the judged design's mixes."""
    out = {}
    for name in names:
        reading, devs = next(rd for rd in READINGS if rd.name == name), []
        for seed in seeds:
            noises, rows = draw_noise(utts, reps, seed), []
            for g, idx in DESIGNS[JUDGED].items():
                for i in idx:
                    pairs, _ = simulate(utts, noises, PAPER_TABLE3[i]["per"], chosen[name][g])
                    p, r, f = reading.score(pairs)
                    rows.append(deviation({"precision": p, "recall": r, "f1": f}, PAPER_TABLE3[i]))
            devs.append(max(rows))
        out[name] = devs
    return out


def fit(utts, seed: int, search_reps: int, reps: int, mixes, log=None) -> dict:
    """Per reading and design, the mix of each group of rows that the table chooses: searched on
    `search_reps` replicates (seed), the judged design refined on `reps` (seed + 5); each reading
    re-scored at its mixes, and at the annotated mix, on `reps` fresh replicates (seed + 1); the
    two best readings once more on seeds + 2, 3, 4. {design: {reading: [row results]}}."""
    table = search(utts, draw_noise(utts, search_reps, seed), mixes, log)
    chosen = {d: {rd.name: {g: best_mix(table, rd.name, rows) for g, rows in groups.items()} for rd in READINGS}
              for d, groups in DESIGNS.items()}
    chosen[JUDGED] = refine(utts, table, chosen[JUDGED], seed + 5, reps, log=log)
    fresh = draw_noise(utts, reps, seed + 1)
    corpus_mix = annotated_mix(utts)
    at_corpus = score_all(utts, fresh, (corpus_mix["del"], corpus_mix["ins"], 0.0))
    needed = sorted({(mix, i) for d, groups in DESIGNS.items() for c in chosen[d].values()
                     for g, rows in groups.items() for mix in [c[g]] for i in rows})
    rescored = {}
    for k, mix in enumerate(sorted({m for m, _ in needed})):
        if log:
            log(f"fresh draws, mix {k + 1}/{len({m for m, _ in needed})}")
        rows = [i for m, i in needed if m == mix]
        for i, got in zip(rows, score_all(utts, fresh, mix, [PAPER_TABLE3[i] for i in rows])):
            rescored[mix, i] = got

    def flat(got, reading):
        return {"row": got["row"], "per": got["per"], **got["readings"][reading]}

    results = {d: {rd.name: [flat(rescored[mix, i], rd.name) for i in range(len(PAPER_TABLE3))
                             for g, rows in groups.items() if i in rows for mix in [chosen[d][rd.name][g]]]
                   for rd in READINGS} for d, groups in DESIGNS.items()}
    best = sorted(results[JUDGED], key=lambda k: worst(results[JUDGED][k])["deviation"])[:2]
    if log:
        log("the two best readings on three more seeds")
    seeds = [seed + 2, seed + 3, seed + 4]
    return {"corpus_mix": corpus_mix, "mixes": chosen, "results": results,
            "at_corpus_mix": {rd.name: [flat(r, rd.name) for r in at_corpus] for rd in READINGS},
            "other_seed_list": seeds, "other_seeds": check_seeds(utts, chosen[JUDGED], best, seeds, reps),
            "seed": seed, "reps": reps, "search_reps": search_reps, "n_mixes": len(mixes),
            "n_utterances": len(utts), "n_phones": sum(len(u.annotated) for u in utts)}


# --------------------------------------------------------------------------- the table


def worst(rows: list[dict]) -> dict:
    """The worst deviation of a reading's rows and the largest |difference| of each quantity."""
    d = lambda k: max(abs(r[k] - r["row"][k]) for r in rows)  # noqa: E731
    shape = max(abs((r["precision"] - r["recall"]) - (r["row"]["precision"] - r["row"]["recall"])) for r in rows)
    return {"deviation": max(deviation(r, r["row"]) for r in rows), "precision": d("precision"),
            "recall": d("recall"), "f1": d("f1"), "shape": shape}


def chosen_reading(result: dict) -> tuple[str, bool]:
    """(the reading closest to Table 3, whether it fits): of the readings checked on more seeds, the
    one whose worst deviation over all its draws is the smallest; it fits when that is <= 1."""
    judged = result["results"][JUDGED]
    draws = {k: [worst(judged[k])["deviation"], *devs] for k, devs in result["other_seeds"].items()}
    name = min(draws, key=lambda k: max(draws[k]))
    return name, max(draws[name]) <= 1


def _label(row):
    return "untrained" if row["epoch"] == 0 else f"{row['strategy']} {row['epoch']}"


def _mix(m):
    return f"{m[0]:.2f}/{m[1]:.2f}/{m[2]:.1f}"


def markdown(result: dict, corpus: str) -> str:
    name, fits = chosen_reading(result)
    cm, judged = result["corpus_mix"], result["results"][JUDGED]
    lines = [
        "# Paper-style MDD precision, recall and F1: which reading Table 3 supports",
        "",
        f"`python -m pronounce.scoring.mdd_paper_fit` (seed {result['seed']}): recognised sequences simulated from the "
        f"annotated phones of `{corpus}` ({result['n_utterances']} utterances, {result['n_phones']:,} phones) at "
        f"each row's PER; mixes searched over {result['n_mixes']} grid points on {result['search_reps']} replicates "
        f"of the corpus (the best few re-scored on {result['reps']}), the table on {result['reps']} fresh ones. "
        "A reconstruction: the paper's code is not public.",
        "",
        f"Fits: in every row |dP|, |dR|, |dF1| <= {VALUE_TOL} and |d(P - R)| <= {SHAPE_TOL} (deviation <= 1, the "
        "worst of |d|/tolerance). A mix is deletion share/insertion share/spread (cv) of the per-utterance rate; "
        "judged with one mix per model (untrained; LoRA epochs 1-4; Unfreeze epochs 1-4); beside it one mix for "
        "the eight trained rows (and one for the untrained row), and one mix for all nine rows. The corpus's "
        f"annotated mix ({cm['substitutions']} substitutions, {cm['deletions']} deletions, {cm['insertions']} "
        "insertions) keeps recognised and annotated lengths equal, hence P = R for every count of hits over lengths.",
        "",
        (f"**Chosen: {name}**: it fits on every draw." if fits else
         f"**No reading fits within the tolerance on every draw; the closest: {name}.**"),
        "",
        "Deviation: the worst row on the table's draws; \"fits\" on those draws alone. One mix per model unless "
        "named (those other designs: the search's choice, not re-scored).",
        "",
        "| reading | mixes: untrained; LoRA; Unfreeze | deviation | max abs dP | max abs dR | max abs dF1 "
        "| max abs d(P-R) | untrained P / R (paper 0.154 / 0.134) | LoRA 3 P / R (paper 0.728 / 0.721) "
        "| deviation, trained rows share a mix | deviation, one mix | deviation, annotated mix | fits these draws |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for k in sorted(judged, key=lambda k: worst(judged[k])["deviation"]):
        rows, w, m = judged[k], worst(judged[k]), result["mixes"][JUDGED][k]
        l3 = next(r for r in rows if r["row"]["strategy"] == "LoRA" and r["row"]["epoch"] == 3)
        other = [worst(result["results"][d][k])["deviation"] for d in ("trained shared", "one mix")]
        lines.append(
            f"| {k} | {_mix(m['untrained'])}; {_mix(m['LoRA'])}; {_mix(m['Unfreeze'])} | {w['deviation']:.2f} "
            f"| {w['precision']:.3f} | {w['recall']:.3f} | {w['f1']:.3f} | {w['shape']:.3f} "
            f"| {rows[0]['precision']:.3f} / {rows[0]['recall']:.3f} | {l3['precision']:.3f} / {l3['recall']:.3f} "
            f"| {other[0]:.2f} | {other[1]:.2f} | {worst(result['at_corpus_mix'][k])['deviation']:.2f} "
            f"| {'yes' if w['deviation'] <= 1 else 'no'} |")
    lines.append("")
    for k, devs in result["other_seeds"].items():
        lines.append(f"- {k}: worst deviation {worst(judged[k])['deviation']:.2f} on the table's draws, "
                     + ", ".join(f"{d:.2f}" for d in devs)
                     + f" on fresh draws of seeds {', '.join(map(str, result['other_seed_list']))} (the same mixes)")
    lines += ["", "The chosen reading row by row (paper / simulated, one mix per model):", "",
              "| row | PER | P | R | F1 | P - R | 1 - PER - R, paper | deviation |", "|---|---|---|---|---|---|---|---|"]
    for r in judged[name]:
        p = r["row"]
        lines.append(f"| {_label(p)} | {p['per']:.3f} / {r['per']:.3f} | {p['precision']:.3f} / {r['precision']:.3f} "
                     f"| {p['recall']:.3f} / {r['recall']:.3f} | {p['f1']:.3f} / {r['f1']:.3f} "
                     f"| {p['precision'] - p['recall']:.3f} / {r['precision'] - r['recall']:.3f} "
                     f"| {1 - p['per'] - p['recall']:.3f} | {deviation(r, p):.2f} |")
    lines += ["", "Any count of hits over an alignment (or a bag or set of phones) has R >= 1 - PER; the column "
              "1 - PER - R is how far below that bound the paper's recall lies.", "", "What each reading counts:", ""]
    lines += [f"- **{rd.name.removesuffix(', pooled')}**: {rd.what}" for rd in READINGS
              if not rd.name.endswith("per utterance")]
    lines.append("- **pooled** sums the counts over the corpus, then divides; **per utterance** averages the "
                 "utterances' ratios (an empty denominator counts 0); F1 is the harmonic mean of P and R, except "
                 "where sklearn's is named")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pronounce.scoring.mdd_paper_fit", description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default=CORPUS, help="speechocean762 (either form) whose annotations to simulate from")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--search-reps", type=int, default=4, help="replicates of the corpus per grid point")
    ap.add_argument("--reps", type=int, default=16, help="fresh replicates for the table")
    ap.add_argument("--out", help="write the markdown here (default: print it)")
    a = ap.parse_args(argv)
    if a.search_reps < 1 or a.reps < 1:
        print("error: --search-reps and --reps must be at least 1", file=sys.stderr)
        return 1
    try:
        utts = load(a.corpus)
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    mixes = grid(**GRID)
    result = fit(utts, a.seed, a.search_reps, a.reps, mixes, log=lambda m: print(m, file=sys.stderr))
    text = markdown(result, a.corpus)
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
