"""Featurizers: agreement with torchaudio / librosa / scipy, shapes, pad/trim, configs."""

import itertools
import json

import librosa
import numpy as np
import pytest
import scipy.signal
import torch
import torchaudio.functional as AF
from hypothesis import given, settings
from hypothesis import strategies as st

from audioar.errors import ConfigError
from audioar.features import (
    LOG_FLOOR,
    STFT,
    MuLaw,
    WholeWindowFFT,
    featurize_waveforms,
    featurizer_from_config,
)
from audioar.features.extract import length_blocks
from audioar.features.segments import SegmentSpectrum

SR = 8000


def tone(freq: float, seconds: float, sr: int = SR, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def chirp(seconds: float, sr: int = SR) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (0.3 * scipy.signal.chirp(t, f0=100, t1=seconds, f1=3500)).astype(np.float32)


def assert_log_close(ours_log: np.ndarray, ref: np.ndarray) -> None:
    """Log features agree wherever float32 rounding is small next to the value (> 1e-3 max)."""
    significant = ref > 1e-3 * ref.max()
    assert significant.mean() > 0.05
    np.testing.assert_allclose(
        ours_log[significant], np.log(ref[significant] + LOG_FLOOR), atol=1e-3
    )


# ---------------------------------------------------------------- MuLaw


@pytest.mark.parametrize("bits", [8, 16])
def test_mulaw_encode_matches_torchaudio_exactly(bits):
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.uniform(-1, 1, (4, 5000)).astype(np.float32))
    x[0, :5] = torch.tensor([-1.0, 0.0, 1.0, 1e-8, -1e-8])
    codes = MuLaw(bits=bits)(x)
    assert codes.dtype == torch.int64
    assert torch.equal(codes, AF.mu_law_encoding(x, 2**bits))
    assert int(codes.min()) >= 0 and int(codes.max()) <= 2**bits - 1


def test_mulaw_decode_matches_torchaudio_exactly():
    mulaw = MuLaw(bits=8)
    codes = torch.arange(256)
    assert torch.equal(mulaw.decode(codes), AF.mu_law_decoding(codes, 256))
    # Decoding then encoding gives the codes back.
    assert torch.equal(mulaw(mulaw.decode(codes)), codes)


@settings(deadline=None, max_examples=25)
@given(st.lists(st.floats(-1.0, 1.0, width=32), min_size=1, max_size=64))
def test_mulaw_matches_torchaudio_property(values):
    x = torch.tensor(values, dtype=torch.float32)
    assert torch.equal(MuLaw()(x), AF.mu_law_encoding(x, 256))


def test_mulaw_clips_out_of_range_samples():
    codes = MuLaw()(torch.tensor([-3.0, 1.5]))
    assert codes.tolist() == [0, 255]


def test_mulaw_pad_trim_to_seconds():
    mulaw = MuLaw(seconds=0.01)  # 80 samples at 8 kHz
    short = torch.full((50,), 0.5)
    padded = mulaw(short)
    assert padded.shape == (80,)
    assert torch.equal(padded[:50], MuLaw()(short))
    assert (padded[50:] == 128).all()  # silence
    long = torch.linspace(-1, 1, 100)
    assert torch.equal(mulaw(long), MuLaw()(long[:80]))
    assert mulaw.feature_shape == (80,)
    assert MuLaw().feature_shape == (None,)
    assert MuLaw().output_shape(123) == (123,)


# ---------------------------------------------------------------- STFT


@pytest.mark.parametrize("signal", ["tone", "chirp"])
@pytest.mark.parametrize("n_fft,hop,win", [(256, None, None), (512, 128, 400)])
def test_stft_matches_librosa(signal, n_fft, hop, win):
    y = tone(440.0, 0.5) if signal == "tone" else chirp(0.5)
    stft = STFT(sample_rate=SR, n_fft=n_fft, hop_length=hop, win_length=win, log=False)
    ours = stft(torch.from_numpy(y)).numpy()  # (frames, bins)
    ref = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=stft.config.hop_length, win_length=win)).T
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * ref.max())
    logged = STFT(sample_rate=SR, n_fft=n_fft, hop_length=hop, win_length=win)
    assert_log_close(logged(torch.from_numpy(y)).numpy(), ref)


