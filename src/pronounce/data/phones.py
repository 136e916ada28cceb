"""Phone sequences of an utterance: canonical and actually pronounced (annotated).

Conventions (see README, "Phone conventions", and ../shared/reference/mdd_scoring.md):
- every sequence is normalised the same way: upper case, stress digits stripped (AA0 -> AA);
- a mispronunciation's `pronounced-phone` replaces the canonical phone at `index` of its word;
- `<DEL>` deletes the phone (nothing is emitted);
- `<unk>` (an unidentifiable phone) is kept as the token `<unk>`, in that spelling;
- a `*` marking a distorted variant is stripped (`AH*` -> `AH`), the common convention.

The canonical<->annotated pairing (`annotation_pairs`) comes from the annotations themselves,
not from an aligner: each mispronunciation names its word and the phone's index in it.
speechocean762 can express substitutions (incl. `<unk>`) and deletions this way, not
insertions: every entry is tied to a canonical phone (its README: a `mispronunciations`
block "indicates which phoneme the current phone was actually pronounced"), so the pairing
has one column per canonical phone. (The per-expert `[X]` insertion marks of the raw
annotation did not survive into scores.json.)
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
