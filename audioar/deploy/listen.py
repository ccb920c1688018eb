"""Listening: sliding windows of a long or live recording scored as the audio arrives.

:func:`listen` reads a WAV (or FLAC/OGG) file, a WAV stream (standard input: the header,
then PCM blocks as they come, also with the "unknown length" header streaming writers
write) or a folder that receives new audio files, cuts the audio into windows and yields
one :class:`WindowScore` per window as soon as it is scored. Memory stays bounded: a block
of samples, less than one window of carry-over and at most ``batch_windows`` windows
waiting to be scored.

What a window is scored as:

* a windowed run (``features.window_seconds`` set, e.g. fitted on a DCASE machine folder)
  listens with the run's window and hop; each window is featurized by the run's inner
  featurizer and scored as a one-window clip, so its anomaly score is the one
  ``audioar score`` gives a clip of exactly that window. A run conditioned on groups
  (machine IDs / sections) scores against ``group``, else the group a DCASE file name
  names, else each window's most likely group;
* any other run listens with ``window_seconds`` (default: the featurizer's own clip length,
  else 1 s) every ``hop_seconds`` (default: half a window), each window scored as a clip.

A window's threshold and p-value are the run's calibration on single windows of held-out
normal clips (``TrainedModel.window_calibration``: a windowed run's clip score averages its
windows and varies less than one window), else its clip calibration.
Flagged windows become events (:func:`merge_events`, :class:`EventMerger`).

Windows are scored in batches of up to ``batch_windows`` while more audio is already there
(a file, a backlog on a pipe), one at a time as soon as a window completes when the source
is live.
"""

from __future__ import annotations

import logging
import math
import os
import stat
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, NamedTuple

import numpy as np
import torch
from torch import Tensor

from audioar.data.io import AUDIO_EXTENSIONS
from audioar.data.layouts import parse_dcase_name
from audioar.deploy.sources import Chunk, Waits, file_chunks, stream_chunks
from audioar.errors import AudioError, ConfigError
from audioar.features.base import seconds_to_samples
from audioar.features.extract import featurize_waveforms
from audioar.features.windows import Windowed
from audioar.pipeline.scoring import SCORE_COLUMN, score_features
from audioar.pipeline.trained import TrainedModel

__all__ = [
    "WindowScore",
    "Event",
    "EventMerger",
    "ListenStats",
    "Listener",
    "listen",
    "merge_events",
    "STDIN_NAME",
]

logger = logging.getLogger(__name__)

STDIN_NAME = "-"  #: the ``source`` of windows read from a stream
LATENCIES_KEPT = 100_000  # the latest per-window latencies kept for the percentiles
_EPS = 1e-9  # seconds: window times are sample counts over the rate


@dataclass(frozen=True)
class WindowScore:
    """One scored window.

    Attributes:
        start_s: Start of the window, seconds from the start of its recording.
        end_s: End of the window (``start_s`` + the window length).
        anomaly_score: Higher = more unusual (minus the run's ``score.method`` score).
        p_value: How surprising the score is among the run's held-out normal clips.
        is_anomaly: ``anomaly_score`` above the run's threshold.
        latency_s: Seconds from the moment the window's last sample was available to the
            moment its score was.
        source: The recording: its path, or ``"-"`` for a stream.
    """

    start_s: float
    end_s: float
    anomaly_score: float
    p_value: float
    is_anomaly: bool
    latency_s: float
    source: str = ""


@dataclass(frozen=True)
class Event:
    """Flagged windows merged into one stretch of time.

    Attributes:
        start_s: Start of the first flagged window.
        end_s: End of the last flagged window.
        peak_score: The highest anomaly score of its windows.
        source: The recording it is in.
    """

    start_s: float
    end_s: float
    peak_score: float
    source: str = ""


