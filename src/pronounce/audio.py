"""Audio decoding: any file soundfile reads -> 16 kHz mono float32, validated.

soundfile (libsndfile) decodes; soxr (librosa's default high-quality backend) resamples.
Neither needs FFmpeg or torchcodec, so the Hugging Face form of the corpus is read as raw
bytes (`Audio(decode=False)`) and decoded here, the same way as the release layout's files.
"""

import io
import os
import struct

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16_000


class AudioError(ValueError):
    """A clip that cannot be used; `reason` is the reject code recorded in the report."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def wav_truncation(head: bytes, size: int) -> str | None:
    """libsndfile silently shortens a WAV whose data chunk is cut off; the RIFF header tells.
    `head` is the file's first bytes, `size` its length. Returns a detail, or None if whole."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(head):
        chunk, length = head[pos:pos + 4], struct.unpack("<I", head[pos + 4:pos + 8])[0]
        if chunk == b"data":
            have = size - (pos + 8)
            return f"data chunk declares {length} bytes, file has {have}" if have < length else None
        pos += 8 + length + (length & 1)
    return None


def decode_audio(source, max_seconds: float | None = None) -> np.ndarray:
    """Read a path or raw bytes into a 16 kHz mono float32 array, or raise AudioError."""
    if isinstance(source, (bytes, bytearray)):
        head, size = bytes(source[:4096]), len(source)
    else:
        try:
            with open(source, "rb") as f:
                head, size = f.read(4096), os.fstat(f.fileno()).st_size
        except OSError as e:
            raise AudioError("unreadable_audio", str(e)) from None
    if size == 0:
        raise AudioError("empty_audio", "zero-byte file")
    truncated = wav_truncation(head, size)
    if truncated:
        raise AudioError("truncated_audio", truncated)
    try:
        with sf.SoundFile(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source) as f:
            rate = f.samplerate
            # Reject before reading a huge file into memory.
            if max_seconds is not None and f.frames > max_seconds * rate:
                raise AudioError("too_long", f"{f.frames / rate:.2f} s > data.max_seconds={max_seconds}")
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
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ").astype(np.float32, copy=False)
    return np.ascontiguousarray(mono, dtype=np.float32)
