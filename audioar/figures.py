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

from audioar.evaluate import atomic_write_bytes

__all__ = [
    "DPI",
    "roc_figure",
    "per_class_boxplot_figure",
    "score_histogram_figure",
    "training_curves_figure",
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
    return atomic_write_bytes(path, figure_png(fig))


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
        ax.set_xlabel("log-likelihood (nats, higher = more normal)")
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
) -> Figure:
    """Histograms of the anomaly score of target clips vs all other clips.

    Args:
        anomaly_score: (n,) anomaly score (= -log-likelihood).
        is_target: (n,) bool, True for target clips.
        threshold: decision threshold, drawn as a vertical line. Default None.
        target: the target class, for the legend. Default None.
        pooled: scores of several folds pooled (noted in the title). Default False.
        bins: number of shared bins. Default 40.

    Returns:
        The figure.
    """
    s = np.asarray(anomaly_score, dtype=np.float64)
    t = np.asarray(is_target, dtype=bool)
    fig = _figure(6.4, 3.8)
    with matplotlib.rc_context(_RC):
        ax = fig.add_subplot()
        edges = np.histogram_bin_edges(s, bins=bins)
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
        ax.set_xlabel("anomaly score = −log-likelihood (nats)")
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
        plotted: list[np.ndarray] = []
        for i, col in enumerate(compared):
            values = history[col].to_numpy(dtype=np.float64)
            style = "-" if i < len(palette) else (0, (4, 2))
            color = palette[i % len(palette)]
            ax.plot(epochs, values, lw=0.9, alpha=0.85, color=color, ls=style, label=col[3:])
            plotted.append(values)
        if "train_log_likelihood" in history:
            values = history["train_log_likelihood"].to_numpy(dtype=np.float64)
            ax.plot(epochs, values, color="black", lw=1.4, ls="--", label="train (target)")
            plotted.append(values)
        if "val_log_likelihood" in history:
            values = history["val_log_likelihood"].to_numpy(dtype=np.float64)
            name = "validation (target)" if target is None else f"validation ({target!s})"
            ax.plot(epochs, values, color=_TARGET_COLOR, lw=2.6, label=name)
            plotted.append(values)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="0.3", lw=0.8, ls=":", label=f"best epoch {best_epoch}")
        if plotted:
            _robust_ylim(ax, np.concatenate(plotted))
        ax.set_xlabel("epoch")
        ax.set_ylabel("mean log-likelihood (nats)")
        ax.set_title("Training curves")
        ax.grid(alpha=0.3)
        ax.legend(
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            ncols=1 if len(compared) <= 16 else 2,
            frameon=False,
        )
    return fig


def _robust_ylim(ax: object, values: np.ndarray) -> None:
    """Keep a few very low early epochs from squashing the rest of the curves."""
    v = values[np.isfinite(values)]
    if v.size < 2:
        return
    lo, hi = float(np.quantile(v, 0.05)), float(v.max())
    if hi - lo <= 0:
        return
    if float(v.min()) < lo - 0.2 * (hi - lo):
        pad = 0.05 * (hi - lo)
        ax.set_ylim(lo - pad, hi + pad)  # type: ignore[attr-defined]
