"""Build the density model a run configuration names."""

from torch import nn

from audioar.config import ModelConfig
from audioar.errors import ConfigError
from audioar.models.made import MADE
from audioar.models.maf import MAF

__all__ = ["VECTOR_MODELS", "build_vector_model"]

#: Models over one fixed-size feature vector per clip.
VECTOR_MODELS = ("maf", "made")


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
