"""Tables of numbers from disk: ``.npz``, ``.npy``, ``.csv`` and ``.parquet``.

A table is ``(rows, features)`` float32. An ``.npz`` may hold the splits ``train``,
``validation`` and ``test`` (what ``audioar density prepare`` writes, with a JSON
``metadata`` string) or a single array; the other formats hold one array. Every value must
be a finite number: anything else is one :class:`~audioar.errors.DataError` naming the file.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audioar.errors import DataError

__all__ = ["Table", "SPLIT_NAMES", "TABLE_SUFFIXES", "load_table", "read_array", "check_array"]

SPLIT_NAMES = ("train", "validation", "test")
TABLE_SUFFIXES = (".npz", ".npy", ".csv", ".parquet")


@dataclass
class Table:
    """A table read from disk.

    Attributes:
        train: ``(rows, features)`` float32: the ``train`` split, or the whole table when
            the file holds one array.
        validation: The ``validation`` split, or ``None``.
        test: The ``test`` split, or ``None``.
        source: The file it came from.
        metadata: An ``.npz``'s ``metadata`` (JSON), else empty.
    """

    train: np.ndarray
    validation: np.ndarray | None = None
    test: np.ndarray | None = None
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def split(self) -> bool:
        """Whether the file held named splits (else ``train`` is the whole table)."""
        return self.validation is not None or self.test is not None

    @property
    def features(self) -> int:
        """Columns per row."""
        return int(self.train.shape[1])

    def part(self, name: str) -> np.ndarray:
        """The split ``name`` (``"train"``, ``"validation"``, ``"test"``) or ``"all"`` (every
        row of every split, in split order).

        Raises:
            DataError: The file has no such split.
        """
        if name == "all":
            parts = [p for p in (self.train, self.validation, self.test) if p is not None]
            return np.concatenate(parts) if len(parts) > 1 else parts[0]
        if name not in SPLIT_NAMES:
            raise DataError(f"unknown split {name!r}; choose train, validation, test or all")
        value = getattr(self, name)
        if value is None or (name == "train" and not self.split):
            raise DataError(f"{self.source}: has no {name!r} split (it holds one table)")
        return value


def load_table(path: str | Path) -> Table:
    """Read a table (with its splits, for an ``.npz`` that has them).

    Args:
        path: ``.npz``, ``.npy``, ``.csv`` (numeric columns, header line optional) or
            ``.parquet`` (needs pyarrow).

    Returns:
        The :class:`Table`, every array ``(rows, features)`` float32 with the same columns.

    Raises:
        DataError: Missing or unreadable file, non-numeric or non-finite values, empty
            arrays, splits of different widths.
    """
    path = Path(path)
    _exists(path)
    if path.suffix.lower() != ".npz":
        return Table(train=read_array(path), source=str(path))
    arrays, metadata = _read_npz(path)
    if "train" not in arrays:
        if len(arrays) != 1:
            raise DataError(
                f"{path}: holds arrays {sorted(arrays)}; expected 'train' (with optional "
                "'validation' and 'test') or a single array"
            )
        ((name, value),) = arrays.items()
        return Table(train=check_array(value, f"{path}[{name}]"), source=str(path))
    parts = {
        name: check_array(arrays[name], f"{path}[{name}]") for name in SPLIT_NAMES if name in arrays
    }
    widths = {name: a.shape[1] for name, a in parts.items()}
    if len(set(widths.values())) != 1:
        raise DataError(f"{path}: splits have different numbers of columns {widths}")
    return Table(
        train=parts["train"],
        validation=parts.get("validation"),
        test=parts.get("test"),
        source=str(path),
        metadata=metadata,
    )


def read_array(path: str | Path) -> np.ndarray:
    """One ``(rows, features)`` float32 array from ``path`` (an ``.npz``: its ``train`` split
    or its single array).

    Raises:
        DataError: As :func:`load_table`, or an unsupported suffix.
    """
    path = Path(path)
    _exists(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return load_table(path).train
    if suffix == ".npy":
        try:
            value = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"{path}: not a numeric .npy array ({exc})") from None
        return check_array(value, str(path))
    if suffix == ".csv":
        return check_array(_read_csv(path), str(path))
    if suffix == ".parquet":
        return check_array(_read_parquet(path), str(path))
    raise DataError(f"{path}: unsupported table format; use one of {', '.join(TABLE_SUFFIXES)}")


def check_array(value: Any, name: str) -> np.ndarray:
    """``value`` as a finite ``(rows, features)`` float32 array (a vector becomes one column).

    Args:
        value: An array-like of numbers.
        name: How errors name it (the file, and the split).

    Raises:
        DataError: Not numbers, not 1-D or 2-D, empty, or with NaN / inf.
    """
    array = np.asarray(value)
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_
    ):
        raise DataError(f"{name}: values of type {array.dtype} are not numbers")
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise DataError(f"{name}: a {array.ndim}-D array; a table is (rows, features)")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise DataError(f"{name}: empty table {array.shape}")
    array = np.require(array, np.float32, ["C_CONTIGUOUS", "WRITEABLE"])  # torch-ready
    finite = np.isfinite(array)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        raise DataError(
            f"{name}: row {row + 1}, column {col + 1} is {array[row, col]} "
            f"({int((~finite).sum())} non-finite values)"
        )
    return array


def _exists(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"{path}: no such table file")


def _read_npz(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable numeric .npz ({exc})") from None
    metadata: dict[str, Any] = {}
    if "metadata" in arrays:
        raw = arrays.pop("metadata")
        try:
            metadata = json.loads(str(raw))
        except json.JSONDecodeError:
            raise DataError(f"{path}: its 'metadata' entry is not JSON") from None
    return arrays, metadata


def _read_csv(path: Path) -> np.ndarray:
    import pandas as pd

    with open(path, encoding="utf-8", errors="replace") as handle:
        first = handle.readline()
    if not first.strip():
        raise DataError(f"{path}: empty CSV file")
    try:
        [float(cell) for cell in first.strip().split(",")]
        header = None
    except ValueError:
        header = 0
    try:
        frame = pd.read_csv(path, header=header, engine="c")
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: unreadable CSV ({str(exc).strip().splitlines()[-1]})") from None
    return _numeric_frame(frame, path)


def _read_parquet(path: Path) -> np.ndarray:
    import pandas as pd

    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise DataError(
            f"{path}: reading .parquet needs pyarrow, which is not installed "
            "(pip install pyarrow), or save the table as .npz / .npy / .csv"
        ) from None
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises its own error types for bad files
        raise DataError(f"{path}: unreadable parquet file ({type(exc).__name__}: {exc})") from None
    return _numeric_frame(frame, path)


def _numeric_frame(frame: Any, path: Path) -> np.ndarray:
    """The frame's values, or a DataError naming the first non-numeric column and value."""
    import pandas as pd

    for column in frame.columns:
        series = frame[column]
        if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
            continue
        numbers = pd.to_numeric(series, errors="coerce")
        bad = numbers.isna() & series.notna()
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            raise DataError(
                f"{path}: column {column!r}, row {row + 1}: {str(series.iloc[row])[:30]!r} "
                "is not a number"
            )
        frame[column] = numbers
    return frame.to_numpy(dtype=np.float64)
