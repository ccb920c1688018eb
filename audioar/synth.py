"""The embedded default data set: small, offline, deterministic spoken words.

``synthesize_dataset`` writes clips in the Speech Commands layout
(``OUT/<word>/<speaker>_nohash_<take>.wav`` plus ``validation_list.txt`` and
``testing_list.txt`` holding whole speakers), mono int16 WAV. Unlike Speech Commands (1 s at
16 kHz) the clips are 0.8 s at 8 kHz by default: the pipeline's features work at 8 kHz
anyway, and the saved bytes buy more speakers within 20 MB (the layout is what matters;
``sample_rate=16000`` writes 16 kHz clips). Two engines make the words:

- ``formant`` (always available, no dependencies beyond numpy/scipy): a source-filter
  model. A glottal pulse train (Rosenberg pulse, differentiated for lip radiation) and
  aspiration noise drive a cascade of second-order formant resonators whose targets follow
  each word's phonemes with smooth transitions; fricatives and stop bursts are noise through
  their own band-pass filters.
- ``espeak`` (optional extra ``speech``): eSpeak NG through ``audioar.speech``, each
  speaker with one of eSpeak's English accents (US, British, Scottish, Caribbean, ...) and
  voice variants, its vocal-tract length applied by resampling.

Both engines share the speaker, room and channel variation applied here: pitch and its
contour, vocal-tract length (formant scale), tempo, loudness, room reverberation, a mild
random EQ, additive noise at a random SNR and a random onset inside the clip window. Words,
rooms and channels are made at 16 kHz (``SYNTH_RATE``) and decimated to the output rate.
Every random draw comes from a generator seeded by ``(seed, speaker, word, take)``, so the
same seed gives byte-identical files.

References:
    Klatt, "Software for a cascade/parallel formant synthesizer", JASA 67(3), 1980.
    Rosenberg, "Effect of glottal pulse shape on the quality of natural vowels",
    JASA 49(2B), 1971.
    Polack, "Playing billiards in the concert hall: the mathematical foundations of
    geometrical room acoustics", Applied Acoustics 38, 1993 (exponentially decaying noise
    as a room's late reverberation).
    Warden, "Speech Commands: A Dataset for Limited-Vocabulary Speech Recognition",
    arXiv:1804.03209, 2018.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import time
import wave
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audioar.errors import ConfigError, DataError
from audioar.paths import cache_root


def _signal():  # noqa: ANN202
    """scipy.signal, imported on first use (it costs a second at CLI start-up)."""
    from scipy import signal

    return signal


__all__ = [
    "SAMPLE_RATE",
    "SAMPLE_RATES",
    "SYNTH_RATE",
    "CLIP_SECONDS",
    "DEFAULT_WORDS",
    "DEFAULT_SPEAKERS",
    "DEFAULT_TAKES",
    "ENGINES",
    "LEXICON",
    "MARKER_FILE",
    "Speaker",
    "make_speaker",
    "formant_word",
    "formant_cascade",
    "allpole_blocks",
    "allpole_blocks_reference",
    "resolve_engine",
    "synthesize_dataset",
    "default_dataset",
    "default_dataset_name",
    "read_metadata",
]

logger = logging.getLogger(__name__)

SAMPLE_RATE = 8_000  # default rate of the written clips (the pipeline's feature rate)
SAMPLE_RATES = (8_000, 16_000)  # rates the clips can be written at (Speech Commands: 16 kHz)
SYNTH_RATE = 16_000  # words, noise and channel are made at this rate, then decimated
CLIP_SECONDS = 0.8  # clip length (Speech Commands: 1 s)
DEFAULT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DEFAULT_SPEAKERS = 42
DEFAULT_TAKES = 3
ENGINES = ("auto", "espeak", "formant")
MARKER_FILE = ".audioar-synth.json"  # written last; its presence marks a complete data set
_FORMAT_VERSION = 2
_BLOCK = 32  # samples per control frame (2 ms at 16 kHz): formant coefficients update rate
_SNR_DB = (10.0, 32.0)  # background noise level over the word, per take
_ROOM_RT60 = (0.1, 0.5)  # reverberation time of each speaker's room (s)
_ROOM_DRR_DB = (3.0, 15.0)  # direct-to-reverberant ratio of each speaker's room (dB)
_EQ_DB = 6.0  # largest gain (either sign) of the channel's peaking EQ (dB)


# --------------------------------------------------------------------------- phonemes
@dataclass(frozen=True)
class _Phone:
    """One phoneme (or stop phase) of the formant engine, adult-male reference values."""

    formants: tuple[float, float, float] | None  # F1-F3 targets (Hz); None: take the next
    duration: float  # seconds at tempo 1.0
    voicing: float = 0.0  # glottal source amplitude
    aspiration: float = 0.0  # noise amplitude into the formant cascade
    frication: tuple[float, float, float] | None = None  # (centre Hz, bandwidth Hz, amplitude)
    end: tuple[float, float, float] | None = None  # diphthong end target
    bandwidths: tuple[float, float, float] = (70.0, 100.0, 150.0)


def _vowel(f: tuple, dur: float, end: tuple | None = None) -> _Phone:
    return _Phone(f, dur, voicing=1.0, end=end)


_NASAL_BW = (110.0, 300.0, 400.0)
_PHONES: dict[str, _Phone] = {
    # Vowels (Peterson & Barney 1952 / Hillenbrand 1995 averages, men).
    "iy": _vowel((280, 2250, 2900), 0.16),
    "ih": _vowel((400, 1900, 2550), 0.09),
    "eh": _vowel((550, 1770, 2500), 0.11),
    "ae": _vowel((660, 1700, 2400), 0.13),
    "ah": _vowel((620, 1200, 2550), 0.10),
    "aa": _vowel((730, 1100, 2450), 0.14),
    "ao": _vowel((570, 850, 2400), 0.16),
    "uw": _vowel((320, 1100, 2250), 0.17),
    "ow": _vowel((530, 950, 2400), 0.20, end=(380, 800, 2300)),
    "ay": _vowel((720, 1150, 2500), 0.22, end=(400, 1950, 2600)),
    "aw": _vowel((720, 1250, 2450), 0.22, end=(420, 900, 2350)),
    "ey": _vowel((480, 1850, 2500), 0.18, end=(330, 2150, 2700)),
    # Glides and liquids: voiced, a little weaker; /r/ has its low F3.
    "w": _Phone((300, 650, 2200), 0.07, voicing=0.8),
    "r": _Phone((330, 1100, 1450), 0.07, voicing=0.8),
    "y": _Phone((270, 2150, 3000), 0.06, voicing=0.8),
    "l": _Phone((330, 1000, 2800), 0.06, voicing=0.8),
    # Nasals: murmur (low F1, wide upper bandwidths, weak).
    "n": _Phone((260, 1650, 2600), 0.07, voicing=0.45, bandwidths=_NASAL_BW),
    "m": _Phone((260, 1050, 2200), 0.07, voicing=0.45, bandwidths=_NASAL_BW),
    # Fricatives: noise through a band-pass filter; voiced ones keep some voicing.
    "s": _Phone((350, 1700, 2600), 0.11, frication=(5600, 1800, 0.9)),
    "z": _Phone((350, 1700, 2600), 0.09, voicing=0.35, frication=(5400, 1800, 0.6)),
    "f": _Phone((350, 1000, 2300), 0.10, frication=(4500, 6000, 0.25)),
    "th": _Phone((350, 1450, 2600), 0.09, frication=(5000, 5000, 0.2)),
    "v": _Phone((300, 1000, 2300), 0.06, voicing=0.4, frication=(4500, 5000, 0.12)),
    # Stops: closure (silence or a voice bar), burst (short noise), aspiration (hh).
    "pcl": _Phone((300, 900, 2200), 0.06),
    "tcl": _Phone((300, 1800, 2700), 0.05),
    "kcl": _Phone((300, 1700, 2300), 0.05),
    "bcl": _Phone((250, 900, 2200), 0.05, voicing=0.15),
    "dcl": _Phone((250, 1800, 2700), 0.04, voicing=0.15),
    "gcl": _Phone((250, 1700, 2300), 0.04, voicing=0.15),
    "p": _Phone((300, 900, 2200), 0.012, frication=(1200, 2000, 0.8)),
    "t": _Phone((300, 1800, 2700), 0.012, frication=(4000, 3000, 0.9)),
    "k": _Phone((300, 1700, 2300), 0.015, frication=(2200, 1200, 0.9)),
    "b": _Phone((300, 900, 2200), 0.008, voicing=0.2, frication=(1200, 2000, 0.4)),
    "d": _Phone((300, 1800, 2700), 0.008, voicing=0.2, frication=(3800, 3000, 0.45)),
    "g": _Phone((300, 1700, 2300), 0.010, voicing=0.2, frication=(2200, 1200, 0.45)),
    "hh": _Phone(None, 0.05, aspiration=0.5),
}

# Words as phoneme sequences (ARPAbet-like; stops written as closure + release).
LEXICON: dict[str, tuple[str, ...]] = {
    "zero": ("z", "ih", "r", "ow"),
    "one": ("w", "ah", "n"),
    "two": ("tcl", "t", "hh", "uw"),
    "three": ("th", "r", "iy"),
    "four": ("f", "ao", "r"),
    "five": ("f", "ay", "v"),
    "six": ("s", "ih", "kcl", "k", "s"),
    "seven": ("s", "eh", "v", "ah", "n"),
    "eight": ("ey", "tcl", "t"),
    "nine": ("n", "ay", "n"),
    "yes": ("y", "eh", "s"),
    "no": ("n", "ow"),
    "up": ("ah", "pcl", "p"),
    "down": ("dcl", "d", "aw", "n"),
    "go": ("gcl", "g", "ow"),
    "stop": ("s", "tcl", "t", "aa", "pcl", "p"),
    "on": ("aa", "n"),
    "off": ("ao", "f"),
    "left": ("l", "eh", "f", "tcl", "t"),
    "right": ("r", "ay", "tcl", "t"),
}


# --------------------------------------------------------------------------- speakers
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


# --------------------------------------------------------------------------- filters
def _resonators(
    freqs: np.ndarray, bandwidths: np.ndarray, sample_rate: int
) -> tuple[np.ndarray, np.ndarray]:
    """Second-order resonators (Klatt 1980), one per formant and control frame.

    Args:
        freqs: Formant frequencies (Hz), shape (frames, formants).
        bandwidths: Their bandwidths (Hz), shape (frames, formants).
        sample_rate: Sample rate (Hz).

    Returns:
        ``(gain, a)``: gains (frames, formants) making each DC gain 1, and denominators
        a (frames, formants, 3) with ``a[..., 0] == 1``.
    """
    r = np.exp(-np.pi * bandwidths / sample_rate)
    a1 = -2.0 * r * np.cos(2.0 * np.pi * freqs / sample_rate)
    a2 = r * r
    return 1.0 + a1 + a2, np.stack([np.ones_like(a1), a1, a2], axis=-1)


def formant_cascade(
    x: np.ndarray,
    freqs: np.ndarray,
    bandwidths: np.ndarray,
    sample_rate: int,
    block: int,
    *,
    reference: bool = False,
) -> np.ndarray:
    """Filter ``x`` through time-varying formant resonators in cascade.

    Args:
        x: Excitation, shape (time,), ``time == frames * block``.
        freqs: Formant frequencies (Hz) per control frame, shape (frames, formants).
        bandwidths: Bandwidths (Hz), shape (frames, formants).
        sample_rate: Sample rate (Hz).
        block: Samples per control frame (coefficients are held within a frame), > 2.
        reference: Use the plain per-sample loop instead of the vectorised path.

    Returns:
        Output, shape (time,).
    """
    gain, a = _resonators(freqs, bandwidths, sample_rate)
    gain, a = np.moveaxis(gain, 1, 0), np.moveaxis(a, 1, 0)  # formants first
    y = x
    if reference:
        for k in range(a.shape[0]):
            y = allpole_blocks_reference(y, gain[k], a[k], block)
        return y
    from_past = _from_past(a, block)  # input-independent: all formants at once
    for k in range(a.shape[0]):
        y = _allpole_apply(y, gain[k], a[k], from_past[k])
    return y


def _recurse(drive: np.ndarray, a: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Run ``y[n] = drive[n] - sum_k a[k] y[n - k]`` over a frame, many frames at once.

    Args:
        drive: Input per step, shape (block, *batch).
        a: Denominators, shape (order + 1, *batch) (``a[0]`` unused, taken as 1).
        start: Past outputs, oldest first, shape (order, *batch).

    Returns:
        Outputs, shape (block, *batch).
    """
    order = a.shape[0] - 1
    hist = np.concatenate([start, drive])  # time axis first: contiguous steps
    for n in range(drive.shape[0]):
        for k in range(order):  # order is small (2 for a resonator): plain products
            hist[order + n] -= a[order - k] * hist[n + k]
    return hist[order:]


