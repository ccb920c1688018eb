"""audioar.data.io: loading clips, every bad-input case, scaling, mixing, resampling."""

import numpy as np
import pytest
import soundfile as sf

import audioar.errors
from audioar.data.io import (
    AUDIO_EXTENSIONS,
    AudioError,
    audio_info,
    load_audio,
    resample,
    resample_reference,
)
from audioar.errors import ConfigError


def tone(freq: float, sr: int, seconds: float = 0.5, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * sr / len(x))


def test_audio_error_is_the_shared_one():
    assert AudioError is audioar.errors.AudioError
    assert AUDIO_EXTENSIONS == (".wav", ".flac", ".ogg")


# --------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioError, match="file not found") as info:
        load_audio(path)
    assert info.value.path == str(path)
    with pytest.raises(AudioError, match="file not found"):
        audio_info(path)


def test_directory(tmp_path):
    with pytest.raises(AudioError, match="is a directory"):
        load_audio(tmp_path)


def test_text_file_named_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n")
    with pytest.raises(AudioError, match="not a readable audio file") as info:
        load_audio(path)
    assert str(path) in str(info.value)
    with pytest.raises(AudioError):
        audio_info(path)


def test_garbage_after_riff_header(tmp_path):
    path = tmp_path / "garbage.wav"
    rng = np.random.default_rng(0)
    path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + rng.bytes(200))
    with pytest.raises(AudioError, match="not a readable audio file"):
        load_audio(path)


def test_unsupported_encoding(tmp_path):
    # A WAV whose fmt chunk names an encoding libsndfile does not know (format tag 0x1234).
    fmt = (0x1234).to_bytes(2, "little") + (1).to_bytes(2, "little")
    fmt += (8000).to_bytes(4, "little") + (16000).to_bytes(4, "little")
    fmt += (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt
    body += b"data" + (8).to_bytes(4, "little") + bytes(8)
    path = tmp_path / "odd.wav"
    path.write_bytes(b"RIFF" + len(body).to_bytes(4, "little") + body)
    with pytest.raises(AudioError):
        load_audio(path)


def test_zero_length(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, np.float32), 8000)
    with pytest.raises(AudioError, match="no samples"):
        load_audio(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_wav(tmp_path, bad):
    x = tone(440, 8000)
    x[10] = bad
    path = tmp_path / "bad.wav"
    sf.write(path, x, 8000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN/inf"):
        load_audio(path)


def test_bad_sample_rate_argument(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, tone(440, 8000), 8000)
    for bad in (0, -8000, 8000.5, True):
        with pytest.raises(ConfigError):
            load_audio(path, sample_rate=bad)


# --------------------------------------------------------------------------- formats


def test_int16_scaling(tmp_path):
    path = tmp_path / "i16.wav"
    sf.write(path, np.array([0, 16384, -32768, 32767], np.int16), 8000, subtype="PCM_16")
    x, sr = load_audio(path)
    assert sr == 8000 and x.dtype == np.float32 and x.shape == (4,)
    np.testing.assert_allclose(x, [0.0, 0.5, -1.0, 32767 / 32768])


def test_int32_scaling(tmp_path):
    path = tmp_path / "i32.wav"
    values = np.array([0, 2**30, -(2**31), -(2**29)], np.int32)
    sf.write(path, values, 16000, subtype="PCM_32")
    x, sr = load_audio(path)
    assert sr == 16000 and x.dtype == np.float32
    np.testing.assert_allclose(x, [0.0, 0.5, -1.0, -0.25])


@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
def test_float_kept_as_stored(tmp_path, subtype):
    path = tmp_path / "f.wav"
    values = np.array([0.25, -0.75, 1.5], np.float64)  # float files may exceed [-1, 1]
    sf.write(path, values, 8000, subtype=subtype)
    x, _ = load_audio(path)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, values, rtol=1e-6)


def test_stereo_and_multichannel_mixed_to_mono(tmp_path):
    n = 100
    stereo = np.stack([np.full(n, 0.5), np.full(n, -0.25)], axis=1).astype(np.float32)
    sf.write(tmp_path / "st.wav", stereo, 8000, subtype="FLOAT")
    x, _ = load_audio(tmp_path / "st.wav")
    assert x.shape == (n,)
    np.testing.assert_allclose(x, 0.125)
    four = np.tile(np.array([0.4, 0.2, -0.2, 0.0], np.float32), (n, 1))
    sf.write(tmp_path / "four.wav", four, 8000, subtype="FLOAT")
    x, _ = load_audio(tmp_path / "four.wav")
    np.testing.assert_allclose(x, 0.1, rtol=1e-6)


def test_flac_and_ogg(tmp_path):
    x = tone(440, 8000)
    sf.write(tmp_path / "a.flac", x, 8000, subtype="PCM_16")
    y, sr = load_audio(tmp_path / "a.flac")
    assert sr == 8000 and y.dtype == np.float32
    np.testing.assert_allclose(y, x, atol=1 / 32768)
    sf.write(tmp_path / "a.ogg", x, 8000, format="OGG", subtype="VORBIS")
    z, sr = load_audio(tmp_path / "a.ogg")  # lossy: check length and pitch only
    assert sr == 8000 and z.dtype == np.float32
    assert abs(len(z) - len(x)) <= 8
    assert abs(peak_hz(z, 8000) - 440) < 5
    assert audio_info(tmp_path / "a.ogg").sample_rate == 8000


def test_audio_info(tmp_path):
    sf.write(tmp_path / "s.wav", np.zeros((1234, 2), np.float32), 22050)
    info = audio_info(tmp_path / "s.wav")
    assert (info.frames, info.sample_rate, info.channels) == (1234, 22050, 2)
    assert info.duration == pytest.approx(1234 / 22050)


# --------------------------------------------------------------------------- resampling


def test_same_rate_returns_file_samples(tmp_path):
    x = tone(440, 8000)
    sf.write(tmp_path / "a.wav", x, 8000, subtype="FLOAT")
    y, sr = load_audio(tmp_path / "a.wav", sample_rate=8000)
    assert sr == 8000
    np.testing.assert_array_equal(y, x)
    assert resample(x, 8000, 8000) is x


@pytest.mark.parametrize(("orig", "target"), [(8000, 16000), (16000, 8000), (8000, 22050)])
def test_resample_length_and_pitch(tmp_path, orig, target):
    x = tone(440, orig, seconds=1.0)
    sf.write(tmp_path / "a.wav", x, orig, subtype="FLOAT")
    y, sr = load_audio(tmp_path / "a.wav", sample_rate=target)
    assert sr == target and y.dtype == np.float32
    assert len(y) == int(np.ceil(len(x) * target / orig))
    assert abs(peak_hz(y, target) - 440) <= 1.0
    # Amplitude kept (away from the edges).
    mid = y[len(y) // 4 : 3 * len(y) // 4]
    assert np.max(np.abs(mid)) == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize(("orig", "target"), [(8000, 16000), (44100, 8000), (8000, 22050)])
def test_fast_resample_matches_librosa_reference(orig, target):
    x = np.random.default_rng(1).standard_normal(orig // 3).astype(np.float32)
    fast = resample(x, orig, target)
    ref = resample_reference(x, orig, target)
    assert fast.dtype == ref.dtype == np.float32
    assert fast.shape == ref.shape
    np.testing.assert_allclose(fast, ref, atol=1e-6)
