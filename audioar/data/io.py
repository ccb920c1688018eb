"""Reading audio clips: one float32 mono waveform per file, at the rate asked for.

Every way a file can be unusable (missing, a folder, not audio, empty, non-finite samples,
an encoding libsndfile cannot decode) ends in one :class:`AudioError` naming the file;
no soundfile/libsndfile exception escapes.

Long recordings can be read as a stream instead (:func:`stream_audio`: blocks, resampled
on the fly; :func:`audio_windows` / :func:`iter_windows`: fixed-length windows), keeping only
a few blocks in memory whatever the file's length.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import numpy as np
import soundfile as sf

from audioar.errors import AudioError, ConfigError

__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioError",
    "AudioInfo",
    "audio_info",
    "audio_windows",
    "iter_windows",
    "load_audio",
    "resample",
    "resample_reference",
    "stream_audio",
    "window_count",
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


def _check_rate(sample_rate: object) -> None:
    """ConfigError unless ``sample_rate`` is None or a positive integer."""
    if sample_rate is not None and (
        isinstance(sample_rate, bool)
        or not isinstance(sample_rate, int | np.integer)
        or sample_rate <= 0
    ):
        raise ConfigError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")


def _check_count(name: str, value: object) -> int:
    """``value`` as an int when it is a positive integer (bools refused), else ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _count_nonfinite(data: np.ndarray) -> int:
    return int(np.size(data) - np.count_nonzero(np.isfinite(data)))


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
    _check_rate(sample_rate)
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
        raise AudioError(path, f"contains {_count_nonfinite(data)} NaN/inf samples")
    if sample_rate is not None and sample_rate != rate:
        data = resample(data, rate, int(sample_rate))
        if data.size == 0:
            raise AudioError(path, f"too short to resample from {rate} Hz to {sample_rate} Hz")
        rate = int(sample_rate)
    return data, rate


#: Native-rate frames :func:`stream_audio` reads at a time by default (4.1 s at 16 kHz).
STREAM_BLOCK_SAMPLES = 65536


def stream_audio(
    path: str | os.PathLike[str],
    sample_rate: int | None = None,
    *,
    block_samples: int = STREAM_BLOCK_SAMPLES,
) -> Iterator[np.ndarray]:
    """Read a clip as consecutive float32 mono blocks, resampled on the fly.

    The file is read ``block_samples`` frames (at its own rate) at a time, mixed to mono like
    :func:`load_audio` and, when ``sample_rate`` differs from the file's rate, resampled by a
    ``soxr.ResampleStream`` of the quality :func:`resample` uses ("HQ"). The concatenated
    blocks are ``load_audio(path, sample_rate)[0]``: bit for bit at the file's rate, and with
    resampling too as measured with soxr 1.1 (the streaming and one-shot resamplers agree
    exactly); the resampled total is padded to ``load_audio``'s length,
    ``ceil(frames * sample_rate / file_rate)``. Only a block or two is in memory at a time.

    Resampled blocks come one block late (the last is held back to fix the total length) and
    vary in size; at the file's rate every block but the last has ``block_samples`` samples.

    Args:
        path: A WAV, FLAC or OGG file (anything libsndfile reads).
        sample_rate: Rate wanted in Hz, or ``None`` (default) for the file's own rate.
        block_samples: Frames read from the file at a time. Default 65536.

    Yields:
        ``(time,)`` float32 blocks at ``sample_rate``, at least one sample each.

    Raises:
        AudioError: While iterating: the same errors as :func:`load_audio` (missing file,
            directory, not audio, undecodable, no samples, NaN/inf samples; the NaN/inf count
            is the whole file's, as ``load_audio`` gives it). Blocks before a bad block have
            already been yielded.
        ConfigError: At the call: ``sample_rate`` or ``block_samples`` is not a positive
            integer.

    Example:
        >>> total = sum(len(b) for b in stream_audio("long.wav", 16000))  # doctest: +SKIP
    """
    _check_rate(sample_rate)
    block_samples = _check_count("block_samples", block_samples)
    return _stream(os.fspath(path), sample_rate, block_samples)


def _read_block(f: sf.SoundFile, path: str, frames: int) -> np.ndarray:
    """The next ``frames`` frames (fewer at the end) as float32 mono; AudioError on failure."""
    try:
        data = f.read(frames, dtype="float32", always_2d=False)
    except _READ_ERRORS as exc:
        raise _open_failure(path, exc) from None
    if data.ndim == 2:
        data = data.mean(axis=1, dtype=np.float32)
    return data


def _stream(path: str, sample_rate: int | None, block_samples: int) -> Iterator[np.ndarray]:
    try:
        f = sf.SoundFile(path)
    except _READ_ERRORS as exc:
        raise _open_failure(path, exc) from None
    with f:
        rate = int(f.samplerate)
        resampler = None
        if sample_rate is not None and sample_rate != rate:
            import soxr

            resampler = soxr.ResampleStream(
                rate, int(sample_rate), 1, dtype="float32", quality="HQ"
            )
        read = 0  # frames read at the file's rate
        emitted = 0  # samples yielded at the output rate
        held: np.ndarray | None = None  # the latest resampled block, not yet yielded
        while True:
            data = _read_block(f, path, block_samples)
            if data.size == 0:
                break
            if not np.isfinite(data).all():
                bad = _count_nonfinite(data)
                while (rest := _read_block(f, path, block_samples)).size:
                    bad += _count_nonfinite(rest)
                raise AudioError(path, f"contains {bad} NaN/inf samples")
            read += data.size
            if resampler is None:
                yield data
                continue
            out = resampler.resample_chunk(data)
            if out.size:
                if held is not None:
                    emitted += held.size
                    yield held
                held = out
        if read == 0:
            raise AudioError(path, "contains no samples (zero-length audio)")
        if resampler is None:
            return
        tail = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        last = tail if held is None else np.concatenate([held, tail])
        # load_audio's length (resample pads soxr's output to ceil(frames * ratio)).
        remaining = int(np.ceil(read * int(sample_rate) / rate)) - emitted
        if last.size < remaining:
            last = np.pad(last, (0, remaining - last.size))
        last = last[: max(remaining, 0)].astype(np.float32, copy=False)
        if last.size:
            yield last


