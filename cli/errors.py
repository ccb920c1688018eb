"""Turn library errors into one clear line on stderr and a non-zero exit code."""

import errno
import functools
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from audioar.errors import AudioarError

__all__ = ["err_console", "friendly_errors", "fail", "os_error_message", "Terminated"]

err_console = Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])

#: errno values a user mends by freeing room on the disk.
_FULL = (errno.ENOSPC, errno.EDQUOT)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every ``finally`` (temporary files, the run's
    lock) runs before the process ends."""


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr (as plain text: brackets are kept) and return the
    Exit to raise."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def os_error_message(exc: OSError) -> str:
    """``PATH: reason`` of an OSError, e.g. ``runs/zero: no space left on device; ...``."""
    reason = exc.strerror or str(exc)
    reason = reason[:1].lower() + reason[1:]
    if exc.errno in _FULL and "free some space" not in reason:
        reason += "; free some space and run it again"
    return f"{exc.filename or ''}: {reason}".lstrip(": ")


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While a command runs, SIGTERM raises :class:`Terminated` (only the main thread can
    take signals; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def friendly_errors(func: F) -> F:
    """Decorator for command functions: AudioarError and OSError become one line, exit 2;
    Ctrl-C and SIGTERM end the command cleanly (temporary files removed), exit 130."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with _sigterm_as_interrupt():
                return func(*args, **kwargs)
        except AudioarError as exc:
            raise fail(str(exc)) from None
        except OSError as exc:
            raise fail(os_error_message(exc)) from None
        except KeyboardInterrupt:
            raise fail("interrupted", code=130) from None

    return wrapper  # type: ignore[return-value]
