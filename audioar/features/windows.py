"""Long recordings as a sequence of fixed-length windows, each featurized on its own.

:class:`Windowed` wraps any featurizer that gives a fixed shape for one window and cuts the
waveform into windows of ``window_seconds`` every ``hop_seconds``; a clip's features are
``(windows, *inner_shape)``. The windowing rule (see :func:`audioar.data.io.window_count`): a clip
of ``n`` samples has ``1 if n <= window else 1 + (n - window) // hop`` windows starting at
``i * hop``; the tail shorter than a hop is dropped, and a clip shorter than the window is one
window of the clip itself (zero-padded, its real length given to the inner featurizer).

In memory (``forward``) the windows are an ``unfold`` of the padded batch; for files,
:func:`audioar.features.extract` streams them (:func:`audioar.data.io.iter_windows`), so memory
stays flat in the recording's length.
"""

import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from audioar.data.io import window_count
from audioar.errors import ConfigError
from audioar.features.base import Featurizer, seconds_to_samples

__all__ = ["WINDOW_KEYS", "WindowsConfig", "Windowed"]

#: Keys that :meth:`Windowed.to_config` adds to the inner featurizer's config.
WINDOW_KEYS = ("window_seconds", "hop_seconds")


def _check_positive_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


@dataclass
class WindowsConfig:
    """Settings of :class:`Windowed` (the inner featurizer keeps its own config)."""

    window_seconds: float = 1.0  # window length; round(window_seconds * sample_rate) samples
    hop_seconds: float | None = None  # window step (<= window_seconds); None: no overlap

    def __post_init__(self) -> None:
        self.window_seconds = _check_positive_seconds("window_seconds", self.window_seconds)
        if self.hop_seconds is None:
            self.hop_seconds = self.window_seconds
        self.hop_seconds = _check_positive_seconds("hop_seconds", self.hop_seconds)
        if self.hop_seconds > self.window_seconds:
            raise ConfigError(
                f"hop_seconds ({self.hop_seconds}) must be <= window_seconds "
                f"({self.window_seconds}): windows may overlap but not leave gaps"
            )


