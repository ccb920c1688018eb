"""Linear layers whose weight is multiplied by a fixed boolean mask (MADE, MAF)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audioar.errors import ConfigError
from audioar.layers.block_linear import triangular_blocks
from audioar.layers.derived import Derived

__all__ = ["MaskedLinear", "BlockMaskedLinear", "StackedRows", "stack_blocks"]


def _check_mask(mask: Tensor) -> None:
    if mask.ndim != 2 or mask.dtype != torch.bool:
        raise ConfigError(
            f"mask must be a 2-D boolean tensor, got {mask.dtype} {tuple(mask.shape)}"
        )


class _MaskedProduct:
    """The forward both masked layers share: one dense product with :meth:`masked_weight`."""

    def forward(self, x: Tensor) -> Tensor:
        """Apply the masked layer (the plain reference path: one dense product).

        Args:
            x: ``(..., in_features)``.

        Returns:
            ``(..., out_features)``.
        """
        return F.linear(x, self.masked_weight(), self.bias)


class MaskedLinear(_MaskedProduct, nn.Linear):
    """``y = x @ (weight * mask).T + bias`` with the mask kept as a (saved) buffer.

    The raw weight is kept zero wherever the mask is (masked at construction and after
    ``load_state_dict``; gradients through the mask are zero there, so optimisers leave
    those entries alone). Fast paths (:func:`~audioar.layers.block_masked_mlp`) use the raw
    weight and rely on this; after writing to ``weight`` by hand, call :meth:`apply_mask_`.

    Args:
        mask: ``(out_features, in_features)`` boolean connectivity; ``False`` entries are
            cut. ``in_features`` and ``out_features`` are read from its shape.
        bias: Whether to learn an additive bias, default ``True``.

    Example:
        >>> layer = MaskedLinear(torch.tensor([[True, False], [True, True]]))
        >>> layer(torch.randn(5, 2)).shape
        torch.Size([5, 2])
    """

    mask: Tensor

    def __init__(self, mask: Tensor, bias: bool = True) -> None:
        _check_mask(mask)
        out_features, in_features = mask.shape
        super().__init__(in_features, out_features, bias=bias)
        self.register_buffer("mask", mask.clone())
        self._float_mask: Derived[Tensor] = Derived()
        self._masked: Derived[Tensor] = Derived()
        self.apply_mask_()
        self.register_load_state_dict_post_hook(_mask_after_load)

    def apply_mask_(self) -> MaskedLinear:
        """Zero the weight where the mask is ``False`` (in place); returns ``self``."""
        with torch.no_grad():
            self.weight.mul_(self.mask)
        return self

    def float_mask(self) -> Tensor:
        """The mask as 0/1 in the weight's dtype (cached), for multiplying without casts."""
        m, dtype = self.mask, self.weight.dtype
        return self._float_mask.get([m], lambda: m.to(dtype), dtype)

    def masked_weight(self) -> Tensor:
        """The effective weight ``weight * mask``, shape ``(out_features, in_features)``.

        Without autograd (evaluation, sampling) the product is cached, and made again in
        place after the weight changes in place (views taken of it stay valid).
        """
        if torch.is_grad_enabled() and self.weight.requires_grad:
            return self.weight * self.float_mask()
        w, m = self.weight, self.float_mask()
        make = lambda: (w * m).detach()  # noqa: E731
        return self._masked.get([w, m], make, refresh=lambda dense: torch.mul(w, m, out=dense))


def _mask_after_load(module: MaskedLinear | BlockMaskedLinear, incompatible_keys: object) -> None:
    """``load_state_dict`` post-hook: restore the zero-where-masked invariant."""
    module.apply_mask_()


