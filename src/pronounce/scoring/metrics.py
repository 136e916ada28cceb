"""Evaluation metrics of the paper (section 4.3): PCC for APA; WER, PER and MDD counts for MDD.

Pure functions over Python sequences. An undefined value (too few pairs, a zero denominator) is
None with a reason, never a crash and never a made-up 0. Words (WER) are upper-cased with
punctuation but in-word apostrophes removed ("well-known" -> WELL KNOWN, 'hi' -> HI, THAT'S);
phones (PER, MDD) are normalised as every reference sequence is (`phones.normalise_phone`).
`align` is the alignment of Kaldi's `align-text`, which the standard MDD script reads: among the
cheapest steps the diagonal first, then the deletion, then the insertion ("A A" -> "A" deletes
the first A). rapidfuzz's, used before, gave other TA/FR counts on about one noisy utterance in
five (the same distance). How MDD is counted: `mdd_columns`. Tested in tests/scoring/test_metrics.py.

Why, and each convention's cases: docs/scoring.md#the-conventions-of-words-phones-and-alignment
"""

from __future__ import annotations

import functools
import math
import re
from collections import namedtuple

import jiwer
import numpy as np
from scipy import stats

from ..data.phones import normalise_phone

MDD_KEYS = ("ta", "fr", "fa", "tr", "tr_correct", "tr_error", "model_insertions")


# ---------------------------------------------------------------- PCC (APA)


def pcc(pred, human) -> dict:
    """Pearson r of predicted vs human scores.

    Pairs where either side is None or NaN are dropped and counted in
    n_dropped (a failed parse is not a score; the caller reports the parse
    rate). Returns {"value", "p_value", "n", "n_dropped", "reason"}.
    """
    pred, human = list(pred), list(human)
    if len(pred) != len(human):
        raise ValueError(f"pcc: {len(pred)} predictions but {len(human)} human scores")
    pairs = [(float(p), float(h)) for p, h in zip(pred, human) if _number(p) and _number(h)]
    out = {"value": None, "p_value": None, "n": len(pairs), "n_dropped": len(pred) - len(pairs), "reason": None}
    if len(pairs) < 2:
        return {**out, "reason": f"fewer than 2 pairs ({len(pairs)})"}
    x, y = np.array(pairs).T
    for side, v in (("predictions", x), ("human scores", y)):
        if np.ptp(v) == 0:  # r is 0/0: undefined, not 0
            return {**out, "reason": f"{side} are constant ({v[0]:g})"}
    r = stats.pearsonr(x, y)
    return {**out, "value": float(r.statistic), "p_value": float(r.pvalue)}


def _number(v) -> bool:
    return v is not None and not isinstance(v, bool) and math.isfinite(float(v))


# ---------------------------------------------------------------- WER / PER

_NOT_WORD = re.compile(r"[^\w\s']|_")


def normalise_words(text: str) -> list[str]:
    text = _NOT_WORD.sub(" ", text.replace("\u2019", "'").replace("\u2018", "'")).upper()
    return [w for w in (t.strip("'") for t in text.split()) if w]


def normalise_phones(phones) -> list[str]:
    if isinstance(phones, str):
        phones = phones.split()
    return [normalise_phone(p) for p in phones]


def wer(refs, hyps) -> dict:
    """Corpus WER = (S+D+I)/N summed over utterances, counted by jiwer on normalised words."""
    refs, hyps = _paired("wer", refs, hyps)
    out = jiwer.process_words(
        [" ".join(normalise_words(r)) for r in refs], [" ".join(normalise_words(h)) for h in hyps]
    )
    return _rate(out.substitutions, out.deletions, out.insertions, out.hits + out.substitutions + out.deletions, len(refs))


def wer_by_utterance(refs, hyps) -> list[tuple[int, int]]:
    """(errors, reference words) of each utterance, counted as `wer` counts them (their sums are
    its numerator and denominator): the bootstrap's per-utterance statistics."""
    refs, hyps = _paired("wer", refs, hyps)
    out = jiwer.process_words(
        [" ".join(normalise_words(r)) for r in refs], [" ".join(normalise_words(h)) for h in hyps]
    )
    got = []
    for ref, chunks in zip(out.references, out.alignments):
        errors = sum(max(c.ref_end_idx - c.ref_start_idx, c.hyp_end_idx - c.hyp_start_idx)
                     for c in chunks if c.type != "equal")
        got.append((errors, len(ref)))
    return got


def per_by_utterance(refs, hyps) -> list[tuple[int, int]]:
    """(errors, reference phones) of each utterance, as `per` counts them."""
    refs, hyps = _paired("per", refs, hyps)
    got = []
    for ref, hyp in zip(refs, hyps):
        ref = normalise_phones(ref)
        got.append((sum(step.op != "equal" for step in align(ref, normalise_phones(hyp))), len(ref)))
    return got


