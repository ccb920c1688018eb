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
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audioar.errors import ConfigError, TrainingError
from audioar.layers.block_linear import constant
from audioar.models.contract import InputSpec
from audioar.models.labels import class_labels
from audioar.models.made import MADE, check_hidden_features, soft_clamp
from audioar.models.maf_fast import MAFFastPath

__all__ = ["MAF", "MAFConfig", "BatchNormBijector", "MixtureBase", "PERMUTATIONS", "BASES"]

PERMUTATIONS = ("reverse", "random", "none")
BASES = ("normal", "mog")
_LOG_2PI = math.log(2 * math.pi)


@dataclass
class MAFConfig:
    """The settings of :class:`MAF` a user chooses (the ``[model]`` keys of a recipe); the
    constructor's defaults are these. The data's size (``features``) and an optional
    ``context_features`` are constructor arguments (:meth:`MAF.from_spec`)."""

    num_flows: int = 5  # number of affine MADE transforms (the MAF paper's GAS model: 10)
    hidden_features: tuple[int, ...] = (512, 512)  # hidden units of each MADE
    activation: str = "tanh"  # MADE hidden activation (relu, tanh, elu, gelu, silu)
    batch_norm: bool = True  # batch-norm bijector after every MADE
    permutation: str = "reverse"  # order between flows: "reverse" | "random" | "none"
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
    # condition on the class (trained on every class of the split, the class fed to every
    # MADE as a one-hot context): scores then include the class posterior
    conditional: bool = False