class EventMerger:
    """Merge flagged windows into events as the windows arrive.

    An event is a stretch of time covered by flagged windows: a flagged window joins the
    open event when it starts at most ``min_gap_s`` after the event's end (overlapping and
    touching windows always join); a window starting later than that, or from another
    source, closes it. Windows must come in time order per source.

    Args:
        min_gap_s: Quiet time (seconds not covered by a flagged window) up to which two
            runs of flagged windows are one event. Default 0.0.

    Example:
        >>> merger = EventMerger()
        >>> [e for w in windows for e in merger.add(w)] + merger.flush()  # doctest: +SKIP
    """

    def __init__(self, min_gap_s: float = 0.0) -> None:
        if isinstance(min_gap_s, bool) or not isinstance(min_gap_s, int | float):
            raise ConfigError(f"min_gap_s must be a number of seconds >= 0, got {min_gap_s!r}")
        if not (math.isfinite(min_gap_s) and min_gap_s >= 0):
            raise ConfigError(f"min_gap_s must be a number of seconds >= 0, got {min_gap_s!r}")
        self.min_gap_s = float(min_gap_s)
        self._open: list | None = None  # [source, start, end, peak]

    def add(self, window: WindowScore) -> list[Event]:
        """Take the next window; returns the events it closes (none or one)."""
        closed = []
        current = self._open
        if current is not None and (
            window.source != current[0] or window.start_s > current[2] + self.min_gap_s + _EPS
        ):
            closed = self.flush()
        if window.is_anomaly:
            if self._open is None:
                self._open = [window.source, window.start_s, window.end_s, window.anomaly_score]
            else:
                self._open[2] = max(self._open[2], window.end_s)
                self._open[3] = max(self._open[3], window.anomaly_score)
        return closed

    def flush(self) -> list[Event]:
        """Close the open event, if any (at the end of the windows); returns it."""
        if self._open is None:
            return []
        source, start, end, peak = self._open
        self._open = None
        return [Event(float(start), float(end), float(peak), source)]


def merge_events(windows: Iterable[WindowScore], *, min_gap_s: float = 0.0) -> list[Event]:
    """Consecutive flagged windows merged into events (see :class:`EventMerger`).

    Args:
        windows: Scored windows in time order (per source).
        min_gap_s: Quiet seconds up to which two runs of flagged windows are merged.

    Returns:
        The events in order: ``start_s`` of the first flagged window, ``end_s`` of the
        last, ``peak_score`` the highest anomaly score among them.

    Example:
        >>> w = [WindowScore(t, t + 1, s, 0.5, s > 1, 0) for t, s in enumerate([0, 2, 3, 0])]
        >>> merge_events(w)
        [Event(start_s=1, end_s=3, peak_score=3, source='')]
    """
    merger = EventMerger(min_gap_s)
    events = [event for window in windows for event in merger.add(window)]
    return events + merger.flush()


@dataclass
class ListenStats:
    """What a :class:`Listener` has done so far.

    Attributes:
        windows: Windows scored.
        audio_seconds: Seconds of audio read (at the run's rate).
        compute_seconds: Seconds spent decoding, featurizing and scoring (not waiting).
        recordings: Recordings (files, streams) started.
        skipped: Folder mode: ``{path: reason}`` of files that could not be read.
        latencies: The latest per-window latencies (seconds), at most ``LATENCIES_KEPT``.
    """

    windows: int = 0
    audio_seconds: float = 0.0
    compute_seconds: float = 0.0
    recordings: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    latencies: deque = field(default_factory=lambda: deque(maxlen=LATENCIES_KEPT))

    @property
    def real_time_factor(self) -> float:
        """Seconds of audio per second of compute (``inf`` before any compute)."""
        if self.compute_seconds <= 0:
            return math.inf if self.audio_seconds else 0.0
        return self.audio_seconds / self.compute_seconds

    def latency_ms(self, q: float) -> float:
        """The ``q`` quantile (0.5: median) of the per-window latency in ms; NaN if none."""
        if not self.latencies:
            return math.nan
        return float(np.quantile(np.fromiter(self.latencies, float), q)) * 1000.0


# ----------------------------------------------------------------------------- windows


