"""Inputs of `pronounce.bench`: a full-scale corpus in the release layout built from the
bundled clips, and a small prepared workspace (tiny model, decoded and materialized bundled
corpus) for the collator and evaluation benchmarks. Everything lives under a temp folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..corpus import KALDI_FILES, SPLITS, _kaldi_map

ROOT = Path(__file__).resolve().parents[3]
BUNDLED = ROOT / "data" / "speechocean762-mini"


def _originals(src: Path) -> list[dict]:
    """The bundled utterances, in split then id order: split, utt_id, speaker, age, gender, wav, text."""
    out = []
    for split in SPLITS:
        t = {f: _kaldi_map(src / split / f) for f in KALDI_FILES}
        for utt in sorted(t["wav.scp"]):
            spk = t["utt2spk"][utt]
            out.append({"split": split, "utt": utt, "spk": spk, "age": t["spk2age"][spk],
                        "gender": t["spk2gender"][spk], "wav": t["wav.scp"][utt], "text": t["text"][utt]})
    return out


def _link(src: Path, dst: Path) -> str:
    try:
        os.link(src, dst)
        return "hardlink"
    except OSError:
        try:
            dst.symlink_to(src)
            return "symlink"
        except OSError:
            shutil.copyfile(src, dst)
            return "copy"


def build_scaled_corpus(dst, n_utts: int, src=BUNDLED) -> dict:
    """A corpus of `n_utts` utterances in the speechocean762 release layout: the bundled clips
    replicated round-robin under new utterance and speaker ids (each copy keeps its split,
    labels and audio). WAVs are hard links to one private copy of the bundled files (symlinks or
    copies where links fail): the decoder reads them exactly as distinct files."""
    src, dst = Path(src), Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    originals = _originals(src)
    scores = json.loads((src / "resource" / "scores.json").read_text(encoding="utf-8"))
    pool = dst / ".clips"
    pool.mkdir(parents=True)
    for o in originals:
        shutil.copyfile(src / o["wav"], pool / f"{o['utt']}.WAV")
    (dst / "resource").mkdir()
    tables = {s: {f: [] for f in KALDI_FILES} for s in SPLITS}
    new_scores, speakers, paths, how = {}, set(), [], set()
    for i in range(n_utts):
        o, rep = originals[i % len(originals)], i // len(originals)
        utt, spk = f"{rep:04d}{o['utt']}", f"{rep:04d}{o['spk']}"
        rel = f"WAVE/SPEAKER{spk}/{utt}.WAV"
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        how.add(_link(pool / f"{o['utt']}.WAV", dst / rel))
        t = tables[o["split"]]
        t["wav.scp"].append(f"{utt}\t{rel}")
        t["text"].append(f"{utt}\t{o['text']}")
        t["utt2spk"].append(f"{utt}\t{spk}")
        if (o["split"], spk) not in speakers:
            speakers.add((o["split"], spk))
            t["spk2age"].append(f"{spk}\t{o['age']}")
            t["spk2gender"].append(f"{spk}\t{o['gender']}")
        new_scores[utt] = scores[o["utt"]]
        paths.append(str(dst / rel))
    for split, t in tables.items():
        (dst / split).mkdir()
        for name, lines in t.items():
            (dst / split / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    (dst / "resource" / "scores.json").write_text(json.dumps(new_scores, indent=2, sort_keys=True), encoding="utf-8")
    # The paths in the decoder's order (split, then utterance id): what the floor and naive read.
    order = sorted(range(n_utts), key=lambda i: (SPLITS.index(originals[i % len(originals)]["split"]),
                                                 f"{i // len(originals):04d}{originals[i % len(originals)]['utt']}"))
    paths_file = dst / ".paths.txt"
    paths_file.write_text("".join(paths[i] + "\n" for i in order), encoding="utf-8")
    audio_bytes = sum((pool / f"{originals[i % len(originals)]['utt']}.WAV").stat().st_size for i in range(n_utts))
    return {"corpus": str(dst), "paths_file": str(paths_file), "utterances": n_utts,
            "wav_files": "+".join(sorted(how)), "wav_bytes": audio_bytes}


def prepare_small(ws) -> dict:
    """The tiny model, and the bundled corpus decoded and materialized, under `ws` (built once)."""
    from ..base import run_base
    from ..decode import run_decode
    from ..materialize import run_materialize
    from ..model import load_processor

    ws = Path(ws)
    base, decoded, materialized = ws / "base", ws / "decoded", ws / "materialized"
    if not (materialized / "summary.json").is_file():
        run_base("builtin:tiny", None, 1234, base)
        run_decode(str(BUNDLED), decoded, 30.0, 0.0, progress=False)
        run_materialize(decoded, materialized, load_processor(base).audio_token, progress=False)
    return {"base": str(base), "decoded": str(decoded), "materialized": str(materialized)}
