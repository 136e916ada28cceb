"""Phone sequences of an utterance: canonical and actually pronounced (annotated).

Every sequence is normalised the same way: upper case, stress digits stripped (AA0 -> AA), a `*`
marking a distorted variant stripped (`AH*` -> `AH`), `<unk>` kept in that spelling. A
mispronunciation's `pronounced-phone` replaces the canonical phone at `index` of its word; `<DEL>`
deletes it (nothing is emitted). The canonical<->annotated pairing (`annotation_pairs`) comes from
these annotations, not from an aligner: each names its word and the phone's index. speechocean762
expresses substitutions and deletions this way, not insertions, so the pairing has one column per
canonical phone.

The conventions' table: docs/stages.md, "Phone conventions"; why the pairing is built so:
docs/stages.md#why-the-pairing-comes-from-the-annotations
"""

import functools
import re

DELETED = "<DEL>"
UNKNOWN = "<unk>"
# The 39 phones of the CMU Pronouncing Dictionary, stress stripped: speechocean762's phone set
# (with UNKNOWN for an unidentifiable phone). The one definition; parse and model import it.
ARPABET = tuple(
    "AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG "
    "OW OY P R S SH T TH UH UW V W Y Z ZH".split()
)
_STRESS = re.compile(r"(?<=[A-Z])[0-2]$")


@functools.lru_cache(maxsize=4096)  # a few dozen distinct phones, called per phone of the corpus
def normalise_phone(phone: str) -> str:
    """`ih0` -> `IH`, `AH*` -> `AH`; `<unk>` stays `<unk>` whatever its case."""
    p = phone.strip()
    if p.lower() == UNKNOWN:
        return UNKNOWN
    p = p.replace("*", "").upper()
    return _STRESS.sub("", p)


def canonical_sequence(words) -> list[str]:
    return [normalise_phone(p) for w in words for p in w["phones"]]


def word_pairs(phones, mispronunciations) -> list[tuple[str, str | None]]:
    """(canonical, annotated) for each canonical phone of one word, annotated None = deleted
    (indices are into the word's phones; a later entry for the same index wins)."""
    pairs = [(c, c) for c in (normalise_phone(p) for p in phones)]
    for m in mispronunciations:
        said = m["pronounced_phone"].strip()
        pairs[m["index"]] = (pairs[m["index"]][0], None if said.upper() == DELETED else normalise_phone(said))
    return pairs


def annotation_pairs(words) -> list[tuple[str, str | None]]:
    """The utterance's canonical<->annotated pairing, straight from the annotations."""
    return [pair for w in words for pair in word_pairs(w["phones"], w["mispronunciations"])]


def pronounced_word(phones, mispronunciations) -> list[str]:
    """One word's phones with its annotations applied: the annotated side of `word_pairs`."""
    return [a for _, a in word_pairs(phones, mispronunciations) if a is not None]


def pronounced_sequence(words) -> list[str]:
    return [p for w in words for p in pronounced_word(w["phones"], w["mispronunciations"])]
