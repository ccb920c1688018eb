"""A class-conditional model (WaveNet) in the one pipeline: fit, load, score, evaluate, sample."""

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from helpers import WAVENET_FRAMES, WAVENET_SMALL, invoke

from audioar.config.recipes import RunConfig, apply_overrides
from audioar.data.discovery import discover, split
from audioar.errors import ConfigError, RunFormatError
from audioar.evaluation.experiment import evaluate_run
from audioar.models import InputSpec, Standardized, WaveNet
from audioar.pipeline.batches import ClipSet, collate, log_likelihoods
from audioar.pipeline.featurize import featurize
from audioar.pipeline.inputs import arrange
from audioar.pipeline.runs import fit_run, load_trained
from audioar.pipeline.score_files import score_files
from audioar.pipeline.scoring import SCORE_COLUMN, class_log_likelihoods, score_features

# The scores of a conditional run without a background model (no likelihood ratio).
SCORES = tuple(c for c in SCORE_COLUMN.values() if c != "log_likelihood_ratio")


SMALL = WAVENET_SMALL
FRAMES = WAVENET_FRAMES
CODES = [
    "features.name=mulaw",
    "features.sample_rate=2000",
    "features.bits=4",
    "features.seconds=0.1",
    "model.output=categorical",
]


def config(root, *extra):
    return apply_overrides(RunConfig(), [f"data.root={root}", "data.target=zero", *SMALL, *extra])


