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
