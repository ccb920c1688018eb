"""Score audio files with a trained run: streamed in batches, bad files reported, not fatal."""

import csv
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from torch import Tensor

from audioar.errors import DataError
from audioar.features import extract
from audioar.io import AUDIO_EXTENSIONS
from audioar.pipeline import TrainedModel
from audioar.scoring import log_likelihoods

__all__ = ["SCORE_COLUMNS", "expand_inputs", "score_files", "write_scores"]

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


def score_files(
    trained: TrainedModel,
    paths: Sequence[Path],
    *,
    batch_size: int = 2048,
    use_cache: bool = True,
    progress: Callable[[int], None] | None = None,
) -> Iterator[pd.DataFrame]:
    """Score ``paths`` in batches; yields one table per batch (columns ``SCORE_COLUMNS``).

    Memory stays bounded by ``batch_size`` whatever the number of files. A file that cannot
    be read or gives non-finite features gets its reason in ``error`` and empty scores;
    the rest of the batch is scored. A class-conditional run (WaveNet) adds the columns
    ``nats_per_step``, ``log_posterior`` and ``ll_<class>`` (``log p(x | class)`` for every
    class); its ``anomaly_score`` is minus the run's chosen score (``model.score``), and
    ``nats_per_dim`` divides by valid steps x values per step.

    Args:
        trained: The loaded run (:func:`audioar.pipeline.load_trained`).
        paths: Audio files.
        batch_size: Files per batch. Default 2048.
        use_cache: Use the on-disk feature cache.
        progress: Called with the number of files finished after each batch.
    """
    calibration = trained.calibration
    extra_columns: list[str] = []
    if trained.classes is not None:
        extra_columns = ["nats_per_step", "log_posterior", *(f"ll_{c}" for c in trained.classes)]
    for start in range(0, len(paths), batch_size):
        chunk = list(paths[start : start + batch_size])
        result = extract(trained.featurizer, chunk, use_cache=use_cache, on_error="skip")
        table = pd.DataFrame({"path": [str(p) for p in chunk]})
        for column in SCORE_COLUMNS[1:]:
            table[column] = np.nan if column != "error" else ""
        table["is_anomaly"] = pd.array([pd.NA] * len(chunk), dtype="boolean")
        for column in extra_columns:
            table[column] = np.nan
        if len(result.paths):
            index = {str(p): i for i, p in enumerate(chunk)}
            rows = [index[str(p)] for p in result.paths]
            if trained.classes is not None:
                scores = _conditional_columns(trained, result.features, table, rows)
            else:
                ll = log_likelihoods(trained.model, result.features).numpy().astype(np.float64)
                scores = -ll
                table.loc[rows, "log_likelihood"] = ll
                table.loc[rows, "nats_per_dim"] = ll / trained.dims
            table.loc[rows, "anomaly_score"] = scores
            table.loc[rows, "p_value"] = calibration.p_values(scores)
            table.loc[rows, "is_anomaly"] = calibration.is_anomaly(scores)
        for path, reason in result.errors.items():
            table.loc[table["path"] == str(path), "error"] = reason
        if progress is not None:
            progress(len(chunk))
        yield table


def _conditional_columns(
    trained: TrainedModel, features: Tensor | list[Tensor], table: pd.DataFrame, rows: list[int]
) -> np.ndarray:
    """Fill the conditional score columns of ``rows``; returns their anomaly scores."""
    from audioar.conditional import score_sequences

    sequences = list(features.unbind(0)) if isinstance(features, Tensor) else list(features)
    scores = score_sequences(trained, sequences)
    for name, values in scores.columns().items():
        table.loc[rows, name] = values
    return -scores.score(trained.config.model.resolved_score)


def write_scores(tables: Iterable[pd.DataFrame], out: str | Path) -> tuple[int, int]:
    """Stream score tables to ``out`` (``.csv``, or ``.json``: a list of records) atomically.

    Returns:
        ``(clips scored, clips with an error)``.
    """
    out = Path(out)
    fmt = out.suffix.lower()
    if fmt not in (".csv", ".json"):
        raise DataError(f"{out}: scores are written as .csv or .json")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    scored = failed = 0
    try:
        with os.fdopen(fd, "w", newline="") as handle:
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
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return scored, failed


def _json_value(value: object) -> object:
    if value is pd.NA or value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value
