"""What the vector autoregressive baselines (FVSBN, NADE) share: a generation order and a
likelihood that is the sum of one conditional per dimension.

A subclass calls :meth:`OrderedVectorModel.set_order` in its constructor and implements
``_steps_sorted(xs) -> (batch, features)``, the per-dimension log-likelihoods of data
already in generation order; :meth:`log_prob_steps` and :meth:`log_prob` follow from it.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor, nn

from audioar.errors import ConfigError, DataError
from audioar.layers.masks import input_degrees
from audioar.models.contract import InputSpec

__all__ = ["OrderedVectorModel", "check_levels"]


class OrderedVectorModel(nn.Module):
    """Base of a one-class density over vectors ``(batch, features)`` in a fixed order.

    Subclasses define ``_steps_sorted(xs) -> (batch, features)``: the per-dimension
    log-likelihoods of ``xs`` already in generation order.
    """

    inputs = ("vector",)
    conditional = False
    family_name: str  # the registry's name, for messages
    real_output: str  # the output for real-valued data, suggested when binary is asked

    features: int
    perm: Tensor
    inv_perm: Tensor

    @classmethod
    def from_config(cls, cfg: Any, features: int) -> OrderedVectorModel:
        """The model over ``features`` dimensions with the settings of ``cfg`` (the family's
        ``Config``)."""
        return cls(features, **asdict(cfg))

    @classmethod
    def from_spec(cls, cfg: Any, spec: InputSpec) -> OrderedVectorModel:
        """The model for one feature vector per clip: binary (``bernoulli``, ``spec.levels``
        0 or 2) or real-valued (the family's real output, ``spec.levels == 0``).

        Raises:
            ConfigError: Features that are not one vector per clip, or codes the output
                cannot model.
        """
        name = cls.family_name
        if spec.kind != "vector":
            raise ConfigError(f"model {name} needs one feature vector per clip, got {spec.kind}s")
        check_levels(name, cfg.output, spec.levels, real_output=cls.real_output)
        return cls.from_config(cfg, spec.size)

    def set_order(
        self, features: int, order: str | list[int] | Tensor, generator: torch.Generator
    ) -> None:
        """Registers ``perm`` (the feature generated k-th) and ``inv_perm`` (the position of
        feature j) for ``order`` (see :func:`audioar.layers.masks.input_degrees`)."""
        self.features = features
        degrees = input_degrees(features, order, generator)
        self.register_buffer("perm", torch.argsort(degrees))
        self.register_buffer("inv_perm", degrees - 1)

    def to_generation_order(self, x: Tensor) -> Tensor:
        """``(batch, features)`` in the original order -> generation order."""
        return x.index_select(1, self.perm)

    def from_generation_order(self, xs: Tensor) -> Tensor:
        """Inverse of :meth:`to_generation_order`."""
        return xs.index_select(1, self.inv_perm)

    def _check(self, x: Tensor, context: Tensor | None) -> Tensor:
        if context is not None:
            raise DataError(f"{type(self).__name__} takes no context")
        if x.ndim != 2 or x.shape[1] != self.features:
            raise DataError(f"expected x of shape (batch, {self.features}), got {tuple(x.shape)}")
        return x.to(next(self.parameters()).dtype)

    def log_prob_steps(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Log-likelihood of each dimension given the ones before it in the order.

        Args:
            x: ``(batch, features)``.
            context: Must be ``None``.

        Returns:
            ``(batch, features)`` nats in the original feature order; sums to :meth:`log_prob`.
        """
        x = self._check(x, context)
        return self.from_generation_order(self._steps_sorted(self.to_generation_order(x)))

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Log-likelihood ``log p(x)``.

        Args:
            x: ``(batch, features)``.
            context: Must be ``None``.

        Returns:
            ``(batch,)`` in nats.
        """
        x = self._check(x, context)
        return self._steps_sorted(self.to_generation_order(x)).sum(dim=1)


def check_levels(name: str, output: str, levels: int, real_output: str) -> None:
    """Refuse data the output distribution cannot model: ``"bernoulli"`` needs binary data
    (2 levels), any other output real values (``levels == 0``; ``real_output`` is the one to
    suggest)."""
    if output == "bernoulli" and levels != 2:
        raise ConfigError(
            f"model {name} with output='bernoulli' models binary data; these features are "
            + (f"{levels}-level codes" if levels else f"real-valued: use output={real_output}")
        )
    if output != "bernoulli" and levels:
        raise ConfigError(
            f"model {name} with output={output!r} models real values, not {levels}-level codes"
        )
