"""``audioar export``: a run as one TorchScript (or ONNX) file that scores waveforms exactly
as the library does, loads without audioar, batches clips of different lengths, and refuses
what it cannot hold in one line."""

import json
import os
import subprocess
import sys
import textwrap
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import TINY, WAVENET_FRAMES, WAVENET_SMALL, invoke, write_tone_dataset

from audioar.config.recipes import RunConfig, apply_overrides, preset_overrides
from audioar.data.io import load_audio
from audioar.deploy.export import (
    ExportError,
    batch_of,
    export_run,
    export_trained,
    library_scores,
    probe_clips,
    scores_match,
)
from audioar.features import STFT, SegmentSpectrum, WholeWindowFFT, Windowed
from audioar.pipeline.runs import fit_run, load_trained
from audioar.pipeline.score_files import group_of, score_files

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FSDD = Path("/work/shared/data/fsdd/recordings")
DCASE = Path("/work/shared/data/dcase2020-machine-id00")
RATE = 16000  # the machine folder's
IDS = {"id_00": 310.0, "id_02": 470.0, "id_04": 650.0}

#: Few epochs, small networks: each fit takes a second or a few.
FAST = [
    "train.epochs=3",
    "train.batch_size=16",
    "train.patience=3",
    "features.n_mels=8",
    "features.segments=2",
]
SMALL_MAF = ["model.num_flows=2", "model.hidden_features=[16,16]"]
#: Every exported family x features x score on the tone set (``audioar fit`` presets first).
SPEECH = {
    "default": TINY,  # class-conditional MAF, trimmed MFCC segments, class posterior
    "made": ["model.name=made", "model.hidden_features=[32,32]", *FAST],
    "made_mog": ["model.name=made", "model.hidden_features=[16]", "model.output=mog", *FAST],
    "nade": ["model.name=nade", "model.hidden_features=16", *FAST],
    "fvsbn": ["model.name=fvsbn", *FAST],
    "maf_fft": [*SMALL_MAF, "features.name=fft", "features.n_fft=128", *FAST[:3]],
    "maf_fft_windows": [
        *SMALL_MAF,
        "features.name=fft",
        "features.n_fft=128",
        "features.seconds=none",
        "features.window_seconds=0.2",
        "features.hop_seconds=0.1",
        "score.aggregate=quantile:0.7",
        *FAST[:3],
    ],
    "likelihood_ratio": [
        *SMALL_MAF,
        "model.conditional=false",
        "score.method=likelihood_ratio",
        *FAST,
    ],
    "typicality": [
        *SMALL_MAF,
        "score.method=typicality",
        "model.base=mog",
        "model.components=3",
        "model.batch_norm=false",
        "model.permutation=random",
        *FAST,
    ],
    "other_class": [*SMALL_MAF, "score.other_class=true", "model.activation=relu", *FAST],
}
COMBOS = [*SPEECH, "machine", "machine_max"]
#: Largest relative difference from the library per combination (printed at the end).
FIGURES: dict[str, float] = {}


def machine_wave(group: str, seconds: float, rng: np.random.Generator, anomaly: bool = False):
    """A machine ID's hum; an anomaly adds a whine and clicks."""
    t = np.arange(int(round(seconds * RATE))) / RATE
    base = IDS[group] * rng.uniform(0.99, 1.01)
    wave = sum(a * np.sin(2 * np.pi * k * base * t) for k, a in ((1, 0.3), (2, 0.15), (3, 0.08)))
    wave = wave + 0.02 * rng.standard_normal(len(t))
    if anomaly:
        wave = wave + 0.2 * np.sin(2 * np.pi * 3100.0 * t)
        wave[:: RATE // 20] += 0.8
    return np.clip(wave, -1, 1).astype(np.float32)


def write_machine_folder(root: Path) -> Path:
    """A tiny DCASE 2020 folder ``root/fan/{train,test}``; test clips of 0.3-2.3 s."""
    rng = np.random.default_rng(0)
    fan = root / "fan"
    (fan / "train").mkdir(parents=True)
    (fan / "test").mkdir()
    take = 0
    for group in IDS:
        for _ in range(7):
            wave = machine_wave(group, 1.5, rng)
            sf.write(fan / "train" / f"normal_{group}_{take:08d}.wav", wave, RATE)
            take += 1
        for label, seconds in (("normal", 2.3), ("normal", 0.3), ("anomaly", 1.2)):
            wave = machine_wave(group, seconds, rng, anomaly=label == "anomaly")
            sf.write(fan / "test" / f"{label}_{group}_{take:08d}.wav", wave, RATE)
            take += 1
    return fan


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("export-data")
    return {"tones": write_tone_dataset(root / "tones", takes=8), "fan": write_machine_folder(root)}


def config_for(name: str, data: dict) -> RunConfig:
    if name.startswith("machine"):
        chosen = [
            f"data.root={data['fan']}",
            "model.conditional=true",
            "model.hidden_features=[16]",
            "model.num_flows=2",
            "train.epochs=4",
            "train.batch_size=32",
            "features.window_seconds=0.5",
            "features.hop_seconds=0.25",
            *(["score.aggregate=max"] if name == "machine_max" else []),
        ]
        return apply_overrides(RunConfig(), [*preset_overrides(chosen, machine=True), *chosen])
    chosen = [f"data.root={data['tones']}", "data.target=zero", *SPEECH[name]]
    return apply_overrides(RunConfig(), [*preset_overrides(chosen), *chosen])


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory):
    """Fitted runs by combination name, fitted on first use: ``name -> run_dir``."""
    folder = tmp_path_factory.mktemp("export-runs")
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit_run(config_for(name, data), folder / name, use_cache=False)
            made[name] = folder / name
        return made[name]

    return get


