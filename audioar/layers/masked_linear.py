"""Linear layers whose weight is multiplied by a fixed boolean mask (MADE, MAF)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audioar.errors import ConfigError
from audioar.layers.block_linear import triangular_blocks
from audioar.layers.borrowed import BorrowsParameters

__all__ = ["MaskedLinear", "BlockMaskedLinear"]


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
        self._cache: tuple[tuple, Tensor] | None = None
        self._float_cache: tuple[tuple, Tensor] | None = None
        self.apply_mask_()
        self.register_load_state_dict_post_hook(_mask_after_load)

    def apply_mask_(self) -> MaskedLinear:
        """Zero the weight where the mask is ``False`` (in place); returns ``self``."""
        with torch.no_grad():
            self.weight.mul_(self.mask)
        return self

    def float_mask(self) -> Tensor:
        """The mask as 0/1 in the weight's dtype (cached), for multiplying without casts."""
        w, m = self.weight, self.mask
        key = (w.dtype, w.device, m._version, m.data_ptr())
        if self._float_cache is None or self._float_cache[0] != key:
            self._float_cache = (key, m.to(w.dtype))
        return self._float_cache[1]

    def masked_weight(self) -> Tensor:
        """The effective weight ``weight * mask``, shape ``(out_features, in_features)``.

        Without autograd (evaluation, sampling) the product is cached until the weight or
        the mask changes (tracked through their in-place version counters).
        """
        if torch.is_grad_enabled() and self.weight.requires_grad:
            return self.weight * self.float_mask()
        w, m = self.weight, self.float_mask()
        key = (w._version, w.data_ptr(), w.dtype, m._version, m.data_ptr())
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, (w * m).detach())
        return self._cache[1]


def _mask_after_load(module: MaskedLinear | BlockMaskedLinear, incompatible_keys: object) -> None:
    """``load_state_dict`` post-hook: restore the zero-where-masked invariant."""
    module.apply_mask_()


