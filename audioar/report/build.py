"""Run reports: one self-contained HTML file and a Markdown twin.

:func:`build_report` reads a run directory (``config.json``, ``history.csv``) and its
evaluation folder (``metrics.json`` and figures from
:func:`audioar.evaluation.files.write_evaluation`)
and writes

* ``report.html``: a single file, figures embedded as base64 PNG, inline CSS, no scripts
  and no external assets, so it can be mailed or archived as is;
* ``report.md``: the same content, figures referenced as PNG files relative to it.

AUC, pAUC and EER are shown with their bootstrap intervals (``metrics["ci"]``). An evaluation
of DCASE machine folders (``metrics["sections"]`` and ``metrics["official"]``, from
:func:`audioar.evaluation.sections.section_metrics`) adds, right after the headline, a table
per machine
ID / section and the challenge year's official score. When the evaluation folder holds
``traces.npz`` each of its clips is drawn as its spectrogram over its per-step surprise
(``trace_<i>.png``).

The content is built once as a list of blocks (headings, paragraphs, tables, figures) and
rendered twice, so both files always say the same thing.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audioar.atomic import atomic_write
from audioar.errors import RunFormatError
from audioar.pipeline.artifact import read_document
from audioar.report.evaluation import evaluation_blocks, headline, howto_blocks, section_blocks
from audioar.report.render import (
    Block,
    Cards,
    Figure,
    Grid,
    Heading,
    Para,
    Table,
    fixed,
    fmt,
    render_html,
    render_md,
)

__all__ = ["build_report", "MAX_EPOCH_ROWS"]

logger = logging.getLogger(__name__)

#: At most this many evenly spaced epochs in the per-epoch table (plus the best epoch).
MAX_EPOCH_ROWS = 25

# --------------------------------------------------------------------------- inputs


def _load_history(path: Path) -> tuple[pd.DataFrame | None, str]:
    if not path.is_file():
        return None, "No training history (history.csv) in this run."
    try:
        history = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        logger.warning("%s: unreadable (%s)", path, exc)
        return None, f"The training history `{path.name}` could not be read ({exc})."
    if history.empty:
        return None, "The training history is empty."
    if "epoch" not in history.columns:
        history.insert(0, "epoch", np.arange(1, len(history) + 1))
    return history, ""


def _load_metrics(eval_dir: Path) -> dict[str, Any] | None:
    path = eval_dir / "metrics.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunFormatError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RunFormatError(f"{path}: expected a JSON object")
    return data


def _section(d: Mapping[str, Any] | None, *keys: str) -> dict[str, Any]:
    cur: Any = d or {}
    for k in keys:
        cur = cur.get(k) if isinstance(cur, Mapping) else None
    return dict(cur) if isinstance(cur, Mapping) else {}


# --------------------------------------------------------------------------- sections


def _kv_table(caption: str, items: Mapping[str, Any]) -> Table:
    rows = [[str(k), fmt(v)] for k, v in items.items() if v is not None and v != {}]
    return Table(["setting", "value"], rows, caption=caption)


def _setup_blocks(cfg: Mapping[str, Any]) -> list[Block]:
    conf = _section(cfg, "config")
    data = {**_section(conf, "data"), **_section(cfg, "extra", "data")}
    classes = data.pop("classes", None)
    if isinstance(classes, list):
        data["classes"] = f"{len(classes)}: " + ", ".join(str(c) for c in classes)
    # The featurizer's own config holds exactly the settings that apply to it.
    features = _section(cfg, "featurizer") or _section(conf, "features")
    train = {**_section(conf, "train"), **_section(cfg, "extra", "fit")}
    calib = {**_section(conf, "calibration"), **_section(cfg, "calibration")}
    source = _section(cfg, "extra", "calibration_source")  # `audioar calibrate`
    if source:
        inputs = ", ".join(str(i) for i in source.get("inputs", []))
        calib["set from"] = f"{source.get('clips')} clips of {inputs} ({source.get('when')})"
    tables = [
        _kv_table("Data", data),
        _kv_table("Features", features),
        _kv_table("Model", {**_section(conf, "model"), **_section(cfg, "extra", "model")}),
        _kv_table("Training", train),
        _kv_table("Calibration", calib),
        _kv_table("Run", {k: cfg.get(k) for k in ("audioar_version", "created", "format_version")}),
    ]
    tables = [t for t in tables if t.rows]  # older or partial runs lack some sections
    if not tables:
        return [Heading(2, "Setup", "setup"), Para("No settings recorded in config.json.")]
    return [Heading(2, "Setup", "setup"), Grid(tables)]


def _best_epoch(history: pd.DataFrame, cfg: Mapping[str, Any]) -> int | None:
    best = _section(cfg, "extra", "fit").get("best_epoch")
    if isinstance(best, int | float) and math.isfinite(best):
        return int(best)
    if "val_log_likelihood" in history and history["val_log_likelihood"].notna().any():
        return int(history.loc[history["val_log_likelihood"].idxmax(), "epoch"])
    return None


def _epoch_rows(history: pd.DataFrame, best: int | None) -> list[int]:
    """Row positions: at most MAX_EPOCH_ROWS evenly spaced, always first, last and best."""
    n = len(history)
    picked = set(np.unique(np.linspace(0, n - 1, min(n, MAX_EPOCH_ROWS)).round().astype(int)))
    if best is not None:
        hits = np.flatnonzero(history["epoch"].to_numpy() == best)
        if hits.size:
            picked.add(int(hits[0]))
    return sorted(int(i) for i in picked)


def _training_blocks(
    history: pd.DataFrame | None,
    note: str,
    cfg: Mapping[str, Any],
    target: str,
    out_dir: Path,
) -> list[Block]:
    from audioar.report import figures

    blocks: list[Block] = [Heading(2, "Training", "training")]
    if history is None:
        return blocks + [Para(note, "note")]
    best = _best_epoch(history, cfg)
    fig = figures.training_curves_figure(history, best_epoch=best, target=target or None)
    png = figures.figure_png(fig)
    atomic_write(out_dir / "training_curves.png", png)
    blocks.append(
        Figure(
            png,
            "training_curves.png",
            "Mean log-likelihood per epoch: training and validation clips of the target, "
            "and each compared class.",
        )
    )
    compared = [c for c in history.columns if c.startswith("ll_")]
    cols = [("epoch", "epoch")]
    cols += [(c, n) for c, n in (("train_log_likelihood", "train LL"),) if c in history]
    if "val_log_likelihood" in history:
        cols.append(("val_log_likelihood", f"val LL ({target})" if target else "val LL"))
    cols += [(c, c[3:]) for c in compared]
    if "seconds" in history:
        cols.append(("seconds", "s"))
    positions = _epoch_rows(history, best)
    rows, highlight = [], set()
    for i, pos in enumerate(positions):
        rec = history.iloc[pos]
        row = []
        for col, _ in cols:
            if col == "epoch":
                row.append(fmt(int(rec[col])) if pd.notna(rec[col]) else "–")
            elif col == "seconds":
                row.append(fixed(rec[col], 1))
            else:
                row.append(fixed(rec[col], 2))
        rows.append(row)
        if best is not None and int(rec["epoch"]) == best:
            highlight.add(i)
    shown = f"{len(positions)} of {len(history)} epochs" if len(positions) < len(history) else ""
    caption = "Mean log-likelihood (nats) per epoch" + (f" ({shown})" if shown else "")
    if best is not None:
        caption += f"; best epoch {best} highlighted"
    blocks.append(
        Table(
            [n for _, n in cols],
            rows,
            caption=caption,
            numeric=[True] * len(cols),
            highlight=highlight,
        )
    )
    if compared:
        blocks.append(
            Para(
                "Columns after the validation LL: mean log-likelihood of each compared "
                "class's clips under the model at that epoch. The target should stay on top.",
                "muted",
            )
        )
    return blocks


# --------------------------------------------------------------------------- entry point


def build_report(
    run_dir: str | os.PathLike,
    *,
    eval_dir: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
) -> tuple[Path, Path]:
    """Write ``report.html`` (self-contained) and ``report.md`` for a run.

    Args:
        run_dir: the run directory (``config.json`` as :func:`audioar.pipeline.artifact.save_run`
            writes it, optional ``history.csv``).
        eval_dir: the evaluation folder written by
            :func:`audioar.evaluation.metrics.write_evaluation`. Default ``run_dir/eval``; if it has
            no ``metrics.json`` the report says the run is not evaluated yet.
        out_dir: where to write the report (created if missing). Default ``run_dir``.
            Also receives ``training_curves.png``, and copies of evaluation figures that
            are not below it (so ``report.md``'s relative links work).

    Returns:
        ``(html_path, md_path)``.

    Raises:
        RunFormatError: ``config.json`` missing, not JSON, or of another format version;
            ``metrics.json`` present but not JSON.

    Example:
        >>> html_path, md_path = build_report("runs/zero")  # doctest: +SKIP
    """
    run = Path(run_dir)
    cfg = read_document(run)
    ev = Path(eval_dir) if eval_dir is not None else run / "eval"
    out = Path(out_dir) if out_dir is not None else run
    out.mkdir(parents=True, exist_ok=True)
    metrics = _load_metrics(ev)
    history, note = _load_history(run / "history.csv")

    extra_data = _section(cfg, "extra", "data")
    conf_data = _section(cfg, "config", "data")
    target = str(
        (metrics or {}).get("target") or extra_data.get("target") or conf_data.get("target") or ""
    )
    stored = _section(cfg, "extra", "model")
    vector = _section(stored, "input").get("kind", "vector") == "vector"
    dims = _section(cfg, "extra", "fit").get("dims") if vector else None
    dims = int(dims) if isinstance(dims, int | float) and dims else None
    model = _section(cfg, "config", "model")
    model_name = next((str(model[k]) for k in ("name", "kind", "type") if model.get(k)), "")

    title = "audioar report" + (f": {target}" if target else "")
    subtitle = " · ".join(
        x
        for x in (
            f"run {run.resolve().name}",
            f"model {model_name}" if model_name else "",
            f"created {cfg['created']}" if cfg.get("created") else "",
            f"audioar {cfg['audioar_version']}" if cfg.get("audioar_version") else "",
        )
        if x
    )
    blocks: list[Block] = [Para(subtitle, "muted")]
    if metrics is not None:
        blocks.append(Cards(headline(metrics)))
    # A run conditioned on groups scores each clip against its own machine ID / section.
    by_group = extra_data.get("condition") == "group" and stored.get("conditional") is not False
    # results first (headline, per section, per class, figures), then how they came about
    blocks += section_blocks(metrics, by_group=by_group, target=target)
    blocks += evaluation_blocks(metrics, ev, run, out, target, dims)
    blocks += _training_blocks(history, note, cfg, target, out)
    blocks += _setup_blocks(cfg)
    blocks += howto_blocks(dims or (metrics or {}).get("dims"), bool(stored.get("conditional")))

    html_path = atomic_write(
        out / "report.html", render_html(title, [Heading(1, title)] + blocks).encode()
    )
    md_path = atomic_write(out / "report.md", render_md(title, blocks).encode())
    logger.info("wrote %s and %s", html_path, md_path)
    return html_path, md_path
