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
- ``espeak`` (optional extra ``speech``): eSpeak NG through ``audioar.data.synth.espeak``, each
  speaker with one of eSpeak's English accents (US, British, Scottish, Caribbean, ...) and
  voice variants, its vocal-tract length applied by resampling.

Both engines share the speaker, room and channel variation (``voices``, ``render``): pitch and its
contour, vocal-tract length (formant scale), tempo, loudness, room reverberation, a mild
random EQ, additive noise at a random SNR and a random onset inside the clip window. Words,
rooms and channels are made at 16 kHz (``SYNTH_RATE``) and decimated to the output rate.
Every random draw comes from a generator seeded by ``(seed, speaker, word, take)``, so the
same seed gives byte-identical files.

Modules (one job each):

- ``phones``: the formant engine's phone tables and ``LEXICON``.
- ``dsp``: formant resonators, the block-constant all-pole filter and its reference, biquads.
- ``voices``: ``Speaker`` and ``make_speaker`` (voice, eSpeak NG accent, room, channel).
- ``render``: the formant engine's words and one finished clip (room, noise, channel).
- ``engines``: ``resolve_engine`` and the dry word of every take, per engine.
- ``readme``: the README written into every data set.
- ``dataset``: splits, marker, ``synthesize_dataset``, ``default_dataset``, ``read_metadata``.
- ``machine``: a fan/pump-like machine-sound set in the DCASE 2020 Task 2 layout, with
  bearing, imbalance, rubbing and clogging anomalies (``synthesize_machine_dataset``,
  ``default_machine_dataset``, ``read_machine_metadata``).

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

from audioar.data.synth.dataset import (
    DEFAULT_SPEAKERS,
    DEFAULT_TAKES,
    DEFAULT_WORDS,
    MARKER_FILE,
    default_dataset,
    default_dataset_name,
    read_metadata,
    synthesize_dataset,
)
from audioar.data.synth.dsp import allpole_blocks, allpole_blocks_reference, formant_cascade
from audioar.data.synth.engines import ENGINES, resolve_engine
from audioar.data.synth.machine import (
    ANOMALY_SEVERITY,
    ANOMALY_TYPES,
    DEFAULT_MACHINE_IDS,
    MACHINE_SAMPLE_RATES,
    MACHINE_TYPES,
    MachineCharacter,
    default_machine_dataset,
    default_machine_dataset_name,
    machine_character,
    read_machine_metadata,
    synthesize_machine_dataset,
)
from audioar.data.synth.phones import LEXICON
from audioar.data.synth.render import (
    CLIP_SECONDS,
    SAMPLE_RATE,
    SAMPLE_RATES,
    SYNTH_RATE,
    formant_word,
)
from audioar.data.synth.voices import Speaker, make_speaker

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
    "MACHINE_TYPES",
    "ANOMALY_TYPES",
    "ANOMALY_SEVERITY",
    "MACHINE_SAMPLE_RATES",
    "DEFAULT_MACHINE_IDS",
    "MachineCharacter",
    "machine_character",
    "synthesize_machine_dataset",
    "default_machine_dataset",
    "default_machine_dataset_name",
    "read_machine_metadata",
]
