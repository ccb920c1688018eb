"""The Python API: ``audioar.Detector`` fits, scores, predicts, calibrates, evaluates, and
saves / loads the command line's run directory with the same scores."""

import doctest

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from helpers import invoke

import audioar
from audioar import Detector
from audioar.detector import settings_overrides
from audioar.errors import ConfigError, DataError

SMALL = {"epochs": 4, "hidden_features": [16], "num_flows": 1, "seed": 0}


@pytest.fixture(scope="module")
def fitted(tones, tmp_path_factory):
    """A detector fitted on the tones' "zero", and its saved run directory."""
    det = Detector(**SMALL).fit(tones, target="zero")
    run = det.save(tmp_path_factory.mktemp("det") / "run")
    return det, run


def test_module_examples_run_as_doctests():
    import audioar.detector

    result = doctest.testmod(audioar.detector)
    assert result.attempted > 0 and result.failed == 0


def test_top_level_exports_the_public_api():
    assert audioar.Detector is Detector
    assert audioar.load_audio.__module__ == "audioar.data.io"
    assert {"MAF", "SegmentSpectrum", "Windowed"} <= set(audioar.__all__)
    with pytest.raises(AttributeError):
        audioar.nosuch  # noqa: B018


def test_keyword_settings_become_dotted_overrides():
    over = settings_overrides("maf", {"lr": 1e-4, "seed": 3, "window_seconds": 1.0})
    assert over == ["train.lr=0.0001", "data.seed=3", "train.seed=3", "features.window_seconds=1.0"]
    assert settings_overrides("maf", {"hidden_features": [8, 8], "trim_db": None}) == [
        "model.hidden_features=[8,8]",
        "features.trim_db=none",
    ]
    assert settings_overrides("maf", {"score__method": "raw"}) == ["score.method=raw"]
    with pytest.raises(ConfigError, match="ambiguous.*score__method or calibration__method"):
        settings_overrides("maf", {"method": "raw"})
    with pytest.raises(ConfigError, match="unknown setting 'nosuch'"):
        Detector(nosuch=1)
    with pytest.raises(ConfigError, match="train.lr"):
        Detector(lr=-1.0)  # a bad value fails when the detector is made


def test_unfitted_detector_says_so():
    with pytest.raises(ConfigError, match="not fitted"):
        Detector().predict(["a.wav"])


def test_fit_resolves_like_the_command_line(fitted):
    det, _ = fitted
    cfg = det.config
    assert cfg.data.target == "zero" and cfg.model.settings.hidden_features == (16,)
    assert cfg.features.n_mfcc == 8  # the MAF's presets came first, as in `audioar fit`
    assert det.classes_ == ["one", "two", "zero"]
    assert det.threshold_ == det.trained_.calibration.threshold


def test_python_api_and_cli_give_the_same_scores(fitted, tones, tmp_path):
    det, run = fitted
    clips = sorted(tones.glob("*_0.wav"))
    ours = det.score(clips)
    out = tmp_path / "scores.csv"
    result = invoke("score", *clips, "--model", run, "--out", out)
    assert result.exit_code == 0, result.output
    theirs = pd.read_csv(out)
    assert list(ours.columns) == list(theirs.columns)
    np.testing.assert_allclose(ours["anomaly_score"], theirs["anomaly_score"], rtol=1e-9)
    loaded = Detector.load(run)
    np.testing.assert_allclose(
        loaded.decision_function(clips), ours["anomaly_score"].to_numpy(), rtol=1e-9
    )
    assert loaded.threshold_ == det.threshold_


def test_waveforms_score_like_their_files(fitted, tones):
    det, _ = fitted
    paths = sorted(tones.glob("one_*_1.wav"))[:3]
    pairs = [sf.read(p, dtype="float32") for p in paths]
    from_files = det.decision_function(paths)
    from_waves = det.decision_function([(w, r) for w, r in pairs])
    np.testing.assert_allclose(from_waves, from_files, rtol=1e-6)
    same_length = np.stack([w[:2000] for w, _ in pairs])
    assert det.decision_function(same_length, sample_rate=pairs[0][1]).shape == (3,)


def test_predict_flags_other_words_and_bad_clips_raise(fitted, tones, tmp_path):
    det, _ = fitted
    zeros = sorted(tones.glob("zero_*_[0-4].wav"))
    others = sorted(tones.glob("two_*_[0-4].wav"))
    assert det.predict(others).mean() > det.predict(zeros).mean()
    broken = tmp_path / "broken.wav"
    broken.write_text("not audio")
    table = det.score([zeros[0], broken])
    assert table.loc[1, "error"] and not table.loc[0, "error"]
    with pytest.raises(DataError, match="broken.wav"):
        det.decision_function([zeros[0], broken])


def test_calibrate_and_evaluate(tones, tmp_path):
    det = Detector(**SMALL).fit(tones, target="zero")
    before = det.threshold_
    normal = sorted(tones.glob("zero_*_[0-4].wav"))
    after = det.calibrate(normal, target_fpr=0.2)
    assert det.threshold_ == after.threshold and after.target_fpr == 0.2
    assert det.threshold_ != before
    evaluation = det.evaluate(out=tmp_path / "eval")
    assert evaluation.metrics["target"] == "zero" and 0.0 <= evaluation.metrics["auc"] <= 1.0
    assert (tmp_path / "eval" / "metrics.json").is_file()
    with pytest.raises(ConfigError, match="save the detector"):
        det.report()


def test_list_of_clips_with_labels(tones):
    paths = sorted(tones.glob("*.wav"))
    labels = [p.name.split("_")[0] for p in paths]
    det = Detector(**SMALL).fit(paths, target="zero", labels=labels)
    assert det.classes_ == ["one", "two", "zero"]  # conditional on every label
    with pytest.raises(DataError, match="labels"):
        Detector(**SMALL).fit(paths, labels=labels[:3])
