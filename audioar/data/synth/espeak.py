"""Optional eSpeak NG engine for the synthetic data set (extra ``speech``).

eSpeak NG (GPL-3) comes from the ``espeakng-loader`` wheel, which ships
``libespeak-ng.so`` and its voice data; it is driven through ``ctypes`` and used only to
generate data. The library is never loaded into the calling process: ``speak`` runs
``python -m audioar.data.synth.espeak`` as a fresh worker that speaks the whole list and streams the
PCM back. That also makes the output repeatable: eSpeak keeps state between utterances
(its pitch flutter phase, for one), so the same text spoken twice in one process differs,
while a fresh process replaying the same list, with the same random seeds, gives the
same samples.

Worker protocol: stdin holds a JSON list of ``Utterance`` fields; stdout gets the magic
``b"AUDIOAR-ESPEAK1\\n"``, the sample rate and the utterance count (``uint32`` each), then
per utterance its sample count (``uint32``) and its samples (``int16``, little-endian).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import struct
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from audioar.errors import DataError

__all__ = ["ESPEAK_SAMPLE_RATE", "Utterance", "espeak_available", "speak"]

logger = logging.getLogger(__name__)

ESPEAK_SAMPLE_RATE = 22_050  # eSpeak NG speaks 16-bit PCM at this rate
_MAGIC = b"AUDIOAR-ESPEAK1\n"

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _PITCH, _RANGE = 1, 3, 4


@dataclass(frozen=True)
class Utterance:
    """One thing for eSpeak NG to say."""

    text: str  # what to say, e.g. "zero"
    voice: str = "en-us"  # voice name with an optional variant, e.g. "en-us+m3"
    rate: int = 175  # words per minute (80-450)
    pitch: int = 50  # base pitch, 0-99
    pitch_range: int = 50  # pitch range, 0-99
    seed: int = 1  # seed of eSpeak's random generators for this utterance


def speak(utterances: Sequence[Utterance], *, timeout: float = 300.0) -> list[np.ndarray]:
    """Speak ``utterances`` with eSpeak NG in a fresh worker process.

    Args:
        utterances: What to say, in order (the order is part of what makes it repeatable).
        timeout: Seconds before the worker is killed; default 300.

    Returns:
        One int16 array per utterance, shape (time,), at ``ESPEAK_SAMPLE_RATE``.

    Raises:
        DataError: eSpeak NG is missing or failed.
    """
    payload = json.dumps([asdict(u) for u in utterances]).encode()
    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "audioar.data.synth.espeak"],
            input=payload,
            capture_output=True,
            env=env,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DataError(f"eSpeak NG worker took longer than {timeout:.0f} s") from None
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        raise DataError(f"eSpeak NG worker failed: {lines[-1] if lines else proc.returncode}")
    return _parse(proc.stdout, len(utterances))


def _parse(data: bytes, count: int) -> list[np.ndarray]:
    head = len(_MAGIC) + 8
    if data[: len(_MAGIC)] != _MAGIC or len(data) < head:
        raise DataError("eSpeak NG worker returned no audio")
    rate, found = struct.unpack("<II", data[len(_MAGIC) : head])
    if rate != ESPEAK_SAMPLE_RATE or found != count:
        raise DataError(f"eSpeak NG worker returned {found} clips at {rate} Hz")
    out, pos = [], head
    for _ in range(count):
        (n,) = struct.unpack("<I", data[pos : pos + 4])
        pos += 4
        out.append(np.frombuffer(data[pos : pos + 2 * n], dtype="<i2").astype(np.int16))
        pos += 2 * n
    if pos != len(data):
        raise DataError("eSpeak NG worker returned a truncated stream")
    return out


@functools.lru_cache(maxsize=1)
def espeak_available() -> bool:
    """Whether eSpeak NG (``espeakng-loader``) is installed and says a word (cached)."""
    if importlib.util.find_spec("espeakng_loader") is None:
        logger.info("espeakng-loader is not installed")
        return False
    try:
        audio = speak([Utterance("zero")], timeout=60.0)
    except (DataError, OSError) as exc:
        logger.info("eSpeak NG does not work here: %s", exc)
        return False
    return audio[0].size > 0


def _worker(stdin: BinaryIO, stdout: BinaryIO) -> None:
    """Speak the JSON list on ``stdin`` and stream the PCM to ``stdout`` (see module doc)."""
    import ctypes
    import ctypes.util

    import espeakng_loader  # GPL-3 eSpeak NG: loaded only here, in the worker process

    jobs = [Utterance(**job) for job in json.loads(stdin.read().decode())]
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    data_path = espeakng_loader.get_data_path().encode()
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, _INITIALIZE_DONT_EXIT)
    if rate <= 0:
        raise RuntimeError(f"espeak_Initialize failed ({rate})")
    chunks: list[bytes] = []
    callback_type = ctypes.CFUNCTYPE(
        ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
    )

    def on_audio(wav: ctypes.POINTER(ctypes.c_short), n: int, events: int) -> int:  # type: ignore[valid-type]
        if wav and n > 0:
            chunks.append(ctypes.string_at(wav, 2 * n))
        return 0  # 0: go on

    callback = callback_type(on_audio)  # kept alive for the whole run
    lib.espeak_SetSynthCallback(callback)
    stdout.write(_MAGIC + struct.pack("<II", rate, len(jobs)))
    for job in jobs:
        if lib.espeak_SetVoiceByName(job.voice.encode()) != 0:
            raise RuntimeError(f"no eSpeak NG voice {job.voice!r}")
        for parameter, value in ((_RATE, job.rate), (_PITCH, job.pitch), (_RANGE, job.pitch_range)):
            lib.espeak_SetParameter(parameter, int(value), 0)
        # eSpeak draws breath noise from its own generator and from libc rand(): seed both.
        lib.espeak_ng_SetRandSeed(job.seed)
        libc.srand(ctypes.c_uint(job.seed))
        text = job.text.encode() + b"\0"
        chunks.clear()
        status = lib.espeak_Synth(text, len(text), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if status != 0 or lib.espeak_Synchronize() != 0:
            raise RuntimeError(f"espeak_Synth failed for {job.text!r} ({status})")
        pcm = b"".join(chunks)
        stdout.write(struct.pack("<I", len(pcm) // 2) + pcm)
    stdout.flush()
    lib.espeak_Terminate()


if __name__ == "__main__":
    _worker(sys.stdin.buffer, sys.stdout.buffer)
