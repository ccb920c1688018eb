"""MAF: a stack of affine MADE transforms with batch norm between them.

Density direction, for each flow ``t`` (``x`` is data, ``z`` the base variable)::

    u = (h - mean(h_<i)) * exp(-log_scale(h_<i))       # affine MADE, log-det = -sum(log_scale)
    h = BatchNorm(u)                                    # exact log-det from the statistics used

and the generation order is reversed from one flow to the next. The log-likelihood is
``log p_base(z) + log_det``. Evaluating it is one pass; inverting (sampling) is sequential
over the features, done incrementally (see :meth:`MADE.autoregress`).

References:
    | Masked Autoregressive Flow for Density Estimation (Papamakarios et al., 2017)
    | https://arxiv.org/abs/1705.07057
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audioar.errors import ConfigError, TrainingError
from audioar.layers.block_linear import FUSED_ACTIVATIONS, constant
from audioar.layers.borrowed import BorrowsParameters, stack_and_lend
from audioar.models.made import MADE, soft_clamp
from audioar.models.maf_stack import maf_stack

__all__ = ["MAF", "MAFConfig", "BatchNormBijector", "MixtureBase", "PERMUTATIONS", "BASES"]

PERMUTATIONS = ("reverse", "random", "none")
BASES = ("normal", "mog")
_LOG_2PI = math.log(2 * math.pi)


@dataclass
class MAFConfig:
    """Hyper-parameters of :class:`MAF` (one field per constructor argument)."""

    features: int  # data dimensions D (257 for a whole-window spectrum)
    num_flows: int = 10  # number of affine MADE transforms
    hidden_features: tuple[int, ...] = (512, 512)  # hidden units of each MADE
    activation: str = "tanh"  # MADE hidden activation (relu, tanh, elu, gelu, silu)
    batch_norm: bool = True  # batch-norm bijector after every MADE
    permutation: str = "reverse"  # order between flows: "reverse" | "random" | "none"
    context_features: int = 0  # size of the context vector (class one-hot); 0 = none
    base: str = "normal"  # base distribution: "normal" | "mog" (MAF MoG)
    components: int = 10  # Gaussian components of the "mog" base
    log_scale_bound: float = 5.0  # MADE log-scales are soft-clamped to (-bound, bound)
    momentum: float = 0.1  # batch-norm running statistics update rate
    eps: float = 1e-5  # batch-norm variance floor
    dropout: float = 0.0  # dropout on MADE hidden units during training
    hidden_degrees: str = "equal"  # "equal" | "random" MADE hidden degrees
    seed: int = 0  # seeds random orders / degrees
    block_sparse: bool = True  # fast path: skip zero weight blocks (same numbers)
    num_blocks: int = 4  # row blocks per masked layer for the fast path


class BatchNormBijector(BorrowsParameters, nn.Module):
    """Batch normalisation as an invertible map with an exact log-determinant.

    ``y = (x - mean) / sqrt(var + eps) * exp(log_gamma) + beta``. In training mode the
    batch statistics are used (and folded into the running ones); in evaluation mode the
    running statistics. The log-det, ``sum(log_gamma - 0.5 * log(var + eps))``, is the exact
    log|det dy/dx| of the map with the statistics it used. :meth:`inverse` always uses the
    running statistics.

    Args:
        features: Number of features.
        momentum: Update rate of the running statistics, default ``0.1``.
        eps: Variance floor, default ``1e-5``.
    """

    running_mean: Tensor
    running_var: Tensor

    def __init__(self, features: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum = momentum
        self.eps = eps
        self.log_gamma = nn.Parameter(torch.zeros(features))
        self.beta = nn.Parameter(torch.zeros(features))
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))
        self._frozen: tuple[tuple, tuple[Tensor, Tensor, Tensor]] | None = None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Normalise.

        Args:
            x: ``(batch, features)``; ``batch >= 2`` in training mode.

        Returns:
            ``y`` ``(batch, features)`` and ``log_det`` ``(batch,)``.
        """
        if self.training:
            if x.shape[0] < 2:
                raise TrainingError("batch norm needs a batch of at least 2 in training mode")
            mean = x.mean(0)
            centred = x - mean
            var = (centred * centred).mean(0)  # biased, as used; faster than var_mean on CPU
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(var.detach(), self.momentum)
        else:
            centred, var = x - self.running_mean, self.running_var
        log_scale = self.log_gamma - 0.5 * torch.log(var + self.eps)
        y = torch.addcmul(self.beta, centred, torch.exp(log_scale))
        return y, log_scale.sum().expand(x.shape[0])

    def frozen(self) -> tuple[Tensor, Tensor, Tensor]:
        """The evaluation-mode map as ``y = x * scale + shift`` plus its log-det (no autograd).

        Returns:
            ``scale``, ``shift`` ``(features,)`` and the log-det, a scalar tensor; cached
            until a parameter or a running statistic changes.
        """
        own = [self.running_mean, self.running_var, *self._parameters.values()]
        key = self.storage_key(own, versions=True)  # a MAF's batch norms borrow their params
        if self._frozen is None or self._frozen[0] != key:
            with torch.no_grad():
                log_scale = self.log_gamma - 0.5 * torch.log(self.running_var + self.eps)
                scale = torch.exp(log_scale)
                shift = self.beta - self.running_mean * scale
                self._frozen = (key, (scale, shift, log_scale.sum()))
        return self._frozen[1]

    def inverse(self, y: Tensor) -> Tensor:
        """Undo :meth:`forward` with the running statistics: ``(batch, features)`` -> same."""
        log_scale = self.log_gamma - 0.5 * torch.log(self.running_var + self.eps)
        return (y - self.beta) * torch.exp(-log_scale) + self.running_mean


