"""The candidate readings of the paper's MDD precision, recall and F1 (`READINGS`), each a
function of [(Utterance, recognised)] -> (P, R, F1): alignment, position, bag, set and edit-distance
counts, pooled or averaged per utterance, sklearn's per-class averages, the field's standard
counting. pronounce.scoring.mdd_paper_fit scores them all against Table 3; the chosen one ships as
pronounce.scoring.mdd_paper. Why, in full: docs/scoring.md#how-the-paper-style-reading-was-chosen
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from difflib import SequenceMatcher

import numpy as np

from .mdd_paper import position_hits
from .metrics import align, mdd_counts


def _hm(p, r):
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def _ratios(counts, pooled: bool):
    """counts: per utterance (hits_p, den_p, hits_r, den_r) -> (P, R, F1); pooled sums, or the
    mean of per-utterance ratios (an empty denominator counting 0, as sklearn's default does)."""
    c = np.array(counts, float)
    if pooled:
        p = c[:, 0].sum() / c[:, 1].sum() if c[:, 1].sum() else 0.0
        r = c[:, 2].sum() / c[:, 3].sum() if c[:, 3].sum() else 0.0
    else:
        p = float(np.mean(np.where(c[:, 1] > 0, c[:, 0] / np.maximum(c[:, 1], 1), 0.0)))
        r = float(np.mean(np.where(c[:, 3] > 0, c[:, 2] / np.maximum(c[:, 3], 1), 0.0)))
    return p, r, _hm(p, r)


def _align_hits(a, r):
    return sum(step.op == "equal" for step in align(a, r))


def _bag_hits(a, r):
    return sum((Counter(a) & Counter(r)).values())


def _difflib_hits(a, r):
    return sum(b.size for b in SequenceMatcher(None, list(a), list(r), autojunk=False).get_matching_blocks())


def _hits_counts(hits):
    return lambda u, r: (h := hits(u.annotated, r), len(r), h, len(u.annotated))


def _canonical_counts(u, r):
    h = _align_hits(u.canonical, r)
    return h, len(r), h, len(u.canonical)


def _set_counts(u, r):
    h = len(set(u.annotated) & set(r))
    return h, len(set(r)), h, len(set(u.annotated))


def _edit_counts(u, r):
    """1 - edit distance / length: P over the recognised length, R over the annotated (R = 1 - PER)."""
    e = sum(step.op != "equal" for step in align(u.annotated, r))
    return len(r) - e, len(r), len(u.annotated) - e, len(u.annotated)


def _standard_counts(u, r):
    c = mdd_counts(u.pairs, r)
    return c["tr"], c["tr"] + c["fr"], c["tr"], c["tr"] + c["fa"]


def _diagnosis_counts(u, r):
    """Only the mispronounced positions: a hit is the model saying what the human heard there."""
    c = mdd_counts(u.pairs, r)
    return c["tr_correct"], c["tr"] + c["fr"], c["tr_correct"], c["tr"] + c["fa"]


def _per_class(pairs, weighted: bool):
    """sklearn's precision_recall_fscore_support(average='macro'|'weighted') over the zipped
    positions of every utterance (labels: those in either side; 0 for an empty denominator)."""
    truth = [x for u, r in pairs for x, _ in zip(u.annotated, r)]
    guess = [y for u, r in pairs for _, y in zip(u.annotated, r)]
    labels = sorted(set(truth) | set(guess))
    tp = Counter(x for x, y in zip(truth, guess) if x == y)
    n_true, n_pred = Counter(truth), Counter(guess)
    p = np.array([tp[c] / n_pred[c] if n_pred[c] else 0.0 for c in labels])
    r = np.array([tp[c] / n_true[c] if n_true[c] else 0.0 for c in labels])
    f = np.where(p + r > 0, 2 * p * r / np.where(p + r > 0, p + r, 1), 0.0)
    w = np.array([n_true[c] for c in labels], float) if weighted else np.ones(len(labels))
    w = w / w.sum()
    return float(w @ p), float(w @ r), float(w @ f)


@dataclass(frozen=True)
class Reading:
    name: str
    what: str
    score: object  # [(Utterance, recognised)] -> (P, R, F1)


def _both(name, what, counts):
    return [Reading(f"{name}, pooled", what, lambda pairs: _ratios([counts(u, r) for u, r in pairs], True)),
            Reading(f"{name}, per utterance", what, lambda pairs: _ratios([counts(u, r) for u, r in pairs], False))]


READINGS = [
    *_both("alignment hits", "matches of the Kaldi-tie-broken edit-distance alignment (metrics.align); "
           "P = hits/len(recognised), R = hits/len(annotated)", _hits_counts(_align_hits)),
    *_both("position by position", "recognised[k] == annotated[k] for k < the shorter length, no alignment; "
           "P = hits/len(recognised), R = hits/len(annotated)", _hits_counts(position_hits)),
    *_both("multiset (bag)", "sum over phones of min(count in recognised, count in annotated); same denominators",
           _hits_counts(_bag_hits)),
    *_both("set of phones", "distinct phones in both / distinct phones recognised (P), annotated (R)", _set_counts),
    *_both("difflib matching blocks", "Python difflib.SequenceMatcher's matched phones; same denominators",
           _hits_counts(_difflib_hits)),
    *_both("1 - edit distance / length", "P = 1 - ED/len(recognised), R = 1 - ED/len(annotated) = 1 - PER",
           _edit_counts),
    *_both("alignment hits vs canonical", "as alignment hits, against the canonical phones", _canonical_counts),
    Reading("sklearn macro, zipped positions", "precision_recall_fscore_support(average='macro') over "
            "zip(annotated, recognised); F1 the mean per-class F1", lambda pairs: _per_class(pairs, False)),
    Reading("sklearn weighted, zipped positions", "as above, average='weighted' (weights: annotated counts)",
            lambda pairs: _per_class(pairs, True)),
    Reading("standard MDD (TA/FR/FA/TR)", "the field's counting (metrics.mdd_counts): TR/(TR+FR), TR/(TR+FA)",
            lambda pairs: _ratios([_standard_counts(u, r) for u, r in pairs], True)),
    Reading("mispronounced positions only", "correct diagnoses TR_correct over rejections (P) and over "
            "mispronounced phones (R)", lambda pairs: _ratios([_diagnosis_counts(u, r) for u, r in pairs], True)),
]
