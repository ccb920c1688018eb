"""``audioar score``: score audio files with a trained run."""

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from audioar_cli.common import console
from audioar_cli.errors import err_console, fail, friendly_errors
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

__all__ = ["score_command"]


@friendly_errors
def score_command(
    paths: Annotated[list[Path], typer.Argument(help="Audio files, folders or CSV manifests.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Run directory from `fit`.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="scores.csv or scores.json (default: stdout)."),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail on the first unreadable clip.")
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Clips per batch.")] = 512,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Neither read nor write the feature cache.")
    ] = False,
    trace: Annotated[
        Path | None,
        typer.Option(
            "--trace",
            help="Also write each clip's per-step log-likelihood under the target to this "
            "folder: <name>-<hash>.csv (step,time_s,log_likelihood) and index.csv.",
        ),
    ] = None,
) -> None:
    """Score clips: log-likelihood, nats per dim, anomaly score, p-value, is_anomaly."""
    from audioar.atomic import remove_stale_temporaries
    from audioar.pipeline.runs import load_trained
    from audioar.pipeline.score_files import expand_inputs, score_files, write_scores

    # what a killed score (kill -9) left beside its outputs; a running one's stay
    for target in ([out] if out is not None else []) + ([trace / "index.csv"] if trace else []):
        remove_stale_temporaries(target)
    trained = load_trained(model)
    files = expand_inputs(paths)
    if trace is not None and trace.exists() and not trace.is_dir():
        raise fail(f"{trace}: --trace needs a folder, this is a file", code=2)
    if trace is not None and trained.spec.kind == "vector":
        from audioar.pipeline.traces import ONE_STEP_NOTE

        err_console.print(f"[yellow]--trace: {ONE_STEP_NOTE}[/]")
    quiet = out is None
    bar = Progress(
        TextColumn("scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
        disable=quiet,
    )

    def checked() -> Iterator[pd.DataFrame]:
        for table in score_files(
            trained,
            files,
            batch_size=batch_size,
            use_cache=not no_cache,
            progress=lambda n: bar.advance(task, n),
            trace_dir=trace,
        ):
            errors = table[table["error"].astype(bool)]
            if strict and len(errors):
                first = errors.iloc[0]
                raise fail(f"{first['path']}: {first['error']} (--strict)", code=1)
            yield table

    with bar:
        task = bar.add_task("score", total=len(files))
        if out is None:
            frames = list(checked())
            table = pd.concat(frames, ignore_index=True)
            table.to_csv(sys.stdout, index=False)
            scored, failed = (
                int((~table["error"].astype(bool)).sum()),
                int(table["error"].astype(bool).sum()),
            )
        else:
            scored, failed = write_scores(checked(), out)
    if not quiet:
        console.print(f"scored {scored} clip(s), {failed} error(s); wrote [bold]{out}[/]")
    if trace is not None:
        err_console.print(f"wrote {scored} trace(s) to {trace} (one CSV per clip, index.csv)")
    if failed:
        err_console.print(
            f"[yellow]{failed} clip(s) could not be scored: see the 'error' column[/]"
        )
    if scored == 0:
        raise fail("no clip could be scored", code=1)
