"""``audioar fit``: train a density model on the normal class and save a calibrated run."""

from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from audioar_cli.common import MODEL_HELP, EpochTable, console, resolve_config, show_dataset
from audioar_cli.errors import fail, friendly_errors
from rich.console import Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from audioar.config.recipes import RunConfig
    from audioar.data.discovery import Dataset, Split

__all__ = ["fit_command"]


@friendly_errors
def fit_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.")],
    data: Annotated[
        Path | None,
        typer.Option(help="Data folder or CSV manifest. Default: the embedded synthetic set."),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            "--class", help="The normal class (default: 'normal' in a DCASE folder, else zero)."
        ),
    ] = None,
    layout: Annotated[
        str | None,
        typer.Option(
            help="Force the data layout: folders | fsdd | audiomnist | manifest | dcase2020 | "
            "dcase2021 (default: detected)."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help=f"Model family: {MODEL_HELP}."),
    ] = None,
    features: Annotated[
        str | None, typer.Option(help="segments (default) | fft | stft | mulaw.")
    ] = None,
    recipe: Annotated[Path | None, typer.Option(help="TOML recipe (recipes/*.toml).")] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", help="Dotted override, e.g. --set train.lr=1e-4 (repeatable)."),
    ] = None,
    split: Annotated[
        str | None, typer.Option(help="official | random | speaker:NAME (default official).")
    ] = None,
    compare: Annotated[
        str | None,
        typer.Option(help="Classes to track per epoch, comma-separated (default: all others)."),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Most training epochs.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for splits and training.")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda.")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted fit of --out.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing run directory.")
    ] = False,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Neither read nor write the feature cache.")
    ] = False,
) -> None:
    """Fit a density model to the normal class; calibrate a threshold; save the run."""
    from audioar.pipeline import distributed

    options = {
        "data.root": data,
        "data.target": target,
        "data.layout": layout,
        "model.name": model,
        "features.name": features,
        "data.split": split,
        "data.compare": compare,
        "train.epochs": epochs,
        "data.seed": seed,
        "train.seed": seed,
        "train.device": device,
    }
    overrides = [f"{k}={v}" for k, v in options.items() if v is not None]
    from audioar.data.layouts import is_machine_data

    # no recipe: the family's presets (and the machine presets on a DCASE folder)
    cfg = resolve_config(recipe, overrides, sets or [], machine=is_machine_data(data, layout))
    distributed.init_from_env()  # under torchrun: one process of several
    try:
        _fit(cfg, out, resume=resume, overwrite=overwrite, use_cache=not no_cache)
    finally:
        distributed.shutdown()


def _fit(cfg: "RunConfig", out: Path, *, resume: bool, overwrite: bool, use_cache: bool) -> None:
    from audioar.pipeline import distributed
    from audioar.pipeline.runs import fit_run
    from audioar.pipeline.train import EpochStats

    main = distributed.is_main()  # only rank 0 shows progress and writes
    where = cfg.data.root or "the embedded synthetic data set"
    processes = distributed.world_size()
    table = EpochTable(cfg.data.target or "")

    def on_data(resolved: "RunConfig", dataset: "Dataset", parts: "Split") -> None:
        table.target = str(resolved.data.target)
        if not main:
            return
        show_dataset(dataset, parts)
        windows = ""
        if resolved.features.window_seconds is not None:
            hop = resolved.features.hop_seconds or resolved.features.window_seconds
            windows = f", {resolved.features.window_seconds:g}-s windows every {hop:g} s"
        by = (
            f", conditioned on the {len(dataset.groups)} groups"
            if resolved.data.condition == "group"
            and getattr(resolved.model.settings, "conditional", False)
            else ""
        )
        console.print(
            f"fitting [bold]{resolved.model.name}[/] on class [bold]{resolved.data.target!r}[/] "
            f"of {where} ({resolved.features.name} features{windows}, split {parts.name}{by})"
            + (f" on {processes} processes" if processes > 1 else "")
        )

    bar = Progress(
        TextColumn("training"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not main,
    )
    task = bar.add_task("fit", total=None)
    live = Live(Group(bar), console=console, refresh_per_second=4, transient=True)
    with live if main else nullcontext():

        def on_epoch(stats: "EpochStats", columns: dict[str, float]) -> None:
            table.add(stats, columns)
            if main:
                live.update(Group(table.render(), bar))

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        def on_resume(epoch: int) -> None:
            if main:
                console.print(
                    f"resuming from epoch {epoch} (the last one finished; checkpoint "
                    f"{out}.partial/)",
                    markup=False,
                )

        try:
            trained, summary = fit_run(
                cfg,
                out,
                use_cache=use_cache,
                resume=resume,
                overwrite=overwrite,
                on_epoch=on_epoch,
                progress=progress,
                on_data=on_data,
                on_resume=on_resume,
            )
        except KeyboardInterrupt:
            from audioar.pipeline.artifact import checkpoint_path_for

            if not checkpoint_path_for(out).exists():
                raise fail(
                    "interrupted before the first epoch finished; nothing was kept", 130
                ) from None
            raise fail(
                f"interrupted; the last finished epoch is kept: add --resume to the same "
                f"command to continue ({out}.partial/)",
                code=130,
            ) from None
    if not main:
        return
    if table.history:
        console.print(table.render())
    result = summary.result
    best = result.best_val_log_likelihood
    per = (
        f"{best:.1f} nats per clip, every class under its own label"
        if trained.conditional
        else f"{best:.1f} nats per clip"
        + (f", {best / trained.dims:.3f} per dim" if trained.spec.kind == "vector" else "")
    )
    console.print(
        f"best epoch {result.best_epoch} (validation log-likelihood {per}); "
        f"stopped: {result.stopped}; {summary.n_train} training clips, "
        f"{summary.seconds:.0f} s on {result.device}"
    )
    if trained.conditional:
        console.print(
            f"class-conditional over {len(trained.classes)} classes; scores with "
            f"score.method={trained.score}"
        )
    if summary.skipped:
        console.print(f"[yellow]skipped {len(summary.skipped)} unreadable clip(s)[/]")
    console.print(
        f"threshold {trained.calibration.threshold:.4g} (anomaly score, target FPR "
        f"{trained.calibration.target_fpr:g}); run saved to [bold]{out}[/]"
    )
    console.print(f"next: audioar evaluate --model {out}")
