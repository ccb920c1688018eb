"""MADE degrees and connectivity masks, as pure functions returning tensors.

A MADE assigns every unit an integer *degree*. Input ``j`` gets its position in the
generation order (``1..features``); a hidden unit of degree ``k`` may see inputs of degree
``<= k``; an output of degree ``d`` may see hidden units of degree ``< d``. Every path from
input ``j`` to output ``i`` then has ``degree(j) < degree(i)``: the network is autoregressive.
Context inputs (a class one-hot, ...) get degree ``0``: they reach every hidden unit but
no output directly, so they never open a path that bypasses the ordering.

References:
    | MADE: Masked Autoencoder for Distribution Estimation (Germain et al., 2015)
    | https://arxiv.org/abs/1502.03509
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import BoolTensor, LongTensor, Tensor

from audioar.errors import ConfigError

__all__ = [
    "ORDERS",
    "input_degrees",
    "hidden_degrees",
    "made_degrees",
    "made_masks",
    "connectivity",
]

ORDERS = ("natural", "reverse", "random")

Order = str | Sequence[int] | Tensor


def input_degrees(
    features: int, order: Order = "natural", generator: torch.Generator | None = None
) -> LongTensor:
    """Degrees ``1..features`` of the inputs for a generation order.

    Args:
        features: Number of inputs ``D >= 1``.
        order: ``"natural"`` (``x_0`` first), ``"reverse"`` (``x_{D-1}`` first), ``"random"``
            (a permutation drawn from ``generator``), or an explicit permutation listing the
            features in the order they are generated (``[2, 0, 1]``: ``x_2`` first).
        generator: Random generator for ``"random"``; default ``None`` (global RNG).

    Returns:
        ``(features,)`` long tensor; ``degrees[j]`` is 1 + the position of ``x_j`` in the order.

    Example:
        >>> input_degrees(3, [2, 0, 1])
        tensor([2, 3, 1])
    """
    if features < 1:
        raise ConfigError(f"features must be >= 1, got {features}")
    if isinstance(order, str):
        if order == "natural":
            perm = torch.arange(features)
        elif order == "reverse":
            perm = torch.arange(features - 1, -1, -1)
        elif order == "random":
            perm = torch.randperm(features, generator=generator)
        else:
            raise ConfigError(f"order must be one of {ORDERS} or a permutation, got {order!r}")
    else:
        perm = torch.as_tensor(order, dtype=torch.long).flatten()
        if perm.numel() != features or not torch.equal(perm.sort().values, torch.arange(features)):
            raise ConfigError(f"order must be a permutation of 0..{features - 1}, got {order!r}")
    degrees = torch.empty(features, dtype=torch.long)
    degrees[perm] = torch.arange(1, features + 1)
    return degrees


def hidden_degrees(
    units: int,
    low: int,
    high: int,
    mode: str = "equal",
    generator: torch.Generator | None = None,
) -> LongTensor:
    """Degrees of one hidden layer, sorted in non-decreasing order.

    Sorted degrees make every mask block-triangular (a fast path skips the zero blocks);
    the order of hidden units is otherwise irrelevant.

    Args:
        units: Number of hidden units.
        low: Smallest degree (``0`` when context units must reach the first output).
        high: Largest useful degree (``features - 1``; a unit of degree ``features`` feeds
            no output).
        mode: ``"equal"`` spreads the degrees evenly over ``low..high`` (every degree is
            present when ``units >= high - low + 1``: no dead connectivity); ``"random"``
            draws them uniformly like the original MADE. Default ``"equal"``.
        generator: Random generator for ``"random"``; default ``None``.

    Returns:
        ``(units,)`` long tensor of degrees in ``[low, high]``.
    """
    if units < 1:
        raise ConfigError(f"hidden layers need >= 1 unit, got {units}")
    high = max(high, low)
    span = high - low + 1
    if mode == "equal":
        degrees = low + torch.arange(units) * span // units
    elif mode == "random":
        degrees = torch.randint(low, high + 1, (units,), generator=generator).sort().values
    else:
        raise ConfigError(f"hidden degree mode must be 'equal' or 'random', got {mode!r}")
    return degrees


def made_degrees(
    in_degrees: Tensor,
    hidden_features: Sequence[int],
    context_features: int = 0,
    mode: str = "equal",
    generator: torch.Generator | None = None,
) -> list[LongTensor]:
    """Degrees of every layer of a MADE, inputs first (context inputs, degree 0, lead them).

    Args:
        in_degrees: ``(in_features,)`` degrees of the data inputs (from :func:`input_degrees`,
            possibly repeated per unit, e.g. for one-hot inputs).
        hidden_features: Units of each hidden layer, e.g. ``(512, 512)``.
        context_features: Number of context inputs, default ``0``.
        mode: Hidden degree assignment, ``"equal"`` or ``"random"`` (:func:`hidden_degrees`).
        generator: Random generator for ``"random"``.

    Returns:
        ``[inputs, hidden_1, ..., hidden_L]``; the input entry has ``context_features +
        in_features`` degrees, context first so that sorted inputs stay sorted.
    """
    features = int(in_degrees.max())
    # Degree-0 hidden units see only the context: they let it reach the first output.
    low = 0 if context_features > 0 or features == 1 else 1
    context = torch.zeros(context_features, dtype=torch.long)
    degrees = [torch.cat([context, in_degrees.long()])]
    for units in hidden_features:
        degrees.append(hidden_degrees(units, low, features - 1, mode, generator))
    return degrees


def made_masks(degrees: Sequence[Tensor], out_degrees: Tensor) -> list[BoolTensor]:
    """Connectivity masks of a MADE from its layer degrees.

    Args:
        degrees: ``[inputs, hidden_1, ..., hidden_L]`` degrees (see :func:`made_degrees`).
        out_degrees: ``(out_features,)`` degree of each output (the degree of the feature it
            parameterises; repeat it for several parameters per feature).

    Returns:
        ``L + 1`` boolean masks, shaped ``(out_units, in_units)`` like ``nn.Linear.weight``:
        hidden layers connect ``degree_out >= degree_in``, the output layer ``degree_out >
        degree_in``.
    """
    masks = [
        d_out[:, None] >= d_in[None, :]
        for d_in, d_out in zip(degrees[:-1], degrees[1:], strict=True)
    ]
    masks.append(out_degrees[:, None] > degrees[-1][None, :])
    return masks


def connectivity(masks: Sequence[Tensor]) -> BoolTensor:
    """Which inputs can reach which outputs through a stack of masks.

    Args:
        masks: Boolean masks ``(out_units, in_units)``, first layer first.

    Returns:
        ``(out_units_last, in_units_first)`` boolean: ``True`` where some path exists.
    """
    reach = masks[0].float()
    for mask in masks[1:]:
        reach = (mask.float() @ reach).clamp(max=1.0)
    return reach > 0