@pytest.fixture(scope="module")
def frames_run(tones, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("wn") / "frames"
    trained, _ = fit_run(config(tones, *FRAMES), run_dir, use_cache=False)
    return trained, run_dir


@pytest.fixture(scope="module")
def codes_run(tones, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("wn") / "codes"
    trained, _ = fit_run(config(tones, *CODES), run_dir, use_cache=False)
    return trained, run_dir


def _sequences(tones, trained):
    parts = split(discover(tones), "official")
    seqs, kept, _ = featurize(trained.featurizer, parts.test[::7], use_cache=False)
    return seqs, kept


@pytest.mark.parametrize("which", ["frames_run", "codes_run"])
def test_loaded_run_scores_like_the_fitted_model(which, tones, request):
    trained, run_dir = request.getfixturevalue(which)
    loaded = load_trained(run_dir)
    assert loaded.classes == ["one", "two", "zero"] and loaded.dims == trained.dims
    seqs, _ = _sequences(tones, trained)
    expected = score_features(trained, seqs).per_class
    np.testing.assert_allclose(score_features(loaded, seqs).per_class, expected, rtol=1e-6)
    assert loaded.calibration.threshold == trained.calibration.threshold
    stored = json.loads((run_dir / "config.json").read_text())["extra"]["model"]
    assert stored["classes"] == ["one", "two", "zero"] and stored["score"] == "posterior"
    assert stored["conditional"] and stored["input"]["kind"] == "sequence"


def test_three_scores_are_consistent(frames_run, tones):
    trained, _ = frames_run
    seqs, _ = _sequences(tones, trained)
    s = score_features(trained, seqs)
    steps = np.array([len(x) for x in seqs])
    assert len(set(steps)) > 1  # variable length clips
    np.testing.assert_allclose(s.nats_per_step, s.log_likelihood / steps)
    assert (s.log_posterior <= 0).all()
    norm = np.log(np.exp(s.per_class - s.per_class.max(1, keepdims=True)).sum(1))
    np.testing.assert_allclose(
        s.log_posterior, s.log_likelihood - s.per_class.max(1) - norm, atol=1e-9
    )
    np.testing.assert_allclose(s.log_likelihood, s.per_class[:, 2])  # "zero" is class 2


def test_all_class_scoring_matches_the_per_class_reference(codes_run, tones):
    trained, _ = codes_run
    seqs, _ = _sequences(tones, trained)
    items, lengths = arrange(seqs, trained.spec)
    fast = class_log_likelihoods(trained.model, items, lengths, batch_size=3)
    for c in range(3):
        data = ClipSet(items, [c] * len(items), lengths)
        ref = log_likelihoods(trained.model, data, batch_size=2, collate_fn=collate)
        torch.testing.assert_close(fast[:, c].float(), ref, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("frames", [True, False])
def test_padding_is_not_counted(frames):
    torch.manual_seed(0)
    output = "gaussian" if frames else "categorical"
    wn = WaveNet(3, 16, 8, 8, max_dilation=4, output=output, in_features=5)
    spec = InputSpec("sequence", (None, 5) if frames else (None,), 0 if frames else 16, 3)
    model = Standardized(wn, spec, torch.randn(5), torch.rand(5) + 0.5).eval()
    if frames:
        seqs = [torch.randn(7, 5), torch.randn(12, 5), torch.randn(3, 5)]
    else:
        seqs = [torch.randint(0, 16, (n,)) for n in (7, 12, 3)]
    x, labels, lengths = collate(list(ClipSet(seqs, [0, 1, 2])))
    batched = model.log_prob(x, labels, lengths)
    alone = torch.cat([model.log_prob(s[None], labels[i : i + 1]) for i, s in enumerate(seqs)])
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-4)
    steps = model.log_prob_steps(x, labels, lengths)
    assert (steps[2, 3:] == 0).all()
    torch.testing.assert_close(steps.sum(1), batched, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(model.log_prob_all_classes(x, lengths)[[0, 1, 2], labels], batched)
    if frames:  # standardising adds -sum(log std) per valid frame only
        z = (x - model.mean) / model.std
        ref = wn.log_prob(z, labels, lengths) - lengths * torch.log(model.std).sum()
        torch.testing.assert_close(batched, ref)


def test_evaluate_reports_all_three_scores(frames_run, tmp_path):
    _, run_dir = frames_run
    result = invoke("evaluate", "--model", run_dir, "--out", tmp_path / "eval")
    assert result.exit_code == 0, result.output
    for name in SCORES:
        assert name in result.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["score"] == "log_posterior" and set(metrics["scores"]) == set(SCORES)
    assert metrics["auc"] == metrics["scores"]["log_posterior"]["auc"]
    assert metrics["auc"] > 0.8
    table = pd.read_csv(tmp_path / "eval" / "scores.csv")
    np.testing.assert_allclose(table["anomaly_score"], -table["log_posterior"])


def test_loso_refits_a_conditional_model_per_speaker(frames_run, tmp_path):
    trained, _ = frames_run
    m = evaluate_run(trained, scheme="loso", out_dir=tmp_path, use_cache=False).metrics
    assert set(m["folds"]) == {"spk0", "spk1", "spk2"}
    assert set(m["scores"]) == set(SCORES)
    aucs = [f["scores"]["log_posterior"]["auc"] for f in m["folds"].values()]
    assert m["scores"]["log_posterior"]["auc"] == pytest.approx(np.mean(aucs))


def test_score_adds_per_class_columns(codes_run, tones):
    trained, run_dir = codes_run
    files = sorted(tones.glob("*_spk1_1.wav"))
    table = pd.concat(score_files(load_trained(run_dir), files, use_cache=False))
    assert {"ll_one", "ll_two", "ll_zero", "nats_per_step", "log_posterior"} <= set(table)
    np.testing.assert_allclose(table["log_likelihood"], table["ll_zero"])
    np.testing.assert_allclose(table["anomaly_score"], -table["log_posterior"])


@pytest.mark.parametrize("which,seconds", [("codes_run", 0.05), ("frames_run", 0.1)])
def test_sample_writes_wav_files(which, seconds, request, tmp_path):
    trained, run_dir = request.getfixturevalue(which)
    result = invoke(
        "sample", run_dir, "--class", "zero", "-n", 2, "--seconds", seconds, "--out", tmp_path
    )
    assert result.exit_code == 0, result.output
    files = sorted(tmp_path.glob("zero_*.wav"))
    assert len(files) == 2
    rate = trained.featurizer.sample_rate
    for f in files:
        info = sf.info(f)
        assert info.samplerate == rate and info.frames == round(seconds * rate)
        assert info.subtype == "PCM_16"
    result = invoke("sample", run_dir, "--class", "seven", "--out", tmp_path)
    assert result.exit_code != 0 and "one, two, zero" in result.output


def test_mismatched_features_and_output_are_config_errors(tones, tmp_path):
    for i, (extra, needle) in enumerate(
        (
            (["features.name=stft", "model.output=categorical"], "gaussian or logistic"),
            (["features.name=mulaw", "model.output=gaussian"], "categorical"),
            (["features.name=segments"], "takes sequence features"),
        )
    ):
        with pytest.raises(ConfigError, match=needle):
            fit_run(config(tones, *extra), tmp_path / f"bad{i}", use_cache=False)
        assert not (tmp_path / f"bad{i}").exists()
        assert not (tmp_path / f"bad{i}.partial").exists()
    result = invoke(
        "fit", "--data", tones, "--model", "wavenet", "--features", "mulaw", "--out",
        tmp_path / "r", "--set", "model.output=gaussian",
    )  # fmt: skip
    assert result.exit_code != 0 and "categorical" in result.output
    assert not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match="score.method=posterior"):
        fit_run(apply_overrides(RunConfig(), [f"data.root={tones}", "score.method=posterior"]),
                tmp_path / "m")  # fmt: skip


def test_cli_fit_picks_frame_defaults(tones, tmp_path):
    out = tmp_path / "run"
    sets = [x for s in SMALL[1:] + ["features.n_mels=8"] for x in ("--set", s)]
    result = invoke(
        "fit", "--data", tones, "--class", "zero", "--model", "wavenet", "--features", "stft",
        "--out", out, "--no-cache", *sets,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert cfg["model"]["output"] == "gaussian"  # from the frame defaults
    assert cfg["features"]["cmvn"] == "mean"  # per-clip normalised frames by default
    assert cfg["model"]["residual_channels"] == 8  # --set wins over the defaults
    history = pd.read_csv(out / "history.csv")
    assert {"ll_one", "ll_two"} <= set(history.columns)


def test_a_run_without_its_class_list_is_refused(frames_run, tmp_path):
    import shutil

    _, run_dir = frames_run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    del config["extra"]["model"]
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunFormatError, match="model input description"):
        load_trained(copy)


def test_bucket_batches_cover_every_item_once_with_similar_lengths():
    from audioar.pipeline.train import bucket_batches

    lengths = torch.randint(1, 200, (103,)).tolist()
    batches = bucket_batches(lengths, 10, torch.Generator().manual_seed(0))
    assert sorted(i for b in batches for i in b) == list(range(103))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches)
    assert spread < 200 * 2  # sorted buckets: total spread about the range, not 11x it
    again = bucket_batches(lengths, 10, torch.Generator().manual_seed(0))
    assert again == batches
    dropped = bucket_batches(lengths[:101], 10, torch.Generator().manual_seed(1), drop_last=True)
    assert len(dropped) == 10 and all(len(b) == 10 for b in dropped)


def test_griffin_lim_inverts_mfcc_frames_and_repeats_with_its_seed():
    from types import SimpleNamespace

    from audioar.features import STFT
    from audioar.pipeline.sampling import frames_to_waveform

    t = torch.arange(3200) / 8000.0
    wave = 0.5 * torch.sin(2 * torch.pi * 440.0 * t)
    mel = STFT(n_fft=256, hop_length=64, n_mels=20)
    mfcc = STFT(n_fft=256, hop_length=64, n_mels=20, n_mfcc=20)  # the whole DCT: invertible
    from_mel = frames_to_waveform(mel(wave), SimpleNamespace(featurizer=mel), 3200, 8)
    from_mfcc = frames_to_waveform(mfcc(wave), SimpleNamespace(featurizer=mfcc), 3200, 8)
    assert from_mfcc.shape == (3200,)
    np.testing.assert_allclose(from_mfcc, from_mel, atol=1e-3)
    other = frames_to_waveform(mel(wave), SimpleNamespace(featurizer=mel), 3200, 8, seed=1)
    assert not np.allclose(other, from_mel, atol=1e-3)  # the seed sets the initial phases
