"""speechocean762 in either form users have it -> one stream of typed, validated entries.

Forms:
- release: the corpus's own layout: train/ and test/ Kaldi-style files (wav.scp, text, utt2spk,
  spk2age, spk2gender), resource/scores.json (a word's `phones` one space-separated string), WAVE/.
- hf: the Hugging Face form (mispeech/speechocean762): a `datasets` DatasetDict saved with
  save_to_disk, or `hf:<name>[@<revision>]` (pronounce.data.hub_dataset: the cache's parquet files,
  offline too); `phones` is a list, audio raw bytes (decoded by pronounce.data.audio, no FFmpeg).

Both forms yield identical `Entry`s. Labels are validated here, audio when it is decoded. A
problem with one utterance is a `Reject` (recorded, counted), with the corpus as a whole a
CorpusError. An oddity that leaves the utterance usable is kept as a warning (`Entry.warnings`,
counted in decode's report): `missing_kaldi_text` (in wav.scp, not in the split's Kaldi `text`).
What each reject means: docs/stages.md, `decode`.
"""

import dataclasses
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..core.artifacts import SPLITS
from ..core.errors import CorpusError
from .jsonindex import index_scores, load_score

SENTENCE_SCORES = ("accuracy", "completeness", "fluency", "prosodic", "total")
KALDI_FILES = ("wav.scp", "text", "utt2spk", "spk2age", "spk2gender")
MISSING_KALDI_TEXT = "missing_kaldi_text"


@dataclass(frozen=True)
class Entry:
    """One utterance's labels (normalised to one shape) and where its audio comes from."""

    utt_id: str
    split: str
    labels: dict  # speaker, age, gender, text, the five scores, words
    audio: object  # a path (release form) or raw bytes (hf form)
    warnings: tuple = ()  # codes of oddities the utterance is kept with (decode counts them)


@dataclass(frozen=True)
class Reject:
    utt_id: str
    split: str
    reason: str
    detail: str


def detect_form(corpus: str) -> str:
    if corpus.startswith("hf:"):
        return "hf"
    path = Path(corpus)
    if not path.exists():
        raise CorpusError(f"data.corpus: {corpus!r} does not exist")
    if (path / "resource" / "scores.json").is_file() or any((path / s / "wav.scp").is_file() for s in SPLITS):
        return "release"
    if (path / "dataset_dict.json").is_file():
        return "hf"
    raise CorpusError(
        f"data.corpus: {corpus!r} is neither the speechocean762 release layout "
        "(resource/scores.json, train/wav.scp, test/wav.scp) nor a Hugging Face DatasetDict "
        "saved with save_to_disk (dataset_dict.json)"
    )


def read_corpus(corpus: str) -> tuple[int, Iterator[Entry | Reject]]:
    """(number of utterances, a stream of entries and rejects), in split then id order."""
    if detect_form(corpus) == "release":
        return _read_release(Path(corpus))
    return _read_hf(corpus)


# -- labels ---------------------------------------------------------------------------

def normalise_labels(raw: dict, speaker: str, age: int, gender: str, phones_as_string: bool) -> dict:
    """The one label shape both forms map to (KeyError/TypeError/ValueError on malformed input)."""
    words = []
    for w in raw["words"]:
        phones = w["phones"].split() if phones_as_string else list(w["phones"])
        words.append({
            "text": str(w["text"]),
            "phones": phones,
            "phone_accuracies": [float(a) for a in w["phones-accuracy"]],
            "accuracy": float(w["accuracy"]),
            "stress": float(w["stress"]),
            "total": float(w["total"]),
            "mispronunciations": [
                {"canonical_phone": str(m["canonical-phone"]), "index": int(m["index"]),
                 "pronounced_phone": str(m["pronounced-phone"])}
                for m in (w.get("mispronunciations") or [])
            ],
        })
    labels = {"speaker": str(speaker), "age": int(age), "gender": str(gender), "text": str(raw["text"])}
    labels.update({k: float(raw[k]) for k in SENTENCE_SCORES})
    labels["words"] = words
    return labels


def label_problem(labels: dict) -> tuple[str, str] | None:
    """(reason, detail) when the labels are unusable, else None."""
    words = labels["words"]
    said = " ".join(w["text"] for w in words).split()
    if not words or said != labels["text"].split():
        return "words_text_mismatch", f"words {' '.join(said)!r} != text {labels['text']!r}"
    for w in words:
        if not w["phones"] or len(w["phone_accuracies"]) != len(w["phones"]):
            return "malformed_labels", f"word {w['text']!r}: {len(w['phones'])} phones, {len(w['phone_accuracies'])} accuracies"
        for m in w["mispronunciations"]:
            if not 0 <= m["index"] < len(w["phones"]):
                return ("mispronunciation_index_out_of_range",
                        f"word {w['text']!r} has {len(w['phones'])} phones, index {m['index']}")
    return None


def _entry_or_reject(utt_id, split, raw, speaker, age, gender, audio, phones_as_string):
    try:
        labels = normalise_labels(raw, speaker, age, gender, phones_as_string)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        return Reject(utt_id, split, "malformed_labels", f"{type(e).__name__}: {e}")
    problem = label_problem(labels)
    if problem:
        return Reject(utt_id, split, *problem)
    return Entry(utt_id, split, labels, audio)


# -- release layout -------------------------------------------------------------------

