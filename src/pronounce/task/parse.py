"""Parse the model's generated answer into task fields, saying how and why not.

Order of attempts (the first that yields a dict decides; its validation is final):
1. strict JSON of the whole answer                      -> status "json"
2. `ast.literal_eval` of the whole answer (the paper's prompts print
   Python-style dicts with single quotes; never `eval`)  -> status "python_dict"
3. tolerant extraction from chatty or truncated text: first the first
   balanced `{...}` inside prose (JSON, then literal_eval), else a regex per
   known field, which also reads a value cut off at the end -> status "extracted"

Failures have their own status: "empty", "no_fields" (nothing recognisable),
"missing_fields" (flags name them: "missing:total"), "bad_value" (flags name
them: "bad_value:accuracy"). Nothing is zero-filled: a failure has fields=None.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections import Counter
from dataclasses import dataclass

from ..data.phones import ARPABET as _CMU_PHONES
from ..data.phones import UNKNOWN, normalise_phone
from .prompts import TASK_FIELDS

# The phones an answer may hold: the 39 of CMUdict plus the corpus's marker for an
# unidentifiable phone (anything else is kept and flagged).
ARPABET = frozenset(_CMU_PHONES) | {UNKNOWN}

SUCCESS = ("json", "python_dict", "extracted")
SCORE_RANGE = (0, 10)

# Chat control tokens a decoder may leave around the answer when special tokens are not skipped.
_SPECIAL = re.compile(r"^(?:\s*<\|[A-Za-z0-9_]+\|>)+|(?:<\|[A-Za-z0-9_]+\|>\s*)+$")
# A field name as the model might write it: quoted or not, `_` or a space, any case.
_KEY = {
    f: r"\b" + f.replace("_", "[ _]") + r"(?:[ _]score)?\b"
    for fields in TASK_FIELDS.values()
    for f in fields
}
_SEP = re.compile(r"""\s*["']?\s*[:=]\s*""")  # closing quote of the key, then ':' (or '=')
_NUMBER = re.compile(_SEP.pattern + r"""["']?(-?\d+(?:\.\d+)?)""")


@dataclass(frozen=True)
class ParseResult:
    """fields: APA {field: int 0-10}, MDD {"word_transcript": str, "phoneme_transcript": list[str]};
    None on failure. status: how it was read, or why not. flags: everything noticed on the way."""

    fields: dict | None
    status: str
    flags: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status in SUCCESS


def parse_output(task: str, text: str | None) -> ParseResult:
    """Read one generated answer of `task` ("apa" or "mdd"); see the module docstring."""
    if task not in TASK_FIELDS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASK_FIELDS)}")
    flags: list[str] = []
    stripped = _SPECIAL.sub("", text or "").strip()
    if stripped != (text or "").strip():
        flags.append("special_tokens")
    if not stripped:
        return ParseResult(None, "empty", tuple(flags))

    obj, status = _whole(stripped)
    if obj is None:
        obj, how = _embedded(stripped)
        if obj is None:
            obj, how = _regex(task, stripped)
        status = "extracted"
        flags += how
    if not obj:
        return ParseResult(None, "no_fields", tuple(flags))
    return _validate(task, obj, status, flags)


def _whole(text: str) -> tuple[dict | None, str]:
    try:
        obj = json.loads(text)
        if isinstance(obj, dict):
            return obj, "json"
    except (ValueError, RecursionError):
        pass
    try:
        obj = ast.literal_eval(text)  # literals only: safe on untrusted text, unlike eval
        if isinstance(obj, dict):
            return obj, "python_dict"
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    return None, ""


def _embedded(text: str) -> tuple[dict | None, list[str]]:
    """The first balanced {...} inside prose or a code fence, read as JSON or a Python dict."""
    start = text.find("{")
    while start != -1:
        depth = 0
        for end in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            if depth == 0:
                obj, _ = _whole(text[start : end + 1])
                if obj is not None:
                    return obj, ["embedded_object"]
                break
        start = text.find("{", start + 1)
    return None, []


def _regex(task: str, text: str) -> tuple[dict, list[str]]:
    """Each known field by name; a quoted string may run unterminated to the end (a cut-off answer)."""
    found, flags = {}, []
    read = _number_after if task == "apa" else _string_after
    for field in TASK_FIELDS[task]:
        for key in re.finditer(_KEY[field], text, re.IGNORECASE):
            got = read(text, key.end())
            if got is not None:  # the first occurrence with a value wins
                found[field], cut = got
                if cut:
                    flags.append(f"unterminated:{field}")
                break
    return found, (["regex_fields"] + flags if found else [])


