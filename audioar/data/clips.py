"""What a data set is made of: clips, the data set, and its train/validation/test parts.

The plain types shared by :mod:`audioar.data.discovery` (discovery, which re-exports them),
:mod:`audioar.data.layouts` (DCASE names) and :mod:`audioar.data.splits` (splitting), kept
apart so that none of those modules imports another.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DCASE_LAYOUTS",
    "LAYOUTS",
    "UNLABELED",
    "Clip",
    "Dataset",
    "Split",
    "clips_with_label",
]

# The layouts :func:`audioar.data.discovery.discover` knows, by the names its ``layout=`` accepts.
LAYOUTS: tuple[str, ...] = ("folders", "fsdd", "audiomnist", "manifest", "dcase2020", "dcase2021")
# Machine-monitoring layouts: one machine type, labels "normal"/"anomaly", groups and domains.
DCASE_LAYOUTS: tuple[str, ...] = ("dcase2020", "dcase2021")
# The label of a clip whose name carries none (DCASE evaluation sets): scored, never evaluated,
# never trained on. Left out of ``Dataset.labels``.
UNLABELED = ""
_PART_ORDER = {"train": 0, "validation": 1, "test": 2}


@dataclass(frozen=True)
class Clip:
    """One audio file and what is known about it."""

    path: Path  # the audio file
    label: str  # its class
    speaker: str | None = None  # who is speaking, when the layout says
    split: str | None = None  # the data set's own part: "train", "validation" or "test"
    take: int | None = None  # repetition number (FSDD take, Speech Commands nohash index)
    # the machine ID ("id_00", DCASE 2020) or section ("section_00", DCASE 2021+) a clip was
    # recorded from: the class a group-conditional model is conditioned on
    group: str | None = None
    domain: str | None = None  # DCASE 2021+: "source" or "target"
    attributes: str | None = None  # DCASE 2022+: the attribute string after the clip number


@dataclass
class Dataset:
    """The clips of one data set, sorted by path."""

    root: Path  # the folder (or manifest file) it was discovered from
    layout: str  # one of LAYOUTS: "folders" | "fsdd" | "audiomnist" | "manifest" | "dcase20..."
    clips: list[Clip] = field(default_factory=list)
    machine: str | None = None  # DCASE layouts: the machine type (the folder's name, e.g. "fan")

    @property
    def labels(self) -> list[str]:
        """Sorted unique labels (``UNLABELED`` clips left out)."""
        return sorted({c.label for c in self.clips if c.label != UNLABELED})

    @property
    def normal(self) -> str | None:
        """The class of normal clips -- the implied target -- when the layout says (DCASE).

        ``"normal"`` for the DCASE layouts, whose training clips are all normal; ``None``
        for the others, where the user names the target class.
        """
        return "normal" if self.layout in DCASE_LAYOUTS else None

    @property
    def domains(self) -> list[str]:
        """Sorted unique domains (``"source"``, ``"target"``; clips without one left out)."""
        return sorted({c.domain for c in self.clips if c.domain is not None})

    @property
    def groups(self) -> list[str]:
        """Sorted unique groups (machine IDs or sections; clips without one left out)."""
        return sorted({c.group for c in self.clips if c.group is not None})

    @property
    def speakers(self) -> list[str]:
        """Sorted unique speakers (clips without one are left out)."""
        return sorted({c.speaker for c in self.clips if c.speaker is not None})

    def by_label(self, label: str) -> list[Clip]:
        """The clips of one label, in data set order."""
        return clips_with_label(self.clips, label)

    def summary(self) -> pd.DataFrame:
        """Clip counts per official part, label, group and domain.

        Returns:
            A DataFrame with columns ``part, label, group, domain, clips``: one row per
            combination present, parts in train/validation/test order (``None`` when the
            data set has no official split), then sorted by label, group and domain. A
            column is ``None`` where it does not apply (no group, no domain); unlabeled clips
            show the label ``"(unlabeled)"``.

        Example:
            >>> discover("dev_data/fan").summary()  # doctest: +SKIP
                part    label  group domain  clips
            0  train   normal  id_00   None    911
            1   test  anomaly  id_00   None    407
            ...
        """
        import pandas as pd  # only here: the clip types stay cheap to import

        counts = Counter(
            (c.split, "(unlabeled)" if c.label == UNLABELED else c.label, c.group, c.domain)
            for c in self.clips
        )

        def order(key: tuple[str | None, ...]) -> tuple:
            part, *rest = key
            return (_PART_ORDER.get(part, 3), *((v is None, v or "") for v in rest))

        keys = sorted(counts, key=order)
        columns = {
            name: pd.Series([k[i] for k in keys], dtype=object)
            for i, name in enumerate(("part", "label", "group", "domain"))
        }
        columns["clips"] = pd.Series([counts[k] for k in keys], dtype="int64")
        return pd.DataFrame(columns)

    def describe(self) -> str:
        """One line: layout, machine, labels, groups, domains and clips per part.

        Example:
            >>> discover("dev_data/fan").describe()  # doctest: +SKIP
            'dcase2020 fan: 5550 clips; labels anomaly, normal; 4 groups (id_00, ...); ...'
        """
        head = self.layout + (f" {self.machine}" if self.machine else "")
        bits = [f"{len(self.clips)} clips"]
        unlabeled = sum(c.label == UNLABELED for c in self.clips)
        labels = f"labels {_listing(self.labels)}"
        bits.append(labels + (f" (+{unlabeled} unlabeled)" if unlabeled else ""))
        if self.groups:
            bits.append(f"{len(self.groups)} groups ({_listing(self.groups)})")
        if self.domains:
            bits.append(f"domains {_listing(self.domains)}")
        if self.speakers:
            bits.append(f"{len(self.speakers)} speakers")
        parts = Counter(c.split for c in self.clips)
        shown = sorted(parts, key=lambda p: _PART_ORDER.get(p, 3))
        bits.append(
            "parts " + ", ".join(f"{p if p else 'unsplit'} {parts[p]}" for p in shown)
            if any(p is not None for p in parts)
            else "no official split"
        )
        return f"{head}: " + "; ".join(bits)

    def __len__(self) -> int:
        return len(self.clips)


def _listing(items: list[str], limit: int = 8) -> str:
    """``"a, b, c"``, or the first ``limit`` items and ``"... (N)"`` when there are more."""
    if len(items) <= limit:
        return ", ".join(items) if items else "none"
    return ", ".join(items[:limit]) + f", ... ({len(items)})"


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
            labels = len({c.label for c in clips if c.label != UNLABELED})
            bits.append(f"{part} {len(clips)} clips ({speakers} speakers, {labels} labels)")
        return f"{self.name}: " + ", ".join(bits)
