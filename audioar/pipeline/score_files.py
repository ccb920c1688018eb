"""Score audio files with a trained run: streamed in batches, bad files reported, not fatal.

With ``trace_dir`` every scored clip also gets its per-step trace (:mod:`audioar.pipeline.traces`):
``trace_dir/<stem>-<hash>.csv`` with columns ``step,time_s,log_likelihood`` (the hash is of
the clip's absolute path, so equal names in different folders do not collide), named in the
scores table's ``trace`` column and in ``trace_dir/index.csv`` (``path, trace, steps,
step_seconds, log_likelihood``), which appears once the whole batch job has finished.
"""

import csv
import json
import math
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import ExitStack, closing
from pathlib import Path
from queue import Empty, Full, Queue
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from audioar.atomic import atomic_open
from audioar.data.io import AUDIO_EXTENSIONS
from audioar.data.layouts import parse_dcase_name
from audioar.errors import DataError
from audioar.features.extract import iter_extract
from audioar.pipeline.batches import intra_op_threads
from audioar.pipeline.scoring import SCORE_COLUMN, score_features
from audioar.pipeline.traces import clip_traces, step_seconds, write_trace_csv
from audioar.pipeline.trained import TrainedModel

__all__ = ["SCORE_COLUMNS", "expand_inputs", "group_of", "score_files", "write_scores"]

T = TypeVar("T")

