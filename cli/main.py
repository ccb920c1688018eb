"""The ``audioar`` Typer app: one module per command, registered here."""

import logging
import warnings

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
    if not verbose:  # libraries' warnings are for developers: shown with --verbose only
        warnings.simplefilter("ignore")


# Command registration (one module per command in cli/).
from audioar_cli import data as data_cmd  # noqa: E402

app.add_typer(data_cmd.app, name="data")
from audioar_cli import density as density_cmd  # noqa: E402

app.add_typer(density_cmd.app, name="density")
from audioar_cli.calibrate import calibrate_command  # noqa: E402
from audioar_cli.demo import demo_command  # noqa: E402
from audioar_cli.evaluate import evaluate_command  # noqa: E402
from audioar_cli.fit import fit_command  # noqa: E402
from audioar_cli.report import report_command  # noqa: E402
from audioar_cli.score import score_command  # noqa: E402

app.command("fit")(fit_command)
app.command("score")(score_command)
app.command("calibrate")(calibrate_command)
app.command("evaluate")(evaluate_command)
app.command("report")(report_command)
app.command("demo")(demo_command)
from audioar_cli.sample import sample_command  # noqa: E402

app.command("sample")(sample_command)
from audioar_cli.listen import listen_command  # noqa: E402

app.command("listen")(listen_command)
from audioar_cli.export import export_command  # noqa: E402

app.command("export")(export_command)
