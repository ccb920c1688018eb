"""Input complexity: how many nats a lossless compressor needs for a clip's features.

Likelihood models give simple inputs (silence, steady tones, plain backgrounds) high
likelihoods whatever they were trained on. Serrà et al. (2020) correct for this by adding
the input's complexity, a lossless code length ``L(x)``, to its log-likelihood: both then
count the nats of the same quantised data, one under the model, one under a general-purpose
compressor, and their sum ``log p(x) + L(x)`` compares how much better the model explains
the clip than generic regularity does.

Here the features are standardised with the model's training statistics, quantised to
8 bits over ``±4`` standard deviations (codes are used as they are) and compressed with
zlib (level 9); ``L`` is the compressed size in nats. The log-likelihood is turned into
that of the quantised values by adding ``log`` of the bin width for every value, so both
terms are in the same units.

References:
    Serrà, Álvarez, Gómez, Slizovskaia, Núñez, Luque, "Input Complexity and
    Out-of-distribution Detection with Likelihood-based Generative Models", ICLR 2020.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from audioar.models.standardize import Standardized

__all__ = ["QUANT_RANGE", "QUANT_LEVELS", "code_lengths", "quantised_log_likelihood"]

QUANT_RANGE = 4.0  # standardised values are quantised over [-4, 4] standard deviations
QUANT_LEVELS = 256  # 8-bit bins
_BIN = 2 * QUANT_RANGE / QUANT_LEVELS  # bin width in standardised units


def _quantise(model: Standardized, x: Tensor, length: int) -> bytes:
    """One clip's valid values as bytes (8-bit bins of standardised values, or codes)."""
    kind = model.spec.kind
    if kind == "sequence":
        x = x[:length]
    elif kind == "image":
        x = x[..., :length]
    if model.spec.levels:
        width = 1 if model.spec.levels <= 256 else 2
        return x.long().numpy().astype(np.uint8 if width == 1 else np.uint16).tobytes()
    with torch.no_grad():
        z = model.standardize(x)
    bins = torch.clamp(((z + QUANT_RANGE) / _BIN).floor(), 0, QUANT_LEVELS - 1)
    return bins.to(torch.uint8).numpy().tobytes()


def code_lengths(
    model: Standardized, items: Sequence[Tensor], lengths: Sequence[int]
) -> np.ndarray:
    """``(n,)`` zlib code length of each clip's quantised features, in nats."""
    return np.array(
        [
            8 * math.log(2) * len(zlib.compress(_quantise(model, x, n), 9))
            for x, n in zip(items, lengths, strict=True)
        ],
        dtype=np.float64,
    )


def quantised_log_likelihood(
    model: Standardized, log_likelihood: np.ndarray, steps: np.ndarray, values_per_step: int
) -> np.ndarray:
    """Log-likelihoods of the quantised values the code lengths count (nats).

    A density ``p(x)`` of raw features gives the quantised values about ``p(x) * bin``: per
    value, the standardised bin width times that feature's standard deviation. Codes are
    already discrete: unchanged.
    """
    if model.spec.levels:
        return log_likelihood
    per_step = values_per_step * math.log(_BIN) + float(torch.log(model.std).sum())
    return log_likelihood + steps * per_step
