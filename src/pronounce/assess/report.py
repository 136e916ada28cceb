"""`pronounce assess` results: one dict per recording from the model's two answers, and its
renderings (a terminal table, JSON lines, a self-contained HTML page).

`result` is pure: given the text and the raw answers it always gives the same dict, so the
per-word diff can be checked on a fixed answer without a model (tests/assess/test_assess.py).
"""

from __future__ import annotations

import html
import json

from ..task.parse import parse_output
from ..task.prompts import APA_FIELDS
from .words import expected_words, word_diff


def _answer(gen) -> tuple[str, str | None]:
    """(raw text, how it stopped) of a generation dict (generation.Generator's), or a raw string."""
    return (gen["raw"], gen.get("stopped")) if isinstance(gen, dict) else (gen, None)


def result(path, text: str, duration: float | None = None, apa=None, mdd=None, error: str | None = None) -> dict:
    """One recording's assessment. `apa`/`mdd`: the model's answers; `error`: why there are none.

    Nothing is invented: an answer that does not parse keeps its status and raw text and gives
    no scores / phones; without parsed phones, or with a word CMUdict lacks, `words` is None and
    `words_reason` says why."""
    out = {"path": str(path), "text": text, "error": error, "duration_s": None, "apa": None, "mdd": None,
           "canonical": None, "missing_words": None, "words": None, "words_reason": None}
    if error is not None:
        return out
    out["duration_s"] = None if duration is None else round(duration, 2)
    (apa_raw, apa_stop), (mdd_raw, mdd_stop) = _answer(apa), _answer(mdd)
    a, m = parse_output("apa", apa_raw), parse_output("mdd", mdd_raw)
    out["apa"] = {"status": a.status, "flags": list(a.flags), "scores": a.fields, "raw": apa_raw, "stopped": apa_stop}
    out["mdd"] = {"status": m.status, "flags": list(m.flags), "raw": mdd_raw, "stopped": mdd_stop,
                  "word_transcript": m.fields["word_transcript"] if m.ok else None,
                  "phones": m.fields["phoneme_transcript"] if m.ok else None}
    expected = expected_words(text)
    out["missing_words"] = expected.missing
    out["canonical"] = [{"word": w, "phones": list(v[0]) if v else None}
                        for w, v in zip(expected.words, expected.variants)]
    if expected.missing:
        out["words_reason"] = f"not in CMUdict: {', '.join(expected.missing)}"
    elif not m.ok:
        out["words_reason"] = f"the MDD answer did not parse ({m.status})"
    else:
        out["words"] = word_diff(expected, m.fields["phoneme_transcript"])
        # The pronunciation each word was compared with (the variant nearest to what was said).
        out["canonical"] = [{"word": w["word"], "phones": w["expected"]} for w in out["words"]]
    return out


# --------------------------------------------------------------------------- JSON lines


def to_jsonl(results) -> str:
    return "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in results)


# --------------------------------------------------------------------------- terminal table


def word_errors(w: dict) -> str:
    """`AO->AA` substituted, `-R` deleted, `+AH` inserted."""
    return " ".join([f"{c}->{s}" for c, s in w["substituted"]] + [f"-{p}" for p in w["deleted"]]
                    + [f"+{p}" for p in w["inserted"]])


def _short(text: str, n: int = 60) -> str:
    text = " ".join((text or "").split())
    return repr(text if len(text) <= n else text[:n] + "...")


def _apa_line(apa: dict) -> str:
    if apa["scores"] is None:
        return f"not parsed ({apa['status']}): {_short(apa['raw'])}"
    return "  ".join(f"{k} {apa['scores'][k]}" for k in APA_FIELDS) + f"   [{apa['status']}]"


def _table(header, rows) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(str(c).ljust(wd) for c, wd in zip(r, widths)).rstrip() for r in [header, *rows]]


