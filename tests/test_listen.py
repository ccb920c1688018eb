"""``audioar listen``: sliding windows of a long recording, a WAV stream or a watched folder,
scored as the audio arrives, and the flagged windows merged into events.

The run is a small windowed MAF fitted (machine presets) on a DCASE-style folder of a
machine hum (harmonics plus noise) whose training clips vary in pitch and noise level; the
listened recording is the hum at its typical setting, with a clearly different sound (a
3.1 kHz whine and a click train) from 41.0 to 44.0 s. The calibration is a gamma tail at a
false-positive rate of 1e-4 per clip, as a monitor that must stay quiet for hours would set it.
"""

import csv
import io
import os
import struct
import threading
import time
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import TINY, invoke
from typer.testing import CliRunner

from audioar.config.recipes import RunConfig, apply_overrides, preset_overrides
from audioar.deploy.listen import Event, EventMerger, WindowScore, listen, merge_events
from audioar.errors import AudioError, ConfigError
from audioar.features.extract import featurize_waveforms
from audioar.pipeline.runs import fit_run
from audioar.pipeline.score_files import score_files
from audioar.pipeline.scoring import SCORE_COLUMN, score_features

RATE = 16000
IDS = {"id_00": 310.0, "id_02": 470.0}  # machine ID -> base frequency of its hum (Hz)
SECONDS = 60.0
ANOMALY = (41.0, 44.0)
WINDOW, HOP = 1.0, 0.5  # the machine presets


def hum(base, seconds, rng, *, noise=0.02, jitter=0.0):
    """A machine's hum: three harmonics of ``base`` (pitch jittered by up to ``jitter``) in
    white noise of standard deviation ``noise``."""
    n = int(round(seconds * RATE))
    t = np.arange(n) / RATE
    f = base * (1 + rng.uniform(-jitter, jitter))
    wave = sum(
        a * np.sin(2 * np.pi * k * f * t + rng.uniform(0, 2 * np.pi))
        for k, a in ((1, 0.3), (2, 0.15), (3, 0.08))
    )
    return wave + noise * rng.standard_normal(n)


def fault(seconds, rng):
    """Something else: a 3.1 kHz whine with a 20 Hz click train."""
    n = int(round(seconds * RATE))
    wave = 0.25 * np.sin(2 * np.pi * 3100.0 * np.arange(n) / RATE)
    wave = wave + 0.05 * rng.standard_normal(n)
    wave[:: RATE // 20] += 0.8
    return wave


def pcm(wave):
    return np.clip(wave, -1, 1).astype(np.float32)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """``(trained, run_dir, recording)``: the run and the 60-s recording (16-bit PCM)."""
    seed = 2
    root = tmp_path_factory.mktemp("listen")
    rng = np.random.default_rng(seed)
    fan = root / "fan"
    (fan / "train").mkdir(parents=True)
    (fan / "test").mkdir()
    take = 0
    for group, base in IDS.items():
        for _ in range(16):  # normal operation: pitch within 2 %, noise 0.01-0.04
            wave = hum(base, 5.0, rng, noise=rng.uniform(0.01, 0.04), jitter=0.02)
            sf.write(fan / "train" / f"normal_{group}_{take:08d}.wav", pcm(wave), RATE)
            take += 1
        for label in ("normal", "anomaly"):
            for _ in range(2):
                wave = hum(base, 3.0, rng) + (fault(3.0, rng) if label == "anomaly" else 0)
                sf.write(fan / "test" / f"{label}_{group}_{take:08d}.wav", pcm(wave), RATE)
                take += 1
    chosen = [
        f"data.root={fan}",
        "model.hidden_features=[32]",
        "model.num_flows=2",
        "train.epochs=30",
        "train.batch_size=32",
        f"train.seed={seed}",
        f"data.seed={seed}",
        "data.validation_fraction=0.25",
        "features.n_mels=32",
        "calibration.method=gamma",
        "calibration.target_fpr=0.0001",
    ]
    cfg = apply_overrides(RunConfig(), [*preset_overrides(chosen, machine=True), *chosen])
    trained, _ = fit_run(cfg, root / "run", use_cache=False)
    wave = hum(IDS["id_00"], SECONDS, rng)
    a, b = int(ANOMALY[0] * RATE), int(ANOMALY[1] * RATE)
    wave[a:b] = 0.3 * wave[a:b] + fault(ANOMALY[1] - ANOMALY[0], rng)
    recording = root / "line.wav"
    sf.write(recording, pcm(wave), RATE, subtype="PCM_16")
    return trained, root / "run", recording


@pytest.fixture(scope="module")
def heard(fitted):
    """The recording's windows, listened to from the file."""
    trained, _, recording = fitted
    listener = listen(trained, recording)
    return list(listener), listener


def overlaps(start, end, span=ANOMALY):
    return start < span[1] and end > span[0]


def wav_bytes(wave, rate=RATE, subtype="PCM_16", size=None):
    """A WAV file's bytes; ``size`` rewrites the RIFF and data sizes (a streaming writer's
    "unknown length": 0xFFFFFFFF or 0)."""
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format="WAV", subtype=subtype)
    data = bytearray(buffer.getvalue())
    if size is not None:
        at = data.index(b"data")
        data[4:8] = struct.pack("<I", size)
        data[at + 4 : at + 8] = struct.pack("<I", size)
    return bytes(data)


