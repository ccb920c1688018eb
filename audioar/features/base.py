"""What every featurizer shares: the base class, the log floor, pad/trim and config checks.

A featurizer is an ``nn.Module`` built with its ``sample_rate`` (like torchaudio's
transforms). It maps a waveform ``(time,)`` or ``(batch, time)`` at that rate to features and
describes itself with a ``@dataclass`` config, so it can be saved (``to_config``) and rebuilt
(``featurizer_from_config``).
"""

import abc
import dataclasses
import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchaudio.functional import create_dct

from audioar.errors import ConfigError

__all__ = [
    "LOG_FLOOR",
    "Featurizer",
    "safe_log",
    "power_spectrum",
    "fix_length",
    "seconds_to_samples",
    "check_int",
    "check_seconds",
    "mel_filterbank",
    "mfcc_matrix",
]

#: Added before every logarithm, so silence maps to ``log(1e-6) ≈ -13.8`` instead of ``-inf``.
LOG_FLOOR = 1e-6


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> Tensor:
    """Slaney-style mel filterbank as librosa's ``filters.mel`` defaults build it.

    Returns:
        ``(n_fft // 2 + 1, n_mels)`` weights: ``power @ fbanks`` gives band powers.
    """
    from torchaudio.functional import melscale_fbanks

    return melscale_fbanks(
        n_freqs=n_fft // 2 + 1,
        f_min=0.0,
        f_max=sample_rate / 2,
        n_mels=n_mels,
        sample_rate=sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )


def safe_log(x: Tensor, floor: float = LOG_FLOOR) -> Tensor:
    """``log(x + LOG_FLOOR)``: the one log every featurizer uses.

    Args:
        x: Non-negative magnitudes or powers, any shape.
        floor: The floor, :data:`LOG_FLOOR` (an argument so that TorchScript, which reads
            no module-level floats, takes it as a constant).

    Returns:
        The floored natural log, same shape.
    """
    return torch.log(x + floor)


def power_spectrum(spectrum: Tensor) -> Tensor:
    """``|X|²`` of a complex tensor as ``re² + im²`` (several times faster than ``abs()``)."""
    return spectrum.real.square() + spectrum.imag.square()


def fix_length(waveform: Tensor, num_samples: int) -> Tensor:
    """Zero-pad at the end or trim the last axis to exactly ``num_samples``.

    Args:
        waveform: ``(..., time)``.
        num_samples: Wanted length.

    Returns:
        ``(..., num_samples)``; the input itself when it already has that length.
    """
    length = waveform.shape[-1]
    if length > num_samples:
        return waveform[..., :num_samples]
    if length < num_samples:
        return F.pad(waveform, (0, num_samples - length))
    return waveform


def seconds_to_samples(seconds: float, sample_rate: int) -> int:
    """Window length in samples: ``round(seconds * sample_rate)``."""
    return int(round(seconds * sample_rate))


def check_int(name: str, value: object, minimum: int = 1) -> int:
    """Return ``value`` when it is an ``int >= minimum`` (bools refused), else ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_db(name: str, value: object) -> float:
    """Return ``value`` (a level difference in dB) as a positive finite float, else
    ConfigError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a positive number of dB, got {value!r}")
    if not 0 < value < math.inf:
        raise ConfigError(f"{name} must be a positive number of dB, got {value!r}")
    return float(value)


def mfcc_matrix(n_mfcc: int | None, n_mels: int | None) -> Tensor | None:
    """The ``(n_mels, n_mfcc)`` orthonormal DCT-II that turns log-mel bands into their first
    ``n_mfcc`` MFCCs (``bands @ matrix``), or None when ``n_mfcc`` is None; ConfigError when
    ``n_mfcc`` is not a positive integer at most ``n_mels``."""
    if n_mfcc is None:
        return None
    check_int("n_mfcc", n_mfcc)
    if n_mels is None or n_mfcc > n_mels:
        raise ConfigError(f"n_mfcc ({n_mfcc}) must be at most n_mels ({n_mels})")
    return create_dct(n_mfcc, n_mels, norm="ortho")


def check_seconds(value: object) -> float | None:
    """Return ``value`` as a positive finite float (or None), else ConfigError."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"seconds must be a positive number or None, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"seconds must be a positive number or None, got {value!r}")
    return float(value)


class Featurizer(nn.Module, abc.ABC):
    """Base class: holds the config dataclass and answers shape questions.

    Subclasses set ``name`` (the ``"name"`` key of their config dict), ``config_class``,
    ``uses_lengths`` (True when ``forward`` takes a ``lengths`` argument) and ``dtype`` (of
    the features, float32 unless set), and implement
    ``forward`` and ``output_shape``. Settings added after a featurizer first shipped are
    listed in ``optional_settings``: :meth:`to_config` leaves them out while they are None,
    so earlier runs keep their configs and their features' cache keys.
    """

    name: ClassVar[str]
    config_class: ClassVar[type]
    uses_lengths: ClassVar[bool] = False
    dtype: ClassVar[torch.dtype] = torch.float32  # dtype of the features
    optional_settings: ClassVar[tuple[str, ...]] = ()  # left out of to_config while None
    # TorchScript (audioar.deploy.export) compiles forward (and what it calls), not these
    # Python-side descriptions.
    __jit_unused_properties__: ClassVar[list[str]] = [
        "sample_rate",
        "num_samples",
        "feature_shape",
        "fixed_size",
    ]

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    @property
    def sample_rate(self) -> int:
        """The rate (Hz) the waveform must have; the loader resamples to it."""
        return self.config.sample_rate

    @property
    def num_samples(self) -> int | None:
        """Window length in samples when ``seconds`` is set (inputs are padded/trimmed)."""
        seconds = self.config.seconds
        return None if seconds is None else seconds_to_samples(seconds, self.sample_rate)

    def to_config(self) -> dict[str, Any]:
        """Plain JSON-able dict: ``{"name": ..., **constructor args}`` (without the
        ``optional_settings`` that are None)."""
        config = dataclasses.asdict(self.config)
        for key in self.optional_settings:
            if config[key] is None:
                del config[key]
        return {"name": self.name, **config}

    @abc.abstractmethod
    def output_shape(self, num_samples: int | None = None) -> tuple[int | None, ...]:
        """Shape of one clip's features (no batch axis).

        Args:
            num_samples: Length of the clip in samples, or None for "unknown".

        Returns:
            The shape; ``None`` marks an axis whose size depends on the clip length.
        """

    @property
    def feature_shape(self) -> tuple[int | None, ...]:
        """Shape of one clip's features for a clip of unknown length (see ``output_shape``)."""
        return self.output_shape(None)

    @property
    def fixed_size(self) -> bool:
        """True when every clip gives features of the same shape."""
        return None not in self.feature_shape

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in dataclasses.asdict(self.config).items())
