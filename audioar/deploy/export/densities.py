"""TorchScript twins of the vector families' likelihoods (MADE, MAF, NADE, FVSBN).

The library's models keep fast paths that TorchScript cannot compile (block-sparse products
with their own autograd node, cached views, buffer pools). What an exported detector needs
of them is the log-likelihood in evaluation mode, and that is each family's plain
reference path: a few lines of tensor code per family, written here once more in the
subset TorchScript compiles and built from a trained model's weights (the masked weights
copied dense). Tests check every twin against the library's own ``log_prob`` (fast path
and reference path).

Every twin maps standardised features ``z`` ``(batch, features)`` and class labels
``(batch,)`` (ignored by a one-class model) to ``(batch,)`` nats; :class:`StandardizedTwin`
adds the standardisation and its log-determinant, as
:class:`audioar.models.standardize.Standardized` does.
"""

import math
from typing import Final

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audioar.errors import ConfigError

__all__ = [
    "ExportError",
    "SUPPORTED_MODELS",
    "MADETwin",
    "MAFTwin",
    "NADETwin",
    "FVSBNTwin",
    "StandardizedTwin",
    "density_twin",
]

#: The families an exported detector can hold.
SUPPORTED_MODELS = ("maf", "made", "nade", "fvsbn")
#: Why the others cannot be exported yet.
_REFUSED_MODELS = {
    "wavenet": "its sequence likelihood and incremental cache are not compiled to TorchScript yet",
    "pixelcnn": "its image likelihood (masked gated convolutions over padded spectrograms) is "
    "not compiled to TorchScript yet",
}
_LOG_2PI = math.log(2 * math.pi)


class ExportError(ConfigError):
    """A run that cannot be exported in the asked format (a family, feature or score the
    exported module does not hold yet), or an exported module that does not reproduce the
    library's scores."""


def _soft_clamp(x: Tensor, bound: float) -> Tensor:
    """``bound * tanh(x / bound)`` as :func:`audioar.models.made.soft_clamp` writes it."""
    return torch.sigmoid(x * (2.0 / bound)) * (2.0 * bound) - bound


def _mixture(x: Tensor, params: Tensor, components: int, bound: float) -> Tensor:
    """:func:`audioar.models.made.mixture_log_prob`: ``(...)`` values under their mixtures."""
    k = components
    logits, mean = params[..., :k], params[..., k : 2 * k]
    log_scale = _soft_clamp(params[..., 2 * k :], bound)
    u = (x.unsqueeze(-1) - mean) * torch.exp(-log_scale)
    comp = _normal(u, log_scale)
    return torch.logsumexp(comp + F.log_softmax(logits, dim=-1), dim=-1)


def _normal(u: Tensor, log_scale: Tensor, log_2pi: float = _LOG_2PI) -> Tensor:
    """``log N(x; mean, exp(log_scale)^2)`` given ``u = (x - mean) / exp(log_scale)``
    (TorchScript reads no module-level float: the constant is a default argument)."""
    return -0.5 * (u * u + log_2pi) - log_scale


def _standard_normal(z: Tensor, log_2pi: float = _LOG_2PI) -> Tensor:
    """``log N(z; 0, I)`` summed over the last axis, as ``MAF.base_log_prob`` writes it."""
    return -0.5 * (z * z + log_2pi).sum(-1)


def _activation(h: Tensor, name: str) -> Tensor:
    if name == "relu":
        return F.relu(h)
    if name == "tanh":
        return torch.tanh(h)
    if name == "elu":
        return F.elu(h)
    if name == "gelu":
        return F.gelu(h)
    return F.silu(h)


def _frozen(t: Tensor) -> Tensor:
    return t.detach().clone()


