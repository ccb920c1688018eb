"""Short-time spectra: log-magnitude (or log-mel) frames ``(batch, time, bins)``.

Optionally normalised per clip (``cmvn``): each bin's mean over the clip's frames is
subtracted (cepstral-mean-normalisation style), and with ``"meanvar"`` each bin is also
divided by its standard deviation over the clip. A fixed gain or a fixed channel/speaker
colouring is a per-bin offset of log frames, so it cancels.

Optionally as MFCCs (``n_mfcc``): the first DCT-II coefficients of each log-mel frame, the
smooth spectral envelope without the pitch harmonics (what differs most between speakers).

Optionally with normalised timing (before ``cmvn``): ``trim_db`` keeps each clip's frames
from the first to the last within that many dB of its loudest frame, and ``stretch_frames``
resamples them to that many frames (every clip the same length, whatever its tempo); see
:mod:`audioar.features.timing`.
"""

from dataclasses import dataclass

import torch
from torch import Tensor

from audioar.errors import ConfigError
from audioar.features.base import (
    LOG_FLOOR,
    Featurizer,
    check_db,
    check_int,
    check_seconds,
    fix_length,
    mel_filterbank,
    mfcc_matrix,
    power_spectrum,
    safe_log,
)
from audioar.features.timing import normalize_timing

__all__ = ["CMVN_MODES", "STFTConfig", "STFT", "check_cmvn", "clip_normalize"]

#: Values of ``STFTConfig.cmvn``: none, per-bin mean, per-bin mean and standard deviation.
CMVN_MODES = ("none", "mean", "meanvar")
#: Floor under a bin's per-clip standard deviation (``cmvn="meanvar"``), in log units.
MIN_CLIP_STD = 1e-3


