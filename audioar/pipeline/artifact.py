"""The run directory: everything needed to score clips with a trained model.

Layout of ``RUN_DIR``::

    config.json   {"format_version": 2, "audioar_version", "created", "config",
                   "featurizer", "calibration", "extra"}
    weights.pt    the model's state dict: tensors only, read with weights_only=True
    history.csv   one row per training epoch

The directory appears whole or not at all: it is written into a hidden temporary sibling
``.RUN_DIR.tmp-<random>`` and renamed. While a fit runs, its checkpoint lives in another sibling,
``RUN_DIR.partial/`` (:func:`checkpoint_path_for`), removed once the run is saved, and the
fit holds ``RUN_DIR.lock`` (:func:`hold_run_lock`) so that two fits never share them.
"""

import json
import logging
import math
import os
import pickle
import shutil
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from audioar import __version__
from audioar.atomic import atomic_write, pid_alive, replace_dir, temp_sibling, write_error
from audioar.config.recipes import FORMAT_VERSION
from audioar.errors import ConfigError, RunFormatError

__all__ = [
    "Run",
    "save_run",
    "load_run",
    "read_document",
    "replace_calibration",
    "checkpoint_path_for",
    "remove_checkpoint",
    "lock_path_for",
    "hold_run_lock",
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "HISTORY_FILE",
]

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"
HISTORY_FILE = "history.csv"
_HISTORY_COLUMNS = ["epoch", "train_log_likelihood", "val_log_likelihood", "seconds"]


@dataclass
class Run:
    """A loaded run directory.

    Attributes:
        config: The resolved run config (``run_config_to_dict`` form).
        state_dict: The model weights, on the CPU.
        featurizer: The featurizer config (``{"name": ..., **kwargs}``).
        calibration: The calibration record (``Calibration.to_dict`` form).
        history: One row per epoch (``epoch, train_log_likelihood, val_log_likelihood,
            seconds``, extra columns).
        extra: Anything else the writer stored (e.g. model shape arguments, metrics).
        path: The run directory.
        audioar_version: Version of audioar that wrote it.
        created: ISO 8601 time it was written (UTC).
    """

    config: dict[str, Any]
    state_dict: dict[str, Tensor]
    featurizer: dict[str, Any]
    calibration: dict[str, Any]
    history: pd.DataFrame
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path = Path(".")
    audioar_version: str = ""
    created: str = ""