class MADETwin(nn.Module):
    """A trained :class:`~audioar.models.MADE`'s reference path: the dense masked MLP in
    generation order and its Gaussian, mixture or Bernoulli conditionals.

    Shapes:
        ``x`` ``(batch, features)``, ``context`` ``(batch, context_features)`` or None ->
        :meth:`params` ``(batch, features, params_per_feature)`` in the data's order,
        :meth:`forward` ``(batch,)`` nats.
    """

    features: Final[int]
    params_per_feature: Final[int]
    output: Final[str]
    components: Final[int]
    bound: Final[float]
    activation: Final[str]

    def __init__(self, made: nn.Module) -> None:
        super().__init__()
        if made.output not in ("gaussian", "mog", "bernoulli"):
            raise ExportError(
                f"export: MADE output {made.output!r} is not supported (codes); supported: "
                "gaussian, mog, bernoulli"
            )
        self.features = int(made.features)
        self.params_per_feature = int(made.params_per_feature)
        self.output = str(made.output)
        self.components = int(made.components)
        self.bound = float(made.log_scale_bound)
        self.activation = str(made.activation)
        self.register_buffer("perm", _frozen(made.perm))
        self.register_buffer("inv_perm", _frozen(made.inv_perm))
        layers = []
        with torch.no_grad():
            for layer in made.layers:
                linear = nn.Linear(layer.in_features, layer.out_features)
                linear.weight = nn.Parameter(_frozen(layer.masked_weight()), requires_grad=False)
                linear.bias = nn.Parameter(_frozen(layer.bias), requires_grad=False)
                layers.append(linear)
        self.layers = nn.ModuleList(layers)

    def params_sorted(self, x: Tensor, context: Tensor | None) -> Tensor:
        """Raw conditional parameters ``(batch, features, params)`` in generation order."""
        h = x.index_select(1, self.perm)
        if context is not None:
            h = torch.cat([context, h], dim=1)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < last:
                h = _activation(h, self.activation)
        return h.view(x.shape[0], self.features, self.params_per_feature)

    def params(self, x: Tensor, context: Tensor | None) -> Tensor:
        """Raw conditional parameters in the data's feature order (``MADE.forward``)."""
        return self.params_sorted(x, context).index_select(1, self.inv_perm)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        params = self.params_sorted(x, context)
        xs = x.index_select(1, self.perm)
        if self.output == "gaussian":
            mean, log_scale = params[..., 0], _soft_clamp(params[..., 1], self.bound)
            u = (xs - mean) * torch.exp(-log_scale)
            steps = _normal(u, log_scale)
        elif self.output == "mog":
            steps = _mixture(xs, params, self.components, self.bound)
        else:
            steps = -F.binary_cross_entropy_with_logits(params[..., 0], xs, reduction="none")
        return steps.sum(dim=-1)