#: Columns of a scores table, in order.
SCORE_COLUMNS = (
    "path",
    "log_likelihood",
    "nats_per_dim",
    "anomaly_score",
    "p_value",
    "is_anomaly",
    "error",
)


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Audio files named by ``inputs``: files, folders (recursive) or CSV manifests.

    A manifest is a ``.csv`` with a ``path`` column (relative paths are taken from the
    manifest's folder). Files are returned in the order given, folders sorted.

    Raises:
        DataError: A path does not exist, a folder holds no audio, a manifest has no
            ``path`` column, or nothing at all was named.
    """
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise DataError(f"{path}: no such file or folder")
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()
            )
            if not found:
                raise DataError(f"{path}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) found")
            files.extend(found)
        elif path.suffix.lower() == ".csv":
            with path.open(newline="") as handle:
                reader = csv.DictReader(handle)
                if reader.fieldnames is None or "path" not in reader.fieldnames:
                    raise DataError(f"{path}: a manifest needs a 'path' column")
                files.extend(path.parent / row["path"] for row in reader)
        else:
            files.append(path)
    if not files:
        raise DataError("no audio files to score")
    return files


def group_of(path: str | Path) -> str | None:
    """The machine ID / section a clip's DCASE file name names (``id_00``,
    ``section_00``), or None: a run conditioned on groups scores the clip against it (and a
    clip without one against its most likely group)."""
    parsed = parse_dcase_name(Path(path).name)
    return None if parsed is None else parsed.group


def score_files(
    trained: TrainedModel,
    paths: Sequence[Path],
    *,
    batch_size: int = 512,
    use_cache: bool = True,
    progress: Callable[[int], None] | None = None,
    trace_dir: str | Path | None = None,
    prefetch: bool = True,
) -> Iterator[pd.DataFrame]:
    """Score ``paths`` in batches; yields one table per batch.

    Memory stays bounded by a few batches (with ``prefetch``, :data:`PREFETCH_BATCHES`
    featurized ahead) whatever the number of files. A file that cannot
    be read or gives non-finite features gets its reason in ``error`` and empty scores (a
    non-finite score: its reason, and empty ``p_value`` and ``is_anomaly``); the
    rest of the batch is scored. The columns are ``SCORE_COLUMNS`` with, after
    ``nats_per_dim``, every other score the model has (``nats_per_step`` for models with
    steps, ``log_posterior`` and ``ll_<class>`` for class-conditional ones);
    ``anomaly_score`` is minus the run's chosen score (``score.method``). A run conditioned
    on machine IDs / sections scores each clip against the group its DCASE file name names
    (:func:`group_of`; a name without one: the clip's most likely group); a windowed run
    adds ``windows`` (and its traces have a step per window).

    Args:
        trained: The loaded run (:func:`audioar.pipeline.runs.load_trained`).
        paths: Audio files.
        batch_size: Files per batch (one table each). Default 512: big enough that the
            fixed costs of a batch (its model passes, its table) stay small, small enough
            that the last batch, scored after every file was read, is a short tail.
        use_cache: Use the on-disk feature cache.
        progress: Called with the number of files finished after each batch.
        trace_dir: Also write each scored clip's per-step trace there (``log p(x_t |
            x_<t)`` under the target, see :func:`audioar.pipeline.traces.clip_traces`; one step for
            a vector model, with an empty ``time_s``) and add the ``trace`` column (the
            file's name, "" for a clip with an error). Default None: no traces.
        prefetch: Read the next files in one background thread and featurize the next
            batches (:data:`PREFETCH_BATCHES`) in another while this batch is scored
            (default): reading holds about one core (libsndfile, and the Python around
            it), so until every file is read the model gets one intra-op thread fewer
            than torch's count (at least one), and on two cores costs little more than
            reading. False: everything in the calling thread, one batch after the other.
            The tables are the same (to float32 rounding).
    """
    with ExitStack() as stack:
        traces = None
        if trace_dir is not None:  # index.csv is renamed into place once every batch is done
            handle = stack.enter_context(
                atomic_open(Path(trace_dir) / "index.csv", "w", newline="")
            )
            traces = (Path(trace_dir), csv.writer(handle, lineterminator="\n"))
            traces[1].writerow(["path", "trace", "steps", "step_seconds", "log_likelihood"])
        yield from _score_batches(trained, paths, batch_size, use_cache, progress, traces, prefetch)


def _score_batches(
    trained: TrainedModel,
    paths: Sequence[Path],
    batch_size: int,
    use_cache: bool,
    progress: Callable[[int], None] | None,
    traces: tuple[Path, Any] | None,
    prefetch: bool,
) -> Iterator[pd.DataFrame]:
    calibration = trained.calibration
    chosen = SCORE_COLUMN[trained.score]
    seconds = step_seconds(trained.featurizer, trained.spec)
    # While the background threads read and featurize (keeping about one core busy), the
    # model gets the other cores (on 2 cores one thread: two only contend, 1.24 -> 1.10 s
    # for FSDD's 3,000 clips, CPU 2.1 -> 1.8 core-seconds; benchmarks/score_speed.py); once
    # every file is read, every thread (a model slower than reading then finishes sooner).
    threads = torch.get_num_threads()
    reading = threading.Event()
    chunks = [list(paths[s : s + batch_size]) for s in range(0, len(paths), batch_size)]
    results = iter_extract(
        trained.featurizer,
        paths,
        use_cache=use_cache,
        batch_size=batch_size,
        on_error="skip",
        num_workers=1 if prefetch else 0,
    )
    if prefetch:
        results = _ahead(results, PREFETCH_BATCHES, reading)
    with closing(results):  # an early stop ends the featurizing and writes the cache
        for chunk, result in zip(chunks, results, strict=True):
            errors = {str(p): reason for p, reason in result.errors.items()}
            features = result.features
            tensors = list(features.unbind(0)) if isinstance(features, Tensor) else list(features)
            # a file named twice is scored twice: each row is its own clip
            rows, good = [], []
            for row, p, x in zip(result.positions, result.paths, tensors, strict=True):
                if x.dim() > 0 and len(x) == 0:
                    errors[str(p)] = "clip gives no feature steps (too short for the featurizer)"
                    continue
                rows.append(row)
                good.append(x)
            groups = [group_of(chunk[row]) for row in rows] if trained.by_group else None
            with intra_op_threads(max(1, threads - 1) if reading.is_set() else threads):
                scores = score_features(trained, good, groups)
            columns = scores.columns()
            columns["anomaly_score"] = -scores.score(chosen)
            # One array per column, then the table at once (not a pandas write per column,
            # error and trace).
            n, at = len(chunk), np.asarray(rows, dtype=np.int64)
            tail = [*SCORE_COLUMNS[3:-1], *(["trace"] if traces else []), "error"]
            names = list(dict.fromkeys([*SCORE_COLUMNS[1:3], *columns, *tail]))
            data: dict[str, Any] = {"path": [str(p) for p in chunk]}
            for name in names:
                if name in ("error", "trace"):
                    data[name] = np.full(n, "", dtype=object)
                elif name != "is_anomaly":  # a boolean column with missing values, made below
                    data[name] = np.full(n, np.nan)
            for name, values in columns.items():
                data[name][at] = values
            verdict, unknown = np.zeros(n, dtype=bool), np.ones(n, dtype=bool)
            bad: set[int] = set()  # rows whose score is NaN/inf: an error, not a verdict
            if rows:
                anomaly = columns["anomaly_score"]
                data["p_value"][at] = calibration.p_values(anomaly)
                verdict[at], unknown[at] = calibration.is_anomaly(anomaly), False
                finite = np.isfinite(np.asarray(anomaly, dtype=float))
                bad = {row for row, ok in zip(rows, finite, strict=True) if not ok}
                for row in bad:
                    data["p_value"][row] = np.nan
                    unknown[row] = True
                    errors[str(chunk[row])] = (
                        "the model gave a non-finite score (NaN/inf): anomaly_score="
                        f"{data['anomaly_score'][row]}; the run's weights may be damaged"
                    )
            data["is_anomaly"] = pd.arrays.BooleanArray(verdict, unknown)
            if errors:
                at_path: dict[str, list[int]] = {}
                for row, path in enumerate(chunk):
                    at_path.setdefault(str(Path(path)), []).append(row)
                for path, reason in errors.items():
                    data["error"][at_path.get(str(Path(path)), [])] = reason
            if traces is not None and rows:
                folder, writer = traces
                step = "" if seconds is None else f"{seconds:.9g}"
                traced = clip_traces(trained, good, groups=groups, scores=scores)
                for row, trace in zip(rows, traced, strict=True):
                    if row in bad:
                        continue
                    name = write_trace_csv(folder, chunk[row], trace, seconds).name
                    data["trace"][row] = name
                    clip_ll = float(data["log_likelihood"][row])  # windows: their aggregate
                    writer.writerow([str(chunk[row]), name, len(trace), step, f"{clip_ll:.9g}"])
            if progress is not None:
                progress(len(chunk))
            yield pd.DataFrame({name: data[name] for name in ["path", *names]})


#: Batches read and featurized ahead of the one being scored (``prefetch``).
PREFETCH_BATCHES = 2


def _ahead(
    items: Iterator[T], depth: int, running: threading.Event | None = None
) -> Generator[T, None, None]:
    """``items``, produced in a background thread up to ``depth`` items ahead of the caller.

    The thread's exception is raised in the caller at the item where it happened; closing
    this generator stops the thread at its next item and closes ``items`` there.
    ``running``, when given, is set from the start until the thread has made its last item
    (or failed, or was stopped).
    """
    queue: Queue[tuple[bool, Any]] = Queue(maxsize=depth)
    stop = threading.Event()
    running = running if running is not None else threading.Event()
    running.set()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        queue.put((True, item), timeout=0.05)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    return
            queue.put((False, None))
        except BaseException as error:  # handed to the caller, raised there
            queue.put((False, error))
        finally:
            running.clear()
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="audioar-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            more, item = queue.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                queue.get(timeout=0.05)
            except Empty:
                pass
        worker.join()


def write_scores(tables: Iterable[pd.DataFrame], out: str | Path) -> tuple[int, int]:
    """Stream score tables to ``out`` (``.csv``, or ``.json``: a list of records) atomically.

    Returns:
        ``(clips scored, clips with an error)``.
    """
    out = Path(out)
    fmt = out.suffix.lower()
    if fmt not in (".csv", ".json"):
        raise DataError(f"{out}: scores are written as .csv or .json")
    scored = failed = 0
    with atomic_open(out, "w", newline="") as handle:
        first = True
        if fmt == ".json":
            handle.write("[")
        for table in tables:
            errors = table["error"].astype(bool)
            failed += int(errors.sum())
            scored += int((~errors).sum())
            if fmt == ".csv":
                table.to_csv(handle, header=first, index=False)
            else:
                for record in table.to_dict(orient="records"):
                    clean = {k: _json_value(v) for k, v in record.items()}
                    handle.write(("\n " if first else ",\n ") + json.dumps(clean))
                    first = False
            first = False
        if fmt == ".json":
            handle.write("\n]\n")
    return scored, failed


def _json_value(value: object) -> object:
    if value is pd.NA or value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value
