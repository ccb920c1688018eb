"""Per-step traces: where in a clip the model was surprised, and the files that keep them.

``Standardized.log_prob_steps`` gives one log-likelihood per step (a vector's single step,
a frame or sample of a sequence, a column of a spectrogram image); :func:`clip_traces`
computes the traces of clips (under the target class for a class-conditional model), and
the rest writes them:

* ``audioar score --trace DIR``: one CSV per clip, ``step,time_s,log_likelihood``
  (:func:`trace_file_name`, :func:`write_trace_csv`), and ``DIR/index.csv``;
* ``audioar evaluate``: ``traces.npz`` in the evaluation folder with the traces and
  log-mel spectrograms of the most anomalous and two typical target test clips
  (:func:`pick_examples`, :func:`trace_examples`, :func:`trace_arrays`,
  :func:`read_traces`), which ``audioar report`` draws.

A step's time is ``step * step_seconds`` (:func:`step_seconds`): the frame centre for
spectrogram frames and image columns (``hop_length / sample_rate`` apart), the sample for
mu-law codes (``1 / sample_rate``). A vector model has one step per clip: its trace is the
clip's log-likelihood, with no time.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from audioar.errors import AudioError, RunFormatError

if TYPE_CHECKING:
    from audioar.data.discovery import Clip
    from audioar.features import Featurizer
    from audioar.models.contract import InputSpec
    from audioar.pipeline.scoring import ClipScores, WindowedScores
    from audioar.pipeline.trained import TrainedModel

__all__ = [
    "clip_traces",
    "step_seconds",
    "ONE_STEP_NOTE",
    "trace_file_name",
    "trace_csv",
    "write_trace_csv",
    "pick_examples",
    "display_spectrogram",
    "trace_examples",
    "trace_arrays",
    "traces_bytes",
    "read_traces",
    "TRACES_VERSION",
]

logger = logging.getLogger(__name__)

#: What a trace of a model with one step per clip is (said instead of drawing a curve).
ONE_STEP_NOTE = (
    "the model has one step per clip (vector features): a trace is one step, the clip's "
    "log-likelihood; there is no 'where in the clip'"
)
#: Format version of ``traces.npz``.
TRACES_VERSION = 1


# --------------------------------------------------------------------------- traces


@torch.no_grad()
def clip_traces(
    trained: TrainedModel,
    features: Sequence[Tensor],
    *,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    groups: Sequence[str | None] | None = None,
    scores: ClipScores | WindowedScores | None = None,
) -> list[np.ndarray]:
    """Per-step log-likelihoods of clips: ``log p(x_t | x_<t)`` under the target.

    A run conditioned on groups (machine IDs, sections) conditions each clip on its own
    group (``groups``; unknown: its most likely class). A windowed run's steps are the
    clip's windows: its trace is the log-likelihood of every window, whose aggregate
    (``score.aggregate``) is the clip's.

    Batched as scoring is (:func:`audioar.pipeline.inputs.arrange`, clips sorted by length, zero
    padded by :func:`audioar.pipeline.batches.collate`), in eval mode (restored after); a
    class-conditional model is conditioned on the target (``log p(x_t | x_<t, target)``),
    a one-class model gets no labels. Padded steps are cut off: a trace has exactly the
    clip's valid steps and sums to its log-likelihood (``ClipScores.log_likelihood``).

    Args:
        trained: The run.
        features: One featurizer tensor per clip.
        batch_size: Clips per pass. Default None: as scoring
            (:func:`audioar.pipeline.scoring.score_batch_size`).
        device: Where to compute. Default None: the model's device.
        groups: Each clip's group, for a run conditioned on groups. Default None.
        scores: These clips' scores when already computed (``score_features``; a windowed
            run's trace is its windows' scores, a group-conditioned run's class is the one
            each clip is scored against); default None: computed here when needed.

    Returns:
        One float64 array per clip, in input order: ``(steps,)`` with ``steps`` the
        clip's frames, samples (codes) or image columns (at most the image width), and
        ``(1,)`` for a vector model (``(windows,)`` for a windowed run).
    """
    from torch.utils.data import DataLoader

    from audioar.pipeline.batches import ClipSet, collate, evaluating
    from audioar.pipeline.inputs import arrange
    from audioar.pipeline.scoring import score_batch_size, score_features
    from audioar.pipeline.windows import is_windowed

    if not features:
        return []
    model = trained.model
    if (is_windowed(trained.featurizer) or trained.by_group) and scores is None:
        scores = score_features(trained, features, groups)
    if is_windowed(trained.featurizer):
        return scores.window_values("raw")  # type: ignore[union-attr]
    items, lengths = arrange(features, trained.spec)
    if trained.by_group:  # each clip under the class it is scored against
        labels = scores.scored_against.tolist()  # type: ignore[union-attr]
    else:
        label = trained.classes.index(trained.config.data.target) if model.conditional else 0
        labels = [label] * len(items)
    order = sorted(range(len(items)), key=lambda i: lengths[i])
    data = ClipSet(
        [items[i] for i in order], [labels[i] for i in order], [lengths[i] for i in order]
    )
    size = batch_size or score_batch_size(trained.spec)
    loader = DataLoader(data, batch_size=size, shuffle=False, collate_fn=collate)
    param = next(model.parameters())
    device = param.device if device is None else torch.device(device)
    out: list[np.ndarray | None] = [None] * len(items)
    done = 0
    with evaluating(model, device):
        for x, labels, steps in loader:
            x, steps = x.to(device), steps.to(device)
            labels = labels.to(device) if model.conditional else None
            ll = model.log_prob_steps(x, labels, steps).double().cpu().numpy()
            for row, n in zip(ll, steps.tolist(), strict=True):
                out[order[done]] = row[: int(n)].copy()
                done += 1
    return [t for t in out if t is not None]


def step_seconds(featurizer: Featurizer, spec: InputSpec) -> float | None:
    """Seconds between two steps of a trace: ``hop_length / sample_rate`` for frames and
    image columns, ``1 / sample_rate`` for mu-law codes, None for a vector (one step per
    clip)."""
    hop_seconds = getattr(featurizer, "hop_seconds", None)  # windowed: a step per window
    if hop_seconds is not None:
        return float(hop_seconds)
    if spec.kind == "vector":
        return None
    rate = float(featurizer.sample_rate)
    if featurizer.name == "mulaw":
        return 1.0 / rate
    hop = getattr(featurizer.config, "hop_length", None)
    return float(hop) / rate if hop else None


# --------------------------------------------------------------------------- score --trace


def trace_file_name(path: str | os.PathLike) -> str:
    """The trace file of a clip: ``<stem>-<10 hex digits>.csv``, the digits from the SHA-1
    of the clip's absolute path, so clips of one name in different folders never collide.

    Example:
        >>> trace_file_name("/data/a/zero_1.wav")  # doctest: +SKIP
        'zero_1-3f9c0d2a41.csv'
    """
    full = os.path.abspath(os.fspath(path))
    digest = hashlib.sha1(full.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(full).stem)[:80] or "clip"
    return f"{stem}-{digest}.csv"


def trace_csv(trace: np.ndarray, seconds: float | None) -> str:
    """A trace as CSV text: ``step,time_s,log_likelihood`` (``time_s`` empty without a
    time per step, i.e. a vector model's single step)."""
    lines = ["step,time_s,log_likelihood"]
    for i, value in enumerate(np.asarray(trace, dtype=np.float64)):
        t = "" if seconds is None else f"{i * seconds:.9g}"
        lines.append(f"{i},{t},{value:.9g}")
    return "\n".join(lines) + "\n"


def write_trace_csv(
    out_dir: str | os.PathLike, path: str | os.PathLike, trace: np.ndarray, seconds: float | None
) -> Path:
    """Write one clip's trace to ``out_dir / trace_file_name(path)``, whole or not at all.

    Returns:
        The file written.
    """
    from audioar.atomic import atomic_write

    return atomic_write(Path(out_dir) / trace_file_name(path), trace_csv(trace, seconds))


# --------------------------------------------------------------------------- evaluate


def pick_examples(
    anomaly_score: np.ndarray | Sequence[float],
    labels: Sequence[str],
    target: str,
    *,
    anomalous: int = 6,
    typical: int = 2,
    center: float | None = None,
) -> list[tuple[int, str]]:
    """The clips whose traces an evaluation keeps: the most anomalous and typical targets.

    Args:
        anomaly_score: ``(n,)`` anomaly scores (higher = more unusual).
        labels: ``(n,)`` class labels.
        target: The target class.
        anomalous: How many clips with the highest anomaly score (any class). Default 6.
        typical: How many other target clips, those nearest the ``center``. Default 2.
        center: Anomaly score a typical target clip has. Default None: the median over the
            target clips given.

    Returns:
        ``[(index, "anomalous" | "typical"), ...]``, the anomalous ones first (highest
        score first), no index twice.
    """
    score = np.asarray(anomaly_score, dtype=np.float64)
    lab = np.asarray([str(x) for x in labels])
    ranked = np.argsort(-score, kind="stable")
    top = [int(i) for i in ranked[:anomalous]]
    picks = [(i, "anomalous") for i in top]
    rest = [i for i in np.flatnonzero(lab == target) if int(i) not in top]
    if rest and typical > 0:
        mid = float(np.median(score[lab == target])) if center is None else float(center)
        near = sorted(rest, key=lambda i: (abs(score[i] - mid), i))[:typical]
        picks += [(int(i), "typical") for i in near]
    return picks


def display_spectrogram(
    featurizer: Featurizer, path: str | os.PathLike
) -> tuple[np.ndarray, float]:
    """A log-mel spectrogram of a clip to draw above its trace (not the model's features).

    Computed with :class:`audioar.features.STFT` at the featurizer's rate, with its
    ``n_fft`` and ``hop_length`` when it has them (so frames line up with a frame trace),
    else 32 ms windows every 8 ms; ``n_mels`` at most 64.

    Returns:
        ``(spectrogram, frame_seconds)``: ``(frames, n_mels)`` float32 log magnitudes and
        the seconds between frames (frame ``k`` is centred at ``k * frame_seconds``).

    Raises:
        AudioError: The clip cannot be read.
    """
    from audioar.data.io import load_audio
    from audioar.features import STFT
    from audioar.pipeline.windows import model_featurizer

    featurizer = model_featurizer(featurizer)
    rate = int(featurizer.sample_rate)
    cfg = featurizer.config
    n_fft = int(getattr(cfg, "n_fft", 0) or 2 ** max(5, round(math.log2(0.032 * rate))))
    hop = int(getattr(cfg, "hop_length", 0) or max(1, n_fft // 4))
    n_mels = max(8, min(64, (n_fft // 2 + 1) // 3))
    wave, _ = load_audio(path, sample_rate=rate)
    stft = STFT(sample_rate=rate, n_fft=n_fft, hop_length=hop, n_mels=n_mels)
    with torch.no_grad():
        frames = stft(torch.from_numpy(np.ascontiguousarray(wave)))
    return frames.numpy().astype(np.float32), hop / rate


def trace_examples(
    trained: TrainedModel,
    clips: Sequence[Clip],
    *,
    kinds: Sequence[str],
    anomaly_score: Sequence[float],
    fold: str = "",
    use_cache: bool = True,
) -> list[dict[str, Any]]:
    """Traces and display spectrograms of a few clips (an evaluation's examples).

    Clips that cannot be read are left out (logged), never fatal.

    Args:
        trained: The run that scored them.
        clips: The clips.
        kinds: ``"anomalous"`` or ``"typical"`` per clip (:func:`pick_examples`).
        anomaly_score: The run's anomaly score of each clip.
        fold: The fold a clip was held out in (leave-one-speaker-out), else "".
        use_cache: Use the feature cache.

    Returns:
        One dict per clip kept: ``path, label, speaker, fold, kind, anomaly_score,
        log_likelihood`` (the trace's sum), ``trace`` ``(steps,)``, ``spectrogram``
        ``(frames, n_mels)``, ``step_seconds``, ``frame_seconds``.
    """
    from audioar.pipeline.featurize import featurize

    features, kept, skipped = featurize(trained.featurizer, clips, use_cache=use_cache)
    info = {str(c.path): (k, s) for c, k, s in zip(clips, kinds, anomaly_score, strict=True)}
    traces = clip_traces(trained, features, groups=[c.group for c in kept])
    seconds = step_seconds(trained.featurizer, trained.spec)
    out = []
    for clip, trace in zip(kept, traces, strict=True):
        try:
            spectrogram, frame_seconds = display_spectrogram(trained.featurizer, clip.path)
        except AudioError as exc:
            logger.warning("no spectrogram of %s: %s", clip.path, exc)
            continue
        kind, score = info[str(clip.path)]
        out.append(
            {
                "path": str(clip.path),
                "label": str(clip.label),
                "speaker": "" if clip.speaker is None else str(clip.speaker),
                "fold": fold,
                "kind": kind,
                "anomaly_score": float(score),
                "log_likelihood": float(trace.sum()),
                "trace": trace,
                "spectrogram": spectrogram,
                "step_seconds": seconds,
                "frame_seconds": frame_seconds,
            }
        )
    for path, reason in skipped.items():
        logger.warning("no trace of %s: %s", path, reason)
    return out


_TEXT_FIELDS = ("path", "label", "speaker", "fold", "kind")


def trace_arrays(examples: Sequence[Mapping[str, Any]], *, score: str) -> dict[str, np.ndarray]:
    """The arrays of ``traces.npz`` (``np.savez_compressed(file, **arrays)``).

    Format (version :data:`TRACES_VERSION`; read with ``np.load(path)``, no pickles):

    * ``version`` ``()`` int; ``score`` ``()`` str: the column behind ``anomaly_score``;
    * ``path``, ``label``, ``speaker``, ``fold`` (empty unless leave-one-speaker-out),
      ``kind`` (``"anomalous"`` or ``"typical"``): ``(n,)`` str, one per clip;
    * ``anomaly_score``, ``log_likelihood`` (sum of the trace), ``step_seconds``,
      ``frame_seconds``: ``(n,)`` float64;
    * ``trace_<i>``: ``(steps,)`` float64, ``log p(x_t | x_<t[, target])`` in nats, step
      ``t`` at ``t * step_seconds[i]`` s;
    * ``spectrogram_<i>``: ``(frames, n_mels)`` float32 log-mel magnitudes, frame ``k``
      centred at ``k * frame_seconds[i]`` s.
    """
    arrays: dict[str, np.ndarray] = {
        "version": np.asarray(TRACES_VERSION),
        "score": np.asarray(str(score)),
    }
    for name in _TEXT_FIELDS:
        arrays[name] = np.asarray([str(e[name]) for e in examples], dtype=str)
    for name in ("anomaly_score", "log_likelihood", "step_seconds", "frame_seconds"):
        values = [np.nan if e[name] is None else float(e[name]) for e in examples]
        arrays[name] = np.asarray(values, dtype=np.float64)
    for i, e in enumerate(examples):
        arrays[f"trace_{i}"] = np.asarray(e["trace"], dtype=np.float64)
        arrays[f"spectrogram_{i}"] = np.asarray(e["spectrogram"], dtype=np.float32)
    return arrays


def traces_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """``arrays`` as the bytes of a compressed ``.npz`` file."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def read_traces(path: str | os.PathLike) -> tuple[list[dict[str, Any]], str]:
    """Read ``traces.npz`` back (see :func:`trace_arrays`).

    Returns:
        ``(examples, score)``: the examples as :func:`trace_examples` gives them.

    Raises:
        RunFormatError: Not a traces file of this version.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError) as exc:
        raise RunFormatError(f"{path}: not a traces file ({exc})") from None
    version = int(arrays["version"]) if "version" in arrays else None
    if version != TRACES_VERSION:
        raise RunFormatError(
            f"{path}: traces format version {version}; this audioar reads {TRACES_VERSION}"
        )
    try:
        n = len(arrays["path"])
        examples = []
        for i in range(n):
            e: dict[str, Any] = {name: str(arrays[name][i]) for name in _TEXT_FIELDS}
            for name in ("anomaly_score", "log_likelihood", "step_seconds", "frame_seconds"):
                value = float(arrays[name][i])
                e[name] = None if not math.isfinite(value) else value
            e["trace"] = arrays[f"trace_{i}"]
            e["spectrogram"] = arrays[f"spectrogram_{i}"]
            examples.append(e)
    except (KeyError, IndexError, ValueError) as exc:
        raise RunFormatError(f"{path}: incomplete traces file (missing {exc})") from None
    return examples, str(arrays.get("score", ""))
