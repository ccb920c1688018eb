"""``audioar evaluate``: the likelihood comparison report of a run on held-out clips."""

from pathlib import Path
from typing import Annotated, Any

import typer
from audioar_cli.common import console
from audioar_cli.errors import friendly_errors
from rich.table import Table

__all__ = [
    "evaluate_command",
    "per_class_table",
    "score_table",
    "section_table",
    "with_ci",
    "ci_line",
]

# The per-score AUC std over folds is in metrics.json (scores.<column>.auc_std); the table
# shows the interval of the mean instead, which is what the std would be used for.


def with_ci(value: float, ci: dict[str, Any] | None, key: str) -> str:
    """``"0.963 [0.941, 0.978]"``: a metric with its bootstrap interval when it has one."""
    text = f"{value:.3f}"
    bounds = (ci or {}).get(key)
    if isinstance(bounds, list | tuple) and len(bounds) == 2 and None not in bounds:
        text += f" [{bounds[0]:.3f}, {bounds[1]:.3f}]"
    return text


def ci_line(metrics: dict[str, Any]) -> str:
    """What the intervals of ``metrics`` are (resampling, resamples, level), "" if none."""
    ci = metrics.get("ci")
    if not isinstance(ci, dict):
        return ""
    if ci.get("auc") is None:
        return f"no confidence intervals: {ci.get('note', '')}"
    level = f"{float(ci.get('level') or 0.95):.0%}"
    if "folds" in metrics:
        what = f"of the mean over folds, {ci.get('groups')} held-out speakers resampled"
    elif ci.get("method") == "speakers":
        what = f"{ci.get('groups')} speakers resampled (all clips of each)"
    else:
        what = "clips resampled (target and others separately)"
    line = f"[ ] = {level} bootstrap intervals ({ci['resamples']} resamples): {what}"
    if ci.get("note"):
        line += f"; {ci['note']}"
    return line


def per_class_table(metrics: dict[str, Any], target: str) -> Table:
    """Classes sorted by mean log-likelihood, the target highlighted."""
    score = metrics.get("score")
    table = Table(title="per class (test clips" + (f"; score {score})" if score else ")"))
    for name in ("rank", "class", "n", "mean LL", "median LL", f"AUC {target} vs class"):
        table.add_column(name, justify="left" if name == "class" else "right")
    rows = sorted(metrics["per_class"].items(), key=lambda kv: kv[1]["rank"])
    for label, row in rows:
        style = "bold green" if label == target else None
        auc = row.get("auc")
        table.add_row(
            str(row["rank"]),
            label,
            str(row.get("n", "")),
            f"{row['mean_log_likelihood']:.1f}",
            f"{row.get('median_log_likelihood', float('nan')):.1f}",
            "" if auc is None or label == target else f"{auc:.3f}",
            style=style,
        )
    return table


def _score_aucs(metrics: dict[str, Any]) -> str:
    """``"; AUC by score: log_likelihood 0.91, ..."`` for the fold line of a run with several
    scores."""
    scores = metrics.get("scores")
    if not scores:
        return ""
    return "; AUC by score: " + ", ".join(f"{k} {v['auc']:.3f}" for k, v in scores.items())


def score_table(metrics: dict[str, Any]) -> Table:
    """Every score of a run that has several: AUC with its interval (for loso the mean over
    folds and the interval of that mean), pAUC, EER, whether the target came first, and
    which score drives the headline metrics (``*``)."""
    loso = "folds" in metrics
    level = next(
        (
            r["ci"].get("level")
            for r in metrics["scores"].values()
            if (r.get("ci") or {}).get("auc")
        ),
        None,
    )
    caption = "* the chosen score (the headline metrics)"
    if level:
        caption += f"; [ ] {float(level):.0%} interval of the AUC"
    table = Table(title="scores (target vs rest)", caption=caption)
    table.add_column("score", no_wrap=True)
    table.add_column("AUC" + (" (mean of folds)" if loso else ""), justify="right", no_wrap=True)
    table.add_column("pAUC", justify="right")
    table.add_column("EER", justify="right")
    table.add_column("target first" + (" in every fold" if loso else ""), justify="right")
    for name, row in metrics["scores"].items():
        first = row.get("target_first_in_all_folds", row.get("target_first"))
        chosen = name == metrics.get("score")
        table.add_row(
            name + (" *" if chosen else ""),
            with_ci(row["auc"], row.get("ci"), "auc"),
            f"{row['pauc']:.3f}",
            f"{row['eer']:.3f}",
            str(first),
            style="bold" if chosen else None,
        )
    return table


def section_table(metrics: dict[str, Any]) -> Table:
    """Per machine ID / section: AUC and pAUC with intervals (and per domain), then the
    challenge year's official score."""
    from audioar.evaluation.sections import section_table_rows

    rows = section_table_rows(metrics)
    official = metrics.get("official") or {}
    caption = ""
    if official.get("score") is not None:
        caption = (
            f"official score (DCASE {official.get('year')}): "
            f"{with_ci(official['score'], official.get('ci'), 'score')}; "
            f"{official.get('formula', '')}"
        )
    table = Table(title="per machine ID / section (anomalies vs normal clips)", caption=caption)
    columns = list(rows[0]) if rows else []
    for column in columns:
        table.add_column(str(column), justify="left" if column == "section" else "right")
    for row in rows:
        table.add_row(*(_cell(row[c]) for c in columns))
    return table


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


