"""The GAS data set of the MAF paper: read, clean, standardise and split like its authors.

Source: the UCI "gas sensor array under dynamic gas mixtures" recording ``ethylene_CO.txt``
(a header line, then 19 whitespace-separated columns: time, CO concentration, ethylene
concentration and 16 sensor readings; about 4.2 M rows), or the MAF authors' preprocessed
``ethylene_CO.pickle`` (a pandas DataFrame with the columns ``Time``, ``Meth``, ``Eth`` and
the 16 sensors: a random quarter of the text file's rows, drawn with
``DataFrame.sample(frac=0.25)`` and so in random order).

Preprocessing, as ``datasets/gas.py`` of the authors' code does it:

1. drop time and the two concentrations (the 16 sensor readings remain);
2. while some column has a correlation above 0.98 with another, drop the first such
   column (a pair's Pearson correlation does not depend on the other columns, so it is
   computed once); on the recording 8 columns remain;
3. z-score every column with the mean and standard deviation (``ddof=1``, as pandas) of the
   whole table, before splitting;
4. split in row order: the last 10 % (``int(0.1 n)``) is the test set, the last 10 % of the
   rest the validation set. For the authors' 1,052,065 rows: 852,174 / 94,685 / 105,206.

``split="random"`` is the original write-up's variant: a seeded random 50/50 train/test
split, the last 10 % of the training half kept for validation (early stopping).

References:
    | Masked Autoregressive Flow for Density Estimation (Papamakarios, Pavlakou & Murray,
      NeurIPS 2017) https://arxiv.org/abs/1705.07057 and its code, github.com/gpapamak/maf
    | Fonollosa et al., "Reservoir computing compensates slow response of chemosensor
      arrays exposed to fast varying gas concentrations in continuous monitoring", Sensors
      and Actuators B 215 (2015): the recording.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audioar.atomic import atomic_open
from audioar.errors import ConfigError, DataError

__all__ = [
    "GAS_COLUMNS",
    "SENSOR_COLUMNS",
    "CORRELATION_THRESHOLD",
    "SPLITS",
    "GasData",
    "read_gas",
    "correlation",
    "drop_correlated",
    "standardize_table",
    "paper_split_sizes",
    "prepare_gas",
    "save_gas",
]

logger = logging.getLogger(__name__)

SENSOR_COLUMNS = tuple(f"sensor_{i}" for i in range(1, 17))
#: The text file's columns, in order.
GAS_COLUMNS = ("time", "co", "ethylene", *SENSOR_COLUMNS)
#: A column is dropped while its correlation with another exceeds this (the paper's 0.98).
CORRELATION_THRESHOLD = 0.98
SPLITS = ("paper", "random")
_PICKLE_DROPS = ("Time", "Meth", "Eth")  # the authors' pickle's time and concentrations


@dataclass
class GasData:
    """The prepared GAS table: standardised float32 splits and how they were made.

    Attributes:
        train: ``(n_train, features)`` float32.
        validation: ``(n_validation, features)`` float32.
        test: ``(n_test, features)`` float32.
        metadata: Source file, rows read and used, the subsampling, the columns kept and
            dropped, the standardisation statistics and the split rule (JSON-able).
    """

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)


def read_gas(path: str | Path) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """The 16 sensor readings of a GAS file, time and concentrations dropped.

    Args:
        path: ``ethylene_CO.txt`` (whitespace-separated, a header line) or the authors'
            ``.pickle``. A pickle runs code when it is read: load only files you trust.

    Returns:
        ``(table, columns, info)``: ``(rows, 16)`` float64 readings in file order, their
        column names, and ``{"format", "dropped"}`` (the columns removed here).

    Raises:
        DataError: A missing, empty or malformed file (wrong column count, a value that
            is not a number, missing or non-finite values), naming the file (and line).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such GAS file (pass ethylene_CO.txt or its .pickle)")
    if path.suffix.lower() in (".pickle", ".pkl"):
        table, columns, info = _read_pickle(path)
    else:
        table, columns, info = _read_text(path)
    if len(table) < 2:
        raise DataError(f"{path}: {len(table)} data rows; GAS needs at least 2")
    bad = ~np.isfinite(table)
    if bad.any():
        row = int(np.argmax(bad.any(axis=1)))
        raise DataError(f"{path}: row {row + 1} of the data has a missing or non-finite value")
    return table, columns, info


