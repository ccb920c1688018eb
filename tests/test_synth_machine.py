"""The synthetic machine-sound data set (DCASE 2020 Task 2 layout): layout, format,
determinism, anomalies, cache, CLI."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import invoke

from audioar.data import synth
from audioar.data.synth import machine
from audioar.errors import ConfigError, DataError

SMALL = {
    "ids": (0, 2),
    "train_clips": 4,
    "test_normal": 2,
    "test_anomaly": 3,
    "seconds": 1.0,
    "sample_rate": 8000,
}


def _digest(root: Path, pattern: str = "**/*") -> str:
    """Hash of the relative paths and bytes of the files matching ``pattern``."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.glob(pattern) if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _names(ids: tuple[int, ...], label: str, count: int) -> list[str]:
    return [f"{label}_id_{i:02d}_{k:08d}.wav" for i in ids for k in range(count)]


def _log_mel_means(paths: list[Path]) -> np.ndarray:
    """The reference detector's features: per clip the mean over frames of a 64-band
    log-mel spectrogram (n_fft 1024, hop 512), shape (clips, 64)."""
    import librosa

    rows = []
    for path in paths:
        y, sr = sf.read(path)
        mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=1024, hop_length=512, n_mels=64)
        rows.append(np.log(mel + 1e-10).mean(axis=1))
    return np.stack(rows)


