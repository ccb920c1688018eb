"""``audioar data``: the embedded synthetic data sets (spoken words, machine sounds)."""

import time
from pathlib import Path
from typing import Annotated

import typer
from audioar_cli.errors import friendly_errors
from rich.console import Console

from audioar.data import synth
from audioar.errors import ConfigError

__all__ = ["app", "synth_command"]

app = typer.Typer(help="Data sets: generate the embedded synthetic ones.", no_args_is_help=True)
console = Console(highlight=False)

KINDS = ("speech", "machine")
_DEFAULT_IDS = ",".join(str(i) for i in synth.DEFAULT_MACHINE_IDS)


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@app.command("synth")
@friendly_errors
def synth_command(
    out_dir: Annotated[Path, typer.Argument(help="Folder to create (absent or empty).")],
    kind: Annotated[
        str,
        typer.Option(
            help="speech: spoken words (Speech Commands layout); machine: fan/pump sounds "
            "with anomalies (DCASE 2020 Task 2 layout)."
        ),
    ] = "speech",
    seed: Annotated[int, typer.Option(help="Same seed, byte-identical files.")] = 0,
    engine: Annotated[
        str,
        typer.Option(
            help="speech: auto (eSpeak NG when installed, else formant), espeak, formant."
        ),
    ] = "auto",
    speakers: Annotated[int, typer.Option(min=3, help="speech: number of speakers.")] = (
        synth.DEFAULT_SPEAKERS
    ),
    takes: Annotated[int, typer.Option(min=1, help="speech: takes per speaker and word.")] = (
        synth.DEFAULT_TAKES
    ),
    words: Annotated[
        str,
        typer.Option(help=f"speech: comma-separated classes, from: {', '.join(synth.LEXICON)}."),
    ] = ",".join(synth.DEFAULT_WORDS),
    machine: Annotated[
        str,
        typer.Option(
            help=f"machine: machine type ({', '.join(synth.MACHINE_TYPES)}), also the folder name."
        ),
    ] = "fan",
    ids: Annotated[
        str, typer.Option(help="machine: comma-separated machine IDs (0-99).")
    ] = _DEFAULT_IDS,
    sample_rate: Annotated[
        int | None,
        typer.Option(
            help="Rate of the written clips in Hz, 8000 or 16000. Default: speech 8000 (the "
            "pipeline's feature rate; Speech Commands has 16000), machine 16000 (DCASE's).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing synthetic data set.")
    ] = False,
) -> None:
    """Write an embedded synthetic data set, offline: spoken words or machine sounds."""
    if kind not in KINDS:
        raise ConfigError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    speech_options = {
        "--engine": engine != "auto",
        "--speakers": speakers != synth.DEFAULT_SPEAKERS,
        "--takes": takes != synth.DEFAULT_TAKES,
        "--words": words != ",".join(synth.DEFAULT_WORDS),
    }
    machine_options = {"--machine": machine != "fan", "--ids": ids != _DEFAULT_IDS}
    foreign = speech_options if kind == "machine" else machine_options
    misplaced = [name for name, given in foreign.items() if given]
    if misplaced:
        other = "speech" if kind == "machine" else "machine"
        verb = "applies" if len(misplaced) == 1 else "apply"
        raise ConfigError(f"{', '.join(misplaced)} {verb} only to --kind {other}")
    start = time.perf_counter()
    if kind == "machine":
        _machine(out_dir, seed, machine, ids, sample_rate, force, start)
        return
    word_list = [w.strip() for w in words.split(",") if w.strip()]
    with console.status("synthesising clips..."):
        root = synth.synthesize_dataset(
            out_dir,
            seed=seed,
            engine=engine,
            speakers=speakers,
            takes=takes,
            words=word_list,
            sample_rate=synth.SAMPLE_RATE if sample_rate is None else sample_rate,
            force=force,
        )
    info = synth.read_metadata(root)
    console.print(
        f"wrote {info['clips']} clips ({len(info['words'])} classes, {len(info['speakers'])} "
        f"speakers, {info['sample_rate']} Hz, engine {info['engine']}, seed {info['seed']}) "
        f"to {root} "
        f"[{_size(root) / 1e6:.1f} MB, {time.perf_counter() - start:.1f} s]",
        soft_wrap=True,
    )


def _machine(
    out_dir: Path,
    seed: int,
    machine: str,
    ids: str,
    sample_rate: int | None,
    force: bool,
    start: float,
) -> None:
    """``--kind machine``: write the machine-sound set and print one line."""
    id_list = [i.strip() for i in ids.split(",") if i.strip()]
    with console.status("synthesising machine sounds..."):
        root = synth.synthesize_machine_dataset(
            out_dir,
            seed=seed,
            machine=machine,
            ids=id_list,  # type: ignore[arg-type]  # checked and converted by the library
            sample_rate=16_000 if sample_rate is None else sample_rate,
            force=force,
        )
    info = synth.read_machine_metadata(root)
    console.print(
        f"wrote {info['clips']} clips ({info['machine']}, IDs "
        f"{', '.join(f'{i:02d}' for i in info['ids'])}; per ID {info['train_clips']} train, "
        f"{info['test_normal']} normal + {info['test_anomaly']} anomalous test; "
        f"{info['clip_seconds']:g} s, {info['sample_rate']} Hz, seed {info['seed']}) to {root} "
        f"[{_size(root.parent) / 1e6:.1f} MB, {time.perf_counter() - start:.1f} s]",
        soft_wrap=True,
    )