def render_table(results) -> str:
    """A plain-text report: per recording the APA scores, what was heard, and a table of words
    with mispronounced ones marked `*`; a failed recording is one line."""
    lines = []
    for r in results:
        if r["error"] is not None:
            lines += [f"{r['path']}  error: {r['error']}", ""]
            continue
        lines.append(f"{r['path']}  ({r['duration_s']:.2f} s)  expected: {r['text']!r}")
        lines.append(f"  APA    {_apa_line(r['apa'])}")
        mdd = r["mdd"]
        if mdd["phones"] is None:
            lines.append(f"  MDD    not parsed ({mdd['status']}): {_short(mdd['raw'])}")
        else:
            lines.append(f"  heard  {mdd['word_transcript']!r}   [{mdd['status']}]")
            lines.append(f"  said   {' '.join(mdd['phones'])}")
        if r["words"] is None:
            canonical = " ".join(" ".join(c["phones"]) if c["phones"] else f"<{c['word']}?>" for c in r["canonical"])
            lines += [f"  CMU    {canonical}", f"  words  no per-word diff: {r['words_reason']}", ""]
            continue
        rows = [("*" if not w["ok"] else "", w["word"], " ".join(w["expected"]), " ".join(w["said"]) or "-",
                 word_errors(w)) for w in r["words"]]
        lines += ["  " + line for line in _table(("", "word", "expected", "said", "errors"), rows)]
        bad = sum(not w["ok"] for w in r["words"])
        lines += [f"  {bad} of {len(rows)} words mispronounced (*)", ""]
    failed = sum(r["error"] is not None for r in results)
    lines.append(f"{len(results)} recording(s): {len(results) - failed} assessed, {failed} failed")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- HTML

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:60em;color:#222}
section{border-top:1px solid #ccc;padding:.5em 0}h2{font-size:1.1em;margin:.3em 0}
table{border-collapse:collapse;margin:.4em 0}td,th{padding:.15em .7em;text-align:left}
th{border-bottom:1px solid #999}tr.bad td{background:#fde2e2}.err{color:#b00020}
.note{color:#666}code{font-family:ui-monospace,monospace}"""


def _esc(v) -> str:
    return html.escape(str(v), quote=True)


def _html_one(r: dict) -> str:
    parts = [f"<section><h2>{_esc(r['path'])}</h2>", f"<p>expected: <q>{_esc(r['text'])}</q>"]
    if r["error"] is not None:
        return "".join(parts) + f"</p><p class=err>error: {_esc(r['error'])}</p></section>"
    parts.append(f" &middot; {r['duration_s']:.2f} s</p>")
    apa = r["apa"]
    if apa["scores"] is None:
        parts.append(f"<p class=err>APA: not parsed ({_esc(apa['status'])})</p>")
    else:
        cells = "".join(f"<td>{apa['scores'][k]}</td>" for k in APA_FIELDS)
        parts.append("<table><tr>" + "".join(f"<th>{k}</th>" for k in APA_FIELDS) + f"</tr><tr>{cells}</tr></table>")
    mdd = r["mdd"]
    if mdd["phones"] is None:
        parts.append(f"<p class=err>MDD: not parsed ({_esc(mdd['status'])})</p>")
    else:
        parts.append(f"<p>heard: <q>{_esc(mdd['word_transcript'])}</q><br>"
                     f"said: <code>{_esc(' '.join(mdd['phones']))}</code></p>")
    if r["words"] is None:
        return "".join(parts) + f"<p class=note>no per-word diff: {_esc(r['words_reason'])}</p></section>"
    rows = "".join(
        f"<tr{'' if w['ok'] else ' class=bad'}><td>{_esc(w['word'])}</td>"
        f"<td><code>{_esc(' '.join(w['expected']))}</code></td><td><code>{_esc(' '.join(w['said']) or '-')}</code></td>"
        f"<td><code>{_esc(word_errors(w))}</code></td></tr>"
        for w in r["words"])
    parts.append("<table><tr><th>word</th><th>expected</th><th>said</th><th>errors</th></tr>" + rows + "</table>")
    return "".join(parts) + "</section>"


def render_html(results, title: str = "Pronunciation assessment") -> str:
    """One self-contained page (inline CSS, no scripts, nothing fetched)."""
    body = "\n".join(_html_one(r) for r in results)
    return (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>{_esc(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{_esc(title)}</h1>\n"
            "<p class=note>Errors: <code>AO-&gt;AA</code> substituted, <code>-R</code> deleted, "
            "<code>+AH</code> inserted; highlighted rows are mispronounced words.</p>\n"
            f"{body}\n</body></html>\n")


RENDERERS = {"table": render_table, "json": to_jsonl, "html": render_html}