@pytest.fixture(scope="module")
def detector_set(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A small 16 kHz set and its features per ID: train, test, test labels (1 = anomaly)."""
    root = synth.synthesize_machine_dataset(
        tmp_path_factory.mktemp("det") / "out",
        ids=(0, 2, 4, 6),
        train_clips=30,  # a 64-dimensional Gaussian needs them
        test_normal=12,
        test_anomaly=12,
        seconds=1.5,
    )
    out = {}
    for i in (0, 2, 4, 6):
        train = sorted((root / "train").glob(f"normal_id_{i:02d}_*.wav"))
        test = sorted((root / "test").glob(f"*_id_{i:02d}_*.wav"))
        labels = np.array([p.name.startswith("anomaly") for p in test], dtype=int)
        out[i] = (_log_mel_means(train), _log_mel_means(test), labels)
    return out


# --------------------------------------------------------------------------- package
def test_package_reexports_the_machine_names():
    assert set(machine.__all__) <= set(synth.__all__)
    for name in machine.__all__:
        assert getattr(synth, name) is getattr(machine, name), name


# --------------------------------------------------------------------------- layout
def test_layout_names_counts_and_metadata(tmp_path):
    root = synth.synthesize_machine_dataset(tmp_path / "out", seed=1, **SMALL)
    assert root == tmp_path / "out" / "fan"
    # OUT holds the machine folder, the README and the metadata; the machine folder only
    # train/ and test/ (DCASE 2020 layout).
    assert sorted(p.name for p in root.parent.iterdir()) == sorted(
        [synth.MARKER_FILE, "README.md", "fan"]
    )
    assert sorted(p.name for p in root.iterdir()) == ["test", "train"]
    train = sorted(p.name for p in (root / "train").iterdir())
    test = sorted(p.name for p in (root / "test").iterdir())
    assert train == sorted(_names((0, 2), "normal", 4))
    assert test == sorted(_names((0, 2), "normal", 2) + _names((0, 2), "anomaly", 3))
    assert not list(tmp_path.glob(".*"))  # no temporary folders left behind

    meta = synth.read_machine_metadata(root)
    assert meta == synth.read_machine_metadata(root.parent)  # OUT or OUT/<machine>
    assert (meta["machine"], meta["ids"], meta["seed"], meta["clips"]) == ("fan", [0, 2], 1, 18)
    assert set(meta["characters"]) == {"00", "02"}
    files = {r["file"]: r for r in meta["files"]}
    on_disk = {str(p.relative_to(root.parent)) for p in root.rglob("*.wav")}
    assert set(files) == on_disk
    for name, record in files.items():
        assert record["label"] == Path(name).name.split("_")[0]
        assert record["id"] == int(Path(name).name.split("_")[2])
        assert 0.0 <= record["snr_db"] <= 15.0 and abs(record["level_db"]) <= 2.0
        if record["label"] == "anomaly":
            assert record["anomaly"] in synth.ANOMALY_TYPES and record["severity"] > 0
            assert 0.0 <= record["onset_s"] <= 0.6 * SMALL["seconds"]  # >= 40 % anomalous
        else:
            assert "anomaly" not in record
    readme = (root.parent / "README.md").read_text()
    assert "DCASE 2020" in readme and "seed **1**" in readme and "00, 02" in readme


def test_clip_format_8k_and_16k(tmp_path):
    for rate, seconds in ((8000, 1.0), (16000, 0.5)):
        options = {**SMALL, "sample_rate": rate, "seconds": seconds, "ids": (4,)}
        root = synth.synthesize_machine_dataset(tmp_path / str(rate), **options)
        length = round(rate * seconds)
        assert synth.read_machine_metadata(root)["sample_rate"] == rate
        for path in sorted(root.rglob("*.wav")):
            info = sf.info(path)
            assert (info.samplerate, info.channels, info.frames, info.subtype) == (
                rate,
                1,
                length,
                "PCM_16",
            )
            assert path.stat().st_size == 44 + 2 * length  # plain header, like DCASE's
            audio = sf.read(path, dtype="int16")[0].astype(np.int32)
            assert 500 < np.abs(audio).max() < 32767, path  # audible, not clipped


def test_determinism(tmp_path):
    a = synth.synthesize_machine_dataset(tmp_path / "a", seed=3, **SMALL).parent
    b = synth.synthesize_machine_dataset(tmp_path / "b", seed=3, **SMALL).parent
    c = synth.synthesize_machine_dataset(tmp_path / "c", seed=4, **SMALL).parent
    assert _digest(a) == _digest(b)  # every file, README and metadata included
    assert _digest(a, "fan/*/*.wav") != _digest(c, "fan/*/*.wav")
    # Every clip differs from every other (no repeated draws across IDs, splits, labels).
    clips = {p.read_bytes() for p in a.rglob("*.wav")}
    assert len(clips) == synth.read_machine_metadata(a)["clips"]


def test_bad_options():
    bad_options = (
        {"machine": "drill"},
        {"ids": ()},
        {"ids": (1, 1)},
        {"ids": (100,)},
        {"ids": ("x",)},
        {"sample_rate": 22050},
        {"seed": -1},
        {"train_clips": 0},
        {"test_anomaly": -1},
        {"seconds": 0.1},
    )
    for bad in bad_options:
        with pytest.raises(ConfigError):
            synth.synthesize_machine_dataset("unused", **bad)


def test_existing_folder_rules(tmp_path):
    out = tmp_path / "out"
    out.mkdir()  # empty: fine
    synth.synthesize_machine_dataset(out, **SMALL)
    first = _digest(out)
    with pytest.raises(DataError, match="not empty"):
        synth.synthesize_machine_dataset(out, **SMALL)
    root = synth.synthesize_machine_dataset(out, seed=5, force=True, machine="pump", **SMALL)
    assert _digest(out) != first and synth.read_machine_metadata(root)["seed"] == 5
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["pump"]  # replaced whole
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="refusing"):
        synth.synthesize_machine_dataset(other, force=True, **SMALL)
    assert (other / "notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        synth.synthesize_machine_dataset(tmp_path / "file", **SMALL)
    with pytest.raises(DataError):
        synth.read_machine_metadata(other)


def test_failure_leaves_nothing_behind(tmp_path, monkeypatch):
    real, calls = machine._clip, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(machine, "_clip", failing)
    with pytest.raises(RuntimeError):
        synth.synthesize_machine_dataset(tmp_path / "out", **SMALL)
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- the sound
def test_machine_ids_have_their_own_character():
    chars = [synth.machine_character("fan", i, seed=0) for i in (0, 2, 4, 6)]
    assert synth.machine_character("fan", 2, seed=0) == chars[1]
    assert synth.machine_character("fan", 2, seed=1) != chars[1]
    speeds = sorted(c.rotation_hz for c in chars)
    assert np.min(np.diff(speeds)) > 2.0  # IDs spread over the speed range
    assert all(15.0 <= s <= 50.0 for s in speeds)
    assert len({c.resonances for c in chars}) == 4
    json.dumps([c.__dict__ for c in chars])  # plain numbers (the metadata holds them)
    pump = synth.machine_character("pump", 0, seed=0)
    assert (
        synth.MACHINE_TYPES["pump"].blades[0]
        <= pump.blades
        <= synth.MACHINE_TYPES["pump"].blades[1]
    )


@pytest.mark.parametrize("kind", synth.ANOMALY_TYPES)
def test_anomaly_changes_the_clip_from_its_onset_only(kind, monkeypatch):
    """Normal and anomaly draws are separate: at severity 0 an anomalous clip is the normal
    clip itself; otherwise it is the same up to the onset and differs after it."""
    char = synth.machine_character("fan", 2, seed=0)
    sr, n = 8000, 16000
    for index in range(40):
        key = (7, index)
        clip, record = machine._clip(char, key, n, sr, kind)
        if record["onset_s"] > 0.3:
            break
    normal, normal_record = machine._clip(char, key, n, sr, None)
    assert {k: record[k] for k in normal_record} == normal_record
    onset = int(record["onset_s"] * sr)
    np.testing.assert_array_equal(clip[:onset], normal[:onset])
    after = (clip[onset:].astype(float) - normal[onset:]) ** 2
    assert after.mean() > 1e-3 * (normal[onset:].astype(float) ** 2).mean()
    monkeypatch.setattr(machine, "ANOMALY_SEVERITY", 0.0)
    silent, _ = machine._clip(char, key, n, sr, kind)
    np.testing.assert_array_equal(silent, normal)


def test_reference_detector_finds_anomalies_but_not_all(detector_set):
    """A Gaussian per machine ID on mean log-mel spectra (Ledoit-Wolf covariance),
    Mahalanobis distance as the anomaly score: good, far from perfect."""
    from sklearn.covariance import LedoitWolf
    from sklearn.metrics import roc_auc_score

    aucs = {}
    for i, (train, test, labels) in detector_set.items():
        aucs[i] = roc_auc_score(labels, LedoitWolf().fit(train).mahalanobis(test))
    mean = float(np.mean(list(aucs.values())))
    print(f"\nreference detector AUC per ID {aucs}, mean {mean:.3f}")
    assert 0.6 < mean < 0.97


def test_machine_ids_differ(detector_set):
    """Normal clips of another ID are unusual under an ID's Gaussian: the ID matters."""
    from sklearn.covariance import LedoitWolf
    from sklearn.metrics import roc_auc_score

    for i, (train, test, labels) in detector_set.items():
        model = LedoitWolf().fit(train)
        own = model.mahalanobis(test[labels == 0])
        for j, (_, other_test, other_labels) in detector_set.items():
            if j != i:
                other = model.mahalanobis(other_test[other_labels == 0])
                y = np.r_[np.zeros(own.size), np.ones(other.size)]
                assert roc_auc_score(y, np.r_[own, other]) > 0.95, (i, j)


# --------------------------------------------------------------------------- cache
def test_default_machine_dataset_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIOAR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(machine, "DEFAULT_MACHINE_IDS", (0,))
    monkeypatch.setattr(machine, "_DEFAULT_COUNTS", (2, 1, 1))
    monkeypatch.setattr(machine, "_DEFAULT_SECONDS", 0.5)
    target = tmp_path / "cache" / synth.default_machine_dataset_name()
    assert target.name == "synth-machine-v1-fan-seed0"
    target.mkdir(parents=True)  # a stale folder without the marker: replaced, never returned
    (target / "fan").mkdir()
    root = synth.default_machine_dataset()
    assert root == target / "fan"
    assert len(list(root.rglob("*.wav"))) == 4
    assert synth.read_machine_metadata(root)["sample_rate"] == 16000
    before = (target / synth.MARKER_FILE).stat().st_mtime_ns
    assert synth.default_machine_dataset() == root  # reused, not regenerated
    assert (target / synth.MARKER_FILE).stat().st_mtime_ns == before
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]
    with pytest.raises(ConfigError):
        synth.default_machine_dataset(machine="drill")