@pytest.mark.parametrize("signal", ["tone", "chirp"])
def test_log_mel_matches_librosa(signal):
    y = tone(1000.0, 0.6) if signal == "tone" else chirp(0.6)
    stft = STFT(sample_rate=SR, n_fft=256, hop_length=80, n_mels=40, power=2.0, log=False)
    ours = stft(torch.from_numpy(y)).numpy()
    ref = librosa.feature.melspectrogram(
        y=y, sr=SR, n_fft=256, hop_length=80, n_mels=40, power=2.0
    ).T
    assert ours.shape == ref.shape == (1 + len(y) // 80, 40)
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-4 * ref.max())
    logged = STFT(sample_rate=SR, n_fft=256, hop_length=80, n_mels=40, power=2.0)
    assert_log_close(logged(torch.from_numpy(y)).numpy(), ref)


def test_stft_shapes_pad_trim_and_flatten():
    stft = STFT(sample_rate=SR, n_fft=256, seconds=0.5)  # hop 64 -> 1 + 4000 // 64 = 63 frames
    assert stft.config.hop_length == 64
    assert stft.feature_shape == (63, 129)
    short = torch.from_numpy(tone(300.0, 0.2))
    out = stft(short)
    assert out.shape == (63, 129)
    padded = torch.cat([short, torch.zeros(4000 - len(short))])
    assert torch.allclose(out, STFT(sample_rate=SR, n_fft=256)(padded))
    long = torch.from_numpy(tone(300.0, 0.9))
    assert torch.allclose(stft(long), STFT(sample_rate=SR, n_fft=256)(long[:4000]))
    flat = STFT(sample_rate=SR, n_fft=256, seconds=0.5, flatten=True)
    assert flat.feature_shape == (63 * 129,)
    assert torch.equal(flat(long), stft(long).reshape(-1))
    assert flat(torch.stack([long[:4000], long[:4000]])).shape == (2, 63 * 129)
    variable = STFT(sample_rate=SR, n_fft=256, n_mels=32)
    assert variable.feature_shape == (None, 32)
    assert variable.output_shape(1000) == (1 + 1000 // 64, 32)
    with pytest.raises(ConfigError):
        STFT(flatten=True)


# ---------------------------------------------------------------- WholeWindowFFT


def test_fft_peak_at_tone_bin_and_shape():
    fft = WholeWindowFFT(sample_rate=SR, n_fft=512, seconds=1.0)
    k = 40  # 40 * 8000 / 512 = 625 Hz, exactly on bin 40
    out = fft(torch.from_numpy(tone(k * SR / 512, 1.0)))
    assert out.shape == (257,) and fft.feature_shape == (257,)
    assert int(out.argmax()) == k
    blog = WholeWindowFFT(sample_rate=SR, n_fft=512, mode="blog")
    assert int(blog(torch.from_numpy(tone(k * SR / 512, 1.0))).argmax()) == k


def test_welch_matches_scipy():
    rng = np.random.default_rng(1)
    y = (tone(700.0, 1.0) + 0.05 * rng.standard_normal(SR)).astype(np.float32)
    ours = WholeWindowFFT(sample_rate=SR, n_fft=512, seconds=1.0)(torch.from_numpy(y))
    _, psd = scipy.signal.welch(
        y.astype(np.float64),
        fs=1.0,
        window="hann",
        nperseg=512,
        noverlap=256,
        detrend=False,
        return_onesided=False,
    )
    np.testing.assert_allclose(ours.numpy(), np.log(psd[:257] + LOG_FLOOR), atol=1e-4)


def test_welch_lengths_remove_the_padding_confound():
    fft = WholeWindowFFT(sample_rate=SR, n_fft=512, seconds=1.0)
    short, long = tone(500.0, 0.2), tone(500.0, 0.8)
    batch = torch.zeros(2, SR)
    batch[0, : len(short)] = torch.from_numpy(short)
    batch[1, : len(long)] = torch.from_numpy(long)
    with_lengths = fft(batch, lengths=torch.tensor([len(short), len(long)]))
    without = fft(batch)
    peak = 32  # 500 Hz
    # Averaging over the padding scales the short clip's power by ~0.2 / 0.8.
    assert abs((without[1, peak] - without[0, peak]).item() - np.log(4)) < 0.2
    assert abs((with_lengths[1, peak] - with_lengths[0, peak]).item()) < 0.05
    # The lengths path equals the Welch spectrum of the unpadded clip.
    alone = WholeWindowFFT(sample_rate=SR, n_fft=512, seconds=None)
    assert torch.allclose(with_lengths[0], alone(torch.from_numpy(short)), atol=1e-5)
    # A full-window clip: lengths change nothing.
    full = torch.from_numpy(tone(500.0, 1.0))
    assert torch.allclose(fft(full, lengths=SR), fft(full), atol=1e-6)


def test_blog_mode_only_sees_first_n_fft_samples():
    rng = np.random.default_rng(2)
    y = rng.standard_normal(SR).astype(np.float32) * 0.1
    blog = WholeWindowFFT(sample_rate=SR, n_fft=512, seconds=1.0, mode="blog")
    ref = np.log(np.abs(np.fft.rfft(y[:512].astype(np.float64))) ** 2 + LOG_FLOOR)
    first = blog(torch.from_numpy(y))
    np.testing.assert_allclose(first.numpy(), ref, atol=1e-3)
    changed = y.copy()
    changed[512:] = rng.standard_normal(SR - 512)
    assert torch.equal(blog(torch.from_numpy(changed)), first)
    changed[100] += 1.0
    assert not torch.allclose(blog(torch.from_numpy(changed)), first)


# ---------------------------------------------------------------- batching, configs

FIXED = [
    MuLaw(seconds=0.5),
    STFT(seconds=0.5),
    STFT(n_mels=20, seconds=0.5, flatten=True),
    WholeWindowFFT(seconds=0.5),
    WholeWindowFFT(seconds=0.5, mode="blog"),
]
VARIABLE = [MuLaw(), STFT(), STFT(n_mels=20, power=2.0), WholeWindowFFT(seconds=None)]


@pytest.mark.parametrize("featurizer", FIXED, ids=lambda f: str(f.to_config()))
def test_batch_matches_single(featurizer):
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.standard_normal((3, 4000)).astype(np.float32) * 0.2)
    batched = featurizer(x)
    for i in range(3):
        single = featurizer(x[i])
        if single.is_floating_point():
            assert torch.allclose(batched[i], single, atol=1e-5)
        else:
            assert torch.equal(batched[i], single)


