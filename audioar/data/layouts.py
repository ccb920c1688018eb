"""Machine-monitoring data sets (DCASE Task 2): file names and machine folders.

A DCASE data set is read one machine type at a time: ``root`` is a machine folder
(``dev_data/fan``) holding ``train/`` and/or ``test/``, whose file names carry everything
else. Two naming schemes:

* ``dcase2020`` (DCASE 2020 Task 2): ``{normal,anomaly}_id_<ID>_<n>.wav``; the group is the
  machine ID (``id_00``). The evaluation set's test clips carry no label: ``id_<ID>_<n>.wav``.
* ``dcase2021`` (DCASE 2021-2024):
  ``section_<XX>_{source,target}_{train,test}_{normal,anomaly}_<n>[_<attributes>].wav``
  (2022+ append attributes such as ``vel_6_loc_A``, 2023+ may write ``noAttribute``); the
  group is the section. Unlabeled evaluation test clips are ``section_<XX>_{source,target}
  _test_<n>.wav`` (2021) and ``section_<XX>_<n>.wav`` (2022-2024).

Unlabeled clips get the label :data:`audioar.data.clips.UNLABELED`. The split comes from the
folder (``train/`` -> ``"train"``, ``test/`` -> ``"test"``), not from the name.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import NamedTuple

from audioar.data.clips import DCASE_LAYOUTS, UNLABELED, Clip, Dataset
from audioar.data.io import AUDIO_EXTENSIONS
from audioar.errors import DataError

__all__ = [
    "is_machine_data",
    "NAME_PATTERNS",
    "DcaseName",
    "dcase_clips",
    "discover_machine",
    "detect_dcase",
    "machine_folders",
    "mismatch_error",
    "parse_dcase_name",
]

logger = logging.getLogger(__name__)

# The names each layout expects, as error messages show them.
NAME_PATTERNS: dict[str, str] = {
    "dcase2020": "{normal,anomaly}_id_<ID>_<n>.wav",
    "dcase2021": (
        "section_<XX>_{source,target}_{train,test}_{normal,anomaly}_<n>[_<attributes>].wav"
    ),
}
_PARTS = ("train", "test")  # the folders of a machine folder, and the split each gives
_SHOW = 3  # how many offending names an error message lists

# (labelled, unlabeled) name patterns per layout, matched against the name without extension.
_NAMES: dict[str, tuple[re.Pattern[str], ...]] = {
    "dcase2020": (
        re.compile(r"^(?P<label>normal|anomaly)_(?P<group>id_\d+)_(?P<take>\d+)$"),
        re.compile(r"^(?P<group>id_\d+)_(?P<take>\d+)$"),  # evaluation set
    ),
    "dcase2021": (
        re.compile(
            r"^(?P<group>section_\d+)_(?P<domain>source|target)_(?:train|test)"
            r"_(?P<label>normal|anomaly)_(?P<take>\d+)(?:_(?P<attributes>.+))?$"
        ),
        # evaluation sets: 2021 keeps the domain, 2022-2024 drop everything but the number
        re.compile(r"^(?P<group>section_\d+)(?:_(?P<domain>source|target)_(?:train|test))?"
                   r"_(?P<take>\d+)$"),
    ),
}  # fmt: skip


class DcaseName(NamedTuple):
    """What a DCASE file name says."""

    layout: str  # "dcase2020" or "dcase2021"
    label: str  # "normal", "anomaly" or UNLABELED
    group: str  # "id_00" or "section_00", digits as written
    take: int  # the clip number
    domain: str | None  # "source" / "target" (DCASE 2021+), None when not named
    attributes: str | None  # the text after the clip number (DCASE 2022+), None when absent


def parse_dcase_name(name: str, layout: str | None = None) -> DcaseName | None:
    """Read a DCASE Task 2 file name.

    Args:
        name: A file name, with or without its extension
            (``section_00_source_train_normal_0000_vel_6_loc_A.wav``).
        layout: ``"dcase2020"`` or ``"dcase2021"``; default None tries both.

    Returns:
        The parsed name, or None when it is not a name of that layout.

    Example:
        >>> parse_dcase_name("anomaly_id_02_00000012.wav")
        DcaseName(layout='dcase2020', label='anomaly', group='id_02', take=12, domain=None, attributes=None)
    """  # noqa: E501
    stem = name.rsplit(".", 1)[0] if name.lower().endswith(AUDIO_EXTENSIONS) else name
    for candidate in (layout,) if layout is not None else DCASE_LAYOUTS:
        for pattern in _NAMES[candidate]:
            m = pattern.match(stem)
            if m is not None:
                found = m.groupdict()
                return DcaseName(
                    candidate,
                    found.get("label") or UNLABELED,
                    found["group"],
                    int(found["take"]),
                    found.get("domain"),
                    found.get("attributes"),
                )
    return None


def detect_dcase(root: Path) -> str | None:
    """The DCASE layout of a machine folder, or None when ``root`` is not one.

    ``root`` is a machine folder when most audio files directly in its ``train/`` and
    ``test/`` folders have DCASE names; the layout is the scheme most of them follow.
    """
    files = _part_files(root)
    counts = {lay: sum(parse_dcase_name(p.name, lay) is not None for _, p in files)
              for lay in DCASE_LAYOUTS}  # fmt: skip
    best = max(DCASE_LAYOUTS, key=lambda lay: counts[lay])
    return best if 2 * counts[best] > len(files) else None


def is_machine_data(root: str | os.PathLike[str] | None, layout: str | None = None) -> bool:
    """Whether ``root`` is machine sound in a DCASE layout (``layout`` forced to one, a
    machine folder, or a folder holding exactly one): what decides the machine presets
    (:data:`audioar.config.recipes.MACHINE_PRESETS`).

    Example:
        >>> is_machine_data("dev_data/fan")  # doctest: +SKIP
        True
    """
    if layout is not None:
        return layout in DCASE_LAYOUTS
    if root is None:
        return False
    path = Path(root)
    if not path.is_dir():
        return False
    return detect_dcase(path) is not None or len(machine_folders(path)) == 1


def machine_folders(root: Path) -> list[str]:
    """Sorted names of the sub-folders of ``root`` that are DCASE machine folders."""
    found = []
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.is_dir() and not entry.name.startswith(("_", ".")):
                if detect_dcase(Path(entry.path)) is not None:
                    found.append(entry.name)
    return sorted(found)


def dcase_clips(root: Path, layout: str) -> list[Clip]:
    """Every clip in the ``train/`` and ``test/`` folders of a machine folder.

    Args:
        root: A machine folder (``dev_data/fan``).
        layout: ``"dcase2020"`` or ``"dcase2021"``.

    Returns:
        The clips sorted by path: label, group, domain, attributes and take from the name,
        split from the folder, no speaker.

    Raises:
        DataError: No audio in ``train/`` or ``test/``, or files not named as ``layout``
            names them.
    """
    files = _part_files(root)
    if not files:
        raise DataError(
            f"{root}: no audio files in train/ or test/; the {layout} layout is one machine "
            "folder (such as dev_data/fan) holding train/ and test/"
        )
    clips, odd = [], []
    for part, path in files:
        parsed = parse_dcase_name(path.name, layout)
        if parsed is None:
            odd.append(f"{part}/{path.name}")
            continue
        clips.append(
            Clip(path, parsed.label, None, part, parsed.take, parsed.group, parsed.domain,
                 parsed.attributes)
        )  # fmt: skip
    if odd:
        raise mismatch_error(root, layout, NAME_PATTERNS[layout], odd)
    return sorted(clips, key=lambda c: c.path)


def discover_machine(root: Path, layout: str | None = None) -> Dataset | None:
    """Read a DCASE machine folder, or say that ``root`` is none.

    ``root`` may also be a folder holding exactly one machine folder, which is then read.

    Args:
        root: An existing folder.
        layout: ``"dcase2020"`` / ``"dcase2021"`` to force that naming scheme; default None
            detects it (:func:`detect_dcase`).

    Returns:
        A :class:`Dataset` with ``machine`` set to the machine folder's name; None when
        ``layout`` is None and ``root`` is not a machine folder (another layout may fit).

    Raises:
        DataError: ``root`` holds several machine folders (one model per machine type: pass
            one of them); ``layout`` is given and ``root`` is no machine folder; file names
            that do not fit the layout.
    """
    if layout is None:
        found = detect_dcase(root)
    else:
        found = layout if _part_files(root) else None
    if found is not None:
        return Dataset(root, found, dcase_clips(root, found), machine=root.name)
    machines = machine_folders(root)
    if len(machines) > 1:
        raise DataError(
            f"{root}: holds {len(machines)} machine types ({', '.join(machines)}); pass one "
            f"of them, such as {root / machines[0]} (one model per machine type)"
        )
    if machines:
        logger.info("%s: reading its only machine folder, %s", root, machines[0])
        return discover_machine(root / machines[0], layout)
    if layout is not None:
        raise DataError(
            f"{root}: no train/ or test/ folder with audio files; the {layout} layout is one "
            "machine folder (such as dev_data/fan) holding train/ and test/"
        )
    return None


def mismatch_error(root: Path, layout: str, pattern: str, odd: list[str]) -> DataError:
    """The error for files that do not fit a layout's names, listing the first few."""
    shown = ", ".join(odd[:_SHOW]) + (", ..." if len(odd) > _SHOW else "")
    return DataError(
        f"{root}: {len(odd)} files do not match the {layout} names ({pattern}): {shown}"
    )


def _part_files(root: Path) -> list[tuple[str, Path]]:
    """``(part, path)`` of the audio files directly in ``root/train`` and ``root/test``."""
    files = []
    for part in _PARTS:
        folder = root / part
        if not folder.is_dir():
            continue
        with os.scandir(folder) as entries:
            names = sorted(e.name for e in entries if e.is_file() and _is_audio(e.name))
        files.extend((part, folder / name) for name in names)
    return files


def _is_audio(name: str) -> bool:
    return name.lower().endswith(AUDIO_EXTENSIONS) and not name.startswith(".")
