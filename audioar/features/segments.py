"""Log-mel spectrum of each of a few equal time segments of a clip (time-normalised)."""

from dataclasses import dataclass

import torch
from torch import Tensor

from audioar.errors import ConfigError
from audioar.features.base import (
    Featurizer,
    check_db,
    check_int,
    check_seconds,
    fix_length,
    mel_filterbank,
    mfcc_matrix,
)
from audioar.features.timing import active_ranges
from audioar.features.whole_window import welch_frame_counts

__all__ = ["SegmentsConfig", "SegmentSpectrum", "segment_weights"]

#: Floor under the (level-normalised) band powers before the log.
SEGMENT_LOG_FLOOR = 1e-10


@dataclass
class SegmentsConfig:
    """Settings of :class:`SegmentSpectrum`."""

    sample_rate: int = 8000  # Hz the waveform must have
    n_fft: int = 512  # frame / FFT size
    hop_length: int = 128  # samples between frames
    n_mels: int = 32  # mel bands per segment
    segments: int = 4  # equal-duration parts of the clip, each summarised by one spectrum
    normalize: bool = True  # divide by the clip's mean power (level/loudness invariance)
    seconds: float | None = None  # trim clips longer than this; None keeps the whole clip
    # per-clip normalisation of each mel band over the segments (log domain): none | mean
    # (subtract the band's mean over the clip's segments: a channel's or room's colouring,
    # a fixed gain per band, drops out, and so does the clip's average spectrum)
    cmvn: str = "none"
    # drop each clip's leading and trailing frames more than this many dB below its loudest
    # frame before segmenting (silence around the word); None keeps every frame
    trim_db: float | None = None
    # keep the first n_mfcc DCT-II coefficients of each segment's log-mel spectrum (MFCCs:
    # the smooth spectral envelope, without the pitch harmonics); None keeps the n_mels bands
    n_mfcc: int | None = None

    def __post_init__(self) -> None:
        mfcc_matrix(self.n_mfcc, self.n_mels)  # checks n_mfcc
        if self.trim_db is not None:
            self.trim_db = check_db("trim_db", self.trim_db)
        if self.cmvn not in ("none", "mean"):
            raise ConfigError(f"segments cmvn must be 'none' or 'mean', got {self.cmvn!r}")
        check_int("sample_rate", self.sample_rate)
        check_int("n_fft", self.n_fft, minimum=2)
        check_int("hop_length", self.hop_length)
        check_int("n_mels", self.n_mels)
        check_int("segments", self.segments)
        self.seconds = check_seconds(self.seconds)
        if self.n_mels > self.n_fft // 2 + 1:
            raise ConfigError(f"n_mels ({self.n_mels}) must be at most n_fft // 2 + 1")


def segment_weights(
    counts: Tensor, num_frames: int, segments: int, starts: Tensor | None = None
) -> Tensor:
    """Averaging weights that split each clip's used frames into equal segments.

    Clip ``b`` uses ``c = counts[b]`` frames from ``starts[b]`` (0 by default); segment ``s``
    averages the used frames ``floor(s * c / S) .. max(floor((s + 1) * c / S), floor(s * c /
    S) + 1) - 1`` (counted from the start, clipped to the used frames), so every segment gets
    at least one frame even when ``c < S``.

    Args:
        counts: ``(batch,)`` used frames per clip, at least 1.
        num_frames: Frames in the padded batch.
        segments: ``S``.
        starts: Optional ``(batch,)`` first used frame per clip. Default None: frame 0.

    Returns:
        ``(batch, num_frames, segments)`` weights; each segment's column sums to 1.
    """
    c = counts.to(torch.int64)[:, None]  # (batch, 1)
    s = torch.arange(segments, device=counts.device)[None, :]  # (1, S)
    start = torch.div(s * c, segments, rounding_mode="floor").clamp(max=c - 1)
    end = torch.maximum(torch.div((s + 1) * c, segments, rounding_mode="floor"), start + 1)
    k = torch.arange(num_frames, device=counts.device)[None, :, None]  # (1, frames, 1)
    if starts is not None:  # count frames from each clip's start
        k = k - starts.to(device=counts.device, dtype=torch.int64)[:, None, None]
    inside = (k >= start[:, None, :]) & (k < end[:, None, :])
    weights = inside.to(torch.float32)
    return weights / weights.sum(dim=1, keepdim=True)


