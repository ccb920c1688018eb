"""Files and folders that appear whole or not at all.

Everything audioar writes (run directories, checkpoints, feature-cache shards, score
tables, figures, reports, WAV files, the synthetic data set) goes through these helpers:
the content is written under a temporary name beside the destination (same file system),
then renamed over it, so a reader never sees half a file and an interrupted write leaves
no debris. A write that fails (a full disk) raises an ``OSError`` naming the destination,
never the hidden temporary; :func:`remove_stale_temporaries` clears the temporaries of
writers that were killed outright.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_write",
    "atomic_open",
    "temp_sibling",
    "replace_dir",
    "write_error",
    "pid_alive",
    "remove_stale_temporaries",
]

#: errno values of a write the file system refused for want of room or access.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO}
#: Words of torch's C++ writer (``torch.save`` to a file name) when a write fails.
_TORCH_WRITER = ("inline_container", "PytorchStreamWriter", "file write failed")
#: Free bytes below which a failed write is taken for a full disk.
_NEARLY_FULL = 1 << 20


def _tmp_name(path: Path) -> Path:
    # A unique name opened with "x" (not mkstemp) so the file gets the usual umask mode.
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (one of another user counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _disk_full(path: Path) -> bool:
    try:
        return shutil.disk_usage(path.parent).free < _NEARLY_FULL
    except OSError:
        return False


def write_error(exc: BaseException, path: str | os.PathLike, *temporaries: Path) -> OSError | None:
    """The error to raise for a failed write of ``path``: one that names ``path``.

    An ``OSError`` with no file name or naming one of ``temporaries`` (the hidden names the
    content was written under), and torch's ``RuntimeError`` from its C++ file writer
    (``inline_container.cc``, which does not say why: a nearly full disk is taken for "no
    space left on device"), become an ``OSError`` with the same ``errno`` whose
    ``filename`` is ``path``. Anything else gives None (raise it unchanged).

    Args:
        exc: What the write raised.
        path: The destination the user named.
        temporaries: Files or folders the write used in its stead.
    """
    path = Path(path)
    hidden = [str(t) for t in temporaries]
    if isinstance(exc, OSError):
        name = None if exc.filename is None else str(exc.filename)
        ours = name is not None and any(name == t or name.startswith(t + os.sep) for t in hidden)
        if not ours and not (name is None and exc.errno in _WRITE_ERRNOS):
            return None
        code = exc.errno or errno.EIO
        return OSError(code, _reason(code, exc.strerror), str(path))
    if isinstance(exc, RuntimeError):
        text = str(exc)
        if "No space left on device" in text or (
            any(word in text for word in _TORCH_WRITER) and _disk_full(path)
        ):
            return OSError(errno.ENOSPC, _reason(errno.ENOSPC), str(path))
        if any(word in text for word in _TORCH_WRITER):
            first = text.strip().splitlines()[0] if text.strip() else "no reason given"
            return OSError(errno.EIO, f"write failed ({first})", str(path))
    return None


def _reason(code: int, strerror: str | None = None) -> str:
    """A lower-case reason: "no space left on device"."""
    text = strerror or os.strerror(code)
    return text[:1].lower() + text[1:]


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of ``path`` left by writers that were killed (``kill -9``).

    The temporaries are ``.NAME.PID.XXXXXXXX.tmp`` beside ``path``; those of processes that
    no longer run are removed, those of running ones are left alone.

    Returns:
        The files removed.
    """
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\.[0-9a-f]{{8}}\.tmp")
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:  # no folder yet: nothing to clear
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match and not pid_alive(int(match.group(1))):
            Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
    return removed


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on a clean exit it replaces ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was; a write
    that fails for want of room raises an ``OSError`` naming ``path`` (:func:`write_error`).

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
    except (OSError, RuntimeError) as exc:
        error = write_error(exc, path, tmp)
        if error is None:
            raise
        raise error from None
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
        except (OSError, RuntimeError) as exc:
            error = write_error(exc, path, tmp)
            if error is None:
                raise
            raise error from None
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
