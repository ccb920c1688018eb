"""NADE and RNADE: autoregressive models whose conditionals share one hidden layer's weights.

In generation order, the hidden pre-activations of dimension ``d`` are ``a_d = c + W[:, :d]
x_<d``, so consecutive ones differ by one column: ``a_1 = c``, ``a_{d+1} = a_d + W[:, d]
x_d``. All ``D`` of them are one cumulative sum over the dimensions, which makes the
likelihood ``O(H D)`` per example (a MADE-style masked product is ``O(H D^2)``) and lets
sampling carry ``a_d`` from one dimension to the next. With ``h_d = sigmoid(a_d)``:

* ``output="bernoulli"`` (NADE): ``p(x_d = 1 | x_<d) = sigmoid(b_d + V_d . h_d)``;
* ``output="mog"`` (RNADE): ``p(x_d | x_<d)`` a mixture of ``components`` Gaussians whose
  logits, means and log-scales are ``b_d + V_d h_d``; with ``rescale=True``, the paper's
  activation rescaling ``h_d = sigmoid(rho_d a_d)`` (a learned ``rho_d``, initially 1).

References:
    | The Neural Autoregressive Distribution Estimator (Larochelle & Murray, AISTATS 2011)
    | https://proceedings.mlr.press/v15/larochelle11a.html
    | RNADE: The real-valued neural autoregressive density-estimator (Uria, Murray &
      Larochelle, NeurIPS 2013) https://arxiv.org/abs/1306.0186
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audioar.errors import ConfigError, DataError
from audioar.models.made import mixture_log_prob, soft_clamp
from audioar.models.ordered import OrderedVectorModel

__all__ = ["NADE", "NADEConfig", "NADE_OUTPUTS"]

NADE_OUTPUTS = ("bernoulli", "mog")


@dataclass
class NADEConfig:
    """The settings of :class:`NADE` a user chooses (the ``[model]`` keys of a recipe); the
    constructor's defaults are these. The feature count comes from the data
    (:meth:`NADE.from_spec`)."""

    hidden_features: int = 500  # hidden units H, shared by every conditional
    output: str = "bernoulli"  # "bernoulli" (NADE, binary data) | "mog" (RNADE, real values)
    components: int = 5  # Gaussians per dimension (output="mog")
    order: str = "natural"  # generation order: "natural" | "reverse" | "random"
    rescale: bool = True  # RNADE's activation rescaling sigmoid(rho_d a_d) (output="mog")
    log_scale_bound: float = 5.0  # mixture log-scales are soft-clamped to (-bound, bound)
    seed: int = 0  # seeds order="random" and the initial weights' draw


class NADE(OrderedVectorModel):
    """Neural autoregressive distribution estimator (binary NADE or real-valued RNADE).

    Args:
        features: Data dimensions ``D``.
        hidden_features: Hidden units ``H``, default ``500`` (the NADE paper's).
        output: ``"bernoulli"`` (default; data in ``{0, 1}``) or ``"mog"`` (RNADE).
        components: Gaussians per dimension for ``"mog"``, default ``5``.
        order: Generation order, default ``"natural"``; see
            :func:`audioar.layers.masks.input_degrees`.
        rescale: Activation rescaling for ``"mog"``, default ``True``.
        log_scale_bound: Soft bound on the mixture log-scales, default ``5.0``.
        seed: Seed for ``order="random"`` and the initial weights, default ``0``.

    Shapes:
        ``x``: ``(batch, features)``; :meth:`log_prob` ``(batch,)``,
        :meth:`log_prob_steps` ``(batch, features)``.

    Example:
        >>> nade = NADE(64, hidden_features=100)
        >>> x = torch.randint(0, 2, (16, 64)).float()
        >>> nade.log_prob(x).shape
        torch.Size([16])
        >>> NADE(8, 32, output="mog").sample(4).shape
        torch.Size([4, 8])
    """

    Config = NADEConfig
    #: Real-valued audio features need the mixture output (RNADE) when no recipe says.
    presets = {name: ["model.output=mog"] for name in ("segments", "fft", "stft")}
    family_name = "nade"
    real_output = "mog"

    def __init__(
        self,
        features: int,
        hidden_features: int = 500,
        output: str = "bernoulli",
        components: int = 5,
        order: str | list[int] | Tensor = "natural",
        *,
        rescale: bool = True,
        log_scale_bound: float = 5.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if output not in NADE_OUTPUTS:
            raise ConfigError(f"NADE output must be one of {NADE_OUTPUTS}, got {output!r}")
        if hidden_features < 1 or components < 1 or log_scale_bound <= 0:
            raise ConfigError(
                "NADE needs hidden_features >= 1, components >= 1 and log_scale_bound > 0, "
                f"got {hidden_features}, {components}, {log_scale_bound}"
            )
        self.hidden_features = hidden_features
        self.output = output
        self.components = components
        self.log_scale_bound = log_scale_bound
        self.params_per_feature = 1 if output == "bernoulli" else 3 * components
        generator = torch.Generator().manual_seed(seed)
        self.set_order(features, order, generator)

        h, p = hidden_features, self.params_per_feature
        # weight[d] is the column W[:, d] of the d-th generated input: (features, H).
        bound_in, bound_out = 1 / math.sqrt(features), 1 / math.sqrt(h)
        self.weight = nn.Parameter(_uniform((features, h), bound_in, generator))
        self.hidden_bias = nn.Parameter(torch.zeros(h))  # c
        self.out_weight = nn.Parameter(_uniform((features, p, h), bound_out, generator))  # V
        out_bias = torch.zeros(features, p)  # b
        if output == "mog" and components > 1:  # spread the means: distinct components
            out_bias[:, components : 2 * components] = torch.linspace(-1.5, 1.5, components)
        self.out_bias = nn.Parameter(out_bias)
        if output == "mog" and rescale:
            self.rho = nn.Parameter(torch.ones(features))
        else:
            self.register_parameter("rho", None)

    # ----------------------------------------------------------------- network
    def hidden(self, xs: Tensor) -> Tensor:
        """Hidden units of every conditional, by the cumulative recurrence.

        Args:
            xs: ``(batch, features)`` in generation order.

        Returns:
            ``h`` ``(batch, features, H)``: ``h[:, d] = sigmoid(rho_d (c + sum_{j<d}
            W[:, j] x_j))``, computed as an exclusive cumulative sum over the dimensions.
        """
        contrib = xs.unsqueeze(-1) * self.weight  # (batch, D, H): x_j W[:, j]
        # Exclusive cumsum: a_1 = c, a_{d+1} = a_d + x_d W[:, d] (no term sees its own x_d).
        a = self.hidden_bias + F.pad(contrib[:, :-1].cumsum(dim=1), (0, 0, 1, 0))
        if self.rho is not None:
            a = a * self.rho.unsqueeze(-1)
        return torch.sigmoid(a)

    def conditionals(self, h: Tensor) -> Tensor:
        """Raw parameters ``(batch, features, params_per_feature)`` from ``h`` (batch, D, H)."""
        # One (batch, H) @ (H, P) product per dimension, batched over the dimensions.
        params = torch.bmm(h.transpose(0, 1), self.out_weight.transpose(1, 2))
        return params.transpose(0, 1) + self.out_bias

    def _steps_sorted(self, xs: Tensor) -> Tensor:
        """Per-dimension log-likelihoods ``(batch, features)`` in generation order."""
        params = self.conditionals(self.hidden(xs))
        if self.output == "bernoulli":
            return -F.binary_cross_entropy_with_logits(params[..., 0], xs, reduction="none")
        return mixture_log_prob(xs, params, self.components, self.log_scale_bound)

    # ---------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, n: int, context: Tensor | None = None) -> Tensor:
        """Draw ``n`` samples dimension by dimension, carrying ``a_d`` forward (``O(H D)``).

        Args:
            n: Number of samples.
            context: Must be ``None``.

        Returns:
            ``(n, features)`` float (``0.``/``1.`` for ``"bernoulli"``), original order.
        """
        if context is not None:
            raise DataError("NADE takes no context")
        xs = torch.zeros(n, self.features, dtype=self.weight.dtype, device=self.weight.device)
        a = self.hidden_bias.expand(n, -1).clone()  # a_1 = c
        k = self.components
        for d in range(self.features):
            h = torch.sigmoid(a * self.rho[d] if self.rho is not None else a)
            params = torch.addmm(self.out_bias[d], h, self.out_weight[d].t())  # (n, P)
            if self.output == "bernoulli":
                value = torch.bernoulli(torch.sigmoid(params[:, 0]))
            else:
                pick = torch.multinomial(F.softmax(params[:, :k], dim=-1), 1)
                mean = params[:, k : 2 * k].gather(1, pick).squeeze(1)
                log_scale = params[:, 2 * k :].gather(1, pick).squeeze(1)
                log_scale = soft_clamp(log_scale, self.log_scale_bound)
                value = mean + torch.exp(log_scale) * torch.randn_like(mean)
            xs[:, d] = value
            a.addcmul_(value.unsqueeze(1), self.weight[d])  # a_{d+1} = a_d + x_d W[:, d]
        return self.from_generation_order(xs)


def _uniform(shape: tuple[int, ...], bound: float, generator: torch.Generator) -> Tensor:
    """``U(-bound, bound)`` draws from ``generator``."""
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound
