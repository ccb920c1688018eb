"""Data sets on disk and their train/validation/test splits.

Three layouts are recognised by :func:`discover`:

* ``folders`` -- a folder per class, the Speech Commands layout: ``root/LABEL/**/*.wav``.
  Speaker = the file name before ``_nohash_`` (``0a7c2a8d_nohash_0.wav``). The data set's
  own ``validation_list.txt`` / ``testing_list.txt`` in ``root`` give its split.
* ``fsdd`` -- one flat folder of ``{label}_{speaker}_{take}.wav`` (Free Spoken Digit
  Dataset); its own split puts takes 0-4 in test.
* ``manifest`` -- a CSV file ``path,label[,speaker][,split]``, paths relative to its folder.

:func:`split` then makes a :class:`Split` by scheme: ``official``, ``speaker:NAME`` or
``random``; :func:`loso_folds` gives one ``speaker:NAME`` split per speaker. Every split is
deterministic given its seed, its parts are disjoint, and speaker schemes never share a
speaker between train, validation and test.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audioar.calibration import MIN_REFERENCE
from audioar.errors import ConfigError, DataError
from audioar.io import AUDIO_EXTENSIONS

__all__ = [
    "Clip",
    "Dataset",
    "Split",
    "clips_with_label",
    "discover",
    "loso_folds",
    "split",
]

logger = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "validation", "test")
# Spellings accepted in a manifest's split column.
_SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "validation": "validation", "valid": "validation", "val": "validation", "dev": "validation",
    "test": "test", "testing": "test",
}  # fmt: skip
_FSDD_NAME = re.compile(r"^(?P<label>[^_]+)_(?P<speaker>.+)_(?P<take>\d+)$")
_NOHASH = re.compile(r"^(?P<speaker>.+?)_nohash_(?P<take>\d+)?")
_SHOW = 3  # how many offending names an error message lists
# Clips of each class a carved validation part takes at least (when the class keeps two for
# training): enough to calibrate a threshold on the target's.
_AT_LEAST = MIN_REFERENCE


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


# ----------------------------------------------------------------------------- discovery


def discover(root: str | os.PathLike[str]) -> Dataset:
    """Find the clips of a data set and recognise its layout.

    A CSV file is read as a manifest; a folder holding ``manifest.csv`` likewise. A folder
    with class sub-folders is the ``folders`` layout (sub-folders named ``_...`` or ``.``,
    such as ``_background_noise_``, are not classes; audio lying directly in ``root`` is
    then ignored). A flat folder of ``{label}_{speaker}_{take}`` files is ``fsdd``.

    Args:
        root: A data set folder or a CSV manifest.

    Returns:
        A :class:`Dataset` whose clips are sorted by path.

    Raises:
        DataError: ``root`` does not exist, holds no audio, has flat files not named
            ``{label}_{speaker}_{take}``, or is a manifest with missing columns or files.

    Example:
        >>> ds = discover("fsdd/recordings")  # doctest: +SKIP
        >>> len(ds), ds.labels[:3], ds.layout  # doctest: +SKIP
        (3000, ['0', '1', '2'], 'fsdd')
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: data set not found")
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise DataError(f"{root}: expected a data set folder or a CSV manifest")
        return _read_manifest(root)
    if (root / "manifest.csv").is_file():
        return _read_manifest(root / "manifest.csv")

    class_dirs, flat = [], []
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.is_dir():
                if not entry.name.startswith(("_", ".")):
                    class_dirs.append(entry.name)
            elif _is_audio(entry.name):
                flat.append(entry.name)
    clips = _folder_clips(root, sorted(class_dirs)) if class_dirs else []
    if clips:
        if flat:
            logger.warning("%s: ignoring %d audio files outside class folders", root, len(flat))
        return Dataset(root, "folders", clips)
    if flat:
        return Dataset(root, "fsdd", _fsdd_clips(root, sorted(flat)))
    exts = ", ".join(AUDIO_EXTENSIONS)
    raise DataError(f"{root}: no audio files ({exts}) found in it or in class folders")


