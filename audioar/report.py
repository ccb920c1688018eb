"""Run reports: one self-contained HTML file and a Markdown twin.

:func:`build_report` reads a run directory (``config.json``, ``history.csv``) and its
evaluation folder (``metrics.json`` and figures from :func:`audioar.evaluate.write_evaluation`)
and writes

* ``report.html``: a single file, figures embedded as base64 PNG, inline CSS, no scripts
  and no external assets, so it can be mailed or archived as is;
* ``report.md``: the same content, figures referenced as PNG files relative to it.

The content is built once as a list of blocks (headings, paragraphs, tables, figures) and
rendered twice, so both files always say the same thing.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audioar.errors import AudioarError, RunFormatError
from audioar.evaluate import atomic_write_bytes

__all__ = ["build_report", "REPORT_FORMAT_VERSION", "MAX_EPOCH_ROWS"]

logger = logging.getLogger(__name__)

#: The ``config.json`` format version this module reads.
REPORT_FORMAT_VERSION = 1
#: At most this many evenly spaced epochs in the per-epoch table (plus the best epoch).
MAX_EPOCH_ROWS = 25

_EVAL_FIGURES = (
    ("roc.png", "ROC curve, target vs rest (shaded: the FPR range of the pAUC)."),
    ("per_class_loglik.png", "Log-likelihood per class, sorted by median; target in red."),
    ("score_hist.png", "Anomaly scores of target clips vs all others, with the threshold."),
)

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
 margin:0;background:#f6f7f9;color:#1d2330;line-height:1.45;font-size:15px}
main{max-width:1100px;margin:0 auto;padding:24px 28px 48px;background:#fff;
 box-shadow:0 0 0 1px #e3e6eb}
h1{font-size:1.6em;margin:.2em 0 .1em}
h2{font-size:1.25em;margin:1.8em 0 .5em;padding-bottom:.2em;border-bottom:2px solid #e3e6eb}
h3{font-size:1.05em;margin:1.2em 0 .4em}
p{margin:.4em 0 .8em}
code{background:#eef1f5;padding:1px 5px;border-radius:3px;font-size:.92em}
.summary{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0 6px}
.card{border:1px solid #dfe3ea;border-radius:6px;padding:8px 14px;min-width:110px;
 background:#fafbfc}
.card .v{font-size:1.45em;font-weight:600}
.card .k{font-size:.8em;color:#5b6476;text-transform:uppercase;letter-spacing:.03em}
.grid{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
.grid>div{flex:1 1 300px;min-width:260px}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.3em 0 1em;font-size:.88em}
th,td{border:1px solid #dfe3ea;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f2f6;font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.hl td{background:#fde8e8;font-weight:600}
caption{caption-side:top;text-align:left;font-weight:600;padding:2px 0 4px;color:#38404f}
figure{margin:10px 0 18px}
figure img{max-width:100%;height:auto;border:1px solid #e3e6eb}
figcaption{font-size:.85em;color:#5b6476}
.note{background:#f4f7fb;border-left:4px solid #8aa4c8;padding:8px 14px;margin:10px 0}
.muted{color:#6b7385;font-size:.85em}
.bad{color:#b42318;font-weight:600}.good{color:#067647;font-weight:600}
"""


# --------------------------------------------------------------------------- blocks


@dataclass
class _Heading:
    level: int
    text: str
    anchor: str = ""


@dataclass
class _Para:
    text: str  # `code` and **bold** are rendered; everything else is escaped
    css: str = ""


@dataclass
class _Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""
    numeric: list[bool] = field(default_factory=list)
    highlight: set[int] = field(default_factory=set)


@dataclass
class _Figure:
    png: bytes
    md_path: str
    caption: str


@dataclass
class _Cards:
    items: list[tuple[str, str]]


@dataclass
class _Grid:
    tables: list[_Table]


_Block = _Heading | _Para | _Table | _Figure | _Cards | _Grid


