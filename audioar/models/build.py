"""Build the density model a run configuration names."""

from torch import nn

from audioar.config import ModelConfig
from audioar.errors import ConfigError
from audioar.models.made import MADE
from audioar.models.maf import MAF
from audioar.models.wavenet import WaveNet

__all__ = ["VECTOR_MODELS", "SEQUENCE_MODELS", "build_vector_model", "build_sequence_model"]

#: Models over one fixed-size feature vector per clip.
VECTOR_MODELS = ("maf", "made")

#: Class-conditional models over a variable-length sequence (codes or frames) per clip.
SEQUENCE_MODELS = ("wavenet",)


def build_vector_model(cfg: ModelConfig, features: int, context_features: int = 0) -> nn.Module:
    """A MAF or MADE over ``features``-dimensional vectors.

    Args:
        cfg: The model section of the run configuration.
        features: Input dimension (e.g. 128 for the default segment spectrum).
        context_features: Width of an optional conditioning vector. Default 0.

    Returns:
        The untrained model.

    Raises:
        ConfigError: ``cfg.name`` is not a vector model.
    """
    if cfg.name == "maf":
        return MAF(features=features, context_features=context_features, **cfg.model_kwargs())
    if cfg.name == "made":
        return MADE(features=features, context_features=context_features, **cfg.model_kwargs())
    raise ConfigError(
        f"model {cfg.name!r} does not take one feature vector per clip; "
        f"choose one of {', '.join(VECTOR_MODELS)}"
    )


def build_sequence_model(
    cfg: ModelConfig, classes: int, *, in_features: int = 1, quantization: int = 256
) -> WaveNet:
    """A class-conditional WaveNet over codes or frames.

    Args:
        cfg: The model section of the run configuration (``cfg.components`` sets the
            mixture size of ``wavenet_output="logistic_mixture"``).
        classes: Number of classes it is conditioned on.
        in_features: Values per frame for the continuous outputs (e.g. ``n_mels``). Default 1.
        quantization: Codes of the categorical output (``2**bits``). Default 256.

    Returns:
        The untrained WaveNet.

    Raises:
        ConfigError: ``cfg.name`` is not a sequence model.
    """
    if cfg.name not in SEQUENCE_MODELS:
        raise ConfigError(
            f"model {cfg.name!r} does not take a sequence per clip; "
            f"choose one of {', '.join(SEQUENCE_MODELS)}"
        )
    return WaveNet(
        classes=classes,
        quantization=quantization,
        in_features=in_features,
        mixture_components=cfg.components,
        **cfg.model_kwargs(),
    )