@pytest.mark.parametrize("featurizer", FIXED + VARIABLE, ids=lambda f: str(f.to_config()))
def test_featurize_waveforms_matches_per_clip_reference(featurizer):
    """The padded, batched fast path equals featurizing each clip alone."""
    rng = np.random.default_rng(4)
    clips = [rng.standard_normal(n).astype(np.float32) * 0.2 for n in (300, 2500, 4000, 6100)]
    fast = featurize_waveforms(featurizer, clips)
    window = featurizer.num_samples
    for clip, got in zip(clips, fast, strict=True):
        if featurizer.name == "fft" and featurizer.config.mode == "welch" and window:
            # Welch of the clip itself (trimmed to the window), not of its padding.
            plain = WholeWindowFFT(n_fft=512, seconds=None)
            ref = plain(torch.from_numpy(clip[:window]))
        else:
            ref = featurizer(torch.from_numpy(clip))
        assert got.shape == ref.shape == featurizer.output_shape(len(clip))
        if ref.is_floating_point():
            assert torch.allclose(got, ref, atol=1e-4)
        else:
            assert torch.equal(got, ref)


MIXED = [
    SegmentSpectrum(),
    SegmentSpectrum(trim_db=30.0, n_mfcc=8),  # the default detector's features
    STFT(),
    MuLaw(),
    MuLaw(seconds=0.5),
    STFT(n_mels=20, seconds=0.5, flatten=True),
]


