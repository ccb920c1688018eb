"""Scoring: batched log-likelihoods, the per-clip scores, calibration, p-values."""

import functools
import json
import math
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import TINY, invoke
from torch import Tensor, nn

from audioar.errors import ConfigError, DataError, TrainingError
from audioar.features import extract
from audioar.models.contract import InputSpec
from audioar.models.standardize import Standardized
from audioar.pipeline import scoring
from audioar.pipeline.batches import log_likelihoods
from audioar.pipeline.calibration import Calibration, calibrate
from audioar.pipeline.complexity import code_lengths
from audioar.pipeline.runs import load_trained
from audioar.pipeline.score_files import score_files
from audioar.pipeline.scoring import (
    ClipScores,
    class_log_likelihoods,
    fast_code_lengths,
    score_features,
)


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


# --------------------------------------------------------------- every class in one pass


def conditional_maf(features: int = 6, classes: int = 4, dtype=torch.float64) -> Standardized:
    """A small class-conditional MAF with non-trivial batch-norm statistics, wrapped."""
    from audioar.models import MAF

    maf = MAF(features, num_flows=3, hidden_features=(32, 32), classes=classes)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(5):  # moves the running statistics away from 0 and 1
            x = torch.randn(64, features, generator=gen) * 2 + 1
            maf(x, torch.randint(0, classes, (64,), generator=gen) if classes else None)
    spec = InputSpec("vector", (features,), classes=classes)
    mean, std = torch.full((features,), 0.5), torch.full((features,), 2.0)
    return Standardized(maf, spec, mean, std).to(dtype).eval()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_every_class_in_one_pass_matches_the_per_class_reference(dtype, monkeypatch):
    model = conditional_maf(dtype=dtype)
    gen = torch.Generator().manual_seed(2)
    items = list(torch.randn(50, 6, generator=gen) * 3)
    lengths = [1] * len(items)
    reference = class_log_likelihoods(model, items, lengths, batched=False)
    rtol = 1e-9 if dtype == torch.float64 else 1e-5  # float32: the products' rounding
    for batch_size in (1, 7, 128):
        fast = class_log_likelihoods(model, items, lengths, batch_size=batch_size)
        assert fast.shape == reference.shape == (50, 4) and fast.dtype == torch.float64
        torch.testing.assert_close(fast, reference, rtol=rtol, atol=0.0)
    monkeypatch.setattr(scoring, "ALL_CLASSES_ROWS", 9)  # two clips (8 rows) a pass
    torch.testing.assert_close(
        class_log_likelihoods(model, items, lengths), reference, rtol=rtol, atol=0.0
    )
    assert model.training is False


def test_the_scores_of_one_pass_equal_the_reference_scores(monkeypatch):
    """The same columns and, in float64, the same numbers to 1e-9 relative."""
    model = conditional_maf()
    features = list(torch.randn(40, 6, generator=torch.Generator().manual_seed(3)) * 3)
    classes = ["a", "b", "c", "d"]
    fast = scoring.clip_scores(model, model.spec, classes, "b", features, typical=-9.0)
    plain = functools.partial(scoring.class_log_likelihoods, batched=False)
    monkeypatch.setattr(scoring, "class_log_likelihoods", plain)
    reference = scoring.clip_scores(model, model.spec, classes, "b", features, typical=-9.0)
    got, want = fast.columns(), reference.columns()
    assert list(got) == list(want)
    assert {"log_posterior", "ll_a", "complexity_corrected", "typicality"} <= set(got)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-9, atol=0.0, err_msg=name)


def test_one_class_models_are_scored_as_before():
    model = conditional_maf(classes=0)
    items = list(torch.randn(20, 6, generator=torch.Generator().manual_seed(4)))
    fast = class_log_likelihoods(model, items, [1] * 20)
    plain = class_log_likelihoods(model, items, [1] * 20, batched=False)
    assert fast.shape == (20, 1) and torch.equal(fast, plain)


@pytest.mark.parametrize("features", [1, 32, 250, 251, 763, 1500])
def test_fast_code_lengths_equal_the_reference(features):
    """Batched quantisation and a window fitted to the clip: the same zlib sizes, also
    either side of the sizes where the window grows (250 and 762 bytes)."""
    spec = InputSpec("vector", (features,))
    model = Standardized(nn.Identity(), spec, torch.zeros(features), torch.ones(features))
    rng = np.random.default_rng(features)
    items = [
        torch.from_numpy(rng.standard_normal(features).astype(np.float32)),
        torch.from_numpy(rng.standard_normal(features).astype(np.float32) * 10),  # clipped
        torch.zeros(features),
        torch.from_numpy(np.tile(rng.standard_normal(5), features)[:features].astype(np.float32)),
        torch.from_numpy(np.cumsum(rng.standard_normal(features)).astype(np.float32) * 0.1),
    ]
    lengths = [1] * len(items)
    np.testing.assert_array_equal(
        fast_code_lengths(model, items, lengths), code_lengths(model, items, lengths)
    )


# --------------------------------------------------------------- the scores table


@pytest.fixture(scope="module")
def tiny_run(tones, tmp_path_factory):
    """The default detector (conditional MAF over segments), made tiny, fitted on tones."""
    out = tmp_path_factory.mktemp("scoring") / "run"
    overrides = [x for item in TINY for x in ("--set", item)]
    result = invoke("fit", "--data", tones, "--class", "zero", "--out", out, *overrides)
    assert result.exit_code == 0, result.output
    return load_trained(out)


