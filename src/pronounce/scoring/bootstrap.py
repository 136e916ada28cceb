"""Intervals of the paper's metrics by a speaker-clustered bootstrap, from per-utterance sufficient
statistics resampled as weight vectors (never re-scoring an answer per resample).

Why clustered: one speaker's utterances move together, so i.i.d. resampling understates the
uncertainty (125 synthetic speakers x 20 utterances, 500 sets: the clustered 95% interval covered
the truth in 94.0% of them, the utterance-level one in 64.6%). A resample draws speakers with
replacement; every metric is a function of weighted column sums (`UtteranceStats`), so all B
resamples are one product, counts [B x speakers] @ per-speaker sums (`Draws`). SCC is re-ranked
per resample (equal to spearmanr on the resampled set). An undefined resample is NaN, counted in
`n_undefined`. Paired: all checkpoints (and configs) on the same weights, so a difference gets a
paired interval and p-value. PCG64 seeded with `Settings.seed`, speakers by id: same bits on a rerun.

Why, and each metric's columns: docs/scoring.md#how-the-clustered-bootstrap-is-computed
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from .mdd_paper import COUNT_KEYS as PAPER_STYLE_COLUMNS
from .mdd_paper import NAMES as PAPER_STYLE
from .mdd_paper import paper_style_arrays

LEVELS = ("speaker", "utterance")
BLOCK_CELLS = 625_000  # resamples x units per block (caps memory at the utterance level: 250 x 2,500)
MDD_COLUMNS = ("ta", "fr", "fa", "tr")


@dataclass(frozen=True)
class Settings:
    seed: int
    n_resamples: int
    level: str  # speaker: clustered (the default); utterance: i.i.d. (for comparison)
    min_speakers: int  # fewer speakers than this: no clustered interval, the utterance-level one instead
    confidence: float = 0.95
    # {event kind: minimum} (score.intervals.min_events; EVENT_KINDS): below it a metric gets no
    # interval, verdict or paired test (pronounce.scoring.intervals); None: no minimum
    min_events: dict | None = None


@dataclass
class UtteranceStats:
    """One checkpoint's per-utterance columns, in one utterance order (`apa`: aspect ->
    (predicted, human), predicted NaN where the answer did not parse)."""
    apa: dict
    wer_errors: np.ndarray
    wer_ref: np.ndarray
    per_errors: np.ndarray
    per_ref: np.ndarray
    mdd: dict  # ta, fr, fa, tr -> counts
    paper_style: dict  # hits, recognised, annotated -> phone counts (pronounce.scoring.mdd_paper)

    @classmethod
    def from_json(cls, d: dict) -> "UtteranceStats":
        def arr(v):
            return np.array([np.nan if x is None else x for x in v], dtype=float)

        if "paper_style" not in d:
            raise ValueError("per-utterance statistics without paper-style MDD counts (scored before they "
                             "existed): rerun the score stage (`dvc repro score`)")
        return cls({a: (arr(v["predicted"]), arr(v["human"])) for a, v in d["apa"].items()},
                   arr(d["wer_errors"]), arr(d["wer_ref"]), arr(d["per_errors"]), arr(d["per_ref"]),
                   {k: arr(d["mdd"][k]) for k in MDD_COLUMNS},
                   {k: arr(d["paper_style"][k]) for k in PAPER_STYLE_COLUMNS})


# What each metric's interval rests on: the events it counts (score.intervals.min_events names the
# minimum of each). A PCC, SCC or RMSE: the scored (parsed) answers; WER and PER: the utterances;
# recall: the mispronounced phones (TR + FA); precision: the rejections (TR + FR) and the
# mispronounced phones too, as they cap its numerator (one mispronounced phone among 760 rejections
# holds precision under 0.0014 whatever the model does: a verdict on the test set, not the model);
# F1 both. The paper-style metrics: the utterances behind each denominator (with a recognised
# phone for precision, an annotated one for recall, both for F1): their phones are plentiful
# (~15 per utterance), but one utterance's phones stand or fall together (a deletion early shifts
# every later one), so the utterances are the units the interval rests on.
EVENT_KINDS = {"utterances": ("utterance", "utterances"),
               "mispronounced": ("mispronounced phone", "mispronounced phones"),
               "rejections": ("rejection", "rejections")}


def events(s: UtteranceStats) -> dict[str, dict[str, int]]:
    """{metric: {event kind: count}} on the full set: the counts each metric's interval rests on."""
    out = {}
    for a, (pred, human) in s.apa.items():
        n = int(np.sum(np.isfinite(pred) & np.isfinite(human)))
        out.update({f"{a}_{m}": {"utterances": n} for m in ("pcc", "scc", "rmse")})
    out["wer"] = {"utterances": int(np.sum(s.wer_ref > 0))}
    out["per"] = {"utterances": int(np.sum(s.per_ref > 0))}
    mispronounced = int(np.sum(s.mdd["tr"] + s.mdd["fa"]))
    rejections = int(np.sum(s.mdd["tr"] + s.mdd["fr"]))
    out["recall"] = {"mispronounced": mispronounced}
    out["precision"] = {"rejections": rejections, "mispronounced": mispronounced}
    out["f1"] = {"rejections": rejections, "mispronounced": mispronounced}
    answered = int(np.sum(s.paper_style["recognised"] > 0))
    annotated = int(np.sum(s.paper_style["annotated"] > 0))
    precision, recall, f1 = PAPER_STYLE
    out[precision], out[recall] = {"utterances": answered}, {"utterances": annotated}
    out[f1] = {"utterances": min(answered, annotated)}
    return out


