"""Reading audio clips: one float32 mono waveform per file, at the rate asked for.

Every way a file can be unusable (missing, a folder, not audio, empty, non-finite samples,
an encoding libsndfile cannot decode) ends in one :class:`AudioError` naming the file;
no soundfile/libsndfile exception escapes.
"""

from __future__ import annotations

import logging
import os
from typing import NamedTuple

import numpy as np
import soundfile as sf

from audioar.errors import AudioError, ConfigError

__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioError",
    "AudioInfo",
    "audio_info",
    "load_audio",
    "resample",
    "resample_reference",
]

logger = logging.getLogger(__name__)

#: File name endings read as audio by the data layer (compared lower-case).
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg")

# What soundfile raises for files it cannot open or decode. LibsndfileError is a
# RuntimeError; OSError/ValueError/EOFError cover unreadable paths and truncated data.
_READ_ERRORS = (sf.SoundFileError, RuntimeError, OSError, ValueError, EOFError)


class AudioInfo(NamedTuple):
    """What a file header says, without decoding the samples."""

    frames: int  # samples per channel
    sample_rate: int  # Hz
    channels: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _open_failure(path: str, exc: BaseException) -> AudioError:
    """Turn a soundfile failure into the AudioError that says what is wrong."""
    if not os.path.exists(path):
        return AudioError(path, "file not found")
    if os.path.isdir(path):
        return AudioError(path, "is a directory, not an audio file")
    detail = str(exc).replace(f"'{path}'", "").strip(" :") or type(exc).__name__
    return AudioError(path, f"not a readable audio file ({detail})")


def audio_info(path: str | os.PathLike[str]) -> AudioInfo:
    """Read a file's header: frame count, sample rate and channel count.

    Args:
        path: A WAV, FLAC or OGG file (anything libsndfile reads).

    Returns:
        An :class:`AudioInfo` ``(frames, sample_rate, channels)``.

    Raises:
        AudioError: The file is missing, a directory or not readable audio.

    Example:
        >>> audio_info("0_george_0.wav")  # doctest: +SKIP
        AudioInfo(frames=2928, sample_rate=8000, channels=1)
    """
    path = os.fspath(path)
    try:
        info = sf.info(path)
    except _READ_ERRORS as exc:
        raise _open_failure(path, exc) from None
    return AudioInfo(int(info.frames), int(info.samplerate), int(info.channels))


def resample(waveform: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling with soxr ("HQ" quality), called directly.

    This is the computation ``librosa.resample(res_type="soxr_hq")`` does (librosa's
    default; :func:`resample_reference` calls it), without librosa's per-call checks; the
    output is padded to librosa's length. Chosen over ``torchaudio.functional.resample``
    by measurement (``benchmarks/bench_io.py``, 1 s clips, 2 shared CPU cores, ms per clip):
    8 -> 16 kHz soxr 0.10-0.15, librosa 0.14-0.42, torchaudio 0.34-3.6; 8 -> 22.05 kHz soxr
    0.55-1.4, torchaudio 0.7-30 (torchaudio rebuilds its sinc kernel on every call and suffers
    most from busy cores). soxr also needs no torch import.

    Args:
        waveform: Samples, shape ``(time,)``, float32.
        orig_sr: Rate of ``waveform`` in Hz.
        target_sr: Rate wanted in Hz.

    Returns:
        The resampled waveform, shape ``(ceil(time * target_sr / orig_sr),)``, float32.
        The input itself when the two rates are equal.
    """
    if orig_sr == target_sr:
        return waveform
    import soxr  # librosa's resampling backend; imported on first use only

    out = soxr.resample(waveform, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)
    # soxr may be one sample short of ceil(time * ratio); pad like librosa so lengths agree.
    length = int(np.ceil(waveform.shape[-1] * target_sr / orig_sr))
    if out.shape[-1] < length:
        out = np.pad(out, (0, length - out.shape[-1]))
    return out[:length]


def resample_reference(waveform: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Plain reference for :func:`resample`: ``librosa.resample(res_type="soxr_hq")``.

    Args:
        waveform: Samples, shape ``(time,)``, float32.
        orig_sr: Rate of ``waveform`` in Hz.
        target_sr: Rate wanted in Hz.

    Returns:
        The resampled waveform, shape ``(ceil(time * target_sr / orig_sr),)``, float32.
    """
    import librosa

    out = librosa.resample(waveform, orig_sr=orig_sr, target_sr=target_sr, res_type="soxr_hq")
    return out.astype(np.float32, copy=False)


def load_audio(
    path: str | os.PathLike[str], sample_rate: int | None = None
) -> tuple[np.ndarray, int]:
    """Load one clip as a float32 mono waveform.

    Integer formats are scaled to ``[-1, 1]`` (int16 ``-32768`` reads as ``-1.0``); float
    files are kept as stored (not clipped). Several channels are mixed to mono by their
    mean. When ``sample_rate`` differs from the file's rate the clip is resampled with
    :func:`resample` (soxr, high quality); equal rates cost nothing.

    Args:
        path: A WAV, FLAC or OGG file (anything libsndfile reads).
        sample_rate: Rate wanted in Hz, or ``None`` (default) for the file's own rate.

    Returns:
        ``(waveform, rate)``: waveform of shape ``(time,)``, float32, and the rate it is
        at in Hz (``sample_rate`` when given, else the file's rate).

    Raises:
        AudioError: The file is missing, a directory, not audio (e.g. a text file named
            ``.wav``), undecodable, holds no samples, or holds NaN/inf samples.
        ConfigError: ``sample_rate`` is not a positive integer.

    Example:
        >>> waveform, rate = load_audio("0_george_0.wav", sample_rate=16000)  # doctest: +SKIP
        >>> waveform.shape, waveform.dtype, rate  # doctest: +SKIP
        ((5856,), dtype('float32'), 16000)
    """
    if sample_rate is not None and (
        isinstance(sample_rate, bool)
        or not isinstance(sample_rate, int | np.integer)
        or sample_rate <= 0
    ):
        raise ConfigError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")
    path = os.fspath(path)
    try:
        with sf.SoundFile(path) as f:
            rate = int(f.samplerate)
            data = f.read(dtype="float32", always_2d=False)
    except _READ_ERRORS as exc:
        raise _open_failure(path, exc) from None
    if data.ndim == 2:
        data = data.mean(axis=1, dtype=np.float32)
    if data.size == 0:
        raise AudioError(path, "contains no samples (zero-length audio)")
    if not np.isfinite(data).all():
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise AudioError(path, f"contains {bad} NaN/inf samples")
    if sample_rate is not None and sample_rate != rate:
        data = resample(data, rate, int(sample_rate))
        if data.size == 0:
            raise AudioError(path, f"too short to resample from {rate} Hz to {sample_rate} Hz")
        rate = int(sample_rate)
    return data, rate
