"""The run directory: round trip, atomic writes, overwrite, and clear errors on bad runs."""

import json
import math

import pandas as pd
import pytest
import torch

from audioar.config.recipes import RunConfig, run_config_from_dict, run_config_to_dict
from audioar.errors import ConfigError, RunFormatError
from audioar.pipeline import artifact
from audioar.pipeline.artifact import (
    checkpoint_path_for,
    load_run,
    remove_checkpoint,
    save_run,
)


def write(run_dir, **kwargs):
    values = {
        "config": run_config_to_dict(RunConfig()),
        "state_dict": {"mean": torch.arange(3.0), "norm.running_var": torch.ones(3)},
        "featurizer": {"name": "fft", "sample_rate": 8000, "n_fft": 512, "seconds": 1.0},
        "calibration": {
            "method": "empirical",
            "target_fpr": 0.05,
            "threshold": 1.5,
            "reference": [0.1, 0.2],
            "gamma": None,
        },
        "history": [
            {
                "epoch": 1,
                "train_log_likelihood": -5.0,
                "val_log_likelihood": -6.0,
                "seconds": 0.1,
                "ll_one": -9.0,
            },
            {
                "epoch": 2,
                "train_log_likelihood": -4.0,
                "val_log_likelihood": math.nan,
                "seconds": 0.1,
                "ll_one": -8.5,
            },
        ],
        "extra": {"features": 257, "hidden": (512, 512), "auc": float("nan")},
    }
    values.update(kwargs)
    return save_run(run_dir, **values)


def siblings(path):
    return sorted(p.name for p in path.parent.iterdir())


def test_round_trip(tmp_path):
    run_dir = write(tmp_path / "runs" / "zero")
    assert run_dir == (tmp_path / "runs" / "zero").absolute()
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json", "history.csv", "weights.pt"]
    assert siblings(run_dir) == ["zero"]  # no temp folder left behind
    run = load_run(run_dir)
    assert run_config_from_dict(run.config) == RunConfig()
    assert run.featurizer["n_fft"] == 512 and run.calibration["threshold"] == 1.5
    assert run.extra == {"features": 257, "hidden": [512, 512], "auc": None}
    torch.testing.assert_close(run.state_dict["mean"], torch.arange(3.0))
    assert isinstance(run.history, pd.DataFrame)
    assert list(run.history.columns) == [
        "epoch",
        "train_log_likelihood",
        "val_log_likelihood",
        "seconds",
        "ll_one",
    ]
    assert run.history["ll_one"].tolist() == [-9.0, -8.5]
    assert math.isnan(run.history["val_log_likelihood"][1])
    document = json.loads((run_dir / "config.json").read_text())
    assert document["format_version"] == 2 and document["audioar_version"] == run.audioar_version
    assert run.created.startswith(document["created"][:4])
    # The weights are plain tensors: loadable without unpickling code.
    weights = torch.load(run_dir / "weights.pt", weights_only=True, map_location="cpu")
    assert set(weights) == {"mean", "norm.running_var"}


def test_empty_history_round_trips(tmp_path):
    run = load_run(write(tmp_path / "r", history=[]))
    assert len(run.history) == 0 and "val_log_likelihood" in run.history.columns


def test_existing_run_is_replaced_only_when_asked(tmp_path):
    run_dir = write(tmp_path / "zero")
    with pytest.raises(ConfigError, match="already exists"):
        write(run_dir, extra={"which": "second"})
    assert load_run(run_dir).extra["features"] == 257
    write(run_dir, extra={"which": "second"}, overwrite=True)
    assert load_run(run_dir).extra == {"which": "second"}
    assert siblings(run_dir) == ["zero"]


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(artifact.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write(tmp_path / "zero")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="not tensors: model"):
        write(tmp_path / "zero", state_dict={"model": object()})
    with pytest.raises(ConfigError, match="cannot store"):
        write(tmp_path / "zero", extra={"fn": print})
    assert list(tmp_path.iterdir()) == []


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(RunFormatError, match="run directory not found"):
        load_run(tmp_path / "nothing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunFormatError, match="not a directory"):
        load_run(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunFormatError, match="not an audioar run directory"):
        load_run(tmp_path / "empty")

    run_dir = write(tmp_path / "zero")
    config = run_dir / "config.json"
    good = config.read_text()
    config.write_text("{not json")
    with pytest.raises(RunFormatError, match="config.json: invalid JSON"):
        load_run(run_dir)
    config.write_text(json.dumps({"config": {}}))
    with pytest.raises(RunFormatError, match="no format_version"):
        load_run(run_dir)
    config.write_text(good.replace('"format_version": 2', '"format_version": 3'))
    with pytest.raises(
        RunFormatError,
        match="run was written by format version 3; this audioar reads version 2",
    ):
        load_run(run_dir)
    config.write_text(good)

    weights = run_dir / "weights.pt"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(RunFormatError, match="weights.pt: corrupted or truncated"):
        load_run(run_dir)
    torch.save({"mean": torch.zeros(1), "code": pd.Timestamp(0)}, weights)  # pickled object
    with pytest.raises(RunFormatError, match=r"weights.pt: not a weights file written by audioar"):
        load_run(run_dir)
    weights.unlink()
    with pytest.raises(RunFormatError, match="weights.pt: missing"):
        load_run(run_dir)
    weights.write_bytes(data)
    (run_dir / "history.csv").unlink()
    with pytest.raises(RunFormatError, match="history.csv: missing"):
        load_run(run_dir)


def test_checkpoint_lives_beside_the_run_and_is_removed(tmp_path):
    path = checkpoint_path_for(tmp_path / "runs" / "zero")
    assert path == tmp_path / "runs" / "zero.partial" / "checkpoint.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x")
    run_dir = write(tmp_path / "runs" / "zero")
    assert not path.is_relative_to(run_dir)
    remove_checkpoint(run_dir)
    assert not path.parent.exists()
    remove_checkpoint(run_dir)  # absent: no error
