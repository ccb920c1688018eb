"""Shared pieces of the commands: run configuration from options, the live epoch table."""

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from audioar.models.build import describe_families

if TYPE_CHECKING:  # the library (and torch) load only when a command runs
    from audioar.config.recipes import RunConfig
    from audioar.data.discovery import Dataset, Split
    from audioar.pipeline.train import EpochStats

__all__ = ["console", "resolve_config", "show_dataset", "EpochTable", "MODEL_HELP"]

console = Console(highlight=False)

#: The registered model families, for ``--model`` help texts (read without loading torch).
MODEL_HELP = describe_families()


def resolve_config(
    recipe: Path | None, overrides: Sequence[str], sets: Sequence[str], *, machine: bool = False
) -> "RunConfig":
    """Recipe (or defaults and presets), then the explicit options, then ``--set`` overrides
    (last wins): :func:`audioar.config.recipes.resolve_run_config`."""
    from audioar.config.recipes import resolve_run_config

    return resolve_run_config(recipe, [*overrides, *sets], machine=machine)


def show_dataset(dataset: "Dataset", parts: "Split | None" = None, max_rows: int = 24) -> None:
    """Print what was found: the layout line and the clips per part, label, group and domain."""
    console.print(dataset.describe(), markup=False)
    if parts is not None:
        console.print(parts.describe(), markup=False)
    summary = dataset.summary()
    if not len(summary) or len(summary) > max_rows:
        return
    table = Table(title="clips per part")
    shown = [c for c in summary.columns if summary[c].notna().any()]
    for column in shown:
        table.add_column(column, justify="right" if column == "clips" else "left")
    for row in summary[shown].itertuples(index=False):
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)


class EpochTable:
    """The per-epoch comparison table: train and validation log-likelihood of the target
    and the mean log-likelihood of each compared class (the original experiment's printout).

    Keeps every row; renders the last ``rows`` epochs and at most ``max_columns`` classes.
    """

    def __init__(self, target: str, rows: int = 12, max_columns: int = 8) -> None:
        self.target = target
        self.rows = rows
        self.max_columns = max_columns
        self.history: list[tuple[EpochStats, dict[str, float]]] = []

    def add(self, stats: "EpochStats", columns: dict[str, float]) -> None:
        """Record one epoch."""
        self.history.append((stats, dict(columns)))

    def render(self) -> Table:
        """The table of the most recent epochs."""
        table = Table(title=f"log-likelihood per clip (nats); normal class {self.target!r}")
        table.add_column("epoch", justify="right")
        table.add_column("train", justify="right")
        table.add_column(f"val {self.target}", justify="right", style="bold")
        labels = list(self.history[-1][1]) if self.history else []
        shown = labels[: self.max_columns]
        for label in shown:
            table.add_column(label.removeprefix("ll_"), justify="right")
        for stats, columns in self.history[-self.rows :]:
            mark = " *" if stats.best else ""
            beaten = [c for c in shown if columns.get(c, float("-inf")) > stats.val_log_likelihood]
            cells = [
                f"[red]{columns[c]:.1f}[/]"
                if c in beaten
                else f"{columns.get(c, float('nan')):.1f}"
                for c in shown
            ]
            table.add_row(
                f"{stats.epoch}{mark}",
                f"{stats.train_log_likelihood:.1f}",
                f"{stats.val_log_likelihood:.1f}",
                *cells,
            )
        if len(labels) > len(shown):
            table.caption = f"{len(labels) - len(shown)} more classes in history.csv"
        else:
            table.caption = "* best validation so far; red: a class scoring above the target"
        return table
