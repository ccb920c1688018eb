"""The speech engines: which one ``"auto"`` means, and the dry word of every take.

``formant`` (always available) is ``formant_word``; ``espeak`` (optional extra ``speech``)
is eSpeak NG through ``audioar.data.synth.espeak``, spoken in a worker process and resampled from
22,050 Hz with the speaker's vocal-tract length warp.
"""

from __future__ import annotations

import logging
import zlib

import numpy as np

from audioar.data.synth.dsp import _signal
from audioar.data.synth.render import SYNTH_RATE, formant_word
from audioar.data.synth.voices import Speaker, _espeak_warp
from audioar.errors import ConfigError

__all__ = ["ENGINES", "resolve_engine"]

logger = logging.getLogger(__name__)

ENGINES = ("auto", "espeak", "formant")


def resolve_engine(engine: str = "auto") -> str:
    """The engine ``engine`` stands for: ``"auto"`` is ``"espeak"`` when eSpeak NG works.

    Args:
        engine: ``"auto"``, ``"espeak"`` or ``"formant"``; default ``"auto"``.

    Returns:
        ``"espeak"`` or ``"formant"``.

    Raises:
        ConfigError: Unknown engine, or ``"espeak"`` asked for but unavailable.
    """
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine == "formant":
        return "formant"
    from audioar.data.synth.espeak import espeak_available  # subprocess-only use of eSpeak NG

    if espeak_available():
        return "espeak"
    if engine == "espeak":
        raise ConfigError(
            "engine 'espeak' needs eSpeak NG: pip install 'audioar[speech]' (espeakng-loader)"
        )
    logger.info("eSpeak NG unavailable; using the formant engine")
    return "formant"


def _dry_clips(
    engine: str, jobs: list[tuple[int, str, int]], speakers: list[Speaker], seed: int
) -> list[tuple[np.ndarray, np.random.Generator]]:
    """The dry word of every job ``(speaker, word, take)`` and its take generator."""
    out: list[tuple[np.ndarray, np.random.Generator]] = []
    utterances = []
    for index, word, take in jobs:
        rng = np.random.default_rng([seed, 2, index, zlib.crc32(word.encode()), take])
        tempo, pitch = rng.uniform(0.92, 1.08), rng.uniform(0.94, 1.06)
        speaker = speakers[index]
        if engine == "formant":
            out.append((formant_word(word, speaker, rng, tempo=tempo, pitch=pitch), rng))
            continue
        from audioar.data.synth.espeak import Utterance

        utterances.append(
            Utterance(
                text=word,
                voice=speaker.espeak_voice,
                rate=int(round(175 / (speaker.tempo * tempo))),
                pitch=int(np.clip(round(speaker.espeak_pitch * pitch), 0, 99)),
                pitch_range=speaker.espeak_range,
                seed=int(rng.integers(1, 2**31 - 1)),
            )
        )
        out.append((np.zeros(0), rng))
    if engine == "espeak":
        from audioar.data.synth.espeak import ESPEAK_SAMPLE_RATE, speak

        for i, pcm in enumerate(speak(utterances)):
            # 22,050 Hz -> 16,000 Hz is exactly 320/441; a larger `down` reads the samples
            # as if spoken at a higher rate: formants and pitch up, duration down.
            up = SYNTH_RATE // 50
            down = round(ESPEAK_SAMPLE_RATE // 50 * _espeak_warp(speakers[jobs[i][0]]))
            audio = _signal().resample_poly(pcm.astype(np.float64) / 32768.0, up, down)
            out[i] = (audio, out[i][1])
    return out
