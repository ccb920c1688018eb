"""The class-conditional family (WaveNet) in the anomaly pipeline.

Unlike a MAF, which learns the target class alone, a conditional model learns
``p(x | class)`` for *every* class of the training split; a clip is then scored under every
class in one batched pass, and three per-clip scores come out (higher = more normal):

* ``log_likelihood`` -- ``log p(x | target)`` in nats (the raw score);
* ``nats_per_step`` -- the raw score divided by the clip's valid steps (frames or samples):
  the per-sample normalisation, comparable across clip lengths;
* ``log_posterior`` -- ``log p(x | target) - logsumexp_c log p(x | c)``, the log class
  posterior of the target under a *uniform* class prior (so always ``<= 0``).

``model.score`` (``posterior`` by default for WaveNet) picks the one that drives the anomaly
score (``-score``), the calibration and the headline metrics; the other two are reported
beside it. Features are variable-length sequences: μ-law codes ``(time,)`` or log-mel frames
``(time, n_mels)``; batches are padded and carry their lengths, and padded steps never count.
"""

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset

from audioar.artifact import Run
from audioar.config import RunConfig
from audioar.data import Clip, Split
from audioar.data import Dataset as ClipDataset
from audioar.errors import ConfigError, DataError, RunFormatError
from audioar.evaluate import evaluate_scores
from audioar.features import Featurizer, extract, featurizer_from_config
from audioar.models.build import SEQUENCE_MODELS, build_sequence_model
from audioar.models.sequence import SequenceDensity
from audioar.models.wavenet_augment import AugmentedSequences
from audioar.pipeline import MAX_COMPARE_CLIPS, FitSummary, TrainedModel, compare_labels
from audioar.scoring import Calibration, batch_to_device, calibrate, log_likelihoods
from audioar.train import EpochStats, fit

__all__ = [
    "SCORES",
    "SCORE_COLUMN",
    "is_conditional",
    "check_conditional_config",
    "sequence_defaults",
    "SequenceDataset",
    "pad_collate",
    "featurize_sequences",
    "class_log_likelihoods",
    "ClassScores",
    "score_sequences",
    "train_conditional",
    "load_conditional",
    "evaluate_part",
    "summarize_scores",
]

logger = logging.getLogger(__name__)

#: The three per-clip scores, by ``model.score`` name -> column name.
SCORE_COLUMN: dict[str, str] = {
    "raw": "log_likelihood",
    "per_step": "nats_per_step",
    "posterior": "log_posterior",
}
#: Column names of the three scores, in report order.
SCORES = tuple(SCORE_COLUMN.values())

_OUTPUTS_FOR = {"mulaw": ("categorical",), "stft": ("gaussian", "logistic_mixture")}
_SCORE_BATCH = {"mulaw": 16, "stft": 256}  # clips per scoring pass (memory, not speed)


def is_conditional(cfg: RunConfig) -> bool:
    """Whether the run's model is a class-conditional sequence model (WaveNet)."""
    return cfg.model.name in SEQUENCE_MODELS


def check_conditional_config(cfg: RunConfig) -> None:
    """Check that the features and the WaveNet output fit together.

    Raises:
        ConfigError: Features that are not a sequence (``segments``, ``fft``, flattened
            ``stft``), an output that does not match them (``categorical`` needs
            ``mulaw`` codes; ``gaussian`` / ``logistic_mixture`` need ``stft`` frames), or
            frame augmentation (``train.augment_*``) of codes.
    """
    name, output = cfg.features.name, cfg.model.wavenet_output
    if name not in _OUTPUTS_FOR:
        raise ConfigError(
            f"model wavenet needs a sequence per clip: features.name=stft (log-mel frames) "
            f"or mulaw (codes), got {name!r}"
        )
    if name == "stft" and cfg.features.flatten:
        raise ConfigError(
            "model wavenet needs stft frames, not flattened ones: features.flatten=false"
        )
    augmented = cfg.train.augment_warp > 0 or cfg.train.augment_stretch > 0
    if augmented and name != "stft":
        raise ConfigError(
            "train.augment_warp / train.augment_stretch warp log-mel frames: they need "
            f"features.name=stft, got {name!r}"
        )
    if output not in _OUTPUTS_FOR[name]:
        wanted = " or ".join(_OUTPUTS_FOR[name])
        raise ConfigError(
            f"model.wavenet_output={output} does not fit features.name={name}: "
            f"{'codes' if name == 'mulaw' else 'real-valued frames'} need "
            f"model.wavenet_output={wanted}"
        )


