"""The embedded synthetic data set: determinism, layout, format, engines, cache, CLI."""

import hashlib
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal
from typer.testing import CliRunner

from audioar.data import synth
from audioar.data.synth import dataset, render, voices
from audioar.errors import ConfigError, DataError

SMALL = {"speakers": 3, "takes": 1, "words": ("zero", "one", "yes")}


def _digest(root: Path) -> str:
    """Hash of every file's relative path and bytes."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _wav_digest(root: Path) -> str:
    return hashlib.sha256(
        b"".join(p.read_bytes() for p in sorted(root.glob("*/*.wav")))
    ).hexdigest()


def _espeak_or_skip() -> None:
    from audioar.data.synth.espeak import espeak_available

    if not espeak_available():
        pytest.skip("eSpeak NG (espeakng-loader, extra 'speech') is not installed or not working")


@pytest.fixture(scope="module")
def default_root() -> Path:
    """The default data set (formant engine), generated once for this module."""
    start = time.perf_counter()
    root = synth.default_dataset(engine="formant")
    print(f"\ndefault formant data set generated in {time.perf_counter() - start:.1f} s")
    return root


# --------------------------------------------------------------------------- package
def test_package_reexports_its_modules_public_names():
    from audioar.data.synth import dsp, engines, machine, phones

    modules = (dataset, dsp, engines, machine, phones, render, voices)
    owners = {name: m for m in modules for name in m.__all__}
    assert set(synth.__all__) == set(owners)
    for name, module in owners.items():
        assert getattr(synth, name) is getattr(module, name), name


# --------------------------------------------------------------------------- filters
@settings(deadline=None, max_examples=15)
@given(
    order=st.integers(1, 4),
    block=st.sampled_from([5, 8, 32]),
    frames=st.integers(1, 12),
    seed=st.integers(0, 2**16),
)
def test_allpole_blocks_matches_reference(order, block, frames, seed):
    rng = np.random.default_rng(seed)
    # Stable, time-varying denominators: real poles inside the unit circle, per frame.
    a = np.array([np.poly(rng.uniform(-0.95, 0.95, order)) for _ in range(frames)])
    gain = rng.uniform(0.5, 2.0, frames)
    x = rng.standard_normal(frames * block)
    fast = synth.allpole_blocks(x, gain, a, block)
    ref = synth.allpole_blocks_reference(x, gain, a, block)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-10 * max(1.0, np.abs(ref).max()))


def test_formant_cascade_fast_matches_reference_and_lfilter():
    rng = np.random.default_rng(0)
    frames, block = 40, 32
    freqs = np.linspace(300, 800, frames)[:, None] * np.array([1.0, 2.6, 4.1, 5.3])
    bws = np.full_like(freqs, 90.0)
    x = rng.standard_normal(frames * block)
    fast = synth.formant_cascade(x, freqs, bws, 16000, block)
    ref = synth.formant_cascade(x, freqs, bws, 16000, block, reference=True)
    np.testing.assert_allclose(fast, ref, atol=1e-10)
    # Constant formants: the same as scipy's lfilter through each resonator in turn.
    const_f, const_b = np.tile(freqs[:1], (frames, 1)), np.tile(bws[:1], (frames, 1))
    y = x.copy()
    for f, b in zip(freqs[0], bws[0], strict=True):
        r = np.exp(-np.pi * b / 16000)
        a = [1.0, -2 * r * np.cos(2 * np.pi * f / 16000), r * r]
        y = signal.lfilter([sum(a)], a, y)
    np.testing.assert_allclose(
        synth.formant_cascade(x, const_f, const_b, 16000, block), y, atol=1e-9
    )


def test_resonator_peaks_at_its_formant():
    frames, block, sr = 64, 32, 16000
    x = np.zeros(frames * block)
    x[0] = 1.0
    h = synth.formant_cascade(
        x, np.full((frames, 1), 1000.0), np.full((frames, 1), 80.0), sr, block
    )
    spectrum = np.abs(np.fft.rfft(h))
    peak_hz = np.argmax(spectrum) * sr / h.size
    assert abs(peak_hz - 1000) < 30


# --------------------------------------------------------------------------- words
def test_words_differ_and_speakers_vary():
    speaker = synth.make_speaker(0, 0)
    zero = synth.formant_word("zero", speaker, np.random.default_rng(1))
    one = synth.formant_word("one", speaker, np.random.default_rng(1))
    assert zero.ndim == 1 and np.isfinite(zero).all() and np.abs(zero).max() == pytest.approx(1.0)
    assert zero.size != one.size or not np.allclose(zero, one)
    people = [synth.make_speaker(0, i) for i in range(16)]
    assert len({p.id for p in people}) == 16
    assert np.ptp([p.f0 for p in people]) > 50  # low and high voices
    assert np.ptp([p.formant_scale for p in people]) > 0.1
    assert synth.make_speaker(0, 3) == synth.make_speaker(0, 3)
    assert synth.make_speaker(1, 3) != synth.make_speaker(0, 3)


def test_espeak_warp_spreads_vocal_tract_length():
    people = [synth.make_speaker(0, i) for i in range(synth.DEFAULT_SPEAKERS)]
    warps = np.array([voices._espeak_warp(p) for p in people])
    assert ((warps > 0.92) & (warps < 1.08)).all() and np.ptp(warps) > 0.08
    # Speakers sharing an eSpeak voice variant still differ.
    by_voice: dict[str, list[float]] = {}
    for person, warp in zip(people, warps, strict=True):
        by_voice.setdefault(person.espeak_voice, []).append(warp)
    assert any(len(set(w)) > 1 for w in by_voice.values())


def test_unknown_word_and_bad_options():
    with pytest.raises(ConfigError, match="banana"):
        synth.formant_word("banana", synth.make_speaker(0, 0), np.random.default_rng(0))
    bad_options = (
        {"speakers": 2},
        {"takes": 0},
        {"seed": -1},
        {"words": ("zero", "zero")},
        {"sample_rate": 22050},
    )
    for bad in bad_options:
        with pytest.raises(ConfigError):
            synth.synthesize_dataset("unused", engine="formant", **bad)
    with pytest.raises(ConfigError, match="engine"):
        synth.resolve_engine("festival")


# --------------------------------------------------------------------------- data sets
def test_determinism_formant(tmp_path):
    a = synth.synthesize_dataset(tmp_path / "a", seed=3, engine="formant", **SMALL)
    b = synth.synthesize_dataset(tmp_path / "b", seed=3, engine="formant", **SMALL)
    c = synth.synthesize_dataset(tmp_path / "c", seed=4, engine="formant", **SMALL)
    assert _digest(a) == _digest(b)
    assert _wav_digest(a) != _wav_digest(c)
    assert synth.read_metadata(a)["seed"] == 3


def test_layout_and_speaker_disjoint_lists(tmp_path):
    root = synth.synthesize_dataset(
        tmp_path / "d", engine="formant", speakers=8, takes=2, words=("zero", "two")
    )
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["two", "zero"]
    wavs = sorted(f"{p.parent.name}/{p.name}" for p in root.glob("*/*.wav"))
    assert len(wavs) == 2 * 8 * 2
    for name in wavs:
        word, file = name.split("/")
        speaker, nohash, take = file[: -len(".wav")].split("_")
        assert nohash == "nohash" and len(speaker) == 8 and take in {"0", "1"}
    lists = {}
    for split in ("validation", "testing"):
        lines = (root / f"{split}_list.txt").read_text().splitlines()
        assert lines and all((root / line).is_file() for line in lines)
        lists[split] = {line.split("/")[1].split("_")[0] for line in lines}
        # Whole speakers: every clip of a listed speaker is in the list.
        assert set(lines) == {w for w in wavs if w.split("/")[1].split("_")[0] in lists[split]}
    train = {w.split("/")[1].split("_")[0] for w in wavs} - lists["validation"] - lists["testing"]
    assert not lists["validation"] & lists["testing"]
    assert len(lists["validation"]) == len(lists["testing"]) == 1 and len(train) == 6
    readme = (root / "README.md").read_text()
    assert "formant" in readme and "zero, two" in readme and "seed **0**" in readme
    meta = json.loads((root / synth.MARKER_FILE).read_text())
    assert meta["clips"] == 32 and meta["engine"] == "formant"
    assert not list(tmp_path.glob(".*"))  # no temporary folders left behind


def _check_clips(root: Path, rate: int = 8000) -> None:
    length = round(rate * synth.CLIP_SECONDS)
    assert synth.read_metadata(root)["sample_rate"] == rate
    for path in sorted(root.glob("*/*.wav")):
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (
            rate,
            1,
            length,
            "PCM_16",
        )
        assert path.stat().st_size == 44 + 2 * length  # plain header, like Speech Commands
        audio, _ = sf.read(path, dtype="int16")
        assert np.abs(audio.astype(np.int32)).max() < 32767, f"{path} clips"
        assert np.abs(audio).max() > 1000, f"{path} is (nearly) silent"
        # The word stands out of the background noise: loud 10 ms frames well above quiet ones.
        hop = rate // 100
        frames = audio[: length // hop * hop].reshape(-1, hop).astype(np.float64)
        energy = np.sort((frames**2).mean(axis=1))
        assert energy[-5:].mean() > 10 * energy[:15].mean(), f"{path}: no clear word"


def test_clip_format_formant_8k_and_16k(tmp_path):
    low = synth.synthesize_dataset(tmp_path / "f8", engine="formant", seed=1, **SMALL)
    high = synth.synthesize_dataset(
        tmp_path / "f16", engine="formant", seed=1, sample_rate=16000, **SMALL
    )
    _check_clips(low, 8000)
    _check_clips(high, 16000)
    assert "8 kHz" in (low / "README.md").read_text()
    assert "16 kHz" in (high / "README.md").read_text()
    # Same draws, same clip: the 8 kHz file is the 16 kHz one decimated (up to loudness).
    for path in sorted(low.glob("*/*.wav")):
        a = sf.read(path)[0]
        b = signal.resample_poly(sf.read(high / path.relative_to(low))[0], 1, 2)
        assert np.corrcoef(a, b)[0, 1] > 0.999, path


def test_room_response():
    speaker = synth.make_speaker(0, 5)
    assert voices._ROOM_RT60[0] <= speaker.room_rt60 <= voices._ROOM_RT60[1]
    h = render._room_response(speaker, np.random.default_rng(0))
    assert h.size == int(speaker.room_rt60 * synth.SYNTH_RATE) and h[0] == 1.0
    tail_db = 10 * np.log10(np.sum(h[1:] ** 2))
    assert tail_db == pytest.approx(-speaker.room_drr_db, abs=1e-6)
    tenth = h.size // 10
    assert np.sum(h[-tenth:] ** 2) < 1e-3 * np.sum(h[1 : tenth + 1] ** 2)  # decays ~60 dB
    assert not np.allclose(h, render._room_response(speaker, np.random.default_rng(1)))


def test_espeak_engine(tmp_path):
    _espeak_or_skip()
    start = time.perf_counter()
    a = synth.synthesize_dataset(tmp_path / "a", engine="espeak", **SMALL)
    print(f"\nespeak: {len(list(a.glob('*/*.wav')))} clips in {time.perf_counter() - start:.1f} s")
    b = synth.synthesize_dataset(tmp_path / "b", engine="espeak", **SMALL)
    assert _digest(a) == _digest(b)  # each run speaks in a fresh worker: same bytes
    c = synth.synthesize_dataset(tmp_path / "c", engine="espeak", seed=1, **SMALL)
    assert _wav_digest(a) != _wav_digest(c)
    assert "**espeak**" in (a / "README.md").read_text()
    _check_clips(a)
    assert synth.resolve_engine("auto") == "espeak"
    # GPL-3 eSpeak NG runs in a worker process only; it never enters this one.
    assert "espeakng_loader" not in sys.modules
    assert synth.default_dataset_name("auto") == "synth-v2-espeak-seed0"
    # Every accent a speaker can draw is a voice eSpeak NG knows (else the worker fails).
    from audioar.data.synth.espeak import Utterance, speak

    accents = list(voices._ESPEAK_ACCENTS)
    said = speak([Utterance("zero", voice=f"{accent}+m3", seed=1) for accent in accents])
    assert len(said) == len(accents) and all(clip.size > 1000 for clip in said)
    drawn = {synth.make_speaker(0, i).espeak_voice for i in range(synth.DEFAULT_SPEAKERS)}
    assert len({v.split("+")[0] for v in drawn}) >= 5  # several accents in the default set


def test_auto_engine_falls_back_to_formant(monkeypatch):
    from audioar.data.synth import espeak as speech

    monkeypatch.setattr(speech, "espeak_available", lambda: False)
    assert synth.resolve_engine("auto") == "formant"
    assert synth.default_dataset_name() == "synth-v2-formant-seed0"
    with pytest.raises(ConfigError, match="speech"):
        synth.resolve_engine("espeak")


def test_default_dataset_size_counts_and_reuse(default_root):
    meta = synth.read_metadata(default_root)
    assert default_root.name == "synth-v2-formant-seed0"
    assert meta["version"] == 2 and meta["sample_rate"] == synth.SAMPLE_RATE == 8000
    assert meta["words"] == list(synth.DEFAULT_WORDS) and "zero" in meta["words"]
    assert meta["clips"] == len(synth.DEFAULT_WORDS) * synth.DEFAULT_SPEAKERS * synth.DEFAULT_TAKES
    assert len(list(default_root.glob("*/*.wav"))) == meta["clips"] == 1260
    size = sum(p.stat().st_size for p in default_root.rglob("*") if p.is_file())
    print(f"\ndefault data set: {meta['clips']} clips, {size / 1e6:.2f} MB")
    assert size < 17e6  # the bound is 20 MB
    # Enough "zero" clips to train, stop early and calibrate at 5 % FPR (>= 19), and test.
    zero = {p.name for p in (default_root / "zero").glob("*.wav")}
    held = {}
    for split in ("validation", "testing"):
        lines = (default_root / f"{split}_list.txt").read_text().split()
        held[split] = {line.split("/")[1] for line in lines if line.startswith("zero/")}
    train = zero - held["validation"] - held["testing"]
    assert (len(train), len(held["validation"]), len(held["testing"])) == (84, 21, 21)
    assert (len(meta["validation_speakers"]), len(meta["testing_speakers"])) == (7, 7)
    before = (default_root / synth.MARKER_FILE).stat().st_mtime_ns
    start = time.perf_counter()
    assert synth.default_dataset(engine="formant") == default_root
    assert time.perf_counter() - start < 2.0  # reused, not regenerated
    assert (default_root / synth.MARKER_FILE).stat().st_mtime_ns == before


def test_default_dataset_is_learnable_not_trivial(default_root):
    """Zero-vs-rest with a Gaussian on log spectra of training speakers' "zero" clips."""
    from sklearn.decomposition import PCA
    from sklearn.metrics import roc_auc_score
    from sklearn.mixture import GaussianMixture

    held = set()
    for name in ("validation_list.txt", "testing_list.txt"):
        held |= set((default_root / name).read_text().split())
    paths = sorted(default_root.glob("*/*.wav"))
    audio = np.stack([sf.read(p)[0] for p in paths])
    x = np.log(signal.welch(audio, 8000, nperseg=256, axis=-1)[1] + 1e-12)
    y = np.array([p.parent.name for p in paths])
    is_held = np.array([f"{p.parent.name}/{p.name}" in held for p in paths])
    train = ~is_held & (y == "zero")
    pca = PCA(8).fit(x[train])
    model = GaussianMixture(1, reg_covar=1e-3, random_state=0).fit(pca.transform(x[train]))
    score = -model.score_samples(pca.transform(x[is_held]))
    auc = roc_auc_score(y[is_held] != "zero", score)
    print(f"\nzero-vs-rest AUC on held-out speakers (Gaussian baseline): {auc:.3f}")
    assert 0.7 < auc < 0.999


