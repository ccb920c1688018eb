"""The command line: happy path on a tiny data set, and one clear line for bad input."""

import json
import math

import pandas as pd
import pytest
from helpers import TINY, invoke


def sets():
    return [x for item in TINY for x in ("--set", item)]


@pytest.fixture(scope="module")
def run(tones, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = invoke("fit", "--data", tones, "--class", "zero", "--out", out, *sets())
    assert result.exit_code == 0, result.output
    assert "run saved to" in result.output
    return out


def assert_one_line_error(result, *needles):
    assert result.exit_code != 0
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error:"), result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output


def test_fit_shows_the_comparison_table_and_writes_history(run):
    history = pd.read_csv(run / "history.csv")
    assert {"ll_one", "ll_two"} <= set(history.columns)


def test_score_evaluate_report(run, tones, tmp_path):
    out = tmp_path / "scores.csv"
    result = invoke("score", tones, "--model", run, "--out", out)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert len(table) == 180 and table["error"].isna().all()
    assert {"log_likelihood", "nats_per_dim", "anomaly_score", "p_value", "is_anomaly"} <= set(
        table.columns
    )

    result = invoke("evaluate", "--model", run)
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert {"auc", "pauc", "eer", "target_rank", "per_class"} <= set(metrics)
    assert "AUC" in result.output

    result = invoke("report", run)
    assert result.exit_code == 0, result.output
    html = (run / "report.html").read_text()
    assert "data:image/png;base64," in html and (run / "report.md").exists()


def test_score_to_stdout_and_json(run, tones, tmp_path):
    files = sorted(tones.glob("zero_*.wav"))[:3]
    result = invoke("score", *files, "--model", run)
    assert result.exit_code == 0 and result.output.startswith("path,log_likelihood")
    result = invoke("score", *files, "--model", run, "--out", tmp_path / "s.json")
    assert result.exit_code == 0
    assert len(json.loads((tmp_path / "s.json").read_text())) == 3


def test_score_keeps_going_past_a_bad_clip_unless_strict(run, tones, tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF....garbage")
    good = sorted(tones.glob("one_*.wav"))[:2]
    out = tmp_path / "s.csv"
    result = invoke("score", *good, bad, "--model", run, "--out", out)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert table["error"].notna().sum() == 1 and table["log_likelihood"].notna().sum() == 2
    result = invoke("score", *good, bad, "--model", run, "--out", tmp_path / "t.csv", "--strict")
    assert_one_line_error(result, "broken.wav")
    assert not (tmp_path / "t.csv").exists()
    result = invoke("score", bad, "--model", run, "--out", tmp_path / "u.csv")
    assert_one_line_error(result, "no clip could be scored")


def test_bad_input_gives_one_clear_line(run, tones, tmp_path):
    assert_one_line_error(
        invoke("fit", "--data", tmp_path / "nope", "--out", tmp_path / "r"), "nope"
    )
    (tmp_path / "empty").mkdir()
    assert_one_line_error(invoke("fit", "--data", tmp_path / "empty", "--out", tmp_path / "r"))
    result = invoke("fit", "--data", tones, "--class", "seven", "--out", tmp_path / "r")
    assert_one_line_error(result, "seven", "one, two, zero")
    assert not (tmp_path / "r").exists()
    assert_one_line_error(invoke("fit", "--out", tmp_path / "r", "--set", "train.lr=abc"), "lr")
    assert_one_line_error(invoke("score", tmp_path / "empty", "--model", run), "no audio")
    assert_one_line_error(invoke("score", tones, "--model", tmp_path / "norun"), "norun")
    assert_one_line_error(invoke("evaluate", "--model", tmp_path / "norun"), "norun")
    assert_one_line_error(invoke("report", tmp_path / "norun"), "norun")
    assert_one_line_error(invoke("fit", "--data", tones, "--out", run), "exists")


@pytest.mark.parametrize(
    ("environ", "busy", "expected"),
    [
        ({}, 0.1, {"GOMP_SPINCOUNT": "10000"}),  # idle: a short spin
        ({}, 0.49, {"GOMP_SPINCOUNT": "10000"}),
        ({}, 0.5, {"OMP_WAIT_POLICY": "PASSIVE"}),  # half the cores busy: sleep
        ({}, 1.0, {"OMP_WAIT_POLICY": "PASSIVE"}),
        ({}, float("nan"), {"OMP_WAIT_POLICY": "PASSIVE"}),  # unknown
        ({"OMP_WAIT_POLICY": "ACTIVE"}, 1.0, {}),  # the user's choice wins
        ({"GOMP_SPINCOUNT": "0"}, 0.0, {}),
    ],
)
def test_openmp_wait_follows_the_load_and_the_user(environ, busy, expected):
    from audioar_cli.openmp import openmp_wait_settings

    assert openmp_wait_settings(environ, busy) == expected


def test_busy_share_reads_proc_stat_lines():
    from audioar_cli.openmp import busy_share

    before = "cpu  100 0 50 800 50 0 0 0 0 0"
    # 300 jiffies pass: 120 user + 30 system busy, 140 idle + 10 iowait idle.
    after = "cpu  220 0 80 940 60 0 0 0 0 0"
    assert busy_share(before, after) == pytest.approx(0.5)
    assert math.isnan(busy_share(before, before))  # no time passed
    assert math.isnan(busy_share("cpu  x y", after))


@pytest.mark.parametrize(
    ("family", "settings"),
    [
        ("made", ["model.hidden_features=[32,32]"]),
        ("nade", ["model.hidden_features=16"]),  # the preset picks the mixture output
        ("fvsbn", []),  # the preset picks the Gaussian output
    ],
)
def test_every_vector_family_fits_and_evaluates_through_the_one_pipeline(
    family, settings, tones, tmp_path
):
    out = tmp_path / family
    common = ["train.epochs=6", "train.batch_size=16", "features.n_mels=8", "features.segments=2"]
    options = [x for item in [*common, *settings] for x in ("--set", item)]
    result = invoke("fit", "--data", tones, "--model", family, "--out", out, *options)
    assert result.exit_code == 0, result.output
    result = invoke("evaluate", "--model", out)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["score"] == "log_likelihood" and metrics["auc"] > 0.8


def test_model_help_lists_the_registry():
    from audioar.models.build import FAMILIES

    result = invoke("fit", "--help")
    for name in FAMILIES:
        assert name in result.output
