import numpy as np
import pytest
import soundfile as sf

from pronounce.audio import SAMPLE_RATE, AudioError, decode_audio


def _write(path, data, rate):
    sf.write(path, data, rate, subtype="FLOAT" if np.isnan(data).any() else "PCM_16")
    return path


def test_other_rate_is_resampled_to_16k(tmp_path):
    t = np.arange(44_100) / 44_100
    out = decode_audio(_write(tmp_path / "a.wav", 0.5 * np.sin(2 * np.pi * 440 * t), 44_100))
    assert out.dtype == np.float32 and len(out) == SAMPLE_RATE
    # The tone survives resampling: its spectrum peaks at 440 Hz.
    assert abs(np.argmax(np.abs(np.fft.rfft(out))) * SAMPLE_RATE / len(out) - 440) < 2


def test_stereo_is_downmixed_to_the_channel_mean(tmp_path):
    left, right = np.full(1600, 0.5), np.full(1600, -0.25)
    out = decode_audio(_write(tmp_path / "s.wav", np.stack([left, right], axis=1), SAMPLE_RATE))
    assert out.shape == (1600,) and np.allclose(out, 0.125, atol=1e-4)


def test_bytes_and_path_decode_identically(tmp_path):
    p = _write(tmp_path / "a.wav", np.linspace(-0.5, 0.5, 8000), SAMPLE_RATE)
    assert np.array_equal(decode_audio(p), decode_audio(p.read_bytes()))


@pytest.mark.parametrize("content,reason", [
    (b"", "empty_audio"),
    (b"RIFF\x00\x00\x00\x00WAVEjunk", "unreadable_audio"),
    (b"not audio at all" * 10, "unreadable_audio"),
])
def test_broken_bytes_are_named(content, reason):
    with pytest.raises(AudioError) as e:
        decode_audio(content)
    assert e.value.reason == reason


def test_nan_samples_are_rejected(tmp_path):
    data = np.zeros(1600)
    data[10] = np.nan
    with pytest.raises(AudioError) as e:
        decode_audio(_write(tmp_path / "n.wav", data, SAMPLE_RATE))
    assert e.value.reason == "non_finite_audio"


def test_too_long_is_rejected_before_reading(tmp_path):
    with pytest.raises(AudioError) as e:
        decode_audio(_write(tmp_path / "l.wav", np.zeros(3 * SAMPLE_RATE), SAMPLE_RATE), max_seconds=2.0)
    assert e.value.reason == "too_long"


def test_truncated_wav_is_detected(tmp_path):
    whole = _write(tmp_path / "w.wav", np.zeros(SAMPLE_RATE), SAMPLE_RATE).read_bytes()
    with pytest.raises(AudioError) as e:
        decode_audio(whole[: len(whole) // 2])
    assert e.value.reason == "truncated_audio"
