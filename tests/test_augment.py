"""Frame augmentation (frame WaveNet, PixelCNN images): VTLP bin warp, tempo stretch, config."""

import numpy as np
import pytest
import torch
from helpers import write_tone_dataset
from hypothesis import given, settings
from hypothesis import strategies as st

from audioar.config.recipes import RunConfig, TrainConfig, apply_overrides
from audioar.errors import ConfigError
from audioar.features.augment import AugmentedSequences, stretch_time, warp_bins
from audioar.pipeline.batches import ClipSet
from audioar.pipeline.runs import fit_run


def _vtlp_source(bins: int, alpha: float) -> np.ndarray:
    """Reference: the input position each output bin reads, written out with numpy."""
    top = bins - 1.0
    knee = 0.85 * top * min(1.0, alpha)
    j = np.arange(bins, dtype=np.float64)
    upper = knee / alpha + (j - knee) * (top - knee / alpha) / (top - knee)
    return np.where(j <= knee, j / alpha, upper)


@settings(deadline=None, max_examples=25)
@given(
    alpha=st.floats(0.7, 1.3),
    bins=st.integers(2, 40),
    frames=st.integers(1, 6),
    seed=st.integers(0, 100),
)
def test_warp_matches_numpy_interp_and_keeps_edges(alpha, bins, frames, seed):
    x = torch.from_numpy(np.random.default_rng(seed).normal(size=(frames, bins)))
    got = warp_bins(x, alpha).numpy()
    source = _vtlp_source(bins, alpha)
    assert np.all(np.diff(source) > 0) and source[0] == 0 and np.isclose(source[-1], bins - 1)
    grid = np.arange(bins)
    for t in range(frames):
        np.testing.assert_allclose(got[t], np.interp(source, grid, x[t].numpy()), atol=1e-12)
    np.testing.assert_allclose(got[:, [0, -1]], x[:, [0, -1]].numpy(), atol=1e-12)


def test_warp_moves_a_formant_up_or_down():
    bins = torch.arange(32, dtype=torch.float64)
    frame = torch.exp(-0.5 * (bins - 10.0) ** 2).unsqueeze(0)  # a peak at bin 10
    assert torch.equal(warp_bins(frame, 1.0), frame)
    assert int(warp_bins(frame, 1.2).argmax()) == 12  # shorter vocal tract: higher formant
    assert int(warp_bins(frame, 0.8).argmax()) == 8
    with pytest.raises(ConfigError):
        warp_bins(frame, 0.0)


@pytest.mark.parametrize("alpha,length", [(1.0, 20), (1.1, 22), (0.9, 18), (0.01, 1)])
def test_stretch_resamples_time_linearly(alpha, length):
    ramp = torch.arange(20, dtype=torch.float64).unsqueeze(1).repeat(1, 3)  # (20, 3)
    out = stretch_time(ramp, alpha)
    assert out.shape == (length, 3)
    if length > 1:
        expected = torch.linspace(0, 19, length, dtype=torch.float64)
        assert torch.allclose(out[:, 1], expected)
    with pytest.raises(ConfigError):
        stretch_time(ramp, -1.0)


def test_dataset_draws_fresh_seeded_warps_and_renormalises():
    rng = np.random.default_rng(0)
    seqs = [torch.from_numpy(rng.normal(size=(n, 8)).astype(np.float32)) for n in (15, 25, 40)]
    base = ClipSet(seqs, [0, 1, 2])
    plain = AugmentedSequences(base, warp=0.0, stretch=0.0)
    assert all(torch.equal(plain[i][0], seqs[i]) for i in range(3))
    data = AugmentedSequences(base, warp=0.15, stretch=0.2, cmvn="mean")
    torch.manual_seed(1)
    first = [data[i] for i in range(3)]
    torch.manual_seed(1)
    again = [data[i] for i in range(3)]
    for (x, label, length), (y, _, _), i in zip(first, again, range(3), strict=True):
        assert torch.equal(x, y) and x.dtype == torch.float32
        assert int(label) == i and int(length) == len(x)
        assert abs(len(x) - len(seqs[i])) <= 0.2 * len(seqs[i]) + 1
        assert torch.allclose(x.mean(dim=0), torch.zeros(8), atol=1e-5)
    later = [data[i][0] for i in range(3)]
    redrawn = [
        a.shape != b.shape or not torch.equal(a, b)
        for (a, _, _), b in zip(first, later, strict=True)
    ]
    assert any(redrawn)  # every access draws new factors
    for bad in ({"warp": 1.0}, {"stretch": -0.1}, {"cmvn": "l2"}):
        with pytest.raises(ConfigError):
            AugmentedSequences(base, **bad)


