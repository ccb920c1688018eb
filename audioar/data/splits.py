"""Train/validation/test splits of a data set: by its own lists, by speaker, or at random.

:func:`split` makes a :class:`audioar.data.clips.Split` by scheme: ``official`` (the data set's
own split), ``speaker:NAME`` or ``random``; :func:`loso_folds` gives one ``speaker:NAME``
split per speaker. Every split is deterministic given its seed, its parts are disjoint, and
speaker schemes never share a speaker between train, validation and test. Unlabeled clips
(DCASE evaluation sets) are never trained on: ``official`` puts them in test, the other
schemes leave them out.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict

import numpy as np

from audioar.data.clips import UNLABELED, Clip, Dataset, Split
from audioar.errors import ConfigError, DataError
from audioar.pipeline.calibration import MIN_REFERENCE

__all__ = ["split", "loso_folds"]

logger = logging.getLogger(__name__)

# Clips of each class a carved validation part takes at least (when the class keeps two for
# training): enough to calibrate a threshold on the target's.
_AT_LEAST = MIN_REFERENCE


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
      ``testing_list.txt``, a manifest's ``split`` column, DCASE ``test/``, and every
      unlabeled clip); its own validation part when it has one, else validation carved
      from train (stratified by label and group, so every machine ID or section is in it).
    * ``"speaker:NAME"`` -- test is every clip of speaker NAME; validation is whole other
      speakers (about ``validation_fraction`` of the rest), so no speaker is in two parts.
      Clips without a speaker, and unlabeled clips, are left out.
    * ``"random"`` -- a stratified (by label and group) random test part of
      ``test_fraction``, then a stratified validation part. Unlabeled clips are left out.

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
        if not any(c.split == "test" for c in clips):
            hint = f"; speakers: {', '.join(dataset.speakers)}" if dataset.speakers else ""
            raise DataError(
                f"{dataset.root}: the {dataset.layout} layout has no official test split; "
                f"use scheme 'random' or 'speaker:NAME'{hint}"
            )
        # Unlabeled clips (evaluation-set names) are scored, never trained or calibrated on.
        test = [c for c in clips if c.split == "test" or c.label == UNLABELED]
        labelled = [c for c in clips if c.label != UNLABELED]
        validation = [c for c in labelled if c.split == "validation"]
        train = [c for c in labelled if c.split not in ("test", "validation")]
        if not validation:
            at_least = _AT_LEAST if validation_fraction > 0 else 0
            train, validation = _stratified_carve(train, validation_fraction, rng, at_least)
        return Split(train, validation, test, "official")
    if scheme.startswith("speaker:") or scheme == "random":
        clips = _labelled(dataset, scheme)
    if scheme.startswith("speaker:"):
        name = scheme.removeprefix("speaker:")
        return _speaker_split(dataset, clips, name, validation_fraction, rng)
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


def _labelled(dataset: Dataset, scheme: str) -> list[Clip]:
    """The clips that carry a label; a warning when unlabeled ones are left out."""
    clips = [c for c in dataset.clips if c.label != UNLABELED]
    if len(clips) < len(dataset.clips):
        logger.warning(
            "%s: leaving out %d unlabeled clips from split %s (only 'official' scores them)",
            dataset.root, len(dataset.clips) - len(clips), scheme,
        )  # fmt: skip
    return clips


def _speaker_split(
    dataset: Dataset, clips: list[Clip], name: str, fraction: float, rng: np.random.Generator
) -> Split:
    known = dataset.speakers
    if not known:
        raise DataError(
            f"{dataset.root}: clips carry no speaker; use scheme 'official' or 'random'"
        )
    if name not in known:
        raise DataError(f"unknown speaker {name!r}; known speakers: {', '.join(known)}")
    eligible = [c for c in clips if c.speaker is not None]
    if len(eligible) < len(clips):
        logger.warning(
            "%s: leaving out %d clips without a speaker from split speaker:%s",
            dataset.root, len(clips) - len(eligible), name,
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
    """Split off about ``fraction`` of each stratum's clips: ``(kept, carved)``, order kept.

    A stratum is a ``(label, group)`` pair: the label within each machine ID or section, so
    a carved part holds clips of every group; data without groups (speech) is stratified by
    label alone. Every stratum keeps at least one clip in ``kept``. When ``fraction`` is
    above 0 but rounding carves nothing, one clip of the largest stratum (with two or more)
    is carved. ``at_least`` raises a label's share to that many clips where the label keeps
    two for ``kept`` (a validation part must hold enough clips of the target to calibrate a
    threshold), spread over the label's groups one clip at a time.
    """
    if fraction == 0 or not clips:
        return list(clips), []
    index: dict[tuple[str, str | None], list[int]] = defaultdict(list)
    for i, c in enumerate(clips):
        index[c.label, c.group].append(i)
    # Sorted by label, then group (None first); without groups this is the label order.
    strata = sorted(index, key=lambda k: (k[0], k[1] is not None, k[1] or ""))
    size = {k: len(index[k]) for k in strata}
    take = {k: min(int(np.floor(fraction * size[k] + 0.5)), size[k] - 1) for k in strata}
    for label in sorted({k[0] for k in strata}):
        mine = [k for k in strata if k[0] == label]
        short = min(at_least, sum(size[k] for k in mine) - 2) - sum(take[k] for k in mine)
        while short > 0 and any(take[k] < size[k] - 1 for k in mine):
            for k in mine:
                if short > 0 and take[k] < size[k] - 1:
                    take[k] += 1
                    short -= 1
    carved: list[int] = []
    for stratum in strata:
        members = index[stratum]
        carved.extend(members[j] for j in rng.permutation(len(members))[: take[stratum]])
    if not carved:
        largest = max(strata, key=lambda k: len(index[k]))
        if len(index[largest]) >= 2:
            carved.append(index[largest][int(rng.integers(len(index[largest])))])
    chosen = set(carved)
    kept = [c for i, c in enumerate(clips) if i not in chosen]
    return kept, [c for i, c in enumerate(clips) if i in chosen]
