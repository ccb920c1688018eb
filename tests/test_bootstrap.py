"""Bootstrap confidence intervals of AUC, pAUC and EER (audioar.evaluation.metrics)."""

import time

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from audioar.errors import DataError
from audioar.evaluation.bootstrap import (
    _resampled_roc_metrics,
    bootstrap_intervals,
    fold_mean_intervals,
)
from audioar.evaluation.metrics import equal_error_rate, evaluate_scores


def _data(n_target: int, n_other: int, seed: int = 0, gap: float = 1.0):
    rng = np.random.default_rng(seed)
    ll = np.concatenate([rng.normal(0.0, 1.0, n_target), rng.normal(-gap, 1.0, n_other)])
    return ll, ["t"] * n_target + ["o"] * n_other


def _width(ci: dict, key: str = "auc") -> float:
    return ci[key][1] - ci[key][0]


@pytest.mark.parametrize("seed", range(6))
def test_resampled_metrics_match_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 80))
    score = np.round(rng.normal(size=n), 1)  # many ties
    positive = rng.random(n) < 0.6
    positive[:2] = [True, False]
    weights = rng.integers(0, 3, size=(8, n))
    weights[0] = 1  # the data set itself
    got = _resampled_roc_metrics(score, positive, weights, 0.1)
    for b in range(len(weights)):
        idx = np.repeat(np.arange(n), weights[b])
        y, s = positive[idx].astype(int), score[idx]
        if y.sum() in (0, len(y)):
            assert np.isnan(got["auc"][b])
            continue
        assert got["auc"][b] == pytest.approx(roc_auc_score(y, s))
        assert got["pauc"][b] == pytest.approx(roc_auc_score(y, s, max_fpr=0.1))
        assert got["eer"][b] == pytest.approx(equal_error_rate(y, s))


def test_interval_contains_the_point_estimate():
    ll, labels = _data(80, 240)
    m = evaluate_scores(ll, labels, "t")
    ci = bootstrap_intervals(ll, labels, "t", seed=3)
    assert ci["method"] == "clips" and ci["resamples"] == 1000 and ci["level"] == 0.95
    for key in ("auc", "pauc", "eer"):
        lo, hi = ci[key]
        assert lo < m[key] < hi, key


def test_interval_narrows_with_more_clips():
    small = bootstrap_intervals(*_data(20, 60), "t")
    large = bootstrap_intervals(*_data(400, 1200), "t")
    for key in ("auc", "pauc", "eer"):
        assert _width(large, key) < 0.5 * _width(small, key), key


def test_interval_is_reproducible_with_the_seed():
    ll, labels = _data(50, 150)
    a = bootstrap_intervals(ll, labels, "t", seed=7)
    assert bootstrap_intervals(ll, labels, "t", seed=7) == a
    assert bootstrap_intervals(ll, labels, "t", seed=8) != a
    wider = bootstrap_intervals(ll, labels, "t", seed=7, level=0.99)
    assert _width(wider) > _width(a)


def test_speaker_bootstrap_is_wider_with_strong_speaker_effects():
    rng = np.random.default_rng(0)
    speakers, ll, labels = [], [], []
    for s in range(10):
        shift = rng.normal(0.0, 2.0)  # how well this voice's target clips separate
        for label, mean in (("t", shift), ("o", -1.0)):
            values = rng.normal(mean, 1.0, 30)
            ll += values.tolist()
            labels += [label] * 30
            speakers += [f"spk{s}"] * 30
    clips = bootstrap_intervals(ll, labels, "t")
    by_speaker = bootstrap_intervals(ll, labels, "t", groups=speakers)
    assert by_speaker["method"] == "speakers" and by_speaker["groups"] == 10
    assert _width(by_speaker) > 1.5 * _width(clips)
    point = evaluate_scores(ll, labels, "t")["auc"]
    assert by_speaker["auc"][0] < point < by_speaker["auc"][1]


def test_one_speaker_falls_back_to_clips_and_says_so():
    ll, labels = _data(30, 30)
    ci = bootstrap_intervals(ll, labels, "t", groups=["george"] * 60)
    assert ci["method"] == "clips" and "one speaker (george)" in ci["note"]
    assert ci == {**bootstrap_intervals(ll, labels, "t"), "note": ci["note"]}
    ci = bootstrap_intervals(ll, labels, "t", groups=[None] * 60)
    assert ci["method"] == "clips" and "no speaker" in ci["note"]


def test_no_other_or_no_target_clips_give_no_interval():
    ci = bootstrap_intervals([-1.0, -2.0, -3.0], ["t", "t", "t"], "t")
    assert ci["auc"] is None and ci["pauc"] is None and ci["eer"] is None
    assert ci["note"] == "no other clips: no interval" and ci["resamples"] == 0
    ci = bootstrap_intervals([-1.0, -2.0], ["a", "b"], "t", groups=["x", "y"])
    assert ci["auc"] is None and ci["note"] == "no target clips: no interval"


def test_resamples_without_one_kind_are_dropped():
    # spk0 says only the target, spk1 only others: 1 in 27 resamples has no other clip
    ll, labels = _data(20, 20, gap=0.5)
    speakers = ["spk0"] * 10 + ["spk2"] * 10 + ["spk1"] * 10 + ["spk2"] * 10
    ci = bootstrap_intervals(ll, labels, "t", groups=speakers, resamples=2000)
    assert ci["method"] == "speakers" and 0 < ci["dropped"] < 200
    assert ci["resamples"] == 2000 - ci["dropped"]
    assert all(0.0 <= v <= 1.0 for v in ci["auc"])


def test_bad_arguments_are_data_errors():
    ll, labels = _data(5, 5)
    with pytest.raises(DataError, match="resamples"):
        bootstrap_intervals(ll, labels, "t", resamples=0)
    with pytest.raises(DataError, match="level"):
        bootstrap_intervals(ll, labels, "t", level=1.0)
    with pytest.raises(DataError, match="groups"):
        bootstrap_intervals(ll, labels, "t", groups=["a"])
    with pytest.raises(DataError, match="not finite"):
        bootstrap_intervals([np.nan, 1.0], ["t", "o"], "t")


def test_fold_mean_intervals():
    folds = {f"spk{i}": {"auc": a, "pauc": a - 0.1, "eer": 1 - a} for i, a in
             enumerate([0.6, 0.7, 0.8, 0.9, 0.95])}  # fmt: skip
    ci = fold_mean_intervals(folds, seed=1)
    mean = np.mean([f["auc"] for f in folds.values()])
    assert ci["method"] == "speakers" and ci["groups"] == 5
    assert ci["auc"][0] < mean < ci["auc"][1] and 0.6 <= ci["auc"][0]
    assert fold_mean_intervals(folds, seed=1) == ci
    one = fold_mean_intervals({"spk0": folds["spk0"]})
    assert one["auc"] is None and "1 fold" in one["note"]


def test_thousand_resamples_of_three_thousand_clips_are_fast():
    ll, labels = _data(300, 2700)
    speakers = [f"s{i % 12}" for i in range(3000)]
    start = time.process_time()
    bootstrap_intervals(ll, labels, "t")
    bootstrap_intervals(ll, labels, "t", groups=speakers)
    assert time.process_time() - start < 4.0  # about 0.3 s each on one core
