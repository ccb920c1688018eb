"""Phone tables of the formant engine and the lexicon of words it can say.

Each phoneme (or stop phase) is a ``_Phone``: formant targets F1-F3 for an adult male
speaker, a duration at tempo 1.0, and its sources (voicing, aspiration, frication).
``LEXICON`` spells every word the data set can hold as a sequence of these phones.

References:
    Peterson & Barney, "Control methods used in a study of the vowels", JASA 24(2), 1952.
    Hillenbrand et al., "Acoustic characteristics of American English vowels",
    JASA 97(5), 1995.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LEXICON"]


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
    """A vowel: fully voiced, formant targets ``f`` (moving to ``end`` in a diphthong)."""
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
