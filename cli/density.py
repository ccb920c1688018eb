"""``audioar density``: density estimation on tables (the MAF paper's GAS benchmark)."""

import time
from pathlib import Path
from typing import Annotated

import typer
from audioar_cli.errors import fail, friendly_errors
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["app", "prepare_command", "fit_command", "evaluate_command"]

app = typer.Typer(
    help="Density estimation on tables of numbers: prepare GAS, fit, evaluate.",
    no_args_is_help=True,
)
console = Console(highlight=False)

DATASETS = ("gas",)


@app.command("prepare")
@friendly_errors
def prepare_command(
    dataset: Annotated[str, typer.Argument(help="Data set: gas.")],
    source: Annotated[
        Path, typer.Argument(help="ethylene_CO.txt (UCI) or the MAF authors' ethylene_CO.pickle.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The .npz to write.")],
    rows: Annotated[
        int | None,
        typer.Option(
            min=3,
            help="Use this many rows (before preprocessing); 1052065 mirrors the authors' "
            "pickle. Default: all.",
        ),
    ] = None,
    subsample: Annotated[
        str,
        typer.Option(help="How --rows are chosen: random (seeded, like the pickle) | first."),
    ] = "random",
    split: Annotated[
        str,
        typer.Option(
            help="paper (row order: last 10 % test, 10 % of the rest validation) | "
            "random (seeded 50/50 train/test)."
        ),
    ] = "paper",
    seed: Annotated[int, typer.Option(help="Seed of --rows random and --split random.")] = 0,
) -> None:
    """Clean, standardise and split a data set as the MAF paper did; write an .npz."""
    from audioar.density.gas import prepare_gas, save_gas

    if dataset not in DATASETS:
        raise fail(f"unknown data set {dataset!r}; choose one of {', '.join(DATASETS)}")
    start = time.perf_counter()
    with console.status(f"reading {source}..."):
        data = prepare_gas(source, rows=rows, subsample=subsample, split=split, seed=seed)
        save_gas(data, out)
    meta = data.metadata
    sizes = meta["sizes"]
    console.print(
        f"GAS: {meta['rows']:,} rows of {meta['rows_in_file']:,}, {len(meta['columns'])} "
        f"columns kept ({', '.join(meta['columns'])}); dropped correlated "
        f"{', '.join(meta['dropped_correlated']) or 'none'}"
    )
    console.print(
        f"split {split}: {sizes['train']:,} train / {sizes['validation']:,} validation / "
        f"{sizes['test']:,} test; wrote {out} [{time.perf_counter() - start:.1f} s]"
    )


@app.command("fit")
@friendly_errors
def fit_command(
    table: Annotated[
        Path, typer.Argument(help="Table: .npz (train/validation/test), .npy, .csv, .parquet.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to write.")],
    model: Annotated[
        str | None, typer.Option(help="maf | made | nade | fvsbn (default: the recipe's, maf).")
    ] = None,
    recipe: Annotated[
        Path | None, typer.Option(help="TOML recipe with [model] and [train] (recipes/gas_*.toml).")
    ] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", help="Dotted override, e.g. --set train.lr=1e-4 (repeatable)."),
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Most training epochs.")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda.")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing run folder.")
    ] = False,
) -> None:
    """Fit a density model to a table's training rows (early stopping on its validation rows)."""
    from audioar.density.estimator import DensityEstimator
    from audioar.density.recipe import load_density_recipe
    from audioar.density.tables import load_table

    if out.exists() and not overwrite:
        raise fail(f"{out} exists; pass --overwrite to replace it")
    overrides = list(sets or [])
    if epochs is not None:
        overrides.append(f"train.epochs={epochs}")
    if device is not None:
        overrides.append(f"train.device={device}")
    cfg = load_density_recipe(recipe, overrides, model=model)
    data = load_table(table)
    est = DensityEstimator(
        cfg.model, cfg.model_config, cfg.train, cfg.validation_fraction, cfg.standardize
    )
    validation = data.validation
    held = (
        "its validation split"
        if validation is not None
        else (f"the last {cfg.validation_fraction:.0%} of its rows")
    )
    console.print(
        f"fitting [bold]{cfg.model}[/] on {len(data.train):,} rows x {data.features} columns "
        f"of {table} (early stopping on {held})"
    )
    start = time.perf_counter()
    bar = Progress(
        TextColumn("training"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    with bar:
        task = bar.add_task("fit", total=None, status="")

        def on_epoch(stats: object) -> None:
            bar.update(
                task,
                status=f"epoch {stats.epoch}: val {stats.val_log_likelihood:.3f} nats",  # type: ignore[attr-defined]
            )

        est.fit(
            data.train,
            validation,
            on_epoch=on_epoch,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    est.save(out)
    result = est.fit_result_
    best = result.best_val_log_likelihood
    console.print(
        f"best epoch {result.best_epoch} of {len(result.history)} (validation "
        f"{best:.3f} nats, {best / data.features:.3f} per dim); stopped: {result.stopped}; "
        f"{time.perf_counter() - start:.0f} s on {result.device}; run saved to [bold]{out}[/]"
    )
    console.print(f"next: audioar density evaluate {out} {table}")


@app.command("evaluate")
@friendly_errors
def evaluate_command(
    run: Annotated[Path, typer.Argument(help="Run folder written by `audioar density fit`.")],
    table: Annotated[Path, typer.Argument(help="Table to score (its test split when it has one).")],
    part: Annotated[
        str | None,
        typer.Option(
            "--split", help="test (default when the table has splits) | validation | train | all."
        ),
    ] = None,
) -> None:
    """Print the mean log-likelihood with its error bar (± 2 standard errors), in nats."""
    from audioar.density.estimator import DensityEstimator
    from audioar.density.evaluate import summarize
    from audioar.density.tables import load_table

    est = DensityEstimator.load(run)
    data = load_table(table)
    name = part or ("test" if data.test is not None else "all")
    rows = data.part(name)
    with console.status(f"scoring {len(rows):,} rows..."):
        ll = est.score_samples(rows)
    summary = summarize(ll, rows.shape[1], part="table" if name == "all" else name)
    label = "log-likelihood" if name == "all" else f"{name} log-likelihood"
    console.print(f"{label}: {summary.format()}")
