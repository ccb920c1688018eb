"""What a data set is made of: clips, the data set, and its train/validation/test parts.

The plain types shared by :mod:`audioar.data` (discovery, which re-exports them) and
:mod:`audioar.splits` (splitting), kept apart so that neither module imports the other.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Clip", "Dataset", "Split", "clips_with_label"]


@dataclass(frozen=True)
class Clip:
    """One audio file and what is known about it."""

    path: Path  # the audio file
    label: str  # its class
    speaker: str | None = None  # who is speaking, when the layout says
    split: str | None = None  # the data set's own part: "train", "validation" or "test"
    take: int | None = None  # repetition number (FSDD take, Speech Commands nohash index)


@dataclass
class Dataset:
    """The clips of one data set, sorted by path."""

    root: Path  # the folder (or manifest file) it was discovered from
    layout: str  # "folders" | "fsdd" | "manifest"
    clips: list[Clip] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        """Sorted unique labels."""
        return sorted({c.label for c in self.clips})

    @property
    def speakers(self) -> list[str]:
        """Sorted unique speakers (clips without one are left out)."""
        return sorted({c.speaker for c in self.clips if c.speaker is not None})

    def by_label(self, label: str) -> list[Clip]:
        """The clips of one label, in data set order."""
        return clips_with_label(self.clips, label)

    def __len__(self) -> int:
        return len(self.clips)


def clips_with_label(clips: Iterable[Clip], label: str) -> list[Clip]:
    """The clips carrying ``label``, order kept."""
    return [c for c in clips if c.label == label]


@dataclass
class Split:
    """Train, validation and test parts of a data set (disjoint)."""

    train: list[Clip]
    validation: list[Clip]
    test: list[Clip]
    name: str  # "official", "speaker:NAME" or "random"

    def parts(self) -> dict[str, list[Clip]]:
        """``{"train": [...], "validation": [...], "test": [...]}``."""
        return {"train": self.train, "validation": self.validation, "test": self.test}

    def describe(self) -> str:
        """One line of counts, e.g. ``official: train 2295 clips (6 speakers, 10 labels), ...``."""
        bits = []
        for part, clips in self.parts().items():
            speakers = len({c.speaker for c in clips if c.speaker is not None})
            labels = len({c.label for c in clips})
            bits.append(f"{part} {len(clips)} clips ({speakers} speakers, {labels} labels)")
        return f"{self.name}: " + ", ".join(bits)
