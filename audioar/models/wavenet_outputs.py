"""Per-step output distributions of WaveNet: categorical codes, Gaussian or logistic-mixture frames.

Each output turns the network's parameter vector for one step, ``(..., size)``, into a
log-likelihood in nats for the observed step and draws new steps from it. The continuous
outputs are true densities over real-valued frames (not discretised), so their
log-likelihoods can be positive.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from audioar.errors import ConfigError

__all__ = [
    "LOG_SCALE_MIN",
    "OUTPUTS",
    "CategoricalOutput",
    "GaussianOutput",
    "LogisticMixtureOutput",
    "make_output",
    "safe_log_scale",
]

# Smallest log standard deviation / log scale (exp(-7) ~ 9e-4): a bound on the density,
# so a collapsing scale cannot drive the loss to -inf or produce NaNs.
LOG_SCALE_MIN = -7.0

OUTPUTS = ("categorical", "gaussian", "logistic_mixture")

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def safe_log_scale(raw: Tensor) -> Tensor:
    """Smooth lower bound ``LOG_SCALE_MIN + softplus(raw - LOG_SCALE_MIN)`` (about ``raw``
    above the bound, never below it, gradient everywhere).

    Args:
        raw: unconstrained network outputs, any shape.

    Returns:
        Log-scales of the same shape, all ``> LOG_SCALE_MIN``.
    """
    return LOG_SCALE_MIN + F.softplus(raw - LOG_SCALE_MIN)


class CategoricalOutput:
    """Categorical over ``quantization`` codes (e.g. 8-bit μ-law), parameterised by logits.

    Args:
        quantization: number of codes (default ``256``).
    """

    def __init__(self, quantization: int = 256) -> None:
        self.quantization = quantization
        self.size = quantization

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """Log-probability of codes.

        Args:
            params: logits ``(..., quantization)``.
            x: codes (LongTensor) ``(...)``.

        Returns:
            ``(...)`` log-probabilities in nats.
        """
        log_p = torch.log_softmax(params, dim=-1)
        return log_p.gather(-1, x.unsqueeze(-1)).squeeze(-1)

    def sample(self, params: Tensor, temperature: float = 1.0) -> Tensor:
        """Draws codes by inverse CDF (one uniform per row).

        Args:
            params: logits ``(batch, quantization)``.
            temperature: logits are divided by it; ``0`` takes the most likely code.

        Returns:
            Codes ``(batch,)`` (LongTensor).
        """
        if temperature == 0:
            return params.argmax(dim=-1)
        cdf = torch.softmax(params / temperature, dim=-1).cumsum(dim=-1)
        u = torch.rand(params.shape[0], 1, device=params.device, dtype=cdf.dtype) * cdf[:, -1:]
        return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_(max=self.quantization - 1)


class GaussianOutput:
    """Diagonal Gaussian over frames of ``in_features`` values: means and safe log-scales.

    Args:
        in_features: size of a frame.
    """

    def __init__(self, in_features: int) -> None:
        self.in_features = in_features
        self.size = 2 * in_features

    def _split(self, params: Tensor) -> tuple[Tensor, Tensor]:
        mean, raw = params.split(self.in_features, dim=-1)
        return mean, safe_log_scale(raw)

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """Log-density of frames.

        Args:
            params: ``(..., 2 * in_features)``: means, then raw log-scales.
            x: frames ``(..., in_features)``.

        Returns:
            ``(...)`` log-densities in nats (summed over the frame).
        """
        mean, log_scale = self._split(params)
        z = (x - mean) * torch.exp(-log_scale)
        return (-0.5 * z.square() - log_scale - _HALF_LOG_2PI).sum(dim=-1)

    def sample(self, params: Tensor, temperature: float = 1.0) -> Tensor:
        """Draws frames ``mean + temperature * scale * noise``.

        Args:
            params: ``(batch, 2 * in_features)``.
            temperature: multiplies the standard deviation; ``0`` returns the means.

        Returns:
            Frames ``(batch, in_features)``.
        """
        mean, log_scale = self._split(params)
        return mean + temperature * torch.exp(log_scale) * torch.randn_like(mean)


class LogisticMixtureOutput:
    """Mixture of ``components`` diagonal logistic distributions over frames.

    The mixture weights are shared by all values of a frame (each component is a diagonal
    logistic over the whole frame), so the mixture can model dependence inside a frame.
    This is the continuous logistic density, not the discretised one of PixelCNN++.

    Args:
        in_features: size of a frame.
        components: number of mixture components (default ``10``).

    References:
        Salimans et al., "PixelCNN++", 2017 (mixture of logistics).
    """

    def __init__(self, in_features: int, components: int = 10) -> None:
        self.in_features = in_features
        self.components = components
        self.size = components * (1 + 2 * in_features)

    def _split(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        k, d = self.components, self.in_features
        logits, mean, raw = params.split([k, k * d, k * d], dim=-1)
        shape = (*params.shape[:-1], k, d)
        return logits, mean.reshape(shape), safe_log_scale(raw.reshape(shape))

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """Log-density of frames.

        Args:
            params: ``(..., components * (1 + 2 * in_features))``: mixture logits, means
                ``(components, in_features)``, raw log-scales ``(components, in_features)``.
            x: frames ``(..., in_features)``.

        Returns:
            ``(...)`` log-densities in nats.
        """
        logits, mean, log_scale = self._split(params)
        u = (x.unsqueeze(-2) - mean) * torch.exp(-log_scale)
        # log logistic pdf = log sigmoid(u) + log sigmoid(-u) - log s, in a stable form.
        log_pdf = (-F.softplus(u) - F.softplus(-u) - log_scale).sum(dim=-1)
        return torch.logsumexp(torch.log_softmax(logits, dim=-1) + log_pdf, dim=-1)

    def sample(self, params: Tensor, temperature: float = 1.0) -> Tensor:
        """Draws frames: a component from ``softmax(logits / temperature)``, then a logistic
        with its scale multiplied by ``temperature`` (``0``: mean of the likeliest component).

        Args:
            params: ``(batch, components * (1 + 2 * in_features))``.
            temperature: sampling temperature (default ``1.0``).

        Returns:
            Frames ``(batch, in_features)``.
        """
        logits, mean, log_scale = self._split(params)
        if temperature == 0:
            k = logits.argmax(dim=-1)
        else:
            k = torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1).squeeze(-1)
        rows = torch.arange(params.shape[0], device=params.device)
        mean, scale = mean[rows, k], torch.exp(log_scale[rows, k])
        u = torch.rand_like(mean).clamp_(1e-6, 1.0 - 1e-6)
        return mean + temperature * scale * (torch.log(u) - torch.log1p(-u))


def make_output(
    output: str, quantization: int = 256, in_features: int = 1, components: int = 10
) -> CategoricalOutput | GaussianOutput | LogisticMixtureOutput:
    """Builds the output distribution named ``output`` (one of :data:`OUTPUTS`).

    Args:
        output: ``"categorical"``, ``"gaussian"`` or ``"logistic_mixture"``.
        quantization: codes of the categorical output (default ``256``).
        in_features: frame size of the continuous outputs (default ``1``).
        components: mixture components of ``"logistic_mixture"`` (default ``10``).

    Returns:
        The output object, with ``size`` parameters per step.

    Raises:
        ConfigError: unknown output name or non-positive sizes.
    """
    if output == "categorical":
        if quantization < 2:
            raise ConfigError(f"quantization must be >= 2, got {quantization}")
        return CategoricalOutput(quantization)
    if in_features < 1:
        raise ConfigError(f"in_features must be >= 1 for output={output!r}, got {in_features}")
    if output == "gaussian":
        return GaussianOutput(in_features)
    if output == "logistic_mixture":
        if components < 1:
            raise ConfigError(f"mixture_components must be >= 1, got {components}")
        return LogisticMixtureOutput(in_features, components)
    raise ConfigError(f"unknown WaveNet output {output!r}; expected one of {', '.join(OUTPUTS)}")
