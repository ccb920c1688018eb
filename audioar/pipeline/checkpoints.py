"""Checkpoints of a fit in progress: written after every epoch (whole or not at all), read
back by ``fit(..., resume=True)`` so an interrupted fit continues where it stopped.

A checkpoint keeps the training settings it was made with; a resume with other settings
(:func:`setting_differences`) is refused with :class:`CheckpointError` and the checkpoint
is left as it was.
"""

from __future__ import annotations

import copy
import math
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from audioar.atomic import atomic_open
from audioar.errors import TrainingError

__all__ = [
    "CHECKPOINT_VERSION",
    "RESUMABLE",
    "CheckpointError",
    "FitState",
    "save_checkpoint",
    "load_checkpoint",
    "checkpoint_epoch",
    "setting_differences",
]

CHECKPOINT_VERSION = 1  # layout of the per-epoch checkpoint dict

#: Settings a resume may change: how long and where it trains, how often it logs, and where
#: the data lies (the clips themselves are compared apart). Anything else changes the fit.
RESUMABLE = ("train.epochs", "train.max_minutes", "train.device", "train.log_every", "data.root")

#: What a refused checkpoint's message ends with.
AFRESH = "pass --overwrite to start afresh"


class CheckpointError(TrainingError):
    """A checkpoint cannot be resumed (unreadable, refused, made with other settings); the
    checkpoint is kept: it may still serve the fit it was made for."""


@dataclass
class FitState:
    """Everything a fit must carry across a restart (what a checkpoint holds besides the
    model and optimiser states)."""

    epoch: int = 0  # epochs completed
    best_epoch: int = 0
    best_val: float = -math.inf
    best_state: dict[str, Tensor] | None = None
    bad_epochs: int = 0  # epochs since the last improvement
    history: list[dict[str, float]] = field(default_factory=list)
    stopped: str | None = None


def save_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: FitState,
    settings: dict[str, Any] | None = None,
) -> None:
    """Write the checkpoint whole or not at all.

    Args:
        path: The checkpoint file.
        model: The model (its state is saved on the CPU).
        optimizer: Its optimiser.
        state: The fit's state.
        settings: The training settings (``{"train": {...}}``), compared on resume.

    Raises:
        OSError: The write failed (e.g. no space left on device), naming ``path``.
    """
    payload = {
        "version": CHECKPOINT_VERSION,
        "epoch": state.epoch,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "best_epoch": state.best_epoch,
        "best_val": state.best_val,
        "best_state": state.best_state,
        "bad_epochs": state.bad_epochs,
        "history": state.history,
        "stopped": state.stopped,
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "settings": settings or {},
    }
    # Through a Python file: a failed write is an OSError with its errno (ENOSPC), where
    # torch's own writer only says "unexpected pos".
    with atomic_open(path, "wb") as handle:
        torch.save(payload, handle)


def _read(path: Path, *, mmap: bool = False) -> dict[str, Any]:
    """The checkpoint's payload, or a one-line :class:`CheckpointError`."""
    try:
        with warnings.catch_warnings():  # torch's notes on unpickling are not for users
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" not in str(exc) and "global" not in str(exc):  # not a pickle at all
            raise CheckpointError(
                f"{path}: cannot resume: corrupted or truncated checkpoint; {AFRESH}"
            ) from None
        # code or objects (a class, a function) that weights_only refuses to unpickle
        raise CheckpointError(
            f"{path}: the file holds code or objects other than tensors and is refused "
            f"(not a checkpoint written by audioar); {AFRESH}"
        ) from None
    except Exception:  # a truncated zip or garbage
        raise CheckpointError(
            f"{path}: cannot resume: corrupted or truncated checkpoint; {AFRESH}"
        ) from None
    if not isinstance(payload, dict) or "epoch" not in payload:
        raise CheckpointError(f"{path}: not a checkpoint written by audioar; {AFRESH}")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {payload.get('version')!r}; this audioar reads "
            f"version {CHECKPOINT_VERSION}; {AFRESH}"
        )
    return payload


def checkpoint_epoch(path: Path) -> int:
    """The number of epochs the checkpoint at ``path`` has finished (read cheaply, mapped).

    Raises:
        CheckpointError: Unreadable, refused or of another version (one line).
    """
    try:
        return int(_read(Path(path), mmap=True)["epoch"])
    except (TypeError, ValueError):
        raise CheckpointError(f"{path}: not a checkpoint written by audioar; {AFRESH}") from None


def _flat(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, f"{name}."))
        else:
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def setting_differences(stored: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The settings in which ``now`` differs from ``stored`` (nested dicts), as
    ``"key (was A, now B)"``, leaving out those a resume may change (:data:`RESUMABLE`)."""
    old, new = _flat(stored), _flat(now)
    keys = [k for k in dict.fromkeys([*old, *new]) if k not in RESUMABLE]
    missing = object()
    return [
        f"{k} (was {_show(old.get(k, missing))}, now {_show(new.get(k, missing))})"
        for k in keys
        if old.get(k, missing) != new.get(k, missing)
    ]


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ",".join(map(str, value)) + "]"
    return "unset" if type(value) is object else str(value)


def load_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    settings: dict[str, Any] | None = None,
) -> FitState:
    """Restore the model, optimiser and RNG states from ``path``; return the fit's state.

    Args:
        path: The checkpoint file.
        model: The model to load into (built with the checkpoint's settings).
        optimizer: Its optimiser.
        device: Where the model trains.
        settings: The training settings of this fit, compared with the checkpoint's
            (those of :data:`RESUMABLE` may differ).

    Raises:
        CheckpointError: Unreadable or refused file, other settings, or weights that do
            not fit ``model`` (one line; the file is left alone).
    """
    payload = _read(path)
    stored = payload.get("settings") or {}
    if settings is not None and stored:
        changed = setting_differences(stored, settings)
        if changed:
            raise CheckpointError(
                f"{path}: cannot resume with other settings than the checkpoint's: "
                f"{'; '.join(changed)}; {AFRESH}"
            )
    try:
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        torch.set_rng_state(payload["rng_cpu"])
        if payload["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(payload["rng_cuda"])
    except Exception as exc:  # shape/key errors: another model
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(":. ")
        raise CheckpointError(
            f"{path}: the checkpoint does not fit this model ({first}); resume with the "
            f"settings it was made with, or {AFRESH}"
        ) from None
    model.to(device)
    return FitState(
        epoch=int(payload["epoch"]),
        best_epoch=int(payload["best_epoch"]),
        best_val=float(payload["best_val"]),
        best_state=copy.copy(payload["best_state"]),
        bad_epochs=int(payload["bad_epochs"]),
        history=[dict(row) for row in payload["history"]],
        stopped=payload["stopped"],
    )