def window_count(num_samples: int, window: int, hop: int) -> int:
    """Windows cut from a clip of ``num_samples`` samples: ``1`` when it is at most one window
    (a shorter clip is one zero-padded window), else ``1 + (num_samples - window) // hop``
    (the tail shorter than a hop is dropped). Window ``i`` starts at sample ``i * hop``."""
    if num_samples <= window:
        return 1
    return 1 + (num_samples - window) // hop


def _check_windows(window: int, hop: int, windows_per_block: int) -> tuple[int, int, int]:
    window = _check_count("window", window)
    hop = _check_count("hop", hop)
    if hop > window:
        raise ConfigError(f"hop ({hop}) must be <= window ({window})")
    return window, hop, _check_count("windows_per_block", windows_per_block)


def iter_windows(
    blocks: Iterable[np.ndarray], window: int, hop: int, *, windows_per_block: int = 64
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Cut a stream of sample blocks into consecutive windows, a few at a time.

    The windows are those of :func:`window_count` over the concatenated blocks: window ``i``
    is ``samples[i * hop : i * hop + window]``; a stream shorter than one window gives one
    window of it, zero-padded. At most ``(windows_per_block - 1) * hop + window`` samples plus
    one block are buffered.

    Args:
        blocks: Consecutive 1-D float32 sample blocks (e.g. :func:`stream_audio`).
        window: Window length in samples.
        hop: Step between window starts in samples, ``1 <= hop <= window``.
        windows_per_block: Windows per yielded array (the last may have fewer). Default 64.

    Yields:
        ``(windows, lengths)``: ``(k, window)`` float32 windows (a copy, contiguous) and
        ``(k,)`` int64 real samples in each (``window``, or the clip's length for the one
        window of a clip shorter than the window). Nothing for an empty stream.

    Raises:
        ConfigError: ``window``, ``hop`` or ``windows_per_block`` is not a positive integer,
            or ``hop > window``.
    """
    window, hop, per_block = _check_windows(window, hop, windows_per_block)
    return _iter_windows(blocks, window, hop, per_block)


def _iter_windows(
    blocks: Iterable[np.ndarray], window: int, hop: int, per_block: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    from numpy.lib.stride_tricks import sliding_window_view

    need = (per_block - 1) * hop + window  # samples spanned by one full array of windows
    full = np.full(per_block, window, dtype=np.int64)
    buffer = np.zeros(0, dtype=np.float32)  # starts at the next window's first sample
    total = 0
    for block in blocks:
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        total += block.size
        buffer = np.concatenate([buffer, block]) if buffer.size else block
        while buffer.size >= need:
            yield sliding_window_view(buffer[:need], window)[::hop].copy(), full
            buffer = buffer[per_block * hop :]
    if total == 0:
        return
    if total < window:  # the whole clip is one zero-padded window
        padded = np.zeros((1, window), dtype=np.float32)
        padded[0, :total] = buffer
        yield padded, np.array([total], dtype=np.int64)
    elif buffer.size >= window:
        windows = sliding_window_view(buffer, window)[::hop].copy()
        yield windows, np.full(len(windows), window, dtype=np.int64)


def audio_windows(
    path: str | os.PathLike[str],
    sample_rate: int,
    window: int,
    hop: int,
    *,
    windows_per_block: int = 64,
    block_samples: int | None = None,
) -> Iterator[np.ndarray]:
    """Stream a file's windows: :func:`iter_windows` over :func:`stream_audio`.

    The windows are exactly those ``Windowed.forward`` cuts from ``load_audio(path,
    sample_rate)[0]`` (including one zero-padded window for a clip shorter than the window),
    and memory holds O(``windows_per_block * window`` + ``block_samples``) samples whatever
    the file's length.

    Args:
        path: A WAV, FLAC or OGG file.
        sample_rate: Rate (Hz) of the windows; the file is resampled to it.
        window: Window length in samples (at ``sample_rate``).
        hop: Step between window starts in samples, ``1 <= hop <= window``.
        windows_per_block: Windows per yielded array. Default 64.
        block_samples: Frames read from the file at a time. Default None:
            ``windows_per_block * hop`` (at least 4096).

    Yields:
        ``(k, window)`` float32 arrays of consecutive windows, ``k <= windows_per_block``.
        Use :func:`iter_windows` directly for the real length of a short clip's window.

    Raises:
        AudioError: While iterating, as :func:`stream_audio`.
        ConfigError: At the call: bad rate, window, hop or block sizes.
    """
    window, hop, per_block = _check_windows(window, hop, windows_per_block)
    if block_samples is None:
        block_samples = max(4096, per_block * hop)
    blocks = stream_audio(path, sample_rate, block_samples=block_samples)
    return (windows for windows, _ in _iter_windows(blocks, window, hop, per_block))
