"""``audioar demo``: synthesise data, fit on "zero", evaluate, report — the README's main job."""

import time
from pathlib import Path
from typing import Annotated

import typer
from audioar_cli.common import console, resolve_config
from audioar_cli.errors import friendly_errors

__all__ = ["demo_command"]


@friendly_errors
def demo_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.")] = Path(
        "runs/demo"
    ),
    epochs: Annotated[int, typer.Option(min=1, help="Most training epochs.")] = 300,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda.")] = "auto",
) -> None:
    """The whole experiment on the embedded data: fit a MAF on "zero", evaluate, report."""
    from audioar.experiment import evaluate_run
    from audioar.pipeline import fit_run
    from audioar.report import build_report
    from audioar.synth import default_dataset

    start = time.perf_counter()
    with console.status("generating the synthetic data set (first run only)"):
        root = default_dataset()
    console.print(f"data: {root}")
    cfg = resolve_config(
        None,
        [
            f"data.root={root}",
            "data.target=zero",
            f"train.epochs={epochs}",
            f"train.device={device}",
        ],
        [],
    )
    with console.status("fitting a MAF on 'zero'"):
        trained, summary = fit_run(cfg, out, overwrite=True)
    console.print(
        f"fitted in {summary.seconds:.0f} s (best epoch {summary.result.best_epoch}, "
        f"{summary.n_train} training clips)"
    )
    with console.status("evaluating on held-out speakers"):
        evaluation = evaluate_run(trained, out_dir=out / "eval")
    m = evaluation.metrics
    console.print(
        f"'zero' vs the other words: AUC [bold]{m['auc']:.3f}[/], EER {m['eer']:.3f}, "
        f"'zero' ranked {m['target_rank']} of {m['num_classes']} by mean score ({trained.score})"
    )
    html, _ = build_report(out)
    console.print(f"done in {time.perf_counter() - start:.0f} s; report: [bold]{html}[/]")