def _from_past(a: np.ndarray, block: int) -> np.ndarray:
    """Responses of block-constant all-pole filters to their past outputs.

    Args:
        a: Denominators, shape (..., frames, order + 1), ``a[..., 0] == 1``.
        block: Samples per frame, > order.

    Returns:
        Response to no input with past output ``y[-1 - j] = 1`` (the others 0) in column
        j, shape (..., frames, block, order).
    """
    order = a.shape[-1] - 1
    coef = np.moveaxis(a, -1, 0)[:, None]  # (order + 1, 1, ..., frames)
    lead = a.shape[:-1]
    start = np.zeros((order, order, *lead))
    start[np.arange(order - 1, -1, -1), np.arange(order)] = 1.0  # column j: y[-1 - j] = 1
    out = _recurse(np.zeros((block, order, *lead)), coef, start)  # (block, order, ...)
    return np.ascontiguousarray(np.moveaxis(out, (0, 1), (-2, -1)))


def _affine_scan(m: np.ndarray, c: np.ndarray) -> np.ndarray:
    """States of ``p[f + 1] = c[f] + m[f] @ p[f]``, ``p[0] = 0``, for f < frames.

    A log-depth prefix composition (Hillis & Steele) instead of a loop over frames.

    Args:
        m: Transition matrices, shape (frames, order, order).
        c: Offsets, shape (frames, order).

    Returns:
        ``p[0], ..., p[frames - 1]``, shape (frames, order).
    """
    m, c = m.copy(), c.copy()
    step = 1
    while step < len(c):
        # Compose each map with the one `step` frames earlier (that one acts first).
        c_new = c.copy()
        c_new[step:] += np.einsum("fij,fj->fi", m[step:], c[:-step])
        m_new = m.copy()
        m_new[step:] = m[step:] @ m[:-step]
        m, c = m_new, c_new
        step *= 2
    return np.concatenate([np.zeros((1, c.shape[1])), c[:-1]])


