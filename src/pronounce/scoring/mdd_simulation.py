"""Recognised phone sequences simulated from the corpus's annotated ones at a target PER: the
data on which pronounce.scoring.mdd_paper_fit scores each candidate reading of the paper's P/R/F1.

Each annotated phone is deleted with probability d, else replaced with probability s by another
phone; a phone is inserted before each phone and at the end with probability i; replacing and
inserted phones follow the corpus's phone frequencies (so chance matches are realistic). (s, d, i)
= rate x m x (1 - del - ins, del, ins) for a mix (del, ins, cv): m an utterance's multiplier (1, or
a Gamma quantile of mean 1 and coefficient of variation cv), the rate solved so that the realised
PER is the target within PER_TOL, on random numbers drawn once (`draw_noise`). Errors are
independent within an utterance. Why, in full: docs/scoring.md#how-the-paper-style-reading-was-chosen
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ..core.errors import CorpusError
from ..data.corpus import Entry, read_corpus
from ..data.phones import annotation_pairs, canonical_sequence, pronounced_sequence
from .metrics import per

PER_TOL = 0.001  # the realised PER's distance from the row's


@dataclass(frozen=True)
class Utterance:
    canonical: tuple
    annotated: tuple
    pairs: tuple  # the canonical<->annotated pairing (phones.annotation_pairs)


def load(corpus: str) -> list[Utterance]:
    """Every usable utterance of the corpus (both splits), read through pronounce.data.corpus."""
    _, stream = read_corpus(corpus)
    out = [Utterance(tuple(canonical_sequence(e.labels["words"])), tuple(pronounced_sequence(e.labels["words"])),
                     tuple(annotation_pairs(e.labels["words"])))
           for e in stream if isinstance(e, Entry)]
    if not out:
        raise CorpusError(f"{corpus}: no usable utterance to simulate from")
    return out


def annotated_mix(utts: list[Utterance]) -> dict:
    """The corpus's annotated errors: substitutions, deletions, insertions, and the shares."""
    n = Counter()
    for u in utts:
        for c, a in u.pairs:
            if c is None:
                n["insertions"] += 1
            elif a is None:
                n["deletions"] += 1
            elif a != c:
                n["substitutions"] += 1
    total = sum(n.values())
    return {"substitutions": n["substitutions"], "deletions": n["deletions"], "insertions": n["insertions"],
            "del": n["deletions"] / total if total else 0.0, "ins": n["insertions"] / total if total else 0.0}


@dataclass(frozen=True)
class Noise:
    """One replicate's random numbers for one utterance, drawn once and reused at every rate."""
    op: np.ndarray  # uniforms, one per annotated phone: deleted below d, replaced below d + s
    sub: tuple  # the replacing phone of each position (never the annotated one)
    ins_u: np.ndarray  # uniforms, one per gap (before each phone, and at the end): inserted below i
    ins: tuple  # the inserted phone of each gap
    spread: float  # a uniform: the utterance's quantile of the per-utterance rate multiplier


def draw_noise(utts: list[Utterance], reps: int, seed: int) -> list[list[Noise]]:
    rng = np.random.default_rng(seed)
    freq = Counter(p for u in utts for p in u.annotated)
    phones = sorted(freq)
    prob = np.array([freq[p] for p in phones], float) / sum(freq.values())
    out = []
    for _ in range(reps):
        rep = []
        for u in utts:
            n = len(u.annotated)
            sub = rng.choice(len(phones), size=n, p=prob)
            for k in range(n):  # redraw a replacement that equals the annotated phone
                while phones[sub[k]] == u.annotated[k]:
                    sub[k] = rng.choice(len(phones), p=prob)
            rep.append(Noise(rng.random(n), tuple(phones[j] for j in sub), rng.random(n + 1),
                             tuple(phones[j] for j in rng.choice(len(phones), size=n + 1, p=prob)),
                             float(rng.random())))
        out.append(rep)
    return out


def recognise(annotated, noise: Noise, s: float, d: float, i: float) -> list[str]:
    out = []
    for k, phone in enumerate(annotated):
        if noise.ins_u[k] < i:
            out.append(noise.ins[k])
        if noise.op[k] < d:
            continue
        out.append(noise.sub[k] if noise.op[k] < d + s else phone)
    if noise.ins_u[-1] < i:
        out.append(noise.ins[-1])
    return out


def multipliers(noises, cv: float) -> list[np.ndarray]:
    """Per replicate, each utterance's rate multiplier: 1 (cv 0), else a Gamma quantile of mean 1
    and coefficient of variation cv (a real model's per-utterance PER varies widely)."""
    if cv == 0:
        return [np.ones(len(rep)) for rep in noises]
    k = 1 / cv ** 2
    return [stats.gamma.ppf(np.array([n.spread for n in rep]), k, scale=1 / k) for rep in noises]


def simulate(utts, noises, target_per: float, mix: tuple) -> tuple[list, float]:
    """[(utterance, recognised)] over all replicates at the mix (del, ins, cv), the rate solved so
    that the realised PER is target_per; and that PER."""
    dl, ins, cv = mix
    sb = 1.0 - dl - ins
    cap = 1.0 / max(sb + dl, 1e-9)  # s + d <= 1 in every utterance
    g = multipliers(noises, cv)

    def at(rate):
        pairs = []
        for rep, mult in zip(noises, g):
            for u, n, m in zip(utts, rep, mult):
                x = min(rate * m, cap)
                pairs.append((u, recognise(u.annotated, n, sb * x, dl * x, ins * x)))
        return pairs, per([u.annotated for u, _ in pairs], [r for _, r in pairs])["value"]

    lo, hi = 0.0, 4 * cap
    rate = min(target_per, cap)
    for _ in range(30):
        pairs, got = at(rate)
        if abs(got - target_per) <= PER_TOL:
            break
        lo, hi = (rate, hi) if got < target_per else (lo, rate)
        rate = (lo + hi) / 2
    return pairs, got