def _is_audio(name: str) -> bool:
    return name.lower().endswith(AUDIO_EXTENSIONS) and not name.startswith(".")


def _read_list(path: Path) -> set[str]:
    """Relative paths listed one per line (Speech Commands lists), as POSIX strings."""
    if not path.is_file():
        return set()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read split list ({exc})") from None
    return {Path(line.strip()).as_posix() for line in lines if line.strip()}


def _folder_clips(root: Path, class_dirs: list[str]) -> list[Clip]:
    validation = _read_list(root / "validation_list.txt")
    testing = _read_list(root / "testing_list.txt")
    has_lists = bool(validation or testing)
    clips = []
    for label in class_dirs:
        for folder, subdirs, files in os.walk(root / label):
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
            for name in sorted(files):
                if not _is_audio(name):
                    continue
                path = Path(folder, name)
                rel = path.relative_to(root).as_posix()
                part = None
                if has_lists:
                    part = (
                        "test" if rel in testing else "validation" if rel in validation else "train"
                    )
                m = _NOHASH.match(name)
                speaker = m["speaker"] if m else None
                take = int(m["take"]) if m and m["take"] is not None else None
                clips.append(Clip(path, label, speaker, part, take))
    if has_lists:
        found = Counter(c.split for c in clips)
        missing = len(testing) + len(validation) - found["test"] - found["validation"]
        if missing > 0:
            logger.warning("%s: %d listed clips are not in the data set", root, missing)
    return sorted(clips, key=lambda c: c.path)


def _fsdd_clips(root: Path, names: list[str]) -> list[Clip]:
    clips, odd = [], []
    for name in names:
        m = _FSDD_NAME.match(name.rsplit(".", 1)[0])
        if m is None:
            odd.append(name)
            continue
        take = int(m["take"])
        part = "test" if take < 5 else "train"  # FSDD's own split: takes 0-4 are test
        clips.append(Clip(root / name, m["label"], m["speaker"], part, take))
    if odd:
        raise DataError(
            f"{root}: {len(odd)} audio files are neither in class folders nor named "
            f"{{label}}_{{speaker}}_{{take}}: {', '.join(odd[:_SHOW])}"
        )
    return clips


def _read_manifest(path: Path) -> Dataset:
    base = path.parent
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = [(c or "").strip().lower() for c in reader.fieldnames or []]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read manifest ({exc})") from None
    missing_cols = [c for c in ("path", "label") if c not in columns]
    if missing_cols:
        raise DataError(
            f"{path}: manifest lacks column(s) {', '.join(missing_cols)} "
            "(header path,label[,speaker][,split])"
        )
    if not rows:
        raise DataError(f"{path}: manifest has no rows")
    clips, absent = [], []
    for line, raw in enumerate(rows, start=2):
        # Keys None hold the surplus cells of a long row; ignore them.
        row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
        if not row["path"] or not row["label"]:
            raise DataError(f"{path}: line {line} has an empty path or label")
        part = row.get("split") or None
        if part is not None:
            if part.lower() not in _SPLIT_ALIASES:
                raise DataError(
                    f"{path}: line {line}: unknown split {part!r} (train/validation/test)"
                )
            part = _SPLIT_ALIASES[part.lower()]
        clip_path = base / row["path"]
        if not clip_path.is_file():
            absent.append(row["path"])
        clips.append(Clip(clip_path, row["label"], row.get("speaker") or None, part))
    if absent:
        raise DataError(
            f"{path}: {len(absent)} listed files do not exist: {', '.join(absent[:_SHOW])}"
        )
    return Dataset(path, "manifest", sorted(clips, key=lambda c: c.path))


# ----------------------------------------------------------------------------- splitting


