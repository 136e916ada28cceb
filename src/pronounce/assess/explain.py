"""What a learner or teacher needs beside the model's answers to read them without being misled:
which model answered (a tiny smoke model's answers mean nothing), each score's scale and the
paper's rubric line for its band, whether the model heard the expected words, and what each
ARPAbet phone sounds like. Pure functions: no model, no torch.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

from ..training.checkpoints import TRAINING_RECORD
from ..scoring.metrics import align, normalise_words
from ..core.params import BUILTIN_TINY
from ..data.phones import ARPABET
from ..task.prompts import APA_FIELDS, APA_PROMPT

# --------------------------------------------------------------------------- scales and rubric


@functools.cache
def scales() -> dict[str, dict]:
    """Per APA aspect, read from the APA prompt's own text (the paper's rubric, prompts.py):
    {"low": 0, "high": 10, "bands": [(9, 10, "The overall ..."), ...]}."""
    out = {}
    for name, body in re.findall(r"\*\*(\w+)\*\*\n(.*?)(?=\n\n|\Z)", APA_PROMPT, re.S):
        low, high = map(int, re.search(r"Score range: (\d+) - (\d+)", body).groups())
        bands = [(int(a), int(b), text.strip()) for a, b, text in re.findall(r"^\* (\d+)-(\d+): (.+)$", body, re.M)]
        out[name.lower()] = {"low": low, "high": high, "bands": bands}
    assert tuple(out) == APA_FIELDS, f"the APA prompt's sections {tuple(out)} are not {APA_FIELDS}"
    return out


def band(aspect: str, score) -> str:
    """`8/10, band 7-8: <the rubric's line>`; a score outside the scale says so."""
    s = scales()[aspect]
    for low, high, text in s["bands"]:
        if low <= score < high + 1:  # a fractional answer (8.5) belongs to the band below
            return f"{score}/{s['high']}, band {low}-{high}: {text}"
    return f"{score}, outside the {s['low']}-{s['high']} scale: no band"


# --------------------------------------------------------------------------- phones

# An everyday English word for each CMUdict phone, the phone heard in it (tested: CMUdict's first
# pronunciation of each word holds its phone).
PHONE_EXAMPLES = dict(zip(ARPABET, (
    "hot cat cup law cow my boy chair dog this bed bird say fish go hat sit see joy key leg man no sing "
    "show toy pen red sun she top think book food van we yes zoo vision").split()))


def phone_hint(phone: str) -> str:
    """`DH as in this`; a token outside CMUdict's 39 phones says so."""
    if phone in PHONE_EXAMPLES:
        return f"{phone} as in {PHONE_EXAMPLES[phone]}"
    return f"{phone} (not one of CMUdict's 39 phones)"


def legend(phones) -> str:
    """`AA as in hot, DH as in this, ...` for the distinct phones given, in ARPAbet order."""
    order = {p: i for i, p in enumerate(ARPABET)}
    distinct = sorted(set(phones), key=lambda p: (order.get(p, len(order)), p))
    return ", ".join(phone_hint(p) for p in distinct)


def explain(word: dict) -> str:
    """A mispronounced word's errors in words: `said AA (as in hot) for AO (as in law)`."""
    def h(p):
        return f"{p} (as in {PHONE_EXAMPLES[p]})" if p in PHONE_EXAMPLES else p

    parts = [f"said {h(s)} for {h(c)}" for c, s in word["substituted"]]
    parts += [f"{verb} {', '.join(map(h, phones))}" for verb, phones in
              (("left out", word["deleted"]), ("added", word["inserted"])) if phones]
    return "; ".join(parts)


# --------------------------------------------------------------------------- heard vs expected words


def word_check(expected: str, heard: str | None) -> dict:
    """The heard words aligned with the expected ones (the score stage's alignment, WER
    normalisation): pairs of {expected, heard} (None where one side has no word), how many
    expected words were heard as written, and a note for the reader."""
    exp, got = normalise_words(expected), normalise_words(heard or "")
    pairs = [{"expected": exp[s.i] if s.i is not None else None, "heard": got[s.j] if s.j is not None else None}
             for s in align(exp, got)]
    matched = sum(p["expected"] is not None and p["expected"] == p["heard"] for p in pairs)
    if matched == len(exp) == len(got):
        note = f"the model heard the expected sentence ({matched} of {len(exp)} words)"
    elif matched == 0:
        note = (f"the model heard other words (0 of {len(exp)} expected words): it did not recognise the "
                "sentence, so the per-word marks below compare its phones with words it did not hear")
    else:
        note = (f"the model heard other words: {matched} of {len(exp)} expected words as written"
                + (f", {len(got) - matched} other word(s)" if len(got) > matched else ""))
    return {"pairs": pairs, "matched": matched, "expected": len(exp), "note": note}


# --------------------------------------------------------------------------- which model answered


def model_card(adapter: Path, config_dir: Path, base_manifest: dict | None, loaded_base: str) -> dict:
    """Which model answers, from what training recorded beside the adapters (models/<config>/
    training.json) or, for adapters trained before that record, the base stage's base.json;
    `banner` is the line every output starts with."""
    record_path = Path(config_dir) / TRAINING_RECORD
    record = json.loads(record_path.read_text(encoding="utf-8")) if record_path.is_file() else {}
    base = record.get("base") or (base_manifest or {}).get("base") or loaded_base
    revision = record.get("revision") or (base_manifest or {}).get("commit")
    name = Path(adapter).name
    epoch = int(name.split("-")[1]) if re.fullmatch(r"epoch-\d+", name) else record.get("epochs")
    which = "final adapter" if name == "adapter" else name
    profile, epochs = record.get("profile"), record.get("epochs")
    card = {"config": record.get("config") or Path(config_dir).name, "adapter": which, "epoch": epoch, "epochs": epochs,
            "profile": profile, "base": base, "revision": revision, "loaded_base": loaded_base,
            "tiny": base == BUILTIN_TINY, "smoke": profile == "smoke"}
    trained = (f"{card['config']}, {which}" + (f" (epoch {epoch} of {epochs})" if epoch and epochs else "")
               + (f", recipe {profile}" if profile else ", recipe not recorded"))
    if card["tiny"]:
        card["banner"] = (f"TINY SMOKE MODEL, NOT A REAL ASSESSMENT: {trained}, was trained on {BUILTIN_TINY}, "
                          "a tiny random stand-in of Phi-4-multimodal, for minutes on a CPU; its scores, words "
                          "and phones are noise and say nothing about the recording.")
    elif card["smoke"]:
        card["banner"] = (f"SMOKE RECIPE, NOT THE PAPER'S: {trained}, on base {base}; the smoke recipe is a "
                          "short pipeline check, so these answers are untested.")
    else:
        card["banner"] = (f"Model: {trained}, on base {base}" + (f" @ {revision[:12]}" if revision else "") + ".")
    return card