# --------------------------------------------------------------------------- formatting


def _fmt(value: Any, digits: int = 4) -> str:
    """Compact text for a table cell."""
    if value is None:
        return "–"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        v = float(value)
        if not math.isfinite(v):
            return "–"
        return f"{v:.{digits}g}"
    if isinstance(value, list | tuple):
        numbers = [v for v in value if isinstance(v, int | float) and not isinstance(v, bool)]
        if len(value) > 8 and len(numbers) == len(value):  # e.g. calibration reference scores
            return f"{len(value)} values, {min(numbers):.{digits}g} … {max(numbers):.{digits}g}"
        if len(value) > 40:
            head = ", ".join(_fmt(v, digits) for v in value[:40])
            return f"{head}, … ({len(value) - 40} more)"
        if all(isinstance(v, str | int | float) for v in value):
            return ", ".join(_fmt(v, digits) for v in value) if value else "[]"
        return json.dumps(value, default=str)
    if isinstance(value, Mapping):
        return json.dumps(value, default=str, separators=(", ", ": "))
    return str(value)


def _fixed(value: Any, decimals: int) -> str:
    if value is None:
        return "–"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{v:.{decimals}f}" if math.isfinite(v) else "–"


_INLINE = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*")


def _inline_html(text: str) -> str:
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(html.escape(text[pos : m.start()]))
        if m.group(1) is not None:
            out.append(f"<code>{html.escape(m.group(1))}</code>")
        else:
            out.append(f"<strong>{html.escape(m.group(2))}</strong>")
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


def _md_text(text: str) -> str:
    """Markdown-safe text: ``<``, ``>``, ``&`` escaped outside `code` spans (no raw HTML)."""
    parts = re.split(r"(`[^`]+`)", text)
    return "".join(p if p.startswith("`") else html.escape(p, quote=False) for p in parts)


def _md_cell(text: str) -> str:
    return _md_text(text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " "))


# --------------------------------------------------------------------------- renderers


def _render_table_html(t: _Table) -> str:
    num = t.numeric or [False] * len(t.header)
    parts = ['<div class="scroll"><table>']
    if t.caption:
        parts.append(f"<caption>{html.escape(t.caption)}</caption>")
    head = "".join(
        f"<th{' class=num' if n else ''}>{html.escape(h)}</th>"
        for h, n in zip(t.header, num, strict=True)
    )
    parts.append(f"<thead><tr>{head}</tr></thead><tbody>")
    for i, row in enumerate(t.rows):
        cls = ' class="hl"' if i in t.highlight else ""
        cells = "".join(
            f"<td{' class=num' if n else ''}>{html.escape(c)}</td>"
            for c, n in zip(row, num, strict=True)
        )
        parts.append(f"<tr{cls}>{cells}</tr>")
    parts.append("</tbody></table></div>")
    return "".join(parts)


def _render_html(title: str, blocks: Sequence[_Block]) -> str:
    body: list[str] = []
    for b in blocks:
        if isinstance(b, _Heading):
            anchor = f' id="{html.escape(b.anchor)}"' if b.anchor else ""
            body.append(f"<h{b.level}{anchor}>{html.escape(b.text)}</h{b.level}>")
        elif isinstance(b, _Para):
            cls = f' class="{b.css}"' if b.css else ""
            body.append(f"<p{cls}>{_inline_html(b.text)}</p>")
        elif isinstance(b, _Table):
            body.append(_render_table_html(b))
        elif isinstance(b, _Grid):
            inner = "".join(f"<div>{_render_table_html(t)}</div>" for t in b.tables)
            body.append(f'<div class="grid">{inner}</div>')
        elif isinstance(b, _Cards):
            cards = "".join(
                f'<div class="card"><div class="v">{html.escape(v)}</div>'
                f'<div class="k">{html.escape(k)}</div></div>'
                for k, v in b.items
            )
            body.append(f'<div class="summary">{cards}</div>')
        elif isinstance(b, _Figure):
            data = base64.b64encode(b.png).decode("ascii")
            cap = html.escape(b.caption)
            body.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{cap}">'
                f"<figcaption>{cap}</figcaption></figure>"
            )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
        "<body><main>\n" + "\n".join(body) + "\n</main></body>\n</html>\n"
    )


