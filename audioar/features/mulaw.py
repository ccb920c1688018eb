"""μ-law companding: waveform -> integer codes (WaveNet's input) and back."""

from dataclasses import dataclass

import torch
from torch import Tensor

from audioar.errors import ConfigError
from audioar.features.base import Featurizer, check_int, check_seconds, fix_length

__all__ = ["MuLawConfig", "MuLaw"]


@dataclass
class MuLawConfig:
    """Settings of :class:`MuLaw`."""

    sample_rate: int = 8000  # Hz the waveform must have
    bits: int = 8  # codes are 0 .. 2**bits - 1 (8 bits: 256 classes, as in WaveNet)
    seconds: float | None = None  # pad/trim every clip to this length; None keeps its length

    def __post_init__(self) -> None:
        check_int("sample_rate", self.sample_rate)
        check_int("bits", self.bits)
        if self.bits > 16:
            raise ConfigError(f"bits must be between 1 and 16, got {self.bits}")
        self.seconds = check_seconds(self.seconds)


class MuLaw(Featurizer):
    """μ-law companding of a waveform in [-1, 1] to ``2**bits`` integer codes.

    ``y = sign(x) * log(1 + μ|x|) / log(1 + μ)`` with ``μ = 2**bits - 1``, then ``y`` is
    mapped from [-1, 1] to the integers ``0 .. μ`` by rounding. The arithmetic is exactly
    that of ``torchaudio.functional.mu_law_encoding`` / ``mu_law_decoding`` (same codes, same
    decoded values); unlike torchaudio, samples outside [-1, 1] are clipped first so every
    code is a valid class.

    Args:
        sample_rate: Rate in Hz the waveform must have. Default 8000.
        bits: Bits per code; ``2**bits`` classes. Default 8.
        seconds: When set, pad with silence / trim every clip to this many seconds.
            Default None (keep the clip's length).

    Shapes:
        waveform ``(time,)`` or ``(batch, time)`` float -> codes of the same shape (``time``
        replaced by the window length when ``seconds`` is set), ``torch.int64``.

    References:
        ITU-T G.711 (1988); van den Oord et al., "WaveNet: A Generative Model for Raw
        Audio" (2016), section 2.2.

    Example:
        >>> mulaw = MuLaw(sample_rate=8000, bits=8)
        >>> codes = mulaw(torch.zeros(2, 100))  # (2, 100), all 128
        >>> waveform = mulaw.decode(codes)
    """

    name = "mulaw"
    config_class = MuLawConfig
    dtype = torch.int64

    def __init__(
        self, sample_rate: int = 8000, bits: int = 8, seconds: float | None = None
    ) -> None:
        super().__init__(MuLawConfig(sample_rate=sample_rate, bits=bits, seconds=seconds))

    @property
    def quantization_channels(self) -> int:
        """Number of codes, ``2**bits``."""
        return 2**self.config.bits

    def forward(self, waveform: Tensor) -> Tensor:
        """Encode.

        Args:
            waveform: ``(time,)`` or ``(batch, time)`` float samples in [-1, 1].

        Returns:
            Codes ``(time,)`` or ``(batch, time)``, ``torch.int64`` in ``0 .. 2**bits - 1``.
        """
        x = waveform if waveform.is_floating_point() else waveform.float()
        if self.num_samples is not None:
            x = fix_length(x, self.num_samples)
        x = x.clamp(-1.0, 1.0)
        mu = torch.tensor(self.quantization_channels - 1.0, dtype=x.dtype, device=x.device)
        y = torch.sign(x) * torch.log1p(mu * torch.abs(x)) / torch.log1p(mu)
        return ((y + 1) / 2 * mu + 0.5).to(torch.int64)

    def decode(self, codes: Tensor) -> Tensor:
        """Decode codes back to a waveform (the centre of each code's interval).

        Args:
            codes: ``(time,)`` or ``(batch, time)`` integers in ``0 .. 2**bits - 1``.

        Returns:
            Waveform of the same shape, float32 in [-1, 1].
        """
        y = codes if codes.is_floating_point() else codes.to(torch.float32)
        mu = torch.tensor(self.quantization_channels - 1.0, dtype=y.dtype, device=y.device)
        x = (y / mu) * 2 - 1.0
        return torch.sign(x) * (torch.exp(torch.abs(x) * torch.log1p(mu)) - 1.0) / mu

    def output_shape(self, num_samples: int | None = None) -> tuple[int | None, ...]:
        """``(window,)`` when ``seconds`` is set, else ``(num_samples,)``."""
        return (self.num_samples if self.num_samples is not None else num_samples,)