# --------------------------------------------------------------------------- CLI
def _lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.strip()]


def test_cli_machine_set_and_errors(tmp_path):
    out = tmp_path / "cli"
    args = ["data", "synth", "--kind", "machine", out, "--ids", "0,2", "--sample-rate", "8000"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    lines = _lines(result)
    assert len(lines) == 1 and lines[0].startswith("wrote 140 clips (fan, IDs 00, 02")
    assert "8000 Hz" in lines[0] and "seed 0" in lines[0] and "MB" in lines[0]
    assert sorted(p.name for p in (out / "fan").iterdir()) == ["test", "train"]
    assert len(list((out / "fan" / "train").glob("normal_id_02_*.wav"))) == 30

    result = invoke(*args)  # exists: one line, no traceback
    assert result.exit_code != 0 and len(_lines(result)) == 1
    assert _lines(result)[0].startswith("error:") and "not empty" in result.output

    result = invoke(*args, "--force", "--seed", "2")
    assert result.exit_code == 0 and synth.read_machine_metadata(out)["seed"] == 2

    for bad, words in (
        (["--ids", "0,x"], "ids"),
        (["--machine", "drill"], "drill"),
        (["--sample-rate", "44100"], "sample_rate"),
        (["--speakers", "5"], "--speakers"),
    ):
        result = invoke("data", "synth", "--kind", "machine", tmp_path / "bad", *bad)
        assert result.exit_code != 0, bad
        assert len(_lines(result)) == 1 and _lines(result)[0].startswith("error:"), bad
        assert words in result.output, bad
    for bad, words in ((["--kind", "robot"], "robot"), (["--ids", "1"], "--ids")):
        result = invoke("data", "synth", tmp_path / "bad", *bad)
        assert result.exit_code != 0 and words in result.output, bad
        assert len(_lines(result)) == 1 and _lines(result)[0].startswith("error:"), bad
    assert not (tmp_path / "bad").exists()
