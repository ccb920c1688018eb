"""Typed errors raised by the library; the CLI turns each into one clear line."""

__all__ = [
    "AudioarError",
    "AudioError",
    "DataError",
    "FeatureError",
    "ConfigError",
    "TrainingError",
    "RunFormatError",
]


class AudioarError(Exception):
    """Base class of every error audioar raises on purpose (bad input, bad files)."""


class AudioError(AudioarError):
    """An audio file cannot be used: missing, not audio, empty, non-finite, undecodable."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class DataError(AudioarError):
    """A data set cannot be used: empty folder, unknown class, bad manifest, bad split."""


class FeatureError(AudioarError):
    """Features cannot be computed or are unusable (e.g. NaN features for a clip)."""


class ConfigError(AudioarError):
    """A recipe, override or option value is invalid."""


class TrainingError(AudioarError):
    """Training cannot go on (e.g. a non-finite loss)."""


class RunFormatError(AudioarError):
    """A run directory is missing, of another format version, or its files are corrupted."""
