"""``audioar evaluate``: the likelihood comparison report of a run on held-out clips."""

from pathlib import Path
from typing import Annotated, Any

import typer
from audioar_cli.common import console
from audioar_cli.errors import friendly_errors
from rich.table import Table

__all__ = ["evaluate_command", "per_class_table", "score_table"]


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
    """``"; AUC by score: log_likelihood 0.91, ..."`` for a conditional run's fold line."""
    scores = metrics.get("scores")
    if not scores:
        return ""
    return "; AUC by score: " + ", ".join(f"{k} {v['auc']:.3f}" for k, v in scores.items())


def score_table(metrics: dict[str, Any]) -> Table:
    """The three scores of a class-conditional run: AUC (mean over folds for loso), target
    rank, and which one drives the headline metrics."""
    loso = "folds" in metrics
    table = Table(title="scores of the class-conditional model (target vs rest)")
    for name in ("score", "AUC" + (" (mean over folds)" if loso else ""), "pAUC", "EER"):
        table.add_column(name, justify="left" if name == "score" else "right")
    table.add_column("target first" + (" in every fold" if loso else ""), justify="right")
    for name, row in metrics["scores"].items():
        first = row.get("target_first_in_all_folds", row.get("target_first"))
        chosen = name == metrics.get("score")
        table.add_row(
            name + (" (chosen)" if chosen else ""),
            f"{row['auc']:.3f}" + (f" ± {row['auc_std']:.3f}" if "auc_std" in row else ""),
            f"{row['pauc']:.3f}",
            f"{row['eer']:.3f}",
            str(first),
            style="bold" if chosen else None,
        )
    return table


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
) -> None:
    """Score the test clips of every class; write metrics.json, per_class.csv and figures."""
    from audioar.experiment import evaluate_run
    from audioar.pipeline import load_trained

    trained = load_trained(model)
    target = trained.config.data.target
    out_dir = out or model / "eval"

    def on_fold(name: str, metrics: dict[str, Any]) -> None:
        console.print(
            f"fold {name}: AUC {metrics['auc']:.3f}, {target!r} ranked "
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
        )
    m = evaluation.metrics
    console.print(per_class_table(m, target))
    beating = m.get("classes_beating_target") or []
    console.print(
        f"target {target!r} vs rest: AUC [bold]{m['auc']:.3f}[/], pAUC(FPR<=0.1) {m['pauc']:.3f}, "
        f"EER {m['eer']:.3f}; {target!r} ranked {m['target_rank']:.3g} of {m['num_classes']}"
        + (f"; beaten by {', '.join(beating)}" if beating else "")
    )
    if "scores" in m:
        console.print(score_table(m))
    if "folds" in m:
        console.print(
            f"leave-one-speaker-out: mean AUC {m['mean']['auc']:.3f} ± {m['std']['auc']:.3f} over "
            f"{len(m['folds'])} folds; target first in every fold: {m['target_first_in_all_folds']}"
        )
    if "precision" in m:
        console.print(
            f"at the calibrated threshold: precision {m['precision']:.3f}, recall "
            f"{m['recall']:.3f}, F1 {m['f1']:.3f}, FPR {m['fpr']:.3f}"
        )
    if evaluation.skipped:
        console.print(f"[yellow]skipped {len(evaluation.skipped)} unreadable clip(s)[/]")
    console.print(f"wrote [bold]{out_dir}[/] (metrics.json, per_class.csv, scores.csv, figures)")
