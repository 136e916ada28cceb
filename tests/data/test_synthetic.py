"""The synthetic corpus of the learnability check: deterministic, read by decode like the real
release, and its labels are what its audio says (checked by listening to the clips with a few
lines of signal processing, independent of the generator's code)."""

import hashlib
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

from pronounce.core.artifacts import read_arrow
from pronounce.data.corpus import KALDI_FILES
from pronounce.data.decode import run_decode
from pronounce.data.phones import normalise_phone
from pronounce.data.synthetic import ALPHABET, LEVELS, MARK_HZ, write_synthetic_corpus


def digests(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def decoded(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_corpus(root / "corpus", seed=3, n_train=40, n_test=20)
    report = run_decode(str(root / "corpus"), root / "decoded", 30.0, 0.0, progress=False)
    return root, report, {s: read_arrow(root / "decoded" / f"{s}.arrow").to_pylist() for s in ("train", "test")}


def test_same_seed_same_bytes_other_seed_other_corpus(tmp_path):
    a = write_synthetic_corpus(tmp_path / "a", seed=7, n_train=6, n_test=3)
    b = write_synthetic_corpus(tmp_path / "b", seed=7, n_train=6, n_test=3)
    c = write_synthetic_corpus(tmp_path / "c", seed=8, n_train=6, n_test=3)
    assert digests(a) == digests(b)
    assert digests(a).keys() == digests(c).keys() and digests(a) != digests(c)


def test_release_layout_decodes_without_a_reject(decoded):
    root, report, tables = decoded
    for split in ("train", "test"):
        assert all((root / "corpus" / split / f).is_file() for f in KALDI_FILES)
    assert report["kept"] == {"train": 40, "test": 20} and report["rejected"] == 0
    assert {u["utt_id"] for u in tables["train"]}.isdisjoint(u["utt_id"] for u in tables["test"])
    assert {u["speaker"] for u in tables["train"]}.isdisjoint(u["speaker"] for u in tables["test"])


def test_scores_follow_the_annotations(decoded):
    for u in decoded[2]["train"] + decoded[2]["test"]:
        errors = sum(len(w["mispronunciations"]) for w in u["words"])
        assert u["accuracy"] == max(0, 10 - 2 * errors)
        assert u["total"] == round((u["accuracy"] + u["fluency"] + u["prosodic"]) / 3)
        assert len(u["pronounced_phones"]) == len(u["canonical_phones"]) - sum(
            m["pronounced_phone"] == "<DEL>" for w in u["words"] for m in w["mispronunciations"])
    said = [m["pronounced_phone"] for u in decoded[2]["train"] for w in u["words"] for m in w["mispronunciations"]]
    assert "<DEL>" in said and len(set(said)) > 2, "both substitutions and deletions occur"


# -- listening to the clips -------------------------------------------------------------

FRAME = 160  # 10 ms


def segments(audio):
    """(start, end) frames of the sounds: runs of frames well above the noise floor."""
    frames = audio[: len(audio) // FRAME * FRAME].reshape(-1, FRAME)
    rms = np.sqrt((frames ** 2).mean(axis=1))
    loud = rms > 0.1 * rms.max()  # the noise floor is 1-3% of the quietest level
    edges = np.flatnonzero(np.diff(np.r_[0, loud.astype(int), 0]))
    return list(zip(edges[::2], edges[1::2]))


def listen(audio):
    """(phones heard, error marks heard, long pauses, peak level) of one clip."""
    phones, marks = [], 0
    spans = segments(audio)
    for start, end in spans:
        x = audio[start * FRAME:end * FRAME]
        power = np.abs(np.fft.rfft(x)) ** 2
        freqs = np.fft.rfftfreq(len(x), 1 / 16000)
        marks += power[np.abs(freqs - MARK_HZ) < 50].sum() > 0.1 * power.sum()
        low, low_freqs = power[freqs < 5000], freqs[freqs < 5000]
        if low.sum() < 0.1 * power.sum():
            continue  # the mark alone: a deleted phone
        in_band = low[(low_freqs > 2000) & (low_freqs < 4000)].sum() > 0.5 * low.sum()
        if in_band and (low > 0.2 * low.max()).sum() > 20:
            phones.append("SH")  # band noise: energy spread over many bins, not one tone's peak
        else:
            peak = low_freqs[np.argmax(low)]
            phones.append(min((abs(peak - hz), normalise_phone(p)) for _, p, hz in ALPHABET if hz != "noise")[1])
    gaps = [(b[0] - a[1]) / 100 for a, b in zip(spans, spans[1:])]
    return phones, marks, sum(g > 0.4 for g in gaps), np.abs(audio).max()


def test_the_labels_are_what_the_audio_says(decoded):
    for u in decoded[2]["train"] + decoded[2]["test"]:
        audio = np.asarray(u["audio"], dtype=np.float32) / (32768 if np.abs(u["audio"]).max() > 1 else 1)
        phones, marks, pauses, peak = listen(audio)
        assert phones == u["pronounced_phones"], u["utt_id"]
        assert marks == (10 - u["accuracy"]) // 2, u["utt_id"]
        assert pauses == (9 - u["fluency"]) // 2, u["utt_id"]
        # the noise floor adds up to ~0.004 to the peak; the levels are 3x apart
        assert peak == pytest.approx(LEVELS[u["prosodic"]], rel=0.15), u["utt_id"]


def test_cli_writes_a_corpus_and_refuses_to_overwrite_one(tmp_path):
    cmd = [sys.executable, "-m", "pronounce.data.synthetic", str(tmp_path / "c"), "--train", "3", "--test", "2"]
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert first.returncode == 0, first.stderr
    assert len((tmp_path / "c/train/wav.scp").read_text().splitlines()) == 3
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert again.returncode == 1 and "already holds a corpus" in again.stderr
    with pytest.raises(FileExistsError, match="already holds a corpus"):
        write_synthetic_corpus(tmp_path / "c", seed=0, n_train=3, n_test=2)
    with pytest.raises(ValueError, match="n_train and n_test must be at least 1"):
        write_synthetic_corpus(tmp_path / "d", seed=0, n_train=0, n_test=2)
