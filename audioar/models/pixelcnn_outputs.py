"""Per-pixel output distributions of the PixelCNN: Bernoulli, categorical, logistic mixtures.

Each output turns the parameters the network predicts for one pixel, ``(..., size)``, into
the log-likelihood in nats of the pixel's ``channels`` values ``(..., channels)`` (summed
over the channels), draws new pixels, and encodes pixel values as the network's real-valued
input. Given the pixels before it, the channels of one pixel are independent (Bernoulli,
categorical) or share the mixture component (logistic mixtures, which can so model their
dependence).

* ``"bernoulli"``: binary pixels ``{0, 1}`` (float), one logit per channel.
* ``"categorical"``: pixels of ``levels`` values ``0..levels-1`` (long), ``levels`` logits
  per channel.
* ``"logistic_mixture"`` over discrete pixels (``levels > 0``): the discretised logistic
  mixture of PixelCNN++. Value ``x`` is placed at ``y = 2 x / (levels - 1) - 1`` in
  ``[-1, 1]`` and gets the logistic mass of its bin ``y +- 1 / (levels - 1)``; the end bins
  reach to infinity, so the masses of the ``levels`` values sum to one.
* ``"logistic_mixture"`` over real values (``levels == 0``): a continuous mixture of
  logistic densities on the whole real line (:class:`LogisticMixtureOutput`), for
  standardised features such as log-mel spectrograms. Its log-likelihoods are log-densities
  (nats, may be positive), comparable across clips of one scaling only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from audioar.errors import ConfigError, DataError
from audioar.models.wavenet_outputs import LogisticMixtureOutput, safe_log_scale

__all__ = [
    "PIXEL_OUTPUTS",
    "BernoulliPixels",
    "CategoricalPixels",
    "DiscretizedLogisticMixture",
    "ContinuousLogisticMixture",
    "make_pixel_output",
]

PIXEL_OUTPUTS = ("bernoulli", "categorical", "logistic_mixture")

# Below this bin mass the difference of two sigmoids loses its digits: use the density at
# the bin centre times the bin width instead (PixelCNN++).
_MIN_BIN_MASS = 1e-5


def _scale_levels(x: Tensor, levels: int, dtype: torch.dtype) -> Tensor:
    """Values ``0..levels-1`` -> ``[-1, 1]``."""
    return x.to(dtype) * (2.0 / (levels - 1)) - 1.0


def _check_codes(x: Tensor, levels: int) -> Tensor:
    if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
        raise DataError(f"pixels must be an integer tensor of {levels} levels, got {x.dtype}")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= levels):
        raise DataError(
            f"pixel values must lie in [0, {levels}), got [{int(x.min())}, {int(x.max())}]"
        )
    return x.long()


class BernoulliPixels:
    """Binary pixels, one logit per channel.

    Args:
        channels: values per pixel.
    """

    discrete = True

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self.size = channels

    def check(self, x: Tensor) -> Tensor:
        """Validated pixels as float ``{0, 1}``; DataError for any other value."""
        if x.numel() and not bool(((x == 0) | (x == 1)).all()):
            raise DataError("bernoulli pixels must be 0 or 1")
        return x.float() if not x.dtype.is_floating_point else x

    def encode(self, x: Tensor, dtype: torch.dtype) -> Tensor:
        """Network input ``2 x - 1`` in ``{-1, 1}``."""
        return x.to(dtype) * 2.0 - 1.0

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """``(..., channels)`` logits and pixels -> ``(...)`` log-probabilities (nats)."""
        return -F.binary_cross_entropy_with_logits(
            params, x.to(params.dtype), reduction="none"
        ).sum(dim=-1)

    def sample(self, params: Tensor) -> Tensor:
        """``(n, channels)`` logits -> pixels ``(n, channels)`` (float 0/1)."""
        u = torch.rand(params.shape, device=params.device, dtype=params.dtype)
        return (u < torch.sigmoid(params)).to(params.dtype)


class CategoricalPixels:
    """Pixels of ``levels`` values per channel, ``levels`` logits per channel.

    Args:
        channels: values per pixel.
        levels: values a channel takes, ``0..levels-1``.
    """

    discrete = True

    def __init__(self, channels: int, levels: int) -> None:
        self.channels = channels
        self.levels = levels
        self.size = channels * levels

    def check(self, x: Tensor) -> Tensor:
        """Validated pixels (long in ``[0, levels)``)."""
        return _check_codes(x, self.levels)

    def encode(self, x: Tensor, dtype: torch.dtype) -> Tensor:
        """Network input ``2 x / (levels - 1) - 1`` in ``[-1, 1]``."""
        return _scale_levels(x, self.levels, dtype)

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """``(..., channels * levels)`` logits (channel-major) and long pixels
        ``(..., channels)`` -> ``(...)`` log-probabilities (nats)."""
        logits = params.unflatten(-1, (self.channels, self.levels))
        log_p = torch.log_softmax(logits, dim=-1).gather(-1, x.long().unsqueeze(-1))
        return log_p.squeeze(-1).sum(dim=-1)

    def sample(self, params: Tensor) -> Tensor:
        """``(n, channels * levels)`` logits -> pixels ``(n, channels)`` (long), by inverse
        CDF with one uniform per value."""
        logits = params.unflatten(-1, (self.channels, self.levels))
        cdf = torch.softmax(logits, dim=-1).cumsum(dim=-1)
        u = torch.rand(*cdf.shape[:-1], 1, device=cdf.device, dtype=cdf.dtype) * cdf[..., -1:]
        codes = torch.searchsorted(cdf.contiguous(), u, right=True).squeeze(-1)
        return codes.clamp_(max=self.levels - 1)


class DiscretizedLogisticMixture:
    """PixelCNN++'s discretised mixture of logistics over pixels of ``levels`` values.

    Parameters per pixel: ``components`` mixture logits, then means and raw log-scales
    ``(components, channels)`` each; the component is shared by the channels of a pixel.

    Args:
        channels: values per pixel.
        levels: values a channel takes (``256`` for 8-bit images).
        components: mixture components.

    References:
        Salimans, Karpathy, Chen, Kingma, "PixelCNN++: Improving the PixelCNN with
        Discretized Logistic Mixture Likelihood and Other Modifications", ICLR 2017.
    """

    discrete = True

    def __init__(self, channels: int, levels: int, components: int) -> None:
        self.channels = channels
        self.levels = levels
        self.components = components
        self.size = components * (1 + 2 * channels)
        self.half_bin = 1.0 / (levels - 1)

    def check(self, x: Tensor) -> Tensor:
        """Validated pixels (long in ``[0, levels)``)."""
        return _check_codes(x, self.levels)

    def encode(self, x: Tensor, dtype: torch.dtype) -> Tensor:
        """Network input ``2 x / (levels - 1) - 1`` in ``[-1, 1]``."""
        return _scale_levels(x, self.levels, dtype)

    def _split(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        k, c = self.components, self.channels
        logits, mean, raw = params.split([k, k * c, k * c], dim=-1)
        shape = (*params.shape[:-1], k, c)
        return logits, mean.reshape(shape), safe_log_scale(raw.reshape(shape))

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """``(..., size)`` parameters and long pixels ``(..., channels)`` -> ``(...)``
        log-probabilities (nats)."""
        logits, mean, log_scale = self._split(params)
        y = _scale_levels(x, self.levels, params.dtype).unsqueeze(-2)  # (..., 1, channels)
        inv_scale = torch.exp(-log_scale)
        centred = y - mean
        upper = inv_scale * (centred + self.half_bin)
        lower = inv_scale * (centred - self.half_bin)
        log_cdf_upper = -F.softplus(-upper)  # log sigmoid(upper): the bottom bin
        log_sf_lower = -F.softplus(lower)  # log(1 - sigmoid(lower)): the top bin
        mass = torch.sigmoid(upper) - torch.sigmoid(lower)
        mid = inv_scale * centred
        log_pdf_mid = mid - log_scale - 2.0 * F.softplus(mid)
        log_mass = torch.where(
            mass > _MIN_BIN_MASS,
            torch.log(mass.clamp_min(1e-12)),
            log_pdf_mid + math.log(2.0 * self.half_bin),
        )
        codes = x.unsqueeze(-2)
        log_p = torch.where(
            codes == 0,
            log_cdf_upper,
            torch.where(codes == self.levels - 1, log_sf_lower, log_mass),
        ).sum(dim=-1)
        return torch.logsumexp(torch.log_softmax(logits, dim=-1) + log_p, dim=-1)

    def sample(self, params: Tensor) -> Tensor:
        """``(n, size)`` parameters -> pixels ``(n, channels)`` (long): a component, a
        logistic draw, rounded to the nearest level."""
        logits, mean, log_scale = self._split(params)
        k = torch.multinomial(torch.softmax(logits, dim=-1), 1).squeeze(-1)
        rows = torch.arange(params.shape[0], device=params.device)
        mean, scale = mean[rows, k], torch.exp(log_scale[rows, k])
        u = torch.rand_like(mean).clamp_(1e-6, 1.0 - 1e-6)
        y = mean + scale * (torch.log(u) - torch.log1p(-u))
        codes = torch.round((y + 1.0) * (0.5 * (self.levels - 1)))
        return codes.clamp_(0, self.levels - 1).long()


class ContinuousLogisticMixture(LogisticMixtureOutput):
    """Continuous mixture of logistics over real-valued pixels (standardised features).

    The density of :class:`~audioar.models.wavenet_outputs.LogisticMixtureOutput` over the
    ``channels`` values of a pixel; the network sees the values unchanged.

    Args:
        channels: values per pixel.
        components: mixture components.
    """

    discrete = False

    def __init__(self, channels: int, components: int) -> None:
        super().__init__(channels, components)
        self.channels = channels

    def check(self, x: Tensor) -> Tensor:
        """Validated pixels (floating point, finite)."""
        if not x.dtype.is_floating_point:
            raise DataError(f"real-valued pixels must be a float tensor, got {x.dtype}")
        if not bool(torch.isfinite(x).all()):
            raise DataError("pixels contain NaN or infinite values")
        return x

    def encode(self, x: Tensor, dtype: torch.dtype) -> Tensor:
        """Network input: the values themselves."""
        return x.to(dtype)


PixelOutput = (
    BernoulliPixels | CategoricalPixels | DiscretizedLogisticMixture | ContinuousLogisticMixture
)


def make_pixel_output(output: str, channels: int, levels: int, components: int) -> PixelOutput:
    """The output distribution named ``output`` (one of :data:`PIXEL_OUTPUTS`).

    Args:
        output: ``"bernoulli"``, ``"categorical"`` or ``"logistic_mixture"``.
        channels: values per pixel.
        levels: values of a discrete pixel; ``0`` for real values (``logistic_mixture``
            only; ``bernoulli`` takes ``0`` or ``2``).
        components: mixture components of ``logistic_mixture``.

    Raises:
        ConfigError: an unknown output, or levels / components that do not fit it.
    """
    if output == "bernoulli":
        if levels not in (0, 2):
            raise ConfigError(f"output='bernoulli' models 2 levels, got levels={levels}")
        return BernoulliPixels(channels)
    if output == "categorical":
        if levels < 2:
            raise ConfigError(f"output='categorical' needs levels >= 2, got levels={levels}")
        return CategoricalPixels(channels, levels)
    if output == "logistic_mixture":
        if components < 1:
            raise ConfigError(f"mixture components must be >= 1, got {components}")
        if levels == 0:
            return ContinuousLogisticMixture(channels, components)
        if levels < 2:
            raise ConfigError(f"output='logistic_mixture' needs levels 0 or >= 2, got {levels}")
        return DiscretizedLogisticMixture(channels, levels, components)
    raise ConfigError(f"unknown PixelCNN output {output!r}; expected one of {PIXEL_OUTPUTS}")
