"""On-disk feature cache: append-only shard files per featurizer config.

Layout under the cache folder (default ``audioar.paths.cache_root() / "features"``)::

    <name>-<config digest>/config.json            the featurizer config (for people)
    <name>-<config digest>/shard-<time>-<pid>-<random>.npz

The folder name holds a SHA-256 digest of the featurizer's canonical JSON config (and of
``CACHE_FORMAT``), so a changed config never sees another config's features. Inside, each
shard holds many clips: their keys, their resolved paths and their features concatenated in
one flat array. A clip's key is a digest of its resolved path, size and ``mtime_ns``, so a
rewritten or touched file is a miss, never a stale hit. One shard per extraction call (not one
file per clip) keeps a cold run of thousands of clips to a handful of writes. Shards are
written to a temporary name in the same folder and renamed (``os.replace``): a reader sees a
whole shard or none. When a folder holds more than ``max_shards`` shards they are merged into
one, keeping only the newest entry per path.
"""

import functools
import hashlib
import json
import logging
import os
import re
import stat
import time
import uuid
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from audioar.atomic import atomic_open, atomic_write

__all__ = ["CACHE_FORMAT", "FeatureCache", "config_digest", "file_key"]

logger = logging.getLogger(__name__)

#: Bumped whenever the feature code or the shard layout changes meaning: old entries go stale.
CACHE_FORMAT = 1

# What reading a damaged or vanished shard can raise.
_UNREADABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)

_SHARD = re.compile(r"^shard-\d+-\d+-[0-9a-f]+\.npz$")


def config_digest(config: Mapping[str, Any]) -> str:
    """SHA-256 hex digest of a featurizer config's canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(
        {"cache_format": CACHE_FORMAT, "config": config}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(text.encode()).hexdigest()


@functools.lru_cache(maxsize=4096)
def _real_folder(folder: str) -> str:
    """``os.path.realpath`` of a folder, remembered (a data set has few folders)."""
    return os.path.realpath(folder)


def file_key(path: str | os.PathLike[str]) -> tuple[str, str] | None:
    """A file's identity: ``(digest of resolved path, size and mtime_ns, resolved path)``.

    The folder's resolution is remembered, so the common case costs one ``lstat``; a file
    that is itself a symbolic link is followed.

    Args:
        path: Any file path.

    Returns:
        ``(key, resolved_path)``, or None when the file cannot be stat'ed (missing).
    """
    folder, name = os.path.split(os.path.abspath(path))
    resolved = os.path.join(_real_folder(folder), name)
    try:
        st = os.lstat(resolved)
        if stat.S_ISLNK(st.st_mode):
            resolved = os.path.realpath(resolved)
            st = os.stat(resolved)
    except OSError:
        return None
    ident = f"{resolved}\0{st.st_size}\0{st.st_mtime_ns}".encode()
    return hashlib.sha1(ident, usedforsecurity=False).hexdigest(), resolved


def _storage_array(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate clips into one flat array; integer codes are stored in the smallest int."""
    data = np.concatenate([a.reshape(-1) for a in arrays]) if arrays else np.zeros(0, np.float32)
    if data.dtype.kind in "iu" and data.size:
        lo, hi = int(data.min()), int(data.max())
        for small in (np.int16, np.int32):
            info = np.iinfo(small)
            if info.min <= lo and hi <= info.max:
                return data.astype(small)
    return data


