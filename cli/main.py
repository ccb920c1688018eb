"""The ``audioar`` Typer app: one module per command, registered here."""

import logging

import typer

app = typer.Typer(
    name="audioar",
    help="Audio anomaly detection with deep autoregressive density models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
) -> None:
    """Audio anomaly detection with deep autoregressive density models."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


# Command registration (one module per command in cli/).
from audioar_cli import data as data_cmd  # noqa: E402

app.add_typer(data_cmd.app, name="data")
