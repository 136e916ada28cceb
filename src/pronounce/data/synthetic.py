"""A synthetic corpus in the speechocean762 release layout whose right answers are a function
of the audio alone: the learnability check's data (tests/pipeline/test_learnability.py).

    python -m pronounce.data.synthetic OUT [--seed N] [--train N] [--test N]

Each utterance is a row of sounds, each a one-phone word (the word `OH` is OW, a 600 Hz tone). A
substituted phone is played as the phone said instead plus an error mark (a 6 kHz tone), a deleted
one as the mark alone, both recorded as mispronunciations; accuracy counts the errors, fluency the
long pauses, prosodic the clip's loudness, total is their rounded mean. The canonical word of a
substituted or deleted phone is not audible, so WER has a floor above zero; fluency is the one
answer the clip's length alone gives (what the tiny model learns). Deterministic: the same
arguments give byte-identical files, in seconds for a few hundred clips.
Why, and each label's formula: docs/testing.md#the-synthetic-corpuss-labels
"""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16_000
# (word, phone as the release writes it, sound): a tone in Hz, or "noise" (a 2-4 kHz band).
ALPHABET = (
    ("I", "AY0", 350.0),
    ("OH", "OW0", 600.0),
    ("EH", "EH0", 1000.0),
    ("OOH", "UW0", 1700.0),
    ("ERR", "ER0", 2700.0),
    ("SH", "SH", "noise"),
)
MARK_HZ = 6000.0  # the error mark: above every phone's sound
SOUND_S, GAP_S, PAUSE_S, EDGE_S = 0.24, 0.06, 0.6, 0.1
LEVELS = {3: 0.04, 6: 0.12, 9: 0.36}  # prosodic score -> peak amplitude of the clip
SUBSTITUTE_P, DELETE_P = 0.12, 0.05  # per phone, as the measurement
WORDS_PER_UTT = (2, 5)
SPEAKERS_PER_SPLIT = 4


def _sound(kind, rng) -> np.ndarray:
    n = int(SOUND_S * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    if kind == "noise":
        spectrum = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
        spectrum[(freqs < 2000) | (freqs > 4000)] = 0
        x = np.fft.irfft(spectrum, n)
        x /= np.abs(x).max()
    else:
        x = np.sin(2 * np.pi * kind * t)
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.02)  # 20 ms fades: no clicks between sounds
    return x * ramp


def _mark() -> np.ndarray:
    return 0.5 * _sound(MARK_HZ, None)


def _utterance(rng):
    """(labels in the scores.json schema, float audio) of one random utterance."""
    n = int(rng.integers(WORDS_PER_UTT[0], WORDS_PER_UTT[1] + 1))
    canonical = rng.integers(len(ALPHABET), size=n)
    prosodic = int(rng.choice(sorted(LEVELS)))
    long_pauses = set(rng.choice(n - 1, size=int(rng.integers(0, min(3, n - 1) + 1)), replace=False).tolist())
    words, pieces, errors = [], [np.zeros(int(EDGE_S * SAMPLE_RATE))], 0
    for i, c in enumerate(canonical):
        word, phone, sound = ALPHABET[c]
        r = rng.random()
        entry = {"text": word, "phones": phone, "stress": 10}
        if r < SUBSTITUTE_P + DELETE_P:
            errors += 1
            if r < SUBSTITUTE_P:
                said = (c + int(rng.integers(1, len(ALPHABET)))) % len(ALPHABET)  # any other phone
                audio = 0.5 * _sound(ALPHABET[said][2], rng) + _mark()
                pronounced = ALPHABET[said][1].rstrip("012")
                entry.update(accuracy=3, total=3, **{"phones-accuracy": [0.6]})
            else:
                audio, pronounced = _mark(), "<DEL>"
                entry.update(accuracy=0, total=0, **{"phones-accuracy": [0.0]})
            entry["mispronunciations"] = [{"canonical-phone": phone.rstrip("012"), "index": 0,
                                           "pronounced-phone": pronounced}]
        else:
            audio = _sound(sound, rng)
            entry.update(accuracy=10, total=10, **{"phones-accuracy": [2.0]})
        words.append(entry)
        pieces.append(audio)
        if i < n - 1:
            pieces.append(np.zeros(int((PAUSE_S if i in long_pauses else GAP_S) * SAMPLE_RATE)))
    pieces.append(np.zeros(int(EDGE_S * SAMPLE_RATE)))
    clip = np.concatenate(pieces)
    clip = LEVELS[prosodic] * clip / np.abs(clip).max() + 0.001 * rng.standard_normal(len(clip))  # a noise floor
    accuracy = max(0, 10 - 2 * errors)
    fluency = 9 - 2 * len(long_pauses)
    deleted = sum(w.get("mispronunciations", [{}])[0].get("pronounced-phone") == "<DEL>" for w in words)
    labels = {
        "text": " ".join(w["text"] for w in words),
        "accuracy": accuracy, "fluency": fluency, "prosodic": prosodic,
        "completeness": round(10 * (n - deleted) / n, 1),
        "total": int(round((accuracy + fluency + prosodic) / 3)),
        "words": words,
    }
    return labels, clip.astype(np.float32)


def _write_table(path: Path, rows: dict) -> None:
    path.write_text("".join(f"{k}\t{v}\n" for k, v in sorted(rows.items())), encoding="utf-8")


def write_synthetic_corpus(out_dir, seed: int = 0, n_train: int = 240, n_test: int = 60) -> Path:
    """Write the corpus into `out_dir` (created; must not hold a corpus already); return it."""
    if n_train < 1 or n_test < 1:
        raise ValueError(f"n_train and n_test must be at least 1 (got {n_train}, {n_test})")
    out = Path(out_dir)
    if (out / "resource" / "scores.json").exists():
        raise FileExistsError(f"{out} already holds a corpus: write into a new folder")
    rng = np.random.default_rng(seed)
    scores = {}
    for s, (split, n) in enumerate((("train", n_train), ("test", n_test))):
        tables = {name: {} for name in ("wav.scp", "text", "utt2spk", "spk2age", "spk2gender", "spk2utt")}
        for i in range(n):
            spk = f"{9000 + s * SPEAKERS_PER_SPLIT + i % SPEAKERS_PER_SPLIT:04d}"  # ids no real speaker has
            utt = f"{spk}{i:05d}"
            labels, clip = _utterance(rng)
            wav = f"WAVE/SPEAKER{spk}/{utt}.WAV"
            (out / wav).parent.mkdir(parents=True, exist_ok=True)
            sf.write(out / wav, clip, SAMPLE_RATE, subtype="PCM_16", format="WAV")
            scores[utt] = labels
            tables["wav.scp"][utt] = wav
            tables["text"][utt] = labels["text"]
            tables["utt2spk"][utt] = spk
            tables["spk2age"][spk] = 20
            tables["spk2gender"][spk] = "f" if int(spk) % 2 else "m"
            tables["spk2utt"][spk] = f"{tables['spk2utt'].get(spk, '')} {utt}".strip()
        (out / split).mkdir(parents=True, exist_ok=True)
        for name, rows in tables.items():
            _write_table(out / split / name, rows)
    (out / "resource").mkdir(parents=True, exist_ok=True)
    (out / "resource" / "scores.json").write_text(json.dumps(scores, indent=2, sort_keys=True), encoding="utf-8")
    (out / "resource" / "lexicon.txt").write_text("".join(f"{w}\t{p}\n" for w, p, _ in sorted(ALPHABET)),
                                                  encoding="utf-8")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pronounce.data.synthetic", description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="a new folder to write the corpus into")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train", type=int, default=240, help="train utterances")
    ap.add_argument("--test", type=int, default=60, help="test utterances")
    a = ap.parse_args(argv)
    try:
        write_synthetic_corpus(a.out, a.seed, a.train, a.test)
    except (FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"synthetic corpus: {a.train} train + {a.test} test utterances in {os.path.abspath(a.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
