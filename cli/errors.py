"""Turn library errors into one clear line on stderr and a non-zero exit code."""

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from audioar.errors import AudioarError

__all__ = ["err_console", "friendly_errors", "fail"]

err_console = Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(code)


def friendly_errors(func: F) -> F:
    """Decorator for command functions: AudioarError and OSError become one line, exit 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except AudioarError as exc:
            raise fail(str(exc)) from None
        except OSError as exc:
            raise fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")) from None
        except KeyboardInterrupt:
            raise fail("interrupted", code=130) from None

    return wrapper  # type: ignore[return-value]
