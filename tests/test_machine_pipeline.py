"""The machine-monitoring pipeline end to end on a tiny DCASE 2020 folder: a windowed MAF
conditioned on the machine IDs (the machine presets), each clip scored against its own ID,
windows aggregated per clip, the DCASE metrics and official files, ``audioar score`` /
``audioar fit`` on the folder, and memory flat in a recording's length when scoring."""

import csv
import json
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from helpers import invoke, write_tone_dataset
from scipy.special import logsumexp

from audioar.config.recipes import RunConfig, apply_overrides, preset_overrides
from audioar.data.discovery import discover
from audioar.data.splits import split
from audioar.errors import DataError
from audioar.evaluation.experiment import evaluate_run
from audioar.pipeline.featurize import featurize
from audioar.pipeline.fit import resolve_data
from audioar.pipeline.runs import fit_run, load_trained
from audioar.pipeline.scoring import own_classes, score_features
from audioar.pipeline.traces import clip_traces, step_seconds

RATE = 16000
#: Machine ID -> base frequency (Hz) of its harmonic tone set.
IDS = {"id_00": 310.0, "id_02": 470.0, "id_04": 650.0}
TRAIN, TEST = 8, 3  # clips per ID: training, and normal / anomalous test clips each
WINDOW, HOP = 0.5, 0.25