class _Cutter:
    """Cut consecutive sample blocks into the windows :func:`audioar.data.io.iter_windows` cuts:
    window ``i`` is ``samples[i * hop : i * hop + window]``; a recording shorter than one
    window is one window of it, zero-padded. Keeps less than a window plus a block."""

    def __init__(self, window: int, hop: int) -> None:
        self.window, self.hop = window, hop
        self.buffer = np.zeros(0, dtype=np.float32)  # starts at sample self.next * hop
        self.next = 0  # index of the next window
        self.total = 0  # samples seen

    def push(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Add samples; returns the windows they complete, ``(k, window)``, and their
        start samples ``(k,)``."""
        from numpy.lib.stride_tricks import sliding_window_view

        self.total += len(samples)
        self.buffer = np.concatenate([self.buffer, samples]) if len(self.buffer) else samples
        if len(self.buffer) < self.window:
            return np.zeros((0, self.window), np.float32), np.zeros(0, np.int64)
        windows = sliding_window_view(self.buffer, self.window)[:: self.hop].copy()
        starts = (self.next + np.arange(len(windows), dtype=np.int64)) * self.hop
        self.next += len(windows)
        self.buffer = self.buffer[len(windows) * self.hop :].copy()
        return windows, starts

    def finish(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The one zero-padded window ``(window,)`` and its real length of a recording
        shorter than a window, else None."""
        if self.next or not self.total:
            return None
        padded = np.zeros(self.window, dtype=np.float32)
        padded[: self.total] = self.buffer[: self.total]
        return padded, np.int64(self.total)


# ----------------------------------------------------------------------------- scoring


class _Plan(NamedTuple):
    window: int  # samples at the run's rate
    hop: int
    rate: int


def _positive_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def _plan(trained: TrainedModel, window_seconds: object, hop_seconds: object) -> _Plan:
    featurizer = trained.featurizer
    rate = featurizer.sample_rate
    if isinstance(featurizer, Windowed):
        window = featurizer.window_samples
        if window_seconds is not None:
            asked = seconds_to_samples(_positive_seconds("window_seconds", window_seconds), rate)
            if asked != window:
                raise ConfigError(
                    f"this run is windowed: it listens with its own {featurizer.window_seconds:g}"
                    f"-s windows (features.window_seconds); leave the window out"
                )
        hop = featurizer.hop_samples
    else:
        if window_seconds is None:
            own = featurizer.num_samples  # a featurizer with its own clip length
            window = own if own is not None else seconds_to_samples(1.0, rate)
        else:
            window = seconds_to_samples(_positive_seconds("window_seconds", window_seconds), rate)
            own = featurizer.num_samples
            if own is not None and own != window:
                logger.warning(
                    "the run's featurizer pads/trims clips to %g s; %g-s windows are scored "
                    "as clips of that length",
                    own / rate,
                    window / rate,
                )
        hop = max(1, round(window / 2))
    if hop_seconds is not None:
        hop = seconds_to_samples(_positive_seconds("hop_seconds", hop_seconds), rate)
    if window < 1 or hop < 1:
        raise ConfigError(f"the window and the hop must be at least one sample at {rate} Hz")
    if hop > window:
        raise ConfigError(
            f"the hop ({hop / rate:g} s) must be at most the window ({window / rate:g} s)"
        )
    return _Plan(window, hop, rate)


class _Scorer:
    """Featurize and score batches of windows, each as a one-window clip."""

    def __init__(self, trained: TrainedModel) -> None:
        self.trained = trained
        self.column = SCORE_COLUMN[trained.score]
        featurizer = trained.featurizer
        self.inner = featurizer.inner if isinstance(featurizer, Windowed) else None

    def features(self, windows: np.ndarray, lengths: np.ndarray) -> list[Tensor]:
        """``(k, window)`` windows with their real lengths -> one feature tensor per window:
        ``(1, *inner)`` for a windowed run, the clip features otherwise."""
        if self.inner is None:
            return featurize_waveforms(
                self.trained.featurizer, [w[:n] for w, n in zip(windows, lengths, strict=True)]
            )
        x = torch.from_numpy(np.ascontiguousarray(windows))
        with torch.no_grad():
            if self.inner.uses_lengths:
                out = self.inner(x, lengths=torch.from_numpy(np.asarray(lengths, np.int64)))
            else:
                out = self.inner(x)
        return list(out.unsqueeze(1).unbind(0))

    def anomaly_scores(self, features: list[Tensor], group: str | None) -> np.ndarray:
        """``(k,)`` anomaly scores of the windows (``score_features`` of one-window clips)."""
        groups = None if group is None else [group] * len(features)
        scores = score_features(self.trained, features, groups)
        return -np.asarray(scores.score(self.column), dtype=np.float64)


# ----------------------------------------------------------------------------- listening


class Listener(Iterator[WindowScore]):
    """The iterator :func:`listen` returns: scored windows as they come, and its
    :class:`ListenStats` (``stats``), updated as it goes.

    Attributes:
        trained: The run.
        window_seconds: Window length (seconds).
        hop_seconds: Step between windows (seconds).
        threshold: The run's threshold on the anomaly score.
        folder: Whether the source is a folder (windows then name their file in
            ``source``).
        stats: Windows, audio and compute seconds, latencies.
    """

    def __init__(
        self,
        trained: TrainedModel,
        source: str | os.PathLike[str] | IO[bytes],
        *,
        window_seconds: float | None = None,
        hop_seconds: float | None = None,
        group: str | None = None,
        batch_windows: int = 32,
        realtime: bool = False,
        poll_seconds: float = 0.5,
        idle_seconds: float | None = None,
        max_seconds: float | None = None,
        threads: int | None = 1,
    ) -> None:
        self.trained = trained
        # a window is judged against single windows of normal clips where the run has that
        self.calibration = trained.window_calibration or trained.calibration
        self.plan = _plan(trained, window_seconds, hop_seconds)
        if isinstance(batch_windows, bool) or not isinstance(batch_windows, int):
            raise ConfigError(f"batch_windows must be an integer >= 1, got {batch_windows!r}")
        if batch_windows < 1:
            raise ConfigError(f"batch_windows must be an integer >= 1, got {batch_windows!r}")
        self.batch_windows = batch_windows
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
        ):
            raise ConfigError(f"threads must be an integer >= 1 or None, got {threads!r}")
        self.threads = threads
        self.realtime = bool(realtime)
        self.poll_seconds = _positive_seconds("poll_seconds", poll_seconds)
        self.idle_seconds = (
            None if idle_seconds is None else _positive_seconds("idle_seconds", idle_seconds)
        )
        self.max_seconds = (
            None if max_seconds is None else _positive_seconds("max_seconds", max_seconds)
        )
        if group is not None:
            if not trained.by_group:
                raise ConfigError(
                    f"group {group!r}: this run is not conditioned on groups "
                    "(machine IDs / sections); leave the group out"
                )
            if group not in trained.classes:
                raise ConfigError(
                    f"unknown group {group!r}; this run knows {', '.join(trained.classes)}"
                )
        self.group = group
        self.stream: IO[bytes] | None = None
        self.path: Path | None = None
        if isinstance(source, str | os.PathLike):
            self.path = Path(source)
            if not self.path.exists():
                raise AudioError(self.path, "no such file or folder")
        elif hasattr(source, "read"):
            self.stream = source
        else:
            raise ConfigError(
                f"source must be a path, a folder or a binary stream, got {type(source).__name__}"
            )
        self.folder = self.path is not None and self.path.is_dir()
        self.stats = ListenStats()
        self._scorer = _Scorer(trained)
        self._waits = Waits()
        self._windows = self._run()

    @property
    def window_seconds(self) -> float:
        return self.plan.window / self.plan.rate

    @property
    def hop_seconds(self) -> float:
        return self.plan.hop / self.plan.rate

    @property
    def threshold(self) -> float:
        return self.calibration.threshold

    def __next__(self) -> WindowScore:
        return next(self._windows)

    def close(self) -> None:
        """Stop listening (closes the file being read)."""
        self._windows.close()

    # ------------------------------------------------------------------ recordings

    def _warm_up(self) -> None:
        """Score one quiet window before any audio: the first call pays one-off set-up costs
        (hundreds of ms; a gamma calibration's first p-value imports scipy.stats, over a
        second) that would otherwise land on the first windows' latency."""
        quiet = np.random.default_rng(0).standard_normal((1, self.plan.window)) * 1e-3
        previous = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            features = self._scorer.features(quiet.astype(np.float32), np.array([self.plan.window]))
            scores = self._scorer.anomaly_scores(features, self.group)
            self.calibration.p_values(scores)  # a gamma calibration imports scipy
        finally:
            torch.set_num_threads(previous)

    def _run(self) -> Iterator[WindowScore]:
        self._warm_up()
        deadline = None if self.max_seconds is None else time.monotonic() + self.max_seconds
        block = max(4096, self.batch_windows * self.plan.hop)
        if self.stream is not None:
            chunks = stream_chunks(
                self.stream, STDIN_NAME, self.plan.rate, block, deadline, self._waits
            )
            yield from self._recording(STDIN_NAME, chunks)
            return
        assert self.path is not None
        if not self.folder:
            chunks = self._file(self.path, block, deadline)
            yield from self._recording(str(self.path), chunks)
            return
        for path in self._new_files(self.path, deadline):
            try:
                yield from self._recording(str(path), self._file(path, block, deadline))
            except AudioError as exc:  # a bad file does not stop the watch
                self.stats.skipped[str(path)] = exc.reason
                logger.warning("skipped %s", exc)
            if deadline is not None and time.monotonic() >= deadline:
                return

    def _file(self, path: Path, block: int, deadline: float | None) -> Iterator[Chunk]:
        plan = self.plan
        return file_chunks(path, plan.rate, block, plan.hop, self.realtime, deadline, self._waits)

    def _new_files(self, folder: Path, deadline: float | None) -> Iterator[Path]:
        """Audio files of ``folder`` once complete (size and time unchanged over one poll),
        oldest first, each once; hidden and ``.tmp``/``.part`` files are not audio yet."""
        done: set[str] = set()
        seen: dict[str, tuple[int, int]] = {}  # name -> (size, mtime_ns) at the last poll
        idle_since = time.monotonic()
        while True:
            now = {}
            try:
                entries = list(os.scandir(folder))
            except OSError as exc:
                raise AudioError(folder, f"cannot read the folder ({exc.strerror})") from None
            for entry in entries:
                name = entry.name
                if name.startswith(".") or not name.lower().endswith(AUDIO_EXTENSIONS):
                    continue
                try:
                    info = entry.stat()
                except OSError:
                    continue
                if stat.S_ISREG(info.st_mode):
                    now[name] = (info.st_size, info.st_mtime_ns)
            done &= set(now)  # forget files that are gone
            ready = [n for n, sig in now.items() if n not in done and seen.get(n) == sig]
            seen = {n: sig for n, sig in now.items() if n not in done}
            for name in sorted(ready, key=lambda n: (now[n][1], n)):
                done.add(name)
                seen.pop(name, None)
                yield folder / name
                idle_since = time.monotonic()
            clock = time.monotonic()
            if deadline is not None and clock >= deadline:
                return
            if self.idle_seconds is not None and clock - idle_since >= self.idle_seconds:
                return
            wait = self.poll_seconds
            if deadline is not None:
                wait = min(wait, max(deadline - clock, 0.0))
            time.sleep(wait)

    # ------------------------------------------------------------------ one recording

    def _recording(self, name: str, chunks: Iterator[Chunk]) -> Iterator[WindowScore]:
        """Cut one recording's chunks into windows and score them as they complete."""
        self.stats.recordings += 1
        group = self.group
        if group is None and self.trained.by_group and name != STDIN_NAME:
            parsed = parse_dcase_name(Path(name).name)
            if parsed is not None and parsed.group in self.trained.classes:
                group = parsed.group
        cutter = _Cutter(self.plan.window, self.plan.hop)
        waits = self._waits
        pending: deque[tuple[np.ndarray, int, int, float]] = deque()  # window, length, start
        full = np.int64(self.plan.window)
        while True:
            started, waited = time.perf_counter(), waits.seconds
            chunk = next(chunks, None)
            if chunk is None:
                self.stats.compute_seconds += time.perf_counter() - started
                self.stats.compute_seconds -= waits.seconds - waited
                break
            windows, starts = cutter.push(chunk.samples)
            for row, start in zip(windows, starts, strict=True):
                pending.append((row, full, int(start), chunk.arrived))
            self.stats.audio_seconds += len(chunk.samples) / self.plan.rate
            self.stats.compute_seconds += time.perf_counter() - started
            self.stats.compute_seconds -= waits.seconds - waited
            while len(pending) >= self.batch_windows or (pending and not chunk.more):
                yield from self._score(pending, group, name)
        short = cutter.finish()
        if short is not None:
            pending.append((short[0], short[1], 0, time.perf_counter()))
        while pending:
            yield from self._score(pending, group, name)

    def _score(self, pending: deque, group: str | None, name: str) -> list[WindowScore]:
        """Score up to ``batch_windows`` windows from the front of ``pending``."""
        started = time.perf_counter()
        batch = [pending.popleft() for _ in range(min(self.batch_windows, len(pending)))]
        windows = np.stack([item[0] for item in batch])
        lengths = np.asarray([item[1] for item in batch], dtype=np.int64)
        previous = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            features = self._scorer.features(windows, lengths)
            scores = self._scorer.anomaly_scores(features, group)
        finally:
            torch.set_num_threads(previous)
        calibration = self.calibration
        p_values = calibration.p_values(scores)
        flagged = calibration.is_anomaly(scores)
        done = time.perf_counter()
        self.stats.compute_seconds += done - started
        self.stats.windows += len(batch)
        rate, window = float(self.plan.rate), self.plan.window
        out = []
        for (_, _, start, arrived), score, p, flag in zip(
            batch, scores, p_values, flagged, strict=True
        ):
            latency = done - arrived
            self.stats.latencies.append(latency)
            out.append(
                WindowScore(
                    start / rate,
                    (start + window) / rate,
                    float(score),
                    float(p),
                    bool(flag),
                    latency,
                    name,
                )  # fmt: skip
            )
        return out