class BlockMaskedLinear(_MaskedProduct, BorrowsParameters, nn.Module):
    """A masked linear layer that stores only the weights its mask can reach, block by block.

    The rows are split into ``num_blocks`` blocks (:func:`triangular_blocks`); block ``j``
    keeps the weight of its rows over the first ``col_end`` columns, the ones any of them
    sees. When units are sorted by degree (MADE) the masked weight is block lower-triangular,
    so the blocks hold ``(k + 1) / 2k`` of the dense weight (3/4 with the default two): the
    columns a whole block cannot see are never stored, multiplied or given optimiser state.
    Inside a block, entries the mask cuts are kept zero (the invariant of
    :class:`MaskedLinear`: masked at construction and on loading, gradients masked).

    Its block weights and bias may be borrowed from stacks shared by like layers
    (:meth:`~audioar.layers.borrowed.BorrowsParameters.borrow`, names ``weight_blocks.j``
    and ``bias``; a MAF does this for its flows): :meth:`stored_weights` and ``bias`` then
    read the layer's rows and :attr:`weight_blocks` is empty.

    It computes what :class:`MaskedLinear` computes, from the same initial values (the same
    random draws), and its state dict holds the dense weight under ``weight``, so either
    layer loads the other's state.

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
        self._float_cache: tuple[tuple, Tensor] | None = None
        self._dense_cache: tuple[tuple, tuple, Tensor] | None = None
        self.register_state_dict_post_hook(_dense_weight_in_state)
        self.register_load_state_dict_pre_hook(_blocks_from_dense_weight)
        self.register_load_state_dict_post_hook(_mask_after_load)

    def stored_weights(self) -> tuple[Tensor, ...]:
        """The blocks' weight parameters, ``(rows, col_end)`` each, in row order.

        The same as iterating :attr:`weight_blocks`, without its per-item attribute lookups
        (a fast path asks for them on every call). Views of the stacks when borrowed.
        """
        if self._borrowed is not None and "weight_blocks.0" in self._borrowed:
            return tuple(self.borrowed(f"weight_blocks.{j}") for j in range(len(self.blocks)))
        return tuple(self.weight_blocks._parameters.values())

    def borrow(  # noqa: D102
        self, stacks: Mapping[str, Tensor], index: int, rows: Mapping | None = None
    ) -> None:
        super().borrow(stacks, index, rows)
        if any(name.startswith("weight_blocks.") for name in stacks):
            self.weight_blocks = nn.ParameterList()

    def storage_key(  # noqa: D102
        self, own: Sequence[Tensor] = (), versions: bool = False
    ) -> tuple:
        own = [*own, *self.weight_blocks._parameters.values()]  # none when borrowed
        own += [self._parameters["bias"]] if self._parameters.get("bias") is not None else []
        return super().storage_key(own, versions)

    def weight_source(self) -> Tensor:
        """The tensor the first weight block lives in (its parameter, or the stack it
        borrows a row of): its dtype and device, read without making a view."""
        if self._borrowed is not None and "weight_blocks.0" in self._borrowed:
            return self._borrowed["weight_blocks.0"][0]
        return next(iter(self.weight_blocks._parameters.values()))

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
        w, m = self.stored_weights()[0], self.mask
        key = (w.dtype, w.device, m._version, m.data_ptr())
        if self._float_cache is None or self._float_cache[0] != key:
            self._float_cache = (key, m.to(w.dtype))
        return self._float_cache[1]

    def masked_weight(self) -> Tensor:
        """The effective dense weight ``(out_features, in_features)``, zero where masked.

        Assembled from the blocks (differentiably when autograd records). Without autograd
        it is cached, and refreshed in place when a block changes (in-place version
        counters), so views of it taken earlier (incremental sampling keeps some) stay valid.
        """
        weights = self.stored_weights()
        if torch.is_grad_enabled() and any(w.requires_grad for w in weights):
            return self._assemble() * self.float_mask()
        storage = tuple(w.data_ptr() for w in weights)
        versions = tuple(w._version for w in weights)
        cache = self._dense_cache
        if cache is None or cache[0] != storage:
            with torch.no_grad():
                dense = self._assemble()
        elif cache[1] != versions:
            dense = cache[2]
            with torch.no_grad():
                for (r0, r1, _, c1), w in zip(self.blocks, weights, strict=True):
                    dense[r0:r1, :c1].copy_(w)
        else:
            return cache[2]
        self._dense_cache = (storage, versions, dense)
        return dense

    def _assemble(self) -> Tensor:
        rows = [F.pad(w, (0, self.in_features - w.shape[1])) for w in self.stored_weights()]
        return torch.cat(rows)

    def _apply(self, fn: Callable, recurse: bool = True) -> BlockMaskedLinear:  # noqa: D102
        self._float_cache = self._dense_cache = None
        return super()._apply(fn, recurse)

    def extra_repr(self) -> str:  # noqa: D102
        stored = sum(w.numel() for w in self.stored_weights())
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"blocks={len(self.blocks)}, stored weights={stored} of "
            f"{self.in_features * self.out_features}"
        )


def _dense_weight_in_state(
    module: BlockMaskedLinear, state: dict[str, Any], prefix: str, local_metadata: object
) -> None:
    """``state_dict`` post-hook: the dense ``weight`` in place of the stored blocks."""
    for j in range(len(module.blocks)):
        state.pop(f"{prefix}weight_blocks.{j}", None)
    with torch.no_grad():
        state[f"{prefix}weight"] = module._assemble().detach()


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
    """``load_state_dict`` pre-hook: split a dense ``weight`` into the stored blocks."""
    mask = state.get(f"{prefix}mask")
    weight = state.pop(f"{prefix}weight", None)
    if isinstance(mask, Tensor) and not torch.equal(mask.to(module.mask.device), module.mask):
        # The blocks were cut for this layer's mask: load neither mask nor weight.
        state[f"{prefix}mask"] = module.mask
        error_msgs.append(f"{prefix}mask differs from this layer's (built for another model)")
        return
    if weight is None:
        return
    if tuple(weight.shape) != (module.out_features, module.in_features):
        error_msgs.append(
            f"{prefix}weight has shape {tuple(weight.shape)}, expected "
            f"{(module.out_features, module.in_features)}"
        )
        return
    for j, (r0, r1, _, c1) in enumerate(module.blocks):
        state[f"{prefix}weight_blocks.{j}"] = weight[r0:r1, :c1]
