"""The fit -> load -> score -> evaluate pipeline on a tiny tone data set."""

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from helpers import TINY, write_tone_dataset

from audioar.config.recipes import RunConfig, apply_overrides
from audioar.errors import DataError, RunFormatError, TrainingError
from audioar.evaluation.experiment import evaluate_run
from audioar.models import MAF, InputSpec, Standardized
from audioar.models.standardize import feature_statistics
from audioar.pipeline.artifact import checkpoint_path_for
from audioar.pipeline.runs import fit_run, load_trained
from audioar.pipeline.score_files import expand_inputs, score_files, write_scores


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
    spec = InputSpec("vector", (3,))
    mean, std = feature_statistics(list(x), spec)
    torch.testing.assert_close(mean, x.mean(0))
    torch.testing.assert_close(std, x.std(0))
    wrapped = Standardized(inner, spec, mean, std).eval()
    z = (x - x.mean(0)) / x.std(0)
    expected = inner.log_prob(z) - torch.log(x.std(0)).sum()
    torch.testing.assert_close(wrapped.log_prob(x), expected)
    assert wrapped.log_prob_steps(x).shape == (64, 1)
    torch.testing.assert_close(wrapped.log_prob_steps(x)[:, 0], expected)


def test_image_layout_masks_padded_columns():
    torch.manual_seed(0)
    spec = InputSpec("image", (1, 3, 6))
    frames = [torch.randn(4, 3), torch.randn(9, 3)]  # (time, bins): padded and trimmed
    from audioar.pipeline.inputs import arrange

    items, lengths = arrange(frames, spec)
    assert [tuple(x.shape) for x in items] == [(1, 3, 6), (1, 3, 6)] and lengths == [4, 6]
    torch.testing.assert_close(items[0][0, :, :4], frames[0].t())
    mean, std = feature_statistics(items, spec, lengths)
    assert mean.shape == (1, 3, 1)

    class PerPixel(torch.nn.Module):  # a stand-in image density: standard normal pixels
        conditional = False

        def log_prob_steps(self, z, context=None):
            return (-0.5 * z**2).sum(1)  # (batch, height, width)

        def log_prob(self, z, context=None):
            return self.log_prob_steps(z).flatten(1).sum(1)

    model = Standardized(PerPixel(), spec, mean, std)
    x = torch.stack(items)
    full = model.log_prob(x)
    masked = model.log_prob(x, None, torch.tensor(lengths))
    z = (x - mean) / std
    column = (-0.5 * z**2).sum((1, 2)) - torch.log(std).sum()  # (clips, width)
    torch.testing.assert_close(full, column.sum(1))
    torch.testing.assert_close(masked, torch.stack([column[0, :4].sum(), column[1].sum()]))
    steps = model.log_prob_steps(x, None, torch.tensor(lengths))
    assert steps.shape == (2, 6) and (steps[0, 4:] == 0).all()
    torch.testing.assert_close(steps.sum(1), masked)


def test_fit_writes_a_complete_run(run):
    names = {p.name for p in run.iterdir()}
    assert {"config.json", "weights.pt", "history.csv"} <= names
    assert not checkpoint_path_for(run).parent.exists()  # checkpoint folder removed
    history = pd.read_csv(run / "history.csv")
    assert {"epoch", "train_log_likelihood", "val_log_likelihood", "ll_one", "ll_two"} <= set(
        history.columns
    )
    config = json.loads((run / "config.json").read_text())
    assert config["format_version"] == 2
    assert config["extra"]["data"]["classes"] == ["one", "two", "zero"]
    stored = config["extra"]["model"]
    assert stored["classes"] == ["zero"] and not stored["conditional"]
    assert stored["input"] == {"kind": "vector", "shape": [16], "levels": 0}


def test_loaded_run_scores_like_the_fitted_model(tones, tmp_path):
    trained, _ = fit_run(tiny_config(tones), tmp_path / "r")
    loaded = load_trained(tmp_path / "r")
    x = torch.randn(5, loaded.dims)
    torch.testing.assert_close(loaded.model.log_prob(x), trained.model.log_prob(x))
    assert loaded.classes == ["zero"] and not loaded.conditional and loaded.score == "raw"


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
    config["format_version"] = 1
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunFormatError, match="format version 1; this audioar reads version 2"):
        load_trained(copy)
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    (broken / "weights.pt").write_bytes(b"garbage")
    with pytest.raises(RunFormatError, match="weights.pt: (corrupted|not a weights file)"):
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


def test_score_files_with_traces_skips_bad_clips_and_loses_nothing(run, tones, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    good = sorted(tones.glob("*.wav"))[:4]
    traces = tmp_path / "traces"
    tables = list(score_files(load_trained(run), [good[0], bad, *good[1:]], batch_size=2,
                              trace_dir=traces))  # fmt: skip
    table = pd.concat(tables, ignore_index=True)
    assert len(table) == 5 and list(table.columns[-2:]) == ["trace", "error"]
    assert table.loc[table["path"] == str(bad), "trace"].item() == ""
    assert table.loc[table["path"] == str(bad), "error"].item()
    scored = table[table["error"] == ""]
    assert len(scored) == 4 and scored["log_likelihood"].notna().all()
    index = pd.read_csv(traces / "index.csv")
    assert list(index["path"]) == [str(p) for p in good]  # every batch, in order
    assert sorted(p.name for p in traces.glob("*-*.csv")) == sorted(scored["trace"])
    for _, row in scored.iterrows():  # a vector model: one step, the clip's log-likelihood
        trace = pd.read_csv(traces / row["trace"])
        assert len(trace) == 1 and trace["log_likelihood"][0] == pytest.approx(
            row["log_likelihood"], rel=1e-6
        )
    assert not list(traces.glob(".*tmp"))
