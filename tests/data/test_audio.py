import struct

import numpy as np
import pytest
import soundfile as sf

from pronounce.data.audio import SAMPLE_RATE, AudioError, decode_audio, to_float, to_pcm16


def _write(path, data, rate):
    sf.write(path, data, rate, subtype="FLOAT" if np.isnan(data).any() else "PCM_16")
    return path


def test_other_rate_is_resampled_to_16k(tmp_path):
    t = np.arange(44_100) / 44_100
    out, clipped = decode_audio(_write(tmp_path / "a.wav", 0.5 * np.sin(2 * np.pi * 440 * t), 44_100))
    assert out.dtype == np.int16 and len(out) == SAMPLE_RATE and clipped == 0
    # The tone survives resampling: its spectrum peaks at 440 Hz.
    assert abs(np.argmax(np.abs(np.fft.rfft(out))) * SAMPLE_RATE / len(out) - 440) < 2


@pytest.mark.parametrize("rate", [11_025, 22_050, 48_000])
def test_resampling_is_soxr_hq_at_its_own_length(tmp_path, rate):
    # librosa.resample(fix=False) gives soxr HQ's samples and length exactly (the data hashes rest on
    # it); librosa's default fix=True would pad to ceil(n * 16000 / rate), one zero more at these rates.
    import soxr

    x = np.random.default_rng(1).uniform(-0.5, 0.5, 3 * rate + 7).astype(np.float32)
    p = tmp_path / "r.wav"
    sf.write(p, x, rate, subtype="FLOAT")
    expected = soxr.resample(x, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    assert np.array_equal(decode_audio(p).samples, to_pcm16(expected).samples)
    assert len(expected) < int(np.ceil(len(x) * SAMPLE_RATE / rate))


def test_stereo_is_downmixed_to_the_channel_mean(tmp_path):
    left, right = np.full(1600, 0.5), np.full(1600, -0.25)
    out = decode_audio(_write(tmp_path / "s.wav", np.stack([left, right], axis=1), SAMPLE_RATE)).samples
    assert out.shape == (1600,) and np.allclose(to_float(out), 0.125, atol=1e-4)


def test_bytes_and_path_decode_identically(tmp_path):
    p = _write(tmp_path / "a.wav", np.linspace(-0.5, 0.5, 8000), SAMPLE_RATE)
    assert np.array_equal(decode_audio(p).samples, decode_audio(p.read_bytes()).samples)


def test_16_bit_16k_mono_is_kept_as_is_and_reads_back_as_soundfile_reads_it(tmp_path):
    rng = np.random.default_rng(0)
    pcm = rng.integers(-32768, 32768, 4000, dtype=np.int16)
    p = tmp_path / "p.wav"
    sf.write(p, pcm, SAMPLE_RATE, subtype="PCM_16")
    out, clipped = decode_audio(p)
    assert out.dtype == np.int16 and np.array_equal(out, pcm) and clipped == 0
    expected, _ = sf.read(p, dtype="float32")
    assert to_float(out).dtype == np.float32 and np.array_equal(to_float(out), expected)


def test_rounding_to_16_bits_clips_and_counts_beyond_full_scale(tmp_path):
    out, clipped = to_pcm16(np.array([0.0, 0.5, -1.0, 1.0, 1.5, -2.0, 1 / 32768], dtype=np.float32))
    assert out.tolist() == [0, 16384, -32768, 32767, 32767, -32768, 1] and clipped == 2
    # A float WAV louder than full scale: kept, with its clipped samples counted.
    p = tmp_path / "loud.wav"
    sf.write(p, np.array([0.25, 1.25, -1.5, 0.0], dtype=np.float32), SAMPLE_RATE, subtype="FLOAT")
    out, clipped = decode_audio(p)
    assert out.tolist() == [8192, 32767, -32768, 0] and clipped == 2


@pytest.mark.parametrize("content,reason", [
    (b"", "empty_audio"),
    (b"RIFF\x00\x00\x00\x00WAVEjunk", "unreadable_audio"),
    (b"not audio at all" * 10, "unreadable_audio"),
])
def test_broken_bytes_are_named(content, reason):
    with pytest.raises(AudioError, match=rf"^{reason}: ") as e:
        decode_audio(content)
    assert e.value.reason == reason


def test_nan_samples_are_rejected(tmp_path):
    data = np.zeros(1600)
    data[10] = np.nan
    with pytest.raises(AudioError, match=r"^non_finite_audio: 1 NaN/inf samples$") as e:
        decode_audio(_write(tmp_path / "n.wav", data, SAMPLE_RATE))
    assert e.value.reason == "non_finite_audio"


def test_too_long_is_rejected_before_reading(tmp_path):
    with pytest.raises(AudioError, match=r"^too_long: 3\.00 s > data\.max_seconds=2\.0$") as e:
        decode_audio(_write(tmp_path / "l.wav", np.zeros(3 * SAMPLE_RATE), SAMPLE_RATE), max_seconds=2.0)
    assert e.value.reason == "too_long"


def test_truncated_wav_is_detected(tmp_path):
    whole = _write(tmp_path / "w.wav", np.zeros(SAMPLE_RATE), SAMPLE_RATE).read_bytes()
    with pytest.raises(AudioError, match=r"^truncated_audio: data chunk declares \d+ bytes, file has \d+$") as e:
        decode_audio(whole[: len(whole) // 2])
    assert e.value.reason == "truncated_audio"


def _chunk(tag: bytes, body: bytes) -> bytes:
    return tag + len(body).to_bytes(4, "little") + body + b"\0" * (len(body) & 1)


def _wav(fmt: bytes, data: bytes, extra: bytes = b"") -> bytes:
    body = b"WAVE" + _chunk(b"fmt ", fmt) + _chunk(b"data", data) + extra
    return b"RIFF" + len(body).to_bytes(4, "little") + body


PCM16_FMT = struct.pack("<HHIIHH", 1, 1, SAMPLE_RATE, 2 * SAMPLE_RATE, 2, 16)


def test_the_corpus_format_is_read_from_the_data_chunk_as_soundfile_reads_it(tmp_path):
    """The bundled clips and odd layouts (a chunk after the data, an odd data length, a LIST chunk
    before it): the samples soundfile returns, bit for bit, read from the data chunk itself."""
    from conftest import BUNDLED

    from pronounce.data.audio import riff_layout

    clips = sorted(BUNDLED.glob("WAVE/*/*.WAV"))
    assert len(clips) == 107
    pcm = np.random.default_rng(3).integers(-32768, 32768, 999, dtype=np.int16).tobytes()
    odd = [_wav(PCM16_FMT, pcm, _chunk(b"LIST", b"INFOxxxx")), _wav(PCM16_FMT, pcm + b"\x01"),
           b"RIFF\0\0\0\0WAVE" + _chunk(b"LIST", b"a" * 37) + _wav(PCM16_FMT, pcm)[12:]]
    for i, content in enumerate(odd):
        (tmp_path / f"odd{i}.wav").write_bytes(content)
    for path in clips + sorted(tmp_path.glob("odd*.wav")):
        content = path.read_bytes()
        assert riff_layout(content[:4096], len(content)).pcm16 is not None, path  # the fast path
        expected = sf.read(path, dtype="int16")[0]
        for source in (path, content):
            got = decode_audio(source).samples
            assert got.dtype == np.int16 and np.array_equal(got, expected), path


def test_other_layouts_of_16k_mono_16_bit_go_through_soundfile(tmp_path):
    """WAVE_FORMAT_EXTENSIBLE, or a header that is not the corpus's, is left to soundfile: same samples."""
    from pronounce.data.audio import riff_layout

    pcm = np.arange(-500, 500, dtype=np.int16)
    p = tmp_path / "x.wav"
    sf.write(p, pcm, SAMPLE_RATE, subtype="PCM_16", format="WAVEX")
    content = p.read_bytes()
    assert riff_layout(content[:4096], len(content)).pcm16 is None
    assert np.array_equal(decode_audio(p).samples, pcm)
    eight_k = _wav(struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16), pcm.tobytes())
    assert riff_layout(eight_k, len(eight_k)).pcm16 is None
    assert len(decode_audio(eight_k).samples) == 2 * len(pcm)  # resampled to 16 kHz, not read as is


def test_an_empty_data_chunk_is_empty_audio():
    with pytest.raises(AudioError, match=r"^empty_audio: no samples$"):
        decode_audio(_wav(PCM16_FMT, b""))