def _allpole_apply(
    x: np.ndarray, gain: np.ndarray, a: np.ndarray, from_past: np.ndarray
) -> np.ndarray:
    """Run a block-constant all-pole filter given its responses to past outputs."""
    frames, block, order = from_past.shape
    # Each frame from rest, all frames at once; then add what the past outputs contribute.
    drive = (x.reshape(frames, block) * gain[:, None]).T
    zero_state = _recurse(drive, a.T, np.zeros((order, frames))).T  # (frames, block)
    # Hand each frame's last `order` outputs (newest first) to the next frame.
    newest = slice(block - 1, block - order - 1 if block > order else None, -1)
    pasts = _affine_scan(from_past[:, newest, :], zero_state[:, newest])
    return (zero_state + np.einsum("fbk,fk->fb", from_past, pasts)).reshape(-1)


def allpole_blocks(x: np.ndarray, gain: np.ndarray, a: np.ndarray, block: int) -> np.ndarray:
    """Time-varying all-pole filter, coefficients held for ``block`` samples (fast path).

    Computes ``y[n] = gain[f] * x[n] - sum_k a[f, k] * y[n - k]`` with ``f = n // block``.
    Within a frame the filter is linear time-invariant, so each frame's output is its
    zero-state response (a convolution) plus a matrix times the previous frame's last
    ``order`` outputs; those hand-overs form an affine recurrence solved by a prefix scan.
    Everything is vectorised over frames; ``allpole_blocks_reference`` is the plain loop.

    Args:
        x: Input, shape (time,), ``time == frames * block``.
        gain: Per-frame gain, shape (frames,).
        a: Per-frame denominators, shape (frames, order + 1), ``a[:, 0] == 1``;
            ``order < block``.
        block: Samples per frame.

    Returns:
        Output, shape (time,).
    """
    return _allpole_apply(x, gain, a, _from_past(a, block))


