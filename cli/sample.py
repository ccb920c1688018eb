"""``audioar sample``: generate clips of one class from a class-conditional (WaveNet) run."""

from pathlib import Path
from typing import Annotated

import typer
from audioar_cli.common import console
from audioar_cli.errors import friendly_errors

__all__ = ["sample_command"]


@friendly_errors
def sample_command(
    run_dir: Annotated[Path, typer.Argument(help="Run directory of a wavenet fit.")],
    target: Annotated[str, typer.Option("--class", help="Class to generate, e.g. zero.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the WAV files.")],
    n: Annotated[int, typer.Option("-n", min=1, help="Number of clips.")] = 4,
    seconds: Annotated[float, typer.Option(min=0.001, help="Seconds per clip.")] = 1.0,
    temperature: Annotated[float, typer.Option(min=0.0, help="Sampling temperature.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Generate clips (16-bit WAV at the features' sample rate). mulaw runs decode codes;
    stft runs invert the generated log-mel frames with Griffin-Lim (rough sound)."""
    from audioar.pipeline.runs import load_trained
    from audioar.pipeline.sampling import generate_waveforms, write_wavs

    trained = load_trained(run_dir)
    with console.status(f"generating {n} x {seconds:g} s of {target!r}"):
        waves = generate_waveforms(trained, target, n, seconds, temperature=temperature, seed=seed)
    rate = trained.featurizer.sample_rate
    paths = write_wavs(waves, rate, out, prefix=target)
    how = "Griffin-Lim from log-mel frames" if trained.featurizer.name == "stft" else "mu-law"
    console.print(f"wrote {len(paths)} clip(s) at {rate} Hz ({how}) to [bold]{out}[/]")