class Trickle(io.RawIOBase):
    """A stream that hands out at most ``chunk`` bytes a read, as a pipe fed live does."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self.data, self.chunk, self.at = data, chunk, 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.chunk if n < 0 else min(n, self.chunk)
        out = self.data[self.at : self.at + n]
        self.at += len(out)
        return out


# --------------------------------------------------------------------------- a long file


def test_listening_to_the_file_finds_the_anomaly_and_nothing_else(fitted, heard):
    trained, _, _ = fitted
    windows, listener = heard
    count = 1 + int((SECONDS - WINDOW) / HOP)
    assert len(windows) == count == listener.stats.windows == 119
    np.testing.assert_allclose([w.start_s for w in windows], np.arange(count) * HOP)
    np.testing.assert_allclose([w.end_s - w.start_s for w in windows], WINDOW)
    assert listener.stats.audio_seconds == pytest.approx(SECONDS)
    threshold = trained.calibration.threshold
    inside = [w for w in windows if ANOMALY[0] <= w.start_s and w.end_s <= ANOMALY[1]]
    outside = [w for w in windows if not overlaps(w.start_s, w.end_s)]
    assert len(inside) == 5 and len(outside) == count - 7
    assert all(w.is_anomaly and w.anomaly_score > threshold for w in inside)
    assert not any(w.is_anomaly for w in outside), max(w.anomaly_score for w in outside)
    assert all(w.p_value < 1e-3 for w in inside)
    events = merge_events(windows)
    assert len(events) == 1, events
    event = events[0]
    assert overlaps(event.start_s, event.end_s)
    assert event.start_s <= ANOMALY[0] + HOP and event.end_s >= ANOMALY[1] - HOP
    assert event.peak_score == max(w.anomaly_score for w in inside + windows)
    assert event.source == str(fitted[2])
    assert all(w.latency_s >= 0 for w in windows)
    assert listener.stats.real_time_factor > 1


def test_each_window_scores_as_score_features_on_its_features(fitted, heard):
    trained, _, recording = fitted
    windows, _ = heard
    wave, _ = sf.read(recording, dtype="float32")
    inner = trained.featurizer.inner
    column = SCORE_COLUMN[trained.score]
    picked = [0, 37, 83, 84, len(windows) - 1]  # 83, 84: inside the anomaly
    cut = np.stack([wave[int(i * HOP * RATE) :][: int(WINDOW * RATE)] for i in picked])
    with torch.no_grad():
        features = [inner(torch.from_numpy(w[None]))[0][None] for w in cut]
    assert features[0].shape == (1, *trained.spec.shape)
    expected = -score_features(trained, features).score(column)
    got = [windows[i].anomaly_score for i in picked]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    # scored against a named machine ID, as `audioar score` scores a clip of that ID
    as_id = list(listen(trained, recording, group="id_02"))
    expected = -score_features(trained, features, ["id_02"] * len(picked)).score(column)
    np.testing.assert_allclose([as_id[i].anomaly_score for i in picked], expected, rtol=1e-5)
    assert not np.allclose(expected, got)


def test_a_windowed_run_may_listen_with_another_hop(fitted, heard):
    trained, _, recording = fitted
    windows, _ = heard
    sparse = list(listen(trained, recording, hop_seconds=1.0))
    assert [w.start_s for w in sparse] == [float(i) for i in range(60)]
    np.testing.assert_allclose(
        [w.anomaly_score for w in sparse], [w.anomaly_score for w in windows[::2]], rtol=1e-5
    )


def test_realtime_releases_a_file_at_its_pace_one_window_at_a_time(fitted, tmp_path):
    trained, _, recording = fitted
    wave, _ = sf.read(recording, dtype="float32", frames=int(1.5 * RATE))
    clip = tmp_path / "short.wav"
    sf.write(clip, wave, RATE, subtype="FLOAT")
    fast = list(listen(trained, clip))
    started = time.monotonic()
    listener = listen(trained, clip, realtime=True)
    paced = list(listener)
    took = time.monotonic() - started
    assert [w.start_s for w in paced] == [w.start_s for w in fast] == [0.0, 0.5]
    np.testing.assert_allclose([w.anomaly_score for w in paced],
                               [w.anomaly_score for w in fast], rtol=1e-5)  # fmt: skip
    assert took >= 1.45  # the audio's own 1.5 s
    assert listener.stats.compute_seconds < 1.0  # waiting for the audio is not compute
    assert max(w.latency_s for w in paced) < 1.0


def test_a_window_scores_as_audioar_score_scores_a_clip_of_it(fitted, heard, tmp_path):
    trained, _, recording = fitted
    wave, _ = sf.read(recording, dtype="float32")
    start = int(84 * HOP * RATE)
    clip = tmp_path / "anomaly_id_02_00000084.wav"  # scored against machine ID 02
    sf.write(clip, wave[start : start + int(WINDOW * RATE)], RATE, subtype="FLOAT")
    table = next(score_files(trained, [clip], use_cache=False))
    window = list(listen(trained, recording, group="id_02"))[84]
    assert table["windows"].iloc[0] == 1
    assert window.anomaly_score == pytest.approx(table["anomaly_score"].iloc[0], rel=1e-5)
    assert window.is_anomaly == bool(table["is_anomaly"].iloc[0])
    # the file name names the ID: listening to the clip file scores against it too
    (alone,) = list(listen(trained, clip))
    assert alone.anomaly_score == pytest.approx(window.anomaly_score, rel=1e-5)


# --------------------------------------------------------------------------- streams


@pytest.mark.parametrize("size", [0xFFFFFFFF, 0, None])
def test_a_wav_stream_read_in_small_pieces_scores_as_the_file(fitted, heard, size):
    trained, _, recording = fitted
    windows, _ = heard
    wave, _ = sf.read(recording, dtype="int16")
    stream = Trickle(wav_bytes(wave, size=size), chunk=1000)
    streamed = list(listen(trained, stream))
    assert [w.start_s for w in streamed] == [w.start_s for w in windows]
    np.testing.assert_allclose(
        [w.anomaly_score for w in streamed], [w.anomaly_score for w in windows],
        rtol=1e-5, atol=1e-3,
    )  # fmt: skip
    assert [w.is_anomaly for w in streamed] == [w.is_anomaly for w in windows]
    assert {w.source for w in streamed} == {"-"}


def test_windows_are_batched_when_audio_waits_and_scored_one_by_one_when_live(fitted, monkeypatch):
    trained, _, recording = fitted
    from audioar.deploy import listen as module

    sizes = []
    original = module._Scorer.anomaly_scores

    def spy(self, features, group):
        sizes.append(len(features))
        return original(self, features, group)

    monkeypatch.setattr(module._Scorer, "anomaly_scores", spy)
    list(listen(trained, recording, batch_windows=16))
    assert sizes[0] == 1  # the warm-up window
    assert max(sizes[1:]) == 16 and sum(sizes[1:]) == 119
    assert sorted(sizes[1:-1]) == [16] * (len(sizes) - 2)  # all full but the last
    sizes.clear()
    wave, _ = sf.read(recording, dtype="int16", frames=10 * RATE)
    list(listen(trained, Trickle(wav_bytes(wave), chunk=2 * int(HOP * RATE) // 4)))
    assert sizes[1:] == [1] * 19  # short reads: caught up, each window as it completes


def test_a_resampled_stereo_24_bit_stream_scores_as_the_file(fitted, tmp_path):
    trained, _, recording = fitted
    wave, _ = sf.read(recording, dtype="float32", frames=8 * RATE)
    import soxr

    left = soxr.resample(wave, RATE, 22050).astype(np.float32)
    stereo = np.stack([left, 0.5 * left], axis=1)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, 22050, subtype="PCM_24")
    from_file = list(listen(trained, path))
    streamed = list(listen(trained, Trickle(path.read_bytes(), chunk=777)))
    assert len(streamed) == len(from_file) == 15
    np.testing.assert_allclose(
        [w.anomaly_score for w in streamed], [w.anomaly_score for w in from_file],
        rtol=1e-4, atol=1e-2,
    )  # fmt: skip


def test_a_pipe_that_stays_open_stops_at_max_seconds(fitted):
    trained, _, recording = fitted
    wave, _ = sf.read(recording, dtype="int16", frames=2 * RATE)
    read_end, write_end = os.pipe()
    os.write(write_end, wav_bytes(wave, size=0xFFFFFFFF))  # 2 s, then nothing more
    try:
        with os.fdopen(read_end, "rb", buffering=0) as stream:
            started = time.monotonic()
            listener = listen(trained, stream, max_seconds=1.0)
            windows = list(listener)
            took = time.monotonic() - started
    finally:
        os.close(write_end)
    assert [w.start_s for w in windows] == [0.0, 0.5, 1.0]
    assert 0.9 < took < 10
    assert listener.stats.compute_seconds < took  # the wait for audio is not compute


class Endless(io.RawIOBase):
    """A WAV stream of unknown length: the header, then ``minutes`` of hum, made as read."""

    def __init__(self, minutes: float) -> None:
        rng = np.random.default_rng(0)
        self.block = (hum(IDS["id_00"], 10.0, rng) * 20000).astype("<i2").tobytes()
        self.head = wav_bytes(np.zeros(0, np.int16), size=0xFFFFFFFF)
        self.left = int(minutes * 60 * RATE) * 2

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self.head:
            out, self.head = self.head[:n], self.head[n:]
            return out
        n = min(n, self.left, len(self.block))
        self.left -= n
        return self.block[:n]


def peak_listening(trained, minutes):
    """``(windows, peak bytes numpy and Python allocated)`` listening to ``minutes``."""
    tracemalloc.start()
    try:
        count = sum(1 for _ in listen(trained, Endless(minutes)))
        return count, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_flat_on_a_ten_minute_stream(fitted):
    trained, _, _ = fitted
    short, short_peak = peak_listening(trained, 1)
    long, long_peak = peak_listening(trained, 10)
    assert (short, long) == (119, 1199)
    print(f"\npeak traced memory: 1 min {short_peak / 1e6:.1f} MB, 10 min {long_peak / 1e6:.1f} MB")
    assert long_peak < 1.25 * short_peak
    assert long_peak < 10 * 60 * RATE * 4 / 5  # a fifth of the 10 minutes as float32


# --------------------------------------------------------------------------- a folder


def test_a_watched_folder_streams_each_new_complete_file(fitted, tmp_path):
    trained, _, recording = fitted
    wave, _ = sf.read(recording, dtype="float32")
    folder = tmp_path / "incoming"
    folder.mkdir()
    sf.write(folder / "first.wav", wave[: 3 * RATE], RATE)
    (folder / ".hidden.wav").write_bytes(b"not yet")
    (folder / "notes.txt").write_text("not audio")

    def later():
        time.sleep(0.6)
        part = folder / ".normal_id_02_00000001.wav.tmp"
        sf.write(part, wave[40 * RATE : 46 * RATE], RATE, format="WAV")
        part.rename(folder / "normal_id_02_00000001.wav")  # complete when it appears
        (folder / "broken.wav").write_bytes(b"RIFF....WAVEjunk")

    writer = threading.Thread(target=later)
    writer.start()
    try:
        listener = listen(trained, folder, poll_seconds=0.1, idle_seconds=2.5, max_seconds=30)
        windows = list(listener)
    finally:
        writer.join()
    assert listener.folder
    sources = [w.source for w in windows]
    first, second = str(folder / "first.wav"), str(folder / "normal_id_02_00000001.wav")
    assert sources == [first] * 5 + [second] * 11
    assert [w.start_s for w in windows[5:]] == [i * HOP for i in range(11)]
    # the new file's windows from 41 s on (1-5 s into it) are the anomaly, scored against
    # the ID its name names
    flagged = [w.start_s for w in windows[5:] if w.is_anomaly]
    assert flagged and all(overlaps(s + 40, s + 41) for s in flagged)
    events = merge_events(windows)
    assert [e.source for e in events] == [second]
    assert list(listener.stats.skipped) == [str(folder / "broken.wav")]
    assert listener.stats.recordings == 3


# --------------------------------------------------------------------------- events


def win(start, flagged, score=1.0, *, length=1.0, source=""):
    return WindowScore(start, start + length, score, 0.5, flagged, 0.0, source)


def test_merge_events_merges_consecutive_flagged_windows():
    assert merge_events([]) == []
    assert merge_events([win(0, False), win(1, False)]) == []
    # touching windows (hop = window): runs of flagged windows, each one event
    flags = [False, True, True, False, True, False, False, True]
    windows = [win(i, f, score=i) for i, f in enumerate(flags)]
    assert merge_events(windows) == [Event(1, 3, 2), Event(4, 5, 4), Event(7, 8, 7)]
    # one quiet second between the runs: merged once min_gap_s allows it
    assert merge_events(windows, min_gap_s=1.0) == [Event(1, 5, 4), Event(7, 8, 7)]
    assert merge_events(windows, min_gap_s=2.0) == [Event(1, 8, 7)]
    # overlapping windows (hop = window / 2): the event spans the flagged windows' time
    half = [win(i * 0.5, f, score=s) for i, (f, s) in enumerate(
        [(False, 0), (True, 5), (True, 9), (True, 7), (False, 0), (False, 0), (False, 0),
         (True, 3)])]  # fmt: skip
    assert merge_events(half) == [Event(0.5, 2.5, 9), Event(3.5, 4.5, 3)]
    # a single unflagged window between flagged ones leaves no quiet time: one event
    gap = [win(0, True), win(0.5, False), win(1.0, True)]
    assert merge_events(gap) == [Event(0, 2, 1)]
    # never across recordings
    two = [win(0, True, source="a"), win(1, True, source="b")]
    assert merge_events(two) == [Event(0, 1, 1, "a"), Event(1, 2, 1, "b")]


def test_the_event_merger_closes_events_as_the_windows_arrive():
    merger = EventMerger()
    assert merger.add(win(0, True, 2)) == []
    assert merger.add(win(1, True, 3)) == []
    assert merger.add(win(2, False)) == []  # starts where the event ends: may still grow
    assert merger.add(win(3, False)) == [Event(0, 2, 3)]
    assert merger.flush() == []
    merger.add(win(4, True, 1))
    assert merger.flush() == [Event(4, 5, 1)]
    for bad in (-1.0, float("nan"), "1"):
        with pytest.raises(ConfigError, match="min_gap_s"):
            EventMerger(bad)


# --------------------------------------------------------------------------- runs and errors


def test_a_run_without_windows_listens_with_its_own_window_and_hop(tones, tmp_path):
    cfg = apply_overrides(RunConfig(), [f"data.root={tones}", "data.target=zero", *TINY])
    trained, _ = fit_run(cfg, tmp_path / "run", use_cache=False)
    assert trained.featurizer.num_samples is None
    rate = trained.featurizer.sample_rate
    rng = np.random.default_rng(0)
    t = np.arange(4 * rate) / rate
    wave = (0.4 * np.sin(2 * np.pi * 440 * t) + 0.02 * rng.standard_normal(len(t))).astype(
        np.float32
    )
    path = tmp_path / "tone.wav"
    sf.write(path, wave, rate, subtype="FLOAT")
    default = list(listen(trained, path))
    assert [w.start_s for w in default] == [i * 0.5 for i in range(7)]  # 1-s windows, hop 0.5
    windows = list(listen(trained, path, window_seconds=0.5, hop_seconds=0.25))
    assert len(windows) == 15 and windows[-1].end_s == pytest.approx(4.0)
    cuts = [wave[int(w.start_s * rate) : int(w.end_s * rate)] for w in windows]
    scores = score_features(trained, featurize_waveforms(trained.featurizer, cuts))
    expected = -scores.score(SCORE_COLUMN[trained.score])
    np.testing.assert_allclose([w.anomaly_score for w in windows], expected, rtol=1e-5)
    with pytest.raises(ConfigError, match="not conditioned on groups"):
        listen(trained, path, group="id_00")
    with pytest.raises(ConfigError, match="at most the window"):
        listen(trained, path, window_seconds=0.5, hop_seconds=1.0)


def test_bad_sources_and_settings_raise_typed_errors(fitted, tmp_path):
    trained, _, recording = fitted
    with pytest.raises(AudioError, match="-: not a WAV stream"):
        list(listen(trained, io.BytesIO(b"hello, this is text\n")))
    with pytest.raises(AudioError, match="not a WAV stream"):
        list(listen(trained, io.BytesIO(b"")))
    with pytest.raises(AudioError, match="no samples"):
        list(listen(trained, io.BytesIO(wav_bytes(np.zeros(0, np.int16)))))
    with pytest.raises(AudioError, match="unsupported WAV encoding"):
        list(listen(trained, io.BytesIO(wav_bytes(np.zeros(10, np.int16), subtype="ULAW"))))
    with pytest.raises(AudioError, match="no such file"):
        listen(trained, tmp_path / "missing.wav")
    with pytest.raises(ConfigError, match="unknown group 'id_09'; this run knows id_00, id_02"):
        listen(trained, recording, group="id_09")
    with pytest.raises(ConfigError, match="own 1-s windows"):
        listen(trained, recording, window_seconds=2.0)
    with pytest.raises(ConfigError, match="batch_windows"):
        listen(trained, recording, batch_windows=0)


# --------------------------------------------------------------------------- the command


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_command_writes_the_windows_and_the_events(fitted, heard, tmp_path):
    _, run_dir, recording = fitted
    windows, _ = heard
    out, events = tmp_path / "out" / "windows.csv", tmp_path / "out" / "events.csv"
    done = invoke("listen", "--model", run_dir, "--input", recording, "--out", out,
                  "--events", events)  # fmt: skip
    assert done.exit_code == 0, done.output
    rows = read_csv(out)
    assert list(rows[0]) == ["time_s", "end_s", "anomaly_score", "p_value", "is_anomaly"]
    assert len(rows) == len(windows)
    np.testing.assert_allclose([float(r["anomaly_score"]) for r in rows],
                               [w.anomaly_score for w in windows], rtol=1e-6)  # fmt: skip
    assert [r["is_anomaly"] == "True" for r in rows] == [w.is_anomaly for w in windows]
    found = read_csv(events)
    assert list(found[0]) == ["start_s", "end_s", "peak_score"] and len(found) == 1
    assert overlaps(float(found[0]["start_s"]), float(found[0]["end_s"]))
    text = " ".join(done.output.split())
    assert "119 windows" in text and "1 event(s)" in text
    assert "latency per window: median" in text and "95th percentile" in text
    assert "real-time factor" in text
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp files


def test_the_command_reads_a_wav_stream_on_standard_input(fitted, heard, tmp_path):
    _, run_dir, recording = fitted
    windows, _ = heard
    wave, _ = sf.read(recording, dtype="int16")
    from audioar_cli.main import app

    out = tmp_path / "stdin.csv"
    done = CliRunner().invoke(
        app, ["listen", "-m", str(run_dir), "-i", "-", "-o", str(out)],
        input=wav_bytes(wave, size=0xFFFFFFFF), catch_exceptions=False,
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    rows = read_csv(out)
    got = [float(r["anomaly_score"]) for r in rows]
    np.testing.assert_allclose(got, [w.anomaly_score for w in windows], rtol=1e-5, atol=1e-3)
    bad = CliRunner().invoke(app, ["listen", "-m", str(run_dir), "-i", "-", "-o", str(out)],
                             input=b"just some text\n")  # fmt: skip
    assert_one_line_error(bad, "-: not a WAV stream")
    assert read_csv(out) == rows  # the failed run left the earlier file as it was


def assert_one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for needle in needles:
        assert needle in " ".join(result.output.split())


def test_the_command_turns_bad_input_into_one_line(fitted, tmp_path):
    _, run_dir, recording = fitted
    assert_one_line_error(
        invoke("listen", "-m", run_dir, "-i", tmp_path / "gone.wav"), "gone.wav: no such file"
    )
    assert_one_line_error(invoke("listen", "-m", tmp_path, "-i", recording), "run")
    assert_one_line_error(
        invoke("listen", "-m", run_dir, "-i", recording, "--group", "id_07"),
        "unknown group 'id_07'; this run knows id_00, id_02",
    )
    text = tmp_path / "text.wav"
    text.write_text("not audio")
    out = tmp_path / "w.csv"
    assert_one_line_error(invoke("listen", "-m", run_dir, "-i", text, "-o", out), "text.wav")
    assert not out.exists() and not list(tmp_path.glob(".w.csv*"))


def test_the_command_watches_a_folder(fitted, tmp_path):
    _, run_dir, recording = fitted
    folder = tmp_path / "watch"
    folder.mkdir()
    wave, _ = sf.read(recording, dtype="float32")
    sf.write(folder / "a.wav", wave[39 * RATE : 47 * RATE], RATE)
    out, events = tmp_path / "w.csv", tmp_path / "e.csv"
    done = invoke("listen", "-m", run_dir, "-i", folder, "--idle-seconds", "0.5",
                  "--poll", "0.1", "-o", out, "--events", events)  # fmt: skip
    assert done.exit_code == 0, done.output
    rows = read_csv(out)
    assert list(rows[0])[-1] == "source" and len(rows) == 15
    (event,) = read_csv(events)
    assert event["source"] == str(folder / "a.wav")
    assert overlaps(float(event["start_s"]) + 39, float(event["end_s"]) + 39)
    assert "1 file(s)" in " ".join(done.output.split())