def metric_names(aspects) -> list[str]:
    return ([f"{a}_{m}" for a in aspects for m in ("pcc", "scc", "rmse")]
            + ["wer", "per", "precision", "recall", "f1", *PAPER_STYLE])


# --------------------------------------------------------------------------- the draws


@dataclass(frozen=True)
class Draws:
    """A block of resamples as counts of the drawn units (speakers, or utterances at the utterance
    level): utterance u's weight in resample b is counts[b, group[u]]. Every metric is computed
    from unit-level sums, so a resample costs one row of units (125 speakers), not of utterances."""
    counts: np.ndarray  # resamples x units, float (exact small integers)
    group: np.ndarray  # per utterance: the index of its unit

    @classmethod
    def once_each(cls, n: int) -> "Draws":
        """The full set, every utterance once: the point estimates."""
        return cls(np.ones((1, n)), np.arange(n))

    @property
    def weights(self) -> np.ndarray:
        """resamples x utterances: how often each utterance is in each resample."""
        return self.counts[:, self.group]


def plan(speakers: list[str], settings: Settings) -> dict:
    """Which level the intervals are at: the configured one, or the utterance level (labelled,
    with the reason) where the test set has too few speakers for a clustered interval."""
    n = len(set(speakers))
    if settings.level == "utterance":
        return {"level": "utterance", "n_speakers": n, "reason": "score.intervals.level is utterance"}
    if n < settings.min_speakers:
        return {"level": "utterance", "n_speakers": n,
                "reason": f"speaker-clustered interval undefined: {n} speaker(s) in the test set, fewer than "
                          f"score.intervals.min_speakers={settings.min_speakers}; utterance-level interval "
                          "shown instead (it ignores that one speaker's utterances are alike: too narrow)"}
    return {"level": "speaker", "n_speakers": n, "reason": None}


