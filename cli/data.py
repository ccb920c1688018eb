"""``audioar data``: the embedded default data set."""

import time
from pathlib import Path
from typing import Annotated

import typer
from audioar_cli.errors import friendly_errors
from rich.console import Console

from audioar import synth

__all__ = ["app", "synth_command"]

app = typer.Typer(help="Data sets: generate the embedded synthetic one.", no_args_is_help=True)
console = Console(highlight=False)


@app.command("synth")
@friendly_errors
def synth_command(
    out_dir: Annotated[Path, typer.Argument(help="Folder to create (absent or empty).")],
    seed: Annotated[int, typer.Option(help="Same seed, byte-identical files.")] = 0,
    engine: Annotated[
        str, typer.Option(help="auto (eSpeak NG when installed, else formant), espeak, formant.")
    ] = "auto",
    speakers: Annotated[int, typer.Option(min=3, help="Number of speakers.")] = (
        synth.DEFAULT_SPEAKERS
    ),
    takes: Annotated[int, typer.Option(min=1, help="Takes per speaker and word.")] = (
        synth.DEFAULT_TAKES
    ),
    words: Annotated[
        str, typer.Option(help=f"Comma-separated classes, from: {', '.join(synth.LEXICON)}.")
    ] = ",".join(synth.DEFAULT_WORDS),
    sample_rate: Annotated[
        int,
        typer.Option(
            help="Rate of the written clips in Hz: 8000 (default; the pipeline's feature "
            "rate) or 16000 (Speech Commands' rate)."
        ),
    ] = synth.SAMPLE_RATE,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing synthetic data set.")
    ] = False,
) -> None:
    """Write the synthetic spoken-word data set (Speech Commands layout), offline."""
    start = time.perf_counter()
    word_list = [w.strip() for w in words.split(",") if w.strip()]
    with console.status("synthesising clips..."):
        root = synth.synthesize_dataset(
            out_dir,
            seed=seed,
            engine=engine,
            speakers=speakers,
            takes=takes,
            words=word_list,
            sample_rate=sample_rate,
            force=force,
        )
    info = synth.read_metadata(root)
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    console.print(
        f"wrote {info['clips']} clips ({len(info['words'])} classes, {len(info['speakers'])} "
        f"speakers, {info['sample_rate']} Hz, engine {info['engine']}, seed {info['seed']}) "
        f"to {root} "
        f"[{size / 1e6:.1f} MB, {time.perf_counter() - start:.1f} s]"
    )
