"""Data sets on disk and their train/validation/test splits.

Three layouts are recognised by :func:`discover`:

* ``folders`` -- a folder per class, the Speech Commands layout: ``root/LABEL/**/*.wav``.
  Speaker = the file name before ``_nohash_`` (``0a7c2a8d_nohash_0.wav``). The data set's
  own ``validation_list.txt`` / ``testing_list.txt`` in ``root`` give its split.
* ``fsdd`` -- one flat folder of ``{label}_{speaker}_{take}.wav`` (Free Spoken Digit
  Dataset); its own split puts takes 0-4 in test.
* ``manifest`` -- a CSV file ``path,label[,speaker][,split]``, paths relative to its folder.

:func:`split` then makes a :class:`Split` by scheme (``official``, ``speaker:NAME``,
``random``) and :func:`loso_folds` one split per speaker (both live in :mod:`audioar.splits`
and are re-exported here; the clip types live in :mod:`audioar.clips`).
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections import Counter
from pathlib import Path

from audioar.clips import Clip, Dataset, Split, clips_with_label
from audioar.errors import DataError
from audioar.io import AUDIO_EXTENSIONS
from audioar.splits import loso_folds, split

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
