"""``audioar listen``: score sliding windows of a long recording, a WAV stream on standard
input or a watched folder as the audio arrives; write the windows and the merged events."""

import csv
import sys
import time
from collections import deque
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from audioar_cli.common import console
from audioar_cli.errors import err_console, friendly_errors
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from audioar.deploy.listen import Event, Listener, WindowScore

__all__ = ["listen_command"]

#: Columns of ``--out`` and ``--events`` (folder mode adds ``source``: the file).
WINDOW_COLUMNS = ("time_s", "end_s", "anomaly_score", "p_value", "is_anomaly")
EVENT_COLUMNS = ("start_s", "end_s", "peak_score")
SHOWN_WINDOWS = 10  # rows of the live display
BAR_WIDTH = 30
SHOWN_EVENTS = 20  # events listed at the end


@friendly_errors
def listen_command(
    model: Annotated[Path, typer.Option("--model", "-m", help="Run directory from `fit`.")],
    source: Annotated[
        str,
        typer.Option(
            "--input",
            "-i",
            help="A WAV/FLAC/OGG file, - for a WAV stream on standard input, or a folder to "
            "watch for new audio files.",
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="windows.csv: every window's score, as it goes."),
    ] = None,
    events: Annotated[
        Path | None,
        typer.Option(help="events.csv: flagged windows merged (start_s, end_s, peak_score)."),
    ] = None,
    window: Annotated[
        float | None,
        typer.Option(
            help="Window seconds for a run without windows (default: its clip length, else 1.0)."
        ),
    ] = None,
    hop: Annotated[
        float | None,
        typer.Option(help="Seconds between windows (default: the run's hop, else window/2)."),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(
            help="Machine ID / section to score against, e.g. id_00 (a run conditioned on "
            "groups; default: named by a DCASE file name, else the most likely one)."
        ),
    ] = None,
    min_gap: Annotated[
        float,
        typer.Option(min=0.0, help="Merge events separated by at most this many quiet seconds."),
    ] = 0.0,
    batch: Annotated[
        int, typer.Option(min=1, help="Most windows per model call when audio is waiting.")
    ] = 32,
    realtime: Annotated[
        bool,
        typer.Option("--realtime", help="Play a file at its real pace (a live demo)."),
    ] = False,
    max_seconds: Annotated[
        float | None, typer.Option(min=0.01, help="Stop after this many seconds.")
    ] = None,
    idle_seconds: Annotated[
        float | None,
        typer.Option(min=0.01, help="Folder: stop after this many seconds without a new file."),
    ] = None,
    poll: Annotated[
        float, typer.Option(min=0.01, help="Folder: seconds between looks at the folder.")
    ] = 0.5,
) -> None:
    """Score sliding windows as the audio arrives; print latency and the real-time factor."""
    from audioar.deploy.listen import EventMerger, listen
    from audioar.pipeline.runs import load_trained

    trained = load_trained(model)
    stream = _stdin() if source == "-" else None
    listener = listen(
        trained,
        stream if stream is not None else Path(source),
        window_seconds=window,
        hop_seconds=hop,
        group=group,
        batch_windows=batch,
        realtime=realtime,
        poll_seconds=poll,
        idle_seconds=idle_seconds,
        max_seconds=max_seconds,
    )
    merger = EventMerger(min_gap)
    display = _Display(listener)
    with ExitStack() as stack:
        window_rows = _writer(stack, out, WINDOW_COLUMNS, listener.folder)
        event_rows = _writer(stack, events, EVENT_COLUMNS, listener.folder)

        def closed(found: "list[Event]") -> None:
            for event in found:
                display.add_event(event)
                if event_rows is not None:
                    event_rows(event.start_s, event.end_s, f"{event.peak_score:.9g}", event.source)

        live = Live(console=console, refresh_per_second=4, transient=True)
        with live if console.is_terminal else nullcontext():
            try:
                for scored in listener:
                    if window_rows is not None:
                        window_rows(
                            scored.start_s, scored.end_s, f"{scored.anomaly_score:.9g}",
                            f"{scored.p_value:.6g}", scored.is_anomaly, scored.source,
                        )  # fmt: skip
                    closed(merger.add(scored))
                    if display.add_window(scored) and console.is_terminal:
                        live.update(display.render())
            except KeyboardInterrupt:
                display.interrupted = True
                listener.close()
        closed(merger.flush())
    _summary(listener, display, source, out, events)


def _stdin() -> Any:
    """Standard input as a binary stream."""
    return getattr(sys.stdin, "buffer", sys.stdin)