def test_score_table_rows_columns_and_errors(tiny_run, tones, tmp_path):
    clips = sorted(tones.glob("*.wav"))[::7]
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio")
    paths = [clips[0], broken, *clips[1:4], clips[0], broken, *clips[4:]]
    table = pd.concat(score_files(tiny_run, paths, use_cache=False), ignore_index=True)
    assert list(table["path"]) == [str(p) for p in paths]
    names = list(table.columns)
    assert names[:3] == ["path", "log_likelihood", "nats_per_dim"]
    assert names[-4:] == ["anomaly_score", "p_value", "is_anomaly", "error"]
    assert {"log_posterior", "ll_zero", "ll_one", "ll_two"} <= set(names)
    assert str(table["is_anomaly"].dtype) == "boolean"
    assert pd.api.types.is_string_dtype(table["error"])
    assert all(table[name].dtype == np.float64 for name in names[1:-2])
    bad = table["path"] == str(broken)
    assert bad.sum() == 2 and table.loc[bad, "error"].str.contains("not a readable").all()
    assert table.loc[bad, names[1:-2]].isna().all().all()
    assert table.loc[bad, "is_anomaly"].isna().all()
    good = table[~bad]
    assert (good["error"] == "").all() and good["is_anomaly"].notna().all()
    assert good[names[1:-2]].notna().all().all()
    first, again = good[good["path"] == str(clips[0])][names[1:-2]].to_numpy()
    np.testing.assert_array_equal(first, again)  # a file named twice is scored twice
    # Each row's scores are those of its own clip (in batches of 3 and of everything; float32
    # rounding differs with the batch).
    features = extract(tiny_run.featurizer, list(good["path"]), use_cache=False).features
    expected = score_features(tiny_run, list(features)).columns()
    small = pd.concat(score_files(tiny_run, paths, batch_size=3, use_cache=False))
    for name, values in expected.items():
        np.testing.assert_allclose(good[name], values, rtol=1e-4, atol=1e-4, err_msg=name)
        np.testing.assert_allclose(small[~bad.to_numpy()][name], values, rtol=1e-4, atol=1e-4)


def test_scoring_does_not_import_scipy_special():
    """scipy.special loads numpy.f2py (some 0.25 s of every command's start-up)."""
    code = "import sys, audioar.pipeline.scoring; print('scipy.special' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_prefetching_the_next_batch_gives_the_same_tables(tiny_run, tones, tmp_path):
    """The fast path (next batch featurized in a background thread) against the reference
    (one batch after the other): equal tables, a bad file in a later batch reported in its
    row, and a consumer that stops early stops the job."""
    clips = sorted(tones.glob("*.wav"))[::5]
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio")
    paths = [*clips[:4], broken, *clips[4:]]
    threads_before = torch.get_num_threads()
    plain = list(score_files(tiny_run, paths, batch_size=3, use_cache=False, prefetch=False))
    fast = list(score_files(tiny_run, paths, batch_size=3, use_cache=False, prefetch=True))
    assert len(fast) == len(plain) == -(-len(paths) // 3) >= 3
    for a, b in zip(plain, fast, strict=True):
        # the model runs on one thread fewer with prefetch: float32 sums in another order
        pd.testing.assert_frame_equal(
            a.reset_index(drop=True), b.reset_index(drop=True), check_exact=False, rtol=1e-5
        )
    assert torch.get_num_threads() == threads_before  # restored
    table = pd.concat(fast, ignore_index=True)
    assert table.loc[4, "path"] == str(broken) and "not a readable" in table.loc[4, "error"]
    assert (table.drop(index=4)["error"] == "").all()
    tables = score_files(tiny_run, paths, batch_size=2, use_cache=False)
    first = next(tables)
    tables.close()  # stops the decoding a batch ahead
    assert list(first["path"]) == [str(p) for p in paths[:2]]


def test_background_batches_raise_where_the_error_happened_and_stop_when_closed():
    from audioar.pipeline.score_files import _ahead

    closed = []

    def items():
        try:
            yield 1
            yield 2
            raise RuntimeError("third item broke")
        finally:
            closed.append(True)

    got = []
    running = threading.Event()
    with pytest.raises(RuntimeError, match="third item broke"):
        for item in _ahead(items(), 2, running):
            got.append(item)
    assert got == [1, 2] and closed == [True] and not running.is_set()
    endless = _ahead(iter(int, 1), 1)  # 0, 0, 0, ...: never ends by itself
    assert next(endless) == 0
    endless.close()  # returns: the producer thread stopped


def test_evaluating_switches_only_what_needs_it_and_restores_each_mode():
    from audioar.pipeline.batches import evaluating

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5), torch.nn.Linear(2, 1))
    model[1].eval()  # a mixed model: the container and two layers train, the dropout does not
    before = [m.training for m in model.modules()]
    with evaluating(model, torch.device("cpu")) as same:
        assert same is model and not any(m.training for m in model.modules())
    assert [m.training for m in model.modules()] == before
    model.eval()
    calls = []
    model.train = lambda mode=True: calls.append(mode)  # would be called to switch modes
    with evaluating(model, torch.device("cpu")):
        pass
    assert calls == []  # already in evaluation mode: nothing walked
