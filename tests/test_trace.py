"""Per-step surprise traces: clip_traces, `audioar score --trace`, traces.npz and the report."""

import base64
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import TINY, WAVENET_FRAMES, WAVENET_SMALL, invoke

from audioar.config.recipes import RunConfig, apply_overrides
from audioar.data.discovery import discover, split
from audioar.evaluation.experiment import evaluate_run
from audioar.features import STFT, MuLaw
from audioar.models import InputSpec, Standardized
from audioar.models.pixelcnn import PixelCNN
from audioar.pipeline.calibration import Calibration
from audioar.pipeline.featurize import featurize
from audioar.pipeline.runs import fit_run
from audioar.pipeline.scoring import score_features
from audioar.pipeline.traces import (
    ONE_STEP_NOTE,
    clip_traces,
    pick_examples,
    read_traces,
    step_seconds,
    trace_csv,
    trace_file_name,
)
from audioar.pipeline.trained import TrainedModel
from audioar.report.build import build_report

SMALL = WAVENET_SMALL
FRAMES = WAVENET_FRAMES


@pytest.fixture(scope="module")
def wn_run(tones, tmp_path_factory):
    """A class-conditional WaveNet over log-mel frames (a sequence model)."""
    cfg = apply_overrides(RunConfig(), [f"data.root={tones}", "data.target=zero", *SMALL, *FRAMES])
    run_dir = tmp_path_factory.mktemp("wn") / "run"
    trained, _ = fit_run(cfg, run_dir, use_cache=False)
    return trained, run_dir


@pytest.fixture(scope="module")
def maf_run(tones, tmp_path_factory):
    """A one-class MAF over a vector per clip (one step per clip)."""
    cfg = apply_overrides(RunConfig(), [f"data.root={tones}", "data.target=zero", *TINY])
    run_dir = tmp_path_factory.mktemp("maf") / "run"
    trained, _ = fit_run(cfg, run_dir, use_cache=False)
    return trained, run_dir


def _test_features(tones, trained, every=4):
    clips = split(discover(tones), "official").test[::every]
    features, kept, _ = featurize(trained.featurizer, clips, use_cache=False)
    return features, kept


# --------------------------------------------------------------------------- clip_traces