def _number_after(text: str, pos: int) -> tuple[str, bool] | None:
    m = _NUMBER.match(text, pos)
    if not m:
        return None
    # A number that ends a cut-off object may itself be cut ("1" of "10"): say so.
    return m.group(1), "{" in text and not text[m.end() :].strip()


def _string_after(text: str, pos: int) -> tuple[str, bool] | None:
    m = _SEP.match(text, pos)
    if not m:
        return None
    pos = m.end()
    quote = text[pos : pos + 1]
    if quote not in ("'", '"'):
        line = text[pos:].split("\n", 1)[0].strip()  # unquoted prose: the rest of the line
        return (line, False) if line else None
    # The closing quote is the first one followed by a separator, so "That's" survives inside '...'.
    close = re.compile(rf"(?<!\\){quote}(?=\s*(?:[,}}\n]|$))").search(text, pos + 1)
    if close is None:
        return text[pos + 1 :].rstrip(), True
    raw = text[pos + 1 : close.start()]
    if quote == '"':
        try:
            raw = json.loads(f'"{raw}"')  # undo JSON escapes (\" \n \u00e9)
        except ValueError:
            pass
    return raw, False


def _validate(task: str, obj: dict, status: str, flags: list[str]) -> ParseResult:
    # Keys are matched case- and space-insensitively; anything else is ignored but reported.
    by_key = {str(k).strip().lower().replace(" ", "_"): v for k, v in obj.items()}
    wanted = TASK_FIELDS[task]
    flags = flags + [f"extra:{k}" for k in by_key if k not in wanted]
    missing = [f for f in wanted if f not in by_key]
    if missing:
        return ParseResult(None, "missing_fields", tuple(flags + [f"missing:{f}" for f in missing]))
    check = _apa_value if task == "apa" else _mdd_value
    fields, bad = {}, []
    for f in wanted:
        value, notes = check(f, by_key[f])
        if value is None:
            bad.append(f"bad_value:{f}")
        else:
            fields[f] = value
        flags += notes
    if bad:
        return ParseResult(None, "bad_value", tuple(flags + bad))
    return ParseResult(fields, status, tuple(flags))


def _apa_value(field: str, value) -> tuple[int | None, list[str]]:
    """An integer-like score ("8", 8, 8.0), clipped into 0-10 with a flag; anything else is bad."""
    if isinstance(value, bool):  # True is an int in Python, but not a score
        return None, []
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None, []
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value != int(value):
        return None, []  # 7.5 is not a score the model was taught to give
    score = int(value)
    lo, hi = SCORE_RANGE
    if not lo <= score <= hi:
        return min(max(score, lo), hi), [f"clipped:{field}"]
    return score, []


def _mdd_value(field: str, value) -> tuple[str | list[str] | None, list[str]]:
    """word_transcript: a non-empty string; phoneme_transcript: normalised phones (a list)."""
    notes = []
    if field == "phoneme_transcript" and isinstance(value, list) and all(isinstance(p, str) for p in value):
        value = " ".join(value)
        notes.append("list_value:phoneme_transcript")
    if not isinstance(value, str) or not value.strip():
        return None, notes
    if field == "word_transcript":
        return value.strip(), notes
    phones = [normalise_phone(p) for p in value.split()]
    unknown = sorted({p for p in phones if p not in ARPABET})
    if unknown:  # kept, so PER counts them as errors; flagged so they can be counted
        notes.append("unknown_phones:" + ",".join(unknown))
    return phones, notes


def summarise(results) -> dict:
    """Counts of statuses, failure reasons and flag kinds (the part before ':'), and the parse rate."""
    results = list(results)
    status = Counter(r.status for r in results)
    flags = Counter(f.split(":", 1)[0] for r in results for f in r.flags)
    reasons = Counter(f for r in results if not r.ok for f in r.flags if f.startswith(("missing:", "bad_value:")))
    parsed = sum(status[s] for s in SUCCESS)
    return {
        "n": len(results),
        "parsed": parsed,
        "parse_rate": parsed / len(results) if results else None,
        "status": dict(status),
        "failure_reasons": dict(reasons),
        "flags": dict(flags),
    }