def _read_text(path: Path) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    import pandas as pd

    with open(path, encoding="utf-8", errors="replace") as handle:
        first = handle.readline()
    if not first.strip():
        raise DataError(f"{path}: empty file; expected a header line and 19 columns per row")
    header = 0 if _numbers(first) is None else None  # a header line (or none at all)
    skip = 1 if header == 0 else 0
    try:
        # pandas' C tokenizer: ~1.3 s per million rows of 19 columns on one core, against
        # ~4.6 s for numpy.loadtxt (measured on a generated file of this layout).
        frame = pd.read_csv(
            path, sep=r"\s+", header=None, skiprows=skip, engine="c", dtype=np.float64
        )
    except pd.errors.EmptyDataError:  # (a ValueError: caught first)
        raise DataError(f"{path}: no data rows after the header line") from None
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(_locate_bad_line(path, skip) or f"{path}: unreadable ({exc})") from None
    if frame.shape[1] != len(GAS_COLUMNS):
        raise DataError(
            f"{path}: {frame.shape[1]} columns; ethylene_CO.txt has {len(GAS_COLUMNS)} "
            "(time, CO, ethylene, 16 sensors)"
        )
    if frame.isna().to_numpy().any():  # short rows are padded with NaN by the tokenizer
        raise DataError(_locate_bad_line(path, skip) or f"{path}: missing values")
    table = frame.to_numpy()[:, 3:]
    return table, list(SENSOR_COLUMNS), {"format": "text", "dropped": list(GAS_COLUMNS[:3])}


def _numbers(line: str) -> list[float] | None:
    try:
        return [float(token) for token in line.split()]
    except ValueError:
        return None


