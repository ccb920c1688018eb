"""``audioar report``: one self-contained HTML report (plus Markdown) of a run."""

from pathlib import Path
from typing import Annotated

import typer
from audioar_cli.common import console
from audioar_cli.errors import friendly_errors

__all__ = ["report_command"]


@friendly_errors
def report_command(
    run_dir: Annotated[Path, typer.Argument(help="Run directory from `fit`.")],
    eval_dir: Annotated[
        Path | None, typer.Option("--eval", help="Evaluation folder (default RUN/eval).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Folder for report.html/.md (default RUN).")
    ] = None,
) -> None:
    """Write report.html (figures embedded) and report.md for a run."""
    from audioar.report.build import build_report

    html, md = build_report(run_dir, eval_dir=eval_dir, out_dir=out)
    console.print(f"wrote [bold]{html}[/] and {md}")
