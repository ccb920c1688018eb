"""FVSBN: each dimension a linear (logistic or Gaussian) regression on the ones before it.

The fully visible sigmoid belief network is the smallest autoregressive model: no hidden
units, one masked linear layer. In generation order, output ``k`` sees inputs ``0..k-1``
only (a strictly lower-triangular mask), so

* ``output="bernoulli"``: ``p(x_k = 1 | x_<k) = sigmoid(b_k + W[k, :k] @ x_<k)`` (binary data);
* ``output="gaussian"``: ``x_k | x_<k ~ N(b_k + W[k, :k] @ x_<k, exp(log_scale_k)^2)``, a
  linear Gaussian belief net: exactly a multivariate Gaussian with a full covariance (its
  Cholesky factorisation in the chosen order), the baseline of the MAF paper's tables.

It is the baseline every deeper model (NADE, MADE, MAF) should beat.

References:
    | Connectionist learning of belief networks (Neal, 1992)
    | Does the wake-sleep algorithm produce good density estimators? (Frey, Hinton & Dayan,
      NIPS 1996), the FVSBN baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audioar.errors import ConfigError, DataError
from audioar.layers.masked_linear import MaskedLinear
from audioar.models.ordered import OrderedVectorModel

__all__ = ["FVSBN", "FVSBNConfig", "FVSBN_OUTPUTS"]

FVSBN_OUTPUTS = ("bernoulli", "gaussian")
_LOG_2PI = math.log(2 * math.pi)


@dataclass
class FVSBNConfig:
    """The settings of :class:`FVSBN` a user chooses (the ``[model]`` keys of a recipe); the
    constructor's defaults are these. The feature count comes from the data
    (:meth:`FVSBN.from_spec`)."""

    output: str = "bernoulli"  # "bernoulli" (binary data) | "gaussian" (real-valued)
    order: str = "natural"  # generation order: "natural" | "reverse" | "random"
    seed: int = 0  # seeds order="random"


class FVSBN(OrderedVectorModel):
    """Fully visible sigmoid belief network (or its linear-Gaussian analogue).

    Args:
        features: Data dimensions ``D``.
        output: ``"bernoulli"`` (default; data in ``{0, 1}``) or ``"gaussian"``
            (real-valued; a learned log-scale per dimension).
        order: Generation order, default ``"natural"``; see
            :func:`audioar.layers.masks.input_degrees` (an explicit permutation works too).
        seed: Seed for ``order="random"``, default ``0``.

    Shapes:
        ``x``: ``(batch, features)``; :meth:`log_prob` ``(batch,)``,
        :meth:`log_prob_steps` ``(batch, features)``.

    Example:
        >>> fvsbn = FVSBN(64, output="bernoulli")
        >>> x = torch.randint(0, 2, (16, 64)).float()
        >>> fvsbn.log_prob(x).shape
        torch.Size([16])
        >>> fvsbn.sample(4).shape
        torch.Size([4, 64])
    """

    Config = FVSBNConfig
    #: Real-valued audio features need the Gaussian output when no recipe says.
    presets = {name: ["model.output=gaussian"] for name in ("segments", "fft", "stft")}
    family_name = "fvsbn"
    real_output = "gaussian"

    def __init__(
        self,
        features: int,
        output: str = "bernoulli",
        order: str | list[int] | Tensor = "natural",
        *,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if output not in FVSBN_OUTPUTS:
            raise ConfigError(f"FVSBN output must be one of {FVSBN_OUTPUTS}, got {output!r}")
        self.output = output
        self.set_order(features, order, torch.Generator().manual_seed(seed))
        # In generation order output k sees inputs 0..k-1: strictly lower-triangular.
        mask = torch.ones(features, features, dtype=torch.bool).tril(-1)
        self.linear = MaskedLinear(mask)
        with torch.no_grad():
            self.linear.bias.zero_()
        if output == "gaussian":
            self.log_scale = nn.Parameter(torch.zeros(features))
        else:
            self.register_parameter("log_scale", None)

    # -------------------------------------------------------------- likelihood
    def _steps_sorted(self, xs: Tensor) -> Tensor:
        """Per-dimension log-likelihoods ``(batch, features)`` in generation order."""
        out = self.linear(xs)  # logits or means, (batch, features)
        if self.output == "bernoulli":
            return -F.binary_cross_entropy_with_logits(out, xs, reduction="none")
        u = (xs - out) * torch.exp(-self.log_scale)
        return -0.5 * (u * u + _LOG_2PI) - self.log_scale

    # ---------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, n: int, context: Tensor | None = None) -> Tensor:
        """Draw ``n`` samples, one dimension at a time in the generation order.

        Args:
            n: Number of samples.
            context: Must be ``None``.

        Returns:
            ``(n, features)`` float (``0.``/``1.`` for ``"bernoulli"``), original order.
        """
        if context is not None:
            raise DataError("FVSBN takes no context")
        weight, bias = self.linear.masked_weight(), self.linear.bias
        xs = torch.zeros(n, self.features, dtype=weight.dtype, device=weight.device)
        for k in range(self.features):
            out = bias[k] + xs[:, :k] @ weight[k, :k]
            if self.output == "bernoulli":
                xs[:, k] = torch.bernoulli(torch.sigmoid(out))
            else:
                xs[:, k] = out + torch.exp(self.log_scale[k]) * torch.randn_like(out)
        return self.from_generation_order(xs)