def _writer(stack: ExitStack, path: Path | None, columns: tuple[str, ...], folder: bool) -> Any:
    """A row writer to ``path`` (renamed into place when ``stack`` closes), or None."""
    if path is None:
        return None
    from audioar.atomic import atomic_open

    handle = stack.enter_context(atomic_open(path, "w", newline=""))
    rows = csv.writer(handle, lineterminator="\n")
    rows.writerow([*columns, *(["source"] if folder else [])])

    def write(*values: Any) -> None:
        *cells, source = values
        cells = [f"{v:.6f}" if isinstance(v, float) else v for v in cells]
        rows.writerow([*cells, source] if folder else cells)

    return write


class _Display:
    """The live view: the latest windows with a bar against the threshold, the events."""

    def __init__(self, listener: "Listener") -> None:
        self.listener = listener
        self.recent: deque[WindowScore] = deque(maxlen=SHOWN_WINDOWS)
        self.events: list[Event] = []
        self.event_count = 0
        self.interrupted = False
        self._shown = 0.0
        reference = listener.trained.calibration.reference
        threshold = listener.threshold
        low = min(reference[0], threshold) if reference else threshold - 1.0
        self.low, self.high = low, threshold + max(threshold - low, 1e-9)  # threshold: middle

    def add_window(self, scored: "WindowScore") -> bool:
        """Record a window; True when the view is due for a refresh."""
        self.recent.append(scored)
        now = time.monotonic()
        if scored.is_anomaly or now - self._shown >= 0.1:
            self._shown = now
            return True
        return False

    def add_event(self, event: "Event") -> None:
        self.event_count += 1
        if len(self.events) < SHOWN_EVENTS:
            self.events.append(event)

    def bar(self, score: float, flagged: bool) -> Text:
        share = (score - self.low) / (self.high - self.low)
        filled = int(round(min(max(share, 0.0), 1.0) * BAR_WIDTH))
        cells = ["█" if i < filled else "·" for i in range(BAR_WIDTH)]
        cells[BAR_WIDTH // 2] = "|"
        return Text("".join(cells), style="red" if flagged else "green")

    def render(self) -> Group:
        stats = self.listener.stats
        table = Table(title=f"listening (threshold {self.listener.threshold:.4g})")
        for name, justify in (("time (s)", "right"), ("anomaly score", "right"),
                              ("against the threshold", "left"), ("p-value", "right")):  # fmt: skip
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        for w in self.recent:
            style = "bold red" if w.is_anomaly else ""
            table.add_row(
                f"{w.start_s:.2f}-{w.end_s:.2f}", Text(f"{w.anomaly_score:.4g}", style=style),
                self.bar(w.anomaly_score, w.is_anomaly), f"{w.p_value:.3g}",
            )  # fmt: skip
        line = (
            f"{self.event_count} event(s) · {stats.windows} windows · "
            f"{stats.audio_seconds:.1f} s of audio · real-time factor "
            f"{stats.real_time_factor:.0f}x"
        )
        return Group(table, Text(line))


def _summary(
    listener: "Listener", display: _Display, source: str, out: Path | None, events: Path | None
) -> None:
    stats = listener.stats
    if display.interrupted:
        console.print("stopped (Ctrl-C)")
    if display.events:
        table = Table(title="events")
        for name in (*EVENT_COLUMNS, *(["source"] if listener.folder else [])):
            table.add_column(name, justify="left" if name == "source" else "right")
        for event in display.events:
            cells = [f"{event.start_s:.2f}", f"{event.end_s:.2f}", f"{event.peak_score:.4g}"]
            table.add_row(*cells, *([event.source] if listener.folder else []))
        if display.event_count > len(display.events):
            table.caption = f"{display.event_count - len(display.events)} more"
        console.print(table)
    what = f"{stats.recordings} file(s) from {source}" if listener.folder else source
    console.print(
        f"listened to {stats.audio_seconds:.1f} s of audio ({what}): {stats.windows} windows "
        f"of {listener.window_seconds:g} s every {listener.hop_seconds:g} s, "
        f"{display.event_count} event(s) (threshold {listener.threshold:.4g})",
        markup=False,
    )
    if stats.windows:
        console.print(
            f"latency per window: median {stats.latency_ms(0.5):.1f} ms, 95th percentile "
            f"{stats.latency_ms(0.95):.1f} ms; real-time factor "
            f"{stats.real_time_factor:.0f}x (seconds of audio per second of compute)"
        )
    wrote = [f"{path}" for path in (out, events) if path is not None]
    if wrote:
        console.print(f"wrote {' and '.join(wrote)}", markup=False)
    if stats.skipped:
        err_console.print(f"[yellow]skipped {len(stats.skipped)} file(s) that could not be read[/]")