class BatchNormBijector(nn.Module):
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

    def inverse(self, y: Tensor) -> Tensor:
        """Undo :meth:`forward` with the running statistics: ``(batch, features)`` -> same."""
        log_scale = self.log_gamma - 0.5 * torch.log(self.running_var + self.eps)
        return (y - self.beta) * torch.exp(-log_scale) + self.running_mean


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
        num_flows: Number of affine MADE transforms, default ``5`` (the MAF paper's GAS
            model has ``10``).
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
        block_sparse: The fast path, default ``True``: all flows as one autograd node
            on the block-triangular products, the same numbers as the flow-by-flow
            reference (``False``).
        num_blocks: Row blocks per masked layer for that path, default ``4`` (more blocks
            skip more multiply-adds but run more, smaller products; with threads that wait
            passively two can be faster: see the README's benchmarks).
        classes: A class-conditional MAF over this many classes, default ``0`` (none): the
            context is then a ``(batch,)`` tensor of class labels (or one label), fed to
            every MADE as a one-hot vector; needs ``context_features = 0``.

    Example:
        >>> maf = MAF(4, num_flows=2, hidden_features=(32, 32))
        >>> z, log_det = maf(torch.randn(8, 4))
        >>> maf.log_prob(torch.randn(8, 4)).shape
        torch.Size([8])
        >>> maf.eval().sample(3).shape
        torch.Size([3, 4])
    """

    Config = MAFConfig
    inputs = ("vector",)
    conditional = False  # True on instances built with classes > 0 (context: class labels)
    # `audioar fit` without a recipe, on segments: the settings whose detection travels
    # between speakers and corpora (README, "Scores that travel"): trimmed MFCC segments,
    # one MAF conditioned on every class, scored by the class posterior. 2 x 128 hidden
    # units: as good as 2 x 512 on FSDD's split, held-out speakers and across corpora over
    # three seeds, in about a fifth of the scoring time (docs: results, "Scoring speed")
    presets = {
        "segments": [
            "model.conditional=true",
            "features.trim_db=30",
            "features.n_mfcc=8",
            "model.hidden_features=[128,128]",
        ]
    }

    def __init__(
        self,
        features: int,
        num_flows: int = 5,
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
        classes: int = 0,
    ) -> None:
        super().__init__()
        if classes < 0 or (classes and context_features):
            raise ConfigError(
                f"a class-conditional MAF (classes={classes}) takes its context from the "
                f"labels; context_features must be 0, got {context_features}"
            )
        if permutation not in PERMUTATIONS:
            raise ConfigError(f"permutation must be one of {PERMUTATIONS}, got {permutation!r}")
        if base not in BASES:
            raise ConfigError(f"base must be one of {BASES}, got {base!r}")
        if num_flows < 1:
            raise ConfigError(f"num_flows must be >= 1, got {num_flows}")
        check_hidden_features(hidden_features)
        self.features = features
        self.classes = classes
        self.conditional = classes > 0
        context_features = context_features or classes  # a class enters as a one-hot vector
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
        # The fast path (block_sparse): it may keep the MADEs' weights in its own layout.
        self._fast = MAFFastPath(self.mades, self.norms)

    @classmethod
    def from_config(
        cls, cfg: MAFConfig, features: int, context_features: int = 0, classes: int = 0
    ) -> MAF:
        """Build a MAF over ``features`` dimensions from a :class:`MAFConfig` (conditioned on
        ``classes`` classes when ``cfg.conditional``)."""
        kwargs = asdict(cfg)
        conditional = kwargs.pop("conditional")
        kwargs["hidden_features"] = tuple(kwargs["hidden_features"])
        classes = classes if conditional else 0
        return cls(features, context_features=context_features, classes=classes, **kwargs)

    @classmethod
    def from_spec(cls, cfg: MAFConfig, spec: InputSpec) -> MAF:
        """The MAF for one real-valued feature vector per clip (``spec.kind == "vector"``).

        Raises:
            ConfigError: Features that are not one real-valued vector per clip.
        """
        if spec.kind != "vector" or spec.levels:
            raise ConfigError(
                f"model maf needs one real-valued feature vector per clip, got {spec.kind}s"
            )
        if cfg.conditional and spec.classes < 1:
            raise ConfigError("a conditional MAF needs the classes of the data (spec.classes)")
        return cls.from_config(cfg, spec.size, classes=spec.classes)

    def _context(self, context: Tensor | int | None, batch: int, like: Tensor) -> Tensor | None:
        """The MADEs' context: ``context`` itself, or for a class-conditional MAF the one-hot
        ``(batch, classes)`` of its class labels."""
        if not self.classes:
            return context
        labels = class_labels(context, batch, self.classes, like.device, "MAF")
        return F.one_hot(labels, self.classes).to(like.dtype)

    @property
    def block_sparse(self) -> bool:
        """Whether the MADEs use the block-triangular fast path (settable)."""
        return all(made.block_sparse for made in self.mades)

    @block_sparse.setter
    def block_sparse(self, value: bool) -> None:
        for made in self.mades:
            made.block_sparse = value

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Map data to the base space.

        Args:
            x: ``(batch, features)``.
            context: ``(batch, context_features)`` or ``None``; class labels ``(batch,)``
                for a class-conditional MAF.

        Returns:
            ``z`` ``(batch, features)`` and ``log_det`` ``(batch,)`` = log|det dz/dx|.
        """
        context = self._context(context, x.shape[0], x)
        if self._fast.applies(x):  # the same numbers, all flows at once
            return self._fast(x, context, self.log_scale_bound)
        h = x
        log_det = x.new_zeros(x.shape[0])
        for t, made in enumerate(self.mades):
            mean, raw_scale = made(h, context).unbind(-1)
            log_scale = soft_clamp(raw_scale, self.log_scale_bound)
            h = (h - mean) * torch.exp(-log_scale)
            log_det = log_det - log_scale.sum(-1)
            if self.norms:
                h, ld = self.norms[t](h)
                log_det = log_det + ld
        return h, log_det

    def inverse(self, z: Tensor, context: Tensor | None = None, incremental: bool = True) -> Tensor:
        """Map base samples to data (sequential over features; no gradients).

        Args:
            z: ``(batch, features)``.
            context: ``(batch, context_features)`` or ``None``; class labels ``(batch,)``
                for a class-conditional MAF.
            incremental: ``True`` (default) uses the incremental MADE path; ``False`` the
                reference of ``features`` full passes per flow.

        Returns:
            ``x`` ``(batch, features)`` with ``forward(x)[0] == z`` (batch norm in its
            running statistics, i.e. as in evaluation mode).
        """
        context = self._context(context, z.shape[0], z)
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
                    # step's own params and with cached constants: this runs features x
                    # flows times per call on a few numbers, where each operation and each
                    # Python number wrapped in a tensor costs about as much as the arithmetic.
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
            context: ``(batch, context_features)`` or ``None``; class labels ``(batch,)``
                for a class-conditional MAF.

        Returns:
            ``(batch,)`` in nats.
        """
        z, log_det = self(x, context)
        return self.base_log_prob(z) + log_det

    def sample(self, n: int, context: Tensor | None = None) -> Tensor:
        """Draw samples (batch norm uses its running statistics).

        Args:
            n: Number of samples.
            context: ``(n, context_features)`` (or ``(1, context_features)``), or ``None``;
                class labels ``(n,)`` (or one label) for a class-conditional MAF.

        Returns:
            ``(n, features)``.
        """
        like = self.mades[0].layers[-1].bias
        with torch.no_grad():
            if self.base is not None:
                z = self.base.sample(n)
            else:
                z = torch.randn(n, self.features, device=like.device, dtype=like.dtype)
        return self.inverse(z, context)
