"""MDD precision, recall and F1 counted as the paper's Table 3 most likely counts them: a
reconstruction, not the paper's code (which is not public) and not the field's MDD counting.

Position by position, pooled over the corpus, no alignment (a annotated, r recognised, normalised):
  hits      = #{k < min(len a, len r): r[k] == a[k]}
  precision = sum(hits) / sum(len r),  recall = sum(hits) / sum(len a),  F1 their harmonic mean.
Why this reading: any count over an alignment (or a bag of phones) has recall >= 1 - PER, and
Table 3's recall is 0.07-0.23 below 1 - PER in all 9 rows. Simulated at each row's PER it fits all
9 rows within 0.03 (P, R, F1) and 0.01 (P - R) on four draws; the nearest other reading misses by
1.02-1.18 of that tolerance, every aligned one by 7 or more (docs/mdd-paper-fit.md, the output of
`python -m pronounce.scoring.mdd_paper_fit`). One phone dropped early shifts all later ones, so it
falls much faster with insertions and deletions than PER does: use it only beside the paper.
Why, in full: docs/scoring.md#how-the-paper-style-reading-was-chosen
"""

from __future__ import annotations

import numpy as np

from .metrics import normalise_phones

READING = "position by position, pooled"  # its name in the fit table (a label for reports)
COUNT_KEYS = ("hits", "recognised", "annotated")  # per-utterance counts; corpus values are their sums
NAMES = ("precision_paper_style", "recall_paper_style", "f1_paper_style")


def position_hits(annotated, recognised) -> int:
    """Positions where both sequences have the same phone (compared index by index, no alignment)."""
    return sum(a == r for a, r in zip(annotated, recognised))


def paper_style_counts(annotated, recognised) -> dict:
    """{hits, recognised, annotated} of one utterance, both sides normalised as PER normalises them.
    A failed parse is the caller's to decide (the score stage's rule: an empty transcript)."""
    if recognised is None:
        raise ValueError("paper-style MDD: a recognised transcript is None; replace failed parses first "
                         "(the unparsed rule: an empty transcript)")
    a, r = normalise_phones(annotated), normalise_phones(recognised)
    return {"hits": position_hits(a, r), "recognised": len(r), "annotated": len(a)}


def paper_style_arrays(hits, recognised, annotated) -> dict:
    """The three metrics from (arrays of) summed counts, NaN where undefined: the one formula,
    for the point estimate and for every bootstrap resample (weighted sums of the counts)."""
    h, n_r, n_a = (np.asarray(x, dtype=float) for x in (hits, recognised, annotated))
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(n_r > 0, h / np.where(n_r > 0, n_r, 1), np.nan)
        r = np.where(n_a > 0, h / np.where(n_a > 0, n_a, 1), np.nan)
        f1 = np.where(p + r > 0, 2 * p * r / np.where(p + r > 0, p + r, 1), np.where(np.isfinite(p + r), 0.0, np.nan))
    return dict(zip(NAMES, (p, r, f1)))


def paper_style_scores(counts: dict) -> dict:
    """precision/recall/f1_paper_style from corpus counts {hits, recognised, annotated}; None with
    a reason where a denominator is 0 (F1 is 0, not None, when both are a real 0)."""
    got = paper_style_arrays(counts["hits"], counts["recognised"], counts["annotated"])
    out = {k: (None if np.isnan(v) else float(v)) for k, v in got.items()}
    reasons = {}
    if out["precision_paper_style"] is None:
        reasons["precision_paper_style"] = "no recognised phone in any answer"
    if out["recall_paper_style"] is None:
        reasons["recall_paper_style"] = "no annotated phone"
    if out["f1_paper_style"] is None:
        reasons["f1_paper_style"] = "precision or recall undefined"
    return {**out, "reasons": reasons}


def paper_style(pairs) -> dict:
    """Paper-style MDD of (annotated, recognised) pairs, pooled over them: the three metrics,
    `counts` (their sums), `by_utterance` ({hits, recognised, annotated} -> one list each, in the
    pairs' order: the bootstrap's per-utterance columns) and `reasons` for any None."""
    per_utt = [paper_style_counts(a, r) for a, r in pairs]
    counts = {k: sum(c[k] for c in per_utt) for k in COUNT_KEYS}
    return {**paper_style_scores(counts), "counts": counts,
            "by_utterance": {k: [c[k] for c in per_utt] for k in COUNT_KEYS}}
