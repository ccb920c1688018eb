"""Synthetic speakers: voice, eSpeak NG accent and voice variant, room and channel.

``make_speaker`` draws speaker ``index`` of a data set from a generator seeded by
``(seed, index)``; everything about a speaker is fixed across its takes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

__all__ = ["Speaker", "make_speaker"]

_ROOM_RT60 = (0.1, 0.5)  # reverberation time of each speaker's room (s)
_ROOM_DRR_DB = (3.0, 15.0)  # direct-to-reverberant ratio of each speaker's room (dB)
_EQ_DB = 6.0  # largest gain (either sign) of the channel's peaking EQ (dB)


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: the voice and the recording channel, fixed across takes."""

    id: str  # 8 hex digits, like Speech Commands speaker ids
    f0: float  # mean pitch (Hz)
    pitch_range: float  # accent height of the f0 contour (fraction of f0)
    formant_scale: float  # vocal-tract length factor (1.0: adult male reference)
    tempo: float  # duration factor (> 1: slower)
    open_quotient: float  # glottal open phase (fraction of a period): lower is brighter
    breathiness: float  # aspiration noise mixed into voicing
    vowel_shift: tuple[float, float]  # accent: F1 and F2 factors
    eq_freq: float  # peaking EQ centre (Hz) of the channel colouring
    eq_gain_db: float  # its gain (dB)
    eq_q: float  # its quality factor
    highpass: float  # channel high-pass corner (Hz)
    lowpass: float  # channel low-pass corner (Hz)
    noise_colour: float  # one-pole low-pass coefficient of the noise (0: white)
    espeak_voice: str  # eSpeak NG accent and voice variant of the espeak engine
    espeak_pitch: int  # eSpeak pitch (0-99)
    espeak_range: int  # eSpeak pitch range (0-99)
    room_rt60: float  # reverberation time of the speaker's room (s; 0: dry)
    room_drr_db: float  # its direct-to-reverberant energy ratio (dB)


_ESPEAK_MALE = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "klatt", "klatt3", "david", "john")
_ESPEAK_FEMALE = ("f1", "f2", "f3", "f4", "f5", "klatt2", "klatt4", "linda", "belinda")
# English accents of eSpeak NG and their shares among speakers (Speech Commands: mostly US).
_ESPEAK_ACCENTS = {
    "en-us": 0.4,  # General American
    "en-us-nyc": 0.1,  # New York City
    "en": 0.1,  # British
    "en-gb-x-rp": 0.1,  # Received Pronunciation
    "en-gb-scotland": 0.1,  # Scottish
    "en-gb-x-gbclan": 0.075,  # Lancastrian
    "en-gb-x-gbcwmd": 0.075,  # West Midlands
    "en-029": 0.05,  # Caribbean
}


def make_speaker(seed: int, index: int) -> Speaker:
    """Draw speaker ``index`` of the data set with seed ``seed`` (deterministic).

    Args:
        seed: Data set seed.
        index: Speaker number, 0-based.

    Returns:
        The speaker; its ``id`` is 8 hex digits derived from ``(seed, index)``.
    """
    rng = np.random.default_rng([seed, 1, index])
    speaker_id = hashlib.sha1(f"audioar-synth-{seed}-{index}".encode()).hexdigest()[:8]
    female = bool(rng.random() < 0.5)
    low, high = (160.0, 260.0) if female else (85.0, 150.0)
    f0 = float(np.exp(rng.uniform(np.log(low), np.log(high))))  # log-uniform pitch
    # Vocal-tract length follows sex with overlap (women's formants ~15% higher).
    scale = float((1.15 if female else 1.0) * rng.uniform(0.93, 1.07))
    voices = _ESPEAK_FEMALE if female else _ESPEAK_MALE
    # The accent comes from its own generator: the other draws stay as they were.
    accents, shares = zip(*_ESPEAK_ACCENTS.items(), strict=True)
    accent_rng = np.random.default_rng([seed, 4, index])
    accent = accents[int(accent_rng.choice(len(accents), p=np.array(shares) / sum(shares)))]
    return Speaker(
        id=speaker_id,
        f0=f0,
        pitch_range=float(rng.uniform(0.05, 0.25)),
        formant_scale=scale,
        tempo=float(rng.uniform(0.95, 1.3)),
        open_quotient=float(rng.uniform(0.45, 0.75)),
        breathiness=float(rng.uniform(0.0, 0.25)),
        vowel_shift=(float(rng.uniform(0.93, 1.07)), float(rng.uniform(0.94, 1.06))),
        eq_freq=float(np.exp(rng.uniform(np.log(300), np.log(4000)))),
        eq_gain_db=float(rng.uniform(-_EQ_DB, _EQ_DB)),
        eq_q=float(rng.uniform(0.7, 2.0)),
        highpass=float(rng.uniform(50, 200)),
        lowpass=float(rng.uniform(4500, 7800)),
        noise_colour=float(rng.uniform(0.0, 0.9)),
        espeak_voice=f"{accent}+{voices[int(rng.integers(len(voices)))]}",
        espeak_pitch=int(rng.integers(30, 71) if not female else rng.integers(45, 86)),
        espeak_range=int(rng.integers(30, 80)),
        room_rt60=float(rng.uniform(*_ROOM_RT60)),
        room_drr_db=float(rng.uniform(*_ROOM_DRR_DB)),
    )


def _espeak_warp(speaker: Speaker) -> float:
    """Vocal-tract length factor the espeak engine applies by resampling (about 0.93-1.07).

    eSpeak NG's voice variants set formants per sex; the speaker's own factor within its
    sex (``formant_scale`` without the female 1.15) is applied on top, so that speakers
    sharing a variant still differ in vocal-tract length, as the formant engine's do.
    """
    female = speaker.espeak_voice.rsplit("+", 1)[-1] in _ESPEAK_FEMALE
    return speaker.formant_scale / (1.15 if female else 1.0)