def machine_wave(group: str, seconds: float, rng: np.random.Generator, anomaly: bool = False):
    """A machine ID's hum (its harmonic set plus noise); an anomaly adds a 3.1 kHz whine and
    a 20 Hz click train."""
    n = int(round(seconds * RATE))
    t = np.arange(n) / RATE
    base = IDS[group] * rng.uniform(0.99, 1.01)
    wave = sum(a * np.sin(2 * np.pi * k * base * t) for k, a in ((1, 0.3), (2, 0.15), (3, 0.08)))
    wave = wave + 0.02 * rng.standard_normal(n)
    if anomaly:
        wave = wave + 0.2 * np.sin(2 * np.pi * 3100.0 * t)
        wave[:: RATE // 20] += 0.8
    return np.clip(wave, -1, 1).astype(np.float32)


def write_machine_folder(root: Path, seed: int = 0) -> Path:
    """``root/fan/{train,test}`` with DCASE 2020 names; test clips are 2 s or 2.7 s long."""
    rng = np.random.default_rng(seed)
    fan = root / "fan"
    (fan / "train").mkdir(parents=True)
    (fan / "test").mkdir()
    take = 0
    for group in IDS:
        for _ in range(TRAIN):
            sf.write(fan / "train" / f"normal_{group}_{take:08d}.wav",
                     machine_wave(group, 2.0, rng), RATE)  # fmt: skip
            take += 1
        for label in ("normal", "anomaly"):
            for i in range(TEST):
                seconds = 2.7 if i % 2 else 2.0
                wave = machine_wave(group, seconds, rng, anomaly=label == "anomaly")
                sf.write(fan / "test" / f"{label}_{group}_{take:08d}.wav", wave, RATE)
                take += 1
    return fan


def machine_config(root: Path, *extra: str) -> RunConfig:
    """What ``audioar fit`` applies on a machine folder, made small and quick."""
    chosen = [
        f"data.root={root}",
        "model.conditional=true",
        "model.hidden_features=[16]",
        "model.num_flows=2",
        "train.epochs=10",
        "train.batch_size=32",
        f"features.window_seconds={WINDOW}",
        f"features.hop_seconds={HOP}",
        *extra,
    ]
    return apply_overrides(RunConfig(), [*preset_overrides(chosen, machine=True), *chosen])


@pytest.fixture(scope="module")
def fan(tmp_path_factory):
    return write_machine_folder(tmp_path_factory.mktemp("dcase"))


@pytest.fixture(scope="module")
def fitted(fan, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "fan"
    trained, _ = fit_run(machine_config(fan), run_dir, use_cache=False)
    return trained, run_dir


@pytest.fixture(scope="module")
def test_part(fan, fitted):
    """The official test part, featurized: ``(features, clips)``."""
    trained, _ = fitted
    parts = split(discover(fan), "official")
    features, kept, skipped = featurize(trained.featurizer, parts.test, use_cache=False)
    assert not skipped and len(kept) == len(IDS) * 2 * TEST
    return features, kept


@pytest.fixture(scope="module")
def evaluation(fitted, tmp_path_factory):
    trained, _ = fitted
    out = tmp_path_factory.mktemp("eval")
    return evaluate_run(trained, out_dir=out, resamples=20, use_cache=False), out


def samples(path) -> int:
    return sf.info(str(path)).frames


# --------------------------------------------------------------------------- 1. resolve


def test_resolve_data_implies_the_target_and_the_condition(fan, tmp_path):
    dcase = discover(fan)
    assert dcase.layout == "dcase2020" and dcase.groups == list(IDS)
    cfg = resolve_data(RunConfig(), dcase)
    assert (cfg.data.target, cfg.data.condition) == ("normal", "group")
    # an explicit choice is kept
    labelled = apply_overrides(RunConfig(), ["data.condition=label", "data.target=anomaly"])
    cfg = resolve_data(labelled, dcase)
    assert (cfg.data.target, cfg.data.condition) == ("anomaly", "label")

    tones = discover(write_tone_dataset(tmp_path / "tones", speakers=1, takes=6))
    assert tones.layout == "fsdd" and not tones.groups
    cfg = resolve_data(RunConfig(), tones)
    assert (cfg.data.target, cfg.data.condition) == ("zero", "label")
    with pytest.raises(DataError, match="data.condition=group"):
        resolve_data(apply_overrides(RunConfig(), ["data.condition=group"]), tones)


# --------------------------------------------------------------------------- 2. the run


def test_the_run_is_conditioned_on_the_machine_ids(fitted, test_part):
    trained, run_dir = fitted
    assert trained.classes == list(IDS)
    assert trained.by_group and trained.conditional and trained.score == "raw"
    assert trained.model.classes == len(IDS)
    document = json.loads((run_dir / "config.json").read_text())
    stored = document["config"]
    assert stored["data"]["condition"] == "group" and stored["data"]["target"] == "normal"
    assert stored["features"]["window_seconds"] == WINDOW
    assert stored["features"]["sample_rate"] == RATE
    assert document["extra"]["data"]["layout"] == "dcase2020"
    assert document["extra"]["data"]["groups"] == list(IDS)
    assert document["extra"]["model"]["classes"] == list(IDS)

    loaded = load_trained(run_dir)
    assert loaded.classes == trained.classes and loaded.by_group
    features, clips = test_part
    groups = [c.group for c in clips]
    before = score_features(trained, features, groups)
    after = score_features(loaded, features, groups)
    np.testing.assert_allclose(after.windows.per_class, before.windows.per_class, rtol=1e-12)
    np.testing.assert_allclose(after.log_likelihood, before.log_likelihood, rtol=1e-12)


# --------------------------------------------------------------------------- 3. own group


def test_each_clip_is_scored_against_its_own_machine_id(fitted, test_part):
    trained, _ = fitted
    features, clips = test_part
    groups: list[str | None] = [c.group for c in clips]
    scores = score_features(trained, features, groups)
    windows, owner = scores.windows, scores.owner
    column = np.asarray([trained.classes.index(groups[i]) for i in owner])
    np.testing.assert_array_equal(windows.own, column)
    np.testing.assert_array_equal(windows.scored_against, column)
    rows = np.arange(len(owner))
    np.testing.assert_array_equal(windows.log_likelihood, windows.per_class[rows, column])
    # the posterior of the own class, by hand (uniform prior over the IDs)
    by_hand = windows.per_class[rows, column] - logsumexp(windows.per_class, axis=1)
    np.testing.assert_allclose(windows.log_posterior, by_hand, rtol=1e-9, atol=1e-9)
    assert (windows.log_posterior <= 0).all()
    # the model tells the IDs apart: a normal window is most likely under its own ID
    normal = np.asarray([clips[i].label == "normal" for i in owner])
    hits = windows.per_class.argmax(axis=1) == column
    print(f"\nnormal windows most likely under their own ID: {hits[normal].mean():.1%}")
    assert hits[normal].mean() > 0.9
    # a normal clip given another ID is scored against that one, not its most likely one
    clip = next(i for i, c in enumerate(clips) if c.label == "normal")
    moved = [*groups]
    moved[clip] = next(g for g in IDS if g != groups[clip])
    other = score_features(trained, features, moved).windows
    mine, wrong = owner == clip, trained.classes.index(moved[clip])
    np.testing.assert_array_equal(other.log_likelihood[mine], other.per_class[mine, wrong])
    assert other.log_likelihood[mine].mean() < windows.log_likelihood[mine].mean()

    # a clip without a group (or of an ID the model does not know): each window against
    # its most likely ID
    unknown = 0
    groups[unknown] = None
    assert own_classes(trained, [*groups[:1], "id_09", *groups[2:]], len(groups))[1] == -1
    assert own_classes(trained, groups, len(groups))[unknown] == -1
    blind = score_features(trained, features, groups)
    mine = blind.owner == unknown
    best = blind.windows.per_class.argmax(axis=1)
    np.testing.assert_array_equal(blind.windows.scored_against[mine], best[mine])
    np.testing.assert_array_equal(
        blind.windows.log_likelihood[mine], blind.windows.per_class[mine].max(axis=1)
    )
    np.testing.assert_array_equal(
        blind.windows.log_likelihood[~mine], windows.log_likelihood[~mine]
    )
    assert blind.log_likelihood[unknown] >= scores.log_likelihood[unknown]
    # and no groups at all: every clip against its most likely ID
    anyway = score_features(trained, features)
    np.testing.assert_array_equal(anyway.windows.scored_against, best)


# --------------------------------------------------------------------------- 4. windows


def test_windows_counts_aggregates_and_traces(fitted, test_part):
    trained, _ = fitted
    features, clips = test_part
    groups = [c.group for c in clips]
    win = trained.featurizer
    counts = [win.count(samples(c.path)) for c in clips]
    assert {7, 9} <= set(counts)  # 2-s and 2.7-s clips: 1 + (n - window) // hop windows
    assert [len(x) for x in features] == counts
    per_window = score_features(trained, features, groups)
    np.testing.assert_array_equal(per_window.counts, counts)
    values = per_window.window_values("raw")
    assert [len(v) for v in values] == counts

    def scored(how: str) -> np.ndarray:
        cfg = replace(trained.config, score=replace(trained.config.score, aggregate=how))
        return score_features(replace(trained, config=cfg), features, groups).log_likelihood

    mean, worst, median = scored("mean"), scored("max"), scored("quantile:0.5")
    np.testing.assert_allclose(mean, [v.mean() for v in values], rtol=1e-12)
    # max of the anomaly score = the least likely window (higher = more normal)
    np.testing.assert_allclose(worst, [v.min() for v in values], rtol=1e-12)
    np.testing.assert_allclose(median, [np.median(v) for v in values], rtol=1e-12)
    assert (worst <= median).all() and (worst < mean).any()

    traces = clip_traces(trained, features, groups=groups)
    assert [len(t) for t in traces] == counts
    for trace, v in zip(traces, values, strict=True):
        np.testing.assert_allclose(trace, v, rtol=1e-12)
    assert step_seconds(trained.featurizer, trained.spec) == HOP


# --------------------------------------------------------------------------- 5. evaluate


def test_windows_get_their_own_calibration(fitted, fan):
    """listen flags single windows: the run also calibrates on single validation windows
    of normal clips (a clip's mean of windows varies less), stored and loaded back."""
    from audioar.pipeline.calibration import calibrate
    from audioar.pipeline.windows import expand

    trained, run_dir = fitted
    window = trained.window_calibration
    assert window is not None and window.threshold != trained.calibration.threshold
    loaded = load_trained(run_dir)
    assert loaded.window_calibration.to_dict() == window.to_dict()
    # it is the calibration of the validation clips' windows, each against its own ID
    dataset = discover(fan)
    parts = split(dataset, "official", validation_fraction=0.15, seed=0)
    clips = [c for c in parts.validation if c.label == "normal"]
    features, kept, _ = featurize(trained.featurizer, clips, use_cache=False)
    scores = score_features(trained, features, [c.group for c in kept]).windows
    again = calibrate(-scores.score(trained.score), window.target_fpr, method=window.method)
    assert again.threshold == pytest.approx(window.threshold, rel=1e-9)
    assert len(expand(features)[0]) == len(scores.log_likelihood)


def test_evaluate_writes_sections_and_the_official_files(fitted, evaluation, fan):
    trained, _ = fitted
    result, out = evaluation
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["sections"]) == set(IDS)
    for entry in metrics["sections"].values():
        assert (entry["n_normal"], entry["n_anomaly"]) == (TEST, TEST)
    assert metrics["official"]["year"] == 2020 and metrics["official"]["sections"] == len(IDS)
    # the anomalies are loud and clear: the model separates them
    assert metrics["official"]["mean_auc"] > 0.8, metrics["official"]

    table = pd.read_csv(out / "scores.csv")
    assert {"group", "windows"} <= set(table.columns)
    np.testing.assert_array_equal(
        table["windows"], [trained.featurizer.count(samples(p)) for p in table["path"]]
    )
    for group in IDS:
        mine = table[table["group"] == group]
        names = {Path(p).name: s for p, s in zip(mine["path"], mine["anomaly_score"], strict=True)}
        flags = {
            Path(p).name: int(f) for p, f in zip(mine["path"], mine["is_anomaly"], strict=True)
        }
        assert len(names) == 2 * TEST
        with (out / f"anomaly_score_fan_{group}.csv").open(newline="") as f:
            rows = list(csv.reader(f))
        assert len(rows) == len(names)  # one per test clip of the ID, no header
        assert [r[0] for r in rows] == sorted(names)  # base names
        for name, value in rows:
            assert float(value) == pytest.approx(names[name], rel=1e-12)
        with (out / f"decision_result_fan_{group}.csv").open(newline="") as f:
            decisions = list(csv.reader(f))
        assert [r[0] for r in decisions] == sorted(names)
        assert {r[1] for r in decisions} <= {"0", "1"}
        assert {name: int(v) for name, v in decisions} == flags
    assert sorted(p.name for p in out.glob("anomaly_score_*.csv")) == [
        f"anomaly_score_fan_{g}.csv" for g in IDS
    ]
    assert f"official:anomaly_score_fan_{next(iter(IDS))}.csv" in result.files


# --------------------------------------------------------------------------- 6. CLI


def test_score_command_matches_evaluate_and_traces_every_window(fitted, evaluation, fan, tmp_path):
    trained, run_dir = fitted
    result, _ = evaluation
    out, traces = tmp_path / "s.csv", tmp_path / "traces"
    done = invoke("score", fan / "test", "--model", run_dir, "--out", out, "--trace", traces)
    assert done.exit_code == 0, done.output
    scored = pd.read_csv(out)
    assert len(scored) == len(result.scores) and not scored["error"].fillna("").astype(bool).any()
    expected = dict(zip(result.scores["path"].map(lambda p: str(Path(p).resolve())),
                        result.scores["anomaly_score"], strict=True))  # fmt: skip
    got = dict(zip(scored["path"].map(lambda p: str(Path(p).resolve())),
                   scored["anomaly_score"], strict=True))  # fmt: skip
    assert got.keys() == expected.keys()
    for path, value in got.items():
        assert value == pytest.approx(expected[path], rel=1e-9), path

    index = pd.read_csv(traces / "index.csv")
    assert len(index) == len(scored) and (index["step_seconds"] == HOP).all()
    for row in index.itertuples():
        trace = pd.read_csv(traces / row.trace)
        n = trained.featurizer.count(samples(row.path))
        assert len(trace) == row.steps == n
        np.testing.assert_allclose(trace["time_s"], np.arange(n) * HOP, rtol=0, atol=1e-9)
        # the clip's score is the mean of its windows (score.aggregate = mean)
        anomaly = got[str(Path(row.path).resolve())]
        assert -trace["log_likelihood"].mean() == pytest.approx(anomaly, rel=1e-6)


def test_fit_command_on_a_machine_folder_implies_the_normal_class(fan, tmp_path):
    out = tmp_path / "r2"
    sets = ["model.hidden_features=[8]", "model.num_flows=1", "train.batch_size=64"]
    done = invoke(
        "fit", "--data", fan, "--out", out, "--epochs", 2, "--no-cache",
        *[a for s in sets for a in ("--set", s)],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "dcase2020" in done.output and "run saved to" in done.output
    assert "'normal'" in done.output  # fitting maf on class 'normal'
    stored = json.loads((out / "config.json").read_text())["config"]
    assert stored["data"]["target"] == "normal" and stored["data"]["condition"] == "group"
    assert stored["model"]["hidden_features"] == [8]


# --------------------------------------------------------------------------- 7. memory

_PEAK = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path

    start_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    import torch

    torch.set_num_threads(1)
    from audioar.pipeline.runs import load_trained
    from audioar.pipeline.score_files import score_files

    run, wav, traces = sys.argv[1:4]
    trained = load_trained(run)
    tables = list(score_files(trained, [Path(wav)], use_cache=False, trace_dir=traces))
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open("/proc/self/status") as status:
        hwm_kb = int(status.read().split("VmHWM:")[1].split()[0])
    row = tables[0].iloc[0]
    print(json.dumps({"start_kb": start_kb, "peak_kb": peak_kb, "hwm_kb": hwm_kb,
                      "windows": int(row["windows"]), "error": str(row["error"])}))
    """
)
#: Runs its arguments as a child of this small process. A process started straight from
#: pytest inherits pytest's peak RSS in ``ru_maxrss`` (Linux keeps the maximum across fork
#: and exec), so both figures would read pytest's ~0.8 GB and the comparison say nothing.
_LEAN = "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)"


def write_recording(path: Path, seconds: int, chunk: int = 30) -> Path:
    """A machine recording written ``chunk`` seconds at a time (never whole in memory)."""
    rng = np.random.default_rng(7)
    with sf.SoundFile(path, "w", RATE, 1, subtype="PCM_16") as f:
        for start in range(0, seconds, chunk):
            f.write(machine_wave("id_00", min(chunk, seconds - start), rng))
    return path


def peak_of(run_dir: Path, wav: Path, traces: Path) -> dict:
    """Peak RSS of a fresh process that loads the run and scores ``wav`` (with traces)."""
    done = subprocess.run(
        [sys.executable, "-c", _LEAN, sys.executable, "-c", _PEAK, run_dir, wav, traces],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    peak = json.loads(done.stdout.strip().splitlines()[-1])
    assert peak["start_kb"] < 100 * 1024, peak  # its own peak, not its parent's
    assert peak["error"] in ("", "nan"), peak
    return peak


@pytest.mark.slow
def test_scoring_a_ten_minute_recording_takes_the_memory_of_a_short_clip(fitted, tmp_path):
    trained, run_dir = fitted
    short = write_recording(tmp_path / "normal_id_00_00000900.wav", 2)
    long = write_recording(tmp_path / "normal_id_00_00000901.wav", 600)
    n = samples(long)
    assert n == 600 * RATE
    small = peak_of(run_dir, short, tmp_path / "short")
    big = peak_of(run_dir, long, tmp_path / "long")
    count = trained.featurizer.count(n)
    assert small["windows"] == trained.featurizer.count(samples(short)) == 7
    assert big["windows"] == count == 1 + (n - int(WINDOW * RATE)) // int(HOP * RATE)
    trace = pd.read_csv(next((tmp_path / "long").glob("normal_id_00_00000901-*.csv")))
    assert len(trace) == count
    assert trace["time_s"].iloc[-1] == pytest.approx((count - 1) * HOP)
    short_mb, long_mb = small["peak_kb"] / 1024, big["peak_kb"] / 1024
    print(
        f"\npeak RSS scoring (ru_maxrss): 2-s clip {short_mb:.1f} MB, 10-min recording "
        f"{long_mb:.1f} MB (x{long_mb / short_mb:.2f}); VmHWM {small['hwm_kb'] / 1024:.1f} / "
        f"{big['hwm_kb'] / 1024:.1f} MB"
    )
    # Loading the recording whole and featurizing its 2399 windows at once would add the
    # waveform (37 MiB as float32), its overlapping windows (73 MiB) and about ten times a
    # streamed block's spectra (~100 MiB per 256 windows): far above this bound.
    assert long_mb <= 1.5 * short_mb


def test_an_evaluation_set_is_scored_and_its_official_files_written(fitted, fan, tmp_path):
    """DCASE evaluation sets name no label (``id_00_00000000.wav``): evaluate scores them
    and writes the challenge's files instead of refusing."""
    import shutil

    trained, run_dir = fitted
    eval_set = tmp_path / "fan"
    shutil.copytree(fan / "train", eval_set / "train")
    (eval_set / "test").mkdir()
    tested = sorted((fan / "test").glob("*.wav"))
    for i, path in enumerate(tested):  # the development test clips, their labels removed
        group = path.name.split("_id_")[1][:2]
        shutil.copy(path, eval_set / "test" / f"id_{group}_{i:08d}.wav")
    out = tmp_path / "eval"
    result = invoke("evaluate", "--model", run_dir, "--data", eval_set, "--out", out)
    assert result.exit_code == 0, result.output
    assert "scored, not evaluated" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["unlabeled"] == len(tested) and "auc" not in metrics
    rows = sum(len((out / f"anomaly_score_fan_{g}.csv").read_text().splitlines()) for g in IDS)
    assert rows == len(tested)
    assert not (out / "roc.png").exists()
