"""Scores that travel across recording setups: likelihood ratio (background model), input
complexity, typicality, and a posterior with an explicit "other" class."""

import numpy as np
import pytest
import torch
from helpers import TINY, WAVENET_FRAMES, WAVENET_SMALL, write_tone_dataset

from audioar.config.recipes import RunConfig, apply_overrides
from audioar.data.discovery import discover, split
from audioar.errors import ConfigError
from audioar.evaluation.experiment import score_test_part
from audioar.features.perturb import perturb
from audioar.models import MAF, InputSpec, Standardized
from audioar.pipeline.complexity import code_lengths, quantised_log_likelihood
from audioar.pipeline.featurize import featurize
from audioar.pipeline.runs import fit_run, load_trained
from audioar.pipeline.scoring import score_features


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    return write_tone_dataset(tmp_path_factory.mktemp("tones"))


def _test_features(trained, tones):
    parts = split(discover(tones), "official")
    features, kept, _ = featurize(trained.featurizer, parts.test[::5], use_cache=False)
    return features, kept


def test_likelihood_ratio_run_saves_and_reloads_its_background_model(tones, tmp_path):
    cfg = apply_overrides(
        RunConfig(),
        [f"data.root={tones}", "data.target=zero", *TINY, "score.method=likelihood_ratio"],
    )
    trained, _ = fit_run(cfg, tmp_path / "lr", use_cache=False)
    assert trained.background is not None and trained.score == "likelihood_ratio"
    loaded = load_trained(tmp_path / "lr")
    features, _ = _test_features(trained, tones)
    fresh, again = score_features(trained, features), score_features(loaded, features)
    np.testing.assert_allclose(again.log_likelihood_ratio, fresh.log_likelihood_ratio, rtol=1e-5)
    np.testing.assert_allclose(fresh.log_likelihood_ratio, fresh.log_likelihood - fresh.background)
    assert fresh.available == ("raw", "likelihood_ratio", "complexity", "typicality")
    metrics, table, _ = score_test_part(loaded, split(discover(tones), "official"))
    assert metrics["score"] == "log_likelihood_ratio"
    np.testing.assert_allclose(table["anomaly_score"], -table["log_likelihood_ratio"])


def test_typicality_and_complexity_follow_their_definitions(tones, tmp_path):
    cfg = apply_overrides(RunConfig(), [f"data.root={tones}", "data.target=zero", *TINY])
    trained, _ = fit_run(cfg, tmp_path / "raw", use_cache=False)
    assert trained.typical is not None and load_trained(tmp_path / "raw").typical == pytest.approx(
        trained.typical
    )
    features, _ = _test_features(trained, tones)
    s = score_features(trained, features)
    np.testing.assert_allclose(s.typicality, -np.abs(s.nats_per_step - trained.typical))
    np.testing.assert_allclose(s.complexity_corrected, s.quantised + s.code_length)
    assert (s.code_length > 0).all()


def test_code_lengths_grow_with_what_is_in_the_clip():
    spec = InputSpec("vector", (64,))
    model = Standardized(MAF(64, num_flows=1, hidden_features=(8,)), spec)
    flat = torch.zeros(64)
    noise = torch.randn(64, generator=torch.Generator().manual_seed(0))
    short, long = code_lengths(model, [flat, noise], [1, 1])
    assert short < long  # constant values compress to almost nothing
    ll = np.array([-10.0])
    bin_width = 8.0 / 256
    expected = -10.0 + 64 * np.log(bin_width)  # std 1: the bins are 8/256 wide
    np.testing.assert_allclose(quantised_log_likelihood(model, ll, np.ones(1), 64), expected)


def test_perturb_replaces_the_share_asked_for():
    torch.manual_seed(0)
    x = torch.zeros(1000)
    out = perturb(x, 0.3, torch.tensor(5.0), torch.tensor(0.1))
    changed = (out != 0).float().mean().item()
    assert 0.25 < changed < 0.35 and out[out != 0].mean().item() == pytest.approx(5.0, abs=0.05)
    codes = perturb(torch.zeros(500, dtype=torch.long), 1.0, torch.zeros(()), torch.ones(()), 16)
    assert codes.dtype == torch.long and 0 <= int(codes.min()) and int(codes.max()) < 16
    with pytest.raises(ConfigError):
        perturb(x, 0.0, torch.zeros(()), torch.ones(()))


def test_posterior_with_an_explicit_other_class(tones, tmp_path):
    small = [*WAVENET_SMALL, *WAVENET_FRAMES]
    cfg = apply_overrides(
        RunConfig(), [f"data.root={tones}", "data.target=zero", *small, "score.other_class=true"]
    )
    trained, _ = fit_run(cfg, tmp_path / "wn", use_cache=False)
    assert trained.classes == ["one", "two", "zero", "_other"] and trained.model.classes == 4
    loaded = load_trained(tmp_path / "wn")
    assert loaded.classes == trained.classes
    features, _ = _test_features(trained, tones)
    s = score_features(loaded, features)
    assert s.per_class.shape == (len(features), 4) and (s.log_posterior <= 0).all()
    with pytest.raises(ConfigError, match="class-conditional"):
        fit_run(
            apply_overrides(RunConfig(), [f"data.root={tones}", *TINY, "score.other_class=true"]),
            tmp_path / "maf",
        )
