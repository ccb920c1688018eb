"""``audioar calibrate``: a run's threshold set anew from normal clips, bad clips skipped."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from helpers import TINY, invoke

from audioar.pipeline.calibration import calibrate


@pytest.fixture(scope="module")
def fitted(tones, tmp_path_factory):
    out = tmp_path_factory.mktemp("cal") / "run"
    sets = [x for item in TINY for x in ("--set", item)]
    result = invoke("fit", "--data", tones, "--class", "zero", "--out", out, *sets)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def run(fitted, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(fitted, copy)
    return copy


@pytest.fixture
def site(tones, tmp_path):
    """Twenty normal clips 'recorded on site' and one that cannot be read."""
    folder = tmp_path / "site"
    folder.mkdir()
    for path in sorted(tones.glob("zero_*.wav"))[:20]:
        shutil.copy(path, folder / path.name)
    (folder / "broken.wav").write_bytes(b"not audio")
    return folder


def _config(run):
    return json.loads((run / "config.json").read_text())


def test_threshold_is_the_calibration_of_the_clips_scores(run, site, tmp_path):
    result = invoke("score", site, "--model", run, "--out", tmp_path / "before.csv")
    assert result.exit_code == 0, result.output
    before = pd.read_csv(tmp_path / "before.csv")
    scores = before["anomaly_score"][before["error"].isna()].to_numpy()
    assert len(scores) == 20
    old = _config(run)["calibration"]

    result = invoke("calibrate", site, "--model", run, "--target-fpr", "0.1")
    assert result.exit_code == 0, result.output
    assert "broken.wav" in result.output and "1 skipped" in result.output
    document = _config(run)
    want = calibrate(scores, 0.1, "empirical")
    assert document["calibration"]["threshold"] == pytest.approx(want.threshold, rel=1e-6)
    assert document["calibration"]["threshold"] != old["threshold"]
    assert document["calibration"]["target_fpr"] == 0.1
    assert document["extra"]["calibration_source"]["clips"] == 20
    assert document["extra"]["calibration_source"]["skipped"] == 1
    result = invoke("report", run)
    assert result.exit_code == 0, result.output
    assert f"20 clips of {site}" in (run / "report.md").read_text()

    # scoring reads the new threshold: at most 10 % of the clips it was set on are flagged
    result = invoke("score", site, "--model", run, "--out", tmp_path / "after.csv")
    after = pd.read_csv(tmp_path / "after.csv").dropna(subset=["anomaly_score"])
    flagged = after["is_anomaly"].astype(bool)
    assert flagged.mean() <= 0.1
    np.testing.assert_array_equal(flagged, after["anomaly_score"] > want.threshold)


def test_method_and_defaults_come_from_the_run(run, site):
    result = invoke("calibrate", site, "--model", run, "--method", "gamma")
    assert result.exit_code == 0, result.output
    calibration = _config(run)["calibration"]
    assert calibration["method"] == "gamma" and calibration["gamma"]
    assert calibration["target_fpr"] == 0.05  # the run's


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--target-fpr", "2"], "target_fpr"),
        (["--method", "median"], "method"),
    ],
)
def test_bad_settings_are_one_line_and_leave_the_run_alone(run, site, args, needle):
    before = (run / "config.json").read_text()
    result = invoke("calibrate", site, "--model", run, *args)
    assert result.exit_code != 0 and "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error:") and needle in last
    assert (run / "config.json").read_text() == before


def test_too_few_clips_is_one_line_and_leaves_the_run_alone(run, tones, tmp_path):
    folder = tmp_path / "few"
    folder.mkdir()
    for path in sorted(tones.glob("zero_*.wav"))[:3]:
        shutil.copy(path, folder / path.name)
    before = (run / "config.json").read_text()
    result = invoke("calibrate", folder, "--model", run)
    assert result.exit_code != 0
    assert "at least 5 normal clips; 3 of 3 could be scored" in result.output
    assert (run / "config.json").read_text() == before
    result = invoke("calibrate", tmp_path / "missing", "--model", run)
    assert result.exit_code != 0 and "no such file or folder" in result.output