@dataclass
class STFTConfig:
    """Settings of :class:`STFT`. ``hop_length``/``win_length`` are stored resolved."""

    sample_rate: int = 8000  # Hz the waveform must have
    n_fft: int = 256  # FFT size; n_fft // 2 + 1 linear bins
    hop_length: int | None = None  # samples between frames; None -> n_fft // 4 (librosa's)
    win_length: int | None = None  # Hann window length (<= n_fft); None -> n_fft
    n_mels: int | None = None  # mel bands (Slaney scale and norm, as librosa); None: linear
    power: float = 1.0  # 1.0: magnitude, 2.0: power (librosa's melspectrogram uses 2.0)
    log: bool = True  # log(x + 1e-6) of the (mel) magnitudes
    seconds: float | None = None  # pad/trim every clip to this length; None keeps its length
    flatten: bool = False  # (time * bins,) per clip; needs seconds or stretch_frames
    cmvn: str = "none"  # per-clip normalisation of each bin: none | mean | meanvar
    trim_db: float | None = None  # keep the frames within this many dB of the loudest
    stretch_frames: int | None = None  # resample each clip's frames to this many
    n_mfcc: int | None = None  # keep this many DCT-II coefficients of each log-mel frame

    def __post_init__(self) -> None:
        check_int("sample_rate", self.sample_rate)
        check_int("n_fft", self.n_fft, minimum=2)
        if self.win_length is None:
            self.win_length = self.n_fft
        check_int("win_length", self.win_length)
        if self.win_length > self.n_fft:
            raise ConfigError(f"win_length ({self.win_length}) must be <= n_fft ({self.n_fft})")
        if self.hop_length is None:
            self.hop_length = max(1, self.win_length // 4)
        check_int("hop_length", self.hop_length)
        if self.n_mels is not None:
            check_int("n_mels", self.n_mels)
        if isinstance(self.power, bool) or not isinstance(self.power, (int, float)):
            raise ConfigError(f"power must be a positive number, got {self.power!r}")
        if self.power <= 0:
            raise ConfigError(f"power must be a positive number, got {self.power!r}")
        self.power = float(self.power)
        if not isinstance(self.log, bool) or not isinstance(self.flatten, bool):
            raise ConfigError("log and flatten must be true or false")
        self.seconds = check_seconds(self.seconds)
        if self.stretch_frames is not None:
            check_int("stretch_frames", self.stretch_frames)
        if self.flatten and self.seconds is None and self.stretch_frames is None:
            raise ConfigError(
                "flatten=True needs seconds or stretch_frames (a fixed number of frames)"
            )
        if self.trim_db is not None:
            self.trim_db = check_db("trim_db", self.trim_db)
            if self.stretch_frames is None:
                raise ConfigError(
                    "trim_db needs stretch_frames (trimmed clips are resampled to one length)"
                )
        if self.n_mfcc is not None:
            if self.n_mels is None or not self.log:
                raise ConfigError("n_mfcc needs log-mel frames (n_mels set and log=True)")
            mfcc_matrix(self.n_mfcc, self.n_mels)
        check_cmvn(self.cmvn)


def check_cmvn(mode: str) -> str:
    """``mode`` if it is one of :data:`CMVN_MODES`, else :class:`ConfigError`."""
    if mode not in CMVN_MODES:
        raise ConfigError(f"cmvn must be one of {', '.join(CMVN_MODES)}, got {mode!r}")
    return mode


def clip_normalize(frames: Tensor, mode: str, num_frames: Tensor | None = None) -> Tensor:
    """Normalise each clip's frames per bin with the statistics of its own valid frames.

    Args:
        frames: ``(batch, time, bins)`` frames (e.g. log-mel).
        mode: ``"none"`` (returned as is), ``"mean"`` (subtract each bin's mean over the
            clip) or ``"meanvar"`` (also divide by each bin's standard deviation over the
            clip, population formula, floored at ``MIN_CLIP_STD``).
        num_frames: ``(batch,)`` valid frames per clip; frames at or beyond it are padding:
            they do not enter the statistics and come out as 0. Default None: all valid.

    Returns:
        ``(batch, time, bins)``, same dtype.

    Example:
        >>> x = torch.randn(2, 5, 3)
        >>> clip_normalize(x + 7.0, "mean").allclose(clip_normalize(x, "mean"), atol=1e-5)
        True
    """
    if mode == "none":
        return frames
    check_cmvn(mode)
    batch, time = frames.shape[:2]
    if num_frames is None:
        valid = frames.new_ones(batch, time, 1)
    else:
        steps = torch.arange(time, device=frames.device)
        valid = (steps < num_frames.to(frames.device)[:, None]).to(frames.dtype).unsqueeze(-1)
    count = valid.sum(dim=1, keepdim=True).clamp_min(1.0)  # (batch, 1, 1)
    mean = (frames * valid).sum(dim=1, keepdim=True) / count
    out = (frames - mean) * valid
    if mode == "meanvar":
        std = (out.square().sum(dim=1, keepdim=True) / count).sqrt().clamp_min(MIN_CLIP_STD)
        out = out / std
    return out


class STFT(Featurizer):
    """Log-magnitude (or log-mel) spectrogram frames.

    The frames are those of ``librosa.stft`` with its defaults: a periodic Hann window of
    ``win_length`` centred in ``n_fft``, ``center=True`` with zero padding of ``n_fft // 2``
    on both sides, so a clip of ``L`` samples gives ``1 + L // hop_length`` frames. Values are
    ``|X| ** power``, optionally projected on a Slaney mel filterbank (librosa's
    ``filters.mel`` defaults), then ``log(x + 1e-6)`` when ``log``.

    Args:
        sample_rate: Rate in Hz the waveform must have. Default 8000.
        n_fft: FFT size. Default 256 (32 ms at 8 kHz); ``n_fft // 2 + 1`` linear bins.
        hop_length: Samples between frames. Default None: ``win_length // 4`` (as librosa).
        n_mels: Number of mel bands; None (default) keeps the linear bins.
        log: Take ``log(x + 1e-6)``. Default True.
        seconds: Pad with silence / trim every clip to this many seconds first, giving a
            fixed number of frames. Default None (keep the clip's length).
        flatten: Return each clip's frames flattened to ``(time * bins,)`` (the input of the
            original experiment); needs ``seconds``. Default False.
        win_length: Hann window length, at most ``n_fft``. Default None: ``n_fft``.
        power: Exponent of the magnitude: 1.0 (default) magnitude, 2.0 power.
        cmvn: Per-clip normalisation of each bin over the clip's frames (after the log):
            ``"none"`` (default), ``"mean"`` (subtract the clip's mean per bin) or
            ``"meanvar"`` (also divide by the clip's standard deviation per bin); see
            :func:`clip_normalize`. With ``seconds``, the padding is part of the clip.
        trim_db: Drop each clip's leading and trailing frames more than this many dB below
            its loudest frame (frame power summed over the linear bins). Needs
            ``stretch_frames``. Default None: keep them.
        stretch_frames: Resample each clip's (trimmed) frames linearly to this many frames,
            so every clip has the same length whatever its tempo. Default None.
        n_mfcc: Keep the first ``n_mfcc`` coefficients of the orthonormal DCT-II of each
            log-mel frame (MFCCs); needs ``n_mels``. Default None: the log-mel bands.

    Shapes:
        waveform ``(time,)`` or ``(batch, time)``, lengths ``(batch,)`` -> ``(frames, bins)`` or
        ``(batch, frames, bins)``; flattened: ``(frames * bins,)`` or
        ``(batch, frames * bins)``. ``bins`` is ``n_mfcc``, ``n_mels`` or ``n_fft // 2 + 1``.

    Example:
        >>> stft = STFT(sample_rate=8000, n_fft=256, n_mels=40, seconds=1.0)
        >>> stft(torch.zeros(3, 8000)).shape
        torch.Size([3, 126, 40])
    """

    name = "stft"
    config_class = STFTConfig
    uses_lengths = True
    optional_settings = ("trim_db", "stretch_frames", "n_mfcc")

    def __init__(
        self,
        sample_rate: int = 8000,
        n_fft: int = 256,
        hop_length: int | None = None,
        n_mels: int | None = None,
        log: bool = True,
        seconds: float | None = None,
        flatten: bool = False,
        win_length: int | None = None,
        power: float = 1.0,
        cmvn: str = "none",
        trim_db: float | None = None,
        stretch_frames: int | None = None,
        n_mfcc: int | None = None,
    ) -> None:
        config = STFTConfig(
            sample_rate=sample_rate,
            n_fft=n_fft,
            hop_length=hop_length,
            win_length=win_length,
            n_mels=n_mels,
            power=power,
            log=log,
            seconds=seconds,
            flatten=flatten,
            cmvn=cmvn,
            trim_db=trim_db,
            stretch_frames=stretch_frames,
            n_mfcc=n_mfcc,
        )
        super().__init__(config)
        self.register_buffer("window", torch.hann_window(config.win_length), persistent=False)
        if config.n_mels is not None:
            fbanks = mel_filterbank(config.sample_rate, config.n_fft, config.n_mels)
            self.register_buffer("mel_fbanks", fbanks.T.contiguous(), persistent=False)
        else:
            self.mel_fbanks = None
        # (n_mels, n_mfcc), or None: log-mel bands
        self.register_buffer("dct", mfcc_matrix(config.n_mfcc, config.n_mels), persistent=False)

    @property
    def num_bins(self) -> int:
        """Bins per frame: ``n_mfcc``, ``n_mels`` or ``n_fft // 2 + 1``."""
        return self.config.n_mfcc or self.config.n_mels or self.config.n_fft // 2 + 1

    def num_frames(self, num_samples: int) -> int:
        """Frames for a clip of ``num_samples`` samples (after pad/trim): ``1 + L // hop``, or
        ``stretch_frames`` when set."""
        if self.config.stretch_frames is not None:
            return self.config.stretch_frames
        if self.num_samples is not None:
            num_samples = self.num_samples
        return 1 + num_samples // self.config.hop_length

    def forward(self, waveform: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Compute the frames.

        Args:
            waveform: ``(time,)`` or ``(batch, time)`` float samples, each clip starting at
                sample 0 and zero-padded at the end.
            lengths: Optional ``(batch,)`` (or scalar for an unbatched clip) real lengths in
                samples. ``cmvn``, ``trim_db`` and ``stretch_frames`` use them: they see the
                clip's own ``1 + length // hop_length`` frames, and the frames beyond are 0.
                Ignored with ``seconds`` (the window is the clip). Default None: all of it
                is real.

        Returns:
            ``(frames, bins)`` / ``(batch, frames, bins)``, or flattened (see class doc).
        """
        c = self.config
        x = waveform.float()
        if self.num_samples is not None:
            x = fix_length(x, self.num_samples)
        unbatched = x.dim() == 1
        if unbatched:
            x = x.unsqueeze(0)
        spec = power_spectrum(
            torch.stft(
                x,
                n_fft=c.n_fft,
                hop_length=c.hop_length,
                win_length=c.win_length,
                window=self.window,
                center=True,
                pad_mode="constant",
                return_complex=True,
            )
        )  # |X|², (batch, freqs, frames)
        level_db = None  # frame levels, for trimming only
        if c.trim_db is not None:
            level_db = 10.0 * torch.log10(spec.sum(dim=1) + LOG_FLOOR)  # (batch, frames)
        if c.power == 1.0:
            spec = spec.sqrt()
        elif c.power != 2.0:
            spec = spec.pow(c.power / 2)
        if self.mel_fbanks is not None:
            spec = torch.matmul(self.mel_fbanks, spec)  # (batch, mels, frames)
        if c.log:
            spec = safe_log(spec)
        frames = spec.transpose(1, 2)  # (batch, frames, bins)
        if self.dct is not None:
            frames = frames @ self.dct  # (batch, frames, n_mfcc)
        counts = None
        if lengths is not None and self.num_samples is None:
            real = torch.as_tensor(lengths, device=x.device).reshape(-1)
            counts = 1 + real.clamp(max=x.shape[-1]) // c.hop_length
        if c.stretch_frames is not None:
            if counts is None:
                counts = torch.full((len(frames),), frames.shape[1], device=x.device)
            frames, counts = normalize_timing(frames, level_db, counts, c.trim_db, c.stretch_frames)
        if c.cmvn != "none":
            frames = clip_normalize(frames, c.cmvn, counts)
        if c.flatten:
            frames = frames.reshape(frames.shape[0], -1)
        else:
            frames = frames.contiguous()
        return frames[0] if unbatched else frames

    def output_shape(self, num_samples: int | None = None) -> tuple[int | None, ...]:
        """``(frames, bins)`` (``frames`` None when unknown) or ``(frames * bins,)``."""
        length = self.num_samples if self.num_samples is not None else num_samples
        frames = self.config.stretch_frames
        if frames is None and length is not None:
            frames = self.num_frames(length)
        if self.config.flatten:
            return (frames * self.num_bins,)
        return (frames, self.num_bins)