class Windowed(Featurizer):
    """Cut each clip into fixed-length windows and featurize every window with ``inner``.

    Windows are ``window = round(window_seconds * sample_rate)`` samples long and start every
    ``hop = round(hop_seconds * sample_rate)`` samples. A clip of ``n`` samples gives
    ``count(n) = 1 if n <= window else 1 + (n - window) // hop`` windows (the tail shorter
    than a hop is dropped); a clip shorter than the window is one window of the clip itself,
    zero-padded, and the inner featurizer is told its real length when it uses lengths. In a
    batch with ``lengths`` each clip gets ``count(length)`` windows; the rows beyond are
    padding, filled with zeros (``featurize_waveforms`` trims them through
    :meth:`output_shape`).

    The inner featurizer must give one fixed shape per window and must not pad/trim to a
    length of its own (``seconds`` None, or equal to the window). ``to_config()`` is the inner
    config plus ``window_seconds`` and ``hop_seconds``, so ``featurizer_from_config`` rebuilds
    the pair and the feature cache keys on the window settings too.

    Args:
        inner: The featurizer applied to each window, e.g. ``WholeWindowFFT(seconds=None)``.
        window_seconds: Window length in seconds.
        hop_seconds: Step between window starts, at most ``window_seconds``. Default None:
            ``window_seconds`` (no overlap).

    Shapes:
        waveform ``(time,)`` or ``(batch, time)``, lengths ``(batch,)`` ->
        ``(windows, *inner_shape)`` or ``(batch, windows, *inner_shape)``, with
        ``windows = count(time)`` and ``inner_shape = inner.output_shape(window)``.

    Raises:
        ConfigError: Bad window/hop (not positive, hop longer than the window, less than one
            sample), or an inner featurizer that cannot be windowed.

    Example:
        >>> from audioar.features import WholeWindowFFT
        >>> win = Windowed(WholeWindowFFT(sample_rate=8000, seconds=None), 1.0, 0.5)
        >>> win(torch.randn(2, 20000), lengths=torch.tensor([20000, 13000])).shape
        torch.Size([2, 4, 257])
        >>> win.count(20000), win.count(13000), win.window_times(2).tolist()
        (4, 2, [[0.0, 1.0], [0.5, 1.5]])
    """

    name = "windowed"  # to_config() keeps the inner featurizer's name
    config_class = WindowsConfig
    uses_lengths = True

    # TorchScript compiles forward (and what it calls), not these Python-side descriptions.
    __jit_unused_properties__ = [
        "sample_rate",
        "num_samples",
        "window_samples",
        "hop_samples",
        "window_seconds",
        "hop_seconds",
        "feature_shape",
        "fixed_size",
    ]

    _window: Final[int]
    _hop: Final[int]
    _inner_lengths: Final[bool]

    def __init__(
        self, inner: Featurizer, window_seconds: float, hop_seconds: float | None = None
    ) -> None:
        if not isinstance(inner, Featurizer):
            raise ConfigError(f"inner must be a Featurizer, got {type(inner).__name__}")
        if isinstance(inner, Windowed):
            raise ConfigError("a Windowed featurizer cannot be windowed again")
        super().__init__(WindowsConfig(window_seconds=window_seconds, hop_seconds=hop_seconds))
        rate = inner.sample_rate
        window = seconds_to_samples(self.config.window_seconds, rate)
        hop = seconds_to_samples(self.config.hop_seconds, rate)
        if hop < 1:
            raise ConfigError(
                f"hop_seconds ({self.config.hop_seconds}) is less than one sample at {rate} Hz"
            )
        if inner.num_samples is not None and inner.num_samples != window:
            raise ConfigError(
                f"the inner featurizer {inner.name!r} pads/trims clips to its own seconds "
                f"({inner.num_samples} samples) but the window has {window}: set its seconds "
                "to None (or to window_seconds)"
            )
        shape = inner.output_shape(window)
        if None in shape:
            raise ConfigError(
                f"the inner featurizer {inner.name!r} gives no fixed shape for a {window}-sample "
                f"window ({shape}): windows of one clip must stack"
            )
        self.inner = inner
        self._window = window
        self._hop = hop
        self._inner_lengths = bool(inner.uses_lengths)
        self.dtype = inner.dtype  # type: ignore[misc]  # the features are the inner's
        self._inner_shape: tuple[int, ...] = tuple(int(s) for s in shape)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ description

    @property
    def sample_rate(self) -> int:
        """The inner featurizer's rate (Hz)."""
        return self.inner.sample_rate

    @property
    def num_samples(self) -> int | None:
        """Always None: clips of any length are accepted (and cut into windows)."""
        return None

    @property
    def window_samples(self) -> int:
        """Window length in samples, ``round(window_seconds * sample_rate)``."""
        return self._window

    @property
    def hop_samples(self) -> int:
        """Step between window starts in samples, ``round(hop_seconds * sample_rate)``."""
        return self._hop

    @property
    def window_seconds(self) -> float:
        """Window length in seconds, as configured."""
        return self.config.window_seconds

    @property
    def hop_seconds(self) -> float:
        """Window step in seconds, as configured (resolved: never None)."""
        return self.config.hop_seconds

    def count(self, num_samples: int) -> int:
        """Windows in a clip of ``num_samples`` samples: ``1`` up to one window, else
        ``1 + (num_samples - window) // hop``."""
        return window_count(num_samples, self._window, self._hop)

    def window_times(self, count: int) -> np.ndarray:
        """Start and end (seconds) of the first ``count`` windows.

        Args:
            count: Number of windows, e.g. ``self.count(len(waveform))``.

        Returns:
            ``(count, 2)`` float64: ``[i * hop, i * hop + window] / sample_rate``. The one
            window of a clip shorter than the window ends at ``window / sample_rate`` too (the
            padded window).
        """
        starts = np.arange(count, dtype=np.int64) * self._hop
        return np.stack([starts, starts + self._window], axis=1) / float(self.sample_rate)

    def to_config(self) -> dict[str, Any]:
        """``{**inner.to_config(), "window_seconds": ..., "hop_seconds": ...}``."""
        return {
            **self.inner.to_config(),
            "window_seconds": self.window_seconds,
            "hop_seconds": self.hop_seconds,
        }

    def output_shape(self, num_samples: int | None = None) -> tuple[int | None, ...]:
        """``(count(num_samples), *inner.output_shape(window))``; ``(None, ...)`` when unknown."""
        windows = None if num_samples is None else self.count(num_samples)
        return (windows, *self._inner_shape)

    def extra_repr(self) -> str:
        return (
            f"window_seconds={self.window_seconds!r}, hop_seconds={self.hop_seconds!r}, "
            f"window={self._window}, hop={self._hop}"
        )

    # ------------------------------------------------------------------ computation

    def window_lengths(self, lengths: Tensor, num_windows: int) -> Tensor:
        """Real samples in each window: ``clamp(length - i * hop, 1, window)``.

        Args:
            lengths: ``(batch,)`` real clip lengths in samples.
            num_windows: Windows per clip in the padded batch.

        Returns:
            ``(batch, num_windows)`` int64; ``window`` for every counted window of a clip at
            least one window long, the clip's length for the one window of a shorter clip.
        """
        starts = torch.arange(num_windows, device=lengths.device, dtype=torch.int64) * self._hop
        real = lengths.to(torch.int64)[:, None] - starts[None, :]
        return real.clamp(1, self._window)

    def forward(self, waveform: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Cut the clips into windows and featurize every window.

        Args:
            waveform: ``(time,)`` or ``(batch, time)`` float samples at ``sample_rate``, each
                clip starting at sample 0 and zero-padded at the end.
            lengths: Optional ``(batch,)`` (or scalar for one clip) real lengths in samples.
                Default None: the whole row is real.

        Returns:
            ``(batch, windows, *inner_shape)`` (or ``(windows, *inner_shape)`` for one clip),
            ``windows = count(time)``; a clip's windows beyond ``count(length)`` are zeros.
        """
        x = waveform.float()
        unbatched = x.dim() == 1
        if unbatched:
            x = x.unsqueeze(0)
        batch, time = x.shape[0], x.shape[1]
        if lengths is None:
            real = torch.full((batch,), time, dtype=torch.int64, device=x.device)
        else:
            real = torch.as_tensor(lengths, device=x.device).reshape(-1).to(torch.int64)
            real = real.clamp(max=time)
        if time < self._window:
            x = F.pad(x, (0, self._window - time))
        frames = x.unfold(1, self._window, self._hop)  # (batch, windows, window), a view
        num_windows = frames.shape[1]
        flat = frames.reshape(batch * num_windows, self._window)  # copies only when overlapping
        if self._inner_lengths:
            out = self.inner(flat, lengths=self.window_lengths(real, num_windows).reshape(-1))
        else:
            out = self.inner(flat)
        out = out.reshape([batch, num_windows] + list(out.shape[1:]))
        # Windows beyond a clip's own count are padding: zero them (whatever the inner made).
        counts = torch.where(
            real <= self._window,
            torch.ones_like(real),
            1 + torch.div(real - self._window, self._hop, rounding_mode="floor"),
        )
        used = torch.arange(num_windows, device=x.device)[None, :] < counts[:, None]
        out = out * used.reshape([batch, num_windows] + [1] * (out.dim() - 2)).to(out.dtype)
        return out[0] if unbatched else out