def test_sequence_traces_sum_to_the_clip_log_likelihood(wn_run, tones):
    trained, _ = wn_run
    features, _ = _test_features(tones, trained)
    lengths = [len(x) for x in features]
    assert len(set(lengths)) > 1  # batches are padded
    traces = clip_traces(trained, features)
    assert [len(t) for t in traces] == lengths  # padding never appears in a trace
    assert all(t.dtype == np.float64 and np.isfinite(t).all() for t in traces)
    scores = score_features(trained, features)  # log p(x | zero), a conditional model
    sums = np.array([t.sum() for t in traces])
    np.testing.assert_allclose(sums, scores.log_likelihood, rtol=1e-5, atol=1e-2)
    alone = clip_traces(trained, features, batch_size=1)  # no padding at all
    for a, b in zip(traces, alone, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
    assert step_seconds(trained.featurizer, trained.spec) == pytest.approx(64 / 8000)


def _image_run(conditional: bool) -> TrainedModel:
    torch.manual_seed(0)
    bins, width = 5, 6
    spec = InputSpec("image", (1, bins, width), 0, 3 if conditional else 0)
    pix = PixelCNN(1, classes=3 if conditional else 0, hidden_channels=8, num_layers=2)
    model = Standardized(pix, spec, torch.zeros(1, bins, 1), torch.ones(1, bins, 1) * 2.0)
    cfg = apply_overrides(RunConfig(), ["data.target=zero"])
    classes = ["one", "two", "zero"] if conditional else ["zero"]
    calibration = Calibration("empirical", 0.05, 0.0, [0.0])
    featurizer = STFT(sample_rate=8000, n_fft=16, hop_length=8, n_mels=bins)
    return TrainedModel(model.eval(), featurizer, calibration, cfg, spec, classes)


@pytest.mark.parametrize("conditional", [True, False])
def test_image_traces_are_the_valid_columns(conditional):
    trained = _image_run(conditional)
    frames = [torch.randn(n, 5) for n in (4, 9, 6, 2)]  # padded, trimmed, exact, padded
    traces = clip_traces(trained, frames)
    assert [len(t) for t in traces] == [4, 6, 6, 2]
    scores = score_features(trained, frames)
    sums = np.array([t.sum() for t in traces])
    np.testing.assert_allclose(sums, scores.log_likelihood, rtol=1e-5, atol=1e-3)
    for x, t in zip(frames, traces, strict=True):  # the same, scored alone
        (alone,) = clip_traces(trained, [x])
        np.testing.assert_allclose(alone, t, rtol=1e-5, atol=1e-4)
    assert step_seconds(trained.featurizer, trained.spec) == pytest.approx(8 / 8000)


def test_a_vector_model_has_one_step_per_clip(maf_run, tones):
    trained, _ = maf_run
    features, _ = _test_features(tones, trained, every=9)
    traces = clip_traces(trained, features)
    assert all(t.shape == (1,) for t in traces)
    np.testing.assert_allclose(
        [t[0] for t in traces], score_features(trained, features).log_likelihood, rtol=1e-5
    )
    assert step_seconds(trained.featurizer, trained.spec) is None
    assert clip_traces(trained, []) == []


def test_mulaw_steps_are_samples():
    spec = InputSpec("sequence", (None,), 16, 0)
    assert step_seconds(MuLaw(sample_rate=2000, bits=4), spec) == pytest.approx(1 / 2000)


def test_trace_file_names_do_not_collide_and_the_csv_format(tmp_path):
    a, b = tmp_path / "a" / "x y.wav", tmp_path / "b" / "x y.wav"
    assert trace_file_name(a) != trace_file_name(b)
    assert trace_file_name(a) == trace_file_name(a)
    assert re.fullmatch(r"x_y-[0-9a-f]{10}\.csv", trace_file_name(a))
    assert trace_csv(np.array([-1.5, -2.25]), 0.008) == (
        "step,time_s,log_likelihood\n0,0,-1.5\n1,0.008,-2.25\n"
    )
    assert trace_csv(np.array([-3.0]), None) == "step,time_s,log_likelihood\n0,,-3\n"


def test_pick_examples():
    score = [5.0, 1.0, 9.0, 2.0, 3.0, 2.5]
    labels = ["o", "t", "o", "t", "t", "t"]
    picks = pick_examples(score, labels, "t", anomalous=2, typical=2)
    assert picks == [(2, "anomalous"), (0, "anomalous"), (3, "typical"), (5, "typical")]
    picks = pick_examples(score, labels, "t", anomalous=1, typical=1, center=1.1)
    assert picks == [(2, "anomalous"), (1, "typical")]
    assert pick_examples([], [], "t") == []


# --------------------------------------------------------------------------- score --trace


def test_score_trace_writes_one_trace_per_good_clip(wn_run, tones, tmp_path):
    _, run_dir = wn_run
    for folder, source in (("a", "zero_spk0_0.wav"), ("b", "one_spk1_0.wav")):
        (tmp_path / folder).mkdir()
        shutil.copy(tones / source, tmp_path / folder / "x.wav")
    (tmp_path / "a" / "bad.wav").write_text("not audio")
    out, traces = tmp_path / "s.csv", tmp_path / "tr"
    result = invoke(
        "score", tmp_path / "a", tmp_path / "b", "--model", run_dir, "--out", out,
        "--trace", traces, "--no-cache",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out, keep_default_na=False).set_index("path")
    assert len(table) == 3
    bad = table.loc[str(tmp_path / "a" / "bad.wav")]
    assert bad["error"] and bad["trace"] == ""
    good = table[table["error"] == ""]
    assert len(good) == 2 and good["log_likelihood"].astype(float).notna().all()
    files = sorted(p.name for p in traces.iterdir())
    assert files == sorted([*good["trace"], "index.csv"])  # x.wav twice: two files
    for _, row in good.iterrows():
        trace = pd.read_csv(traces / row["trace"])
        assert list(trace.columns) == ["step", "time_s", "log_likelihood"]
        assert list(trace["step"]) == list(range(len(trace)))
        np.testing.assert_allclose(trace["time_s"], trace["step"] * 0.008)
        assert trace["log_likelihood"].sum() == pytest.approx(float(row["log_likelihood"]), 1e-5)
    index = pd.read_csv(traces / "index.csv")
    assert set(index["path"]) == set(good.index) and set(index["trace"]) == set(good["trace"])
    assert (index["step_seconds"] == 0.008).all()
    assert not list(tmp_path.rglob(".*tmp"))


def test_score_trace_of_a_vector_model_says_one_step(maf_run, tones, tmp_path):
    _, run_dir = maf_run
    clip = tones / "zero_spk0_0.wav"
    result = invoke("score", clip, "--model", run_dir, "--out", tmp_path / "s.csv",
                    "--trace", tmp_path / "tr")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "one step per clip" in " ".join(result.output.split())
    trace = pd.read_csv(tmp_path / "tr" / trace_file_name(clip))
    assert len(trace) == 1 and trace["time_s"].isna().all()
    file = tmp_path / "file"
    file.write_text("")
    result = invoke("score", clip, "--model", run_dir, "--trace", file)
    assert result.exit_code == 2 and "needs a folder" in result.output


# --------------------------------------------------------------------------- evaluate


def _images(text):
    return re.findall(r'src="data:image/png;base64,([^"]+)"', text)


def test_evaluate_writes_traces_and_the_report_draws_them(wn_run, tmp_path):
    trained, run_dir = wn_run
    evaluation = evaluate_run(trained, out_dir=tmp_path / "eval", use_cache=False)
    m, table = evaluation.metrics, evaluation.scores
    assert evaluation.files["traces"] == tmp_path / "eval" / "traces.npz"
    assert m["traces"]["clips"] == 8 and m["ci"]["method"] == "clips"
    examples, score = read_traces(tmp_path / "eval" / "traces.npz")
    assert score == m["score"] and len(examples) == 8
    top = table.sort_values("anomaly_score", ascending=False)["path"].head(6).tolist()
    assert [e["path"] for e in examples[:6]] == top
    assert all(e["kind"] == "anomalous" for e in examples[:6])
    assert all(e["kind"] == "typical" and e["label"] == "zero" for e in examples[6:])
    ll = table.set_index("path")["log_likelihood"]
    for e in examples:
        assert e["trace"].sum() == pytest.approx(ll[e["path"]], rel=1e-5)
        assert e["log_likelihood"] == pytest.approx(e["trace"].sum())
        assert e["step_seconds"] == pytest.approx(0.008)
        assert e["spectrogram"].ndim == 2 and len(e["spectrogram"]) >= len(e["trace"])

    html_path, md_path = build_report(run_dir, eval_dir=tmp_path / "eval", out_dir=tmp_path)
    text = html_path.read_text()
    assert "Where in the clip" in text and "95% CI [" in text
    assert len(_images(text)) == 4 + 8  # training, ROC, box plot, histogram + 8 traces
    assert base64.b64decode(_images(text)[-1])[:4] == b"\x89PNG"
    md = md_path.read_text()
    links = re.findall(r"!\[[^\]]*\]\((trace_\d+\.png)\)", md)
    assert links == [f"trace_{i}.png" for i in range(1, 9)]
    assert all((tmp_path / link).is_file() for link in links)


def test_a_vector_run_skips_traces_with_a_note(maf_run, tmp_path):
    trained, run_dir = maf_run
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "traces.npz").write_bytes(b"an older evaluation's traces")
    evaluation = evaluate_run(trained, out_dir=tmp_path / "eval", use_cache=False)
    assert evaluation.metrics["traces"] == {"skipped": ONE_STEP_NOTE}
    assert "traces" not in evaluation.files
    assert not (tmp_path / "eval" / "traces.npz").exists()
    html_path, _ = build_report(run_dir, eval_dir=tmp_path / "eval", out_dir=tmp_path)
    text = html_path.read_text()
    assert "No traces: the model has one step per clip" in text
    assert len(_images(text)) == 4


def test_loso_intervals_resample_speakers(maf_run, tmp_path):
    trained, _ = maf_run
    m = evaluate_run(trained, scheme="loso", out_dir=tmp_path, use_cache=False).metrics
    assert m["ci"]["method"] == "speakers" and m["ci"]["groups"] == 3
    for key in ("auc", "pauc", "eer"):
        lo, hi = m["ci"][key]
        assert lo <= m[key] <= hi
    for fold in m["folds"].values():  # one held-out speaker: its clips are resampled
        assert fold["ci"]["method"] == "clips" and "one speaker" in fold["ci"]["note"]
    assert m["pooled"]["ci"]["method"] == "speakers"
    assert 0.0 <= m["pooled"]["auc"] <= 1.0
    for row in (m.get("scores") or {}).values():
        assert row["ci"]["method"] == "speakers"