def per(refs, hyps) -> dict:
    """Corpus PER = (S+D+I)/N over phones: recognised (hyps) against annotated (refs)."""
    refs, hyps = _paired("per", refs, hyps)
    s = d = i = n = 0
    for ref, hyp in zip(refs, hyps):
        ref = normalise_phones(ref)
        ops = [step.op for step in align(ref, normalise_phones(hyp))]
        s, d, i, n = s + ops.count("replace"), d + ops.count("delete"), i + ops.count("insert"), n + len(ref)
    return _rate(s, d, i, n, len(refs))


def _paired(name, refs, hyps):
    refs, hyps = list(refs), list(hyps)
    if len(refs) != len(hyps):
        raise ValueError(f"{name}: {len(refs)} references but {len(hyps)} hypotheses")
    if any(h is None for h in hyps):  # a failed parse: the caller decides how to count it
        raise ValueError(f"{name}: a hypothesis is None; filter or replace failed parses first")
    return refs, hyps


def _rate(s, d, i, n, n_utts) -> dict:
    out = {"value": None, "substitutions": s, "deletions": d, "insertions": i,
           "errors": s + d + i, "ref_length": n, "n": n_utts, "reason": None}
    if n == 0:
        return {**out, "reason": "no reference tokens"}
    return {**out, "value": (s + d + i) / n}


# ---------------------------------------------------------------- alignment

Step = namedtuple("Step", "op i j")
Step.__doc__ = "One column of an alignment: op in equal|replace|delete|insert; i into a, j into b (None when absent)."


def align(a, b) -> list[Step]:
    """Minimum edit-distance alignment of two token sequences, ties broken as Kaldi's
    align-text breaks them (module docstring)."""
    return list(kaldi_align(tuple(a), tuple(b)))


@functools.lru_cache(maxsize=65536)  # PER and MDD align the same (annotated, recognised) pair
def kaldi_align(a: tuple, b: tuple) -> tuple:
    m, n = len(a), len(b)
    # e[i][j]: edit distance of a[:i] and b[:j]
    e = [list(range(n + 1))]
    for i in range(1, m + 1):
        prev, row, ai = e[-1], [i], a[i - 1]
        for j in range(1, n + 1):
            row.append(min(prev[j - 1] + (ai != b[j - 1]), prev[j] + 1, row[j - 1] + 1))
        e.append(row)
    steps, i, j = [], m, n
    while i or j:
        if i and j:
            diagonal = e[i - 1][j - 1] + (a[i - 1] != b[j - 1])
            deletion, insertion = e[i - 1][j] + 1, e[i][j - 1] + 1
            # Kaldi: `if (sub_or_ok <= min(del, ins))` diagonal, `else if (del <= ins)` deletion
            if diagonal <= min(deletion, insertion):
                i, j = i - 1, j - 1
                steps.append(Step("equal" if a[i] == b[j] else "replace", i, j))
                continue
            if deletion <= insertion:
                i -= 1
                steps.append(Step("delete", i, None))
                continue
            j -= 1
            steps.append(Step("insert", None, j))
        elif i:
            i -= 1
            steps.append(Step("delete", i, None))
        else:
            j -= 1
            steps.append(Step("insert", None, j))
    return tuple(reversed(steps))


# ---------------------------------------------------------------- MDD


Column = namedtuple("Column", "canonical annotated recognised outcome rec_index")
Column.__doc__ = "One MDD decision: the phones (None = nothing), its outcome, the recognised index judged."


def mdd_columns(pairs, recognised) -> list[Column]:
    """One Column per column of the annotation (canonical, annotated, recognised; None = nothing).

    The field's standard (Fu's scoring script): `pairs` is the canonical<->annotated pairing,
    [(canonical, annotated), ...] with None for a gap, taken from the annotations
    (phones.annotation_pairs), never from an aligner. A column is correct (C), substituted (S),
    deleted (D, annotated None) or inserted (I, canonical None). The model's phone for C, S and I is
    the recognised phone `align` pairs with the annotated one; for D the one it pairs with the
    canonical phone. Then, with "nothing" as a token:
      C: recognised == annotated -> TA, else FR
      S, D, I: recognised == annotated -> TR_correct; recognised == canonical -> FA; else TR_error
    Phones the model inserts where the annotation has nothing make no column: the standard leaves
    them to PER; `mdd_counts` counts them as `model_insertions` for the insertion-penalised variant.
    Why: docs/scoring.md#the-conventions-of-words-phones-and-alignment
    """
    pairs = [(_norm(c), _norm(a)) for c, a in pairs]
    if any(c is None and a is None for c, a in pairs):
        raise ValueError("mdd: a column of the pairing has neither a canonical nor an annotated phone")
    canonical = [c for c, _ in pairs if c is not None]
    annotated = [a for _, a in pairs if a is not None]
    r = normalise_phones(recognised)
    on_annotated, on_canonical = _aligned_to(annotated, r), _aligned_to(canonical, r)
    cols, ci, ai = [], 0, 0
    for c, a in pairs:
        k = on_annotated[ai] if a is not None else on_canonical[ci]
        rr = None if k is None else r[k]
        cols.append(Column(c, a, rr, _outcome(c, a, rr), k))
        ci, ai = ci + (c is not None), ai + (a is not None)
    return cols


