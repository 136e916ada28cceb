"""`pronounce assess` results: one dict per recording from the model's two answers, and its
renderings (a terminal table, JSON lines, a self-contained HTML page).

`result` is pure: given the text and the raw answers it always gives the same dict, so the
per-word diff can be checked on a fixed answer without a model (tests/assess/test_assess.py).
"""

from __future__ import annotations

import html
import json

from .explain import PHONE_EXAMPLES, band, explain, legend, phone_hint, scales, word_check
from .words import expected_words, word_diff
from ..task.parse import parse_output
from ..task.prompts import APA_FIELDS


def _answer(gen) -> tuple[str, str | None]:
    """(raw text, how it stopped) of a generation dict (generation.Generator's), or a raw string."""
    return (gen["raw"], gen.get("stopped")) if isinstance(gen, dict) else (gen, None)


def result(path, text: str, duration: float | None = None, apa=None, mdd=None, error: str | None = None,
           model: dict | None = None) -> dict:
    """One recording's assessment. `apa`/`mdd`: the model's answers; `error`: why there are none;
    `model`: the model card (assess_explain.model_card) whose banner heads every output.

    Nothing is invented: an answer that does not parse keeps its status and raw text and gives
    no scores / phones; without parsed phones, or with a word neither CMUdict nor g2p-en can
    pronounce, `words` is None and `words_reason` says why. Words CMUdict lacks are compared with
    g2p-en's predicted pronunciation and listed in `predicted_words`."""
    out = {"banner": (model or {}).get("banner"), "model": model, "path": str(path), "text": text, "error": error,
           "duration_s": None, "apa": None, "mdd": None, "heard": None, "canonical": None, "missing_words": None,
           "predicted_words": None, "words": None, "words_reason": None, "mispronounced": None, "phones": None}
    if error is not None:
        return out
    out["duration_s"] = None if duration is None else round(duration, 2)
    (apa_raw, apa_stop), (mdd_raw, mdd_stop) = _answer(apa), _answer(mdd)
    a, m = parse_output("apa", apa_raw), parse_output("mdd", mdd_raw)
    out["apa"] = {"status": a.status, "flags": list(a.flags), "scores": a.fields, "raw": apa_raw, "stopped": apa_stop,
                  "bands": {k: band(k, v) for k, v in a.fields.items()} if a.fields else None}
    out["mdd"] = {"status": m.status, "flags": list(m.flags), "raw": mdd_raw, "stopped": mdd_stop,
                  "word_transcript": m.fields["word_transcript"] if m.ok else None,
                  "phones": m.fields["phoneme_transcript"] if m.ok else None}
    if m.ok:
        out["heard"] = word_check(text, m.fields["word_transcript"])
    expected = expected_words(text)
    out["missing_words"] = expected.missing
    out["predicted_words"] = expected.predicted_words
    out["canonical"] = [{"word": w, "phones": list(v[0]) if v else None, "predicted": p}
                        for w, v, p in zip(expected.words, expected.variants, expected.predicted)]
    if expected.missing:
        out["words_reason"] = (f"no pronunciation for {', '.join(expected.missing)} (not in CMUdict, and g2p-en "
                               "spells only letters: write numbers as words)")
    elif not m.ok:
        out["words_reason"] = f"the MDD answer did not parse ({m.status})"
    else:
        out["words"] = word_diff(expected, m.fields["phoneme_transcript"])
        # The pronunciation each word was compared with (the variant nearest to what was said).
        out["canonical"] = [{"word": w["word"], "phones": w["expected"], "predicted": w["predicted"]}
                            for w in out["words"]]
        out["mispronounced"] = [{"word": w["word"], "errors": explain(w)} for w in out["words"] if not w["ok"]]
    phones = [p for c in out["canonical"] for p in c["phones"] or []] + list(out["mdd"]["phones"] or [])
    out["phones"] = {p: PHONE_EXAMPLES.get(p) for p in sorted(set(phones))}
    return out


# --------------------------------------------------------------------------- JSON lines


def to_jsonl(results) -> str:
    """One object per recording, its `banner` first (so the first line starts with it)."""
    return "".join(json.dumps({"banner": r.get("banner"), **{k: r[k] for k in sorted(r) if k != "banner"}},
                              ensure_ascii=False) + "\n" for r in results)


# --------------------------------------------------------------------------- terminal table


def word_errors(w: dict) -> str:
    """`AO->AA` substituted, `-R` deleted, `+AH` inserted."""
    return " ".join([f"{c}->{s}" for c, s in w["substituted"]] + [f"-{p}" for p in w["deleted"]]
                    + [f"+{p}" for p in w["inserted"]])