def kaldi_map(path: Path) -> dict[str, str]:
    """key -> value of a Kaldi table, read line by line. Keys and short values are interned: the
    same utterance and speaker ids recur across tables and the scores.json index, and one shared
    object each is most of what decode's memory would otherwise grow by per utterance."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split(maxsplit=1)  # Kaldi files separate by a tab or a space
            if parts:
                value = parts[1].strip() if len(parts) > 1 else ""
                out[sys.intern(parts[0])] = sys.intern(value) if len(value) <= 32 else value
    return out


def _count_lines(path: Path) -> int:
    """Utterances in a Kaldi table (its non-blank lines), without keeping them."""
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def _read_release(root: Path):
    scores_path = root / "resource" / "scores.json"
    if not scores_path.is_file():
        raise CorpusError(f"{scores_path} is missing: the release layout keeps the labels there")
    scores = index_scores(scores_path)

    for split in SPLITS:
        missing = [f for f in KALDI_FILES if not (root / split / f).is_file()]
        if missing:
            raise CorpusError(f"{root / split} lacks {', '.join(missing)} (release layout)")
    total = sum(_count_lines(root / split / "wav.scp") for split in SPLITS)

    def stream():
        with open(scores_path, "rb") as scores_file:  # entries are read from it by offset
            for split in SPLITS:
                # One split's tables at a time: what decode holds besides the label index.
                t = {f: kaldi_map(root / split / f) for f in KALDI_FILES}
                for utt_id in sorted(t["wav.scp"]):
                    wav = os.path.join(root, t["wav.scp"][utt_id])  # os.path: pathlib was 8% of decode
                    if not os.path.isfile(wav):
                        yield Reject(utt_id, split, "missing_audio_file", f"wav.scp names {t['wav.scp'][utt_id]}, not found")
                        continue
                    if utt_id not in scores:
                        yield Reject(utt_id, split, "missing_scores", "not in resource/scores.json")
                        continue
                    spk = t["utt2spk"].get(utt_id)
                    if spk is None or spk not in t["spk2age"] or spk not in t["spk2gender"]:
                        yield Reject(utt_id, split, "malformed_labels", f"no speaker/age/gender for speaker {spk!r}")
                        continue
                    try:
                        raw = load_score(scores_file, scores[utt_id])
                    except (json.JSONDecodeError, UnicodeDecodeError) as e:
                        yield Reject(utt_id, split, "malformed_labels", f"scores.json entry: {e}")
                        continue
                    entry = _entry_or_reject(utt_id, split, raw, spk, t["spk2age"][spk],
                                             t["spk2gender"][spk], wav, phones_as_string=True)
                    if isinstance(entry, Entry):
                        entry = _checked_against_kaldi_text(entry, t["text"].get(utt_id))
                    yield entry
                del t

    return total, stream()


def _checked_against_kaldi_text(entry: Entry, kaldi_text: str | None) -> Entry | Reject:
    """The split's `text` must agree with scores.json; an utterance missing from it is kept
    (scores.json has the text) with a warning, not silently."""
    if kaldi_text is None:
        return dataclasses.replace(entry, warnings=(*entry.warnings, MISSING_KALDI_TEXT))
    if kaldi_text.split() != entry.labels["text"].split():
        return Reject(entry.utt_id, entry.split, "words_text_mismatch",
                      f"{entry.split}/text {kaldi_text!r} != scores.json text {entry.labels['text']!r}")
    return entry


# -- Hugging Face form ----------------------------------------------------------------

def _read_hf(corpus: str):
    import datasets

    if corpus.startswith("hf:"):  # from the snapshot's parquet files: load_dataset(<id>) fails offline
        from .hub_dataset import load_hub_dataset

        dsd = load_hub_dataset(corpus)
    else:
        dsd = datasets.load_from_disk(corpus)
    if not isinstance(dsd, datasets.DatasetDict) or not set(SPLITS) <= set(dsd):
        raise CorpusError(f"data.corpus: {corpus!r} must hold the splits {SPLITS}, has {list(dsd) if isinstance(dsd, dict) else 'one split'}")
    # Raw bytes, decoded by us: no torchcodec/FFmpeg, and one decoder for both forms.
    dsd = {s: dsd[s].cast_column("audio", datasets.Audio(decode=False)) for s in SPLITS}
    total = sum(len(dsd[s]) for s in SPLITS)

    def utt_ids(ds) -> list[str]:
        """Each row's id without reading its audio bytes: an id column, else the clip's file stem."""
        for key in ("utt_id", "id"):
            if key in ds.column_names:
                return [str(v) for v in ds[key]]
        if ds._indices is None:  # read the path field straight from Arrow
            paths = ds.data.table.column("audio").combine_chunks().field("path").to_pylist()
        else:
            paths = [a["path"] for a in ds["audio"]]
        return [Path(p).stem for p in paths]

    def stream():
        for split in SPLITS:
            ds = dsd[split]
            ids = utt_ids(ds)
            for i in sorted(range(len(ds)), key=ids.__getitem__):  # same order as the release form
                row, utt_id = ds[i], ids[i]
                audio = row["audio"]["bytes"] or row["audio"]["path"]
                if not audio or (isinstance(audio, str) and not Path(audio).is_file()):
                    yield Reject(utt_id, split, "missing_audio_file", f"no bytes, path {row['audio']['path']!r} not found")
                    continue
                yield _entry_or_reject(utt_id, split, row, row["speaker"], row["age"], row["gender"], audio,
                                       phones_as_string=False)

    return total, stream()
