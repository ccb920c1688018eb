"""``audioar calibrate``: set a run's threshold anew from normal clips recorded on site."""

from pathlib import Path
from typing import Annotated

import typer
from audioar_cli.common import console
from audioar_cli.errors import err_console, friendly_errors
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

__all__ = ["calibrate_command"]


@friendly_errors
def calibrate_command(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Normal clips the model was not trained on: files, folders, CSVs."),
    ],
    model: Annotated[Path, typer.Option("--model", "-m", help="Run directory from `fit`.")],
    target_fpr: Annotated[
        float | None,
        typer.Option("--target-fpr", help="Share of normal clips to flag (default: the run's)."),
    ] = None,
    method: Annotated[
        str | None,
        typer.Option("--method", help="empirical | gamma (default: the run's)."),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Neither read nor write the feature cache.")
    ] = False,
) -> None:
    """Set the run's threshold from normal clips recorded where it will be used."""
    from audioar.pipeline.recalibrate import recalibrate

    bar = Progress(
        TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), console=console, transient=True
    )
    with bar:
        task = bar.add_task("score", total=None)
        result = recalibrate(
            model,
            paths,
            target_fpr=target_fpr,
            method=method,
            use_cache=not no_cache,
            progress=lambda n: bar.advance(task, n),
        )
    for path, reason in result.skipped:
        err_console.print(f"[yellow]skipped {path}: {reason}[/]")
    before, after = result.before, result.after
    console.print(
        f"threshold {before.threshold:.4g} -> [bold]{after.threshold:.4g}[/] (anomaly score, "
        f"target FPR {after.target_fpr:g}, {after.method}; {result.scored} clip(s)"
        + (f", {len(result.skipped)} skipped" if result.skipped else "")
        + f"); saved in {model}"
    )