def _short(text: str, n: int = 60) -> str:
    text = " ".join((text or "").split())
    return repr(text if len(text) <= n else text[:n] + "...")


def _table(header, rows) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(str(c).ljust(wd) for c, wd in zip(r, widths)).rstrip() for r in [header, *rows]]


def _heard_per_word(r: dict) -> list[str]:
    """The heard word aligned with each expected word ('-' where the model heard none)."""
    if r["heard"] is None:
        return ["?"] * len(r["words"] or [])
    return [p["heard"] or "-" for p in r["heard"]["pairs"] if p["expected"] is not None]


PREDICTED_MARK = "^"
PREDICTED_NOTE = f"{PREDICTED_MARK} not in CMUdict: its expected phones are g2p-en's prediction"
SCALE_NOTE = "0-10; each with the paper's rubric line for its band"


def _table_one(r: dict) -> list[str]:
    if r["error"] is not None:
        return [f"{r['path']}  error: {r['error']}", ""]
    lines = [f"{r['path']}  ({r['duration_s']:.2f} s)  expected: {r['text']!r}"]
    apa = r["apa"]
    if apa["scores"] is None:
        lines.append(f"  scores  not parsed ({apa['status']}): {_short(apa['raw'])}")
    else:
        lines.append(f"  scores  ({SCALE_NOTE})   [{apa['status']}]")
        lines += [f"    {k:<9} {apa['bands'][k]}" for k in APA_FIELDS]
    mdd = r["mdd"]
    if mdd["phones"] is None:
        lines.append(f"  heard   not parsed ({mdd['status']}): {_short(mdd['raw'])}")
    else:
        lines.append(f"  heard   {mdd['word_transcript']!r}   [{mdd['status']}]: {r['heard']['note']}")
        lines.append(f"  said    {' '.join(mdd['phones'])}")
    mark = {c["word"]: PREDICTED_MARK if c["predicted"] else "" for c in r["canonical"]}
    if r["words"] is None:
        canonical = " ".join(" ".join(c["phones"]) if c["phones"] else f"<{c['word']}?>" for c in r["canonical"])
        lines += [f"  expected phones  {canonical}", f"  words   no per-word diff: {r['words_reason']}"]
    else:
        bad = r["mispronounced"]
        if bad:  # what to work on, before the whole sentence
            lines.append(f"  mispronounced ({len(bad)} of {len(r['words'])} words):")
            lines += [f"    {m['word'] + mark[m['word']]:<12} {m['errors']}" for m in bad]
        else:
            lines.append(f"  mispronounced: none of {len(r['words'])} words")
        rows = [("*" if not w["ok"] else "", w["word"] + mark[w["word"]], heard, " ".join(w["expected"]),
                 " ".join(w["said"]) or "-", word_errors(w)) for w, heard in zip(r["words"], _heard_per_word(r))]
        lines += ["  " + line for line in _table(("", "word", "heard", "expected", "said", "errors"), rows)]
    if r["predicted_words"]:
        lines.append(f"  {PREDICTED_NOTE}")
    if r["phones"]:
        lines.append(f"  phones: {legend(r['phones'])}")
    return lines + [""]


def render_table(results) -> str:
    """A plain-text report: the model's banner first, then per recording the scores with their
    rubric bands, what was heard against what was expected, the mispronounced words with their
    errors in words, and a table of every word (`*` mispronounced); a failed recording is one line."""
    lines = [results[0]["banner"], ""] if results and results[0].get("banner") else []
    for r in results:
        lines += _table_one(r)
    failed = sum(r["error"] is not None for r in results)
    lines.append(f"{len(results)} recording(s): {len(results) - failed} assessed, {failed} failed")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- HTML

CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:60em;color:#222}
section{border-top:1px solid #ccc;padding:.5em 0}h2{font-size:1.1em;margin:.3em 0}h3{font-size:1em;margin:.6em 0 .2em}
table{border-collapse:collapse;margin:.4em 0}td,th{padding:.15em .7em;text-align:left;vertical-align:top}
th{border-bottom:1px solid #999}tr.bad td{background:#fde2e2}.err{color:#b00020}
.note{color:#666}code{font-family:ui-monospace,monospace}abbr{text-decoration:none;border-bottom:1px dotted #999}
.banner{padding:.6em .8em;border:2px solid #b00020;background:#fff4f4;color:#b00020;font-weight:600}
.banner.real{border-color:#999;background:#f6f6f6;color:#222;font-weight:400}"""


def _esc(v) -> str:
    return html.escape(str(v), quote=True)


def _phones_html(phones) -> str:
    return " ".join(f"<abbr title=\"{_esc(phone_hint(p))}\">{_esc(p)}</abbr>" for p in phones) or "-"


def render_banner(card: dict | None) -> str:
    if not card:
        return ""
    real = "" if card.get("tiny") or card.get("smoke") else " real"
    return f"<p class=\"banner{real}\" id=banner>{_esc(card['banner'])}</p>"


def render_error(reason: str, footer: str = "") -> str:
    """A bad input in the page: its one-line reason."""
    return f"<p class=err>{_esc(reason)}</p>" + (f"<p class=note>{_esc(footer)}</p>" if footer else "")


def render_fragment(r: dict, footer: str = "") -> str:
    """One recording as an HTML section (the page and `pronounce serve` share it)."""
    parts = [f"<section><h2>{_esc(r['path'])}</h2>", f"<p>expected: <q>{_esc(r['text'])}</q>"]
    if r["error"] is not None:
        return "".join(parts) + f"</p><p class=err>error: {_esc(r['error'])}</p>" + (
            f"<p class=note>{_esc(footer)}</p>" if footer else "") + "</section>"
    parts.append(f" &middot; {r['duration_s']:.2f} s</p>")
    apa = r["apa"]
    if apa["scores"] is None:
        parts.append(f"<p class=err>scores: not parsed ({_esc(apa['status'])})</p>")
    else:
        rows = "".join(f"<tr><td>{k}</td><td><b>{apa['scores'][k]}</b> / {scales()[k]['high']}</td>"
                       f"<td>{_esc(apa['bands'][k].split(', ', 1)[1])}</td></tr>" for k in APA_FIELDS)
        parts.append("<table class=scores><tr><th>aspect</th><th>score</th><th>the paper's rubric for the band"
                     f"</th></tr>{rows}</table>")
    mdd = r["mdd"]
    if mdd["phones"] is None:
        parts.append(f"<p class=err>heard: not parsed ({_esc(mdd['status'])})</p>")
    else:
        parts.append(f"<p>heard: <q>{_esc(mdd['word_transcript'])}</q> <span class=note>({_esc(r['heard']['note'])})"
                     f"</span><br>said: <code>{_phones_html(mdd['phones'])}</code></p>")
    mark = {c["word"]: PREDICTED_MARK if c["predicted"] else "" for c in r["canonical"]}
    if r["words"] is None:
        parts.append(f"<p class=note>no per-word diff: {_esc(r['words_reason'])}</p>")
    else:
        bad = r["mispronounced"]
        items = "".join(f"<li><b>{_esc(m['word'] + mark[m['word']])}</b>: {_esc(m['errors'])}</li>" for m in bad)
        parts.append(f"<h3>Mispronounced: {len(bad)} of {len(r['words'])} words</h3>"
                     + (f"<ul class=mispronounced>{items}</ul>" if bad else ""))
        rows = "".join(
            f"<tr{'' if w['ok'] else ' class=bad'}><td>{_esc(w['word'] + mark[w['word']])}</td><td>{_esc(heard)}</td>"
            f"<td><code>{_phones_html(w['expected'])}</code></td><td><code>{_phones_html(w['said'])}</code></td>"
            f"<td><code>{_esc(word_errors(w))}</code></td></tr>"
            for w, heard in zip(r["words"], _heard_per_word(r)))
        parts.append("<table class=words><tr><th>word</th><th>heard</th><th>expected</th><th>said</th><th>errors</th>"
                     f"</tr>{rows}</table>")
    if r["predicted_words"]:
        parts.append(f"<p class=note>{_esc(PREDICTED_NOTE)}</p>")
    if r["phones"]:
        parts.append(f"<p class=note>ARPAbet phones: {_esc(legend(r['phones']))}</p>")
    if footer:
        parts.append(f"<p class=note>{_esc(footer)}</p>")
    return "".join(parts) + "</section>"


def render_html(results, title: str = "Pronunciation assessment") -> str:
    """One self-contained page (inline CSS, no scripts, nothing fetched), the banner first."""
    body = "\n".join(render_fragment(r) for r in results)
    banner = render_banner(results[0].get("model")) if results else ""
    return (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>{_esc(title)}</title>"
            f"<style>{CSS}</style></head><body>{banner}<h1>{_esc(title)}</h1>\n"
            "<p class=note>Errors: <code>AO-&gt;AA</code> substituted, <code>-R</code> deleted, "
            "<code>+AH</code> inserted; highlighted rows are mispronounced words; hover a phone for an "
            "example word.</p>\n"
            f"{body}\n</body></html>\n")


RENDERERS = {"table": render_table, "json": to_jsonl, "html": render_html}