def sequence_defaults(features: str | None) -> list[str]:
    """Overrides that size a WaveNet for ``features`` (used when no recipe is given).

    ``stft``: a small model for short frame sequences (FSDD clips are ~28 frames at hop
    128): 32 log-mel bands normalised per clip (``cmvn=mean``), a Gaussian output, 32
    residual / 32 skip channels, dilations ``1..8`` twice (receptive field 31 frames), 30
    epochs of batches of 64 at lr 2e-3, weight decay 1e-4, patience 10 (as
    ``recipes/zero_wavenet_frames.toml``). ``mulaw``: the categorical output with the
    audio-sized defaults of :class:`ModelConfig`. Anything else: no overrides.

    Returns:
        Dotted ``section.field=value`` overrides.
    """
    if features == "stft":
        return [
            "features.n_mels=32",
            "features.cmvn=mean",
            "model.wavenet_output=gaussian",
            "model.residual_channels=32",
            "model.skip_channels=32",
            "model.max_dilation=8",
            "model.dilation_cycles=2",
            "train.epochs=30",
            "train.batch_size=64",
            "train.lr=2e-3",
            "train.weight_decay=1e-4",
            "train.patience=10",
        ]
    if features == "mulaw":
        return ["model.wavenet_output=categorical"]
    return []


# ----------------------------------------------------------------------------- data


class SequenceDataset(Dataset):
    """Items ``(x, label, length)``: a sequence, its class index and its number of steps.

    Args:
        sequences: Codes ``(time,)`` or frames ``(time, bins)``, one per clip.
        labels: Class index per clip (``(n,)``); default None: all 0 (for scoring, where
            the label is not used).
    """

    def __init__(self, sequences: Sequence[Tensor], labels: Sequence[int] | None = None) -> None:
        if labels is not None and len(labels) != len(sequences):
            raise DataError(f"{len(sequences)} sequences but {len(labels)} labels")
        self.sequences = list(sequences)
        self.labels = list(labels) if labels is not None else [0] * len(self.sequences)

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        x = self.sequences[index]
        return x, torch.tensor(self.labels[index]), torch.tensor(len(x))


def pad_collate(items: list[tuple]) -> tuple:
    """Batch items whose first element is a variable-length sequence.

    The sequences are zero-padded at the end to the longest, ``(batch, time[, bins])``; the
    other elements (labels, lengths) are stacked.
    """
    first = pad_sequence([item[0] for item in items], batch_first=True)
    rest = [torch.stack([item[i] for item in items]) for i in range(1, len(items[0]))]
    return (first, *rest)


def featurize_sequences(
    featurizer: Featurizer, clips: Sequence[Clip], *, use_cache: bool = True
) -> tuple[list[Tensor], list[Clip], dict[str, str]]:
    """One feature sequence per readable clip (unreadable ones skipped and reported).

    Returns:
        ``(sequences, kept clips, {path: reason})``; codes ``(time,)`` or frames
        ``(time, bins)``, float32 frames.
    """
    if not clips:
        return [], [], {}
    result = extract(featurizer, [c.path for c in clips], use_cache=use_cache, on_error="skip")
    errors = {str(p): reason for p, reason in result.errors.items()}
    for path, reason in list(errors.items())[:5]:
        logger.warning("skipped %s: %s", path, reason)
    bad = {Path(p) for p in result.errors}
    kept = [c for c in clips if Path(c.path) not in bad]
    features = result.features
    sequences = list(features.unbind(0)) if isinstance(features, Tensor) else list(features)
    empty = [c.path for c, x in zip(kept, sequences, strict=True) if len(x) == 0]
    if empty:
        raise DataError(f"{empty[0]}: clip gives no feature steps")
    return sequences, kept, errors


