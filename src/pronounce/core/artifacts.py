"""Writing artifacts so a killed stage never leaves something that looks finished,
and reading the Arrow files later stages share without copying them into memory (their audio
column through pronounce.data.audio.AudioStore)."""

import contextlib
import hashlib
import json
import mmap
import os
import queue
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa

# The corpus's splits: one Arrow file each in data/decoded/ and data/materialized/.
SPLITS = ("train", "test")


@contextlib.contextmanager
def atomic_dir(target):
    """Yield a temporary sibling folder; on success it replaces `target` in one rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; artifacts are ordinary folders
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old)
        else:
            tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def file_digest(paths) -> str:
    """sha256 over files' names and contents, streamed."""
    h = hashlib.sha256()
    for path in paths:
        path = Path(path)
        h.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


def dir_digest(folder) -> str:
    """sha256 over every file under `folder` (relative names and contents), in sorted order."""
    folder = Path(folder)
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode() + b"\0")
        h.update(file_digest([path]).encode())
    return h.hexdigest()


def atomic_write_text(path, text: str) -> None:
    """Write `text` (UTF-8) to a hidden sibling, then rename it over `path`: a reader (or a
    killed writer) never sees half a file. The sibling is named per process, so two writers
    never share one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path, obj) -> None:
    """Stable JSON (sorted keys, fixed indent, trailing newline): same object, same bytes."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


class ArrowWriter:
    """Streams record batches into an Arrow IPC stream file (the format `datasets` memory-maps),
    so peak memory is one batch whatever the corpus size.

    `background=True` hands finished batches to one writer thread (in order, at most one
    waiting): the write itself (the kernel's copy into the page cache: most of decode's time
    on this project's VMs) overlaps with the caller producing the next batch. Same bytes."""

    def __init__(self, path, schema: pa.Schema, batch_rows: int = 32, background: bool = False):
        self.schema, self.batch_rows, self.rows = schema, batch_rows, []
        self.count = 0
        self._file = pa.OSFile(str(path), "wb")
        # Arrow's IPC writer writes each buffer of a batch separately (~70 a batch of decode's
        # nested labels); buffered, a batch reaches the kernel in few large writes.
        self._sink = pa.BufferedOutputStream(self._file, buffer_size=1 << 20)
        self._writer = pa.ipc.new_stream(self._sink, schema)
        self._queue, self._thread, self._error = None, None, None
        if background:
            self._queue = queue.Queue(maxsize=1)
            self._thread = threading.Thread(target=self._drain, name=f"write {Path(path).name}", daemon=True)
            self._thread.start()

    def write(self, row: dict) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.batch_rows:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            arrays = [_column([r[f.name] for r in self.rows], f.type) for f in self.schema]
            batch = pa.RecordBatch.from_arrays(arrays, schema=self.schema)
            if self._queue is None:
                self._writer.write_batch(batch)
            else:
                self._raise_if_failed()
                self._queue.put(batch)
            self.count += len(self.rows)
            self.rows = []

    def close(self) -> None:
        self.flush()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._raise_if_failed()
        self._writer.close()
        self._sink.close()  # flushes, then closes the file

    def _drain(self) -> None:
        while (batch := self._queue.get()) is not None:
            if self._error is None:  # after a failure, keep taking batches so the caller never blocks
                try:
                    self._writer.write_batch(batch)  # releases the GIL while it writes
                except BaseException as e:  # noqa: BLE001 (re-raised in the caller's thread)
                    self._error = e

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error


def _column(values: list, type_: pa.DataType) -> pa.Array:
    """numpy clips become one list array without a Python-level pass over their samples
    (from_pylist converted them element by element: half of decode's time at corpus scale)."""
    if pa.types.is_list(type_) and values and all(isinstance(v, np.ndarray) for v in values):
        offsets = np.zeros(len(values) + 1, dtype=np.int32)
        np.cumsum([len(v) for v in values], out=offsets[1:])
        # Copied once into a buffer of Arrow's own pool (mimalloc), not numpy's: these buffers are
        # freed on the writer thread, which fragmented glibc's arenas (decode's heap grew with the
        # corpus). A pa.array per clip and then concat_arrays copied every sample twice.
        n, dtype = int(offsets[-1]), np.dtype(type_.value_type.to_pandas_dtype())
        buffer = pa.allocate_buffer(n * dtype.itemsize)
        np.concatenate(values, out=np.frombuffer(buffer, dtype=dtype))
        flat = pa.Array.from_buffers(type_.value_type, n, [None, buffer])
        return pa.ListArray.from_arrays(pa.array(offsets), flat, type=type_)
    return pa.array(values, type=type_)


def read_arrow(path) -> pa.Table:
    """Memory-mapped, zero-copy: the table's buffers stay on disk until touched."""
    return pa.ipc.open_stream(pa.memory_map(str(path), "r")).read_all()


def iter_batches(path, columns: list[str] | None = None):
    """The file's record batches one at a time, zero-copy from a memory map, handing each
    batch's pages back to the kernel once the next one is asked for: a whole-file scan keeps
    one batch resident (RSS counts every mapped page touched, so read_arrow's table would hold
    all of them to the end). Use each batch before asking for the next."""
    with open(path, "rb") as f:
        # Not closed explicitly: batches a caller kept still point into the map; it is
        # unmapped when the last of them goes.
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    source = pa.BufferReader(pa.py_buffer(mm))
    reader = pa.ipc.open_stream(source)
    done = 0  # bytes already handed back (page-aligned)
    for batch in reader:
        yield batch.select(columns) if columns else batch
        end = source.tell() // mmap.PAGESIZE * mmap.PAGESIZE  # pages wholly behind the reader
        if end > done and hasattr(mm, "madvise"):  # (not on Windows: pages then stay mapped)
            # A read-only file mapping: pages dropped here are read again from the file if
            # touched later, so a batch kept by the caller stays valid.
            mm.madvise(mmap.MADV_DONTNEED, done, end - done)
            done = end
