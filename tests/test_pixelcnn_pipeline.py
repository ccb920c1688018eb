"""PixelCNN in the one pipeline: log-mel frames as images, fit, load, score, evaluate, sample."""

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from helpers import invoke

from audioar.config.recipes import RunConfig, apply_overrides
from audioar.data.discovery import discover
from audioar.errors import ConfigError
from audioar.models import PixelCNN
from audioar.pipeline.featurize import featurize
from audioar.pipeline.inputs import arrange
from audioar.pipeline.runs import fit_run, load_trained
from audioar.pipeline.scoring import score_features

#: A fit of a few seconds: tone clips of 0.25-0.4 s give 16-26 frames at hop 128, so a
#: width of 20 frames both pads and trims.
SMALL = [
    "model.name=pixelcnn",
    "model.hidden_channels=8",
    "model.num_layers=2",
    "model.components=2",
    "features.name=stft",
    "features.n_fft=256",
    "features.hop_length=128",
    "features.n_mels=8",
    "features.frames=20",
    "train.epochs=12",
    "train.batch_size=16",
    "train.lr=5e-3",
]


@pytest.fixture(scope="module")
def image_run(tones, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("pixelcnn") / "run"
    cfg = apply_overrides(RunConfig(), [f"data.root={tones}", "data.target=zero", *SMALL])
    trained, _ = fit_run(cfg, run_dir, use_cache=False)
    return trained, run_dir


def test_frames_become_fixed_size_images_of_a_conditional_model(image_run):
    trained, _ = image_run
    assert isinstance(trained.model.model, PixelCNN)
    assert trained.spec.kind == "image" and trained.spec.shape == (1, 8, 20)
    assert trained.conditional and trained.score == "posterior"
    assert trained.model.model.output == "logistic_mixture" and trained.model.model.levels == 0


def test_loaded_run_scores_like_the_fitted_model(image_run, tones):
    trained, run_dir = image_run
    loaded = load_trained(run_dir)
    clips = discover(tones).clips[:12]
    features, _, _ = featurize(trained.featurizer, clips, use_cache=False)
    fitted, again = score_features(trained, features), score_features(loaded, features)
    for name in fitted.available:
        torch.testing.assert_close(again.score(name), fitted.score(name))
    assert "posterior" in fitted.available


def test_padded_columns_do_not_count_and_steps_sum_to_the_clip(image_run, tones):
    trained, _ = image_run
    clips = discover(tones).clips[:6]
    features, _, _ = featurize(trained.featurizer, clips, use_cache=False)
    items, lengths = arrange(features, trained.spec)
    assert min(lengths) < 20 and max(lengths) == 20  # some clips padded, some trimmed
    x, n = torch.stack(items), torch.tensor(lengths)
    labels = torch.zeros(len(items), dtype=torch.long)
    model = trained.model.eval()
    with torch.no_grad():
        ll = model.log_prob(x, labels, n)
        steps = model.log_prob_steps(x, labels, n)
        full = model.log_prob_steps(x, labels, None)
    assert steps.shape == (len(items), 20)
    torch.testing.assert_close(steps.sum(dim=1), ll)
    for row, length in enumerate(lengths):
        assert (steps[row, length:] == 0).all()
        torch.testing.assert_close(steps[row, :length], full[row, :length])


def test_cli_fit_evaluate_score_trace_report_and_sample(tones, tmp_path):
    out = tmp_path / "pix"
    # the presets' 10 MFCCs need at least 10 mel bands: SMALL's 8 bands keep 6
    options = [x for item in [*SMALL[1:], "features.n_mfcc=6"] for x in ("--set", item)]
    result = invoke(
        "fit", "--data", tones, "--class", "zero", "--model", "pixelcnn", "--out", out, *options
    )
    assert result.exit_code == 0, result.output
    assert "class-conditional over 3 classes" in result.output
    result = invoke("evaluate", "--model", out, "--resamples", "50")
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["score"] == "log_posterior"
    assert {"log_likelihood", "nats_per_step", "log_posterior"} <= set(metrics["scores"])
    assert metrics["auc"] > 0.8  # three distinct tone pairs are easy

    scores, traces = tmp_path / "scores.csv", tmp_path / "traces"
    result = invoke("score", tones, "--model", out, "--out", scores, "--trace", traces)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(scores)
    assert table["error"].isna().all() and "log_posterior" in table.columns
    trace = pd.read_csv(next(p for p in traces.glob("*.csv") if p.name != "index.csv"))
    assert 1 <= len(trace) <= 20 and np.isfinite(trace["log_likelihood"]).all()

    result = invoke("report", out)
    assert result.exit_code == 0, result.output
    assert "pixelcnn" in (out / "report.html").read_text()

    wavs = tmp_path / "wavs"
    result = invoke("sample", out, "--class", "one", "-n", "2", "--seconds", "0.2", "--out", wavs)
    assert result.exit_code == 0, result.output
    files = sorted(wavs.glob("*.wav"))
    assert len(files) == 2
    wave, rate = sf.read(files[0])
    assert rate == 8000 and len(wave) == 1600 and np.isfinite(wave).all()


def test_vector_features_are_refused_with_the_layouts_it_takes(tones, tmp_path):
    cfg = apply_overrides(
        RunConfig(), [f"data.root={tones}", "data.target=zero", "model.name=pixelcnn"]
    )
    with pytest.raises(ConfigError, match="model pixelcnn takes image features"):
        fit_run(cfg, tmp_path / "run", use_cache=False)
