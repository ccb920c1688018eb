"""Figures for evaluations and reports: ROC curves, per-class box plots, histograms, curves.

Each function takes plain arrays (or a history DataFrame) and returns a
:class:`matplotlib.figure.Figure`; :func:`save_figure` writes it to a PNG atomically.
Figures are built with the object-oriented API on an Agg canvas and ``pyplot`` is never
imported, so no display, GUI backend or global figure registry is touched: it works
headless, does not change the backend of a notebook that imports audioar (no global
``matplotlib.use`` call), and no figure is left open.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve

from audioar.atomic import atomic_write

__all__ = [
    "DPI",
    "roc_figure",
    "per_class_boxplot_figure",
    "score_histogram_figure",
    "training_curves_figure",
    "trace_figure",
    "save_figure",
    "figure_png",
]

#: Resolution of saved figures (dots per inch).
DPI = 110

_TARGET_COLOR = "#d62728"
_OTHER_COLOR = "#7f7f7f"
_ACCENT = "#1f77b4"
# ``vert`` is deprecated from matplotlib 3.10, where ``orientation`` replaces it.
_MPL_VERSION = tuple(int(p) for p in matplotlib.__version__.split(".")[:2] if p.isdigit())
_HORIZONTAL = {"orientation": "horizontal"} if _MPL_VERSION >= (3, 10) else {"vert": False}
_RC = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 8,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
}


def _figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure) -> bytes:
    """Render a figure to PNG bytes (tight layout, :data:`DPI`)."""
    with matplotlib.rc_context(_RC):
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write a figure to a PNG file atomically.

    Args:
        fig: the figure.
        path: destination ``.png``; its folder must exist.

    Returns:
        The destination as a Path.
    """
    return atomic_write(path, figure_png(fig))


def roc_figure(
    is_anomaly: np.ndarray,
    anomaly_score: np.ndarray,
    *,
    folds: Sequence[str] | np.ndarray | None = None,
    max_fpr: float = 0.1,
    target: str | None = None,
) -> Figure:
    """ROC curve of target-vs-rest, AUC in the legend, the FPR <= max_fpr region shaded.

    Args:
        is_anomaly: (n,) bool, True for non-target clips (the positives).
        anomaly_score: (n,) anomaly score (= -log-likelihood).
        folds: (n,) fold name per clip: one curve per fold (each needs both kinds of
            clips) plus the pooled curve. Default None (one curve).
        max_fpr: upper end of the shaded partial-AUC region. Default 0.1.
        target: the target class, for the title. Default None.

    Returns:
        The figure.
    """
    y = np.asarray(is_anomaly, dtype=bool).astype(int)
    s = np.asarray(anomaly_score, dtype=np.float64)
    fig = _figure(5.6, 5.0)
    with matplotlib.rc_context(_RC):
        ax = fig.add_subplot()
        ax.axvspan(0.0, max_fpr, color=_ACCENT, alpha=0.08, label=f"FPR ≤ {max_fpr:g} (pAUC)")
        ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls=":", label="chance")
        groups: list[tuple[str, np.ndarray]] = []
        if folds is not None:
            f = np.asarray(folds).astype(str)
            for name in sorted(set(f.tolist())):
                groups.append((f"fold {name}", f == name))
        pooled = "pooled" if groups else "ROC"
        for name, mask in groups:
            if 0 < y[mask].sum() < mask.sum():
                fpr, tpr, _ = roc_curve(y[mask], s[mask])
                auc = roc_auc_score(y[mask], s[mask])
                ax.plot(fpr, tpr, lw=1.0, alpha=0.75, label=f"{name} (AUC {auc:.3f})")
        if 0 < y.sum() < len(y):
            fpr, tpr, _ = roc_curve(y, s)
            auc = roc_auc_score(y, s)
            ax.plot(fpr, tpr, color="black", lw=2.0, label=f"{pooled} (AUC {auc:.3f})")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel("false positive rate (target clips flagged)")
        ax.set_ylabel("true positive rate (other clips flagged)")
        title = "ROC: target vs rest" if target is None else f"ROC: {target!s} vs rest"
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", ncols=1 if len(groups) < 8 else 2)
    return fig