def _frame_statistics(sequences: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation per bin over every frame of every clip."""
    frames = torch.cat([x.reshape(len(x), -1).double() for x in sequences])
    return frames.mean(dim=0).float(), frames.std(dim=0).float()


# ----------------------------------------------------------------------------- scoring


@torch.no_grad()
def class_log_likelihoods(
    model: SequenceDensity,
    sequences: Sequence[Tensor],
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> Tensor:
    """``log p(x | c)`` of every sequence under every class, in eval mode, batched.

    Uses the model's batched ``log_prob_all_classes``; its plain reference is
    :func:`audioar.scoring.log_likelihoods` once per class with those labels (tested equal).

    Returns:
        ``(n, classes)`` float64 on the CPU, in input order (padded steps never count).
    """
    param = next(model.parameters())
    device = param.device if device is None else torch.device(device)
    # Batches of similar length waste little on padding; results go back to input order.
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    loader = DataLoader(
        SequenceDataset([sequences[i] for i in order]),
        batch_size=batch_size,
        shuffle=False,
        collate_fn=pad_collate,
    )
    was_training = model.training
    model.to(device).eval()
    out = []
    try:
        for x, _, lengths in (batch_to_device(b, device) for b in loader):
            out.append(model.log_prob_all_classes(x, lengths).double().cpu())
    finally:
        model.train(was_training)
    if not out:
        return torch.empty(0, model.classes, dtype=torch.float64)
    result = torch.empty(len(sequences), model.classes, dtype=torch.float64)
    result[torch.tensor(order)] = torch.cat(out)
    return result


@dataclass
class ClassScores:
    """Per-class log-likelihoods of clips and the three scores derived from them.

    Attributes:
        per_class: ``(n, classes)`` ``log p(x | c)`` in nats.
        steps: ``(n,)`` valid steps (frames or samples) per clip.
        classes: Class names, in column order.
        target: The target class.
        features_per_step: Values per step (``n_mels`` for frames, 1 for codes).
    """

    per_class: np.ndarray
    steps: np.ndarray
    classes: list[str]
    target: str
    features_per_step: int

    @property
    def log_likelihood(self) -> np.ndarray:
        """``(n,)`` ``log p(x | target)``."""
        return self.per_class[:, self.classes.index(self.target)]

    @property
    def nats_per_step(self) -> np.ndarray:
        """``(n,)`` ``log p(x | target)`` per valid step."""
        return self.log_likelihood / self.steps

    @property
    def log_posterior(self) -> np.ndarray:
        """``(n,)`` ``log p(target | x)`` under a uniform class prior (``<= 0``)."""
        peak = self.per_class.max(axis=1, keepdims=True)
        norm = peak[:, 0] + np.log(np.exp(self.per_class - peak).sum(axis=1))
        return np.minimum(self.log_likelihood - norm, 0.0)

    def score(self, name: str) -> np.ndarray:
        """The score named ``raw`` | ``per_step`` | ``posterior`` (or its column name)."""
        column = SCORE_COLUMN.get(name, name)
        if column not in SCORES:
            raise ConfigError(f"unknown score {name!r}; choose one of {', '.join(SCORE_COLUMN)}")
        return getattr(self, column)

    def columns(self) -> dict[str, np.ndarray]:
        """The score table's columns: the three scores, ``nats_per_dim`` and ``ll_<class>``."""
        out = {name: self.score(name) for name in SCORES}
        out["nats_per_dim"] = self.log_likelihood / (self.steps * self.features_per_step)
        for i, label in enumerate(self.classes):
            out[f"ll_{label}"] = self.per_class[:, i]
        return out


def score_sequences(trained: TrainedModel, sequences: Sequence[Tensor]) -> ClassScores:
    """Score sequences under every class of a conditional run.

    Raises:
        ConfigError: ``trained`` is not a conditional run.
    """
    if trained.classes is None or not isinstance(trained.model, SequenceDensity):
        raise ConfigError(f"model {trained.config.model.name!r} is not class-conditional")
    return _class_scores(
        trained.model,
        sequences,
        trained.classes,
        trained.config.data.target,
        trained.dims,
        _SCORE_BATCH.get(trained.featurizer.name, 64),
    )


def _class_scores(
    model: SequenceDensity,
    sequences: Sequence[Tensor],
    classes: Sequence[str],
    target: str,
    dims: int,
    batch_size: int,
) -> ClassScores:
    per_class = class_log_likelihoods(model, sequences, batch_size=batch_size)
    return ClassScores(
        per_class=per_class.numpy(),
        steps=np.array([len(x) for x in sequences], dtype=np.float64),
        classes=list(classes),
        target=target,
        features_per_step=dims,
    )


# ----------------------------------------------------------------------------- fit and load


def _model_shape(featurizer: Featurizer) -> dict[str, int]:
    if featurizer.name == "mulaw":
        return {"in_features": 1, "quantization": featurizer.quantization_channels}
    return {"in_features": int(featurizer.feature_shape[-1]), "quantization": 256}


def _build(cfg: RunConfig, classes: int, featurizer: Featurizer) -> tuple[SequenceDensity, int]:
    shape = _model_shape(featurizer)
    wavenet = build_sequence_model(cfg.model, classes, **shape)
    return SequenceDensity(wavenet), shape["in_features"]


def train_conditional(
    cfg: RunConfig,
    dataset: ClipDataset,
    parts: Split,
    *,
    use_cache: bool = True,
    checkpoint_path: Path | None = None,
    resume: bool = False,
    on_epoch: Callable[[EpochStats, dict[str, float]], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[TrainedModel, FitSummary]:
    """Fit ``p(x | class)`` on every class of ``parts.train``; calibrate on the target.

    Early stopping uses the conditional log-likelihood of every class's validation clips;
    the calibration uses the chosen score (``model.score``) of the target's validation
    clips. Training clips are warped afresh every epoch when ``train.augment_warp`` or
    ``train.augment_stretch`` is set (see :mod:`audioar.models.wavenet_augment`). After
    every epoch ``ll_<label>`` (mean ``log p(x | target)`` of each compared class's non-test
    clips, at most ``MAX_COMPARE_CLIPS``) is added to the history.
    Arguments as :func:`audioar.pipeline.train_model`.

    Raises:
        ConfigError: Features and output do not fit (:func:`check_conditional_config`).
        DataError: Too few target clips to train or calibrate.
    """
    start = time.perf_counter()
    check_conditional_config(cfg)
    target = cfg.data.target
    classes = list(dataset.labels)
    index = {label: i for i, label in enumerate(classes)}
    featurizer = featurizer_from_config(cfg.features.featurizer_config())
    train_seqs, train_kept, skipped = featurize_sequences(
        featurizer, parts.train, use_cache=use_cache
    )
    val_seqs, val_kept, skipped_val = featurize_sequences(
        featurizer, parts.validation, use_cache=use_cache
    )
    skipped.update(skipped_val)
    n_target = sum(c.label == target for c in train_kept)
    val_target = [x for x, c in zip(val_seqs, val_kept, strict=True) if c.label == target]
    if n_target < 2:
        raise DataError(f"class {target!r} has {n_target} training clips; need at least 2")
    if not val_target:
        raise DataError(
            f"class {target!r} has no validation clips in split {parts.name!r}; "
            "raise data.validation_fraction or add clips"
        )
    torch.manual_seed(cfg.train.seed)
    model, dims = _build(cfg, len(classes), featurizer)
    if model.frames:
        mean, std = _frame_statistics(train_seqs)
        model.mean.copy_(mean)
        model.std.copy_(std.clamp_min(1e-3))
    train_set: Dataset = SequenceDataset(train_seqs, [index[c.label] for c in train_kept])
    if cfg.train.augment_warp > 0 or cfg.train.augment_stretch > 0:
        train_set = AugmentedSequences(
            train_set,
            warp=cfg.train.augment_warp,
            stretch=cfg.train.augment_stretch,
            cmvn=cfg.features.cmvn,
        )
    # Scored in order: sorted by length, consecutive batches need little padding.
    by_length = sorted(range(len(val_seqs)), key=lambda i: len(val_seqs[i]))
    val_set = SequenceDataset(
        [val_seqs[i] for i in by_length], [index[val_kept[i].label] for i in by_length]
    )

    compare = compare_labels(cfg, classes)
    pool = [(x, c.label) for x, c in zip(train_seqs + val_seqs, train_kept + val_kept, strict=True)]
    compare_seqs = {
        label: sorted([x for x, lab in pool if lab == label][:MAX_COMPARE_CLIPS], key=len)
        for label in compare
    }

    def epoch_columns(stats: EpochStats) -> dict[str, float]:
        columns = {}
        for label, seqs in compare_seqs.items():
            if seqs:
                data = SequenceDataset(seqs, [index[target]] * len(seqs))
                ll = log_likelihoods(model, data, batch_size=256, collate_fn=pad_collate)
                columns[f"ll_{label}"] = float(ll.mean())
        if on_epoch is not None:
            on_epoch(stats, columns)
        return columns

    result = fit(
        model,
        train_set,
        val_set,
        cfg.train,
        checkpoint_path=checkpoint_path,
        resume=resume,
        on_epoch=epoch_columns,
        progress=progress,
        collate_fn=pad_collate,
        lengths=[len(x) for x in train_seqs],
    )
    model = model.cpu().eval()
    batch = _SCORE_BATCH.get(featurizer.name, 64)
    val_scores = _class_scores(model, val_target, classes, target, dims, batch)
    calibration = calibrate(
        -val_scores.score(cfg.model.resolved_score),
        cfg.calibration.target_fpr,
        method=cfg.calibration.method,
    )
    trained = TrainedModel(model, featurizer, calibration, cfg, dims, classes)
    summary = FitSummary(
        result, len(train_kept), len(val_kept), time.perf_counter() - start, skipped
    )
    return trained, summary


def load_conditional(run: Run, cfg: RunConfig, run_dir: str | Path) -> TrainedModel:
    """Rebuild a conditional run from its loaded directory (CPU, eval mode).

    Raises:
        RunFormatError: The class list is missing or the weights do not fit the config.
    """
    featurizer = featurizer_from_config(run.featurizer)
    extra = run.extra if isinstance(run.extra, dict) else {}
    classes = extra.get("conditional", {}).get("classes")
    if not classes or not all(isinstance(c, str) for c in classes):
        raise RunFormatError(f"{run_dir}: a {cfg.model.name} run must store its class list")
    try:
        check_conditional_config(cfg)
        model, dims = _build(cfg, len(classes), featurizer)
        model.load_state_dict(run.state_dict)
    except (RuntimeError, ConfigError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise RunFormatError(
            f"{run_dir}: weights do not match the stored model ({first})"
        ) from None
    model.eval()
    calibration = Calibration.from_dict(run.calibration)
    return TrainedModel(model, featurizer, calibration, cfg, dims, list(classes))


# ----------------------------------------------------------------------------- evaluation

_HEADLINE = ("auc", "pauc", "eer", "target_rank", "target_first")


def evaluate_part(
    trained: TrainedModel, clips: Sequence[Clip], *, use_cache: bool = True
) -> tuple[dict[str, Any], pd.DataFrame, dict[str, str]]:
    """Metrics and per-clip table of a conditional run on ``clips``.

    The headline metrics and per-class tables use the chosen score (``metrics["score"]``
    names its column); ``metrics["scores"][column]`` holds the headline metrics (``auc``,
    ``pauc``, ``eer``, ``target_rank``, ``target_first``) of each of the three scores.

    Returns:
        ``(metrics, table, {path: reason} for skipped clips)``; the table has ``path, label,
        speaker``, the three scores, ``nats_per_dim``, ``anomaly_score`` (``-chosen``),
        ``p_value`` and ``ll_<class>``.
    """
    sequences, kept, skipped = featurize_sequences(trained.featurizer, clips, use_cache=use_cache)
    if not kept:
        raise DataError(f"none of the {len(clips)} test clips could be read")
    scores = score_sequences(trained, sequences)
    labels = [c.label for c in kept]
    target = trained.config.data.target
    chosen = SCORE_COLUMN[trained.config.model.resolved_score]
    metrics = evaluate_scores(
        scores.score(chosen), labels, target, threshold=trained.calibration.threshold
    )
    metrics["score"] = chosen
    metrics["scores"] = {}
    for column in SCORES:
        m = metrics if column == chosen else evaluate_scores(scores.score(column), labels, target)
        metrics["scores"][column] = {key: m[key] for key in _HEADLINE}
    columns = scores.columns()
    table = pd.DataFrame({"path": [str(c.path) for c in kept], "label": labels})
    for column in SCORES:
        table[column] = columns[column]
    table["nats_per_dim"] = columns["nats_per_dim"]
    table["anomaly_score"] = -scores.score(chosen)
    table["speaker"] = [c.speaker for c in kept]
    table["p_value"] = trained.calibration.p_values(table["anomaly_score"].to_numpy())
    for label in scores.classes:
        table[f"ll_{label}"] = columns[f"ll_{label}"]
    return metrics, table, skipped


def summarize_scores(folds: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per score: mean and std of the fold AUCs and whether the target ranked first in all.

    Args:
        folds: ``{fold: metrics}`` from :func:`evaluate_part`.

    Returns:
        ``{column: {"auc", "auc_std", "pauc", "eer", "target_rank", "target_first_in_all_folds",
        "folds": {fold: auc}}}``.
    """
    out: dict[str, dict[str, Any]] = {}
    for column in SCORES:
        rows = {name: m["scores"][column] for name, m in folds.items()}
        aucs = np.array([r["auc"] for r in rows.values()], dtype=np.float64)
        out[column] = {
            "auc": float(aucs.mean()),
            "auc_std": float(aucs.std(ddof=1)) if len(aucs) > 1 else 0.0,
            "pauc": float(np.mean([r["pauc"] for r in rows.values()])),
            "eer": float(np.mean([r["eer"] for r in rows.values()])),
            "target_rank": float(np.mean([r["target_rank"] for r in rows.values()])),
            "target_first_in_all_folds": all(r["target_rank"] == 1 for r in rows.values()),
            "folds": {name: r["auc"] for name, r in rows.items()},
        }
    return out
