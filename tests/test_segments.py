"""SegmentSpectrum: the batched featurizer against a plain per-clip reference."""

import librosa
import numpy as np
import pytest
import scipy.fft
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from audioar.errors import ConfigError
from audioar.features import SegmentSpectrum, featurizer_from_config
from audioar.features.segments import SEGMENT_LOG_FLOOR, segment_weights


def reference(wave: np.ndarray, sr=8000, n_fft=512, hop=128, n_mels=32, segments=4, norm=True):
    """One clip, numpy: frames inside the signal, mel bands, equal segments, level norm."""
    if len(wave) < n_fft:
        wave = np.pad(wave, (0, n_fft - len(wave)))
    count = 1 + (len(wave) - n_fft) // hop
    window = np.hanning(n_fft + 1)[:-1]  # periodic Hann
    frames = np.stack([wave[k * hop : k * hop + n_fft] * window for k in range(count)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    mel = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)  # Slaney, as the featurizer
    bands = power @ mel.T  # (frames, mels)
    out = []
    for s in range(segments):
        start = min(s * count // segments, count - 1)
        end = max((s + 1) * count // segments, start + 1)
        out.append(bands[start:end].mean(axis=0))
    out = np.stack(out)
    if norm:
        out = out / max(out.sum(axis=1).mean(), 1e-12)
    return np.log(out + SEGMENT_LOG_FLOOR).reshape(-1)


def chirp(n, sr=8000, f0=200.0, f1=3000.0, seed=0):
    t = np.arange(n) / sr
    rng = np.random.default_rng(seed)
    k = (f1 - f0) / max(t[-1], 1e-3)
    return (
        0.5 * np.sin(2 * np.pi * (f0 * t + 0.5 * k * t * t)) + 0.01 * rng.standard_normal(n)
    ).astype(np.float32)


@pytest.mark.parametrize("n", [300, 512, 1500, 4000, 9000])
def test_matches_the_reference(n):
    wave = chirp(n)
    ours = SegmentSpectrum()(torch.from_numpy(wave)).numpy()
    np.testing.assert_allclose(ours, reference(wave), rtol=1e-4, atol=1e-3)


def test_padded_batch_equals_each_clip_alone():
    waves = [chirp(n, seed=n) for n in (700, 2600, 4000)]
    batch = torch.zeros(3, 4000)
    for row, w in enumerate(waves):
        batch[row, : len(w)] = torch.from_numpy(w)
    seg = SegmentSpectrum()
    together = seg(batch, lengths=torch.tensor([len(w) for w in waves]))
    for row, w in enumerate(waves):
        torch.testing.assert_close(together[row], seg(torch.from_numpy(w)), rtol=1e-4, atol=1e-4)


def test_level_normalisation_removes_loudness_and_order_matters():
    wave = torch.from_numpy(chirp(4000))
    seg = SegmentSpectrum()
    torch.testing.assert_close(seg(wave), seg(0.1 * wave), rtol=1e-4, atol=1e-3)
    assert not torch.allclose(seg(wave), seg(wave.flip(0)), atol=0.5)  # time order is kept
    raw = SegmentSpectrum(normalize=False)
    assert (raw(wave) - raw(0.1 * wave)).mean() > 4.0  # log(100) ≈ 4.6 without it


@settings(deadline=None, max_examples=40)
@given(counts=st.lists(st.integers(1, 60), min_size=1, max_size=5), segments=st.integers(1, 8))
def test_segment_weights_cover_every_used_frame_and_no_padding(counts, segments):
    frames = max(counts) + 3
    w = segment_weights(torch.tensor(counts), frames, segments)
    assert w.shape == (len(counts), frames, segments)
    torch.testing.assert_close(w.sum(dim=1), torch.ones(len(counts), segments))
    for row, c in enumerate(counts):
        assert (w[row, c:] == 0).all()  # padding frames never count
        assert (w[row, :c].sum(dim=1) > 0).all()  # every real frame is used


def test_config_round_trip_and_shape():
    seg = SegmentSpectrum(n_mels=16, segments=3, hop_length=64, seconds=0.5)
    again = featurizer_from_config(seg.to_config())
    assert again.to_config() == seg.to_config() and again.feature_shape == (48,)
    wave = torch.randn(2, 6000)
    torch.testing.assert_close(again(wave), seg(wave))
    assert seg(wave).shape == (2, 48)


def test_mfcc_is_the_dct_of_the_log_mel_segments_and_cmvn_centres_it():
    wave = torch.from_numpy(chirp(4000))
    bands = SegmentSpectrum(n_mels=20)(wave).numpy().reshape(4, 20)
    mfcc = SegmentSpectrum(n_mels=20, n_mfcc=8)
    assert mfcc.feature_shape == (32,)
    want = scipy.fft.dct(bands, type=2, norm="ortho", axis=-1)[:, :8]
    np.testing.assert_allclose(mfcc(wave).numpy().reshape(4, 8), want, rtol=1e-4, atol=1e-4)
    centred = SegmentSpectrum(n_mels=20, n_mfcc=8, cmvn="mean")(wave).reshape(4, 8)
    torch.testing.assert_close(centred.mean(0), torch.zeros(8), atol=1e-5, rtol=0)
    assert "n_mfcc" not in SegmentSpectrum().to_config()
    with pytest.raises(ConfigError, match="n_mfcc"):
        SegmentSpectrum(n_mels=8, n_mfcc=9)
