"""audioar: audio anomaly detection with deep autoregressive density models.

The public API, imported on first use (``import audioar`` stays light)::

    from audioar import Detector                 # fit, score, predict, save / load
    from audioar import load_audio, discover     # audio files and data sets
    from audioar import MAF, MADE, NADE, FVSBN, WaveNet, PixelCNN
    from audioar import SegmentSpectrum, WholeWindowFFT, STFT, MuLaw, Windowed
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it
_PUBLIC = {
    "Detector": "audioar.detector",
    "load_audio": "audioar.data.io",
    "discover": "audioar.data.discovery",
    "MAF": "audioar.models",
    "MADE": "audioar.models",
    "NADE": "audioar.models",
    "FVSBN": "audioar.models",
    "WaveNet": "audioar.models",
    "PixelCNN": "audioar.models",
    "SegmentSpectrum": "audioar.features",
    "WholeWindowFFT": "audioar.features",
    "STFT": "audioar.features",
    "MuLaw": "audioar.features",
    "Windowed": "audioar.features",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'audioar' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