class _FlowStacks(nn.ParameterList):
    """The parameters of every flow stacked over flows, one tensor per MADE weight block,
    per MADE bias and per batch-norm parameter (17 tensors for 10 flows of 3 layers of 4
    blocks, not 170): the MADEs and batch norms borrow their rows
    (:class:`~audioar.layers.borrowed.BorrowsParameters`), so optimisers and the fast path
    see the stacks while each flow still reads, saves and loads its own parameters. Built
    when all MADEs share their masks (the blocks then have equal shapes); saves nothing of
    its own in state dicts (the flows' entries hold the values).

    Order: per MADE layer its blocks then its bias, then ``log_gamma`` and ``beta``; the
    order of :func:`~audioar.models.maf_stack.maf_stack`'s per-flow parameters.
    """

    def __init__(self, mades: Sequence[MADE], norms: Sequence[BatchNormBijector]) -> None:
        super().__init__()
        for i, layer in enumerate(mades[0].layers):
            names = [f"weight_blocks.{j}" for j in range(len(layer.blocks))]
            names += ["bias"] if layer.bias is not None else []
            stack_and_lend([made.layers[i] for made in mades], names, self)
        if norms:
            stack_and_lend(list(norms), ["log_gamma", "beta"], self)

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        return

    def _load_from_state_dict(self, *args: object, **kwargs: object) -> None:
        return


