"""A linear layer whose weight is multiplied by a fixed boolean mask (MADE, MAF)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audioar.errors import ConfigError

__all__ = ["MaskedLinear"]


class MaskedLinear(nn.Linear):
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
        if mask.ndim != 2 or mask.dtype != torch.bool:
            raise ConfigError(
                f"mask must be a 2-D boolean tensor, got {mask.dtype} {tuple(mask.shape)}"
            )
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

    def forward(self, x: Tensor) -> Tensor:
        """Apply the masked layer.

        Args:
            x: ``(..., in_features)``.

        Returns:
            ``(..., out_features)``.
        """
        return F.linear(x, self.masked_weight(), self.bias)


def _mask_after_load(module: MaskedLinear, incompatible_keys: object) -> None:
    """``load_state_dict`` post-hook: restore the zero-where-masked invariant."""
    module.apply_mask_()
