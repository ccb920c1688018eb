"""One log power spectrum per clip describing the whole window (Welch, or the blog's rfft)."""

from dataclasses import dataclass

import torch
from torch import Tensor

from audioar.errors import ConfigError
from audioar.features.base import (
    Featurizer,
    check_int,
    check_seconds,
    fix_length,
    power_spectrum,
    safe_log,
)

__all__ = ["FFTConfig", "WholeWindowFFT", "welch_frame_counts"]

MODES = ("welch", "blog")


@dataclass
class FFTConfig:
    """Settings of :class:`WholeWindowFFT`. ``hop_length`` is stored resolved."""

    sample_rate: int = 8000  # Hz the waveform must have
    n_fft: int = 512  # frame / FFT size; n_fft // 2 + 1 bins (257)
    seconds: float | None = 1.0  # pad/trim every clip to this length; None keeps its length
    mode: str = "welch"  # "welch" (average over frames) or "blog" (first n_fft samples only)
    hop_length: int | None = None  # Welch frame step; None -> n_fft // 2 (50 % overlap)

    def __post_init__(self) -> None:
        check_int("sample_rate", self.sample_rate)
        check_int("n_fft", self.n_fft, minimum=2)
        self.seconds = check_seconds(self.seconds)
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.hop_length is None:
            self.hop_length = self.n_fft // 2
        check_int("hop_length", self.hop_length)


def welch_frame_counts(lengths: Tensor, n_fft: int, hop_length: int, num_frames: int) -> Tensor:
    """How many leading frames of each clip the Welch average uses.

    Frame ``k`` covers samples ``k*hop .. k*hop + n_fft``; it is used when it lies wholly
    inside the real signal, ``k*hop + n_fft <= length``, and frame 0 is always used. So a
    padded clip gets exactly the frames it would have on its own, unpadded (a clip shorter
    than ``n_fft`` gets one zero-padded frame), and a clip that fills the window uses every
    frame.

    Args:
        lengths: ``(batch,)`` real lengths in samples.
        n_fft: Frame length.
        hop_length: Frame step.
        num_frames: Frames in the (padded) window.

    Returns:
        ``(batch,)`` int64 counts in ``1 .. num_frames``.
    """
    lengths = lengths.to(torch.int64)
    counts = 1 + torch.div(lengths - n_fft, hop_length, rounding_mode="floor")
    return counts.clamp(1, num_frames)


