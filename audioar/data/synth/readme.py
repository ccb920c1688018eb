"""The README.md written into every synthetic data set, from its metadata."""

from __future__ import annotations

from audioar.data.synth.render import _SNR_DB
from audioar.data.synth.voices import _EQ_DB, _ESPEAK_ACCENTS, _ROOM_DRR_DB, _ROOM_RT60

__all__: list[str] = []

_HOLDS_WORD = (
    "{seconds:g} s holds the whole word but for the slowest takes (under 1 %), whose ends are "
    "faded out"
)


def _readme(meta: dict) -> str:
    """The README.md text of a data set with metadata ``meta`` (as in ``read_metadata``)."""
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