class BlockMaskedLinear(_MaskedProduct, nn.Module):
    """A masked linear layer that stores only the weights its mask can reach, block by block.

    The rows are split into ``num_blocks`` blocks (:func:`triangular_blocks`); block ``j``
    keeps the weight of its rows over the first ``col_end`` columns, the ones any of them
    sees. When units are sorted by degree (MADE) the masked weight is block lower-triangular,
    so the blocks hold ``(k + 1) / 2k`` of the dense weight (3/4 with the default two): the
    columns a whole block cannot see are never stored, multiplied or given optimiser state.
    Inside a block, entries the mask cuts are kept zero (the invariant of
    :class:`MaskedLinear`: masked at construction and on loading, gradients masked).

    Like layers (equal blocks) can keep their block weights stacked, one ``(layers, rows,
    col_end)`` parameter per block (:func:`stack_blocks`; a MAF does this for its flows):
    :meth:`stored_weights` then reads the layer's rows and :attr:`weight_blocks` is empty.

    It computes what :class:`MaskedLinear` computes, from the same initial values (the same
    random draws), and its state dict holds the dense weight under ``weight``, so either
    layer loads the other's state (stacked or not).

    Args:
        mask: ``(out_features, in_features)`` boolean connectivity.
        num_blocks: Row blocks, default ``2``.
        bias: Whether to learn an additive bias, default ``True``.

    Example:
        >>> mask = torch.ones(4, 3, dtype=torch.bool).tril()
        >>> layer = BlockMaskedLinear(mask)
        >>> [tuple(w.shape) for w in layer.weight_blocks]
        [(2, 2), (2, 3)]
        >>> layer(torch.randn(5, 3)).shape
        torch.Size([5, 4])
    """

    mask: Tensor

    def __init__(self, mask: Tensor, num_blocks: int = 2, bias: bool = True) -> None:
        _check_mask(mask)
        super().__init__()
        self.out_features, self.in_features = mask.shape
        self.blocks = triangular_blocks(mask, num_blocks)
        dense = MaskedLinear(mask, bias)  # the same initialisation as MaskedLinear
        self.register_buffer("mask", mask.clone())
        self.weight_blocks = nn.ParameterList(
            nn.Parameter(dense.weight.detach()[r0:r1, :c1].clone()) for r0, r1, _, c1 in self.blocks
        )
        self.bias = dense.bias
        self._rows: tuple[StackedRows, int] | None = None  # stacked blocks: (stacks, row)
        self._float_mask: Derived[Tensor] = Derived()
        self._masked: Derived[Tensor] = Derived()
        self.register_state_dict_post_hook(_dense_weight_in_state)
        self.register_load_state_dict_pre_hook(_blocks_from_dense_weight)
        self.register_load_state_dict_post_hook(_mask_after_load)

    def stored_weights(self) -> tuple[Tensor, ...]:
        """The blocks' weights, ``(rows, col_end)`` each, in row order: the parameters of
        :attr:`weight_blocks`, or this layer's rows of the stacks (:func:`stack_blocks`)."""
        if self._rows is not None:
            stacks, index = self._rows
            return stacks.row(index)
        return tuple(self.weight_blocks)

    def block_masks(self) -> list[Tensor]:
        """The mask of each stored block, ``(rows, col_end)`` boolean views."""
        return [self.mask[r0:r1, :c1] for r0, r1, _, c1 in self.blocks]

    def apply_mask_(self) -> BlockMaskedLinear:
        """Zero the stored weights where the mask is ``False`` (in place); returns ``self``."""
        with torch.no_grad():
            for w, m in zip(self.stored_weights(), self.block_masks(), strict=True):
                w.mul_(m)
        return self

    def float_mask(self) -> Tensor:
        """The mask as 0/1 in the weights' dtype (cached)."""
        m, dtype = self.mask, self.stored_weights()[0].dtype
        return self._float_mask.get([m], lambda: m.to(dtype), dtype)

    def masked_weight(self) -> Tensor:
        """The effective dense weight ``(out_features, in_features)``, zero where masked.

        Assembled from the blocks (differentiably when autograd records); without autograd
        cached, and made again in place after a block changes in place (views taken of it,
        as incremental sampling keeps some, stay valid).
        """
        weights = self.stored_weights()
        if torch.is_grad_enabled() and any(w.requires_grad for w in weights):
            return self._assemble(weights) * self.float_mask()

        def refresh(dense: Tensor) -> None:
            for (r0, r1, _, c1), w in zip(self.blocks, weights, strict=True):
                dense[r0:r1, :c1].copy_(w)

        make = lambda: self._assemble(weights).detach()  # noqa: E731
        return self._masked.get(weights, make, refresh=refresh)

    def _assemble(self, weights: Sequence[Tensor]) -> Tensor:
        return torch.cat([F.pad(w, (0, self.in_features - w.shape[1])) for w in weights])

    def extra_repr(self) -> str:  # noqa: D102
        stored = sum(w.numel() for w in self.stored_weights())
        stacked = f", stacked (row {self._rows[1]})" if self._rows is not None else ""
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"blocks={len(self.blocks)}, stored weights={stored} of "
            f"{self.in_features * self.out_features}{stacked}"
        )