def _norm(phone):
    return None if phone is None else normalise_phone(phone)


def _aligned_to(ref, hyp) -> list:
    """For each token of ref, the index of the hyp token `align` puts on it (None: deleted)."""
    out = [None] * len(ref)
    for s in align(ref, hyp):
        if s.i is not None:
            out[s.i] = s.j
    return out


def _outcome(c, a, r) -> str:
    if a == c:
        return "TA" if r == a else "FR"
    if r == a:
        return "TR_correct"
    return "FA" if r == c else "TR_error"


def mdd_counts(pairs, recognised) -> dict:
    """{ta, fr, fa, tr, tr_correct, tr_error, model_insertions} of one utterance (`mdd_columns`).

    model_insertions: recognised phones no column was judged on (the model's insertions where
    the annotation has nothing); not part of TA/FR/FA/TR, only of the `*_ins_penalised` variant.
    """
    cols = mdd_columns(pairs, recognised)
    outcomes = [col.outcome for col in cols]
    n = {k: outcomes.count(k) for k in ("TA", "FR", "FA", "TR_correct", "TR_error")}
    judged = {col.rec_index for col in cols if col.rec_index is not None}
    return {"ta": n["TA"], "fr": n["FR"], "fa": n["FA"], "tr": n["TR_correct"] + n["TR_error"],
            "tr_correct": n["TR_correct"], "tr_error": n["TR_error"],
            "model_insertions": len(normalise_phones(recognised)) - len(judged)}


def mdd_worst_case(pairs) -> dict:
    """Counts of an answer with every decision wrong: each correctly pronounced column an FR,
    each mispronounced one (S, D, I) an FA; no TA, no TR, no model insertion."""
    correct = sum(_norm(c) == _norm(a) for c, a in pairs)
    return {"ta": 0, "fr": correct, "fa": len(pairs) - correct, "tr": 0, "tr_correct": 0, "tr_error": 0,
            "model_insertions": 0}


def sum_counts(counts) -> dict:
    """Corpus-level counts: the sum over utterances (scores are computed once, from the sums)."""
    total = dict.fromkeys(MDD_KEYS, 0)
    for c in counts:
        for k in MDD_KEYS:
            total[k] += c[k]
    return total


def penalise_insertions(counts) -> dict:
    """The non-standard variant's counts: model insertions where the annotation has nothing
    counted as false rejections (reported beside the standard figures as `*_ins_penalised`)."""
    return {**counts, "fr": counts["fr"] + counts["model_insertions"], "model_insertions": 0}


def mdd_scores(counts) -> dict:
    """precision, recall, f1, diagnosis_accuracy, false_rejection_rate, and "reasons" for any None.

    precision = TR/(TR+FR), recall = TR/(TR+FA), F1 their harmonic mean,
    diagnosis accuracy = TR_correct/TR, false rejection rate = FR/(TA+FR).
    When precision and recall are both a real 0 (TR = 0), F1 is 0, not None.
    """
    ta, fr, fa, tr, ok = (counts[k] for k in ("ta", "fr", "fa", "tr", "tr_correct"))
    reasons = {}

    def ratio(name, num, den, why):
        if den == 0:
            reasons[name] = why
            return None
        return num / den

    p = ratio("precision", tr, tr + fr, "TR+FR = 0: the model rejected no phone")
    r = ratio("recall", tr, tr + fa, "TR+FA = 0: no mispronounced phone in the annotation")
    if p is None or r is None:
        f1 = None
        reasons["f1"] = "precision or recall undefined"
    else:
        f1 = 0.0 if p + r == 0 else 2 * p * r / (p + r)
    return {
        "precision": p,
        "recall": r,
        "f1": f1,
        "diagnosis_accuracy": ratio("diagnosis_accuracy", ok, tr, "TR = 0: no true rejection to diagnose"),
        "false_rejection_rate": ratio("false_rejection_rate", fr, ta + fr, "TA+FR = 0: no correctly pronounced phone"),
        "reasons": reasons,
    }
