"""Fitting in memory: the clips of a split -> a trained, calibrated model, for every family.

A one-class family (MAF, MADE, ...) learns the target class alone; a class-conditional one
(``conditional = true`` in its settings: WaveNet, PixelCNN) learns ``p(x | class)`` for
every class of the training split. Both are fitted by :func:`audioar.pipeline.train.fit`, scored by
:mod:`audioar.pipeline.scoring` and calibrated on the target's validation clips with the chosen
score. :mod:`audioar.pipeline.runs` adds the run directory around it.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset
from torch.utils.data import Dataset as TorchDataset

from audioar.config.recipes import RunConfig
from audioar.data.discovery import Clip, Dataset, Split, discover
from audioar.errors import ConfigError, DataError
from audioar.features import Featurizer, featurizer_from_config
from audioar.features.augment import AugmentedSequences
from audioar.features.perturb import Perturbed
from audioar.models.build import build_model
from audioar.models.contract import InputSpec
from audioar.models.standardize import Standardized, feature_statistics
from audioar.pipeline.batches import ClipSet, collate, log_likelihoods
from audioar.pipeline.calibration import MIN_REFERENCE, calibrate
from audioar.pipeline.featurize import featurize
from audioar.pipeline.inputs import arrange, input_spec, longest
from audioar.pipeline.scoring import ClipScores, WindowedScores, clip_scores
from audioar.pipeline.train import EpochStats, fit
from audioar.pipeline.trained import FitSummary, TrainedModel
from audioar.pipeline.windows import expand, is_windowed, model_featurizer

__all__ = [
    "MAX_COMPARE_CLIPS",
    "OTHER_CLASS",
    "background_config",
    "compare_labels",
    "load_dataset",
    "resolve_data",
    "train_model",
    "build",
    "with_split",
]

logger = logging.getLogger(__name__)

#: Clips per compared class used for the per-epoch comparison table (speed bound).
MAX_COMPARE_CLIPS = 100
#: The explicit background class of ``score.other_class`` (perturbed clips of every class).
OTHER_CLASS = "_other"


def load_dataset(root: str | Path | None, layout: str | None = None) -> Dataset:
    """Discover the data set at ``root``; None means the embedded synthetic data set.

    Args:
        root: A data set folder or CSV manifest, or None.
        layout: Force a layout (:data:`audioar.data.discovery.LAYOUTS`); None detects it.

    Raises:
        DataError: Nothing usable at ``root``.
    """
    if root is None:
        from audioar.data.synth import default_dataset

        root = default_dataset()
    return discover(root, layout=layout)


def resolve_data(cfg: RunConfig, dataset: Dataset) -> RunConfig:
    """``cfg`` with ``data.target`` and ``data.condition`` resolved for ``dataset``.

    ``target`` None becomes the class the layout implies (a DCASE folder's ``normal``), else
    ``zero``; ``condition`` ``auto`` becomes ``group`` for a data set whose clips carry
    groups (machine IDs or sections: DCASE folders), else ``label``.

    Raises:
        DataError: ``condition = group`` for a data set whose clips carry no group.
    """
    target = cfg.data.target or dataset.normal or "zero"
    condition = cfg.data.condition
    if condition == "auto":
        condition = "group" if dataset.groups else "label"
    if condition == "group" and not dataset.groups:
        raise DataError(
            f"data.condition=group: the clips of {dataset.root} ({dataset.layout} layout) carry "
            "no group (a machine ID or section); use data.condition=label"
        )
    return replace(cfg, data=replace(cfg.data, target=target, condition=condition))


def compare_labels(cfg: RunConfig, labels: Sequence[str]) -> list[str]:
    """The classes tracked per epoch: ``cfg.data.compare``, default every other class.

    Raises:
        DataError: A compared class is not among ``labels``.
    """
    chosen = list(cfg.data.compare) or [c for c in labels if c != cfg.data.target]
    unknown = [c for c in chosen if c not in labels]
    if unknown:
        raise DataError(
            f"unknown class(es) to compare: {', '.join(unknown)}; known classes: "
            + ", ".join(labels)
        )
    return chosen


def with_split(cfg: RunConfig, scheme: str) -> RunConfig:
    """A copy of ``cfg`` with ``data.split`` set to ``scheme``."""
    return replace(cfg, data=replace(cfg.data, split=scheme))


def _check_parts(cfg: RunConfig, dataset: Dataset, parts: Split) -> None:
    """Refuse, before any work, a split that leaves the target too few clips to train on or
    to calibrate with; the message gives the count of each part."""
    target = cfg.data.target
    if target not in dataset.labels:
        raise DataError(
            f"unknown class {target!r} in {dataset.root}; known classes: "
            + ", ".join(dataset.labels)
        )
    counts = {name: sum(c.label == target for c in clips) for name, clips in parts.parts().items()}
    if counts["train"] >= 2 and counts["validation"] >= MIN_REFERENCE:
        return
    hint = "add clips"
    if parts.name == "official":
        hint = "try --split random (a seeded stratified split of every clip)"
    elif counts["validation"] < MIN_REFERENCE:
        hint = "raise data.validation_fraction or add clips"
    raise DataError(
        f"split {parts.name!r} gives class {target!r} {counts['train']} training, "
        f"{counts['validation']} validation and {counts['test']} test clips; a fit needs at "
        f"least 2 training and {MIN_REFERENCE} validation clips of it (validation clips "
        f"calibrate the threshold); {hint}"
    )


def _trains_on_every_class(cfg: RunConfig) -> bool:
    """Whether the family is asked to condition on the class (its ``conditional`` setting)."""
    return bool(getattr(cfg.model.settings, "conditional", False))


def _spec(
    cfg: RunConfig, featurizer: Featurizer, classes: int, width: int | None = None
) -> InputSpec:
    """The input spec; an image width comes from ``features.frames``, the featurizer's fixed
    number of frames, or ``width`` (the longest training clip)."""
    fixed = cfg.features.frames
    shape = featurizer.feature_shape
    if fixed is None and len(shape) == 2:  # frames of a fixed count (seconds, stretch_frames)
        fixed = shape[0]
    return input_spec(featurizer, cfg.model.family, cfg.model.name, classes, fixed or width)


def build(cfg: RunConfig, spec: InputSpec) -> torch.nn.Module:
    """The untrained model ``cfg`` names for data like ``spec``.

    Raises:
        ConfigError: Settings or features the family does not take.
    """
    model = build_model(cfg.model.name, cfg.model.settings, spec)
    if bool(getattr(model, "conditional", False)) != _trains_on_every_class(cfg):
        raise ConfigError(f"model {cfg.model.name!r} did not build as configured (conditional)")
    return model


@dataclass
class _Prepared:
    """The featurized examples a fit needs, with what each is for.

    An example is a clip, or a window of one when the featurizer cuts clips into windows
    (then ``owner`` gives each window's clip, an index into ``clips`` in order of first
    appearance)."""

    features: list[torch.Tensor]
    clips: list[Clip]  # the clip of each example
    owner: np.ndarray | None  # (examples,) clip number of each window; None: no windows
    skipped: dict[str, str]
    train: list[int]  # indices into features/clips
    validation: list[int]
    compare: dict[str, list[int]]
    others_train: list[int]  # non-target clips (a background model of the other classes)
    others_val: list[int]


def _by_group(cfg: RunConfig) -> bool:
    """Whether the model is conditioned on the target's groups (machine IDs, sections)."""
    return _trains_on_every_class(cfg) and cfg.data.condition == "group"


def _prepare(
    cfg: RunConfig, dataset: Dataset, parts: Split, featurizer: Featurizer, use_cache: bool
) -> _Prepared:
    """Featurize (one extract call) the training classes' train and validation clips and
    up to :data:`MAX_COMPARE_CLIPS` non-test clips of each compared class."""
    target = cfg.data.target
    every = _trains_on_every_class(cfg) and not _by_group(cfg)
    trained_on = set(dataset.labels) if every else {target}
    train = [c for c in parts.train if c.label in trained_on]
    validation = [c for c in parts.validation if c.label in trained_on]
    compared = compare_labels(cfg, dataset.labels)
    others = cfg.score.background_data in ("others", "both")
    wanted = set(dataset.labels) - {target} if others else set(compared)
    extra = [] if every else [c for c in parts.train + parts.validation if c.label in wanted]
    wanted_clips = list(dict.fromkeys(train + validation + extra))
    features, kept, skipped = featurize(featurizer, wanted_clips, use_cache=use_cache)
    owner = None
    if is_windowed(featurizer):
        features, owner = expand(features)
        kept = [kept[i] for i in owner]
    index: dict[int, list[int]] = defaultdict(list)
    for i, c in enumerate(kept):
        index[id(c)].append(i)
    pick = lambda clips: [i for c in clips for i in index.get(id(c), [])]  # noqa: E731
    train_ids, val_ids = pick(train), pick(validation)
    pool = train_ids + val_ids if every else pick(extra)
    others_train = [i for i in pick(parts.train) if kept[i].label != target] if others else []
    others_val = [i for i in pick(parts.validation) if kept[i].label != target] if others else []
    compare = {
        label: [i for i in pool if kept[i].label == label][:MAX_COMPARE_CLIPS] for label in compared
    }
    n_train = len({id(kept[i]) for i in train_ids if kept[i].label == target})
    n_val = len({id(kept[i]) for i in val_ids if kept[i].label == target})
    if n_train < 2 or n_val < MIN_REFERENCE:
        raise DataError(
            f"too few readable clips of class {target!r}: {n_train} training and {n_val} "
            f"validation ({len(skipped)} skipped)"
        )
    return _Prepared(
        features, kept, owner, skipped, train_ids, val_ids, compare, others_train, others_val
    )


def _classes(cfg: RunConfig, dataset: Dataset, parts: Split) -> list[str]:
    """The model's classes: every label (conditional on the label), the target's groups in
    its training and validation clips (conditional on the group), or the target alone."""
    if _by_group(cfg):
        clips = parts.train + parts.validation
        groups = {c.group for c in clips if c.label == cfg.data.target and c.group is not None}
        if not groups:
            raise DataError(
                f"data.condition=group: no training clip of class {cfg.data.target!r} "
                "carries a group (machine ID or section)"
            )
        return sorted(groups)
    if _trains_on_every_class(cfg):
        return list(dataset.labels)
    return [cfg.data.target]


def train_model(
    cfg: RunConfig,
    dataset: Dataset,
    parts: Split,
    *,
    use_cache: bool = True,
    checkpoint_path: Path | None = None,
    resume: bool = False,
    on_epoch: Callable[[EpochStats, dict[str, float]], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[TrainedModel, FitSummary]:
    """Fit the configured model on ``parts.train`` and calibrate it on the target.

    A one-class model trains on the target's clips, a conditional one on every class's
    (each under its own label). Early stopping uses the same classes' validation clips;
    the calibration uses the chosen score (``score.method``) of the target's validation
    clips. After every epoch the mean ``log p(x | target)`` of each compared class
    (``cfg.data.compare``, default all other classes; at most :data:`MAX_COMPARE_CLIPS` of
    their non-test clips) is added to the history as ``ll_<label>``: the comparison table of
    the original experiment.

    Args:
        cfg: The run configuration.
        dataset: The discovered data set (for the class list).
        parts: The split to train on.
        use_cache: Use the on-disk feature cache.
        checkpoint_path: Save a resumable checkpoint there after every epoch.
        resume: Continue from ``checkpoint_path``.
        on_epoch: Called with each epoch's stats and its comparison columns.
        progress: Called with ``(steps done, step budget)``.

    Returns:
        The trained model and a summary.

    Raises:
        DataError: Unknown target class, or too few target clips to train or calibrate.
        ConfigError: Settings the family does not take, or features it cannot model.
        TrainingError: A non-finite loss.
    """
    start = time.perf_counter()
    cfg = resolve_data(cfg, dataset)
    _check_parts(cfg, dataset, parts)
    featurizer = featurizer_from_config(cfg.features.featurizer_config())
    per_input = model_featurizer(featurizer)  # the featurizer of one model input (a window)
    every = _trains_on_every_class(cfg)
    classes = _classes(cfg, dataset, parts)
    # refuse, before training, a posterior the model will not have (Standardized.has_posterior)
    cfg.score.resolve(every and (len(classes) > 1 or cfg.score.other_class))
    conditioned_on = len(classes) if every else 0
    build(cfg, _spec(cfg, per_input, conditioned_on, width=8))  # bad settings fail here, fast
    if cfg.train.augment_warp > 0 or cfg.train.augment_stretch > 0:
        if cfg.features.name != "stft":
            raise ConfigError(
                "train.augment_warp / train.augment_stretch warp log-mel frames: they need "
                f"features.name=stft, got {cfg.features.name!r}"
            )
        if cfg.train.augment_warp > 0 and cfg.features.n_mfcc is not None:
            raise ConfigError(
                "train.augment_warp warps the mel axis; it cannot warp MFCCs "
                f"(features.n_mfcc={cfg.features.n_mfcc})"
            )
    data = _prepare(cfg, dataset, parts, featurizer, use_cache)
    index = {label: i for i, label in enumerate(classes)}
    by_group = _by_group(cfg)

    def class_of(clip: Clip) -> int:
        if by_group:  # a compared clip of a group the model does not know: the first one
            return index.get(clip.group, 0) if clip.group is not None else 0
        return index[clip.label]

    train_x = [data.features[i] for i in data.train]
    spec = _spec(cfg, per_input, conditioned_on, width=longest(train_x))

    torch.manual_seed(cfg.train.seed)
    items, lengths = arrange(data.features, spec)
    train_items = [items[i] for i in data.train]
    mean, std = feature_statistics(train_items, spec, [lengths[i] for i in data.train])
    other = len(classes) if cfg.score.other_class else None  # index of the "_other" class
    if other is not None:
        classes = [*classes, OTHER_CLASS]
        spec = replace(spec, classes=len(classes))
    model = Standardized(build(cfg, spec), spec, mean, std)

    def clip_set(ids: list[int], label: int | None = None) -> ClipSet:
        labels = [class_of(data.clips[i]) if label is None else label for i in ids]
        return ClipSet([items[i] for i in ids], labels, [lengths[i] for i in ids])

    def perturbed(ids: list[int], label: int | None = None) -> Perturbed:
        rate = cfg.score.perturb_rate
        return Perturbed(clip_set(ids), rate, mean, std, spec.levels, label)

    train_set: TorchDataset = clip_set(data.train)
    train_ids = list(data.train)
    if cfg.train.augment_warp > 0 or cfg.train.augment_stretch > 0:
        if spec.kind == "vector":
            raise ConfigError("train.augment_* warps frames; this model takes vectors")
        train_set = AugmentedSequences(
            train_set,
            warp=cfg.train.augment_warp,
            stretch=cfg.train.augment_stretch,
            cmvn=cfg.features.cmvn,
        )
    by_length = sorted(data.validation, key=lambda i: lengths[i])
    val_set: TorchDataset = clip_set(by_length)
    if other is not None:  # the explicit background class: perturbed clips of every class
        train_set = ConcatDataset([train_set, perturbed(data.train, other)])
        val_set = ConcatDataset([val_set, perturbed(by_length, other)])
        train_ids += data.train
    target_label = None if by_group else index[cfg.data.target]  # by group: each its own
    compare_sets = {
        label: clip_set(sorted(ids, key=lambda i: lengths[i]), target_label)
        for label, ids in data.compare.items()
        if ids
    }

    def epoch_columns(stats: EpochStats) -> dict[str, float]:
        columns = {
            f"ll_{label}": float(
                log_likelihoods(model, clips, batch_size=256, collate_fn=collate).mean()
            )
            for label, clips in compare_sets.items()
        }
        if on_epoch is not None:
            on_epoch(stats, columns)
        return columns

    sequence = spec.kind == "sequence"
    result = fit(
        model,
        train_set,
        val_set,
        cfg.train,
        checkpoint_path=checkpoint_path,
        resume=resume,
        on_epoch=epoch_columns,
        progress=progress,
        collate_fn=collate,
        lengths=[lengths[i] for i in train_ids] if sequence else None,
    )
    model = model.cpu().eval()
    target = cfg.data.target

    def example_scores(ids: list[int], **kwargs: Any) -> ClipScores:
        """The scores of examples ``ids`` (clips or windows), each against its class."""
        own = [class_of(data.clips[i]) for i in ids] if by_group else None
        features = [data.features[i] for i in ids]
        return clip_scores(model, spec, classes, target, features, own=own, **kwargs)

    def scores_of(ids: list[int], **kwargs: Any) -> ClipScores | WindowedScores:
        """The scores of the clips of examples ``ids`` (windows aggregated per clip)."""
        scores = example_scores(ids, **kwargs)
        if data.owner is None:
            return scores
        _, clip = np.unique(data.owner[ids], return_inverse=True)
        return WindowedScores(scores, clip, int(clip.max()) + 1, cfg.score.aggregate)

    is_target = [i for i in data.train if data.clips[i].label == target]
    typical = float(example_scores(is_target).nats_per_step.mean())
    background = None
    if cfg.score.background_data != "none":
        background = _fit_background(
            cfg, spec, mean, std, data, clip_set, perturbed, lengths, progress
        )
    val_target = [i for i in data.validation if data.clips[i].label == target]
    scores = scores_of(val_target, background=background, typical=typical)
    calibration = calibrate(
        -scores.score(cfg.score.resolve(model.has_posterior)),
        cfg.calibration.target_fpr,
        method=cfg.calibration.method,
    )
    trained = TrainedModel(model, featurizer, calibration, cfg, spec, classes, background, typical)
    if data.owner is not None:  # single windows vary more than their clip's aggregate
        windows = example_scores(val_target, background=background, typical=typical)
        trained.window_calibration = calibrate(
            -windows.score(cfg.score.resolve(model.has_posterior)),
            cfg.calibration.target_fpr,
            method=cfg.calibration.method,
        )
    n_train = len({id(data.clips[i]) for i in data.train})
    n_val = len({id(data.clips[i]) for i in data.validation})
    summary = FitSummary(result, n_train, n_val, time.perf_counter() - start, data.skipped)
    return trained, summary


def background_config(cfg: RunConfig) -> RunConfig:
    """The run config of the likelihood ratio's background model: the same family and size,
    not conditioned on the class (a family with a ``conditional`` setting has it off)."""
    settings = cfg.model.settings
    if hasattr(settings, "conditional"):
        settings = replace(settings, conditional=False)
    return replace(cfg, model=replace(cfg.model, settings=settings))


def _fit_background(
    cfg: RunConfig,
    spec: InputSpec,
    mean: torch.Tensor,
    std: torch.Tensor,
    data: _Prepared,
    clip_set: Callable[..., ClipSet],
    perturbed: Callable[..., Perturbed],
    lengths: list[int],
    progress: Callable[[int, int], None] | None,
) -> Standardized:
    """Fit the background model (``score.background``): the same family on perturbed
    target clips (a fresh perturbation every epoch), on the other classes' clips, or both;
    standardised like the main model so that the two log-likelihoods compare."""
    target = cfg.data.target
    train_ids = [i for i in data.train if data.clips[i].label == target]
    val_ids = [i for i in data.validation if data.clips[i].label == target]
    kind = cfg.score.background_data
    parts_train: list[TorchDataset] = []
    parts_val: list[TorchDataset] = []
    used_train: list[int] = []
    if kind in ("perturbed", "both"):
        parts_train.append(perturbed(train_ids, 0))
        parts_val.append(perturbed(val_ids, 0))
        used_train += train_ids
    if kind in ("others", "both"):
        if not data.others_train or not data.others_val:
            raise DataError("score.background=others needs clips of other classes to train on")
        parts_train.append(clip_set(data.others_train, 0))
        parts_val.append(clip_set(data.others_val, 0))
        used_train += data.others_train
    one_class = replace(spec, classes=0)
    background_cfg = background_config(cfg)
    model = Standardized(build(background_cfg, one_class), one_class, mean, std)
    torch.manual_seed(cfg.train.seed + 1)
    fit(
        model,
        ConcatDataset(parts_train),
        ConcatDataset(parts_val),
        cfg.train,
        progress=progress,
        collate_fn=collate,
        lengths=[lengths[i] for i in used_train] if spec.kind == "sequence" else None,
    )
    return model.cpu().eval()