@friendly_errors
def evaluate_command(
    model: Annotated[Path, typer.Option("--model", "-m", help="Run directory from `fit`.")],
    data: Annotated[
        Path | None, typer.Option(help="Data set to evaluate on (default: the run's).")
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(help="official | random | speaker:NAME | loso (default: the run's split)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Evaluation folder (default RUN/eval).")
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Neither read nor write the feature cache.")
    ] = False,
    resamples: Annotated[
        int,
        typer.Option(min=0, help="Bootstrap resamples of the 95% confidence intervals (0: none)."),
    ] = 1000,  # audioar.evaluation.metrics.DEFAULT_RESAMPLES (not imported: keeps the CLI quick)
    layout: Annotated[
        str | None, typer.Option(help="Force the data layout (default: detected).")
    ] = None,
    dcase_year: Annotated[
        int | None,
        typer.Option(
            help="DCASE folders: the challenge year (2020-2024) whose official score and file "
            "names to use (default: 2020 for machine IDs, 2023 for sections)."
        ),
    ] = None,
) -> None:
    """Score the test clips of every class; write metrics.json, per_class.csv and figures."""
    from audioar.evaluation.experiment import evaluate_run
    from audioar.pipeline.runs import load_trained

    trained = load_trained(model)
    target = trained.config.data.target
    out_dir = out or model / "eval"

    def on_fold(name: str, metrics: dict[str, Any]) -> None:
        console.print(
            f"fold {name}: AUC {with_ci(metrics['auc'], metrics.get('ci'), 'auc')}, "
            f"{target!r} ranked "
            f"{metrics['target_rank']} of {metrics['num_classes']}" + _score_aucs(metrics)
        )

    with console.status("evaluating"):
        evaluation = evaluate_run(
            trained,
            data_root=data,
            scheme=split,
            out_dir=out_dir,
            use_cache=not no_cache,
            on_fold=on_fold,
            resamples=resamples,
            layout=layout,
            dcase_year=dcase_year,
        )
    m = evaluation.metrics
    if "auc" not in m:  # a DCASE evaluation set: scored, not evaluated
        official = sum(key.startswith("official:") for key in evaluation.files)
        console.print(
            f"{m.get('unlabeled', 0)} test clip(s) without a label (an evaluation set): scored, "
            f"not evaluated; wrote [bold]{out_dir}[/] (scores.csv, metrics.json, {official} "
            "DCASE result files)"
        )
        return
    console.print(per_class_table(m, target))
    beating = m.get("classes_beating_target") or []
    ci = m.get("ci")
    console.print(
        f"target {target!r} vs rest: AUC [bold]{with_ci(m['auc'], ci, 'auc')}[/], "
        f"pAUC(FPR<=0.1) {with_ci(m['pauc'], ci, 'pauc')}, EER {with_ci(m['eer'], ci, 'eer')}; "
        f"{target!r} ranked {m['target_rank']:.3g} of {m['num_classes']}"
        + (f"; beaten by {', '.join(beating)}" if beating else ""),
        highlight=False,
    )
    if ci_line(m):
        console.print(ci_line(m), style="dim", markup=False, highlight=False)
    if "scores" in m:
        console.print(score_table(m))
    if "folds" in m:
        console.print(
            f"leave-one-speaker-out: mean AUC {m['mean']['auc']:.3f} ± {m['std']['auc']:.3f} over "
            f"{len(m['folds'])} folds; target first in every fold: {m['target_first_in_all_folds']}"
        )
        pooled = m.get("pooled")
        if pooled:
            console.print(
                f"all folds pooled: AUC {with_ci(pooled['auc'], pooled.get('ci'), 'auc')}"
                + (
                    " (speakers resampled)"
                    if (pooled.get("ci") or {}).get("method") == "speakers"
                    else ""
                ),
                highlight=False,
            )
    if "precision" in m:
        console.print(
            f"at the calibrated threshold: precision {m['precision']:.3f}, recall "
            f"{m['recall']:.3f}, F1 {m['f1']:.3f}, FPR {m['fpr']:.3f}"
        )
    if "sections" in m:
        console.print(section_table(m))
    if m.get("unlabeled"):
        console.print(f"{m['unlabeled']} test clip(s) without a label: scored, not evaluated")
    if evaluation.skipped:
        console.print(f"[yellow]skipped {len(evaluation.skipped)} unreadable clip(s)[/]")
    traces = ", traces.npz" if "traces" in evaluation.files else ""
    official = sum(key.startswith("official:") for key in evaluation.files)
    official_text = f", {official} DCASE result files" if official else ""
    console.print(
        f"wrote [bold]{out_dir}[/] (metrics.json, per_class.csv, scores.csv, figures{traces}"
        f"{official_text})"
    )
    note = (m.get("traces") or {}).get("skipped")
    if note:
        console.print(f"no traces: {note}", style="dim", markup=False, highlight=False)