def robust_range(values: np.ndarray, *, tail: float = 0.02) -> tuple[float, float]:
    """Axis limits that hold the bulk of ``values``: the ``tail`` and ``1 - tail`` quantiles
    widened by half their distance, never past the data. A few extreme clips (a clip at
    -900 nats among clips near -60) then no longer squeeze everything else into a corner.

    Returns:
        ``(low, high)``; ``(0, 1)`` without finite values.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return 0.0, 1.0
    lo, hi = np.quantile(v, [tail, 1.0 - tail])
    margin = 0.5 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.05
    low, high = max(v.min(), lo - margin), min(v.max(), hi + margin)
    if high <= low:
        low, high = low - 0.5, high + 0.5
    return float(low), float(high)


def _beyond(values: np.ndarray, low: float, high: float) -> int:
    v = np.asarray(values, dtype=np.float64)
    return int(((v < low) | (v > high)).sum())


def per_class_boxplot_figure(
    log_likelihood: np.ndarray, labels: Sequence[str] | np.ndarray, target: str
) -> Figure:
    """Box plot of the log-likelihood per class, sorted by median (highest on top).

    Args:
        log_likelihood: (n,) log-likelihood per clip in nats.
        labels: (n,) class labels.
        target: the target class, drawn in red; the others in grey.

    Returns:
        The figure.
    """
    ll = np.asarray(log_likelihood, dtype=np.float64)
    lab = np.asarray(labels).astype(str)
    classes = sorted(set(lab.tolist()), key=lambda c: (np.median(ll[lab == c]), c))
    height = max(2.8, 0.9 + 0.28 * len(classes))
    fig = _figure(7.0, height)
    with matplotlib.rc_context(_RC):
        ax = fig.add_subplot()
        data = [ll[lab == c] for c in classes]
        box = ax.boxplot(
            data,
            **_HORIZONTAL,
            widths=0.6,
            patch_artist=True,
            showfliers=True,
            flierprops={"markersize": 2.5, "alpha": 0.5},
            medianprops={"color": "black"},
        )
        ax.set_yticks(range(1, len(classes) + 1), classes)
        for patch, c in zip(box["boxes"], classes, strict=True):
            is_t = c == str(target)
            patch.set_facecolor(_TARGET_COLOR if is_t else "#d9d9d9")
            patch.set_edgecolor(_TARGET_COLOR if is_t else _OTHER_COLOR)
        for tick in ax.get_yticklabels():
            if tick.get_text() == str(target):
                tick.set_color(_TARGET_COLOR)
                tick.set_fontweight("bold")
        if str(target) in classes:
            ax.axvline(np.median(ll[lab == str(target)]), color=_TARGET_COLOR, lw=0.8, ls="--")
        low, high = robust_range(ll)
        ax.set_xlim(low - 0.02 * (high - low), high + 0.02 * (high - low))
        outside = _beyond(ll, low, high)
        ax.set_xlabel(
            f"log p(x | {target!s}) (nats, higher = more normal)"
            + (f"; {outside} clip(s) beyond the axis not drawn" if outside else "")
        )
        ax.set_title(f"Log-likelihood per class (target {target!s} in red)")
        ax.grid(axis="x", alpha=0.3)
    return fig


def score_histogram_figure(
    anomaly_score: np.ndarray,
    is_target: np.ndarray,
    *,
    threshold: float | None = None,
    target: str | None = None,
    pooled: bool = False,
    bins: int = 40,
    score: str | None = None,
) -> Figure:
    """Histograms of the anomaly score of target clips vs all other clips.

    The axis holds the bulk of the scores (:func:`robust_range`); clips beyond it are
    counted in the edge bins, and the axis label says how many.

    Args:
        anomaly_score: (n,) anomaly score (= -log-likelihood).
        is_target: (n,) bool, True for target clips.
        threshold: decision threshold, drawn as a vertical line. Default None.
        target: the target class, for the legend. Default None.
        pooled: scores of several folds pooled (noted in the title). Default False.
        bins: number of shared bins. Default 40.
        score: the score column the anomaly score is minus (for the axis label). Default
            None: the log-likelihood.

    Returns:
        The figure.
    """
    raw = np.asarray(anomaly_score, dtype=np.float64)
    t = np.asarray(is_target, dtype=bool)
    low, high = robust_range(raw)
    outside = _beyond(raw, low, high)
    s = np.clip(raw, low, high)
    fig = _figure(6.4, 3.8)
    with matplotlib.rc_context(_RC):
        ax = fig.add_subplot()
        edges = np.histogram_bin_edges(s[np.isfinite(s)], bins=bins, range=(low, high))
        name = "target" if target is None else f"target ({target!s})"
        ax.hist(s[~t], bins=edges, density=True, alpha=0.5, color=_OTHER_COLOR, label="others")
        ax.hist(
            s[t],
            bins=edges,
            density=True,
            histtype="stepfilled",
            alpha=0.35,
            color=_TARGET_COLOR,
            label=name,
        )
        ax.hist(s[t], bins=edges, density=True, histtype="step", lw=1.4, color=_TARGET_COLOR)
        if threshold is not None and np.isfinite(threshold):
            ax.axvline(
                threshold, color="black", ls="--", lw=1.2, label=f"threshold {threshold:.4g}"
            )
        ax.set_xlabel(
            f"anomaly score = −{score or 'log-likelihood'}"
            + (f"; {outside} clip(s) beyond the axis, in the edge bins" if outside else "")
        )
        ax.set_ylabel("density")
        ax.set_title("Anomaly scores" + (" (all folds pooled)" if pooled else ""))
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def training_curves_figure(
    history: pd.DataFrame, *, best_epoch: int | None = None, target: str | None = None
) -> Figure:
    """Log-likelihood per epoch: training, target validation (bold) and compared classes.

    Args:
        history: one row per epoch with ``epoch`` and any of ``train_log_likelihood``,
            ``val_log_likelihood`` and ``ll_<label>`` (mean log-likelihood of the
            compared class ``<label>``).
        best_epoch: drawn as a vertical line. Default None.
        target: the target class, for the legend. Default None.

    Returns:
        The figure.
    """
    epochs = history["epoch"].to_numpy() if "epoch" in history else np.arange(1, len(history) + 1)
    compared = [c for c in history.columns if c.startswith("ll_")]
    fig = _figure(7.8, 4.4)
    with matplotlib.rc_context(_RC):
        ax = fig.add_subplot()
        # tab20 without its two reds (red is the target's colour); dashes after 18 classes
        palette = [c for i, c in enumerate(matplotlib.colormaps["tab20"].colors) if i not in (6, 7)]
        curves: dict[str, np.ndarray] = {}
        for i, col in enumerate(compared):
            values = history[col].to_numpy(dtype=np.float64)
            style = "-" if i < len(palette) else (0, (4, 2))
            color = palette[i % len(palette)]
            ax.plot(epochs, values, lw=0.9, alpha=0.85, color=color, ls=style, label=col[3:])
            curves[col] = values
        target_curves = []
        if "train_log_likelihood" in history:
            values = history["train_log_likelihood"].to_numpy(dtype=np.float64)
            ax.plot(epochs, values, color="black", lw=1.4, ls="--", label="train (target)")
            target_curves.append(values)
        if "val_log_likelihood" in history:
            values = history["val_log_likelihood"].to_numpy(dtype=np.float64)
            name = "validation (target)" if target is None else f"validation ({target!s})"
            ax.plot(epochs, values, color=_TARGET_COLOR, lw=2.6, label=name)
            target_curves.append(values)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="0.3", lw=0.8, ls=":", label=f"best epoch {best_epoch}")
        below = _focus_ylim(ax, target_curves, curves)
        title = "Training curves"
        if below:
            title += f" ({below} class{'es' if below > 1 else ''} fall below the axis)"
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel("mean log-likelihood (nats)")
        ax.grid(alpha=0.3)
        ax.legend(
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            ncols=1 if len(compared) <= 16 else 2,
            frameon=False,
        )
    return fig


def _smooth(values: np.ndarray, width: int) -> np.ndarray:
    """Moving average over ``width`` steps (same length; the ends average fewer steps)."""
    if width <= 1 or len(values) < 3:
        return values
    kernel = np.ones(width)
    total = np.convolve(values, kernel, mode="same")
    count = np.convolve(np.ones(len(values)), kernel, mode="same")
    return total / count


def trace_figure(
    trace: np.ndarray,
    step_seconds: float,
    spectrogram: np.ndarray,
    frame_seconds: float,
    *,
    title: str = "",
    reference: float | None = None,
    ylim: tuple[float, float] | None = None,
    max_seconds: float | None = None,
) -> Figure:
    """A clip's log-mel spectrogram with its per-step surprise beneath, on one time axis.

    The surprise of step ``t`` is ``-log p(x_t | x_<t)`` (nats, higher = more surprising),
    drawn at ``t * step_seconds``; traces with more than about 100 steps per second
    (mu-law samples) are drawn faintly with a 10 ms moving average over them. A dotted line
    marks the most surprising step on both panels (white on the spectrogram, red below).

    Args:
        trace: ``(steps,)`` per-step log-likelihoods (nats).
        step_seconds: Seconds between steps.
        spectrogram: ``(frames, n_mels)`` log-mel magnitudes; frame ``k`` at
            ``k * frame_seconds``.
        frame_seconds: Seconds between frames.
        title: Figure title. Default "".
        reference: A surprise level to draw dashed (e.g. the median of typical target
            clips). Default None.
        ylim: Limits of the surprise axis (to share them between clips). Default None.
        max_seconds: Right end of the time axis (to share it between clips). Default None:
            the end of the clip.

    Returns:
        The figure.
    """
    trace = np.asarray(trace, dtype=np.float64)
    spec = np.asarray(spectrogram, dtype=np.float64)
    surprise = -trace
    times = np.arange(len(trace)) * float(step_seconds)
    end = max((len(spec) - 0.5) * frame_seconds, (len(trace) - 0.5) * step_seconds)
    fig = _figure(5.4, 3.5)
    with matplotlib.rc_context(_RC):
        ax_s, ax_t = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1.15, 1]})
        half = frame_seconds / 2.0
        extent = (
            -half,
            len(spec) * frame_seconds - half,
            0,
            spec.shape[1] if spec.ndim == 2 else 1,
        )
        if spec.size:
            ax_s.imshow(spec.T, origin="lower", aspect="auto", extent=extent, cmap="magma")
        ax_s.set_ylabel("mel band")
        ax_s.tick_params(labelbottom=False)
        dense = step_seconds < 0.005 and len(trace) > 200
        if dense:
            width = max(1, round(0.01 / step_seconds))
            ax_t.plot(times, surprise, color=_ACCENT, lw=0.4, alpha=0.25)
            ax_t.plot(times, _smooth(surprise, width), color=_ACCENT, lw=1.3)
        else:
            ax_t.plot(times, surprise, color=_ACCENT, lw=1.3, marker="." if len(trace) < 60 else "")
        if len(trace):
            peak = float(times[int(np.argmax(_smooth(surprise, width) if dense else surprise))])
            ax_s.axvline(peak, color="white", lw=1.2, ls=":")
            ax_t.axvline(peak, color=_TARGET_COLOR, lw=1.0, ls=":")
        if reference is not None and np.isfinite(reference):
            ax_t.axhline(reference, color="0.35", lw=0.9, ls="--")
        if ylim is not None:
            ax_t.set_ylim(*ylim)
        ax_t.set_xlim(-half, max_seconds if max_seconds else end)
        ax_t.set_xlabel("time (s)")
        ax_t.set_ylabel("surprise (nats)")
        ax_t.grid(alpha=0.3)
        if title:
            ax_s.set_title(title, fontsize=9)
    return fig


def _focus_ylim(ax: object, target: list[np.ndarray], compared: dict[str, np.ndarray]) -> int:
    """Show the target's curves and the classes near them; cut off the ones far below.

    Compared classes often fall thousands of nats below the target as training goes on,
    and one linear axis over all of them flattens the target's curve into a line at the
    top. The axis spans from the highest curve (the target's or a class beating it) down
    to the target's lowest value (after its first steep epochs) and twice that height
    again below it, or further to the best value of the nearest class below the target:
    the gap between the target and its nearest rivals fills the plot.

    Returns:
        How many compared classes leave the axis at the bottom.
    """

    def late(values: np.ndarray) -> np.ndarray:
        v = values[len(values) // 5 :] if len(values) >= 5 else values
        return v[np.isfinite(v)]

    focus = [v for v in (late(t) for t in target) if v.size]
    if not focus:
        return 0
    floor = min(float(v.min()) for v in focus)
    tops = [float(v.max()) for v in focus]
    tops += [float(late(v).max()) for v in compared.values() if late(v).size]
    hi = max(tops)
    if hi - floor <= 0:
        return 0
    below = [float(late(v).max()) for v in compared.values() if late(v).size]
    below = [top for top in below if top < floor]
    lo = min([floor - 2.0 * (hi - floor), *([max(below)] if below else [])])
    pad = 0.05 * (hi - lo)
    lowest = [float(np.nanmin(v)) for v in compared.values() if np.isfinite(v).any()]
    if min([floor, *lowest]) >= lo:
        lo = min([floor, *lowest])  # everything fits: no cut
    ax.set_ylim(lo - pad, hi + pad)  # type: ignore[attr-defined]
    return sum(1 for m in lowest if m < lo - pad)