class _FlowTwin(nn.Module):
    """One MAF flow in evaluation mode: the affine MADE transform, then the batch norm
    (:class:`~audioar.models.maf.BatchNormBijector` with its running statistics) if any."""

    bound: Final[float]
    has_norm: Final[bool]

    def __init__(self, made: nn.Module, norm: nn.Module | None, bound: float) -> None:
        super().__init__()
        self.made = MADETwin(made)
        self.bound = float(bound)
        self.has_norm = norm is not None
        features = int(made.features)
        if norm is None:
            stats = [torch.zeros(features), torch.zeros(features), torch.zeros(features)]
        else:
            with torch.no_grad():
                log_scale = norm.log_gamma - 0.5 * torch.log(norm.running_var + norm.eps)
            stats = [norm.running_mean, norm.beta, log_scale]
        for name, value in zip(("running_mean", "beta", "log_scale"), stats, strict=True):
            self.register_buffer(name, _frozen(value))

    def forward(self, h: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        mean, raw_scale = self.made.params(h, context).unbind(-1)
        log_scale = _soft_clamp(raw_scale, self.bound)
        h = (h - mean) * torch.exp(-log_scale)
        log_det = -log_scale.sum(-1)
        if self.has_norm:
            h = torch.addcmul(self.beta, h - self.running_mean, torch.exp(self.log_scale))
            log_det = log_det + self.log_scale.sum()
        return h, log_det


class MAFTwin(nn.Module):
    """A trained :class:`~audioar.models.MAF`'s reference path (flow by flow, batch norm in
    evaluation mode), class-conditional through a one-hot context, with a standard normal
    or mixture base."""

    classes: Final[int]
    mog: Final[bool]

    def __init__(self, maf: nn.Module) -> None:
        super().__init__()
        if maf.context_features and not maf.classes:
            raise ExportError("export: a MAF with a vector context (not classes) is not supported")
        self.classes = int(maf.classes)
        norms = list(maf.norms) or [None] * len(maf.mades)
        bound = float(maf.log_scale_bound)
        self.flows = nn.ModuleList(
            _FlowTwin(made, norm, bound) for made, norm in zip(maf.mades, norms, strict=True)
        )
        base = maf.base
        self.mog = base is not None
        with torch.no_grad():
            logits = F.log_softmax(base.logits, 0) if base is not None else torch.zeros(1)
            means = base.means if base is not None else torch.zeros(1, 1)
            log_scales = base.log_scales if base is not None else torch.zeros(1, 1)
        self.register_buffer("base_log_weights", _frozen(logits))
        self.register_buffer("base_means", _frozen(means))
        self.register_buffer("base_log_scales", _frozen(log_scales))

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        context: Tensor | None = None
        if self.classes > 0:
            if labels is None:
                raise ValueError("a class-conditional MAF needs class labels")
            # one_hot(labels, classes), written so that ONNX exports it too
            classes = torch.arange(self.classes, device=x.device)
            context = (labels.unsqueeze(1) == classes.unsqueeze(0)).to(x.dtype)
        h = x
        log_det = x.new_zeros(x.shape[0])
        for flow in self.flows:
            h, ld = flow(h, context)
            log_det = log_det + ld
        if self.mog:  # MixtureBase.log_prob
            u = (h.unsqueeze(1) - self.base_means) * torch.exp(-self.base_log_scales)
            comp = _normal(u, self.base_log_scales).sum(-1)
            base = torch.logsumexp(comp + self.base_log_weights, dim=-1)
        else:
            base = _standard_normal(h)
        return base + log_det


class NADETwin(nn.Module):
    """A trained :class:`~audioar.models.NADE` (binary NADE or RNADE)."""

    components: Final[int]
    bound: Final[float]
    bernoulli: Final[bool]
    rescale: Final[bool]

    def __init__(self, nade: nn.Module) -> None:
        super().__init__()
        self.components = int(nade.components)
        self.bound = float(nade.log_scale_bound)
        self.bernoulli = nade.output == "bernoulli"
        self.rescale = nade.rho is not None
        self.register_buffer("perm", _frozen(nade.perm))
        for name in ("weight", "hidden_bias", "out_weight", "out_bias"):
            self.register_buffer(name, _frozen(getattr(nade, name)))
        rho = nade.rho if nade.rho is not None else torch.ones(1)
        self.register_buffer("rho", _frozen(rho))

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        xs = x.index_select(1, self.perm)
        contrib = xs.unsqueeze(-1) * self.weight
        a = self.hidden_bias + F.pad(contrib[:, :-1].cumsum(dim=1), (0, 0, 1, 0))
        if self.rescale:
            a = a * self.rho.unsqueeze(-1)
        h = torch.sigmoid(a)
        params = torch.bmm(h.transpose(0, 1), self.out_weight.transpose(1, 2))
        params = params.transpose(0, 1) + self.out_bias
        if self.bernoulli:
            steps = -F.binary_cross_entropy_with_logits(params[..., 0], xs, reduction="none")
        else:
            steps = _mixture(xs, params, self.components, self.bound)
        return steps.sum(dim=1)


class FVSBNTwin(nn.Module):
    """A trained :class:`~audioar.models.FVSBN` (logistic or linear-Gaussian)."""

    bernoulli: Final[bool]

    def __init__(self, fvsbn: nn.Module) -> None:
        super().__init__()
        self.bernoulli = fvsbn.output == "bernoulli"
        self.register_buffer("perm", _frozen(fvsbn.perm))
        with torch.no_grad():
            self.register_buffer("weight", _frozen(fvsbn.linear.masked_weight()))
        self.register_buffer("bias", _frozen(fvsbn.linear.bias))
        log_scale = fvsbn.log_scale if fvsbn.log_scale is not None else torch.zeros(1)
        self.register_buffer("log_scale", _frozen(log_scale))

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        xs = x.index_select(1, self.perm)
        out = F.linear(xs, self.weight, self.bias)
        if self.bernoulli:
            steps = -F.binary_cross_entropy_with_logits(out, xs, reduction="none")
        else:
            u = (xs - out) * torch.exp(-self.log_scale)
            steps = _normal(u, self.log_scale)
        return steps.sum(dim=1)


class StandardizedTwin(nn.Module):
    """:class:`~audioar.models.standardize.Standardized` over vectors: the twin sees
    ``(x - mean) / std`` and the log-likelihood of the raw features adds ``-sum(log std)``.

    Shapes:
        ``x`` ``(batch, features)``, ``labels`` ``(batch,)`` -> :meth:`forward` ``(batch,)``
        nats; :meth:`all_classes` ``(batch, classes)`` (``(batch, 1)`` one-class).
    """

    classes: Final[int]

    def __init__(self, twin: nn.Module, mean: Tensor, std: Tensor, classes: int) -> None:
        super().__init__()
        self.twin = twin
        self.classes = int(classes)
        self.register_buffer("mean", _frozen(mean).reshape(-1))
        self.register_buffer("std", _frozen(std).reshape(-1))
        with torch.no_grad():
            self.register_buffer("log_det", -torch.log(self.std).sum())

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        z = (x - self.mean) / self.std
        return self.twin(z, labels) + self.log_det

    def all_classes(self, x: Tensor) -> Tensor:
        """``log p(x | c)`` for every class, one pass over ``(classes x batch)`` rows (as
        :func:`audioar.pipeline.scoring.class_log_likelihoods`); ``(batch, 1)`` for one class."""
        n = x.shape[0]
        if self.classes == 0:
            return self.forward(x, None).unsqueeze(1)
        rows = x.repeat(self.classes, 1)  # class-major: row c * n + i
        labels = torch.arange(self.classes, device=x.device).unsqueeze(1).expand(self.classes, n)
        labels = labels.reshape(-1)  # arange(classes).repeat_interleave(n)
        return self.forward(rows, labels).view(self.classes, n).t()


def density_twin(model: nn.Module, name: str) -> StandardizedTwin:
    """The TorchScript twin of a trained :class:`Standardized` model of family ``name``.

    Raises:
        ExportError: A family, input or output the twins do not cover (one line, naming
            it and what is supported).
    """
    if name not in SUPPORTED_MODELS:
        why = _REFUSED_MODELS.get(name, "it has no TorchScript twin")
        raise ExportError(
            f"export: model {name} is not supported yet ({why}); supported: "
            f"{', '.join(SUPPORTED_MODELS)}"
        )
    spec = model.spec
    if spec.kind != "vector" or spec.levels:
        raise ExportError(
            f"export: model {name} over {spec.kind}s of {spec.levels}-level codes is not "
            "supported; supported: real-valued feature vectors"
            if spec.levels
            else f"export: {spec.kind} inputs are not supported; supported: feature vectors"
        )
    inner = model.model
    twins = {"maf": MAFTwin, "made": MADETwin, "nade": NADETwin, "fvsbn": FVSBNTwin}
    twin = twins[name](inner)
    classes = int(model.classes) if model.conditional else 0
    return StandardizedTwin(twin, model.mean, model.std, classes)
