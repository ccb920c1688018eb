"""Timing normalisation of frames: trim quiet edges, resample to one length (features.timing)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from audioar.config.recipes import FeatureConfig, RunConfig, apply_overrides
from audioar.errors import ConfigError
from audioar.features import STFT, SegmentSpectrum, featurizer_from_config
from audioar.features.extract import featurize_waveforms
from audioar.features.timing import (
    active_range,
    active_ranges,
    normalize_timing,
    resample_frames,
)

SR = 8000


def test_active_range_spans_first_to_last_loud_frame():
    level = torch.tensor([-90.0, -70.0, -5.0, -60.0, 0.0, -40.0, -95.0])
    assert active_range(level, 30.0) == (2, 5)  # the quiet frame inside is kept
    assert active_range(level, 45.0) == (2, 6)
    assert active_range(level, 1000.0) == (0, 7)
    assert active_range(torch.tensor([3.0]), 10.0) == (0, 1)


@settings(deadline=None, max_examples=30)
@given(time=st.integers(1, 30), count=st.integers(1, 40), seed=st.integers(0, 50))
def test_resample_matches_numpy_interp(time, count, seed):
    x = torch.from_numpy(np.random.default_rng(seed).normal(size=(time, 3)))
    out = resample_frames(x, count)
    assert out.shape == (count, 3)
    positions = np.linspace(0, time - 1, count)
    for b in range(3):
        np.testing.assert_allclose(out[:, b], np.interp(positions, np.arange(time), x[:, b]))
    if count > 1:  # the first and last frames are kept
        np.testing.assert_allclose(out[[0, -1]], x[[0, -1]])


def test_normalize_timing_equals_per_clip_reference():
    rng = np.random.default_rng(0)
    frames = torch.from_numpy(rng.normal(size=(3, 12, 4))).float()
    level = torch.from_numpy(rng.uniform(-80, 0, size=(3, 12))).float()
    counts = torch.tensor([12, 7, 1])
    out, lengths = normalize_timing(frames, level, counts, 20.0, 9)
    assert out.shape == (3, 9, 4) and lengths.tolist() == [9, 9, 9]
    for row, n in enumerate(counts.tolist()):
        start, stop = active_range(level[row, :n], 20.0)
        want = resample_frames(frames[row, start:stop], 9)
        torch.testing.assert_close(out[row], want)
    trimmed, lengths = normalize_timing(frames, level, counts, 20.0, None)
    for row, n in enumerate(counts.tolist()):  # trim alone: zero beyond each clip's frames
        start, stop = active_range(level[row, :n], 20.0)
        assert int(lengths[row]) == stop - start
        torch.testing.assert_close(trimmed[row, : stop - start], frames[row, start:stop])
        assert not trimmed[row, stop - start :].any()


def _burst(offset: float, seconds: float, total: float = 1.0) -> np.ndarray:
    """A 0.3 -> 3 kHz chirp of ``seconds`` starting at ``offset`` in ``total`` s of quiet."""
    t = np.arange(int(total * SR)) / SR
    wave = 1e-4 * np.random.default_rng(1).normal(size=t.size)
    on = (t >= offset) & (t < offset + seconds)
    local = t[on] - offset
    phase = 2 * np.pi * (300 * local + 0.5 * (2700 / seconds) * local**2)
    wave[on] += 0.5 * np.sin(phase) * np.hanning(on.sum()) ** 0.25
    return wave.astype(np.float32)


def test_stft_timing_removes_onset_and_tempo():
    stft = STFT(sample_rate=SR, n_fft=256, hop_length=64, n_mels=16, cmvn="mean")
    timed = STFT(
        sample_rate=SR, n_fft=256, hop_length=64, n_mels=16, cmvn="mean",
        trim_db=30.0, stretch_frames=24,
    )  # fmt: skip
    a, late, slow = _burst(0.1, 0.3), _burst(0.55, 0.3), _burst(0.1, 0.6)
    fa, flate, fslow = featurize_waveforms(timed, [a, late, slow])
    assert fa.shape == (24, 16) == timed.output_shape(12345)
    # Onset and duration no longer change the features much; without timing they do.
    assert (fa - flate).abs().mean() < 0.2 * (fa - fa.mean(0)).abs().mean()
    assert (fa - fslow).abs().mean() < 0.3 * (fa - fa.mean(0)).abs().mean()
    plain_a, plain_late = featurize_waveforms(stft, [a, late])
    assert (plain_a - plain_late).abs().mean() > 0.8 * (plain_a - plain_a.mean(0)).abs().mean()


def test_stft_timing_batched_equals_one_clip_at_a_time():
    timed = STFT(sample_rate=SR, n_fft=128, n_mels=8, trim_db=25.0, stretch_frames=10)
    clips = [_burst(0.2, 0.2, 0.5), _burst(0.0, 0.4, 0.9), _burst(0.1, 0.05, 0.3)]
    batched = featurize_waveforms(timed, clips)
    for clip, got in zip(clips, batched, strict=True):
        torch.testing.assert_close(got, timed(torch.from_numpy(clip)), atol=1e-4, rtol=1e-4)


def test_timing_settings_round_trip_and_checks():
    cfg = apply_overrides(
        RunConfig(), ["features.name=stft", "features.trim_db=30", "features.stretch_frames=20"]
    )
    featurizer = featurizer_from_config(cfg.features.featurizer_config())
    assert featurizer.config.trim_db == 30.0 and featurizer.feature_shape == (20, 257)
    assert "trim_db" not in STFT().to_config()  # off: earlier cache keys and configs unchanged
    flat = STFT(n_mels=8, stretch_frames=5, flatten=True)
    assert flat.feature_shape == (40,)
    with pytest.raises(ConfigError, match="trim_db needs stretch_frames"):
        STFT(trim_db=30.0)
    with pytest.raises(ConfigError, match="trim_db"):
        STFT(trim_db=-1.0, stretch_frames=4)
    with pytest.raises(ConfigError, match="stretch_frames is a stft setting"):
        FeatureConfig(name="segments", stretch_frames=10).featurizer_kwargs()
    with pytest.raises(ConfigError, match="trim_db is a stft / segments setting"):
        FeatureConfig(name="fft", trim_db=30.0).featurizer_kwargs()
    with pytest.raises(ConfigError, match="features.trim_db"):
        FeatureConfig(trim_db=0.0)


@settings(deadline=None, max_examples=40)
@given(
    counts=st.lists(st.integers(1, 12), min_size=1, max_size=5),
    top_db=st.floats(0.5, 90.0),
    seed=st.integers(0, 100),
)
def test_batched_active_ranges_equal_the_per_clip_reference(counts, top_db, seed):
    level = torch.from_numpy(np.random.default_rng(seed).uniform(-90, 0, size=(len(counts), 12)))
    level[:, 11] = 50.0  # louder padding must never count
    starts, stops = active_ranges(level, torch.tensor(counts), top_db)
    for row, n in enumerate(counts):
        assert (int(starts[row]), int(stops[row])) == active_range(level[row, :n], top_db)


def test_segments_trim_ignores_the_silence_around_a_word():
    seg = SegmentSpectrum(n_mels=16, hop_length=64, cmvn="mean")
    trimmed = SegmentSpectrum(n_mels=16, hop_length=64, cmvn="mean", trim_db=30.0)
    early, late = _burst(0.05, 0.3), _burst(0.6, 0.3)
    a, b = trimmed(torch.from_numpy(np.stack([early, late])))
    plain_a, plain_b = seg(torch.from_numpy(np.stack([early, late])))
    assert (a - b).abs().mean() < 0.25 * (plain_a - plain_b).abs().mean()
    # A clip that is all word is unchanged by trimming; padding never counts.
    word = _burst(0.0, 0.5, 0.5)
    torch.testing.assert_close(trimmed(torch.from_numpy(word)), seg(torch.from_numpy(word)))
    padded = np.concatenate([word, np.zeros(3000, np.float32)])
    lengths = torch.tensor([len(word), len(word)])
    both = trimmed(torch.from_numpy(np.stack([padded, padded])), lengths)
    torch.testing.assert_close(both[0], trimmed(torch.from_numpy(word)), atol=1e-4, rtol=1e-4)
    assert "trim_db" not in SegmentSpectrum().to_config()
    cfg = FeatureConfig(name="segments", trim_db=25.0).featurizer_config()
    assert featurizer_from_config(cfg).config.trim_db == 25.0
