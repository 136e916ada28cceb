"""Stage `decode`: corpus -> data/decoded/{train,test}.arrow + report.json.

Streams: one utterance's audio in memory at a time plus one write batch, so peak memory
does not grow with the corpus. Every rejected utterance is recorded with its reason; every
kept one with an oddity is counted under `warnings` with its id (WARNINGS).
"""

import sys
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
from tqdm import tqdm

from ..core.artifacts import ArrowWriter, atomic_dir, write_json
from ..core.errors import RejectBoundExceeded
from .audio import SAMPLE_RATE, AudioError, decode_audio
from .corpus import MISSING_KALDI_TEXT, SENTENCE_SCORES, SPLITS, Entry, Reject, read_corpus
from .phones import canonical_sequence, pronounced_sequence

SILENT_AUDIO = "silent_audio"  # every sample 0: a usable clip of silence, worth a look
WARNINGS = (MISSING_KALDI_TEXT, SILENT_AUDIO)  # kept, counted, named in report.json

_MISPRONUNCIATION = pa.struct([("canonical_phone", pa.string()), ("index", pa.int32()),
                               ("pronounced_phone", pa.string())])
_WORD = pa.struct([
    ("text", pa.string()), ("phones", pa.list_(pa.string())), ("phone_accuracies", pa.list_(pa.float64())),
    ("accuracy", pa.float64()), ("stress", pa.float64()), ("total", pa.float64()),
    ("mispronunciations", pa.list_(_MISPRONUNCIATION)),
])
SCHEMA = pa.schema(
    [("utt_id", pa.string()), ("split", pa.string()), ("speaker", pa.string()), ("age", pa.int32()),
     ("gender", pa.string()), ("text", pa.string())]
    + [(k, pa.float64()) for k in SENTENCE_SCORES]
    + [("words", pa.list_(_WORD)), ("canonical_phones", pa.list_(pa.string())),
       ("pronounced_phones", pa.list_(pa.string())), ("duration", pa.float64()),
       ("num_samples", pa.int64()), ("audio", pa.list_(pa.int16()))]  # 16-bit PCM: see pronounce.data.audio
)


def silent(audio) -> bool:
    """Every sample 0. The head first: speech has a non-zero sample within its first few (the
    bundled clips within 2), so most clips are settled without a pass over their samples
    (np.any on int16 casts every sample to bool: 0.05 s of CPU per 5,000 clips)."""
    return not (audio[:1024].any() or audio.any())


def record(entry: Entry, audio) -> dict:
    words = entry.labels["words"]
    return {
        "utt_id": entry.utt_id, "split": entry.split, **entry.labels,
        "canonical_phones": canonical_sequence(words),
        "pronounced_phones": pronounced_sequence(words),
        "duration": len(audio) / SAMPLE_RATE, "num_samples": len(audio), "audio": audio,
    }


def run_decode(corpus: str, out_dir, max_seconds: float, max_reject_fraction: float, progress=True) -> dict:
    """Decode and validate the corpus into out_dir; returns the report (also written there)."""
    total, stream = read_corpus(corpus)
    rejects: dict[str, list[Reject]] = defaultdict(list)
    kept = dict.fromkeys(SPLITS, 0)
    clipped: dict[str, int] = {}  # utterance -> samples clipped when rounding to 16 bits
    warnings: dict[str, list[str]] = {w: [] for w in WARNINGS}  # code -> kept utterances
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        writers = {s: ArrowWriter(tmp / f"{s}.arrow", SCHEMA, background=True) for s in SPLITS}
        for item in tqdm(stream, total=total, desc="decode", unit="utt", disable=not progress, file=sys.stderr):
            if isinstance(item, Entry):
                try:
                    audio, n_clipped = decode_audio(item.audio, max_seconds=max_seconds)
                except AudioError as e:
                    item = Reject(item.utt_id, item.split, e.reason, e.detail)
                else:
                    if n_clipped:
                        clipped[item.utt_id] = n_clipped
                    for code in (*item.warnings, *((SILENT_AUDIO,) if silent(audio) else ())):
                        warnings[code].append(item.utt_id)
                    writers[item.split].write(record(item, audio))
                    kept[item.split] += 1
                    continue
            rejects[item.reason].append(item)
        for w in writers.values():
            w.close()
        report = make_report(kept, rejects, max_reject_fraction, clipped, warnings)
        write_json(tmp / "report.json", report)
        if report["reject_fraction"] > max_reject_fraction or not any(kept.values()):
            # Leave the report where the user can read it, then fail without a traceback.
            write_json(out_dir.parent / f"{out_dir.name}-rejects.json", report)
            raise RejectBoundExceeded(
                f"decode: {report['rejected']} of {report['total']} utterances rejected "
                f"({report['reject_fraction']:.1%} > data.max_reject_fraction={max_reject_fraction:.1%}); "
                f"by reason: {_counts(report)}. "
                f"Details: {out_dir.parent / (out_dir.name + '-rejects.json')}"
            )
    return report


def make_report(kept: dict, rejects: dict, max_reject_fraction: float, clipped: dict | None = None,
                warnings: dict | None = None) -> dict:
    rejected = sum(len(v) for v in rejects.values())
    total = sum(kept.values()) + rejected
    clipped = clipped or {}
    warnings = {w: (warnings or {}).get(w, []) for w in WARNINGS}
    return {
        # Kept, but louder than full scale somewhere (only possible for non-16-bit sources).
        "clipped": {"samples": sum(clipped.values()), "utterances": dict(sorted(clipped.items()))},
        "total": total, "kept": kept, "rejected": rejected,
        "reject_fraction": rejected / total if total else 0.0,
        "max_reject_fraction": max_reject_fraction,
        "by_reason": {
            reason: {"count": len(items),
                     "utterances": [{"utt_id": r.utt_id, "split": r.split, "detail": r.detail} for r in items]}
            for reason, items in sorted(rejects.items())
        },
        # Kept, but odd: every code always present, so a clean corpus says 0 rather than nothing.
        "warnings": {code: {"count": len(ids), "ids": ids} for code, ids in warnings.items()},
    }


def warning_lines(report: dict) -> list[str]:
    """One line per warning code that occurred, for the end of the stage (ids: the first 5)."""
    out = []
    for code, w in report["warnings"].items():
        if w["count"]:
            more = f" and {w['count'] - 5} more" if w["count"] > 5 else ""
            out.append(f"decode: warning: {code}: {w['count']} utterance(s) kept ({', '.join(w['ids'][:5])}{more})")
    return out


def _counts(report: dict) -> str:
    return ", ".join(f"{reason}={v['count']}" for reason, v in report["by_reason"].items()) or "none"