class WholeWindowFFT(Featurizer):
    """Log power spectrum of the whole clip: ``n_fft // 2 + 1`` values per clip.

    ``mode="welch"`` (default) is Welch's method: the clip (padded with silence / trimmed to
    ``seconds``) is cut into ``n_fft``-sample frames every ``hop_length`` samples (no centre
    padding), each frame is multiplied by a periodic Hann window ``w``, and
    ``|rfft(frame * w)|² / sum(w²)`` is averaged over frames; the result is
    ``log(psd + 1e-6)``. This is ``scipy.signal.welch(x, fs=1, window="hann",
    nperseg=n_fft, noverlap=n_fft - hop_length, detrend=False, return_onesided=False)``
    restricted to its first ``n_fft // 2 + 1`` bins.

    Short clips: averaging over the silent padding would scale the spectrum by the fraction of
    the window that is speech, adding ``log(fraction)`` to every bin, a duration/loudness
    confound (FSDD clips last 0.14-2.28 s). So when ``lengths`` is given, only the frames that
    lie wholly inside the real signal are averaged (at least one; see
    :func:`welch_frame_counts`): the result is the Welch spectrum of the clip itself (trimmed
    to ``seconds``), whatever the padding. :func:`audioar.features.extract` always passes the
    real lengths. Without ``lengths`` every frame of the window is averaged.

    ``mode="blog"`` reproduces the original blog experiment exactly, **including its bug**:
    it called ``tf.signal.rfft(frame, fft_length=[512])`` on frames longer than 512 samples,
    and an rfft with ``fft_length`` shorter than its input *crops* the input. The feature
    therefore only ever saw the first ``n_fft`` samples of each clip (64 ms at 8 kHz, 32 ms
    at 16 kHz), mostly the silence before the word: one reason the original result was poor.
    Here: the first ``n_fft`` samples of the padded window, no window function,
    ``log(|rfft|² + 1e-6)``. Use it only for comparison.

    Args:
        sample_rate: Rate in Hz the waveform must have. Default 8000.
        n_fft: Frame / FFT size. Default 512 (257 bins).
        seconds: Window length in seconds; clips are padded with silence or trimmed to it.
            Default 1.0. None keeps each clip's own length.
        mode: ``"welch"`` (default) or ``"blog"``.
        hop_length: Welch frame step. Default None: ``n_fft // 2`` (50 % overlap).

    Shapes:
        waveform ``(time,)`` or ``(batch, time)``, lengths ``(batch,)`` ->
        ``(bins,)`` or ``(batch, bins)`` with ``bins = n_fft // 2 + 1``.

    References:
        P. Welch, "The use of fast Fourier transform for the estimation of power spectra",
        IEEE Trans. Audio Electroacoustics 15(2), 1967.

    Example:
        >>> fft = WholeWindowFFT(sample_rate=8000, n_fft=512, seconds=1.0)
        >>> fft(torch.randn(4, 3000), lengths=torch.tensor([3000, 2000, 1500, 900])).shape
        torch.Size([4, 257])
    """

    name = "fft"
    config_class = FFTConfig
    uses_lengths = True

    def __init__(
        self,
        sample_rate: int = 8000,
        n_fft: int = 512,
        seconds: float | None = 1.0,
        mode: str = "welch",
        hop_length: int | None = None,
    ) -> None:
        config = FFTConfig(
            sample_rate=sample_rate, n_fft=n_fft, seconds=seconds, mode=mode, hop_length=hop_length
        )
        super().__init__(config)
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)
        # The settings forward reads, as plain attributes: TorchScript (audioar.deploy.export)
        # compiles forward and cannot read the config dataclass.
        self._n_fft, self._hop_length, self._blog = config.n_fft, config.hop_length, mode == "blog"
        self._num_samples = self.num_samples

    def forward(self, waveform: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Compute the spectrum.

        Args:
            waveform: ``(time,)`` or ``(batch, time)`` float samples, each clip starting at
                sample 0 and zero-padded at the end.
            lengths: Optional ``(batch,)`` (or scalar for an unbatched clip) real lengths in
                samples; Welch mode averages only the frames of the real signal. Ignored in
                blog mode. Default None: the whole (padded) window is real.

        Returns:
            ``(bins,)`` or ``(batch, bins)`` log power, ``bins = n_fft // 2 + 1``.
        """
        n_fft, num_samples = self._n_fft, self._num_samples
        x = waveform.float()
        unbatched = x.dim() == 1
        if unbatched:
            x = x.unsqueeze(0)
            if lengths is not None:
                lengths = torch.as_tensor(lengths).reshape(1)
        if num_samples is not None:
            x = fix_length(x, num_samples)
        if x.shape[-1] < n_fft:
            x = fix_length(x, n_fft)
        if self._blog:
            out = safe_log(power_spectrum(torch.fft.rfft(x[:, :n_fft])))
        else:
            out = safe_log(self._welch(x, lengths))
        return out[0] if unbatched else out

    def _welch(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        """Mean windowed periodogram over the used frames: ``(batch, time) -> (batch, bins)``."""
        n_fft, hop_length = self._n_fft, self._hop_length
        frames = x.unfold(-1, n_fft, hop_length)  # (batch, frames, n_fft), a view
        # Window scaled so that |rfft|² comes out already divided by sum(w²).
        window = self.window * self.window.pow(2).sum().rsqrt()
        power = power_spectrum(torch.fft.rfft(frames * window))  # (batch, frames, bins)
        if lengths is None:
            return power.mean(dim=1)
        num_frames = frames.shape[1]
        counts = welch_frame_counts(
            torch.as_tensor(lengths, device=x.device), n_fft, hop_length, num_frames
        )
        used = torch.arange(num_frames, device=x.device) < counts[:, None]
        weights = used.to(power.dtype) / counts[:, None].to(power.dtype)  # (batch, frames)
        return torch.bmm(weights.unsqueeze(1), power).squeeze(1)

    def output_shape(self, num_samples: int | None = None) -> tuple[int | None, ...]:
        """Always ``(n_fft // 2 + 1,)``."""
        return (self.config.n_fft // 2 + 1,)
