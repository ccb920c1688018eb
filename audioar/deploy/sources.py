"""Where :mod:`audioar.deploy.listen` gets its audio: a WAV stream read as its bytes arrive
(standard input, a pipe or socket; the header, also with the "unknown length" size streaming
writers write, then PCM or float blocks, resampled by a soxr stream) and a file read as a
stream, optionally paced at the audio's real rate. Both yield :class:`Chunk` s of samples at
the run's rate and count the seconds spent waiting (:class:`Waits`), which is not compute.
"""

from __future__ import annotations

import io
import logging
import os
import select
import stat
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, NamedTuple

import numpy as np

from audioar.data.io import stream_audio
from audioar.errors import AudioError

__all__ = ["Chunk", "Waits", "stream_chunks", "file_chunks"]

logger = logging.getLogger(__name__)


class Chunk(NamedTuple):
    samples: np.ndarray  # (time,) float32 at the run's rate
    arrived: float  # time.perf_counter() when it became available
    more: bool  # more audio is already waiting: keep batching; False: score now


class Waits:
    """Seconds a source has spent waiting for audio (blocked reads, pacing): not compute."""

    def __init__(self) -> None:
        self.seconds = 0.0


class _WavFormat(NamedTuple):
    tag: int  # 1: integer PCM, 3: IEEE float
    channels: int
    rate: int
    bits: int

    @property
    def frame_bytes(self) -> int:
        return self.channels * self.bits // 8


#: A data size at or above this is a streaming writer's "unknown length" placeholder.
_UNKNOWN_SIZE = 0x7FFFF000
_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE


class _ByteReader:
    """Reads a binary stream as the bytes come: a pipe, socket or terminal through its file
    descriptor (``select`` tells whether more is waiting, and bounds each wait), anything
    else (``io.BytesIO``, a file) through ``read1``/``read``."""

    def __init__(self, stream: IO[bytes], waits: Waits) -> None:
        self.stream = stream
        self.waits = waits
        self.fd: int | None = None
        try:
            fd = stream.fileno()
            mode = os.fstat(fd).st_mode
            if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode):
                select.select([fd], [], [], 0)
                self.fd = fd
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            self.fd = None
        self._read = getattr(stream, "read1", None) or stream.read
        self._full = True  # the last object read returned all it was asked for

    def read(self, n: int, deadline: float | None) -> bytes | None:
        """Up to ``n`` bytes (``b""`` at the end); None when the deadline passed first."""
        if deadline is not None and time.monotonic() >= deadline:
            return None
        if self.fd is None:
            data = self._read(n) or b""
            self._full = len(data) == n
            return bytes(data)
        start = time.perf_counter()
        try:
            while True:
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                if select.select([self.fd], [], [], timeout)[0]:
                    return os.read(self.fd, n)
                if deadline is not None and time.monotonic() >= deadline:
                    return None
        finally:
            self.waits.seconds += time.perf_counter() - start

    def read_exact(self, n: int, deadline: float | None) -> bytes | None:
        """Exactly ``n`` bytes (fewer only at the end); None when the deadline passed."""
        parts, got = [], 0
        while got < n:
            data = self.read(n - got, deadline)
            if data is None:
                return None
            if not data:
                break
            parts.append(data)
            got += len(data)
        return b"".join(parts)

    def more_waiting(self) -> bool:
        """Whether more bytes are already there (a backlog: batch the windows)."""
        if self.fd is not None:
            return bool(select.select([self.fd], [], [], 0)[0])
        return self._full


def _read_wav_header(
    reader: _ByteReader, name: str, deadline: float | None
) -> tuple[_WavFormat, int | None] | None:
    """Parse RIFF/RF64 WAV chunks up to ``data``: ``(format, data bytes or None when
    unknown)``, or None when the deadline passed."""

    def need(n: int, what: str) -> bytes | None:
        data = reader.read_exact(n, deadline)
        if data is None:
            return None
        if len(data) < n:
            if not data and what == "header":
                raise AudioError(name, "not a WAV stream (it is empty)")
            raise AudioError(name, f"not a WAV stream (it ends inside its {what})")
        return data

    head = need(12, "header")
    if head is None:
        return None
    if head[:4] not in (b"RIFF", b"RF64", b"BW64") or head[8:12] != b"WAVE":
        raise AudioError(name, f"not a WAV stream (it starts with {head[:12]!r})")
    fmt: _WavFormat | None = None
    size64: int | None = None
    while True:
        chunk = need(8, "chunk list")
        if chunk is None:
            return None
        cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if cid == b"data":
            break
        if size >= _UNKNOWN_SIZE:
            raise AudioError(name, f"not a WAV stream (chunk {cid!r} of {size} bytes)")
        body = need(size + (size & 1), f"{cid.decode('latin-1')!r} chunk")
        if body is None:
            return None
        if cid == b"ds64" and size >= 16:
            size64 = struct.unpack("<Q", body[8:16])[0]
        elif cid == b"fmt ":
            if size < 16:
                raise AudioError(name, "not a WAV stream (a 'fmt ' chunk under 16 bytes)")
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == _EXTENSIBLE and size >= 26:
                tag = struct.unpack("<H", body[24:26])[0]  # the sub-format GUID's first field
            fmt = _WavFormat(tag, channels, rate, bits)
    if fmt is None:
        raise AudioError(name, "not a WAV stream (no 'fmt ' chunk before the data)")
    known = (fmt.tag == _PCM and fmt.bits in (8, 16, 24, 32)) or (
        fmt.tag == _FLOAT and fmt.bits in (32, 64)
    )
    if not known or fmt.channels < 1 or fmt.rate < 1:
        raise AudioError(
            name,
            f"unsupported WAV encoding (format {fmt.tag}, {fmt.bits} bits, {fmt.channels} "
            f"channel(s), {fmt.rate} Hz): send 8/16/24/32-bit PCM or 32/64-bit float",
        )
    if size == 0xFFFFFFFF and size64 is not None:
        size = size64
    return fmt, (None if size == 0 or size >= _UNKNOWN_SIZE else size)


