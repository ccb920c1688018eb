"""Featurizers by name: rebuild one from its ``to_config()`` dict (windowed ones too)."""

import dataclasses
from collections.abc import Mapping
from typing import Any

from audioar.errors import ConfigError
from audioar.features.base import Featurizer
from audioar.features.mulaw import MuLaw
from audioar.features.segments import SegmentSpectrum
from audioar.features.stft import STFT
from audioar.features.whole_window import WholeWindowFFT
from audioar.features.windows import WINDOW_KEYS, Windowed

__all__ = ["FEATURIZERS", "featurizer_from_config"]

#: ``"name"`` key of a featurizer config -> its class.
FEATURIZERS: dict[str, type[Featurizer]] = {
    cls.name: cls for cls in (MuLaw, STFT, WholeWindowFFT, SegmentSpectrum)
}


def featurizer_from_config(config: Mapping[str, Any]) -> Featurizer:
    """Build a featurizer from ``{"name": "mulaw" | "stft" | "fft" | "segments", **arguments}``.

    Missing arguments take their defaults, so ``{"name": "fft"}`` is a valid config. A config
    with ``window_seconds`` (and optionally ``hop_seconds``), as :meth:`Windowed.to_config`
    writes it, builds the named featurizer from the other keys and wraps it in
    :class:`~audioar.features.windows.Windowed` (``window_seconds`` None: no windows).

    Args:
        config: A dict as written by ``Featurizer.to_config()``.

    Returns:
        The featurizer (on CPU).

    Raises:
        ConfigError: Unknown name, unknown argument or invalid value.

    Example:
        >>> fft = featurizer_from_config({"name": "fft", "n_fft": 512, "seconds": 1.0})
        >>> featurizer_from_config(fft.to_config()).to_config() == fft.to_config()
        True
    """
    if not isinstance(config, Mapping):
        raise ConfigError(f"featurizer config must be a mapping, got {type(config).__name__}")
    args = dict(config)
    if any(key in args for key in WINDOW_KEYS):
        window = {key: args.pop(key, None) for key in WINDOW_KEYS}
        if window["window_seconds"] is None:  # no windows: only the inner featurizer
            if window["hop_seconds"] is not None:
                raise ConfigError("hop_seconds needs window_seconds (the window length)")
            return featurizer_from_config(args)
        return Windowed(featurizer_from_config(args), **window)
    name = args.pop("name", None)
    if name not in FEATURIZERS:
        raise ConfigError(f"unknown featurizer {name!r}; expected one of {sorted(FEATURIZERS)}")
    cls = FEATURIZERS[name]
    known = {field.name for field in dataclasses.fields(cls.config_class)}
    unknown = sorted(set(args) - known)
    if unknown:
        raise ConfigError(f"unknown argument(s) {unknown} for featurizer {name!r}")
    return cls(**args)
