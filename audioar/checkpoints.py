"""Checkpoints of a fit in progress: written after every epoch (whole or not at all), read
back by ``fit(..., resume=True)`` so an interrupted fit continues where it stopped."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from audioar.atomic import atomic_write
from audioar.errors import TrainingError

__all__ = ["CHECKPOINT_VERSION", "FitState", "save_checkpoint", "load_checkpoint"]

CHECKPOINT_VERSION = 1  # layout of the per-epoch checkpoint dict


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
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: FitState
) -> None:
    """Write the checkpoint whole or not at all."""
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
    }
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device
) -> FitState:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("version") != CHECKPOINT_VERSION:
            raise TrainingError(
                f"{path}: checkpoint version {payload.get('version')!r}; "
                f"this audioar reads version {CHECKPOINT_VERSION}"
            )
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        torch.set_rng_state(payload["rng_cpu"])
        if payload["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(payload["rng_cuda"])
    except TrainingError:
        raise
    except Exception as exc:  # a truncated or foreign file: unpickling/shape/key errors
        raise TrainingError(
            f"{path}: cannot resume from this checkpoint ({type(exc).__name__}: {exc}); "
            "delete it to start afresh"
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
