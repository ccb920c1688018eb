"""The model registry: ``model.name`` -> the family's class (its ``Config`` and ``from_spec``).

Adding a family is one model file that follows :mod:`audioar.models.contract` and one line
in :data:`FAMILIES`. The registry names each class by its module, imported on first use,
so that listing the families (the command line's help) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from audioar.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from audioar.models.contract import InputSpec

__all__ = ["FAMILIES", "family", "build_model", "describe_families"]

#: Every family by name -> ``"module:Class"``, in the order the command line lists them.
FAMILIES: dict[str, str] = {
    "maf": "audioar.models.maf:MAF",
    "made": "audioar.models.made:MADE",
    "wavenet": "audioar.models.wavenet:WaveNet",
    "nade": "audioar.models.nade:NADE",
    "fvsbn": "audioar.models.fvsbn:FVSBN",
    "pixelcnn": "audioar.models.pixelcnn:PixelCNN",
}


def family(name: str) -> Any:
    """The model class registered as ``name``.

    Raises:
        ConfigError: No family has that name.
    """
    if name not in FAMILIES:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(FAMILIES)}")
    module, _, attribute = FAMILIES[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def build_model(name: str, cfg: Any, spec: InputSpec) -> nn.Module:
    """The untrained model of family ``name`` with settings ``cfg`` for data like ``spec``.

    Args:
        name: A key of :data:`FAMILIES`.
        cfg: An instance of that family's ``Config`` (None: its defaults).
        spec: What one clip's features look like.

    Raises:
        ConfigError: Unknown family, settings of another family, or features the family
            does not take.
    """
    cls = family(name)
    cfg = cls.Config() if cfg is None else cfg
    if not isinstance(cfg, cls.Config):
        raise ConfigError(f"model {name!r} takes {cls.Config.__name__}, got {type(cfg).__name__}")
    if spec.kind not in cls.inputs:
        raise ConfigError(
            f"model {name!r} takes {' or '.join(k + 's' for k in cls.inputs)} per clip; "
            f"these features give {spec.kind}s"
        )
    return cls.from_spec(cfg, spec)


def describe_families() -> str:
    """``"maf | made | wavenet"``: the registry for help texts (no model is imported)."""
    return " | ".join(FAMILIES)
