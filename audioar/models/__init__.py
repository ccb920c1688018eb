"""Density models: every family follows :mod:`audioar.models.contract`.

The classes are imported on first use (``from audioar.models import MAF`` works as usual),
so that reading the registry (:mod:`audioar.models.build`) does not load torch.
"""

import importlib
from typing import Any

#: Public name -> the module that defines it.
_EXPORTS = {
    "MADE": "audioar.models.made",
    "MADEConfig": "audioar.models.made",
    "MAF": "audioar.models.maf",
    "MAFConfig": "audioar.models.maf",
    "WaveNet": "audioar.models.wavenet",
    "WaveNetConfig": "audioar.models.wavenet",
    "NADE": "audioar.models.nade",
    "NADEConfig": "audioar.models.nade",
    "FVSBN": "audioar.models.fvsbn",
    "FVSBNConfig": "audioar.models.fvsbn",
    "PixelCNN": "audioar.models.pixelcnn",
    "PixelCNNConfig": "audioar.models.pixelcnn",
    "InputSpec": "audioar.models.contract",
    "DensityModel": "audioar.models.contract",
    "Standardized": "audioar.models.standardize",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'audioar.models' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
