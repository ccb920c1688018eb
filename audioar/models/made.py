"""MADE: a masked MLP whose outputs parameterise p(x_i | x_<i) for every i in one pass.

The network works internally in *generation order*: inputs are permuted so that the
``k``-th generated feature sits in column ``k``, context columns come first, and hidden
units are sorted by degree. Every mask is then block lower-triangular, which gives two fast
paths beside the plain masked-MLP reference:

* ``block_sparse``: the forward and backward passes skip the all-zero weight blocks;
* incremental sampling/inversion: when feature ``k`` becomes known, only the hidden units
  of degree ``k`` and the outputs of feature ``k + 1`` are computed (one network's worth
  of work in total instead of ``features`` full passes).

References:
    | MADE: Masked Autoencoder for Distribution Estimation (Germain et al., 2015)
    | https://arxiv.org/abs/1502.03509
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audioar.errors import ConfigError, DataError
from audioar.layers.block_linear import (
    FUSED_ACTIVATIONS,
    BlockViews,
    block_masked_mlp,
    block_views,
)
from audioar.layers.derived import Derived
from audioar.layers.masked_linear import BlockMaskedLinear
from audioar.layers.masks import input_degrees, made_degrees, made_masks
from audioar.models.contract import InputSpec

__all__ = ["MADE", "MADEConfig", "ACTIVATIONS", "OUTPUTS", "soft_clamp", "mixture_log_prob"]

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "tanh": torch.tanh,
    "elu": F.elu,
    "gelu": F.gelu,
    "silu": F.silu,
}
OUTPUTS = ("gaussian", "mog", "bernoulli", "categorical")
_LOG_2PI = math.log(2 * math.pi)


def soft_clamp(x: Tensor, bound: float) -> Tensor:
    """Smoothly squash ``x`` into ``(-bound, bound)``: ``bound * tanh(x / bound)``, identity near 0.

    Written with a sigmoid (``tanh(u) = 2 sigmoid(2u) - 1``), which costs less than
    ``torch.tanh`` on CPU.
    """
    return torch.sigmoid(x * (2.0 / bound)) * (2.0 * bound) - bound


def mixture_log_prob(x: Tensor, params: Tensor, components: int, bound: float) -> Tensor:
    """``log sum_k pi_k N(x; mu_k, sigma_k)`` of each value ``x`` ``(...)`` under its mixture
    ``params`` ``(..., 3 * components)`` (logits, means, log-scales soft-clamped to
    ``(-bound, bound)``), in nats, shape ``(...)``."""
    k = components
    logits, mean = params[..., :k], params[..., k : 2 * k]
    log_scale = soft_clamp(params[..., 2 * k :], bound)
    u = (x.unsqueeze(-1) - mean) * torch.exp(-log_scale)
    comp = -0.5 * (u * u + _LOG_2PI) - log_scale
    return torch.logsumexp(comp + F.log_softmax(logits, dim=-1), dim=-1)


@dataclass
class MADEConfig:
    """The settings of :class:`MADE` a user chooses (the ``[model]`` keys of a recipe); the
    constructor's defaults are these. The data's sizes (``features``, ``categories`` for
    codes) and an optional ``context_features`` are constructor arguments
    (:meth:`MADE.from_spec`)."""

    hidden_features: tuple[int, ...] = (512, 512)  # units of each hidden layer
    output: str = "gaussian"  # "gaussian" | "mog" | "bernoulli" | "categorical"
    order: str = "natural"  # "natural" | "reverse" | "random"
    components: int = 5  # mixture components (output="mog")
    activation: str = "relu"  # one of ACTIVATIONS
    hidden_degrees: str = "equal"  # "equal" (no dead connectivity) | "random" (original MADE)
    dropout: float = 0.0  # dropout on hidden activations during training
    log_scale_bound: float = 5.0  # log-scales are soft-clamped to (-bound, bound)
    seed: int = 0  # seeds random orders and random hidden degrees
    block_sparse: bool = True  # fast path: skip the zero blocks of the masked weights
    num_blocks: int = 2  # row blocks per layer for the fast path (see MADE's docstring)


def check_hidden_features(hidden_features: Sequence[int]) -> None:
    """Refuse hidden layers a MADE cannot have: none at all, or one without units.

    Raises:
        ConfigError: Naming ``model.hidden_features``.
    """
    if len(hidden_features) == 0:
        raise ConfigError("model.hidden_features: needs at least one hidden layer")
    if any(int(units) < 1 for units in hidden_features):
        raise ConfigError(
            "model.hidden_features: every hidden layer needs at least one unit, got "
            f"{list(hidden_features)}"
        )


class MADE(nn.Module):
    """Masked autoencoder for distribution estimation over ``features`` dimensions.

    Args:
        features: Data dimensions ``D``.
        hidden_features: Units of each hidden layer, default ``(512, 512)``.
        output: Conditional family, default ``"gaussian"`` (mean, log-scale); ``"mog"``
            (``components`` Gaussians per dimension); ``"bernoulli"`` (logits, data in
            ``{0, 1}``); ``"categorical"`` (``categories`` logits, data long in
            ``[0, categories)``, fed to the network one-hot).
        order: Generation order, default ``"natural"``; see
            :func:`audioar.layers.masks.input_degrees`.
        context_features: Size of an optional context vector (e.g. a class one-hot) that
            reaches every hidden unit; default ``0``.
        components: Mixture components for ``"mog"``, default ``5``.
        categories: Values per dimension for ``"categorical"``.
        activation: Hidden activation name, default ``"relu"``.
        hidden_degrees: ``"equal"`` (default) or ``"random"`` hidden degrees.
        dropout: Dropout probability on hidden units in training, default ``0.0``.
        log_scale_bound: Soft bound on every log-scale, default ``5.0``.
        seed: Seed for random orders / degrees, default ``0``.
        block_sparse: Use the block-triangular fast path, default ``True``.
        num_blocks: Row blocks per layer for that path, default ``2`` (more blocks skip
            more multiply-adds but run more, smaller products; see the README's benchmarks).

    Attributes:
        perm: ``(features,)`` the feature generated ``k``-th at ``perm[k]``.
        inv_perm: ``(features,)`` the generation position of feature ``j``.
        order_kind: ``"natural"``, ``"reverse"`` or ``"general"``: the shape of ``perm``,
            for callers that reorder features cheaply (nothing, or a flip, not a gather).

    Example:
        >>> made = MADE(8, hidden_features=(64, 64))
        >>> made.log_prob(torch.randn(16, 8)).shape
        torch.Size([16])
        >>> made.sample(4).shape
        torch.Size([4, 8])
    """

    Config = MADEConfig
    inputs = ("vector",)
    conditional = False  # context is a vector (context_features), not a class label

    perm: Tensor
    inv_perm: Tensor

    def __init__(
        self,
        features: int,
        hidden_features: Sequence[int] = (512, 512),
        output: str = "gaussian",
        order: str | Sequence[int] | Tensor = "natural",
        context_features: int = 0,
        *,
        components: int = 5,
        categories: int = 0,
        activation: str = "relu",
        hidden_degrees: str = "equal",
        dropout: float = 0.0,
        log_scale_bound: float = 5.0,
        seed: int = 0,
        block_sparse: bool = True,
        num_blocks: int = 2,
    ) -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ConfigError(f"MADE output must be one of {OUTPUTS}, got {output!r}")
        if activation not in ACTIVATIONS:
            raise ConfigError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}"
            )
        if output == "categorical" and categories < 2:
            raise ConfigError(f"output='categorical' needs categories >= 2, got {categories}")
        if output == "mog" and components < 1:
            raise ConfigError(f"output='mog' needs components >= 1, got {components}")
        if context_features < 0 or not 0.0 <= dropout < 1.0 or log_scale_bound <= 0:
            raise ConfigError("need context_features >= 0, 0 <= dropout < 1, log_scale_bound > 0")
        check_hidden_features(hidden_features)
        self.features = features
        self.output = output
        self.context_features = context_features
        self.components = components
        self.categories = categories
        self.activation = activation
        self.dropout = dropout
        self.log_scale_bound = log_scale_bound
        self.block_sparse = block_sparse
        self.params_per_feature = {
            "gaussian": 2,
            "mog": 3 * components,
            "bernoulli": 1,
            "categorical": categories,
        }[output]
        self.units_per_feature = categories if output == "categorical" else 1

        generator = torch.Generator().manual_seed(seed)
        degrees = input_degrees(features, order, generator)
        # perm[k] = the feature generated k-th; inv_perm[j] = position of feature j.
        self.register_buffer("perm", torch.argsort(degrees))
        self.register_buffer("inv_perm", degrees - 1)
        # Cheap special cases of the permutation (no gather, no scatter in backward).
        if torch.equal(degrees, torch.arange(1, features + 1)):
            self.order_kind = "natural"
        elif torch.equal(degrees, torch.arange(features, 0, -1)):
            self.order_kind = "reverse"
        else:
            self.order_kind = "general"
        sorted_in = torch.arange(1, features + 1).repeat_interleave(self.units_per_feature)
        layer_degrees = made_degrees(
            sorted_in, tuple(hidden_features), context_features, hidden_degrees, generator
        )
        out_degrees = torch.arange(1, features + 1).repeat_interleave(self.params_per_feature)
        masks = made_masks(layer_degrees, out_degrees)
        self.layers = nn.ModuleList(BlockMaskedLinear(mask, num_blocks) for mask in masks)
        self._views: Derived[list[BlockViews]] = Derived(versions=False)  # block_views
        self._steps: Derived[tuple] = Derived(versions=False)  # _incremental_views
        self._plan, self._seen_last = _incremental_plan(layer_degrees, features)

    @classmethod
    def from_config(
        cls,
        cfg: MADEConfig,
        features: int,
        context_features: int = 0,
        categories: int = 0,
        order: str | Sequence[int] | Tensor | None = None,
    ) -> MADE:
        """Build a MADE over ``features`` dimensions from a :class:`MADEConfig` (``order``,
        when given, replaces ``cfg.order``, e.g. by an explicit permutation)."""
        kwargs = asdict(cfg)
        kwargs["hidden_features"] = tuple(kwargs["hidden_features"])
        if order is not None:
            kwargs["order"] = order
        return cls(features, context_features=context_features, categories=categories, **kwargs)

    @classmethod
    def from_spec(cls, cfg: MADEConfig, spec: InputSpec) -> MADE:
        """The MADE for one feature vector per clip: real-valued (``gaussian`` / ``mog``),
        binary (``bernoulli``) or ``spec.levels`` codes (``categorical``).

        Raises:
            ConfigError: Features that are not one vector per clip.
        """
        if spec.kind != "vector":
            raise ConfigError(f"model made needs one feature vector per clip, got {spec.kind}s")
        return cls.from_config(cfg, spec.size, categories=spec.levels)

    # ----------------------------------------------------------------- network
    def to_generation_order(self, x: Tensor, dim: int = 1) -> Tensor:
        """``(batch, features, ...)`` in the original order -> generation order.

        ``dim`` is the features' dimension (``0`` for the ``(features, batch)`` layout).
        """
        return self._permute(x, self.perm, dim)

    def from_generation_order(self, xs: Tensor, dim: int = 1) -> Tensor:
        """Inverse of :meth:`to_generation_order`."""
        return self._permute(xs, self.inv_perm, dim)

    def _permute(self, x: Tensor, index: Tensor, dim: int) -> Tensor:
        if self.order_kind == "natural":
            return x
        if self.order_kind == "reverse":
            return x.flip(dim)
        return x.index_select(dim, index)

    def _encode(self, x: Tensor) -> Tensor:
        """Data ``(batch, features)`` in original order -> network inputs in generation order."""
        xs = self.to_generation_order(x)
        if self.output == "categorical":
            return F.one_hot(xs.long(), self.categories).flatten(1).to(self._dtype())
        return xs.to(self._dtype())

    def check_context(self, context: Tensor | None, batch: int) -> Tensor | None:
        """The context as the network takes it, for ``batch`` rows of data.

        Args:
            context: ``(batch, context_features)``, ``(1, context_features)`` (broadcast)
                or ``None``; other leading shapes are flattened.
            batch: Rows of data it goes with.

        Returns:
            ``(batch, context_features)`` in the weights' dtype, or ``None`` without context.

        Raises:
            DataError: A context this model does not take, or of the wrong size.
        """
        if self.context_features == 0:
            if context is not None:
                raise DataError("this model was built without context (context_features=0)")
            return None
        if context is None:
            raise DataError(f"this model needs a context of {self.context_features} features")
        context = context.reshape(-1, context.shape[-1]) if context.ndim != 2 else context
        if context.shape[-1] != self.context_features:
            raise DataError(
                f"context has {context.shape[-1]} features, expected {self.context_features}"
            )
        if context.shape[0] != batch:
            if context.shape[0] != 1:
                raise DataError(f"context batch {context.shape[0]} does not match {batch}")
            context = context.expand(batch, -1)
        return context.to(self._dtype())

    def _dtype(self) -> torch.dtype:
        return self.layers[0].stored_weights()[0].dtype

    def _network(self, h: Tensor, fast: bool | None = None, dropout: bool = True) -> Tensor:
        """Masked MLP on generation-order inputs ``(batch, in_units)`` -> ``(batch, out_units)``.

        ``fast=None`` follows :attr:`block_sparse`. The fast path (one autograd node, zero
        weight blocks skipped) serves the activations of :data:`FUSED_ACTIVATIONS`; other
        activations, and autocast (the fast path writes into preallocated float tensors),
        take the plain reference path.
        """
        fast = self.block_sparse if fast is None else fast
        fast = fast and self.activation in FUSED_ACTIVATIONS
        fast = fast and not torch.is_autocast_enabled(h.device.type)
        p = self.dropout if dropout and self.training else 0.0
        if fast:
            weights = [list(layer.stored_weights()) for layer in self.layers]
            biases = [layer.bias for layer in self.layers]
            blocks = [layer.blocks for layer in self.layers]
            views = self._block_views(weights, biases)
            return block_masked_mlp(h, weights, biases, [], blocks, self.activation, p, views=views)
        act = ACTIVATIONS[self.activation]
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < last:
                h = act(h)
                if p > 0:
                    h = F.dropout(h, p)
        return h

    def block_views(self) -> list[BlockViews]:
        """Per-block views of the layers' weights, biases and masks for the fast path.

        Made once and kept while the parameters keep their storage (in-place optimiser
        steps and ``load_state_dict`` show through the views); remade after ``.to()``,
        ``.double()`` and the like, and when a weight is replaced.
        """
        weights = [list(layer.stored_weights()) for layer in self.layers]
        return self._block_views(weights, [layer.bias for layer in self.layers])

    def _block_views(
        self, weights: list[list[Tensor]], biases: list[Tensor | None]
    ) -> list[BlockViews]:
        layers = self.layers
        masks = [layer.mask for layer in layers]
        tensors = [*(w for ws in weights for w in ws), *(b for b in biases if b is not None)]

        def make() -> list[BlockViews]:
            floats = [layer.float_mask() for layer in layers]
            return block_views(weights, biases, floats, [layer.blocks for layer in layers])

        return self._views.get([*tensors, *masks], make)

    def _params_sorted(
        self,
        x: Tensor,
        context: Tensor | None = None,
        fast: bool | None = None,
        dropout: bool = True,
    ) -> Tensor:
        """Raw outputs ``(batch, features, params_per_feature)`` in generation order."""
        h = self._encode(x)
        context = self.check_context(context, x.shape[0])
        if context is not None:
            h = torch.cat([context, h], dim=1)
        out = self._network(h, fast, dropout)
        return out.view(x.shape[0], self.features, self.params_per_feature)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Raw conditional parameters for every dimension.

        Args:
            x: ``(batch, features)`` data (long or float for ``"categorical"``).
            context: ``(batch, context_features)`` or ``None``.

        Returns:
            ``(batch, features, params_per_feature)`` in the original feature order; entry
            ``i`` depends only on the features before ``i`` in the generation order.
        """
        return self.from_generation_order(self._params_sorted(x, context))

    # ------------------------------------------------------------- likelihood
    def _log_prob_sorted(self, xs: Tensor, params: Tensor) -> Tensor:
        """Per-dimension log-likelihoods ``(batch, features)`` in generation order."""
        if self.output == "gaussian":
            mean, log_scale = params[..., 0], soft_clamp(params[..., 1], self.log_scale_bound)
            u = (xs - mean) * torch.exp(-log_scale)
            return -0.5 * (u * u + _LOG_2PI) - log_scale
        if self.output == "mog":
            return mixture_log_prob(xs, params, self.components, self.log_scale_bound)
        if self.output == "bernoulli":
            return -F.binary_cross_entropy_with_logits(params[..., 0], xs, reduction="none")
        logp = F.log_softmax(params, dim=-1)
        return logp.gather(-1, xs.long().unsqueeze(-1)).squeeze(-1)

    def log_prob_features(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Log-likelihood of each dimension given the ones before it.

        Args:
            x: ``(batch, features)``.
            context: ``(batch, context_features)`` or ``None``.

        Returns:
            ``(batch, features)`` in nats, original feature order; sums to :meth:`log_prob`.
        """
        params = self._params_sorted(x, context)
        xs = self.to_generation_order(x).to(params.dtype)
        return self.from_generation_order(self._log_prob_sorted(xs, params))

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Log-likelihood ``log p(x | context)``.

        Args:
            x: ``(batch, features)``.
            context: ``(batch, context_features)`` or ``None``.

        Returns:
            ``(batch,)`` in nats.
        """
        params = self._params_sorted(x, context)
        xs = self.to_generation_order(x).to(params.dtype)
        return self._log_prob_sorted(xs, params).sum(dim=-1)

    # --------------------------------------------------------------- sampling
    def _draw(self, params: Tensor) -> Tensor:
        """One sample ``(n,)`` from the conditionals ``params`` ``(n, params_per_feature)``."""
        if self.output == "gaussian":
            log_scale = soft_clamp(params[:, 1], self.log_scale_bound)
            return params[:, 0] + torch.exp(log_scale) * torch.randn_like(params[:, 0])
        if self.output == "mog":
            k = self.components
            idx = torch.multinomial(F.softmax(params[:, :k], dim=-1), 1)
            mean = params[:, k : 2 * k].gather(1, idx).squeeze(1)
            log_scale = soft_clamp(
                params[:, 2 * k :].gather(1, idx).squeeze(1), self.log_scale_bound
            )
            return mean + torch.exp(log_scale) * torch.randn_like(mean)
        if self.output == "bernoulli":
            return torch.bernoulli(torch.sigmoid(params[:, 0]))
        return torch.multinomial(F.softmax(params, dim=-1), 1).squeeze(1).to(params.dtype)

    def autoregress(
        self,
        n: int,
        step: Callable[[int, Tensor], Tensor],
        context: Tensor | None = None,
        incremental: bool = True,
    ) -> Tensor:
        """Generate the features one by one in generation order.

        Args:
            n: Number of rows.
            step: ``step(k, params)`` gets the raw parameters ``(n, params_per_feature)`` of
                the ``k``-th generated feature and returns its value ``(n,)``.
            context: ``(n, context_features)`` or ``None``.
            incremental: ``True`` (default) computes, per feature, only the hidden units
                that feature newly unlocks; ``False`` is the reference (``features`` full
                passes of the network).

        Returns:
            ``(n, features)`` values in the original feature order.
        """
        dtype = self._dtype()
        device = self.perm.device
        context = self.check_context(context, n)
        xs = torch.zeros(n, self.features, dtype=dtype, device=device)
        with torch.no_grad():
            if incremental:
                self._autoregress_incremental(xs, step, context)
            else:
                for k in range(self.features):
                    x = self.from_generation_order(xs)
                    params = self._params_sorted(x, context, fast=False, dropout=False)
                    xs[:, k] = step(k, params[:, k])
        return self.from_generation_order(xs)

    def _incremental_views(self, n: int, dtype: torch.dtype, device: torch.device) -> tuple:
        """Buffers and per-feature views for incremental generation, kept between calls.

        Returns ``(acts, steps)``: ``acts[l]`` ``(units_l, n)`` holds layer ``l``'s values
        (inputs first), transposed; ``steps[k] = (hidden, output, rows)`` with, per hidden
        layer, ``(bias, weight, inputs seen, target)`` views for the units of degree ``k``,
        the same (without target) for the parameters of feature ``k``, and the input rows
        its value goes to. Slicing all of this anew for every feature of every call costs
        as much as the products themselves. The transposed layout makes each product a
        few rows of weights times a ``(seen, n)`` block: for 2 units, 512 inputs and
        ``n = 100`` several times faster than ``(n, seen) @ (seen, 2)``.
        """
        # Views of the dense weights, which are refreshed in place after a parameter update,
        # and of the biases: they see updates. The buffers are written: a thread that finds
        # another's makes its own.
        weights = [layer.masked_weight() for layer in self.layers]
        biases = [layer.bias for layer in self.layers]
        make = lambda: self._make_incremental_views(n, dtype, device, weights, biases)  # noqa: E731
        return self._steps.get([*weights, *biases], make, n, dtype, threading.get_ident())

    def _make_incremental_views(
        self,
        n: int,
        dtype: torch.dtype,
        device: torch.device,
        weights: list[Tensor],
        biases: list[Tensor],
    ) -> tuple:
        c, u, p = self.context_features, self.units_per_feature, self.params_per_feature
        biases = [b.detach().unsqueeze(1) for b in biases]
        acts = [torch.zeros(c + self.features * u, n, dtype=dtype, device=device)]
        acts += [torch.zeros(w.shape[0], n, dtype=dtype, device=device) for w in weights[:-1]]
        w_out, b_out = weights[-1], biases[-1]
        steps = []
        for k in range(self.features):
            # Hidden units of degree k see inputs of degree <= k: all known now. Within the
            # staircase the masks are all True, so the raw weights are used directly.
            hidden = [
                (
                    biases[i][start:stop],
                    weights[i][start:stop, :seen],
                    acts[i][:seen],
                    acts[i + 1][start:stop],
                )
                for i, (start, stop, seen) in enumerate(self._plan[k])
                if stop > start
            ]
            seen = self._seen_last[k]
            rows = slice(k * p, (k + 1) * p)
            output = (b_out[rows], w_out[rows, :seen], acts[-1][:seen])
            steps.append((hidden, output, acts[0][c + k * u : c + (k + 1) * u]))
        return acts, steps

    def _autoregress_incremental(
        self, xs: Tensor, step: Callable[[int, Tensor], Tensor], context: Tensor | None
    ) -> None:
        n, c, u = xs.shape[0], self.context_features, self.units_per_feature
        act = ACTIVATIONS[self.activation]
        acts, steps = self._incremental_views(n, xs.dtype, xs.device)
        if context is not None:
            acts[0][:c] = context.t()
        in_place = {"tanh": Tensor.tanh_, "relu": Tensor.relu_}.get(self.activation)
        categorical = self.output == "categorical"
        # Every operation here is tiny (a few units times n): threads only cost their
        # wake-ups, most of all when they wait passively. (MKL's thread count is
        # process-wide: other threads' products run on one thread meanwhile.)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for k, (hidden, (b, w, below), rows) in enumerate(steps):
                for b_h, w_h, below_h, target in hidden:
                    if in_place is None:
                        target.copy_(act(torch.addmm(b_h, w_h, below_h)))
                    else:
                        in_place(torch.addmm(b_h, w_h, below_h, out=target))
                value = step(k, torch.addmm(b, w, below).t())
                if categorical:
                    xs[:, k] = value
                    rows.copy_(F.one_hot(value.long(), u).t())
                else:
                    rows.copy_(value.unsqueeze(0))
        finally:
            torch.set_num_threads(threads)
        if not categorical:
            xs.copy_(acts[0][c:].t())

    def sample(self, n: int, context: Tensor | None = None) -> Tensor:
        """Draw samples (dropout off, no gradients).

        Args:
            n: Number of samples.
            context: ``(n, context_features)`` (or ``(1, context_features)``, broadcast), or
                ``None``.

        Returns:
            ``(n, features)``; long for ``"categorical"``, float otherwise.
        """
        x = self.autoregress(n, lambda k, params: self._draw(params), context)
        return x.long() if self.output == "categorical" else x


def _incremental_plan(
    layer_degrees: Sequence[Tensor], features: int
) -> tuple[list[list[tuple[int, int, int]]], list[int]]:
    """Slices for incremental generation over sorted degrees.

    Returns:
        ``plan[k][l] = (start, stop, seen)``: the units of hidden layer ``l`` with degree
        ``k`` are ``[start, stop)`` and they read the first ``seen`` units of the layer
        below (degree ``<= k``); ``seen_last[k]``: last-layer units of degree ``<= k``,
        read by the outputs of the ``k``-th generated feature.
    """
    ks = torch.arange(features + 1)
    left = [torch.searchsorted(d, ks, right=False).tolist() for d in layer_degrees]
    right = [torch.searchsorted(d, ks, right=True).tolist() for d in layer_degrees]
    plan = [
        [(left[i + 1][k], right[i + 1][k], right[i][k]) for i in range(len(layer_degrees) - 1)]
        for k in range(features)
    ]
    return plan, [right[-1][k] for k in range(features)]