class SegmentSpectrum(Featurizer):
    """A clip as ``segments`` log-mel spectra: a whole-window spectrum with coarse timing.

    The clip is cut into ``n_fft``-sample frames every ``hop_length`` samples (only frames
    lying wholly inside the real signal, as in :class:`WholeWindowFFT`'s Welch mode), each
    frame's Hann-windowed power spectrum is projected on ``n_mels`` mel bands, the frames
    are split into ``segments`` equal parts of the clip's own duration (so a slow and a fast
    speaker line up), and each part's mean band power is kept. With ``normalize`` every
    value is divided by the clip's mean total power first, so loudness drops out and only
    the spectral shape and its evolution remain. Output: ``log(power + 1e-10)``, segment
    major, ``(segments * n_mels,)`` per clip.

    Why: a whole-window spectrum cannot tell "zero" from a word with the same sounds in
    another order, and its 257 bins give a density model far more dimensions than a few
    hundred clips can fill. On FSDD (zero vs the other digits, the data set's own split) a
    5-flow MAF scores AUC 0.90 on the 257-bin Welch spectrum and 0.99 on this feature with
    4 x 32 values.

    Args:
        sample_rate: Rate in Hz the waveform must have. Default 8000.
        n_fft: Frame / FFT size. Default 512.
        hop_length: Frame step. Default 128.
        n_mels: Mel bands (Slaney scale and norm, as librosa). Default 32.
        segments: Equal-duration parts per clip. Default 4.
        normalize: Level-normalise each clip. Default True.
        seconds: Trim clips longer than this (no padding is ever averaged). Default None.
        cmvn: ``"mean"`` subtracts each mel band's mean over the segments (log domain), so a
            fixed per-band gain (microphone, room) cancels; default ``"none"``.
        trim_db: Segment only the clip's frames from the first to the last within this many
            dB of its loudest frame (total power), so the silence around a word does not
            take up segments (corpora trim their clips differently). Default None: every
            frame.

    Shapes:
        waveform ``(time,)`` or ``(batch, time)``, lengths ``(batch,)`` ->
        ``(segments * n_mels,)`` or ``(batch, segments * n_mels)``.

    Example:
        >>> seg = SegmentSpectrum(sample_rate=8000)
        >>> seg(torch.randn(2, 4000), lengths=torch.tensor([4000, 2500])).shape
        torch.Size([2, 128])
    """

    name = "segments"
    config_class = SegmentsConfig
    uses_lengths = True
    optional_settings = ("trim_db", "n_mfcc")

    def __init__(
        self,
        sample_rate: int = 8000,
        n_fft: int = 512,
        hop_length: int = 128,
        n_mels: int = 32,
        segments: int = 4,
        normalize: bool = True,
        seconds: float | None = None,
        cmvn: str = "none",
        trim_db: float | None = None,
        n_mfcc: int | None = None,
    ) -> None:
        config = SegmentsConfig(
            sample_rate=sample_rate,
            n_fft=n_fft,
            hop_length=hop_length,
            n_mels=n_mels,
            segments=segments,
            normalize=normalize,
            seconds=seconds,
            cmvn=cmvn,
            trim_db=trim_db,
            n_mfcc=n_mfcc,
        )
        super().__init__(config)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        fbanks = mel_filterbank(sample_rate, n_fft, n_mels)  # (freqs, mels)
        self.register_buffer("mel_fbanks", fbanks, persistent=False)
        # (n_mels, n_mfcc), or None: log-mel bands
        self.register_buffer("dct", mfcc_matrix(n_mfcc, n_mels), persistent=False)
        # The settings forward reads, as plain attributes: TorchScript (audioar.deploy.export)
        # compiles forward and cannot read the config dataclass.
        c = self.config
        self._n_fft, self._hop_length, self._segments = c.n_fft, c.hop_length, c.segments
        self._normalize, self._cmvn, self._trim_db = c.normalize, c.cmvn, c.trim_db
        self._num_samples, self._log_floor = self.num_samples, SEGMENT_LOG_FLOOR

    def forward(self, waveform: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Compute the segment spectra.

        Args:
            waveform: ``(time,)`` or ``(batch, time)`` float samples, each clip starting at
                sample 0 and zero-padded at the end.
            lengths: Optional ``(batch,)`` real lengths in samples. Default None: the whole
                row is real.

        Returns:
            ``(segments * n_mels,)`` or ``(batch, segments * n_mels)`` log band powers.
        """
        n_fft, hop_length, num_samples = self._n_fft, self._hop_length, self._num_samples
        trim_db = self._trim_db
        x = waveform.float()
        unbatched = x.dim() == 1
        if unbatched:
            x = x.unsqueeze(0)
        if lengths is None:
            lengths = torch.full((x.shape[0],), x.shape[-1], device=x.device)
        lengths = torch.as_tensor(lengths, device=x.device).reshape(-1)
        if num_samples is not None:
            x = x[:, :num_samples]
            lengths = lengths.clamp(max=num_samples)
        if x.shape[-1] < n_fft:
            x = fix_length(x, n_fft)
        frames = x.unfold(-1, n_fft, hop_length)  # (batch, frames, n_fft)
        power = torch.fft.rfft(frames * self.window).abs().pow(2)  # (batch, frames, freqs)
        bands = power @ self.mel_fbanks  # (batch, frames, n_mels)
        counts = welch_frame_counts(lengths, n_fft, hop_length, frames.shape[1])
        starts: Tensor | None = None
        if trim_db is not None:
            level_db = 10.0 * torch.log10(power.sum(dim=-1) + self._log_floor)  # (batch, frames)
            starts, stops = active_ranges(level_db, counts, trim_db)
            counts = stops - starts
        weights = segment_weights(counts, frames.shape[1], self._segments, starts)  # (b, f, S)
        out = torch.einsum("bfs,bfm->bsm", weights, bands)  # (batch, S, n_mels)
        if self._normalize:
            level = (out.sum(dim=-1) * (1.0 / self._segments)).sum(dim=-1)  # mean total power
            out = out / level.clamp_min(1e-12)[:, None, None]
        out = torch.log(out + self._log_floor)  # (batch, S, n_mels)
        if self.dct is not None:
            out = out @ self.dct  # (batch, S, n_mfcc)
        if self._cmvn == "mean":
            out = out - out.mean(dim=1, keepdim=True)
        out = out.flatten(1)
        return out[0] if unbatched else out

    def output_shape(self, num_samples: int | None = None) -> tuple[int | None, ...]:
        """Always ``(segments * n_mels,)``, or ``(segments * n_mfcc,)``."""
        return (self.config.segments * (self.config.n_mfcc or self.config.n_mels),)