class FeatureCache:
    """Features of one featurizer config, keyed by file identity (see module doc).

    Args:
        root: The cache folder shared by all configs.
        config: The featurizer's ``to_config()`` dict.
        max_shards: Merge the shards when a write leaves more than this many. Default 8.

    Example:
        >>> cache = FeatureCache(Path("/tmp/features"), fft.to_config())  # doctest: +SKIP
        >>> cache.put([key], [path], [np.zeros(257, np.float32)])  # doctest: +SKIP
        >>> cache.get([key])[key].shape  # doctest: +SKIP
        (257,)
    """

    def __init__(self, root: Path, config: Mapping[str, Any], max_shards: int = 8) -> None:
        digest = config_digest(config)
        self.config = dict(config)
        self.directory = Path(root) / f"{config.get('name', 'features')}-{digest[:20]}"
        self.max_shards = max_shards

    def shards(self) -> list[Path]:
        """Shard files, oldest first (their names start with the write time)."""
        try:
            names = sorted(n for n in os.listdir(self.directory) if _SHARD.match(n))
        except FileNotFoundError:
            return []
        return [self.directory / n for n in names]

    def get(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """Look up clips by key.

        Args:
            keys: Keys from :func:`file_key`.

        Returns:
            ``{key: features}`` for the keys found (integer features as int64).
        """
        wanted = set(keys)
        found: dict[str, tuple[int, int]] = {}  # key -> (shard number, row); newest wins
        shards = []
        try:
            for path in self.shards():
                try:
                    shard = np.load(path, allow_pickle=False)
                except _UNREADABLE as exc:  # removed by a merge meanwhile, or damaged
                    logger.warning("skipping unreadable cache shard %s: %s", path, exc)
                    continue
                shards.append(shard)
                try:
                    shard_keys = shard["keys"].tolist()
                except _UNREADABLE as exc:
                    logger.warning("skipping unreadable cache shard %s: %s", path, exc)
                    continue
                for row, key in enumerate(shard_keys):
                    if key in wanted:
                        found[key] = (len(shards) - 1, row)
            rows_by_shard: dict[int, list[tuple[str, int]]] = {}
            for key, (number, row) in found.items():
                rows_by_shard.setdefault(number, []).append((key, row))
            result: dict[str, np.ndarray] = {}
            for number, rows in rows_by_shard.items():
                try:
                    data, offsets, shapes = (
                        shards[number][n] for n in ("data", "offsets", "shapes")
                    )
                except _UNREADABLE as exc:
                    logger.warning("skipping unreadable cache shard: %s", exc)
                    continue
                if data.dtype.kind in "iu":
                    data = data.astype(np.int64)
                for key, row in rows:
                    result[key] = data[offsets[row] : offsets[row + 1]].reshape(shapes[row])
        finally:
            for shard in shards:
                shard.close()
        return result

    def put(self, keys: Sequence[str], paths: Sequence[str], arrays: Sequence[np.ndarray]) -> Path:
        """Write one shard holding these clips (atomically), then merge if there are many.

        Args:
            keys: Keys from :func:`file_key`, one per clip.
            paths: The resolved paths, one per clip (used when merging).
            arrays: The features, one per clip, all of one dtype and number of axes.

        Returns:
            The shard file written.
        """
        path = self._write_shard(keys, paths, arrays)
        if len(self.shards()) > self.max_shards:
            self.compact()
        return path

    def compact(self) -> None:
        """Merge all shards into one, keeping the newest entry per resolved path."""
        shards = self.shards()
        latest: dict[str, tuple[str, np.ndarray]] = {}
        for path in shards:
            try:
                with np.load(path, allow_pickle=False) as shard:
                    keys, paths = shard["keys"].tolist(), shard["paths"].tolist()
                    data, offsets, shapes = shard["data"], shard["offsets"], shard["shapes"]
            except _UNREADABLE as exc:
                logger.warning("dropping unreadable cache shard %s: %s", path, exc)
                continue
            for row, (key, clip_path) in enumerate(zip(keys, paths, strict=True)):
                clip = data[offsets[row] : offsets[row + 1]].reshape(shapes[row])
                latest[clip_path] = (key, clip)
        if latest:
            self._write_shard(
                [k for k, _ in latest.values()], list(latest), [a for _, a in latest.values()]
            )
        for path in shards:
            path.unlink(missing_ok=True)
        logger.info("merged %d cache shards in %s", len(shards), self.directory)

    def clear(self) -> None:
        """Remove every shard of this config."""
        for path in self.shards():
            path.unlink(missing_ok=True)

    def _write_shard(
        self, keys: Sequence[str], paths: Sequence[str], arrays: Sequence[np.ndarray]
    ) -> Path:
        if not len(keys) == len(paths) == len(arrays):
            raise ValueError("keys, paths and arrays must have the same length")
        self.directory.mkdir(parents=True, exist_ok=True)
        config_file = self.directory / "config.json"
        if not config_file.exists():
            text = json.dumps(self.config, indent=2, sort_keys=True).encode()
            atomic_write(config_file, text)
        sizes = np.array([a.size for a in arrays], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        ndim = arrays[0].ndim if arrays else 0
        shapes = np.array([a.shape for a in arrays], dtype=np.int64).reshape(len(arrays), ndim)
        content = {
            "keys": np.array(keys, dtype="U40"),
            "paths": np.array(paths, dtype=str),
            "offsets": offsets,
            "shapes": shapes,
            "data": _storage_array(arrays),
        }
        name = f"shard-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:12]}.npz"
        target = self.directory / name
        with atomic_open(target) as handle:
            np.savez(handle, **content)
        logger.debug("wrote %d clips to %s", len(keys), target)
        return target
