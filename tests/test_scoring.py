"""Scoring: batched log-likelihoods, the per-clip scores, calibration, p-values."""

import json
import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from audioar.batches import log_likelihoods
from audioar.calibration import Calibration, calibrate
from audioar.errors import ConfigError, DataError, TrainingError
from audioar.scoring import ClipScores


class NormedGaussian(nn.Module):
    """Standard normal on batch-normalized x: its value depends on train/eval mode."""

    def __init__(self, features: int = 2) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(features)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        z = self.norm(x)
        return (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(dim=-1)


class Broken(nn.Module):
    def log_prob(self, x: Tensor) -> Tensor:
        return x  # (batch, features): one value per feature, not per item


def test_log_likelihoods_eval_mode_batching_and_order():
    model = NormedGaussian()
    model.train()
    x = torch.randn(37, 2) * 3 + 1
    all_at_once = log_likelihoods(model, x)
    in_small_batches = log_likelihoods(model, x, batch_size=5)
    assert all_at_once.shape == (37,) and model.training  # mode restored
    torch.testing.assert_close(all_at_once, in_small_batches)
    # Eval mode: fresh running stats (mean 0, var 1) so this is the plain standard normal.
    expected = (-0.5 * x**2 - 0.5 * math.log(2 * math.pi)).sum(dim=-1)
    torch.testing.assert_close(all_at_once, expected, rtol=1e-4, atol=1e-4)
    assert not any(b.grad_fn for b in [all_at_once])


def test_log_likelihoods_checks_the_model_output_shape():
    with pytest.raises(TrainingError, match="expected \\(4,\\)"):
        log_likelihoods(Broken(), torch.randn(4, 3))


def test_empirical_threshold_gives_the_target_fpr_on_fresh_normal_data():
    rng = np.random.default_rng(0)
    reference = rng.normal(300.0, 20.0, 2000)  # e.g. -log-lik of held-out normal clips
    cal = calibrate(reference, target_fpr=0.05)
    assert cal.method == "empirical" and cal.gamma is None
    assert np.mean(reference > cal.threshold) <= 0.05
    fresh = rng.normal(300.0, 20.0, 50_000)
    assert abs(cal.is_anomaly(fresh).mean() - 0.05) < 0.01
    # is_anomaly is exactly p <= target_fpr (the conformal reading of the threshold).
    probe = rng.normal(300.0, 30.0, 5000)
    np.testing.assert_array_equal(cal.is_anomaly(probe), cal.p_values(probe) <= 0.05)
    assert cal.is_anomaly([1e6]).all() and not cal.is_anomaly([0.0]).any()


def test_conformal_p_values_are_valid_and_small_for_outliers():
    rng = np.random.default_rng(1)
    hits = {0.05: 0, 0.1: 0, 0.25: 0}
    trials = 400
    for _ in range(trials):  # a fresh small reference set each time
        cal = calibrate(rng.standard_normal(40))
        p = cal.p_values(rng.standard_normal(50))
        for alpha in hits:
            hits[alpha] += int((p <= alpha).sum())
    for alpha, count in hits.items():
        assert count / (trials * 50) <= alpha + 0.01, alpha
        assert count / (trials * 50) >= alpha - 0.04, alpha  # and not uselessly conservative
    cal = calibrate(rng.standard_normal(99))
    assert cal.p_values([50.0])[0] == pytest.approx(0.01)  # 1 / (n + 1)
    assert cal.p_values([-50.0])[0] == 1.0


def test_gamma_calibration_on_negative_scores():
    rng = np.random.default_rng(2)
    # Anomaly scores of a density can be negative: a gamma tail shifted below zero.
    reference = rng.gamma(4.0, 2.0, 3000) - 40.0
    cal = calibrate(reference, target_fpr=0.05, method="gamma")
    assert cal.method == "gamma" and set(cal.gamma) == {"shape", "loc", "scale", "shift"}
    fresh = rng.gamma(4.0, 2.0, 50_000) - 40.0
    assert abs(cal.is_anomaly(fresh).mean() - 0.05) < 0.015
    p = cal.p_values(fresh)
    assert abs((p <= 0.1).mean() - 0.1) < 0.02
    assert cal.p_values([10.0])[0] < 1e-3
    assert cal.p_values([reference.min() - 1.0])[0] == 1.0


def test_round_trip_through_json():
    rng = np.random.default_rng(3)
    for method in ("empirical", "gamma"):
        cal = calibrate(rng.normal(0, 1, 30), target_fpr=0.1, method=method)
        back = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
        assert back == cal
        probe = rng.normal(0, 2, 20)
        np.testing.assert_array_equal(back.p_values(probe), cal.p_values(probe))
    with pytest.raises(ConfigError, match="invalid calibration"):
        Calibration.from_dict({"method": "empirical"})


def test_calibration_needs_enough_finite_scores(caplog):
    with pytest.raises(DataError, match="at least 5 held-out normal clips"):
        calibrate([1.0, 2.0, 3.0])
    with pytest.raises(DataError, match="not finite"):
        calibrate([1.0, 2.0, 3.0, 4.0, math.inf])
    with pytest.raises(DataError, match="all calibration scores are equal"):
        calibrate([1.0] * 6, method="gamma")
    with pytest.raises(ConfigError):
        calibrate([1.0, 2.0, 3.0, 4.0, 5.0], method="kde")
    cal = calibrate(torch.arange(10.0), target_fpr=0.05)  # too few for 5 %: the maximum
    assert cal.threshold == 9.0 and "cannot give" in caplog.text


def test_clip_scores_columns_depend_on_the_model_kind():
    per_class = np.array([[-10.0, -12.0, -11.0], [-30.0, -20.0, -25.0]])
    steps = np.array([5.0, 10.0])
    cond = ClipScores(per_class, steps, ["a", "b", "c"], "a", 4, True, True)
    assert cond.available == ("raw", "per_step", "posterior")
    np.testing.assert_allclose(cond.log_likelihood, [-10.0, -30.0])
    np.testing.assert_allclose(cond.nats_per_step, [-2.0, -3.0])
    np.testing.assert_allclose(cond.nats_per_dim, [-0.5, -0.75])
    expected = per_class[:, 0] - np.log(np.exp(per_class).sum(1))
    np.testing.assert_allclose(cond.log_posterior, expected)
    assert {"ll_a", "ll_b", "ll_c", "log_posterior", "nats_per_step"} <= set(cond.columns())
    one = ClipScores(per_class[:, :1], np.ones(2), ["a"], "a", 128, False, False)
    assert one.available == ("raw",)
    assert set(one.columns()) == {"log_likelihood", "nats_per_dim"}
    np.testing.assert_allclose(one.score("log_likelihood"), [-10.0, -30.0])
    with pytest.raises(ConfigError, match="not available"):
        one.score("posterior")


def test_log_posterior_keeps_confident_clips_apart():
    from scipy.special import logsumexp

    per_class = np.array(
        [[-10.0, -11.0, -12.0], [-10.0, -60.0, -70.0], [-10.0, -200.0, -300.0], [-5.0, -9.0, 0.0]]
    )
    scores = ClipScores(per_class, np.ones(4), ["zero", "one", "two"], "zero", 1, True, False)
    got = scores.log_posterior
    reference = per_class[:, 0] - logsumexp(per_class, axis=1)  # rounds to 0 when confident
    np.testing.assert_allclose(got[[0, 3]], reference[[0, 3]], rtol=1e-12)
    assert reference[2] == 0.0 and -1e-80 < got[2] < 0.0  # exp(-190): not rounded away
    np.testing.assert_allclose(got[2], -np.exp(-190.0), rtol=1e-9)
    assert got[2] > got[1] > got[0] > got[3]  # the ranking survives