def _locate_bad_line(path: Path, skip: int) -> str | None:
    """The first data line that is not 19 numbers, as an error message (error path only)."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if number <= skip or not line.strip():
                continue
            tokens = line.split()
            if len(tokens) != len(GAS_COLUMNS):
                return (
                    f"{path}: line {number} has {len(tokens)} columns; expected "
                    f"{len(GAS_COLUMNS)} (time, CO, ethylene, 16 sensors)"
                )
            for token in tokens:
                try:
                    value = float(token)
                except ValueError:
                    return f"{path}: line {number}: {token[:30]!r} is not a number"
                if not math.isfinite(value):
                    return f"{path}: line {number}: non-finite value {token!r}"
    return None


def _read_pickle(path: Path) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    import pandas as pd

    try:
        frame = pd.read_pickle(path)
    except Exception as exc:  # foreign or truncated pickles raise anything
        raise DataError(
            f"{path}: cannot read this pickle ({type(exc).__name__}: {exc}); the authors' "
            "file was written by an old pandas: convert it there, or use ethylene_CO.txt"
        ) from None
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{path}: holds a {type(frame).__name__}, not a pandas DataFrame")
    names = [str(c) for c in frame.columns]
    drops = [c for c in frame.columns if str(c) in _PICKLE_DROPS]
    if drops:
        frame = frame.drop(columns=drops)
    elif frame.shape[1] == len(GAS_COLUMNS):  # unnamed: time and concentrations lead
        drops = list(frame.columns[:3])
        frame = frame.iloc[:, 3:]
    if frame.shape[1] != len(SENSOR_COLUMNS):
        raise DataError(
            f"{path}: after dropping {[str(d) for d in drops]} {frame.shape[1]} columns "
            f"remain (of {names}); GAS has 16 sensor columns"
        )
    try:
        table = frame.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{path}: a sensor column is not numeric") from None
    return (
        table,
        [str(c) for c in frame.columns],
        {
            "format": "pickle",
            "dropped": [str(d) for d in drops],
        },
    )


def correlation(table: np.ndarray, chunk: int = 1 << 18) -> np.ndarray:
    """Pearson correlation matrix ``(columns, columns)`` of ``table`` ``(rows, columns)``,
    accumulated in float64 over row chunks (no full-size centred copy)."""
    mean = table.mean(axis=0, dtype=np.float64)
    cov = np.zeros((table.shape[1], table.shape[1]))
    for start in range(0, len(table), chunk):
        centred = table[start : start + chunk] - mean
        cov += centred.T @ centred
    scale = np.sqrt(np.diag(cov))
    with np.errstate(invalid="ignore", divide="ignore"):
        return cov / np.outer(scale, scale)


def drop_correlated(
    table: np.ndarray, columns: list[str], threshold: float = CORRELATION_THRESHOLD
) -> tuple[np.ndarray, list[str], list[str]]:
    """Repeatedly drop the first column correlated above ``threshold`` with another.

    "Correlated" is ``corr > threshold`` (signed, as the authors' code compares), the
    diagonal excluded. Correlations are computed once: dropping a column does not change
    the correlation of the others.

    Args:
        table: ``(rows, columns)``.
        columns: Their names.
        threshold: Default ``0.98``.

    Returns:
        ``(kept table, kept names, dropped names in the order dropped)``.

    Raises:
        DataError: A constant column (its correlations and z-scores are undefined).
    """
    corr = correlation(table)
    constant = [c for c, v in zip(columns, np.diag(corr), strict=True) if not np.isfinite(v)]
    if constant:
        raise DataError(f"constant GAS column(s) {constant}: cannot standardise them")
    keep = list(range(len(columns)))
    dropped: list[str] = []
    while True:
        sub = corr[np.ix_(keep, keep)] > threshold
        counts = sub.sum(axis=1)  # the diagonal contributes 1
        over = np.flatnonzero(counts > 1)
        if len(over) == 0:
            break
        dropped.append(columns[keep.pop(int(over[0]))])
    return table[:, keep], [columns[i] for i in keep], dropped


def standardize_table(table: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(table - mean) / std`` per column over all rows (``ddof=1``, as pandas).

    Returns:
        ``(standardised float64 table, mean, std)``.
    """
    mean = table.mean(axis=0, dtype=np.float64)
    std = table.std(axis=0, ddof=1, dtype=np.float64)
    return (table - mean) / std, mean, std


def paper_split_sizes(n: int) -> tuple[int, int, int]:
    """``(train, validation, test)`` rows of the paper's split of ``n`` rows.

    ``test = int(0.1 n)`` (the last rows), ``validation = int(0.1 (n - test))`` (the last of
    the rest), exactly the authors' arithmetic.

    Example:
        >>> paper_split_sizes(1_052_065)
        (852174, 94685, 105206)
    """
    test = int(0.1 * n)
    validation = int(0.1 * (n - test))
    return n - test - validation, validation, test


def prepare_gas(
    path: str | Path,
    *,
    rows: int | None = None,
    subsample: str = "random",
    split: str = "paper",
    seed: int = 0,
    threshold: float = CORRELATION_THRESHOLD,
) -> GasData:
    """Read a GAS file and return the paper's standardised train / validation / test sets.

    Args:
        path: ``ethylene_CO.txt`` or the authors' ``ethylene_CO.pickle``.
        rows: Use only this many rows (``None``: all), taken before any preprocessing, as
            the authors' pickle is a quarter of the recording. ``1_052_065`` from the text
            file mirrors the pickle.
        subsample: How ``rows`` are chosen: ``"random"`` (default; rows drawn without
            replacement with ``seed``, kept in the drawn order, like
            ``DataFrame.sample``, so the in-order split below is a random split, as it is
            on the pickle) or ``"first"`` (the first ``rows`` in file order: time order).
        split: ``"paper"`` (default; in row order, last 10 % test, last 10 % of the rest
            validation) or ``"random"`` (seeded random 50/50 train/test, the last 10 % of
            the training half for validation).
        seed: Seed of the subsample and of ``split="random"``. Default ``0``.
        threshold: Correlation above which a column is dropped, default ``0.98``.

    Returns:
        The :class:`GasData`.

    Raises:
        DataError: Unreadable file, too few rows, constant columns.
        ConfigError: Unknown ``subsample`` or ``split``, or ``rows < 3``.
    """
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    if subsample not in ("random", "first"):
        raise ConfigError(f"subsample must be 'random' or 'first', got {subsample!r}")
    if rows is not None and rows < 3:
        raise ConfigError(f"rows must be at least 3, got {rows}")
    table, columns, info = read_gas(path)
    total = len(table)
    if rows is not None and rows < total:
        if subsample == "first":
            table = table[:rows]
        else:
            pick = np.random.default_rng(seed).choice(total, size=rows, replace=False)
            table = table[pick]
    table, kept, dropped = drop_correlated(table, columns, threshold)
    table, mean, std = standardize_table(table)
    table = table.astype(np.float32)
    n = len(table)
    if split == "paper":
        n_train, n_val, n_test = paper_split_sizes(n)
        order = None
        rule = "row order: last int(0.1 n) test, last int(0.1 rest) validation (MAF paper)"
    else:
        order = np.random.default_rng(seed + 1).permutation(n)
        table = table[order]
        n_test = n // 2
        n_val = int(0.1 * (n - n_test))
        n_train = n - n_test - n_val
        rule = f"seeded random 50/50 train/test (seed {seed}), last 10 % of train validation"
    if min(n_train, n_val, n_test) < 1:
        raise DataError(f"{path}: {n} rows give an empty split ({n_train}/{n_val}/{n_test})")
    metadata = {
        "dataset": "gas",
        "source": str(Path(path).resolve()),
        "format": info["format"],
        "rows_in_file": total,
        "rows": n,
        "subsample": None if rows is None or rows >= total else subsample,
        "seed": seed,
        "dropped_columns": info["dropped"] + dropped,
        "dropped_correlated": dropped,
        "correlation_threshold": threshold,
        "columns": kept,
        "mean": mean.tolist(),
        "std": std.tolist(),
        "split": split,
        "split_rule": rule,
        "sizes": {"train": n_train, "validation": n_val, "test": n_test},
    }
    logger.info("GAS: %d rows, kept %s, dropped %s", n, kept, dropped)
    return GasData(
        train=table[:n_train],
        validation=table[n_train : n_train + n_val],
        test=table[n_train + n_val :],
        metadata=metadata,
    )


def save_gas(data: GasData, out: str | Path) -> Path:
    """Write ``data`` as an ``.npz`` (``train``, ``validation``, ``test`` float32 arrays and
    ``metadata``, a JSON string), whole or not at all.

    Returns:
        The written path.
    """
    out = Path(out)
    with atomic_open(out, "wb") as handle:
        np.savez(
            handle,
            train=data.train,
            validation=data.validation,
            test=data.test,
            metadata=np.array(json.dumps(data.metadata)),
        )
    return out
