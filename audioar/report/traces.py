"""The report's trace gallery: the most anomalous and some typical test clips, each a
log-mel spectrogram over its per-step surprise (from the evaluation's ``traces.npz``)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from audioar.atomic import atomic_write
from audioar.errors import RunFormatError
from audioar.evaluation.files import EVALUATION_FILES
from audioar.pipeline.traces import read_traces
from audioar.report.render import Block, Figure, Gallery, Heading, Para, fixed, fmt

__all__ = ["trace_blocks"]

logger = logging.getLogger(__name__)

_TRACE_PNG = re.compile(r"trace_\d+\.png")


def _clip_name(example: Mapping[str, Any]) -> str:
    path = Path(str(example["path"]))
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def trace_blocks(metrics: Mapping[str, Any], eval_dir: Path, out_dir: Path) -> list[Block]:
    """The clips of ``traces.npz``: spectrogram over per-step surprise, one figure each."""
    from audioar.report import figures

    heading = Heading(3, "Where in the clip: per-step surprise", "traces")
    note = metrics.get("traces") if isinstance(metrics.get("traces"), Mapping) else {}
    src = eval_dir / EVALUATION_FILES["traces"]
    for stale in out_dir.glob("trace_*.png"):  # figures of an earlier report
        if _TRACE_PNG.fullmatch(stale.name):
            stale.unlink(missing_ok=True)
    if not src.is_file():
        if note.get("skipped"):
            return [heading, Para(f"No traces: {note['skipped']}.", "note")]
        return []
    try:
        examples, score = read_traces(src)
    except RunFormatError as exc:
        logger.warning("%s", exc)
        return [heading, Para(f"The traces could not be read ({exc}).", "note")]
    usable = [e for e in examples if e["step_seconds"] and len(e["trace"])]
    if not usable:
        return [heading, Para("No clip's trace was kept (no readable test clip).", "note")]
    surprise = np.concatenate([-np.asarray(e["trace"]) for e in usable])
    lo, hi = np.percentile(surprise, [0.5, 99.5])
    pad = 0.08 * (hi - lo or 1.0)
    typical = [-np.asarray(e["trace"]) for e in usable if e["kind"] == "typical"]
    reference = float(np.median(np.concatenate(typical))) if typical else None
    longest = max(
        max(
            (len(e["trace"]) - 0.5) * e["step_seconds"],
            (len(e["spectrogram"]) - 0.5) * e["frame_seconds"],
        )
        for e in usable
    )
    gallery = []
    for i, e in enumerate(usable, start=1):
        what = "most anomalous" if e["kind"] == "anomalous" else "typical target"
        who = ", ".join(x for x in (str(e["label"]), e.get("speaker") or "") if x)
        fold = f", fold {e['fold']}" if e.get("fold") else ""
        title = f"{_clip_name(e)} ({who})"
        fig = figures.trace_figure(
            e["trace"],
            e["step_seconds"],
            e["spectrogram"],
            e["frame_seconds"],
            title=title,
            reference=reference,
            ylim=(float(lo - pad), float(hi + pad)),
            max_seconds=longest,
        )
        png = figures.figure_png(fig)
        name = f"trace_{i}.png"
        atomic_write(out_dir / name, png)
        caption = (
            f"{i}. {what}: {_clip_name(e)} ({who}{fold}); anomaly score "
            f"{fmt(e['anomaly_score'])}, log-likelihood {fixed(e['log_likelihood'], 1)} nats "
            f"over {len(e['trace'])} steps."
        )
        gallery.append(Figure(png, name, caption))
    n_anom = sum(1 for e in usable if e["kind"] == "anomalous")
    text = (
        f"The {n_anom} test clips with the highest anomaly score (`{score}`) and "
        f"{len(usable) - n_anom} typical target clips (anomaly score nearest the target's "
        "median). Top: log-mel spectrogram (for display, not the model's features). Bottom, "
        "on the same time axis: the surprise of every step, `-log p(x_t | x_<t)` in nats under "
        "the target (given the target class for a class-conditional model); the dotted "
        "line marks the most surprising step"
        + ("; dashed: the median step of the typical target clips." if reference else ".")
        + " The surprise axis is shared by all clips."
    )
    return [heading, Para(text), Gallery(gallery)]
