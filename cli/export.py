"""``audioar export``: a trained run as one file that runs without audioar."""

from pathlib import Path
from typing import Annotated

import typer
from audioar_cli.common import console
from audioar_cli.errors import friendly_errors

__all__ = ["export_command"]

_SUFFIX = {"torchscript": ".pt", "onnx": ".onnx"}


@friendly_errors
def export_command(
    run_dir: Annotated[Path, typer.Argument(help="Run directory from `fit`.")],
    format: Annotated[
        str,
        typer.Option("--format", "-f", help="torchscript (torch.jit.load) or onnx (onnxruntime)."),
    ] = "torchscript",
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="File to write (default RUN/detector.pt or .onnx)."),
    ] = None,
    no_check: Annotated[
        bool,
        typer.Option(
            "--no-check", help="Skip comparing the export's scores with the library's first."
        ),
    ] = False,
) -> None:
    """Write the run (featurizer, model, score, threshold) as one file: forward(waveform
    (batch, time), lengths) -> (batch,) anomaly scores; sample_rate and threshold inside."""
    from audioar.deploy.export import FORMATS, ExportError, export_trained
    from audioar.pipeline.runs import load_trained

    if format not in FORMATS:
        raise ExportError(f"export: unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    trained = load_trained(run_dir)
    target = out if out is not None else run_dir / f"detector{_SUFFIX[format]}"
    written = export_trained(trained, target, format=format, check=not no_check)
    size = written.stat().st_size
    how = "torch.jit.load" if format == "torchscript" else "onnxruntime.InferenceSession"
    console.print(
        f"wrote [bold]{written}[/] ({size / 1024:.0f} KiB, {format}): sample_rate "
        f"{trained.featurizer.sample_rate} Hz, threshold {trained.calibration.threshold:.6g}, "
        f"score {trained.score}; load it with {how}"
    )