def draw_blocks(speakers: list[str], settings: Settings, level: str):
    """Blocks of resamples (`Draws`), at most BLOCK_CELLS counts each. All draws are made at once,
    so the blocks do not change the stream (nor, each resample being computed on its own, any value)."""
    if level == "speaker":
        ids = sorted(set(speakers))
        where = {s: i for i, s in enumerate(ids)}
        group, k = np.array([where[s] for s in speakers], dtype=np.intp), len(ids)
    else:
        group, k = np.arange(len(speakers)), len(speakers)
    draws = np.random.default_rng(settings.seed).integers(0, k, size=(settings.n_resamples, k))
    rows = max(1, BLOCK_CELLS // k)
    for start in range(0, settings.n_resamples, rows):
        block = draws[start:start + rows]
        b = len(block)
        counts = np.bincount((block + k * np.arange(b)[:, None]).ravel(), minlength=b * k).reshape(b, k)
        yield Draws(counts.astype(float), group)


def weight_blocks(speakers: list[str], settings: Settings, level: str):
    """The same resamples as per-utterance weights (resamples x utterances): the definition the
    unit-level sums are tested against."""
    for d in draw_blocks(speakers, settings, level):
        yield d.weights


# --------------------------------------------------------------------------- weighted metrics


def _div(num, den):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _tally(d: Draws, utts: np.ndarray, target: np.ndarray, n_targets: int) -> np.ndarray:
    """resamples x n_targets: the total weight of the utterances `utts` in each target class
    (target[i] is utts[i]'s class). A sparse units x classes matrix of utterance counts, so the
    cost is one pass over the (unit, class) pairs that occur; integer sums, so exact."""
    m = sparse.csr_array((np.ones(len(utts)), (d.group[utts], target)), shape=(d.counts.shape[1], n_targets))
    return np.asarray(m.T @ d.counts.T).T


def _sums(d: Draws, utts: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """resamples x k: the weighted sums of per-utterance columns (len(utts) x k) over `utts`,
    summed per unit once, then weighted by the unit counts (one matrix product)."""
    per_unit = sparse.csr_array((np.ones(len(utts)), (d.group[utts], np.arange(len(utts)))),
                                shape=(d.counts.shape[1], len(utts))) @ columns
    return d.counts @ per_unit


def _pearson(sw, sx, sy, sxx, syy, sxy):
    with np.errstate(divide="ignore", invalid="ignore"):
        vx, vy = sw * sxx - sx * sx, sw * syy - sy * sy
        r = (sw * sxy - sx * sy) / np.sqrt(vx * vy)
    # a constant side (zero variance, up to rounding) is undefined, as metrics.pcc says
    tiny = 1e-12 * np.maximum(sw * sw, 1)
    return np.where((vx > tiny) & (vy > tiny), np.clip(r, -1, 1), np.nan)


def _pcc_rmse(d: Draws, utts, x, y):
    """Pearson r and RMSE per resample; x, y finite. Centred on the full-set means first (the sums
    stay small, so no cancellation)."""
    err2 = (x - y) ** 2
    x, y = x - x.mean(), y - y.mean()
    sw, sx, sy, sxx, syy, sxy, see = _sums(d, utts, np.stack([np.ones_like(x), x, y, x * x, y * y, x * y, err2],
                                                             axis=1)).T
    return _pearson(sw, sx, sy, sxx, syy, sxy), np.sqrt(_div(see, sw))


def weighted_pcc(d: Draws, x, y):
    """Pearson r per resample of all utterances (x, y finite)."""
    return _pcc_rmse(d, np.arange(len(x)), x, y)[0]


def _midranks(per_value):
    """Weighted mid-ranks of the sorted distinct values, per resample: a value of weight c after
    values of total weight s has ranks s+1..s+c, mid-rank s + (c+1)/2 (ties share it)."""
    return np.cumsum(per_value, axis=1) - per_value + (per_value + 1) / 2


def weighted_scc(d: Draws, utts, x, y):
    """Spearman r per resample: Pearson r of the weighted mid-ranks, re-ranked per resample, on the
    distinct (x, y) pairs (a few hundred at most for 0-10 scores) weighted by their resampled counts."""
    xv, xi = np.unique(x, return_inverse=True)
    yv, yi = np.unique(y, return_inverse=True)
    pairs, pi = np.unique(xi * len(yv) + yi, return_inverse=True)
    w = _tally(d, utts, pi, len(pairs))
    rx = _midranks(_tally(d, utts, xi, len(xv)))[:, pairs // len(yv)]
    ry = _midranks(_tally(d, utts, yi, len(yv)))[:, pairs % len(yv)]
    sw = w.sum(1)
    mx, my = (w * rx).sum(1) / sw, (w * ry).sum(1) / sw
    dx, dy = rx - mx[:, None], ry - my[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        vx, vy = (w * dx * dx).sum(1), (w * dy * dy).sum(1)
        r = (w * dx * dy).sum(1) / np.sqrt(vx * vy)
    return np.where((vx > 1e-9) & (vy > 1e-9), np.clip(r, -1, 1), np.nan)


def metrics_of(d: Draws, s: UtteranceStats) -> dict[str, np.ndarray]:
    """Every metric of one checkpoint under each resample of d."""
    out, b = {}, len(d.counts)
    for a, (pred, human) in s.apa.items():
        utts = np.flatnonzero(np.isfinite(pred) & np.isfinite(human))
        if len(utts):
            x, y = pred[utts], human[utts]
            out[f"{a}_pcc"], rmse = _pcc_rmse(d, utts, x, y)
            out[f"{a}_scc"], out[f"{a}_rmse"] = weighted_scc(d, utts, x, y), rmse
        else:
            out.update({f"{a}_{m}": np.full(b, np.nan) for m in ("pcc", "scc", "rmse")})
    cols = ([s.wer_errors, s.wer_ref, s.per_errors, s.per_ref] + [s.mdd[k] for k in MDD_COLUMNS]
            + [s.paper_style[k] for k in PAPER_STYLE_COLUMNS])
    we, wr, pe, pr, ta, fr, fa, tr, hits, recognised, annotated = _sums(
        d, np.arange(len(s.wer_ref)), np.stack(cols, axis=1)).T
    out["wer"], out["per"] = _div(we, wr), _div(pe, pr)
    p, r = _div(tr, tr + fr), _div(tr, tr + fa)
    with np.errstate(invalid="ignore"):
        f1 = np.where(p + r > 0, _div(2 * p * r, p + r), np.where(np.isfinite(p) & np.isfinite(r), 0.0, np.nan))
    out.update(precision=p, recall=r, f1=f1)
    out.update(paper_style_arrays(hits, recognised, annotated))
    return out


def resample(stats: dict, speakers: list[str], settings: Settings, level: str) -> dict[str, dict[str, np.ndarray]]:
    """{key: {metric: B values}} for every checkpoint in `stats` ({key: UtteranceStats}), all on the
    same resampled speakers (so differences between keys are paired)."""
    parts = {k: [] for k in stats}
    for d in draw_blocks(speakers, settings, level):
        for k, s in stats.items():
            parts[k].append(metrics_of(d, s))
    return {k: {m: np.concatenate([p[m] for p in ps]) for m in ps[0]} for k, ps in parts.items()}


def point(s: UtteranceStats) -> dict[str, float | None]:
    """Every metric on the full set (weights 1): the point estimates the intervals belong to."""
    got = metrics_of(Draws.once_each(len(s.wer_ref)), s)
    return {m: (None if np.isnan(v[0]) else float(v[0])) for m, v in got.items()}


# --------------------------------------------------------------------------- summaries


def interval(values: np.ndarray, estimate, confidence: float) -> dict:
    """The percentile interval of the defined resampled values."""
    ok = values[np.isfinite(values)]
    out = {"low": None, "high": None, "n_undefined": int(len(values) - len(ok)), "reason": None}
    if estimate is None:
        return {**out, "reason": "the metric itself is undefined"}
    if len(ok) == 0:
        return {**out, "reason": "undefined in every resample"}
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ok, [tail, 100 - tail])
    return {**out, "low": float(low), "high": float(high)}


def paired(a: np.ndarray, b: np.ndarray, estimate_a, estimate_b, confidence: float) -> dict:
    """a - b on the same resamples: the difference, its percentile interval and a two-sided p."""
    d = a - b
    ok = d[np.isfinite(d)]
    diff = None if estimate_a is None or estimate_b is None else estimate_a - estimate_b
    out = {"diff": diff, **interval(d, diff, confidence), "p_value": None}
    if diff is None or len(ok) == 0:
        return out
    tail = min(np.sum(ok <= 0), np.sum(ok >= 0))
    return {**out, "p_value": float(min(1.0, 2 * (tail + 1) / (len(ok) + 1)))}
