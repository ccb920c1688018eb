"""Per-clip normalisation of STFT frames (``cmvn``): statistics, padding, invariances, config."""

import json

import numpy as np
import pytest
import scipy.fft
import scipy.signal
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from audioar.config.recipes import FeatureConfig, RunConfig, apply_overrides, load_recipe
from audioar.errors import ConfigError
from audioar.features import STFT, featurize_waveforms, featurizer_from_config
from audioar.features.stft import MIN_CLIP_STD, clip_normalize

SR = 8000


def _noise(n: int, seed: int = 0) -> np.ndarray:
    return (0.2 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def _plain_normalize(frames: np.ndarray, mode: str) -> np.ndarray:
    """Reference: numpy statistics of one unpadded clip ``(time, bins)``."""
    out = frames - frames.mean(axis=0, keepdims=True)
    if mode == "meanvar":
        out = out / np.maximum(out.std(axis=0, keepdims=True), MIN_CLIP_STD)
    return out


@settings(deadline=None, max_examples=20)
@given(
    lengths=st.lists(st.integers(1, 9), min_size=1, max_size=4),
    mode=st.sampled_from(["mean", "meanvar"]),
    seed=st.integers(0, 1000),
)
def test_padded_batch_matches_each_clip_alone(lengths, mode, seed):
    rng = np.random.default_rng(seed)
    clips = [rng.normal(3.0, 2.0, (n, 4)) for n in lengths]
    # Junk (not zeros) in the padding: it must not leak into the statistics.
    batch = np.full((len(clips), max(lengths), 4), 99.0)
    for i, clip in enumerate(clips):
        batch[i, : len(clip)] = clip
    padded = torch.tensor(batch)
    got = clip_normalize(padded, mode, torch.tensor(lengths))
    for i, clip in enumerate(clips):
        n = len(clip)
        np.testing.assert_allclose(got[i, :n].numpy(), _plain_normalize(clip, mode), atol=1e-9)
        assert torch.all(got[i, n:] == 0)


def test_statistics_and_none_passthrough():
    x = torch.randn(3, 11, 5, dtype=torch.float64) * 4 + 2
    assert clip_normalize(x, "none") is x
    mean = clip_normalize(x, "mean")
    assert torch.allclose(mean.mean(dim=1), torch.zeros(3, 5, dtype=x.dtype), atol=1e-12)
    assert torch.allclose(mean, x - x.mean(dim=1, keepdim=True))
    meanvar = clip_normalize(x, "meanvar")
    assert torch.allclose(meanvar.std(dim=1, unbiased=False), torch.ones(3, 5, dtype=x.dtype))
    constant = clip_normalize(torch.full((1, 6, 2), 7.0), "meanvar")  # zero spread: floored
    assert torch.equal(constant, torch.zeros(1, 6, 2))
    with pytest.raises(ConfigError, match="cmvn"):
        clip_normalize(x, "zscore")


@pytest.mark.parametrize("mode", ["mean", "meanvar"])
def test_gain_and_fixed_colouring_cancel(mode):
    """A gain is an offset of every log band; a fixed filter is (nearly) one per band."""
    stft = STFT(sample_rate=SR, n_fft=256, hop_length=64, n_mels=16, cmvn=mode)
    raw = STFT(sample_rate=SR, n_fft=256, hop_length=64, n_mels=16)
    y = _noise(4000)
    base = stft(torch.from_numpy(y))
    louder = stft(torch.from_numpy(4.0 * y))
    assert torch.allclose(louder, base, atol=1e-3)
    assert not torch.allclose(raw(torch.from_numpy(4.0 * y)), raw(torch.from_numpy(y)), atol=1)
    b, a = scipy.signal.butter(2, 1500, fs=SR)  # a channel that dulls the high bands
    coloured = scipy.signal.lfilter(b, a, y).astype(np.float32)
    # Raw log-mel frames move by most of a nat on average, normalised ones far less.
    raw_shift = (raw(torch.from_numpy(coloured)) - raw(torch.from_numpy(y))).abs().mean()
    norm_shift = (stft(torch.from_numpy(coloured)) - base).abs().mean()
    assert raw_shift > 0.5
    assert norm_shift < 0.25 * raw_shift


@pytest.mark.parametrize("mode", ["mean", "meanvar"])
@pytest.mark.parametrize("seconds", [None, 0.5])
def test_featurize_waveforms_matches_per_clip_reference(mode, seconds):
    """The padded, batched extraction path normalises with each clip's own frames."""
    stft = STFT(sample_rate=SR, n_fft=256, hop_length=64, n_mels=12, seconds=seconds, cmvn=mode)
    clips = [_noise(n, seed=n) for n in (300, 2500, 4000, 6100)]
    fast = featurize_waveforms(stft, clips)
    for clip, got in zip(clips, fast, strict=True):
        ref = stft(torch.from_numpy(clip))
        assert got.shape == ref.shape == stft.output_shape(len(clip))
        assert torch.allclose(got, ref, atol=1e-4)
        if seconds is None:
            plain = STFT(sample_rate=SR, n_fft=256, hop_length=64, n_mels=12)
            expected = _plain_normalize(plain(torch.from_numpy(clip)).double().numpy(), mode)
            np.testing.assert_allclose(got.numpy(), expected, atol=1e-4)


def test_unbatched_lengths_and_default_off():
    stft = STFT(sample_rate=SR, n_fft=256, hop_length=64, cmvn="mean")
    y = torch.from_numpy(_noise(2000))
    padded = torch.cat([y, torch.zeros(1000)])
    alone = stft(y)
    with_lengths = stft(padded, lengths=torch.tensor(2000))[: len(alone)]
    assert torch.allclose(with_lengths, alone, atol=1e-5)
    assert STFT().config.cmvn == "none"
    assert torch.equal(STFT()(y), STFT()(y, lengths=torch.tensor(2000)))


def test_config_validation_and_round_trip():
    with pytest.raises(ConfigError, match="cmvn"):
        STFT(cmvn="zscore")
    with pytest.raises(ConfigError, match="features.cmvn"):
        FeatureConfig(name="stft", cmvn="zscore")
    stft = STFT(n_mels=8, cmvn="meanvar")
    config = json.loads(json.dumps(stft.to_config()))
    assert config["cmvn"] == "meanvar"
    assert featurizer_from_config(config).config == stft.config
    cfg = apply_overrides(RunConfig(), ["features.name=stft", "features.cmvn=mean"])
    built = featurizer_from_config(cfg.features.featurizer_config())
    assert built.config.cmvn == "mean"
    # An older stored config without the key keeps the un-normalised frames.
    old = {k: v for k, v in STFT(n_mels=8).to_config().items() if k != "cmvn"}
    assert featurizer_from_config(old).config.cmvn == "none"


def test_shipped_recipe_uses_normalised_frames():
    cfg = load_recipe("recipes/zero_wavenet_frames.toml")
    assert cfg.features.name == "stft"
    assert cfg.features.cmvn in ("mean", "meanvar")


def test_mfcc_frames_are_the_dct_of_the_log_mel_frames_before_cmvn():
    wave = torch.from_numpy(_noise(4000, seed=3))
    bands = STFT(n_fft=256, n_mels=20)(wave).numpy()  # (frames, 20)
    mfcc = STFT(n_fft=256, n_mels=20, n_mfcc=8)
    want = scipy.fft.dct(bands, type=2, norm="ortho", axis=-1)[:, :8]
    np.testing.assert_allclose(mfcc(wave).numpy(), want, rtol=1e-4, atol=1e-4)
    assert mfcc.output_shape(4000) == (len(want), 8)
    centred = STFT(n_fft=256, n_mels=20, n_mfcc=8, cmvn="mean")(wave)
    np.testing.assert_allclose(centred.numpy(), _plain_normalize(want, "mean"), atol=1e-4)
    again = featurizer_from_config(mfcc.to_config())
    assert again.to_config() == mfcc.to_config() and again.to_config()["n_mfcc"] == 8
    assert "n_mfcc" not in STFT(n_mels=20).to_config()
    kwargs = apply_overrides(
        RunConfig(), ["features.name=stft", "features.n_mels=20", "features.n_mfcc=8"]
    ).features.featurizer_kwargs()
    assert kwargs["n_mfcc"] == 8


@pytest.mark.parametrize(
    "kwargs",
    [{"n_mfcc": 4}, {"n_mels": 8, "n_mfcc": 9}, {"n_mels": 8, "n_mfcc": 4, "log": False}],
)
def test_mfcc_needs_log_mel_bands(kwargs):
    with pytest.raises(ConfigError, match="n_mfcc"):
        STFT(**kwargs)
