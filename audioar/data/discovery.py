"""Data sets on disk and their train/validation/test splits.

The layouts :func:`discover` recognises (:data:`LAYOUTS`):

* ``folders`` -- a folder per class, the Speech Commands layout: ``root/LABEL/**/*.wav``.
  Speaker = the file name before ``_nohash_`` (``0a7c2a8d_nohash_0.wav``). The data set's
  own ``validation_list.txt`` / ``testing_list.txt`` in ``root`` give its split.
* ``fsdd`` -- one flat folder of ``{label}_{speaker}_{take}.wav`` (Free Spoken Digit
  Dataset); its own split puts takes 0-4 in test.
* ``audiomnist`` -- the same names in per-speaker folders (AudioMNIST ``data/01/0_01_0.wav``);
  label and speaker come from the name; no official split.
* ``manifest`` -- a CSV file ``path,label[,speaker][,split]``, paths relative to its folder.
* ``dcase2020`` / ``dcase2021`` -- one machine folder of DCASE Task 2 (2020, and 2021-2024)
  holding ``train/`` and ``test/``; see :mod:`audioar.data.layouts`.

:func:`split` then makes a :class:`Split` by scheme (``official``, ``speaker:NAME``,
``random``) and :func:`loso_folds` one split per speaker (both live in :mod:`audioar.data.splits`
and are re-exported here; the clip types live in :mod:`audioar.data.clips`).
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from audioar.data.clips import (
    DCASE_LAYOUTS,
    LAYOUTS,
    UNLABELED,
    Clip,
    Dataset,
    Split,
    clips_with_label,
)
from audioar.data.io import AUDIO_EXTENSIONS
from audioar.data.layouts import discover_machine, mismatch_error, parse_dcase_name
from audioar.data.splits import loso_folds, split
from audioar.errors import DataError

__all__ = [
    "LAYOUTS",
    "UNLABELED",
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
_FSDD_PATTERN = "{label}_{speaker}_{take}.wav"
_AUDIOMNIST_PATTERN = "{label}_{speaker}_{take}.wav in per-speaker folders"


# ----------------------------------------------------------------------------- discovery


def discover(root: str | os.PathLike[str], layout: str | None = None) -> Dataset:
    """Find the clips of a data set and recognise its layout.

    Detection (``layout=None``), first match wins:

    1. A CSV file, or a folder holding ``manifest.csv``: ``manifest``.
    2. A DCASE machine folder -- ``train/`` and/or ``test/`` whose audio files are mostly
       DCASE names: ``dcase2020`` (``{normal,anomaly}_id_<ID>_<n>``) or ``dcase2021``
       (``section_<XX>_...``). A folder holding several machine folders is refused (one
       model per machine type); one holding a single one is read as that one.
    3. Class sub-folders (not named ``_...`` or ``.``) whose audio files are all named
       ``{label}_{speaker}_{take}`` with the speaker equal to the folder's name:
       ``audiomnist`` (folders are speakers, not classes).
    4. Other class sub-folders: ``folders`` (audio lying directly in ``root`` is ignored).
    5. A flat folder of ``{label}_{speaker}_{take}`` files: ``fsdd``.

    Args:
        root: A data set folder or a CSV manifest.
        layout: One of :data:`LAYOUTS` to skip detection and read ``root`` as that layout;
            default None detects it.

    Returns:
        A :class:`Dataset` whose clips are sorted by path (``machine`` set for DCASE).

    Raises:
        DataError: ``root`` does not exist or holds no audio; an unknown ``layout``; files
            that do not fit the (detected or forced) layout's names; a manifest with missing
            columns or files; a folder of several DCASE machine types.

    Example:
        >>> ds = discover("fsdd/recordings")  # doctest: +SKIP
        >>> len(ds), ds.labels[:3], ds.layout  # doctest: +SKIP
        (3000, ['0', '1', '2'], 'fsdd')
        >>> discover("dev_data/fan").describe()  # doctest: +SKIP
        'dcase2020 fan: 5550 clips; labels anomaly, normal; 4 groups (id_00, ...); ...'
    """
    if layout is not None and layout not in LAYOUTS:
        raise DataError(f"unknown data set layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: data set not found")
    if root.is_file():
        if layout not in (None, "manifest"):
            raise DataError(f"{root}: the {layout} layout needs a folder (a file is a manifest)")
        if root.suffix.lower() != ".csv":
            raise DataError(f"{root}: expected a data set folder or a CSV manifest")
        return _read_manifest(root)
    if layout in (None, "manifest") and (root / "manifest.csv").is_file():
        return _read_manifest(root / "manifest.csv")
    if layout == "manifest":
        raise DataError(
            f"{root}: the manifest layout needs a CSV file or a folder with manifest.csv"
        )
    if layout is None or layout in DCASE_LAYOUTS:
        machine = discover_machine(root, layout)
        if machine is not None:
            return machine
    return _read_folder(root, layout)


def _read_folder(root: Path, layout: str | None) -> Dataset:
    """The ``audiomnist``, ``folders`` or ``fsdd`` reading of a folder (detected or forced)."""
    class_dirs, flat = [], []
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.is_dir():
                if not entry.name.startswith(("_", ".")):
                    class_dirs.append(entry.name)
            elif _is_audio(entry.name):
                flat.append(entry.name)
    class_dirs.sort()
    flat.sort()
    if layout == "fsdd":
        if not flat:
            raise DataError(
                f"{root}: no audio files directly in it (the fsdd layout is one flat folder "
                f"of {_FSDD_PATTERN})"
            )
        return Dataset(root, "fsdd", _fsdd_clips(root, flat, forced=True))
    if layout == "audiomnist":
        return Dataset(root, "audiomnist", _audiomnist_clips(root, class_dirs, strict=True))
    if layout is None and class_dirs:
        clips = _audiomnist_clips(root, class_dirs, strict=False)
        if clips:
            return Dataset(root, "audiomnist", clips)
    clips = _folder_clips(root, class_dirs) if class_dirs else []
    if clips:
        if flat:
            logger.warning("%s: ignoring %d audio files outside class folders", root, len(flat))
        return Dataset(root, "folders", clips)
    if layout == "folders":
        raise DataError(
            f"{root}: no class folders with audio files (the folders layout is root/LABEL/*.wav)"
        )
    if flat:
        _refuse_loose_dcase(root, flat)
        return Dataset(root, "fsdd", _fsdd_clips(root, flat))
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


def _audio_under(folder: Path) -> Iterator[Path]:
    """The audio files under ``folder`` (recursively, hidden folders skipped), sorted."""
    for parent, subdirs, files in os.walk(folder):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in sorted(files):
            if _is_audio(name):
                yield Path(parent, name)


def _folder_clips(root: Path, class_dirs: list[str]) -> list[Clip]:
    validation = _read_list(root / "validation_list.txt")
    testing = _read_list(root / "testing_list.txt")
    has_lists = bool(validation or testing)
    clips = []
    for label in class_dirs:
        for path in _audio_under(root / label):
            rel = path.relative_to(root).as_posix()
            part = None
            if has_lists:
                part = "test" if rel in testing else "validation" if rel in validation else "train"
            m = _NOHASH.match(path.name)
            speaker = m["speaker"] if m else None
            take = int(m["take"]) if m and m["take"] is not None else None
            clips.append(Clip(path, label, speaker, part, take))
    if has_lists:
        found = Counter(c.split for c in clips)
        missing = len(testing) + len(validation) - found["test"] - found["validation"]
        if missing > 0:
            logger.warning("%s: %d listed clips are not in the data set", root, missing)
    return sorted(clips, key=lambda c: c.path)


def _audiomnist_clips(root: Path, speaker_dirs: list[str], *, strict: bool) -> list[Clip] | None:
    """Clips of per-speaker folders of ``{label}_{speaker}_{take}`` files (AudioMNIST).

    ``strict=False`` (detection) gives None as soon as a file is not named so or names
    another speaker than its folder (a folder per class, such as Speech Commands, is not
    this layout), and None when there is no audio. ``strict=True`` (forced layout) takes
    the names as they are, whatever the folders, and raises on names that do not fit.
    """
    clips, odd = [], []
    for folder in speaker_dirs:
        for path in _audio_under(root / folder):
            m = _FSDD_NAME.match(path.name.rsplit(".", 1)[0])
            if m is None or (not strict and m["speaker"] != folder):
                if not strict:
                    return None
                odd.append(path.relative_to(root).as_posix())
                continue
            clips.append(Clip(path, m["label"], m["speaker"], None, int(m["take"])))
    if odd:
        raise mismatch_error(root, "audiomnist", _AUDIOMNIST_PATTERN, odd)
    if strict and not clips:
        raise DataError(
            f"{root}: no audio files in sub-folders (the audiomnist layout is "
            f"{_AUDIOMNIST_PATTERN})"
        )
    return sorted(clips, key=lambda c: c.path) or None


def _refuse_loose_dcase(root: Path, names: list[str]) -> None:
    """Raise when a flat folder holds DCASE clips (a machine's train/ or test/ folder)."""
    parsed = [parse_dcase_name(name) for name in names]
    if all(p is not None for p in parsed):
        raise DataError(
            f"{root}: holds {parsed[0].layout} clips directly; pass the machine folder "
            f"{root.parent} (holding train/ and test/)"
        )


def _fsdd_clips(root: Path, names: list[str], *, forced: bool = False) -> list[Clip]:
    clips, odd = [], []
    for name in names:
        m = _FSDD_NAME.match(name.rsplit(".", 1)[0])
        if m is None:
            odd.append(name)
            continue
        take = int(m["take"])
        part = "test" if take < 5 else "train"  # FSDD's own split: takes 0-4 are test
        clips.append(Clip(root / name, m["label"], m["speaker"], part, take))
    if odd and forced:
        raise mismatch_error(root, "fsdd", _FSDD_PATTERN, odd)
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