class MixtureBase(nn.Module):
    """Learnable mixture of ``components`` diagonal Gaussians (the base of "MAF MoG").

    Args:
        features: Number of features.
        components: Number of mixture components, default ``10``.
        seed: Seed of the initial means, default ``0``.
    """

    def __init__(self, features: int, components: int = 10, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.logits = nn.Parameter(torch.zeros(components))
        self.means = nn.Parameter(torch.randn(components, features, generator=generator))
        self.log_scales = nn.Parameter(torch.zeros(components, features))

    def log_prob(self, z: Tensor) -> Tensor:
        """``(batch, features)`` -> ``(batch,)`` nats."""
        u = (z.unsqueeze(1) - self.means) * torch.exp(-self.log_scales)
        comp = (-0.5 * (u * u + _LOG_2PI) - self.log_scales).sum(-1)
        return torch.logsumexp(comp + F.log_softmax(self.logits, dim=0), dim=-1)

    def sample(self, n: int) -> Tensor:
        """``n`` samples ``(n, features)``."""
        idx = torch.multinomial(F.softmax(self.logits, dim=0), n, replacement=True)
        noise = torch.randn(
            n, self.means.shape[1], device=self.means.device, dtype=self.means.dtype
        )
        return self.means[idx] + torch.exp(self.log_scales[idx]) * noise


class MAF(nn.Module):
    """Masked autoregressive flow.

    Args:
        features: Data dimensions ``D``.
        num_flows: Number of affine MADE transforms, default ``10``.
        hidden_features: Hidden units of each MADE, default ``(512, 512)``.
        activation: MADE hidden activation, default ``"tanh"``.
        batch_norm: Batch-norm bijector after every MADE, default ``True``.
        permutation: Generation order from flow to flow: ``"reverse"`` (default,
            alternating natural and reversed), ``"random"`` or ``"none"``.
        context_features: Size of a context vector (e.g. a class one-hot) fed to every
            MADE, default ``0``.
        base: ``"normal"`` (standard normal, default) or ``"mog"`` (learnable mixture).
        components: Components of the ``"mog"`` base, default ``10``.
        log_scale_bound: Soft bound on the MADE log-scales, default ``5.0``.
        momentum: Batch-norm running-statistics rate, default ``0.1``.
        eps: Batch-norm variance floor, default ``1e-5``.
        dropout: Dropout on MADE hidden units in training, default ``0.0``.
        hidden_degrees: ``"equal"`` (default) or ``"random"`` MADE hidden degrees.
        seed: Seed for random orders / degrees / mixture means, default ``0``.
        block_sparse: Block-triangular fast path in the MADEs, default ``True``.
        num_blocks: Row blocks per masked layer for that path, default ``4`` (on 2 CPU
            threads a training step of the default MAF takes 8 % less time than with 2
            blocks, with threads that spin, and 16 % less on one thread; 16 % more with
            ``OMP_WAIT_POLICY=PASSIVE`` on an idle machine, where every parallel product
            wakes a sleeping thread).

    Example:
        >>> maf = MAF(4, num_flows=2, hidden_features=(32, 32))
        >>> z, log_det = maf(torch.randn(8, 4))
        >>> maf.log_prob(torch.randn(8, 4)).shape
        torch.Size([8])
        >>> maf.eval().sample(3).shape
        torch.Size([3, 4])
    """

    def __init__(
        self,
        features: int,
        num_flows: int = 10,
        hidden_features: Sequence[int] = (512, 512),
        activation: str = "tanh",
        batch_norm: bool = True,
        permutation: str = "reverse",
        context_features: int = 0,
        base: str = "normal",
        *,
        components: int = 10,
        log_scale_bound: float = 5.0,
        momentum: float = 0.1,
        eps: float = 1e-5,
        dropout: float = 0.0,
        hidden_degrees: str = "equal",
        seed: int = 0,
        block_sparse: bool = True,
        num_blocks: int = 4,
    ) -> None:
        super().__init__()
        if permutation not in PERMUTATIONS:
            raise ConfigError(f"permutation must be one of {PERMUTATIONS}, got {permutation!r}")
        if base not in BASES:
            raise ConfigError(f"base must be one of {BASES}, got {base!r}")
        if num_flows < 1:
            raise ConfigError(f"num_flows must be >= 1, got {num_flows}")
        self.features = features
        self.context_features = context_features
        self.log_scale_bound = log_scale_bound
        orders = {"reverse": ["natural", "reverse"], "random": ["random"], "none": ["natural"]}
        cycle = orders[permutation]
        self.mades = nn.ModuleList(
            MADE(
                features,
                hidden_features,
                output="gaussian",
                order=cycle[t % len(cycle)],
                context_features=context_features,
                activation=activation,
                hidden_degrees=hidden_degrees,
                dropout=dropout,
                log_scale_bound=log_scale_bound,
                seed=seed + t,
                block_sparse=block_sparse,
                num_blocks=num_blocks,
            )
            for t in range(num_flows)
        )
        self.norms = nn.ModuleList(
            BatchNormBijector(features, momentum, eps)
            for _ in range(num_flows if batch_norm else 0)
        )
        self.base = MixtureBase(features, components, seed) if base == "mog" else None
        self._masks_key: tuple | None = None
        self._masks_shared = False
        self.stacked = _FlowStacks(self.mades, self.norms) if self._shared_masks() else None
        self._cache: dict = {}  # the fast path's constants and buffers (maf_stack)

    def _apply(self, fn: Callable, recurse: bool = True) -> MAF:  # noqa: D102
        self._cache = {}  # .to(), .double(): its tensors belong to the old storage
        return super()._apply(fn, recurse)

    @classmethod
    def from_config(cls, cfg: MAFConfig) -> MAF:
        """Build a MAF from a :class:`MAFConfig`."""
        kwargs = asdict(cfg)
        kwargs["hidden_features"] = tuple(kwargs["hidden_features"])
        return cls(**kwargs)

    @property
    def block_sparse(self) -> bool:
        """Whether the MADEs use the block-triangular fast path (settable)."""
        return all(made.block_sparse for made in self.mades)

    @block_sparse.setter
    def block_sparse(self, value: bool) -> None:
        for made in self.mades:
            made.block_sparse = value

    def _affine(self, made: MADE, h: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        params = made._params_sorted(h, context)
        log_scale = soft_clamp(params[..., 1], self.log_scale_bound)
        u = (made.to_generation_order(h) - params[..., 0]) * torch.exp(-log_scale)
        return made.from_generation_order(u), -log_scale.sum(-1)

    def _shared_masks(self) -> bool:
        """Whether every MADE has the same masks (true for the default equal hidden degrees)."""
        masks = [layer.mask for made in self.mades for layer in made.layers]
        key = tuple((mask.data_ptr(), mask._version) for mask in masks)
        if self._masks_key != key:
            first = self.mades[0].layers
            self._masks_shared = all(
                made._blocks == self.mades[0]._blocks
                and all(
                    torch.equal(a.mask, b.mask) for a, b in zip(made.layers, first, strict=True)
                )
                for made in self.mades[1:]
            )
            self._masks_key = key
        return self._masks_shared

    def _stack_applies(self, x: Tensor) -> bool:
        """Whether :meth:`forward` can take the fast path (:mod:`maf_stack`) for ``x``.

        It can for the fused activations (tanh, relu, identity), with every MADE and batch
        norm in the same mode, and outside autocast.
        """
        made = self.mades[0]
        return (
            self.block_sparse
            and not torch.is_autocast_enabled(x.device.type)
            and made.activation in FUSED_ACTIVATIONS
            and len({module.training for module in [*self.mades, *self.norms]}) == 1
        )

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Map data to the base space.

        With :attr:`block_sparse` on (default), all flows run as one autograd node on the
        block-triangular products (:mod:`audioar.models.maf_stack`); off, flow by flow on
        the plain reference path. Same numbers (and the same dropout draws).

        Args:
            x: ``(batch, features)``.
            context: ``(batch, context_features)`` or ``None``.

        Returns:
            ``z`` ``(batch, features)`` and ``log_det`` ``(batch,)`` = log|det dz/dx|.
        """
        if self._stack_applies(x):
            if self.norms and self.norms[0].training and x.shape[0] < 2:
                raise TrainingError("batch norm needs a batch of at least 2 in training mode")
            made = self.mades[0]
            context = made._context(context, x.shape[0])
            x = x.to(made._dtype())
            return maf_stack(
                x,
                context,
                self.mades,
                self.norms,
                self.log_scale_bound,
                self._shared_masks(),
                self.stacked,
                self._cache,
            )
        h = x
        log_det = x.new_zeros(x.shape[0])
        for t, made in enumerate(self.mades):
            h, ld = self._affine(made, h, context)
            log_det = log_det + ld
            if self.norms:
                h, ld = self.norms[t](h)
                log_det = log_det + ld
        return h, log_det

    def inverse(self, z: Tensor, context: Tensor | None = None, incremental: bool = True) -> Tensor:
        """Map base samples to data (sequential over features; no gradients).

        Args:
            z: ``(batch, features)``.
            context: ``(batch, context_features)`` or ``None``.
            incremental: ``True`` (default) uses the incremental MADE path; ``False`` the
                reference of ``features`` full passes per flow.

        Returns:
            ``x`` ``(batch, features)`` with ``forward(x)[0] == z`` (batch norm in its
            running statistics, i.e. as in evaluation mode).
        """
        h = z
        bound = self.log_scale_bound
        factor, scale, shift = (constant(v, z) for v in (2.0 / bound, 2.0 * bound, -bound))
        with torch.no_grad():
            for t in reversed(range(len(self.mades))):
                if self.norms:
                    h = self.norms[t].inverse(h)
                made = self.mades[t]
                columns = made.to_generation_order(h).unbind(1)  # one call, not a slice a step

                def step(k: int, params: Tensor, columns: tuple = columns) -> Tensor:
                    # exp(soft_clamp(raw)) = exp(2b sigmoid(2 raw / b) - b), in place on the
                    # step's own params: written the plain way, with a slice per operand and
                    # Python numbers, a sampling call took 390 ms instead of 300 ms.
                    mean, raw = params.unbind(1)
                    log_scale = torch.addcmul(shift, raw.mul_(factor).sigmoid_(), scale)
                    return torch.addcmul(mean, log_scale.exp_(), columns[k])

                h = made.autoregress(h.shape[0], step, context, incremental)
        return h

    def base_log_prob(self, z: Tensor) -> Tensor:
        """Base log-density ``(batch, features)`` -> ``(batch,)`` nats."""
        if self.base is not None:
            return self.base.log_prob(z)
        return -0.5 * (z * z + _LOG_2PI).sum(-1)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Log-likelihood ``log p(x | context)``.

        Args:
            x: ``(batch, features)``.
            context: ``(batch, context_features)`` or ``None``.

        Returns:
            ``(batch,)`` in nats.
        """
        z, log_det = self(x, context)
        return self.base_log_prob(z) + log_det

    def sample(self, n: int, context: Tensor | None = None) -> Tensor:
        """Draw samples (batch norm uses its running statistics).

        Args:
            n: Number of samples.
            context: ``(n, context_features)`` (or ``(1, context_features)``), or ``None``.

        Returns:
            ``(n, features)``.
        """
        weight = self.mades[0].layers[0].weight_source()
        with torch.no_grad():
            if self.base is not None:
                z = self.base.sample(n)
            else:
                z = torch.randn(n, self.features, device=weight.device, dtype=weight.dtype)
        return self.inverse(z, context)
