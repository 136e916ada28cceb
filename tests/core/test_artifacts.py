"""Artifact I/O: the background writer, the batch-at-a-time reader, 16-bit audio read back."""

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf
from conftest import BUNDLED

from pronounce.core.artifacts import ArrowWriter, iter_batches, read_arrow
from pronounce.data.audio import AudioStore

SCHEMA = pa.schema([("utt_id", pa.string()), ("audio", pa.list_(pa.int16()))])


def _rows(n):
    rng = np.random.default_rng(0)
    return [{"utt_id": f"u{i:04d}", "audio": rng.integers(-32768, 32768, int(rng.integers(1, 5000)), dtype=np.int16)}
            for i in range(n)]


def _write(path, rows, **kw):
    w = ArrowWriter(path, SCHEMA, batch_rows=7, **kw)
    for r in rows:
        w.write(r)
    w.close()
    return w.count


def test_background_writer_writes_the_same_bytes(tmp_path):
    rows = _rows(100)
    assert _write(tmp_path / "fg.arrow", rows) == _write(tmp_path / "bg.arrow", rows, background=True) == 100
    assert (tmp_path / "fg.arrow").read_bytes() == (tmp_path / "bg.arrow").read_bytes()
    assert read_arrow(tmp_path / "bg.arrow").column("utt_id").to_pylist() == [r["utt_id"] for r in rows]


def test_background_writer_failure_reaches_the_caller(tmp_path):
    class DiskFull:
        def write_batch(self, batch):
            raise OSError(28, "No space left on device")

        def close(self):
            pass

    w = ArrowWriter(tmp_path / "x.arrow", SCHEMA, batch_rows=1, background=True)
    w._writer = DiskFull()  # every write fails inside the writer thread
    with pytest.raises(OSError, match="No space left"):
        for r in _rows(10):
            w.write(r)
        w.close()


@pytest.mark.parametrize("columns", [None, ["utt_id"]])
def test_iter_batches_reads_what_read_arrow_reads(tmp_path, columns):
    _write(tmp_path / "a.arrow", _rows(200))
    whole = read_arrow(tmp_path / "a.arrow")
    kept = list(iter_batches(tmp_path / "a.arrow", columns))  # kept past their turn: still valid
    assert len(kept) == 29 and pa.Table.from_batches(kept).equals(whole.select(columns) if columns else whole)


def test_audio_store_reads_16_bit_clips_back_as_soundfile_floats(tmp_path):
    wav = BUNDLED / "WAVE/SPEAKER0001/000010011.WAV"
    pcm, _ = sf.read(wav, dtype="int16")
    _write(tmp_path / "a.arrow", [{"utt_id": "000010011", "audio": pcm}])
    clip = AudioStore(tmp_path / "a.arrow")[0]
    assert clip.dtype == np.float32 and np.array_equal(clip, sf.read(wav, dtype="float32")[0])


def test_atomic_write_text_replaces_whole_files_and_leaves_no_temporary(tmp_path):
    from pronounce.core.artifacts import atomic_write_text

    target = tmp_path / "report.md"
    atomic_write_text(target, "first ə\n")
    atomic_write_text(target, "second\n")
    assert target.read_bytes() == b"second\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]
    (tmp_path / "folder").mkdir()
    with pytest.raises(OSError, match="Is a directory|Directory not empty|Access is denied"):
        atomic_write_text(tmp_path / "folder", "x")  # the rename fails: nothing is left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "report.md"]