class StackedRows:
    """Row ``index`` of each stacked block weight, for the layers that share the stacks.

    With autograd recording, every row comes from one ``unbind`` of its stack, shared by
    all the layers and made again after the stack changes (an ``unbind``'s views may not be
    used once their base was written in place): each layer taking its own ``stack[index]``
    would have autograd turn each row's gradient into a stack-sized tensor and add them up.
    Without autograd a row is a plain view (writes to it reach the stack).

    Args:
        stacks: ``(layers, rows, col_end)`` parameters, one per block.
    """

    def __init__(self, stacks: nn.ParameterList) -> None:
        self.stacks = stacks
        self._unbound: Derived[list[tuple[Tensor, ...]]] = Derived()

    def row(self, index: int) -> tuple[Tensor, ...]:
        """Each stack's row ``index``."""
        stacks = tuple(self.stacks)
        if torch.is_grad_enabled() and any(s.requires_grad for s in stacks):
            needs = tuple(s.requires_grad for s in stacks)
            unbound = self._unbound.get(stacks, lambda: [s.unbind(0) for s in stacks], needs)
            return tuple(rows[index] for rows in unbound)
        return tuple(s[index] for s in stacks)


def stack_blocks(
    layers: Sequence[BlockMaskedLinear], into: nn.ParameterList | None = None
) -> nn.ParameterList:
    """Stack the block weights of like layers (equal blocks), one parameter per block.

    From then on layer ``t`` reads row ``t`` of every stack (:meth:`~BlockMaskedLinear.
    stored_weights`) and owns no weight parameter: an optimiser steps one tensor per block
    for all layers instead of one per layer and block. The layers' state dicts are as
    before (the dense ``weight``), and load into their rows.

    Args:
        layers: Layers with the same :attr:`~BlockMaskedLinear.blocks`, none stacked yet.
        into: An empty parameter list to put the stacks in (e.g. one that state dicts
            leave out); default a new ``nn.ParameterList``.

    Returns:
        The stacks, ``(len(layers), rows, col_end)`` each; keep them in the owner's modules
        (they are the layers' weights now).

    Raises:
        ConfigError: Layers with different blocks, or already stacked.
    """
    first = layers[0]
    if any(layer.blocks != first.blocks or layer._rows is not None for layer in layers):
        raise ConfigError("stack_blocks needs unstacked layers with the same blocks")
    stacks = into if into is not None else nn.ParameterList()
    stacks.extend(
        nn.Parameter(torch.stack([layer.weight_blocks[j].detach() for layer in layers]))
        for j in range(len(first.blocks))
    )
    rows = StackedRows(stacks)
    for index, layer in enumerate(layers):
        layer.weight_blocks = nn.ParameterList()
        layer._rows = (rows, index)
    return stacks


def _dense_weight_in_state(
    module: BlockMaskedLinear, state: dict[str, Any], prefix: str, local_metadata: object
) -> None:
    """``state_dict`` post-hook: the dense ``weight`` in place of the stored blocks."""
    for j in range(len(module.blocks)):
        state.pop(f"{prefix}weight_blocks.{j}", None)
    with torch.no_grad():
        state[f"{prefix}weight"] = module._assemble(module.stored_weights()).detach()


def _blocks_from_dense_weight(
    module: BlockMaskedLinear,
    state: dict[str, Any],
    prefix: str,
    local_metadata: object,
    strict: bool,
    missing_keys: list[str],
    unexpected_keys: list[str],
    error_msgs: list[str],
) -> None:
    """``load_state_dict`` pre-hook: split a dense ``weight`` into the stored blocks (into the
    layer's rows when its blocks are stacked)."""
    mask = state.get(f"{prefix}mask")
    weight = state.pop(f"{prefix}weight", None)
    if isinstance(mask, Tensor) and not torch.equal(mask.to(module.mask.device), module.mask):
        # The blocks were cut for this layer's mask: load neither mask nor weight.
        state[f"{prefix}mask"] = module.mask
        error_msgs.append(f"{prefix}mask differs from this layer's (built for another model)")
        return
    if weight is None:
        if strict and module._rows is not None:  # no parameter of its own to miss
            missing_keys.append(f"{prefix}weight")
        return
    if tuple(weight.shape) != (module.out_features, module.in_features):
        error_msgs.append(
            f"{prefix}weight has shape {tuple(weight.shape)}, expected "
            f"{(module.out_features, module.in_features)}"
        )
        return
    if module._rows is None:
        for j, (r0, r1, _, c1) in enumerate(module.blocks):
            state[f"{prefix}weight_blocks.{j}"] = weight[r0:r1, :c1]
        return
    with torch.no_grad():
        for (r0, r1, _, c1), row in zip(module.blocks, module.stored_weights(), strict=True):
            row.copy_(weight[r0:r1, :c1])