def scoring_paths(name: str, data: dict) -> list[Path]:
    """Clips to compare on: the test clips, and real recordings where the machine has them."""
    if name.startswith("machine"):
        paths = sorted((data["fan"] / "test").glob("*.wav"))
        if DCASE.is_dir():  # two real 10-s recordings of machine ID 00
            paths += sorted((DCASE / "test").glob("*.wav"))[:2]
        return paths
    paths = sorted(data["tones"].glob("*_0.wav")) + sorted(data["tones"].glob("*_3.wav"))
    if FSDD.is_dir():  # real speech, 0.14-2.28 s
        paths += [FSDD / f"{d}_{who}_{take}.wav" for d, who, take in FSDD_CLIPS]
    return paths


FSDD_CLIPS = [(0, "jackson", 0), (0, "theo", 7), (3, "nicolas", 2), (7, "yweweler", 9),
              (9, "george", 4), (5, "lucas", 11)]  # fmt: skip


def exported_scores(module, trained, paths):
    """The module's scores of ``paths`` in one padded batch (groups from the file names)."""
    clips = [load_audio(p, trained.featurizer.sample_rate)[0] for p in paths]
    x, lengths = batch_of(clips)
    groups = None
    if trained.by_group:
        index = {c: i for i, c in enumerate(trained.classes)}
        groups = torch.tensor([index.get(group_of(p), -1) for p in paths])
    with torch.no_grad():
        return module(x, lengths, groups).numpy(), clips, groups


def relative(got, want) -> float:
    return float(np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-12)))


# --------------------------------------------------------------------------- equality


@pytest.mark.parametrize("name", COMBOS)
def test_exported_scores_equal_the_library(name, runs, data, tmp_path):
    run_dir = runs(name)
    trained = load_trained(run_dir)
    out = export_run(run_dir, tmp_path / "detector.pt")
    module = torch.jit.load(str(out))
    paths = scoring_paths(name, data)
    table = next(score_files(trained, paths, use_cache=False))
    assert not table["error"].astype(bool).any()
    want = table["anomaly_score"].to_numpy()
    scale = float(table["log_likelihood"].abs().max())  # of a likelihood ratio's terms
    got, _, _ = exported_scores(module, trained, paths)
    FIGURES[name] = relative(got, want)
    assert scores_match(trained, got, want, scale), (name, FIGURES[name])
    assert module.sample_rate == trained.featurizer.sample_rate
    assert module.threshold == pytest.approx(trained.calibration.threshold)
    if trained.config.model.name == "maf":  # the MAF's reference path gives them too
        for model in (trained.model, trained.background):
            if model is not None:
                model.model.block_sparse = False
        reference = next(score_files(trained, paths, use_cache=False))["anomaly_score"]
        assert scores_match(trained, got, reference.to_numpy(), scale)
        FIGURES[f"{name} (MAF reference path)"] = relative(got, reference.to_numpy())


@pytest.mark.parametrize("name", ["default", "machine"])
def test_a_padded_batch_with_lengths_equals_clips_one_by_one(name, runs, data, tmp_path):
    run_dir = runs(name)
    trained = load_trained(run_dir)
    module = torch.jit.load(str(export_run(run_dir, tmp_path / "d.pt")))
    got, clips, groups = exported_scores(module, trained, scoring_paths(name, data))
    assert len({len(c) for c in clips}) > 3  # lengths differ
    for i, clip in enumerate(clips):
        one = None if groups is None else groups[i : i + 1]
        alone = module(torch.from_numpy(clip).unsqueeze(0), None, one)
        np.testing.assert_allclose(alone.numpy(), got[i : i + 1], rtol=1e-5)
    # an unbatched clip, and a batch of two clips in another order
    np.testing.assert_allclose(module(torch.from_numpy(clips[0]), None, None if groups is None
                               else groups[:1]).numpy(), got[:1], rtol=1e-5)  # fmt: skip
    x, lengths = batch_of([clips[2], clips[1]])
    pair = module(x, lengths, None if groups is None else groups[[2, 1]])
    np.testing.assert_allclose(pair.numpy(), got[[2, 1]], rtol=1e-5)