def allpole_blocks_reference(
    x: np.ndarray, gain: np.ndarray, a: np.ndarray, block: int
) -> np.ndarray:
    """Plain per-sample loop computing the same filter as ``allpole_blocks`` (slow)."""
    order = a.shape[1] - 1
    y = np.zeros(x.size + order)  # y[n + order] holds output n; the first `order` are zeros
    for n in range(x.size):
        f = n // block
        acc = gain[f] * x[n]
        for k in range(1, order + 1):
            acc -= a[f, k] * y[n + order - k]
        y[n + order] = acc
    return y[order:]


def _bandpass(centre: float, bandwidth: float, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """RBJ band-pass biquad with 0 dB peak gain."""
    centre = min(centre, 0.45 * sample_rate)
    w0 = 2 * np.pi * centre / sample_rate
    q = max(centre / bandwidth, 0.3)
    alpha = np.sin(w0) / (2 * q)
    b = np.array([alpha, 0.0, -alpha])
    a = np.array([1 + alpha, -2 * np.cos(w0), 1 - alpha])
    return b / a[0], a / a[0]


def _peaking(
    freq: float, gain_db: float, q: float, sample_rate: int
) -> tuple[np.ndarray, np.ndarray]:
    """RBJ peaking EQ biquad."""
    amp = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * freq / sample_rate
    alpha = np.sin(w0) / (2 * q)
    b = np.array([1 + alpha * amp, -2 * np.cos(w0), 1 - alpha * amp])
    a = np.array([1 + alpha / amp, -2 * np.cos(w0), 1 - alpha / amp])
    return b / a[0], a / a[0]


def _smooth(track: np.ndarray, width: int) -> np.ndarray:
    """Hann-window moving average along axis 0 with edge padding (``width`` frames)."""
    if width <= 1:
        return track
    window = np.hanning(width + 2)[1:-1]
    window /= window.sum()
    pad = width // 2
    padded = np.pad(track, [(pad, width - 1 - pad)] + [(0, 0)] * (track.ndim - 1), mode="edge")
    if track.ndim == 1:
        return np.convolve(padded, window, mode="valid")
    return np.stack(
        [np.convolve(padded[:, i], window, mode="valid") for i in range(track.shape[1])], axis=1
    )


# --------------------------------------------------------------------------- formant engine
def _glottal_source(f0: np.ndarray, open_quotient: float, sample_rate: int) -> np.ndarray:
    """Differentiated Rosenberg glottal pulses for a per-sample pitch track, about unit RMS."""
    phase = np.cumsum(f0 / sample_rate) % 1.0
    rise = 0.7 * open_quotient
    fall = 0.3 * open_quotient
    flow = np.where(
        phase < rise,
        0.5 * (1 - np.cos(np.pi * phase / rise)),
        np.where(phase < rise + fall, np.cos(0.5 * np.pi * (phase - rise) / fall), 0.0),
    )
    derivative = np.diff(flow, prepend=0.0)
    return derivative * (sample_rate / f0) * 0.25


def formant_word(
    word: str,
    speaker: Speaker,
    rng: np.random.Generator,
    *,
    sample_rate: int = SYNTH_RATE,
    tempo: float = 1.0,
    pitch: float = 1.0,
) -> np.ndarray:
    """Synthesise one word with the formant engine (no channel, noise or placement).

    Args:
        word: A key of ``LEXICON``.
        speaker: The voice (pitch, formant scale, tempo, voice quality, accent).
        rng: Source of the take's randomness (durations, jitter, noise).
        sample_rate: Output rate in Hz; default 16000.
        tempo: Extra duration factor of this take; default 1.0.
        pitch: Extra pitch factor of this take; default 1.0.

    Returns:
        The word, shape (time,), float64, peak about 1, with 20 ms of silence each side.
    """
    if word not in LEXICON:
        raise ConfigError(f"no pronunciation for word {word!r}; known: {', '.join(LEXICON)}")
    phones = [_PHONES[p] for p in LEXICON[word]]
    frame_s = _BLOCK / sample_rate
    # Segment lengths in frames; the last voiced phone is lengthened (phrase-final).
    lengths = []
    for i, ph in enumerate(phones):
        final = 1.3 if i == len(phones) - 1 and ph.voicing >= 0.45 else 1.0
        seconds = ph.duration * speaker.tempo * tempo * final * rng.uniform(0.88, 1.12)
        lengths.append(max(2, int(round(seconds / frame_s))))
    pad = int(round(0.02 / frame_s))
    frames = pad + sum(lengths) + pad
    starts = np.cumsum([pad] + lengths[:-1])

    # Per-frame targets: formants (NaN where inherited), voicing, aspiration.
    shift = np.array([speaker.vowel_shift[0], speaker.vowel_shift[1], 1.0])
    jitter = rng.uniform(0.97, 1.03, size=3)
    targets = np.full((frames, 3), np.nan)
    voicing = np.zeros(frames)
    aspiration = np.zeros(frames)
    for ph, start, length in zip(phones, starts, lengths, strict=True):
        sl = slice(start, start + length)
        if ph.formants is not None:
            begin = np.array(ph.formants, dtype=float)
            end = np.array(ph.end if ph.end is not None else ph.formants, dtype=float)
            ramp = np.linspace(0.0, 1.0, length)[:, None]
            targets[sl] = (begin + (end - begin) * ramp) * shift * jitter
        voicing[sl] = ph.voicing
        aspiration[sl] = ph.aspiration
    # Inherited targets (aspiration) take the following phone's; padding holds the ends.
    for i in range(frames - 2, -1, -1):
        if np.isnan(targets[i, 0]):
            targets[i] = targets[i + 1]
    for i in range(1, frames):
        if np.isnan(targets[i, 0]):
            targets[i] = targets[i - 1]
    formants = _smooth(targets, int(round(0.03 / frame_s))) * speaker.formant_scale
    formants = np.minimum(formants, 0.42 * sample_rate)
    # Fixed upper formants F4, F5 scale with the vocal tract as well.
    upper = np.array([3300.0, 4400.0]) * speaker.formant_scale
    freqs = np.concatenate([formants, np.broadcast_to(upper, (frames, 2))], axis=1)
    freqs = np.minimum(freqs, 0.45 * sample_rate)
    bws = np.empty_like(freqs)
    for ph, start, length in zip(phones, starts, lengths, strict=True):
        bws[start : start + length, :3] = ph.bandwidths
    bws[:pad, :3] = phones[0].bandwidths
    bws[pad + sum(lengths) :, :3] = phones[-1].bandwidths
    bws[:, :3] = _smooth(bws[:, :3], int(round(0.02 / frame_s)))
    bws[:, 3:] = (250.0, 300.0)

    # Per-sample source: pitch contour (rise-fall accent plus declination) and jitter.
    n = frames * _BLOCK
    t = np.linspace(0.0, 1.0, n)
    peak = rng.uniform(0.2, 0.45)
    accent = speaker.pitch_range * np.exp(-0.5 * ((t - peak) / 0.18) ** 2)
    vibrato = 0.01 * _smooth(rng.standard_normal(frames), 15).repeat(_BLOCK)
    f0 = speaker.f0 * pitch * (1.0 + accent - 0.12 * t + vibrato)
    source = _glottal_source(f0, speaker.open_quotient, sample_rate)
    noise = rng.standard_normal(n)
    av = np.interp(np.arange(n), np.arange(frames) * _BLOCK, _smooth(voicing, 5))
    ah = np.interp(np.arange(n), np.arange(frames) * _BLOCK, _smooth(aspiration, 5))
    breath = speaker.breathiness * av * noise * (source > 0)
    excitation = av * source + (ah + breath) * noise * 0.6
    out = formant_cascade(excitation, freqs, bws, sample_rate, _BLOCK)

    # Frication and bursts: noise through each phone's band-pass, under its envelope.
    fric_noise = rng.standard_normal(n)
    for ph, start, length in zip(phones, starts, lengths, strict=True):
        if ph.frication is None:
            continue
        centre, bandwidth, amplitude = ph.frication
        envelope = np.zeros(frames)
        envelope[start : start + length] = amplitude
        envelope = _smooth(envelope, max(1, min(5, length // 2)))
        b_bp, a_bp = _bandpass(centre * np.sqrt(speaker.formant_scale), bandwidth, sample_rate)
        band = _signal().lfilter(b_bp, a_bp, fric_noise)
        out += band * np.interp(np.arange(n), np.arange(frames) * _BLOCK, envelope) * 2.0
    return out / max(float(np.max(np.abs(out))), 1e-9)


# --------------------------------------------------------------------------- one clip
def _trim(dry: np.ndarray, sample_rate: int) -> np.ndarray:
    """Cut leading/trailing silence (below -50 dB of the peak), keep 10 ms margins."""
    peak = float(np.max(np.abs(dry))) if dry.size else 0.0
    if peak <= 0.0:
        raise DataError("the speech engine returned silence")
    active = np.flatnonzero(np.abs(dry) > peak * 10 ** (-50 / 20))
    margin = int(0.01 * sample_rate)
    return dry[max(0, active[0] - margin) : active[-1] + margin + 1] / peak


def _room_response(speaker: Speaker, rng: np.random.Generator) -> np.ndarray:
    """A room impulse response: the direct path, then an exponentially decaying noise tail.

    The tail decays by 60 dB over ``speaker.room_rt60`` seconds (Sabine's reverberation
    time) and loses its highs faster than its lows (air and wall absorption, a one-pole
    low-pass); its energy is ``speaker.room_drr_db`` below the direct path. The tail's noise
    is drawn from ``rng``, so every take has its own microphone position in the same room.

    Args:
        speaker: Owner of the room.
        rng: The take's generator.

    Returns:
        The impulse response at ``SYNTH_RATE``, shape (taps,), ``h[0] == 1``.
    """
    taps = max(2, int(speaker.room_rt60 * SYNTH_RATE))
    t = np.arange(1, taps) / SYNTH_RATE
    tail = rng.standard_normal(taps - 1) * np.exp(-6.91 * t / speaker.room_rt60)
    tail = _signal().lfilter([0.5], [1.0, -0.5], tail)
    tail *= np.sqrt(10 ** (-speaker.room_drr_db / 10) / float(np.sum(tail**2)))
    return np.concatenate([[1.0], tail])


def _render_clip(
    dry: np.ndarray, speaker: Speaker, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Place a dry word in the clip window, add noise and the channel, scale to int16.

    Everything is done at ``SYNTH_RATE``; an 8 kHz clip is then decimated by 2 (polyphase
    anti-alias filter), like a telephone-band recording.

    Args:
        dry: The word at ``SYNTH_RATE``, shape (time,).
        speaker: Owner of the channel (EQ, band limits, noise colour).
        rng: The take's generator (onset, SNR, loudness, noise).
        sample_rate: Rate of the returned clip, one of ``SAMPLE_RATES``; default 8000.

    Returns:
        The clip, shape (round(sample_rate * CLIP_SECONDS),), int16, peak below full scale.
    """
    n = int(round(SYNTH_RATE * CLIP_SECONDS))
    word = _trim(dry, SYNTH_RATE)
    longest = int(0.92 * n)
    if word.size > longest:  # a slow take: keep the start, fade out the end
        word = word[:longest].copy()
        fade = int(0.02 * SYNTH_RATE)
        word[-fade:] *= np.linspace(1.0, 0.0, fade)
    margin = int(0.04 * SYNTH_RATE)
    onset = int(rng.integers(min(margin, n - word.size), max(margin, n - word.size - margin) + 1))
    clip = np.zeros(n)
    clip[onset : onset + word.size] = word
    # The room: its reverberant tail smears the word in time (cut at the window's end).
    if speaker.room_rt60 > 0.0:
        clip = _signal().fftconvolve(clip, _room_response(speaker, rng))[:n]
    # Background noise at a random SNR over the word, coloured by a one-pole low-pass.
    snr_db = rng.uniform(*_SNR_DB)
    noise = _signal().lfilter(
        [1.0 - speaker.noise_colour], [1.0, -speaker.noise_colour], rng.standard_normal(n)
    )
    word_power = float(np.mean(word**2))
    noise *= np.sqrt(word_power / 10 ** (snr_db / 10) / max(float(np.mean(noise**2)), 1e-20))
    clip += noise
    # Channel: band limits and a mild peaking EQ (microphone and room colouring).
    sos = _signal().butter(
        2, [speaker.highpass, speaker.lowpass], btype="bandpass", fs=SYNTH_RATE, output="sos"
    )
    clip = _signal().sosfilt(sos, clip)
    b, a = _peaking(speaker.eq_freq, speaker.eq_gain_db, speaker.eq_q, SYNTH_RATE)
    clip = _signal().lfilter(b, a, clip)
    if sample_rate != SYNTH_RATE:
        clip = _signal().resample_poly(clip, sample_rate, SYNTH_RATE)
    # Loudness: peak between -18 and -3 dBFS, so never clipped.
    clip *= 10 ** (rng.uniform(-18.0, -3.0) / 20) / float(np.max(np.abs(clip)))
    return np.round(clip * 32767.0).astype(np.int16)


def _write_wav(path: Path, clip: np.ndarray, sample_rate: int) -> None:
    """A canonical 44-byte-header PCM WAV (byte-identical for identical samples)."""
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sample_rate)
        handle.writeframes(clip.astype("<i2").tobytes())


# --------------------------------------------------------------------------- engines
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
    from audioar.speech import espeak_available  # subprocess-only use of eSpeak NG

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
        from audioar.speech import Utterance

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
        from audioar.speech import ESPEAK_SAMPLE_RATE, speak

        for i, pcm in enumerate(speak(utterances)):
            # 22,050 Hz -> 16,000 Hz is exactly 320/441; a larger `down` reads the samples
            # as if spoken at a higher rate: formants and pitch up, duration down.
            up = SYNTH_RATE // 50
            down = round(ESPEAK_SAMPLE_RATE // 50 * _espeak_warp(speakers[jobs[i][0]]))
            audio = _signal().resample_poly(pcm.astype(np.float64) / 32768.0, up, down)
            out[i] = (audio, out[i][1])
    return out


def _espeak_warp(speaker: Speaker) -> float:
    """Vocal-tract length factor the espeak engine applies by resampling (about 0.93-1.07).

    eSpeak NG's voice variants set formants per sex; the speaker's own factor within its
    sex (``formant_scale`` without the female 1.15) is applied on top, so that speakers
    sharing a variant still differ in vocal-tract length, as the formant engine's do.
    """
    female = speaker.espeak_voice.rsplit("+", 1)[-1] in _ESPEAK_FEMALE
    return speaker.formant_scale / (1.15 if female else 1.0)


# --------------------------------------------------------------------------- data sets
def _split_speakers(ids: list[str]) -> tuple[list[str], list[str]]:
    """Whole speakers for validation and test (one in six each), ranked by a hash of the id."""
    count = max(1, round(len(ids) / 6))
    ranked = sorted(ids, key=lambda s: hashlib.sha1(f"split-{s}".encode()).hexdigest())
    return ranked[count : 2 * count], ranked[:count]


_HOLDS_WORD = (
    "{seconds:g} s holds the whole word but for the slowest takes (under 1 %), whose ends are "
    "faded out"
)


def _readme(meta: dict) -> str:
    engine_text = {
        "formant": "the built-in formant synthesiser (a source-filter model: Rosenberg glottal "
        "pulses and aspiration noise through a cascade of formant resonators following each "
        "word's phonemes; fricatives and stop bursts are band-passed noise)",
        "espeak": "eSpeak NG (GPL-3, through the optional `espeakng-loader` wheel), spoken in "
        "a fresh worker process with fixed random seeds and resampled from 22,050 Hz",
    }[meta["engine"]]
    voice_text = {
        "formant": "pitch and its contour, vocal-tract length (formant scale), tempo, "
        "voice quality (open quotient, breathiness), vowel accent",
        "espeak": f"eSpeak NG English accent ({len(_ESPEAK_ACCENTS)} of them: US, New York, "
        "British, RP, Scottish, Lancastrian, West Midlands, Caribbean; 40 % US), voice variant "
        "(male and female), vocal-tract length (resampling, +-7 %), pitch, pitch range, "
        "speaking rate",
    }[meta["engine"]]
    words = meta["words"]
    rate, seconds = meta["sample_rate"], meta["clip_seconds"]
    n_val, n_test = len(meta["validation_speakers"]), len(meta["testing_speakers"])
    n_train = len(meta["speakers"]) - n_val - n_test
    per_class = meta["clips"] // len(words)
    takes = meta["takes"]
    rate_text = f"{seconds:g} s, {rate / 1000:g} kHz, mono, 16-bit PCM"
    if rate != 16_000:
        rate_text += (
            " (Speech Commands has 1 s at 16 kHz: the layout is what matters here. audioar's "
            "features work at 8 kHz anyway, and shorter 8 kHz clips leave room for more "
            "speakers in under 20 MB; `audioar data synth --sample-rate 16000` writes 16 kHz "
            f"clips; {_HOLDS_WORD.format(seconds=seconds)})"
        )
    elif seconds != 1.0:
        rate_text += f" (Speech Commands has 1 s clips; {_HOLDS_WORD.format(seconds=seconds)})"
    return (
        f"# audioar synthetic spoken words (synth-v{meta['version']})\n\n"
        f"Made offline by audioar's data synthesiser (`audioar data synth`, audioar "
        f"{meta['audioar']}) with engine "
        f"**{meta['engine']}** and seed **{meta['seed']}**: {engine_text}.\n"
        "The same engine, seed and options write byte-identical WAV files.\n\n"
        f"- Layout: Speech Commands, `<word>/<speaker>_nohash_<take>.wav`; {rate_text}.\n"
        f"- Classes ({len(words)}): {', '.join(words)}."
        f"{' The demo uses `zero` as the normal class.' if 'zero' in words else ''}\n"
        f"- Speakers: {len(meta['speakers'])} ({n_train} train, {n_val} validation, "
        f"{n_test} test); takes per speaker and word: {takes}; clips: {meta['clips']} "
        f"({per_class} per class: {n_train * takes} train, {n_val * takes} validation, "
        f"{n_test * takes} test).\n"
        "- Splits: `validation_list.txt` and `testing_list.txt` list the clips of whole "
        "speakers (speaker-disjoint, like Speech Commands); every other clip is training data.\n"
        f"- Speaker variation: {voice_text}; per speaker a room (reverberation time "
        f"{_ROOM_RT60[0]:g}-{_ROOM_RT60[1]:g} s, direct-to-reverberant ratio "
        f"{_ROOM_DRR_DB[0]:g}-{_ROOM_DRR_DB[1]:g} dB) and a channel (band limits and a mild "
        f"peaking EQ, +-{_EQ_DB:g} dB); per take: tempo, pitch, loudness (peak -18 to -3 dBFS), "
        f"background noise (SNR {_SNR_DB[0]:g}-{_SNR_DB[1]:g} dB, white to brown-ish), random "
        "onset in the window.\n"
        "- No recordings of people are included.\n"
    )


def _generate(
    folder: Path,
    *,
    seed: int,
    engine: str,
    speakers: int,
    takes: int,
    words: Sequence[str],
    sample_rate: int,
) -> dict:
    """Write the whole data set into the (empty, existing) ``folder``; return its metadata."""
    from audioar import __version__

    start = time.perf_counter()
    people = [make_speaker(seed, i) for i in range(speakers)]
    jobs = [(i, w, t) for w in words for i in range(speakers) for t in range(takes)]
    dry = _dry_clips(engine, jobs, people, seed)
    validation, testing = _split_speakers([p.id for p in people])
    lists: dict[str, list[str]] = {"validation": [], "testing": []}
    for word in words:
        (folder / word).mkdir()
    for (index, word, take), (audio, rng) in zip(jobs, dry, strict=True):
        name = f"{word}/{people[index].id}_nohash_{take}.wav"
        clip = _render_clip(audio, people[index], rng, sample_rate)
        _write_wav(folder / name, clip, sample_rate)
        if people[index].id in validation:
            lists["validation"].append(name)
        elif people[index].id in testing:
            lists["testing"].append(name)
    (folder / "validation_list.txt").write_text("".join(f"{n}\n" for n in lists["validation"]))
    (folder / "testing_list.txt").write_text("".join(f"{n}\n" for n in lists["testing"]))
    meta = {
        "format": "audioar-synth",
        "version": _FORMAT_VERSION,
        "audioar": __version__,
        "engine": engine,
        "seed": seed,
        "words": list(words),
        "takes": takes,
        "speakers": [p.id for p in people],
        "validation_speakers": validation,
        "testing_speakers": testing,
        "clips": len(jobs),
        "sample_rate": sample_rate,
        "clip_seconds": CLIP_SECONDS,
    }
    (folder / "README.md").write_text(_readme(meta))
    (folder / MARKER_FILE).write_text(json.dumps(meta, indent=2) + "\n")  # last: complete
    logger.info(
        "synthesised %d clips with %s in %.1f s", len(jobs), engine, time.perf_counter() - start
    )
    return meta


def _check_options(
    seed: int, speakers: int, takes: int, words: Sequence[str], sample_rate: int
) -> tuple[str, ...]:
    if sample_rate not in SAMPLE_RATES:
        raise ConfigError(
            f"sample_rate must be one of {', '.join(map(str, SAMPLE_RATES))}, got {sample_rate}"
        )
    if isinstance(words, str):
        words = [w for w in words.split(",") if w]
    words = tuple(w.strip().lower() for w in words)
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    if speakers < 3:
        raise ConfigError(f"speakers must be >= 3 (train, validation and test), got {speakers}")
    if takes < 1:
        raise ConfigError(f"takes must be >= 1, got {takes}")
    if not words or len(set(words)) != len(words):
        raise ConfigError(f"words must be distinct and not empty, got {list(words)}")
    unknown = [w for w in words if w not in LEXICON]
    if unknown:
        raise ConfigError(f"no pronunciation for {', '.join(unknown)}; known: {', '.join(LEXICON)}")
    return words


def read_metadata(folder: str | os.PathLike) -> dict:
    """The metadata a synthetic data set folder was made with (its ``MARKER_FILE``).

    Args:
        folder: A folder written by ``synthesize_dataset`` or ``default_dataset``.

    Returns:
        Keys ``format, version, audioar, engine, seed, words, takes, speakers,
        validation_speakers, testing_speakers, clips, sample_rate, clip_seconds``
        (``clip_seconds`` from version 2 on).

    Raises:
        DataError: The folder is not a (complete) synthetic data set.
    """
    path = Path(folder) / MARKER_FILE
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a synthetic data set marker ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != "audioar-synth":
        raise DataError(f"{path}: not a synthetic data set marker")
    return meta


def _temp_sibling(target: Path, kind: str) -> Path:
    """A new empty folder beside ``target`` (same file system, so renames are atomic)."""
    folder = target.parent / f".{target.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"
    folder.mkdir()  # unlike tempfile.mkdtemp, honours the umask (0755, not 0700)
    return folder


def _is_synth_folder(folder: Path) -> bool:
    return (folder / MARKER_FILE).is_file()


def _replace_folder(new: Path, target: Path) -> None:
    """Put the finished folder ``new`` at ``target`` (renames; the old one is removed)."""
    if target.exists():
        old = _temp_sibling(target, "old")
        os.replace(target, old / target.name)
        os.rename(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(new, target)


def synthesize_dataset(
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    engine: str = "auto",
    speakers: int = DEFAULT_SPEAKERS,
    takes: int = DEFAULT_TAKES,
    words: Sequence[str] = DEFAULT_WORDS,
    sample_rate: int = SAMPLE_RATE,
    force: bool = False,
) -> Path:
    """Write the synthetic spoken-word data set to ``out_dir`` (offline, deterministic).

    The folder appears whole or not at all: everything is written into a temporary sibling
    folder that is then renamed to ``out_dir``.

    Args:
        out_dir: Folder to create; must be absent or empty unless ``force``.
        seed: Seed of every random draw; default 0. Same seed, same bytes.
        engine: ``"auto"`` (eSpeak NG when it works, else formant), ``"espeak"`` or
            ``"formant"``; default ``"auto"``.
        speakers: Number of speakers (>= 3); default 42. One in six (at least one) goes
            to validation, as many to test: by default 28 train, 7 validation, 7 test.
        takes: Takes per speaker and word; default 3 (so 84 training, 21 validation and
            21 test clips per word by default).
        words: Class names, keys of ``LEXICON``; default the ten digits.
        sample_rate: Rate of the written clips, 8000 or 16000 Hz; default 8000 (clips are
            ``CLIP_SECONDS`` = 0.8 s long either way: 12,844 bytes at 8 kHz).
        force: Replace an existing data set made by this function; default False.

    Returns:
        ``out_dir`` as a Path.

    Raises:
        ConfigError: Bad options or an unavailable engine.
        DataError: ``out_dir`` is a file, or a non-empty folder (without ``force``, or not a
            synthetic data set).

    Example:
        >>> root = synthesize_dataset("data/synth", seed=0, engine="formant")
        >>> sorted(p.name for p in root.iterdir())[:3]
        ['.audioar-synth.json', 'README.md', 'eight']
    """
    out = Path(out_dir).expanduser()
    words = _check_options(seed, speakers, takes, words, sample_rate)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise DataError(f"{out}: folder exists and is not empty (use --force to replace it)")
        if not _is_synth_folder(out):
            raise DataError(
                f"{out}: refusing to replace a folder that is not a synthetic data set "
                f"({MARKER_FILE} missing)"
            )
    name = resolve_engine(engine)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(out, "tmp")
    try:
        _generate(
            tmp,
            seed=seed,
            engine=name,
            speakers=speakers,
            takes=takes,
            words=words,
            sample_rate=sample_rate,
        )
        _replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def default_dataset_name(engine: str = "auto", seed: int = 0) -> str:
    """Cache folder name of the default data set, e.g. ``synth-v2-formant-seed0``."""
    return f"synth-v{_FORMAT_VERSION}-{resolve_engine(engine)}-seed{seed}"


def default_dataset(*, engine: str = "auto") -> Path:
    """The default data set (seed 0, default options), generated on first use.

    Lives in ``audioar.paths.cache_root() / "synth-v2-<engine>-seed0"`` (version 2: 42
    speakers x 3 takes x 10 words, 0.8 s at 8 kHz, about 16 MB; version 1 folders, 16
    speakers at 16 kHz, are not reused). It is generated
    into a temporary sibling folder and renamed into place, so a partial folder is never
    returned; later calls (and concurrent ones that lose the race) reuse it.

    Args:
        engine: As in ``synthesize_dataset``; default ``"auto"``.

    Returns:
        The data set folder.
    """
    name = resolve_engine(engine)
    target = cache_root() / default_dataset_name(name)
    if _is_synth_folder(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(target, "tmp")
    try:
        _generate(
            tmp,
            seed=0,
            engine=name,
            speakers=DEFAULT_SPEAKERS,
            takes=DEFAULT_TAKES,
            words=DEFAULT_WORDS,
            sample_rate=SAMPLE_RATE,
        )
        try:
            os.rename(tmp, target)  # atomic; fails if another process got there first
        except OSError:
            if not _is_synth_folder(target):  # a stale, incomplete folder: replace it
                _replace_folder(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("default data set ready at %s", target)
    return target