def test_image_items_warp_their_valid_columns_and_keep_their_width():
    rng = np.random.default_rng(2)
    frames = torch.from_numpy(rng.normal(size=(14, 6)).astype(np.float32))  # (time, bins)
    image = torch.zeros(1, 6, 20)
    image[0, :, :14] = frames.t()
    base = ClipSet([image], [3], [14])
    plain = AugmentedSequences(base, warp=0.0, stretch=0.0)
    x, label, length = plain[0]
    assert torch.equal(x, image) and int(length) == 14 and int(label) == 3
    data = AugmentedSequences(base, warp=0.2, stretch=0.3, cmvn="mean")
    torch.manual_seed(0)
    seen = set()
    for _ in range(8):
        x, _, length = data[0]
        n = int(length)
        seen.add(n)
        assert x.shape == (1, 6, 20) and 1 <= n <= 20
        assert not x[0, :, n:].any()  # columns beyond the clip stay padding
        assert torch.allclose(x[0, :, :n].mean(dim=1), torch.zeros(6), atol=1e-5)
    assert len(seen) > 1  # the tempo changes from draw to draw
    torch.manual_seed(0)
    reference = stretch_time(warp_bins(frames.double(), data._factor(0.2)), data._factor(0.3))
    torch.manual_seed(0)
    x, _, length = data[0]
    want = (reference - reference.mean(0)).float()[:20]
    torch.testing.assert_close(x[0, :, : int(length)].t(), want, atol=1e-5, rtol=1e-5)


def test_config_fields_are_validated_and_need_frames(tmp_path):
    assert TrainConfig().augment_warp == 0.0 and TrainConfig().augment_stretch == 0.0
    with pytest.raises(ConfigError, match="augment_warp"):
        TrainConfig(augment_warp=1.5)
    root = write_tone_dataset(tmp_path / "tones")
    codes = apply_overrides(
        RunConfig(),
        [
            f"data.root={root}",
            "data.target=zero",
            "model.name=wavenet",
            "features.name=mulaw",
            "model.output=categorical",
            "train.augment_stretch=0.1",
        ],
    )
    with pytest.raises(ConfigError, match="augment"):
        fit_run(codes, tmp_path / "codes", use_cache=False)
    mfcc = apply_overrides(
        codes,
        [
            "features.name=stft",
            "features.n_mels=8",
            "features.n_mfcc=4",
            "model.output=gaussian",
            "train.augment_warp=0.1",
        ],
    )
    with pytest.raises(ConfigError, match="cannot warp MFCCs"):
        fit_run(mfcc, tmp_path / "mfcc", use_cache=False)


def test_fit_with_augmentation_and_cmvn_trains_and_differs(tmp_path):
    root = write_tone_dataset(tmp_path / "tones")
    common = [
        f"data.root={root}",
        "data.target=zero",
        "model.name=wavenet",
        "features.name=stft",
        "features.n_fft=128",
        "features.hop_length=64",
        "features.n_mels=8",
        "features.cmvn=mean",
        "model.output=gaussian",
        "model.residual_channels=8",
        "model.skip_channels=8",
        "model.max_dilation=4",
        "model.dilation_cycles=1",
        "train.epochs=2",
        "train.batch_size=16",
    ]
    plain, _ = fit_run(apply_overrides(RunConfig(), common), tmp_path / "plain", use_cache=False)
    augmented_cfg = apply_overrides(
        RunConfig(), [*common, "train.augment_warp=0.1", "train.augment_stretch=0.1"]
    )
    augmented, summary = fit_run(augmented_cfg, tmp_path / "aug", use_cache=False)
    assert summary.result.history and all(
        np.isfinite(row["train_log_likelihood"]) for row in summary.result.history
    )
    diffs = [
        not torch.equal(a, b)
        for a, b in zip(
            plain.model.state_dict().values(), augmented.model.state_dict().values(), strict=True
        )
    ]
    assert any(diffs)  # the warps changed what the model saw