def _json_safe(value: Any) -> Any:
    """Tuples -> lists, paths -> str, numpy/torch scalars -> Python, NaN/inf -> None."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise ConfigError(f"cannot store a {type(value).__name__} in {CONFIG_FILE}: {value!r}")


def save_run(
    run_dir: str | Path,
    *,
    config: dict[str, Any],
    state_dict: dict[str, Tensor],
    featurizer: dict[str, Any],
    calibration: dict[str, Any],
    history: list[dict[str, Any]],
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a run directory atomically.

    Args:
        run_dir: The directory to create (its parent is created when missing).
        config: The resolved run config (JSON-safe dict, e.g. ``run_config_to_dict(cfg)``).
        state_dict: The model's ``state_dict()``; tensors only (moved to the CPU).
        featurizer: The featurizer config.
        calibration: ``Calibration.to_dict()``.
        history: ``FitResult.history`` (one dict per epoch).
        extra: More JSON-safe facts to keep (model shape arguments, metrics). Default: none.
        overwrite: Replace an existing run directory. Default: False.

    Returns:
        The run directory's path.

    Raises:
        ConfigError: ``run_dir`` exists and ``overwrite`` is False, or a value cannot be
            stored (not JSON-safe, a state dict entry that is not a tensor).
        OSError: A write failed (e.g. no space left on device); it names ``run_dir``, not
            the hidden folder the run was being written into, and nothing is left behind.
    """
    named = Path(run_dir)  # as the user wrote it, for messages
    run_dir = Path(run_dir).expanduser().absolute()
    if run_dir.exists() and not overwrite:
        raise ConfigError(f"{run_dir}: already exists; choose another --out or pass --overwrite")
    bad = [k for k, v in state_dict.items() if not isinstance(v, Tensor)]
    if bad:
        raise ConfigError(f"state_dict entries that are not tensors: {', '.join(bad[:5])}")
    document = {
        "format_version": FORMAT_VERSION,
        "audioar_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": _json_safe(config),
        "featurizer": _json_safe(featurizer),
        "calibration": _json_safe(calibration),
        "extra": _json_safe(extra or {}),
    }
    tmp = temp_sibling(run_dir, "tmp")
    try:
        (tmp / CONFIG_FILE).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        weights = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
        torch.save(weights, tmp / WEIGHTS_FILE)
        frame = pd.DataFrame(history) if history else pd.DataFrame(columns=_HISTORY_COLUMNS)
        frame.to_csv(tmp / HISTORY_FILE, index=False)
        replace_dir(tmp, run_dir)  # an old run (overwrite) goes only once the new one is in
    except (OSError, RuntimeError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        error = write_error(exc, named, tmp)
        if error is None:
            raise
        raise error from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("saved run to %s", run_dir)
    return run_dir


def read_document(run_dir: str | Path) -> dict[str, Any]:
    """The checked ``config.json`` of a run directory (without loading its weights).

    Returns:
        ``{"format_version", "audioar_version", "created", "config", "featurizer",
        "calibration", "extra"}``.

    Raises:
        RunFormatError: One line naming the file: missing directory, not a run directory,
            invalid JSON, another format version, a missing section.
    """
    run_dir = Path(run_dir).expanduser()
    if not run_dir.exists():
        raise RunFormatError(f"{run_dir}: run directory not found")
    if not run_dir.is_dir():
        raise RunFormatError(f"{run_dir}: not a directory (a run is a directory)")
    config_path = run_dir / CONFIG_FILE
    if not config_path.exists():
        raise RunFormatError(f"{run_dir}: not an audioar run directory (no {CONFIG_FILE})")
    try:
        document = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunFormatError(f"{config_path}: invalid JSON ({exc})") from None
    if not isinstance(document, dict) or "format_version" not in document:
        raise RunFormatError(f"{config_path}: not an audioar run config (no format_version)")
    version = document["format_version"]
    if version != FORMAT_VERSION:
        hint = "; refit it with this audioar" if isinstance(version, int) and version < 2 else ""
        raise RunFormatError(
            f"{config_path}: run was written by format version {version}; "
            f"this audioar reads version {FORMAT_VERSION}{hint}"
        )
    for key in ("config", "featurizer", "calibration"):
        if not isinstance(document.get(key), dict):
            raise RunFormatError(f"{config_path}: missing or invalid {key!r} entry")
    if document.get("extra") is not None and not isinstance(document["extra"], dict):
        raise RunFormatError(f"{config_path}: 'extra' must be a JSON object")
    return document


def replace_calibration(
    run_dir: str | Path, calibration: dict[str, Any], source: dict[str, Any]
) -> Path:
    """Replace a run's calibration record in its ``config.json`` (atomically).

    Args:
        run_dir: The run directory.
        calibration: The new ``Calibration.to_dict()``.
        source: What it was made from (JSON-safe), kept as ``extra.calibration_source``.

    Returns:
        The path of ``config.json``.

    Raises:
        RunFormatError: As :func:`read_document`.
    """
    document = read_document(run_dir)
    document["calibration"] = _json_safe(calibration)
    document["extra"] = {**(document.get("extra") or {}), "calibration_source": _json_safe(source)}
    path = Path(run_dir).expanduser() / CONFIG_FILE
    return atomic_write(path, json.dumps(document, indent=2) + "\n")


def load_run(run_dir: str | Path) -> Run:
    """Read a run directory written by :func:`save_run`.

    Args:
        run_dir: The directory.

    Returns:
        The :class:`Run`; weights are loaded on the CPU with ``weights_only=True`` (no
        pickled code is ever run).

    Raises:
        RunFormatError: One line naming the file: missing directory, not a run directory,
            invalid ``config.json``, another format version, corrupted or truncated
            ``weights.pt``, unreadable ``history.csv``.
    """
    run_dir = Path(run_dir).expanduser()
    document = read_document(run_dir)
    weights_path = run_dir / WEIGHTS_FILE
    if not weights_path.exists():
        raise RunFormatError(f"{weights_path}: missing")
    try:
        with warnings.catch_warnings():  # torch's own notes on unpickling are not for users
            warnings.simplefilter("ignore")
            state_dict = torch.load(weights_path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # pickled code (or objects) that weights_only refuses
        raise RunFormatError(
            f"{weights_path}: not a weights file written by audioar (refused to unpickle)"
        ) from None
    except Exception:  # a truncated zip or garbage
        raise RunFormatError(f"{weights_path}: corrupted or truncated weights file") from None
    if not isinstance(state_dict, dict) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state_dict.items()
    ):
        raise RunFormatError(f"{weights_path}: not a state dict of tensors")

    history_path = run_dir / HISTORY_FILE
    if not history_path.exists():
        raise RunFormatError(f"{history_path}: missing")
    try:
        history = pd.read_csv(history_path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise RunFormatError(f"{history_path}: unreadable ({exc})") from None

    return Run(
        config=document["config"],
        state_dict=state_dict,
        featurizer=document["featurizer"],
        calibration=document["calibration"],
        history=history,
        extra=document.get("extra") or {},
        path=run_dir,
        audioar_version=str(document.get("audioar_version", "")),
        created=str(document.get("created", "")),
    )


def checkpoint_path_for(run_dir: str | Path) -> Path:
    """Where a fit for ``run_dir`` keeps its in-progress checkpoint.

    It sits outside the final run directory, in the sibling ``RUN_DIR.partial/``, so an
    interrupted fit never leaves a half-made run and ``fit(..., resume=True)`` finds it.

    Returns:
        ``RUN_DIR.partial/checkpoint.pt`` (not created here).
    """
    run_dir = Path(run_dir).expanduser().absolute()
    return run_dir.parent / f"{run_dir.name}.partial" / "checkpoint.pt"


def remove_checkpoint(run_dir: str | Path) -> None:
    """Delete ``RUN_DIR.partial/`` (call after :func:`save_run` succeeded); no error if absent."""
    partial = checkpoint_path_for(run_dir).parent
    if partial.exists():
        shutil.rmtree(partial)
        logger.info("removed checkpoint folder %s", partial)


def lock_path_for(run_dir: str | Path) -> Path:
    """The lock file a fit of ``run_dir`` holds: the sibling ``RUN_DIR.lock``."""
    run_dir = Path(run_dir).expanduser().absolute()
    return run_dir.parent / f"{run_dir.name}.lock"


#: Seconds a lock file without a process id is taken for one being written (then stale).
_LOCK_GRACE = 10.0


@contextmanager
def hold_run_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold ``RUN_DIR.lock`` (created exclusively, holding this process's id) while the
    block runs, so that a second fit of the same run directory fails at once.

    A lock left by a process that no longer runs (killed outright) is taken over.

    Args:
        run_dir: The run directory the fit writes.

    Yields:
        The lock file's path.

    Raises:
        ConfigError: Another running process holds the lock (named with its process id).
    """
    lock = lock_path_for(run_dir)
    lock.parent.mkdir(parents=True, exist_ok=True)
    mine = f"{os.getpid()}\n"
    for _ in range(5):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _lock_holder(lock)
            if holder is not None and (holder == -1 or pid_alive(holder)):
                who = "another process" if holder == -1 else f"another fit (pid {holder})"
                raise ConfigError(
                    f"{run_dir}: {who} is writing this run (lock {run_dir}.lock); wait for "
                    "it to finish or stop it"
                ) from None
            if holder is not None:
                logger.warning("taking over %s of pid %d, which no longer runs", lock, holder)
            lock.unlink(missing_ok=True)
            continue
        try:
            os.write(fd, mine.encode())
        except OSError as exc:
            os.close(fd)
            lock.unlink(missing_ok=True)
            raise write_error(exc, lock) or exc from None
        os.close(fd)
        break
    else:  # pragma: no cover - other processes kept re-creating it
        raise ConfigError(f"{run_dir}: cannot take the lock {lock}; try again")
    try:
        yield lock
    finally:
        try:
            if lock.read_text() == mine:  # a lock taken over meanwhile is not ours to drop
                lock.unlink()
        except OSError:
            pass


def _lock_holder(lock: Path) -> int | None:
    """The process id in ``lock``; -1 for a lock being written (no id yet, recent); None
    when there is nothing to respect (gone, or an old lock without an id)."""
    try:
        text = lock.read_text().strip()
        age = time.time() - lock.stat().st_mtime
    except OSError:
        return None
    if text.isdigit():
        return int(text)
    return -1 if age < _LOCK_GRACE else None
