"""Tests of audioar.evaluation.metrics: metrics on tiny hand-checked examples, folds,
evaluation files."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from audioar import atomic
from audioar.atomic import atomic_write
from audioar.errors import DataError
from audioar.evaluation import files as evaluation_files
from audioar.evaluation.files import EVALUATION_FILES, scores_frame, write_evaluation
from audioar.evaluation.metrics import (
    equal_error_rate,
    evaluate_scores,
    partial_auc,
    summarize_folds,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _two_class(target_ll, other_ll, target="t", other="o"):
    ll = np.concatenate([target_ll, other_ll]).astype(float)
    labels = [target] * len(target_ll) + [other] * len(other_ll)
    return ll, labels


# --------------------------------------------------------------------------- metrics


def test_perfect_separation():
    ll, labels = _two_class([-1.0, -2.0, -1.5], [-10.0, -12.0])
    m = evaluate_scores(ll, labels, "t")
    assert m["auc"] == 1.0
    assert m["pauc"] == pytest.approx(1.0)
    assert m["pauc_unstandardized"] == pytest.approx(1.0)
    assert m["eer"] == 0.0
    assert m["target_rank"] == 1 and m["target_first"] is True
    assert m["classes_beating_target"] == []
    assert (m["n_target"], m["n_other"], m["num_classes"]) == (3, 2, 2)


def test_reversed_scores():
    ll, labels = _two_class([-10.0, -12.0], [-1.0, -2.0, -1.5])
    m = evaluate_scores(ll, labels, "t")
    assert m["auc"] == 0.0
    assert m["eer"] == 1.0
    assert m["pauc_unstandardized"] == pytest.approx(0.0)
    assert m["target_rank"] == 2
    assert m["classes_beating_target"] == ["o"]


def test_all_tied_is_chance():
    ll, labels = _two_class([-3.0, -3.0], [-3.0, -3.0, -3.0])
    m = evaluate_scores(ll, labels, "t")
    assert m["auc"] == 0.5
    assert m["eer"] == pytest.approx(0.5)
    assert m["pauc"] == pytest.approx(0.5)


def test_auc_with_a_tie_by_hand():
    # anomaly scores: target [0, 1], others [1, 2]; pairs (other > target): 1 + 0.5 + 1 + 1
    ll, labels = _two_class([0.0, -1.0], [-1.0, -2.0])
    assert evaluate_scores(ll, labels, "t")["auc"] == pytest.approx(3.5 / 4)


def test_eer_interpolated_by_hand():
    # targets score [0, 1, 2], others [1.5, 3]: FPR = FNR = 1/3 on the vertical ROC segment
    y = np.array([0, 0, 0, 1, 1])
    s = np.array([0.0, 1.0, 2.0, 1.5, 3.0])
    assert equal_error_rate(y, s) == pytest.approx(1 / 3)
    # crossing inside a diagonal (tied) segment (0, .5)-(.5, 1): targets [0, 1], others [1, 2]
    assert equal_error_rate(np.array([0, 0, 1, 1]), np.array([0.0, 1.0, 1.0, 2.0])) == 0.25


@settings(deadline=None, max_examples=25)
@given(
    st.integers(0, 10_000),
    st.integers(2, 30),
    st.integers(2, 30),
    st.sampled_from([0.05, 0.1, 0.3, 1.0]),
)
def test_pauc_matches_sklearn(seed, n_t, n_o, max_fpr):
    rng = np.random.default_rng(seed)
    s = np.round(rng.normal(size=n_t + n_o), 1)  # rounding creates ties
    y = np.array([0] * n_t + [1] * n_o)
    expected = roc_auc_score(y, s, max_fpr=max_fpr)
    assert partial_auc(y, s, max_fpr) == pytest.approx(expected, abs=1e-12)
    labels = ["t"] * n_t + ["o"] * n_o
    m = evaluate_scores(-s, labels, "t", max_fpr=max_fpr)
    assert m["pauc"] == pytest.approx(expected, abs=1e-12)
    assert m["auc"] == pytest.approx(roc_auc_score(y, s))
    assert 0.0 <= m["eer"] <= 1.0


def test_target_rank_and_classes_beating_target():
    labels = ["a"] * 2 + ["b"] * 2 + ["c"] * 2 + ["d"] * 2
    ll = [-2.0, -2.0, -1.0, -1.0, -3.0, -3.0, -0.5, -1.5]  # means a -2, b -1, c -3, d -1
    m = evaluate_scores(ll, labels, "a")
    assert m["target_rank"] == 3
    assert m["classes_beating_target"] == ["b", "d"]  # highest mean first, ties by name
    pc = m["per_class"]
    assert list(pc) == ["b", "d", "a", "c"]
    assert [pc[c]["rank"] for c in pc] == [1, 1, 3, 4]
    assert pc["a"]["auc"] is None
    assert pc["c"]["auc"] == 1.0  # target vs c only: c always more anomalous
    assert pc["b"]["auc"] == 0.0
    assert pc["d"]["auc"] == 0.0  # d = [-0.5, -1.5] both above target's -2
    assert pc["d"]["mean_log_likelihood"] == -1.0
    assert pc["d"]["median_log_likelihood"] == -1.0
    assert pc["a"]["n"] == 2


def test_dims_gives_nats_per_dim():
    ll, labels = _two_class([-10.0, -30.0], [-50.0])
    m = evaluate_scores(ll, labels, "t", dims=10)
    assert m["dims"] == 10
    assert m["per_class"]["t"]["mean_log_likelihood_per_dim"] == pytest.approx(-2.0)
    with pytest.raises(DataError, match="dims"):
        evaluate_scores(ll, labels, "t", dims=0)


def test_threshold_metrics_by_hand():
    # anomaly scores: target [1, 2, 3, 6], others [4, 5, 2.5, 7]; threshold 3.5 (score > 3.5)
    ll, labels = _two_class([-1.0, -2.0, -3.0, -6.0], [-4.0, -5.0, -2.5, -7.0])
    m = evaluate_scores(ll, labels, "t", threshold=3.5)
    # predicted anomalous: target 6 (FP); others 4, 5, 7 (TP); other 2.5 missed (FN)
    assert m["confusion"] == {"tp": 3, "fp": 1, "tn": 3, "fn": 1}
    assert m["precision"] == pytest.approx(0.75)
    assert m["recall"] == pytest.approx(0.75)
    assert m["f1"] == pytest.approx(0.75)
    assert m["fpr"] == pytest.approx(0.25)
    assert m["tpr"] == pytest.approx(0.75)
    assert m["threshold"] == 3.5
    # a score equal to the threshold is not flagged
    assert evaluate_scores(ll, labels, "t", threshold=4.0)["confusion"]["tp"] == 2
    assert "precision" not in evaluate_scores(ll, labels, "t")


def test_precision_without_positive_predictions_is_zero():
    ll, labels = _two_class([-1.0], [-2.0])
    m = evaluate_scores(ll, labels, "t", threshold=100.0)
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["fpr"] == 0.0


def test_data_errors():
    with pytest.raises(DataError, match="no clips of the target class 'x'"):
        evaluate_scores([-1.0, -2.0], ["a", "b"], "x")
    with pytest.raises(DataError, match="all 2 clips are of the target"):
        evaluate_scores([-1.0, -2.0], ["a", "a"], "a")
    with pytest.raises(DataError, match=r"2 of 5 log-likelihoods are not finite \(1 NaN, 1 inf"):
        evaluate_scores([-1.0, np.nan, -2.0, np.inf, -3.0], list("aabbb"), "a")
    with pytest.raises(DataError, match="3 log-likelihoods but 2 labels"):
        evaluate_scores([-1.0, -2.0, -3.0], ["a", "b"], "a")
    with pytest.raises(DataError, match="no clips"):
        evaluate_scores([], [], "a")
    with pytest.raises(DataError, match="threshold"):
        evaluate_scores([-1.0, -2.0], ["a", "b"], "a", threshold=float("nan"))
    with pytest.raises(DataError, match="max_fpr"):
        partial_auc(np.array([0, 1]), np.array([0.0, 1.0]), max_fpr=0.0)


def test_metrics_are_json_ready():
    rng = np.random.default_rng(1)
    ll = rng.normal(size=40)
    labels = list(rng.choice(["a", "b", "c"], size=40))
    labels[:3] = ["a", "b", "c"]
    m = evaluate_scores(ll, labels, "a", threshold=0.0)
    text = json.dumps(m, allow_nan=False)
    for key in ("auc", "pauc", "eer", "target_rank", "per_class"):
        assert key in json.loads(text)


# --------------------------------------------------------------------------- folds


def _fold(shift, seed):
    rng = np.random.default_rng(seed)
    ll = np.concatenate([rng.normal(0, 1, 20), rng.normal(-shift, 1, 20), rng.normal(-1, 1, 20)])
    labels = ["t"] * 20 + ["o"] * 20 + ["p"] * 20
    return evaluate_scores(ll, labels, "t", threshold=1.0)


def test_summarize_folds():
    folds = {"s1": _fold(3.0, 0), "s2": _fold(-1.0, 1)}
    s = summarize_folds(folds)
    aucs = [folds["s1"]["auc"], folds["s2"]["auc"]]
    assert s["mean"]["auc"] == pytest.approx(np.mean(aucs))
    assert s["std"]["auc"] == pytest.approx(np.std(aucs, ddof=1))
    assert s["auc"] == s["mean"]["auc"] and s["eer"] == s["mean"]["eer"]
    assert s["target_rank"] == pytest.approx((1 + folds["s2"]["target_rank"]) / 2)
    assert folds["s2"]["target_rank"] > 1
    assert s["target_first_in_all_folds"] is False
    assert s["num_folds"] == 2 and s["n_target"] == 40 and s["n_other"] == 80
    assert s["per_class"]["o"]["n"] == 40
    expected = np.mean([f["per_class"]["o"]["mean_log_likelihood"] for f in folds.values()])
    assert s["per_class"]["o"]["mean_log_likelihood"] == pytest.approx(expected)
    assert s["per_class"]["t"]["auc"] is None
    assert "f1" in s["mean"] and s["f1"] == s["mean"]["f1"]
    assert set(s["folds"]) == {"s1", "s2"}
    assert s["threshold"] == 1.0  # shared by both folds
    json.dumps(s, allow_nan=False)
    other = dict(folds["s2"], threshold=2.0)
    assert "threshold" not in summarize_folds({"s1": folds["s1"], "s2": other})

    one = summarize_folds({"s1": folds["s1"]})
    assert one["std"]["auc"] == 0.0 and one["target_first_in_all_folds"] is True


def test_summarize_folds_errors():
    with pytest.raises(DataError, match="no folds"):
        summarize_folds({})
    a = _fold(3.0, 0)
    b = dict(a, target="other")
    with pytest.raises(DataError, match="different targets"):
        summarize_folds({"a": a, "b": b})


# --------------------------------------------------------------------------- files


def test_write_evaluation_files(tmp_path):
    rng = np.random.default_rng(0)
    ll = np.concatenate([rng.normal(0, 1, 30), rng.normal(-2, 1, 30), rng.normal(-1, 1, 30)])
    labels = ["zero"] * 30 + ["one"] * 30 + ["two"] * 30
    m = evaluate_scores(ll, labels, "zero", threshold=1.5, dims=4)
    frame = scores_frame(ll, labels, paths=[f"c{i}.wav" for i in range(90)], dims=4)
    out = tmp_path / "eval" / "nested"
    paths = write_evaluation(out, m, frame)
    assert set(paths) == set(EVALUATION_FILES) - {"traces"}  # traces only when given
    for key, path in paths.items():
        assert path == out / EVALUATION_FILES[key] and path.stat().st_size > 0
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == PNG_MAGIC
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left
    saved = json.loads(paths["metrics"].read_text())
    assert saved["auc"] == pytest.approx(m["auc"]) and saved["per_class"]["zero"]["auc"] is None
    pc = pd.read_csv(paths["per_class"])
    assert list(pc.columns) == [
        "label",
        "n",
        "mean_log_likelihood",
        "median_log_likelihood",
        "auc_vs_target",
        "rank",
    ]
    assert list(pc["rank"]) == sorted(pc["rank"])
    sc = pd.read_csv(paths["scores"])
    assert list(sc.columns[:4]) == ["path", "label", "log_likelihood", "anomaly_score"]
    assert np.allclose(sc["anomaly_score"], -ll)
    assert "log_likelihood_per_dim" in sc.columns


def test_write_evaluation_loso_and_missing_anomaly_score(tmp_path):
    folds, frames = {}, []
    for i, name in enumerate(["alice", "bob", "carol"]):
        rng = np.random.default_rng(i)
        ll = np.concatenate([rng.normal(0, 1, 10), rng.normal(-1.5, 1, 20)])
        labels = ["t"] * 10 + ["o"] * 20
        folds[name] = evaluate_scores(ll, labels, "t")
        frames.append(pd.DataFrame({"label": labels, "log_likelihood": ll, "fold": name}))
    summary = summarize_folds(folds)
    paths = write_evaluation(tmp_path, summary, pd.concat(frames, ignore_index=True))
    assert paths["roc"].read_bytes()[:8] == PNG_MAGIC
    sc = pd.read_csv(paths["scores"])
    assert "anomaly_score" in sc.columns and set(sc["fold"]) == {"alice", "bob", "carol"}
    saved = json.loads(paths["metrics"].read_text())
    assert set(saved["folds"]) == {"alice", "bob", "carol"}


def test_write_evaluation_rejects_bad_tables(tmp_path):
    m = evaluate_scores([-1.0, -2.0], ["a", "b"], "a")
    with pytest.raises(DataError, match="log_likelihood"):
        write_evaluation(tmp_path, m, pd.DataFrame({"label": ["a", "b"]}))
    with pytest.raises(DataError, match="target"):
        write_evaluation(tmp_path, {"auc": 1.0}, scores_frame([-1.0], ["a"]))


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    atomic_write(path, b"old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_jsonable_turns_nan_into_null():
    out = evaluation_files._jsonable(
        {"a": float("nan"), "b": np.float32(1.5), "c": [np.int64(2)], "d": Path("x")}
    )
    assert out == {"a": None, "b": 1.5, "c": [2], "d": "x"}
    assert not math.isnan(json.loads(json.dumps(out))["b"])


def test_write_evaluation_writes_given_traces_and_removes_stale_ones(tmp_path):
    from audioar.pipeline.traces import read_traces, trace_arrays

    m = evaluate_scores([-1.0, -2.0, -3.0], ["a", "a", "b"], "a")
    frame = scores_frame([-1.0, -2.0, -3.0], ["a", "a", "b"], paths=["x", "y", "z"])
    example = {
        "path": "z", "label": "b", "speaker": "", "fold": "", "kind": "anomalous",
        "anomaly_score": 3.0, "log_likelihood": -3.0, "trace": np.array([-1.0, -2.0]),
        "spectrogram": np.zeros((3, 4)), "step_seconds": 0.01, "frame_seconds": 0.01,
    }  # fmt: skip
    paths = write_evaluation(tmp_path, m, frame, traces=trace_arrays([example], score="s"))
    assert paths["traces"] == tmp_path / "traces.npz"
    (back,), score = read_traces(paths["traces"])
    assert score == "s" and back["path"] == "z" and back["kind"] == "anomalous"
    np.testing.assert_array_equal(back["trace"], [-1.0, -2.0])
    assert back["spectrogram"].shape == (3, 4) and back["step_seconds"] == 0.01
    paths = write_evaluation(tmp_path, m, frame)  # no traces this time: the old file goes
    assert "traces" not in paths and not (tmp_path / "traces.npz").exists()
