"""Featurizers: waveform (time,) or (batch, time) at a fixed sample rate -> features."""

from audioar.features.base import LOG_FLOOR, Featurizer
from audioar.features.cache import FeatureCache
from audioar.features.extract import (
    ExtractResult,
    extract,
    featurize_waveforms,
    featurize_windows,
)
from audioar.features.mulaw import MuLaw, MuLawConfig
from audioar.features.registry import FEATURIZERS, featurizer_from_config
from audioar.features.segments import SegmentsConfig, SegmentSpectrum
from audioar.features.stft import STFT, STFTConfig
from audioar.features.whole_window import FFTConfig, WholeWindowFFT
from audioar.features.windows import Windowed, WindowsConfig

__all__: list[str] = [
    "LOG_FLOOR",
    "Featurizer",
    "MuLaw",
    "MuLawConfig",
    "STFT",
    "STFTConfig",
    "WholeWindowFFT",
    "FFTConfig",
    "SegmentSpectrum",
    "SegmentsConfig",
    "Windowed",
    "WindowsConfig",
    "FEATURIZERS",
    "featurizer_from_config",
    "extract",
    "ExtractResult",
    "featurize_waveforms",
    "featurize_windows",
    "FeatureCache",
]
