"""Audio decoding: any file soundfile reads -> 16 kHz mono 16-bit PCM, validated.

Why 16-bit integers: speechocean762 is 16 kHz 16-bit PCM, so its own samples are stored as they
are (lossless, and half the bytes of float32: writing float32 was two thirds of decode's time at
corpus scale). Readers get float32 back as `pcm / 32768`, bit-identical to what soundfile
returns for the file. Other sources (another rate, stereo, float or 24-bit files) are converted
in float32 and rounded to 16 bits, which clips any sample beyond full scale: decode counts them.

soundfile (libsndfile) decodes, but for the corpus's own format, read straight from the WAV's
data chunk (decode_audio); `librosa.resample` resamples with its default backend, soxr HQ.
Neither needs FFmpeg or torchcodec, so the Hugging Face form of the corpus is read as raw
bytes (`Audio(decode=False)`) and decoded here, the same way as the release layout's files.
"""

import io
import os
import struct
from typing import NamedTuple

import numpy as np
import soundfile as sf

from ..core.artifacts import read_arrow

SAMPLE_RATE = 16_000
PCM_SCALE = np.float32(1 / 32768)  # a power of two: int16 -> float32 and back is exact


class Decoded(NamedTuple):
    samples: np.ndarray  # int16, 16 kHz mono
    clipped: int  # samples that were beyond full scale before rounding to 16 bits


def to_float(pcm: np.ndarray) -> np.ndarray:
    """16-bit PCM -> float32 in [-1, 1), the values soundfile reads from a 16-bit file."""
    return pcm.astype(np.float32) * PCM_SCALE


def to_pcm16(x: np.ndarray) -> Decoded:
    """float32 in [-1, 1] -> int16, rounding to nearest and clipping (and counting) the rest."""
    scaled = np.rint(x * np.float32(32768))
    # +1.0 itself becomes 32767 (one step short, as in every float -> 16-bit converter): not counted.
    clipped = int(np.count_nonzero((scaled > 32768) | (scaled < -32768)))
    return Decoded(np.clip(scaled, -32768, 32767).astype(np.int16), clipped)