def listen(
    trained: TrainedModel,
    source: str | os.PathLike[str] | IO[bytes],
    *,
    window_seconds: float | None = None,
    hop_seconds: float | None = None,
    group: str | None = None,
    batch_windows: int = 32,
    realtime: bool = False,
    poll_seconds: float = 0.5,
    idle_seconds: float | None = None,
    max_seconds: float | None = None,
    threads: int | None = 1,
) -> Listener:
    """Score sliding windows of a recording, a WAV stream or a watched folder as the audio
    arrives.

    Args:
        trained: The run (:func:`audioar.pipeline.runs.load_trained`).
        source: An audio file; a binary stream of a WAV (e.g. ``sys.stdin.buffer``: its
            header, then PCM or float frames as they come; a header whose data size is 0
            or ``0xFFFFFFFF``, as streaming writers write it, means "until the end"); or a
            folder, watched for new audio files (each streamed in turn once its size has
            not changed for one poll; files already there are read first, oldest first).
        window_seconds: Window length for a run without windows. Default None: the
            featurizer's own clip length, else 1.0. A windowed run listens with its own
            window (a different one is an error).
        hop_seconds: Step between windows. Default None: the run's hop (a windowed run),
            else half a window.
        group: The machine ID / section to score against (a run conditioned on groups).
            Default None: the group a DCASE file name names, else each window's most
            likely group.
        batch_windows: Most windows per model call (when more audio is already there).
            Default 32.
        realtime: Release a file's audio at its real pace, one hop at a time (a live
            demo or soak test). Default False: as fast as it can be scored.
        poll_seconds: Folder mode: seconds between looks at the folder. Default 0.5.
        idle_seconds: Folder mode: stop after this long without a new file. Default None:
            never.
        max_seconds: Stop after this many seconds of listening. Default None: at the end
            of the file or stream (a folder: never).
        threads: Intra-op threads while featurizing and scoring a batch (restored after).
            Default 1: a batch of windows is small work and the other cores stay free for
            reading audio; with OpenMP's default spin-waiting on 2 shared cores, 2 threads
            took 0.1-0.9 s for a minute of audio against 0.07 s on one (the command line's
            passive waiting makes the two alike). None: leave torch's setting.

    Returns:
        A :class:`Listener`: iterate it for :class:`WindowScore` s in time order (per
        recording); ``listener.stats`` has the counts, latencies and the real-time factor.

    Raises:
        ConfigError: At the call: bad window/hop, unknown ``group`` (the message names the
            known ones), a group for a run without groups, bad counts.
        AudioError: At the call: a missing path. While iterating: a file or stream that
            cannot be read (``not a WAV stream``, missing, no samples, NaN/inf); in folder
            mode a bad file is skipped (``stats.skipped``) instead.

    Example:
        >>> trained = load_trained("runs/fan")  # doctest: +SKIP
        >>> for w in listen(trained, "line_recording.wav"):  # doctest: +SKIP
        ...     print(w.start_s, w.anomaly_score, w.is_anomaly)
    """
    return Listener(
        trained,
        source,
        window_seconds=window_seconds,
        hop_seconds=hop_seconds,
        group=group,
        batch_windows=batch_windows,
        realtime=realtime,
        poll_seconds=poll_seconds,
        idle_seconds=idle_seconds,
        max_seconds=max_seconds,
        threads=threads,
    )
