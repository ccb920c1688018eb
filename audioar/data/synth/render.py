"""Rendering: the formant engine's words and one finished clip (room, noise, channel).

``formant_word`` is a source-filter model: a glottal pulse train (Rosenberg pulse,
differentiated for lip radiation) and aspiration noise drive a cascade of formant
resonators whose targets follow the word's phonemes with smooth transitions; fricatives
and stop bursts are noise through their own band-pass filters. ``_render_clip`` places any
engine's dry word in the clip window, adds the speaker's room, background noise and
channel at ``SYNTH_RATE`` and decimates to the output rate.

References:
    Klatt, "Software for a cascade/parallel formant synthesizer", JASA 67(3), 1980.
    Rosenberg, "Effect of glottal pulse shape on the quality of natural vowels",
    JASA 49(2B), 1971.
    Polack, "Playing billiards in the concert hall: the mathematical foundations of
    geometrical room acoustics", Applied Acoustics 38, 1993 (exponentially decaying noise
    as a room's late reverberation).
"""

from __future__ import annotations

import numpy as np

from audioar.data.synth.dsp import _bandpass, _peaking, _signal, _smooth, formant_cascade
from audioar.data.synth.phones import _PHONES, LEXICON
from audioar.data.synth.voices import Speaker
from audioar.errors import ConfigError, DataError

__all__ = ["SAMPLE_RATE", "SAMPLE_RATES", "SYNTH_RATE", "CLIP_SECONDS", "formant_word"]

SAMPLE_RATE = 8_000  # default rate of the written clips (the pipeline's feature rate)
SAMPLE_RATES = (8_000, 16_000)  # rates the clips can be written at (Speech Commands: 16 kHz)
SYNTH_RATE = 16_000  # words, noise and channel are made at this rate, then decimated
CLIP_SECONDS = 0.8  # clip length (Speech Commands: 1 s)
_BLOCK = 32  # samples per control frame (2 ms at 16 kHz): formant coefficients update rate
_SNR_DB = (10.0, 32.0)  # background noise level over the word, per take


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
