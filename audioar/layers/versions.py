"""Keep in-place version counters true after fused optimiser steps.

The fast paths cache what they derive from parameters (dense
masked weights for sampling, batch norm as an affine map) and key those caches on each
tensor's in-place version counter (``Tensor._version``), which every in-place operation
bumps. PyTorch's fused optimisers (``Adam(fused=True)``, ``AdamW``, ``SGD``; torch 2.11,
CPU checked) write the parameters without bumping it, so after a fused step those caches
would keep serving the old weights: a MAF evaluated after 20 fused Adam steps gave a mean
log-likelihood of -9.10 on the fast path against -8.89 on the reference path. One global
optimiser step hook, registered when :mod:`audioar.layers` is imported, bumps the counters of
the parameters a fused step updated, as a non-fused step does; nothing else changes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd.graph import increment_version
from torch.optim.optimizer import register_optimizer_step_post_hook

__all__ = ["bump_versions_after_fused_step"]


def bump_versions_after_fused_step(
    optimizer: torch.optim.Optimizer, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Optimiser step post-hook: bump the version counters of the parameters of every
    ``fused`` parameter group (a no-op for the other groups, whose steps bump them)."""
    params = [
        p
        for group in optimizer.param_groups
        if group.get("fused")
        for p in group["params"]
        if p.grad is not None
    ]
    if params:
        with torch.no_grad():
            increment_version(params)


_HANDLE = register_optimizer_step_post_hook(bump_versions_after_fused_step)
