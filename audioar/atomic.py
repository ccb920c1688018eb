"""Files and folders that appear whole or not at all.

Everything audioar writes (run directories, checkpoints, feature-cache shards, score
tables, figures, reports, WAV files, the synthetic data set) goes through these helpers:
the content is written under a temporary name beside the destination (same file system),
then renamed over it, so a reader never sees half a file and an interrupted write leaves
no debris.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "atomic_open", "temp_sibling", "replace_dir"]


def _tmp_name(path: Path) -> Path:
    # A unique name opened with "x" (not mkstemp) so the file gets the usual umask mode.
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on a clean exit it replaces ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was.

    Args:
        path: Destination file; its folder is created when missing.
        mode: ``"wb"`` (default) or ``"w"`` (text; ``kwargs`` such as ``newline`` pass on).

    Example:
        >>> with atomic_open("out.csv", "w", newline="") as handle:  # doctest: +SKIP
        ...     handle.write("a,b\\n")
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open writes ('wb' or 'w'), got mode {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with open(tmp, mode.replace("w", "x"), **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, data: bytes | str | Callable[[Any], Any]) -> Path:
    """Write ``path`` whole or not at all.

    Args:
        path: Destination file; its folder is created when missing.
        data: Bytes, text (UTF-8), or a function called with a temporary path, which it
            must write (for writers that want a file name, such as ``torch.save`` or
            ``soundfile.write``).

    Returns:
        The destination as a Path.
    """
    path = Path(path)
    if callable(data):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_name(path)
        try:
            data(tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path
    payload = data.encode() if isinstance(data, str) else data
    with atomic_open(path, "wb") as handle:
        handle.write(payload)
    return path


def temp_sibling(target: str | os.PathLike, kind: str = "tmp") -> Path:
    """A new empty hidden folder beside ``target`` (``.NAME.kind-XXXX``), for building a
    folder that :func:`replace_dir` then puts in place."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{target.name}.{kind}-", dir=target.parent))
    os.chmod(folder, 0o755)  # mkdtemp makes it private
    return folder


def replace_dir(new: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Put the finished folder ``new`` at ``target`` by renames; an old ``target`` is moved
    aside first and removed once the new one is in place (restored if the rename fails).

    Returns:
        ``target`` as a Path.
    """
    new, target = Path(new), Path(target)
    old = None
    if target.exists():
        old = temp_sibling(target, "old")
        os.replace(target, old / target.name)
    try:
        os.rename(new, target)
    except OSError:
        if old is not None:
            os.replace(old / target.name, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target