def test_default_dataset_atomic_and_concurrent(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIOAR_CACHE_DIR", str(tmp_path / "cache"))
    # default_dataset reads its defaults from, and calls _render_clip through, synth.dataset.
    monkeypatch.setattr(dataset, "DEFAULT_SPEAKERS", 3)
    monkeypatch.setattr(dataset, "DEFAULT_TAKES", 1)
    monkeypatch.setattr(dataset, "DEFAULT_WORDS", ("zero", "one"))
    target = tmp_path / "cache" / "synth-v2-formant-seed0"

    # A failure half way leaves nothing behind.
    real_render, calls = render._render_clip, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real_render(*args, **kwargs)

    monkeypatch.setattr(dataset, "_render_clip", failing)
    with pytest.raises(RuntimeError):
        synth.default_dataset(engine="formant")
    assert not target.exists() and not list((tmp_path / "cache").iterdir())
    monkeypatch.setattr(dataset, "_render_clip", real_render)

    # A stale folder without the completion marker is replaced, never returned.
    target.mkdir()
    (target / "zero").mkdir()
    assert synth.default_dataset(engine="formant") == target
    assert synth.read_metadata(target)["clips"] == 6

    # Concurrent first use: every caller gets the same complete folder.
    import shutil

    shutil.rmtree(target)
    results, errors = [], []

    def call():
        try:
            results.append(synth.default_dataset(engine="formant"))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [target] * 3
    assert len(list(target.glob("*/*.wav"))) == 6
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [target.name]


def test_existing_folder_rules(tmp_path):
    out = tmp_path / "out"
    out.mkdir()  # empty: fine
    synth.synthesize_dataset(out, engine="formant", **SMALL)
    first = _digest(out)
    with pytest.raises(DataError, match="not empty"):
        synth.synthesize_dataset(out, engine="formant", **SMALL)
    synth.synthesize_dataset(out, engine="formant", seed=5, force=True, **SMALL)
    assert _digest(out) != first and synth.read_metadata(out)["seed"] == 5
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="refusing"):
        synth.synthesize_dataset(other, engine="formant", force=True, **SMALL)
    assert (other / "notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        synth.synthesize_dataset(tmp_path / "file", engine="formant", **SMALL)


# --------------------------------------------------------------------------- CLI
def test_cli_synth_and_error(tmp_path):
    from audioar_cli.main import app

    runner = CliRunner()
    out = tmp_path / "cli"
    args = ["data", "synth", str(out), "--engine", "formant", "--speakers", "3", "--takes", "1"]
    result = runner.invoke(app, [*args, "--words", "zero,no"])
    assert result.exit_code == 0, result.output
    assert "wrote 6 clips" in result.output
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["no", "zero"]

    result = runner.invoke(app, [*args, "--words", "zero,no"])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "not empty" in lines[0]
    assert "Traceback" not in result.output

    result = runner.invoke(app, [*args, "--words", "zero,no", "--force", "--seed", "2"])
    assert result.exit_code == 0 and synth.read_metadata(out)["seed"] == 2

    result = runner.invoke(app, ["data", "synth", str(tmp_path / "x"), "--engine", "festival"])
    assert result.exit_code != 0 and "festival" in result.output
