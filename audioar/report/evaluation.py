"""The report's evaluation sections: headline cards, the DCASE per machine ID / section table
and official score, the scores with their confidence intervals, per-class and per-fold tables,
the evaluation figures (the per-clip surprise traces come from :mod:`audioar.report.traces`),
and how to read them."""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from audioar.atomic import atomic_write
from audioar.report.render import Block, Figure, Heading, Para, Table, fixed, fmt
from audioar.report.traces import trace_blocks

__all__ = ["headline", "section_blocks", "evaluation_blocks", "howto_blocks"]

logger = logging.getLogger(__name__)

_EVAL_FIGURES = (
    ("roc.png", "ROC curve, target vs rest (shaded: the FPR range of the pAUC)."),
    (
        "per_class_loglik.png",
        "Log-likelihood under the target per class (log p(x | target), whatever the chosen "
        "score), sorted by median; target in red; the axis holds the bulk of the clips.",
    ),
    (
        "score_hist.png",
        "Anomaly scores (minus the chosen score) of target clips vs all others, with the "
        "threshold; clips beyond the axis are counted in the edge bins.",
    ),
)


def headline(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    loso = "folds" in metrics
    n_classes = metrics.get("num_classes")
    rank = metrics.get("target_rank")
    rank_txt = fixed(rank, 1 if loso else 0) + (f" of {n_classes}" if n_classes else "")
    max_fpr = metrics.get("max_fpr") or 0.1
    ci = metrics.get("ci") if isinstance(metrics.get("ci"), Mapping) else {}

    def card(key: str, name: str) -> tuple[str, ...]:
        interval = _interval(ci.get(key))
        level = ci.get("level") or 0.95
        sub = (f"{level:.0%} CI {interval}",) if interval else ()
        return (name, fixed(metrics.get(key), 3), *sub)

    items: list[tuple[str, ...]] = [
        card("auc", "AUC" + (" (mean)" if loso else "")),
        card("pauc", f"pAUC (FPR ≤ {max_fpr:g})"),
        card("eer", "EER"),
        ("target rank" + (" (mean)" if loso else ""), rank_txt),
    ]
    if loso:
        items.append(("folds", str(metrics.get("num_folds", len(metrics["folds"])))))
    return items


def _interval(value: Any, decimals: int = 3) -> str:
    """``"[0.941, 0.978]"`` for a ``[lo, hi]`` pair, "" for anything else."""
    if not isinstance(value, list | tuple) or len(value) != 2 or None in value:
        return ""
    return f"[{fixed(value[0], decimals)}, {fixed(value[1], decimals)}]"


def _with_ci(value: Any, ci: Any, key: str) -> str:
    """``"0.963 [0.941, 0.978]"``: a metric and its interval (when there is one)."""
    interval = _interval(ci.get(key)) if isinstance(ci, Mapping) else ""
    return fixed(value, 3) + (f" {interval}" if interval else "")


def _ci_text(metrics: Mapping[str, Any], loso: bool) -> str:
    """What the intervals are, in one or two sentences."""
    ci = metrics.get("ci")
    if not isinstance(ci, Mapping):
        return ""
    level = float(ci.get("level") or 0.95)
    if ci.get("auc") is None:
        return f"No confidence interval: {ci.get('note', 'not computed')}."
    n = fmt(ci.get("resamples"))
    if loso:
        text = (
            f"Intervals ({level:.0%}, percentile bootstrap, {n} resamples) of the mean over "
            f"folds: the {fmt(ci.get('groups'))} held-out speakers drawn with replacement; "
            "each fold's own interval resamples its clips."
        )
        pooled = metrics.get("pooled")
        if isinstance(pooled, Mapping) and pooled.get("auc") is not None:
            pci = pooled.get("ci") or {}
            text += f" All folds' scores pooled: AUC {_with_ci(pooled['auc'], pci, 'auc')}" + (
                " (speakers resampled)." if pci.get("method") == "speakers" else "."
            )
        return text
    if ci.get("method") == "speakers":
        how = f"speakers ({fmt(ci.get('groups'))}) drawn with replacement, all clips of each"
    else:
        how = "clips, target and other clips resampled separately"
    text = f"Intervals ({level:.0%}, percentile bootstrap, {n} resamples): {how}."
    if ci.get("note"):
        text += f" Note: {ci['note']}."
    return text


def _scores_table(metrics: Mapping[str, Any]) -> Table:
    """Every score of a run that has several, with intervals; the chosen one highlighted."""
    loso = "folds" in metrics
    header = ["score", "AUC" + (" (mean)" if loso else ""), "pAUC", "EER", "target first"]
    rows, highlight = [], set()
    for i, (name, row) in enumerate(metrics["scores"].items()):
        ci = row.get("ci")
        first = row.get("target_first_in_all_folds", row.get("target_first"))
        rows.append(
            [
                str(name) + (" (chosen)" if name == metrics.get("score") else ""),
                _with_ci(row.get("auc"), ci, "auc"),
                _with_ci(row.get("pauc"), ci, "pauc"),
                _with_ci(row.get("eer"), ci, "eer"),
                fmt(first),
            ]
        )
        if name == metrics.get("score"):
            highlight.add(i)
    caption = "Scores, target vs rest" + (" (means over folds)" if loso else "")
    return Table(header, rows, caption=caption, numeric=[False, True, True, True, False],
                 highlight=highlight)  # fmt: skip


def _per_class_table(metrics: Mapping[str, Any], target: str, dims: int | None) -> Table:
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
    score = str(metrics.get("score") or "log_likelihood")
    header = ["rank", "class", "n", f"mean {score}", f"median {score}"]
    if dims:
        header.append(f"mean {score} / dim")
    header.append("AUC vs target")
    rows, highlight = [], set()
    for i, (label, row) in enumerate(order):
        mean = row.get("mean_log_likelihood")
        cells = [
            fmt(row.get("rank")),
            str(label),
            fmt(row.get("n")),
            fixed(mean, 2),
            fixed(row.get("median_log_likelihood"), 2),
        ]
        if dims:
            cells.append(fixed(None if mean is None else float(mean) / dims, 4))
        cells.append("(target)" if label == target else fixed(row.get("auc"), 3))
        rows.append(cells)
        if label == target:
            highlight.add(i)
    caption = (
        f"Per class, sorted by the mean of the chosen score {score} (nats, higher = more "
        "normal); target highlighted"
    )
    if "folds" in metrics:
        caption += " (averaged over folds)"
    numeric = [True] * len(header)
    numeric[1] = False  # the class name
    return Table(header, rows, caption=caption, numeric=numeric, highlight=highlight)


def _folds_table(metrics: Mapping[str, Any]) -> Table:
    header = ["fold", "n target", "n other", "AUC", "pAUC", "EER", "target rank", "beating target"]
    rows = []
    for name, m in metrics["folds"].items():
        beating = m.get("classes_beating_target") or []
        rows.append(
            [
                str(name),
                fmt(m.get("n_target")),
                fmt(m.get("n_other")),
                _with_ci(m.get("auc"), m.get("ci"), "auc"),
                fixed(m.get("pauc"), 3),
                fixed(m.get("eer"), 3),
                fmt(m.get("target_rank")),
                ", ".join(str(c) for c in beating) or "none",
            ]
        )
    mean, std = metrics.get("mean") or {}, metrics.get("std") or {}

    def pm(key: str, d: int) -> str:
        if mean.get(key) is None:
            return "–"
        return f"{fixed(mean[key], d)} ± {fixed(std.get(key), d)}"

    mean_row = len(rows)
    rows.append(
        [
            "mean ± std",
            fmt(metrics.get("n_target")),
            fmt(metrics.get("n_other")),
            pm("auc", 3),
            pm("pauc", 3),
            pm("eer", 3),
            pm("target_rank", 1),
            "",
        ]
    )
    ci = metrics.get("ci")
    if isinstance(ci, Mapping) and ci.get("auc") is not None:
        rows.append(
            [
                f"{float(ci.get('level') or 0.95):.0%} CI of the mean (speakers)",
                "",
                "",
                _interval(ci.get("auc")),
                _interval(ci.get("pauc")),
                _interval(ci.get("eer")),
                "",
                "",
            ]
        )
    return Table(
        header,
        rows,
        caption="Per fold (leave one speaker out); AUC with the fold's interval (its clips "
        "resampled); counts in the mean row are totals",
        numeric=[False, True, True, True, True, True, True, False],
        highlight={mean_row},
    )


#: What the anomaly score is, by score name (``metrics["score"]``); ``{c}`` is the class
#: each clip is scored against ("its own machine ID" for a run conditioned on groups).
_SCORE_WORDS = {
    "log_likelihood": "−log p(x | {c})",
    "nats_per_step": "−log p(x | {c}) per step",
    "log_posterior": "−log p({c} | x), uniform prior over the classes",
    "log_likelihood_ratio": "−(log p(x | {c}) − log p₀(x)), p₀ the background model",
    "complexity_corrected": "−(quantised log p(x | {c}) + lossless code length)",
    "typicality": "distance of log p(x | {c}) per step from the training clips' mean",
}


def _group_noun(groups: list[str]) -> str:
    """``machine ID`` (2020 ``id_XX``), ``section`` (2021+) or both, from the group names."""
    if groups and all(g.startswith("id_") for g in groups):
        return "machine ID"
    if groups and all(g.startswith("section_") for g in groups):
        return "section"
    return "machine ID / section"


def _score_words(metrics: Mapping[str, Any], by_group: bool, target: str, noun: str) -> str:
    """``"score log_likelihood: anomaly score = −log p(x | its own machine ID)"``."""
    name = metrics.get("score")
    if not name:
        return ""
    against = f"its own {noun}" if by_group else (target or "target")
    words = _SCORE_WORDS.get(str(name))
    what = words.format(c=against) if words else f"−{name}"
    return f"score {name}: anomaly score = {what}"


def _level_words(level: Any) -> str:
    """``"95 %"`` for 0.95."""
    try:
        value = float(level)
    except (TypeError, ValueError):
        value = 0.95
    return f"{value * 100:g} %"


def _section_table(
    metrics: Mapping[str, Any], rows: list[dict[str, Any]], caption: str, level: str
) -> Table:
    max_fpr = metrics.get("max_fpr") or 0.1
    names = {"auc": "AUC", "pauc": f"pAUC (FPR ≤ {max_fpr:g})"}
    for domain in ("source", "target"):
        names[f"auc_{domain}"] = f"AUC {domain}"
        names[f"pauc_{domain}"] = f"pAUC {domain}"
    keys = [k for k in names if any(k in row for row in rows)]
    columns: list[tuple[str, str]] = [("group", "ID / section")]
    columns += [("n_normal", "normal"), ("n_anomaly", "anomalous")]
    for key in keys:
        columns.append((key, names[key]))
        if any(row.get(f"{key}_ci") for row in rows):  # no column of dashes without intervals
            columns.append((f"{key}_ci", f"{names[key].split(' (')[0]} {level} interval"))
    if any(row.get("note") for row in rows):
        columns.append(("note", "note"))
    body = []
    for row in rows:
        cells = []
        for key, _ in columns:
            value = row.get(key)
            if key in ("group", "note"):
                cells.append(str(value or ""))
            elif key.startswith("n_"):
                cells.append(fmt(value))
            elif key.endswith("_ci"):
                cells.append(str(value) if value else "–")
            else:
                cells.append(fixed(value, 3))
        body.append(cells)
    numeric = [key not in ("group", "note") for key, _ in columns]
    return Table([h for _, h in columns], body, caption=caption, numeric=numeric)


def _official_text(official: Mapping[str, Any], noun: str) -> str:
    """The official score of the year with its interval and formula, and the mean AUC / pAUC."""
    year = official.get("year")
    ci = official.get("ci")
    name = f"Official DCASE {year} score" if year else "Official score"
    if official.get("score") is None:
        return f"{name}: none ({official.get('note') or 'not computed'})."
    text = f"{name}: {_with_ci(official['score'], ci, 'score')}"
    if official.get("formula"):
        text += f", the {official['formula']}"
    text += "."
    over = f"{noun}s" if noun != "machine ID / section" else "machine IDs / sections"
    n = official.get("sections")
    count = f"the {fmt(n)} {over}" if isinstance(n, int) else over
    text += (
        f" Mean AUC over {count}: {_with_ci(official.get('mean_auc'), ci, 'mean_auc')}; "
        f"mean pAUC: {_with_ci(official.get('mean_pauc'), ci, 'mean_pauc')}."
    )
    if official.get("left_out") and official.get("note"):
        text += f" Not in the score: {official['note']}."
    return text


def section_blocks(
    metrics: Mapping[str, Any] | None, *, by_group: bool = False, target: str = ""
) -> list[Block]:
    """The per machine ID / section table and the year's official score, when the
    evaluation has a ``sections`` block (DCASE folders, :mod:`audioar.evaluation.sections`); else
    nothing.

    Args:
        metrics: The evaluation's ``metrics.json`` (or None).
        by_group: The run is conditioned on groups (``data.condition = group``): each clip
            is scored against its own machine ID / section (said in the caption).
        target: The class clips are scored against otherwise.
    """
    from audioar.evaluation.sections import section_table_rows

    if metrics is None:
        return []
    sections = metrics.get("sections")
    if not isinstance(sections, Mapping) or not sections:
        return []
    blocks: list[Block] = [Heading(2, "Per machine ID / section", "sections")]
    try:
        rows = section_table_rows(metrics)
    except (KeyError, TypeError, AttributeError) as exc:
        logger.warning("metrics.json: unreadable sections block (%s)", exc)
        return blocks + [Para(f"The per-section metrics could not be read ({exc!r}).", "note")]
    noun = _group_noun([str(g) for g in sections])
    official = metrics.get("official") if isinstance(metrics.get("official"), Mapping) else {}
    first_ci = next((e.get("ci") for e in sections.values() if isinstance(e, Mapping)), None)
    level = (official.get("ci") or {}).get("level") or (first_ci or {}).get("level")
    caption = f"Anomalous vs normal test clips of each {noun}"
    words = _score_words(metrics, by_group, target, noun)
    if words:
        caption += f"; {words}"
    blocks.append(_section_table(metrics, rows, caption, _level_words(level)))
    if official:
        blocks.append(Para(_official_text(official, noun)))
    unlabeled = sum(
        int(e.get("n_unlabeled") or 0) for e in sections.values() if isinstance(e, Mapping)
    )
    notes = []
    if unlabeled:
        notes.append(
            f"{fmt(unlabeled)} clips without a label (evaluation set) are left out of these "
            "metrics; they are in the official result files."
        )
    if any(row.get("auc_ci") for row in rows):
        strata = (first_ci or {}).get("strata") or "label"
        notes.append(
            f"Intervals ({_level_words(level)}, percentile bootstrap): clips resampled within "
            f"each {noun}, stratified by {strata}; the official score and the means are "
            "recomputed on the same resamples."
        )
    if notes:
        blocks.append(Para(" ".join(notes), "muted"))
    return blocks


def _figure_ref(src: Path, out_dir: Path) -> str:
    """Path of a figure relative to the report; copied next to it if outside out_dir."""
    try:
        return src.resolve().relative_to(out_dir.resolve()).as_posix()
    except ValueError:
        dest = out_dir / f"eval_{src.name}"
        atomic_write(dest, lambda tmp: shutil.copyfile(src, tmp))
        return dest.name


def evaluation_blocks(
    metrics: Mapping[str, Any] | None,
    eval_dir: Path,
    run_dir: Path,
    out_dir: Path,
    target: str,
    dims: int | None,
) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Evaluation", "evaluation")]
    if metrics is None:
        return blocks + [
            Para(
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
        text += f"{fmt(metrics['n_target'])} target clips, {fmt(metrics['n_other'])} others. "
    text += (
        "pAUC is McClish-standardised (0.5 = chance, as `roc_auc_score(max_fpr=…)` and the "
        "DCASE baseline)."
    )
    blocks.append(Para(text))
    ci_text = _ci_text(metrics, loso)
    if ci_text:
        blocks.append(Para(ci_text, "muted"))
    if isinstance(metrics.get("scores"), Mapping) and metrics["scores"]:
        blocks.append(_scores_table(metrics))

    if metrics.get("precision") is not None:
        thr = metrics.get("threshold")
        items = {
            "threshold (anomaly score)": fixed(thr, 4) if thr is not None else "per fold",
            "precision": fixed(metrics.get("precision"), 3),
            "recall (TPR)": fixed(metrics.get("recall"), 3),
            "F1": fixed(metrics.get("f1"), 3),
            "FPR (target flagged)": fixed(metrics.get("fpr"), 3),
        }
        conf = metrics.get("confusion")
        if isinstance(conf, Mapping):
            items["TP / FP / TN / FN"] = " / ".join(
                fmt(conf.get(k)) for k in ("tp", "fp", "tn", "fn")
            )
        cap = "At the calibrated threshold (positive = anomaly = not the target)"
        if loso:
            cap += ", mean over folds"
        blocks.append(Table(["", "value"], [[k, v] for k, v in items.items()], caption=cap))

    if loso:
        blocks.append(_folds_table(metrics))
    if metrics.get("per_class"):
        blocks.append(_per_class_table(metrics, target, dims))
    for name, caption in _EVAL_FIGURES:
        src = eval_dir / name
        if src.is_file():
            blocks.append(Figure(src.read_bytes(), _figure_ref(src, out_dir), caption))
    return blocks + trace_blocks(metrics, eval_dir, out_dir)


def howto_blocks(dims: int | None, conditional: bool = False) -> list[Block]:
    per_dim = (
        f" Nats per dimension divide a clip's log-likelihood by the {dims} feature "
        "dimensions it is summed over, so runs with different features can be compared."
        if dims
        else " Nats per dimension divide by the number of feature dimensions."
    )
    what = (
        "The model is a class-conditional density model: it scores a clip under every "
        "class, and the class posterior of the target compares them. "
        if conditional
        else "The model is a density model of the target class only. "
    )
    return [
        Heading(2, "How to read this", "how-to-read"),
        Para(
            what + "Each clip gets a "
            "log-likelihood in nats: **higher = more normal** (more like the target). The "
            "**anomaly score** is minus the chosen score: higher = more unusual. AUC is the "
            "probability that a random non-target clip scores as more anomalous than a "
            "random target clip (1 = perfect, 0.5 = chance); pAUC looks only at false "
            "positive rates up to 0.1 (few target clips flagged); EER is the error rate "
            "where both kinds of error are equal." + per_dim,
            "note",
        ),
    ]
