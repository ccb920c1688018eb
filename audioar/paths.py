"""Where audioar keeps its caches (generated demo data, feature cache)."""

import os
from pathlib import Path

__all__ = ["cache_root"]


def cache_root() -> Path:
    """The cache folder: ``$AUDIOAR_CACHE_DIR``, else ``$XDG_CACHE_HOME/audioar``,
    else ``~/.cache/audioar``. Not created here."""
    explicit = os.environ.get("AUDIOAR_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "audioar"