def _decode(raw: bytes, fmt: _WavFormat) -> np.ndarray:
    """Whole frames of little-endian PCM/float -> float32 mono (as soundfile reads them)."""
    if fmt.tag == _FLOAT:
        data = np.frombuffer(raw, dtype="<f4" if fmt.bits == 32 else "<f8").astype(np.float32)
    elif fmt.bits == 8:
        data = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif fmt.bits == 16:
        data = np.frombuffer(raw, dtype="<i2").astype(np.float32) / np.float32(32768.0)
    elif fmt.bits == 24:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        value = (b[:, 0] << 8 | b[:, 1] << 16 | b[:, 2] << 24) >> 8  # sign-extended
        data = (value.astype(np.float64) / 8388608.0).astype(np.float32)
    else:
        data = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2147483648.0).astype(
            np.float32
        )
    if fmt.channels > 1:
        data = data.reshape(-1, fmt.channels).mean(axis=1, dtype=np.float32)
    return data


def stream_chunks(
    stream: IO[bytes],
    name: str,
    rate: int,
    block_frames: int,
    deadline: float | None,
    waits: Waits,
) -> Iterator[Chunk]:
    """A WAV stream's samples at ``rate`` as they arrive (resampled by a soxr stream)."""
    reader = _ByteReader(stream, waits)
    header = _read_wav_header(reader, name, deadline)
    if header is None:
        return
    fmt, left = header
    resampler = None
    if fmt.rate != rate:
        import soxr

        resampler = soxr.ResampleStream(fmt.rate, rate, 1, dtype="float32", quality="HQ")
    frame = fmt.frame_bytes
    rest = b""
    read = emitted = 0  # frames read (stream rate), samples given (run rate)
    data: bytes | None = b""
    while left is None or left > 0:
        want = block_frames * frame if left is None else min(block_frames * frame, left)
        data = reader.read(want, deadline)
        if not data:  # the end, or the deadline (None)
            break
        if left is not None:
            left -= len(data)
        raw = rest + data if rest else data
        usable = len(raw) - len(raw) % frame
        rest = raw[usable:]
        if not usable:
            continue
        samples = _decode(raw[:usable], fmt)
        if not np.isfinite(samples).all():
            raise AudioError(name, "contains NaN/inf samples")
        read += len(samples)
        if resampler is not None:
            samples = resampler.resample_chunk(samples)
            emitted += len(samples)
        yield Chunk(samples, time.perf_counter(), reader.more_waiting())
    if read == 0:
        if data is None:  # stopped (max_seconds) before any audio came
            return
        raise AudioError(name, "contains no samples (the WAV stream has no audio data)")
    if rest:
        logger.warning("%s: %d trailing bytes (less than one frame) ignored", name, len(rest))
    if resampler is not None:  # the resampler's tail, to load_audio's length
        tail = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        remaining = max(int(np.ceil(read * rate / fmt.rate)) - emitted, 0)
        tail = np.pad(tail, (0, max(remaining - len(tail), 0)))[:remaining]
        if len(tail):
            yield Chunk(tail.astype(np.float32), time.perf_counter(), False)


def file_chunks(
    path: Path,
    rate: int,
    block: int,
    piece: int,
    realtime: bool,
    deadline: float | None,
    waits: Waits,
) -> Iterator[Chunk]:
    """A file's samples at ``rate`` (:func:`audioar.data.io.stream_audio`); with ``realtime``
    released ``piece`` samples at a time at the pace of the audio."""
    blocks = stream_audio(path, rate, block_samples=block)
    start, released = time.perf_counter(), 0
    try:
        for samples in blocks:
            if not realtime:
                yield Chunk(samples, time.perf_counter(), True)
                if deadline is not None and time.monotonic() >= deadline:
                    return
                continue
            for i in range(0, len(samples), piece):
                part = samples[i : i + piece]
                released += len(part)
                wait = start + released / rate - time.perf_counter()
                if deadline is not None and time.monotonic() + max(wait, 0.0) >= deadline:
                    return
                if wait > 0:
                    time.sleep(wait)
                    waits.seconds += wait
                yield Chunk(part, time.perf_counter(), False)
    finally:
        blocks.close()  # type: ignore[attr-defined]
