"""The fit -> load -> score -> evaluate pipeline on a tiny tone data set."""

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from helpers import TINY, write_tone_dataset

from audioar.artifact import checkpoint_path_for
from audioar.config import RunConfig, apply_overrides
from audioar.errors import DataError, RunFormatError, TrainingError
from audioar.experiment import evaluate_run
from audioar.models import MAF
from audioar.models.standardize import Standardized
from audioar.pipeline import fit_run, load_trained
from audioar.scorer import expand_inputs, score_files, write_scores


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    return write_tone_dataset(tmp_path_factory.mktemp("tones"))


def tiny_config(root, *extra):
    return apply_overrides(RunConfig(), [f"data.root={root}", "data.target=zero", *TINY, *extra])


@pytest.fixture(scope="module")
def run(tones, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "zero"
    fit_run(tiny_config(tones), run_dir)
    return run_dir


def test_standardized_adds_the_log_det_of_the_scaling():
    torch.manual_seed(0)
    x = torch.randn(64, 3) * torch.tensor([5.0, 0.5, 2.0]) + 3
    inner = MAF(3, num_flows=2, hidden_features=(8,), batch_norm=False).eval()
    wrapped = Standardized(inner, x.mean(0), x.std(0)).eval()
    z = (x - x.mean(0)) / x.std(0)
    expected = inner.log_prob(z) - torch.log(x.std(0)).sum()
    torch.testing.assert_close(wrapped.log_prob(x), expected)


def test_fit_writes_a_complete_run(run):
    names = {p.name for p in run.iterdir()}
    assert {"config.json", "weights.pt", "history.csv"} <= names
    assert not checkpoint_path_for(run).parent.exists()  # checkpoint folder removed
    history = pd.read_csv(run / "history.csv")
    assert {"epoch", "train_log_likelihood", "val_log_likelihood", "ll_one", "ll_two"} <= set(
        history.columns
    )
    config = json.loads((run / "config.json").read_text())
    assert config["format_version"] == 1
    assert config["extra"]["data"]["classes"] == ["one", "two", "zero"]


def test_loaded_run_scores_like_the_fitted_model(tones, tmp_path):
    trained, _ = fit_run(tiny_config(tones), tmp_path / "r")
    loaded = load_trained(tmp_path / "r")
    x = torch.randn(5, loaded.dims)
    torch.testing.assert_close(loaded.model.log_prob(x), trained.model.log_prob(x))


def test_evaluate_official_split_separates_tones(run, tmp_path):
    evaluation = evaluate_run(load_trained(run), out_dir=tmp_path / "eval")
    m = evaluation.metrics
    assert m["auc"] > 0.9 and m["target_rank"] == 1
    assert set(m["per_class"]) == {"zero", "one", "two"}
    assert len(evaluation.scores) == 3 * 3 * 5  # takes 0-4 of every class and speaker
    assert (tmp_path / "eval" / "metrics.json").exists()


def test_evaluate_loso_reports_every_fold(run, tmp_path):
    evaluation = evaluate_run(load_trained(run), scheme="loso", out_dir=tmp_path / "loso")
    m = evaluation.metrics
    assert set(m["folds"]) == {"spk0", "spk1", "spk2"}
    assert "mean" in m and 0.0 <= m["auc"] <= 1.0
    assert set(evaluation.scores["fold"]) == {"spk0", "spk1", "spk2"}


def test_score_files_reports_bad_clips_and_scores_the_rest(run, tones, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.full(800, np.nan, dtype=np.float32), 8000, subtype="FLOAT")
    good = sorted(tones.glob("*.wav"))[:4]
    tables = list(score_files(load_trained(run), [*good, bad, nan], batch_size=3))
    table = pd.concat(tables, ignore_index=True)
    assert len(table) == 6
    errors = table.set_index("path")["error"]
    assert errors[str(bad)] and errors[str(nan)]
    scored = table[table["error"] == ""]
    assert len(scored) == 4 and scored["log_likelihood"].notna().all()
    assert ((scored["p_value"] > 0) & (scored["p_value"] <= 1)).all()
    np.testing.assert_allclose(scored["anomaly_score"], -scored["log_likelihood"])


def test_write_scores_csv_and_json(run, tones, tmp_path):
    trained = load_trained(run)
    files = sorted(tones.glob("*.wav"))[:5]
    for name in ("s.csv", "s.json"):
        scored, failed = write_scores(score_files(trained, files, batch_size=2), tmp_path / name)
        assert (scored, failed) == (5, 0)
    assert len(pd.read_csv(tmp_path / "s.csv")) == 5
    records = json.loads((tmp_path / "s.json").read_text())
    assert len(records) == 5 and records[0]["is_anomaly"] in (True, False)
    assert not list(tmp_path.glob(".*tmp"))


def test_expand_inputs_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        expand_inputs([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no audio files"):
        expand_inputs([tmp_path / "empty"])
    manifest = tmp_path / "m.csv"
    manifest.write_text("file\nx.wav\n")
    with pytest.raises(DataError, match="'path' column"):
        expand_inputs([manifest])


def test_unknown_class_lists_the_known_ones(tones, tmp_path):
    cfg = apply_overrides(tiny_config(tones), ["data.target=seven"])
    with pytest.raises(DataError, match="known classes: one, two, zero"):
        fit_run(cfg, tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_a_failed_fit_leaves_no_run_directory(tones, tmp_path):
    cfg = tiny_config(tones, "train.lr=1e12", "train.grad_clip=none", "train.epochs=30")
    with pytest.raises(TrainingError):
        fit_run(cfg, tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_other_format_version_and_corrupted_weights(run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    config = json.loads((copy / "config.json").read_text())
    config["format_version"] = 2
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunFormatError, match="version 2"):
        load_trained(copy)
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    (broken / "weights.pt").write_bytes(b"garbage")
    with pytest.raises(RunFormatError):
        load_trained(broken)


def test_resume_finishes_an_interrupted_fit_with_the_same_weights(tones, tmp_path):
    cfg = tiny_config(tones, "train.patience=100")
    reference, _ = fit_run(cfg, tmp_path / "ref")

    calls = []

    def interrupt(stats, columns):
        calls.append(stats.epoch)
        if stats.epoch == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_run(cfg, tmp_path / "r", on_epoch=interrupt)
    assert not (tmp_path / "r").exists() and checkpoint_path_for(tmp_path / "r").exists()
    resumed, _ = fit_run(cfg, tmp_path / "r", resume=True)
    for a, b in zip(
        reference.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b)