def test_groups_pick_the_class_and_minus_one_the_most_likely(runs, data, tmp_path):
    trained = load_trained(runs("machine"))
    module = torch.jit.load(str(export_trained(trained, tmp_path / "d.pt")))
    paths = scoring_paths("machine", data)[:6]
    clips = [load_audio(p, RATE)[0] for p in paths]
    x, lengths = batch_of(clips)
    unknown = module(x, lengths, torch.full((len(clips),), -1)).numpy()
    np.testing.assert_allclose(module(x, lengths).numpy(), unknown)
    np.testing.assert_allclose(unknown, library_scores(trained, clips, [None] * 6), rtol=1e-3)
    out_of_range = module(x, lengths, torch.full((len(clips),), 99)).numpy()
    np.testing.assert_allclose(out_of_range, unknown)
    for k, group in enumerate(trained.classes):  # each clip against one named group
        given = module(x, lengths, torch.full((len(clips),), k)).numpy()
        np.testing.assert_allclose(given, library_scores(trained, clips, [group] * 6), rtol=1e-3)


def test_threshold_and_is_anomaly(runs, tmp_path):
    trained = load_trained(runs("default"))
    module = torch.jit.load(str(export_trained(trained, tmp_path / "d.pt")))
    assert isinstance(module.sample_rate, int) and module.sample_rate == 8000
    assert isinstance(module.threshold, float)
    assert module.threshold == trained.calibration.threshold
    assert list(module.classes) == trained.classes and module.target == "zero"
    x, lengths = batch_of(probe_clips(8000, (0.3, 0.5, 0.9, 1.4)))
    scores = module(x, lengths)
    assert scores.dtype == torch.float64 and scores.shape == (4,)
    assert torch.equal(module.is_anomaly(x, lengths), scores > module.threshold)
    module.threshold = float(scores.median())  # recalibrated after loading
    assert torch.equal(module.is_anomaly(x, lengths), scores > float(scores.median()))
    with pytest.raises(torch.jit.Error, match="conditioned on groups"):
        module(x, lengths, torch.zeros(4, dtype=torch.int64))


def test_loads_and_runs_in_a_process_without_audioar(runs, tmp_path):
    trained = load_trained(runs("machine"))
    out = export_trained(trained, tmp_path / "machine.pt")
    clips = probe_clips(RATE, (0.2, 1.1, 1.6))
    x, lengths = batch_of(clips)
    np.save(tmp_path / "x.npy", x.numpy())
    np.save(tmp_path / "lengths.npy", lengths.numpy())
    code = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np, torch
        detector = torch.jit.load({str(out)!r})
        x = torch.from_numpy(np.load({str(tmp_path / "x.npy")!r}))
        lengths = torch.from_numpy(np.load({str(tmp_path / "lengths.npy")!r}))
        scores = detector(x, lengths)
        print(json.dumps({{
            "scores": scores.tolist(),
            "flags": detector.is_anomaly(x, lengths).tolist(),
            "sample_rate": detector.sample_rate,
            "threshold": detector.threshold,
            "audioar": [m for m in sys.modules if m.split(".")[0] in ("audioar", "audioar_cli")],
        }}))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["audioar"] == []
    assert result["sample_rate"] == RATE
    assert result["threshold"] == trained.calibration.threshold
    want = library_scores(trained, clips, [None] * 3)
    np.testing.assert_allclose(result["scores"], want, rtol=1e-3)
    assert result["flags"] == [s > trained.calibration.threshold for s in result["scores"]]


# --------------------------------------------------------------------------- featurizers


@pytest.mark.parametrize(
    "featurizer",
    [
        SegmentSpectrum(trim_db=30.0, n_mfcc=8),
        SegmentSpectrum(n_mels=16, segments=3, normalize=False, seconds=0.5, cmvn="mean"),
        WholeWindowFFT(),
        WholeWindowFFT(seconds=None, hop_length=100),
        WholeWindowFFT(seconds=None, mode="blog"),
        Windowed(SegmentSpectrum(n_mels=16, segments=1, normalize=False), 0.5, 0.25),
        Windowed(WholeWindowFFT(seconds=None, n_fft=128), 0.2),
    ],
    ids=lambda f: f.name,
)
def test_scripted_featurizers_give_the_same_numbers(featurizer):
    scripted = torch.jit.script(featurizer)
    x = torch.randn(3, 9000) * torch.linspace(0.01, 1, 9000)
    lengths = torch.tensor([9000, 5000, 300])
    assert torch.equal(scripted(x, lengths), featurizer(x, lengths))
    assert torch.equal(scripted(x), featurizer(x))
    assert torch.equal(scripted(x[1, :4000]), featurizer(x[1, :4000]))