def _render_table_md(t: _Table) -> list[str]:
    lines = [f"*{_md_cell(t.caption)}*", ""] if t.caption else []
    num = t.numeric or [False] * len(t.header)
    lines.append("| " + " | ".join(_md_cell(h) for h in t.header) + " |")
    lines.append("|" + "|".join("---:" if n else "---" for n in num) + "|")
    for i, row in enumerate(t.rows):
        cells = [_md_cell(c) for c in row]
        if i in t.highlight:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _render_md(title: str, blocks: Sequence[_Block]) -> str:
    lines = [f"# {_md_text(title)}", ""]
    for b in blocks:
        if isinstance(b, _Heading):
            lines += ["#" * b.level + " " + _md_text(b.text), ""]
        elif isinstance(b, _Para):
            lines += [_md_text(b.text), ""]
        elif isinstance(b, _Table):
            lines += _render_table_md(b)
        elif isinstance(b, _Grid):
            for t in b.tables:
                lines += _render_table_md(t)
        elif isinstance(b, _Cards):
            lines += [" · ".join(f"**{_md_text(k)}** {_md_text(v)}" for k, v in b.items), ""]
        elif isinstance(b, _Figure):
            lines += [f"![{b.caption}]({b.md_path})", "", f"*{b.caption}*", ""]
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- inputs


