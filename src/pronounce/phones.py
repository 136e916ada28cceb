"""Phone sequences of an utterance: canonical and actually pronounced (annotated).

Conventions (see README, "Phone conventions", and ../shared/reference/mdd_scoring.md):
- every sequence is normalised the same way: upper case, stress digits stripped (AA0 -> AA);
- a mispronunciation's `pronounced-phone` replaces the canonical phone at `index` of its word;
- `<DEL>` deletes the phone (nothing is emitted);
- `<unk>` (an unidentifiable phone) is kept as the token `<unk>`, in that spelling;
- a `*` marking a distorted variant is stripped (`AH*` -> `AH`), the common convention.
"""

import functools
import re

DELETED = "<DEL>"
UNKNOWN = "<unk>"
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


def pronounced_word(phones, mispronunciations) -> list[str]:
    """One word's phones with its annotations applied (indices are into the word's phones)."""
    out = [normalise_phone(p) for p in phones]
    for m in mispronunciations:
        said = m["pronounced_phone"].strip()
        out[m["index"]] = None if said.upper() == DELETED else normalise_phone(said)
    return [p for p in out if p is not None]


def pronounced_sequence(words) -> list[str]:
    return [p for w in words for p in pronounced_word(w["phones"], w["mispronunciations"])]