# --------------------------------------------------------------------------- refusals


def one_line_error(call) -> str:
    with pytest.raises(ExportError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and message.startswith("export: ")
    return message


def test_refused_runs_name_why_in_one_line(runs, data, tmp_path):
    trained = load_trained(runs("default"))
    out = tmp_path / "d.pt"
    cfg = trained.config
    complexity = replace(
        trained, config=replace(cfg, score=replace(cfg.score, method="complexity"))
    )
    message = one_line_error(lambda: export_trained(complexity, out))
    assert "complexity" in message and "zlib" in message and "posterior" in message
    stft = replace(trained, featurizer=STFT(seconds=0.5, flatten=True))
    message = one_line_error(lambda: export_trained(stft, out))
    assert "features stft" in message and "segments, fft" in message
    message = one_line_error(lambda: export_trained(trained, out, format="tflite"))
    assert "tflite" in message and "torchscript, onnx" in message
    assert not out.exists() and not list(tmp_path.iterdir())  # nothing written, no debris


def test_a_wavenet_run_is_refused_by_the_library_and_the_cli(data, tmp_path):
    cfg = apply_overrides(
        RunConfig(), [f"data.root={data['tones']}", "data.target=zero", *WAVENET_SMALL,
                      *WAVENET_FRAMES, "train.epochs=1"]
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_run(cfg, tmp_path / "wn", use_cache=False)
    message = one_line_error(lambda: export_run(tmp_path / "wn", tmp_path / "wn.pt"))
    assert "model wavenet is not supported yet" in message
    assert "supported: maf, made, nade, fvsbn" in message
    result = invoke("export", tmp_path / "wn", "--out", tmp_path / "wn.pt")
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: export: model wavenet")
    assert not (tmp_path / "wn.pt").exists()


# --------------------------------------------------------------------------- CLI


def test_cli_writes_a_detector_that_scores_like_the_run(runs, tmp_path):
    run_dir = runs("default")
    result = invoke("export", run_dir, "--format", "torchscript", "--out", tmp_path / "det.pt")
    assert result.exit_code == 0, result.output
    assert "det.pt" in result.output and "torchscript" in result.output
    trained = load_trained(run_dir)
    clips = probe_clips(8000, (0.25, 0.7, 1.9))
    module = torch.jit.load(str(tmp_path / "det.pt"))
    got = module(*batch_of(clips)).numpy()
    assert scores_match(trained, got, library_scores(trained, clips))
    result = invoke("export", run_dir, "--format", "coreml")
    assert result.exit_code == 2 and "error: export: unknown format 'coreml'" in result.output
    result = invoke("export", tmp_path / "missing-run")
    assert result.exit_code == 2 and result.output.startswith("error:")


# --------------------------------------------------------------------------- ONNX


@pytest.mark.parametrize("name", ["default", "machine"])
def test_onnx_graph_scores_like_the_library(name, runs, data, tmp_path):
    pytest.importorskip("onnx", reason="the export extra (onnx, onnxscript) is not installed")
    pytest.importorskip("onnxscript", reason="the export extra is not installed")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    from audioar.deploy.export.onnx import run_onnx

    run_dir = runs(name)
    trained = load_trained(run_dir)
    result = invoke("export", run_dir, "--format", "onnx", "--out", tmp_path / "d.onnx")
    assert result.exit_code == 0, result.output
    paths = scoring_paths(name, data)
    clips = [load_audio(p, trained.featurizer.sample_rate)[0] for p in paths]
    x, lengths = batch_of(clips)
    feed = {"waveform": x, "lengths": lengths}
    groups = None
    if trained.by_group:
        groups = [group_of(p) for p in paths]
        index = {c: i for i, c in enumerate(trained.classes)}
        feed["groups"] = torch.tensor([index.get(g, -1) for g in groups])
    got = run_onnx(tmp_path / "d.onnx", feed)
    want = library_scores(trained, clips, groups)
    FIGURES[f"{name} (ONNX)"] = relative(got, want)
    assert scores_match(trained, got, want)
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "d.onnx")).metadata_props}
    assert int(meta["sample_rate"]) == trained.featurizer.sample_rate
    assert float(meta["threshold"]) == trained.calibration.threshold
    assert json.loads(meta["classes"]) == trained.classes


def test_figures_are_printed(capsys):
    """Prints the largest relative differences (run with -s to see them)."""
    with capsys.disabled():
        for name, value in FIGURES.items():
            print(f"\n{name}: max relative difference {value:.2e}", end="")