@pytest.mark.parametrize("featurizer", MIXED, ids=lambda f: str(f.to_config()))
def test_a_mixed_chunk_gives_each_clip_its_own_features(featurizer):
    """Blocks of similar lengths (issue 26): one long clip among short ones changes nobody's
    features; each equals the clip featurized alone, and one padded batch."""
    rng = np.random.default_rng(26)
    lengths = [*rng.integers(2400, 6400, 30), 8000 * 20, *rng.integers(300, 2400, 9)]
    clips = [rng.standard_normal(int(n)).astype(np.float32) * 0.2 for n in lengths]
    blocked = featurize_waveforms(featurizer, clips, max_samples=1 << 15)
    one_batch = featurize_waveforms(featurizer, clips, max_samples=1 << 40)
    for clip, got, padded in zip(clips, blocked, one_batch, strict=True):
        alone = featurizer(torch.from_numpy(clip))
        assert got.shape == alone.shape == padded.shape == featurizer.output_shape(len(clip))
        if alone.is_floating_point():
            torch.testing.assert_close(got, alone, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(got, padded, rtol=1e-5, atol=1e-5)
        else:
            assert torch.equal(got, alone) and torch.equal(got, padded)


@settings(max_examples=60)
@given(
    lengths=st.lists(st.integers(1, 50_000), max_size=60),
    width=st.sampled_from([None, 4000]),
    max_samples=st.integers(1, 200_000),
)
def test_length_blocks_bound_the_padded_samples(lengths, width, max_samples):
    blocks = length_blocks(lengths, width, max_samples)
    assert sorted(i for block in blocks for i in block) == list(range(len(lengths)))
    for block in blocks:
        sizes = [lengths[i] for i in block]
        assert sizes == sorted(sizes)
        padded = len(block) * (width if width is not None else sizes[-1])
        assert padded <= max_samples or len(block) == 1  # a longer clip: a block of its own
    if width is None and blocks:  # the blocks follow one another in length
        assert all(lengths[a[-1]] <= lengths[b[0]] for a, b in itertools.pairwise(blocks))


@pytest.mark.parametrize("featurizer", FIXED + VARIABLE, ids=lambda f: str(f.to_config()))
def test_config_round_trip(featurizer):
    config = featurizer.to_config()
    assert config["name"] in {"mulaw", "stft", "fft"}
    rebuilt = featurizer_from_config(json.loads(json.dumps(config)))
    assert type(rebuilt) is type(featurizer)
    assert rebuilt.to_config() == config
    x = torch.linspace(-0.5, 0.5, 3000)
    assert torch.equal(rebuilt(x), featurizer(x))


def test_config_defaults_and_errors():
    assert featurizer_from_config({"name": "fft"}).feature_shape == (257,)
    assert featurizer_from_config({"name": "stft", "hop_length": None}).config.hop_length == 64
    bad = [
        {"name": "wavelet"},
        {"n_fft": 512},
        {"name": "fft", "mode": "periodogram"},
        {"name": "fft", "nfft": 512},
        {"name": "stft", "n_fft": 0},
        {"name": "stft", "n_fft": 256, "win_length": 300},
        {"name": "stft", "power": -1},
        {"name": "mulaw", "bits": 17},
        {"name": "mulaw", "seconds": -1.0},
        {"name": "mulaw", "bits": True},
    ]
    for config in bad:
        with pytest.raises(ConfigError):
            featurizer_from_config(config)
    with pytest.raises(ConfigError):
        featurizer_from_config(["fft"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("featurizer", FIXED + VARIABLE, ids=lambda f: str(f.to_config()))
def test_cuda_matches_cpu(featurizer):
    x = torch.from_numpy(np.stack([chirp(0.5), tone(440.0, 0.5)]))
    cpu = featurizer(x)
    gpu = featurizer.to("cuda")(x.cuda()).cpu()
    featurizer.to("cpu")
    if cpu.is_floating_point():
        assert torch.allclose(gpu, cpu, atol=1e-3)
    else:
        assert (gpu - cpu).abs().max() <= 1  # float rounding may move a code by one