class AudioError(ValueError):
    """A clip that cannot be used; `reason` is the reject code recorded in the report."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# The corpus's own format, as a WAV's `fmt ` chunk spells it: PCM (tag 1), mono, 16 kHz, 32,000
# bytes/s, 2-byte frames, 16 bits. Such a file's samples are its data chunk's bytes, little-endian.
_PCM16_FMT = (1, 1, SAMPLE_RATE, 2 * SAMPLE_RATE, 2, 16)


class RiffLayout(NamedTuple):
    truncated: str | None  # what is missing, when the data chunk is cut off
    pcm16: tuple[int, int] | None  # (offset, bytes) of the data chunk of a _PCM16_FMT file


def riff_layout(head: bytes, size: int) -> RiffLayout:
    """The RIFF chunks of a WAV's first bytes (`head`; `size` the file's length): whether its data
    chunk is cut off (libsndfile silently shortens such a file), and, for the corpus's own format,
    where the samples lie. Anything else (no RIFF, another format, chunks past `head`) is None."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return RiffLayout(None, None)
    pos, fmt = 12, None
    while pos + 8 <= len(head):
        chunk, length = head[pos:pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        if chunk == b"fmt " and length >= 16 and pos + 24 <= len(head):
            fmt = struct.unpack_from("<HHIIHH", head, pos + 8)
        elif chunk == b"data":
            have = size - (pos + 8)
            if have < length:
                return RiffLayout(f"data chunk declares {length} bytes, file has {have}", None)
            return RiffLayout(None, (pos + 8, length) if fmt == _PCM16_FMT else None)
        pos += 8 + length + (length & 1)
    return RiffLayout(None, None)


def wav_truncation(head: bytes, size: int) -> str | None:
    """libsndfile silently shortens a WAV whose data chunk is cut off; the RIFF header tells.
    `head` is the file's first bytes, `size` its length. Returns a detail, or None if whole."""
    return riff_layout(head, size).truncated


def _too_long(frames: int, rate: int, max_seconds: float | None) -> None:
    if max_seconds is not None and frames > max_seconds * rate:
        raise AudioError("too_long", f"{frames / rate:.2f} s > data.max_seconds={max_seconds}")


def _checked_layout(head: bytes, size: int, max_seconds: float | None) -> RiffLayout:
    """riff_layout, after what every source is checked for first: a zero-byte file and, for the
    corpus's own format, its length against max_seconds (before a huge file's samples are read)."""
    if size == 0:
        raise AudioError("empty_audio", "zero-byte file")
    layout = riff_layout(head, size)
    if layout.pcm16:
        _too_long(layout.pcm16[1] // 2, SAMPLE_RATE, max_seconds)
    return layout


def decode_audio(source, max_seconds: float | None = None) -> Decoded:
    """Read a path or raw bytes into 16 kHz mono 16-bit samples, or raise AudioError.

    The corpus's own format (16 kHz mono 16-bit PCM WAV, its `fmt ` chunk exactly that) is read
    straight from the data chunk: its samples are those bytes, as soundfile returns them (tested
    bit for bit), at a third of soundfile's cost per file (0.13 s against 0.35 s of CPU for
    5,000 clips: decode's largest share). Every other source goes through soundfile."""
    if isinstance(source, (bytes, bytearray)):
        layout = _checked_layout(bytes(source[:4096]), len(source), max_seconds)
        if layout.pcm16:
            offset, length = layout.pcm16
            return _pcm16(bytes(source[offset:offset + length]))
    else:
        try:
            with open(source, "rb") as f:
                layout = _checked_layout(f.read(4096), os.fstat(f.fileno()).st_size, max_seconds)
                if layout.pcm16:
                    offset, length = layout.pcm16
                    f.seek(offset)
                    return _pcm16(f.read(length))
        except OSError as e:
            raise AudioError("unreadable_audio", str(e)) from None
    if layout.truncated:
        raise AudioError("truncated_audio", layout.truncated)
    try:
        with sf.SoundFile(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source) as f:
            rate = f.samplerate
            _too_long(f.frames, rate, max_seconds)  # before reading a huge file into memory
            if rate == SAMPLE_RATE and f.channels == 1 and f.subtype == "PCM_16":
                # The corpus's format under another header (e.g. WAVE_FORMAT_EXTENSIBLE): as it is.
                pcm = f.read(dtype="int16")
                if pcm.size == 0:
                    raise AudioError("empty_audio", "no samples")
                return Decoded(pcm, 0)
            samples = f.read(dtype="float32", always_2d=True)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioError("unreadable_audio", str(e).strip() or type(e).__name__) from None
    if samples.size == 0:
        raise AudioError("empty_audio", "no samples")
    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    if not np.isfinite(mono).all():
        raise AudioError("non_finite_audio", f"{int((~np.isfinite(mono)).sum())} NaN/inf samples")
    if rate != SAMPLE_RATE:
        # Imported here: librosa takes ~1.2 s to import (scipy.signal) and every stage imports this
        # module, while only sources at another rate need it (the corpus is 16 kHz).
        import librosa

        # fix=False keeps soxr's own output length (rounded), as calling soxr directly gave; librosa's
        # default pads to ceil(n * ratio), one zero sample more at some rates.
        mono = librosa.resample(mono, orig_sr=rate, target_sr=SAMPLE_RATE, res_type="soxr_hq", fix=False)
    return to_pcm16(mono)


def _pcm16(data: bytes) -> Decoded:
    """A PCM16 data chunk's samples (an odd last byte, half a frame, is dropped as libsndfile does)."""
    pcm = np.frombuffer(data, dtype="<i2", count=len(data) // 2).astype(np.int16, copy=False)
    if pcm.size == 0:
        raise AudioError("empty_audio", "no samples")
    return Decoded(pcm, 0)


class AudioStore:
    """Clips of one decoded split by row as float32, from the memory-mapped Arrow file
    (16-bit PCM is scaled on access, exactly as soundfile scales it; float32 is zero-copy)."""

    def __init__(self, path):
        audio = read_arrow(path).column("audio")
        self._chunks = audio.chunks
        self._starts = []
        start = 0
        for chunk in self._chunks:
            self._starts.append(start)
            start += len(chunk)
        self.num_rows = start

    def __len__(self) -> int:
        return self.num_rows

    def __getitem__(self, row: int):
        import bisect

        if not 0 <= row < self.num_rows:
            raise IndexError(f"audio row {row} out of range (0..{self.num_rows - 1})")
        c = bisect.bisect_right(self._starts, row) - 1
        clip = self._chunks[c][row - self._starts[c]].values.to_numpy(zero_copy_only=True)
        return to_float(clip) if clip.dtype == np.int16 else clip