def split(
    dataset: Dataset,
    scheme: str = "official",
    *,
    validation_fraction: float = 0.15,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Split:
    """Split a data set into train, validation and test parts.

    Schemes:

    * ``"official"`` -- the data set's own test part (FSDD takes 0-4, Speech Commands
      ``testing_list.txt``, a manifest's ``split`` column); its own validation part when it
      has one, else validation carved from train (stratified by label).
    * ``"speaker:NAME"`` -- test is every clip of speaker NAME; validation is whole other
      speakers (about ``validation_fraction`` of the rest), so no speaker is in two parts.
      Clips without a speaker are left out.
    * ``"random"`` -- a stratified (by label) random test part of ``test_fraction``, then
      a stratified validation part.

    Args:
        dataset: What :func:`discover` returned.
        scheme: ``"official"`` (default), ``"speaker:NAME"`` or ``"random"``.
        validation_fraction: Share of the training clips held out for validation (early
            stopping, calibration); default 0.15. 0 gives an empty validation part.
        test_fraction: Share of the clips in test for ``"random"``; default 0.2.
        seed: Seed of every random choice; default 0.

    Returns:
        A :class:`Split` whose parts are disjoint and keep data set order.

    Raises:
        DataError: Unknown scheme or speaker, no official test part, no speakers.
        ConfigError: A fraction outside ``[0, 1)``.

    Example:
        >>> parts = split(discover("fsdd/recordings"), "speaker:george")  # doctest: +SKIP
        >>> parts.describe()  # doctest: +SKIP
        'speaker:george: train 2000 clips (4 speakers, ...), ..., test 500 clips (1 speakers, ...)'
    """
    for name, value in (
        ("validation_fraction", validation_fraction),
        ("test_fraction", test_fraction),
    ):
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{name} must be in [0, 1), got {value!r}")
    rng = np.random.default_rng(seed)
    clips = dataset.clips
    if scheme == "official":
        test = [c for c in clips if c.split == "test"]
        if not test:
            hint = f"; speakers: {', '.join(dataset.speakers)}" if dataset.speakers else ""
            raise DataError(
                f"{dataset.root}: the {dataset.layout} layout has no official test split; "
                f"use scheme 'random' or 'speaker:NAME'{hint}"
            )
        validation = [c for c in clips if c.split == "validation"]
        train = [c for c in clips if c.split not in ("test", "validation")]
        if not validation:
            at_least = _AT_LEAST if validation_fraction > 0 else 0
            train, validation = _stratified_carve(train, validation_fraction, rng, at_least)
        return Split(train, validation, test, "official")
    if scheme.startswith("speaker:"):
        return _speaker_split(dataset, scheme.removeprefix("speaker:"), validation_fraction, rng)
    if scheme == "random":
        rest, test = _stratified_carve(clips, test_fraction, rng)
        at_least = _AT_LEAST if validation_fraction > 0 else 0
        train, validation = _stratified_carve(rest, validation_fraction, rng, at_least)
        return Split(train, validation, test, "random")
    if scheme == "loso":
        raise DataError("scheme 'loso' gives one split per speaker: use loso_folds(dataset)")
    raise DataError(f"unknown split scheme {scheme!r}: use official, random or speaker:NAME")


def loso_folds(
    dataset: Dataset, *, validation_fraction: float = 0.15, seed: int = 0
) -> list[Split]:
    """Leave-one-speaker-out: one ``speaker:NAME`` split per speaker, sorted by name.

    Args:
        dataset: What :func:`discover` returned.
        validation_fraction: As in :func:`split`; default 0.15.
        seed: As in :func:`split`; default 0 (the same seed for every fold).

    Returns:
        One :class:`Split` per speaker; every speaker is the test part exactly once.

    Raises:
        DataError: The clips carry no speaker, or there is only one speaker.
    """
    speakers = dataset.speakers
    if len(speakers) < 2:
        found = "no speaker information" if not speakers else f"only speaker {speakers[0]}"
        raise DataError(f"{dataset.root}: leave-one-speaker-out needs two speakers, found {found}")
    return [
        split(dataset, f"speaker:{s}", validation_fraction=validation_fraction, seed=seed)
        for s in speakers
    ]


def _speaker_split(dataset: Dataset, name: str, fraction: float, rng: np.random.Generator) -> Split:
    known = dataset.speakers
    if not known:
        raise DataError(
            f"{dataset.root}: clips carry no speaker; use scheme 'official' or 'random'"
        )
    if name not in known:
        raise DataError(f"unknown speaker {name!r}; known speakers: {', '.join(known)}")
    eligible = [c for c in dataset.clips if c.speaker is not None]
    if len(eligible) < len(dataset.clips):
        logger.warning(
            "%s: leaving out %d clips without a speaker from split speaker:%s",
            dataset.root, len(dataset.clips) - len(eligible), name,
        )  # fmt: skip
    test = [c for c in eligible if c.speaker == name]
    rest = [c for c in eligible if c.speaker != name]
    if not rest:
        raise DataError(f"{dataset.root}: speaker:{name} leaves no other speaker to train on")
    held = _pick_speakers(rest, fraction, rng)
    if held is None:
        if fraction > 0:
            logger.warning(
                "speaker:%s: one training speaker only; validation is a random carve of it", name
            )
        train, validation = _stratified_carve(rest, fraction, rng)
    else:
        train = [c for c in rest if c.speaker not in held]
        validation = [c for c in rest if c.speaker in held]
    return Split(train, validation, test, f"speaker:{name}")


def _pick_speakers(clips: list[Clip], fraction: float, rng: np.random.Generator) -> set[str] | None:
    """Whole speakers making up about ``fraction`` of ``clips`` (at least one, never all).

    Speakers are tried in a seeded order; one whose removal would leave a label with no
    training clip is passed over when another will do. ``None`` when fewer than two
    speakers (a speaker-disjoint carve is impossible); an empty set when ``fraction`` is 0.
    """
    counts = Counter(c.speaker for c in clips)
    speakers = sorted(counts)
    if len(speakers) < 2:
        return None
    if fraction == 0:
        return set()
    target = fraction * len(clips)
    by_label = Counter(c.label for c in clips)
    per_speaker: dict[str, Counter[str]] = defaultdict(Counter)
    for c in clips:
        per_speaker[c.speaker][c.label] += 1
    order = [speakers[i] for i in rng.permutation(len(speakers))]
    held: set[str] = set()
    taken = 0
    for s in order:
        if taken >= target or len(held) == len(speakers) - 1:
            break
        if any(by_label[lab] - n <= 0 for lab, n in per_speaker[s].items()):
            continue  # would empty a label from train
        # Stop before a speaker that takes us further from the target than we are.
        if held and abs(taken + counts[s] - target) > abs(taken - target):
            continue
        held.add(s)
        taken += counts[s]
        by_label.subtract(per_speaker[s])
    return held or {order[0]}


def _stratified_carve(
    clips: list[Clip], fraction: float, rng: np.random.Generator, at_least: int = 0
) -> tuple[list[Clip], list[Clip]]:
    """Split off about ``fraction`` of each label's clips: ``(kept, carved)``, order kept.

    Every label keeps at least one clip in ``kept``. When ``fraction`` is above 0 but
    rounding carves nothing, one clip of the largest label (with two or more) is carved.
    ``at_least`` raises a label's share to that many clips where it keeps two for ``kept``
    (a validation part must hold enough clips of the target to calibrate a threshold).
    """
    if fraction == 0 or not clips:
        return list(clips), []
    index: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(clips):
        index[c.label].append(i)
    carved: list[int] = []
    for label in sorted(index):
        members = index[label]
        n = min(int(np.floor(fraction * len(members) + 0.5)), len(members) - 1)
        n = max(n, min(at_least, len(members) - 2))
        carved.extend(members[j] for j in rng.permutation(len(members))[:n])
    if not carved:
        label = max(sorted(index), key=lambda lab: len(index[lab]))
        if len(index[label]) >= 2:
            carved.append(index[label][int(rng.integers(len(index[label])))])
    chosen = set(carved)
    kept = [c for i, c in enumerate(clips) if i not in chosen]
    return kept, [c for i, c in enumerate(clips) if i in chosen]