def _load_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.json"
    if not path.is_file():
        raise RunFormatError(f"{path}: not found (is {run_dir} an audioar run directory?)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunFormatError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RunFormatError(f"{path}: expected a JSON object, got {type(data).__name__}")
    version = data.get("format_version")
    if version != REPORT_FORMAT_VERSION:
        raise RunFormatError(
            f"{path}: format_version {version!r} is not supported "
            f"(expected {REPORT_FORMAT_VERSION})"
        )
    for key in ("config", "featurizer", "calibration", "extra"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise RunFormatError(f"{path}: {key!r} must be a JSON object")
    return data


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


def _kv_table(caption: str, items: Mapping[str, Any]) -> _Table:
    rows = [[str(k), _fmt(v)] for k, v in items.items() if v is not None and v != {}]
    return _Table(["setting", "value"], rows, caption=caption)


def _model_settings(model: Mapping[str, Any]) -> dict[str, Any]:
    """Only the settings of the model the run used (a MAF run lists no WaveNet fields)."""
    from audioar.config import ModelConfig

    try:
        used = ModelConfig(**model).model_kwargs()
    except (TypeError, ValueError, AudioarError):
        return dict(model)  # an older or partial config: show what is there
    keys = {"name", *used}
    if model.get("name") == "wavenet":  # its output is stored as wavenet_output
        keys = (keys - {"output"}) | {"wavenet_output"}
    return {k: v for k, v in model.items() if k in keys}


def _setup_blocks(cfg: Mapping[str, Any]) -> list[_Block]:
    conf = _section(cfg, "config")
    data = {**_section(conf, "data"), **_section(cfg, "extra", "data")}
    classes = data.pop("classes", None)
    if isinstance(classes, list):
        data["classes"] = f"{len(classes)}: " + ", ".join(str(c) for c in classes)
    # The featurizer's own config holds exactly the settings that apply to it.
    features = _section(cfg, "featurizer") or _section(conf, "features")
    train = {**_section(conf, "train"), **_section(cfg, "extra", "fit")}
    calib = {**_section(conf, "calibration"), **_section(cfg, "calibration")}
    tables = [
        _kv_table("Data", data),
        _kv_table("Features", features),
        _kv_table("Model", _model_settings(_section(conf, "model"))),
        _kv_table("Training", train),
        _kv_table("Calibration", calib),
        _kv_table("Run", {k: cfg.get(k) for k in ("audioar_version", "created", "format_version")}),
    ]
    tables = [t for t in tables if t.rows]  # older or partial runs lack some sections
    if not tables:
        return [_Heading(2, "Setup", "setup"), _Para("No settings recorded in config.json.")]
    return [_Heading(2, "Setup", "setup"), _Grid(tables)]


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
) -> list[_Block]:
    from audioar import figures

    blocks: list[_Block] = [_Heading(2, "Training", "training")]
    if history is None:
        return blocks + [_Para(note, "note")]
    best = _best_epoch(history, cfg)
    fig = figures.training_curves_figure(history, best_epoch=best, target=target or None)
    png = figures.figure_png(fig)
    atomic_write_bytes(out_dir / "training_curves.png", png)
    blocks.append(
        _Figure(
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
                row.append(_fmt(int(rec[col])) if pd.notna(rec[col]) else "–")
            elif col == "seconds":
                row.append(_fixed(rec[col], 1))
            else:
                row.append(_fixed(rec[col], 2))
        rows.append(row)
        if best is not None and int(rec["epoch"]) == best:
            highlight.add(i)
    shown = f"{len(positions)} of {len(history)} epochs" if len(positions) < len(history) else ""
    caption = "Mean log-likelihood (nats) per epoch" + (f" ({shown})" if shown else "")
    if best is not None:
        caption += f"; best epoch {best} highlighted"
    blocks.append(
        _Table(
            [n for _, n in cols],
            rows,
            caption=caption,
            numeric=[True] * len(cols),
            highlight=highlight,
        )
    )
    if compared:
        blocks.append(
            _Para(
                "Columns after the validation LL: mean log-likelihood of each compared "
                "class's clips under the model at that epoch. The target should stay on top.",
                "muted",
            )
        )
    return blocks


def _headline(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    loso = "folds" in metrics
    n_classes = metrics.get("num_classes")
    rank = metrics.get("target_rank")
    rank_txt = _fixed(rank, 1 if loso else 0) + (f" of {n_classes}" if n_classes else "")
    max_fpr = metrics.get("max_fpr") or 0.1
    items = [
        ("AUC", _fixed(metrics.get("auc"), 3)),
        (f"pAUC (FPR ≤ {max_fpr:g})", _fixed(metrics.get("pauc"), 3)),
        ("EER", _fixed(metrics.get("eer"), 3)),
        ("target rank" + (" (mean)" if loso else ""), rank_txt),
    ]
    if loso:
        items.append(("folds", str(metrics.get("num_folds", len(metrics["folds"])))))
    return items


def _per_class_table(metrics: Mapping[str, Any], target: str, dims: int | None) -> _Table:
    per_class = metrics.get("per_class") or {}
    order = sorted(
        per_class.items(),
        key=lambda kv: (
            -(
                float(kv[1].get("mean_log_likelihood"))
                if kv[1].get("mean_log_likelihood") is not None
                else -math.inf
            )
        ),
    )
    header = ["rank", "class", "n", "mean LL", "median LL"]
    if dims:
        header.append("mean LL / dim")
    header.append("AUC vs target")
    rows, highlight = [], set()
    for i, (label, row) in enumerate(order):
        mean = row.get("mean_log_likelihood")
        cells = [
            _fmt(row.get("rank")),
            str(label),
            _fmt(row.get("n")),
            _fixed(mean, 2),
            _fixed(row.get("median_log_likelihood"), 2),
        ]
        if dims:
            cells.append(_fixed(None if mean is None else float(mean) / dims, 4))
        cells.append("(target)" if label == target else _fixed(row.get("auc"), 3))
        rows.append(cells)
        if label == target:
            highlight.add(i)
    caption = "Per class, sorted by mean log-likelihood (nats); target highlighted"
    if "folds" in metrics:
        caption += " (averaged over folds)"
    numeric = [True] * len(header)
    numeric[1] = False  # the class name
    return _Table(header, rows, caption=caption, numeric=numeric, highlight=highlight)


def _folds_table(metrics: Mapping[str, Any]) -> _Table:
    header = ["fold", "n target", "n other", "AUC", "pAUC", "EER", "target rank", "beating target"]
    rows = []
    for name, m in metrics["folds"].items():
        beating = m.get("classes_beating_target") or []
        rows.append(
            [
                str(name),
                _fmt(m.get("n_target")),
                _fmt(m.get("n_other")),
                _fixed(m.get("auc"), 3),
                _fixed(m.get("pauc"), 3),
                _fixed(m.get("eer"), 3),
                _fmt(m.get("target_rank")),
                ", ".join(str(c) for c in beating) or "none",
            ]
        )
    mean, std = metrics.get("mean") or {}, metrics.get("std") or {}

    def pm(key: str, d: int) -> str:
        if mean.get(key) is None:
            return "–"
        return f"{_fixed(mean[key], d)} ± {_fixed(std.get(key), d)}"

    rows.append(
        [
            "mean ± std",
            _fmt(metrics.get("n_target")),
            _fmt(metrics.get("n_other")),
            pm("auc", 3),
            pm("pauc", 3),
            pm("eer", 3),
            pm("target_rank", 1),
            "",
        ]
    )
    return _Table(
        header,
        rows,
        caption="Per fold (leave one speaker out); counts in the last row are totals",
        numeric=[False, True, True, True, True, True, True, False],
        highlight={len(rows) - 1},
    )


def _figure_ref(src: Path, out_dir: Path) -> str:
    """Path of a figure relative to the report; copied next to it if outside out_dir."""
    try:
        return src.resolve().relative_to(out_dir.resolve()).as_posix()
    except ValueError:
        dest = out_dir / f"eval_{src.name}"
        tmp = out_dir / f".{dest.name}.tmp"
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
        return dest.name


def _evaluation_blocks(
    metrics: Mapping[str, Any] | None,
    eval_dir: Path,
    run_dir: Path,
    out_dir: Path,
    target: str,
    dims: int | None,
) -> list[_Block]:
    blocks: list[_Block] = [_Heading(2, "Evaluation", "evaluation")]
    if metrics is None:
        return blocks + [
            _Para(
                f"Not evaluated yet: run `audioar evaluate --model {run_dir}` "
                f"(no metrics.json in {eval_dir}).",
                "note",
            )
        ]
    target = str(metrics.get("target", target))
    dims = metrics.get("dims") or dims
    loso = isinstance(metrics.get("folds"), Mapping) and bool(metrics.get("folds"))
    known = metrics.get("target_first_in_all_folds" if loso else "target_rank") is not None
    text = ""
    if known and loso:
        first = bool(metrics["target_first_in_all_folds"])
        verdict = "ranks first in every fold" if first else "does not rank first in every fold"
        text = f"The target **{target}** {verdict}. "
    elif known:
        verdict = "ranks first" if metrics["target_rank"] == 1 else "does not rank first"
        text = (
            f"The target **{target}** {verdict} (mean log-likelihood of its clips vs every "
            "other class's). "
        )
    beating = [str(c) for c in metrics.get("classes_beating_target") or []]
    n_cls = metrics.get("num_classes")
    if beating:
        text += (
            f"Classes beating the target (higher mean log-likelihood"
            f"{', averaged over folds' if loso else ''}): **{len(beating)}"
            + (f" of {n_cls - 1}" if isinstance(n_cls, int) and n_cls > 1 else "")
            + f"**: {', '.join(beating)}. "
        )
    elif known:
        text += "No class has a higher mean log-likelihood than the target. "
    if metrics.get("n_target") is not None and metrics.get("n_other") is not None:
        text += f"{_fmt(metrics['n_target'])} target clips, {_fmt(metrics['n_other'])} others. "
    text += (
        "pAUC is McClish-standardised (0.5 = chance, as `roc_auc_score(max_fpr=…)` and the "
        "DCASE baseline)."
    )
    blocks.append(_Para(text))

    if metrics.get("precision") is not None:
        thr = metrics.get("threshold")
        items = {
            "threshold (anomaly score)": _fixed(thr, 4) if thr is not None else "per fold",
            "precision": _fixed(metrics.get("precision"), 3),
            "recall (TPR)": _fixed(metrics.get("recall"), 3),
            "F1": _fixed(metrics.get("f1"), 3),
            "FPR (target flagged)": _fixed(metrics.get("fpr"), 3),
        }
        conf = metrics.get("confusion")
        if isinstance(conf, Mapping):
            items["TP / FP / TN / FN"] = " / ".join(
                _fmt(conf.get(k)) for k in ("tp", "fp", "tn", "fn")
            )
        cap = "At the calibrated threshold (positive = anomaly = not the target)"
        if loso:
            cap += ", mean over folds"
        blocks.append(_Table(["", "value"], [[k, v] for k, v in items.items()], caption=cap))

    if loso:
        blocks.append(_folds_table(metrics))
    if metrics.get("per_class"):
        blocks.append(_per_class_table(metrics, target, dims))
    for name, caption in _EVAL_FIGURES:
        src = eval_dir / name
        if src.is_file():
            blocks.append(_Figure(src.read_bytes(), _figure_ref(src, out_dir), caption))
    return blocks


def _howto_blocks(dims: int | None) -> list[_Block]:
    per_dim = (
        f" Nats per dimension divide a clip's log-likelihood by the {dims} feature "
        "dimensions it is summed over, so runs with different features can be compared."
        if dims
        else " Nats per dimension divide by the number of feature dimensions."
    )
    return [
        _Heading(2, "How to read this", "how-to-read"),
        _Para(
            "The model is a density model of the target class only. Each clip gets a "
            "log-likelihood in nats: **higher = more normal** (more like the target). The "
            "**anomaly score = −log-likelihood**: higher = more unusual. AUC is the "
            "probability that a random non-target clip scores as more anomalous than a "
            "random target clip (1 = perfect, 0.5 = chance); pAUC looks only at false "
            "positive rates up to 0.1 (few target clips flagged); EER is the error rate "
            "where both kinds of error are equal." + per_dim,
            "note",
        ),
    ]


# --------------------------------------------------------------------------- entry point


def build_report(
    run_dir: str | os.PathLike,
    *,
    eval_dir: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
) -> tuple[Path, Path]:
    """Write ``report.html`` (self-contained) and ``report.md`` for a run.

    Args:
        run_dir: the run directory (``config.json`` with ``format_version`` 1, optional
            ``history.csv``).
        eval_dir: the evaluation folder written by
            :func:`audioar.evaluate.write_evaluation`. Default ``run_dir/eval``; if it has
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
    cfg = _load_config(run)
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
    dims = _section(cfg, "extra", "fit").get("dims")
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
    blocks: list[_Block] = [_Para(subtitle, "muted")]
    if metrics is not None:
        blocks.append(_Cards(_headline(metrics)))
    blocks += _setup_blocks(cfg)
    blocks += _training_blocks(history, note, cfg, target, out)
    blocks += _evaluation_blocks(metrics, ev, run, out, target, dims)
    blocks += _howto_blocks(dims or (metrics or {}).get("dims"))

    html_path = atomic_write_bytes(
        out / "report.html", _render_html(title, [_Heading(1, title)] + blocks).encode()
    )
    md_path = atomic_write_bytes(out / "report.md", _render_md(title, blocks).encode())
    logger.info("wrote %s and %s", html_path, md_path)
    return html_path, md_path
