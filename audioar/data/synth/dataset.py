"""Writing the data set: splits, README, completion marker, the cached default set.

``synthesize_dataset`` writes clips in the Speech Commands layout
(``OUT/<word>/<speaker>_nohash_<take>.wav`` plus ``validation_list.txt`` and
``testing_list.txt`` holding whole speakers), mono int16 WAV; ``default_dataset`` makes the
default one once in the cache folder. Either appears whole or not at all.

References:
    Warden, "Speech Commands: A Dataset for Limited-Vocabulary Speech Recognition",
    arXiv:1804.03209, 2018.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import wave
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from audioar.atomic import replace_dir, temp_sibling
from audioar.data.synth.engines import _dry_clips, resolve_engine
from audioar.data.synth.phones import LEXICON
from audioar.data.synth.readme import _readme
from audioar.data.synth.render import CLIP_SECONDS, SAMPLE_RATE, SAMPLE_RATES, _render_clip
from audioar.data.synth.voices import make_speaker
from audioar.errors import ConfigError, DataError
from audioar.paths import cache_root

__all__ = [
    "DEFAULT_WORDS",
    "DEFAULT_SPEAKERS",
    "DEFAULT_TAKES",
    "MARKER_FILE",
    "synthesize_dataset",
    "default_dataset",
    "default_dataset_name",
    "read_metadata",
]

logger = logging.getLogger(__name__)

DEFAULT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DEFAULT_SPEAKERS = 42
DEFAULT_TAKES = 3
MARKER_FILE = ".audioar-synth.json"  # written last; its presence marks a complete data set
_FORMAT_VERSION = 2


def _write_wav(path: Path, clip: np.ndarray, sample_rate: int) -> None:
    """A canonical 44-byte-header PCM WAV (byte-identical for identical samples)."""
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sample_rate)
        handle.writeframes(clip.astype("<i2").tobytes())


def _split_speakers(ids: list[str]) -> tuple[list[str], list[str]]:
    """Whole speakers for validation and test (one in six each), ranked by a hash of the id."""
    count = max(1, round(len(ids) / 6))
    ranked = sorted(ids, key=lambda s: hashlib.sha1(f"split-{s}".encode()).hexdigest())
    return ranked[count : 2 * count], ranked[:count]


def _generate(
    folder: Path,
    *,
    seed: int,
    engine: str,
    speakers: int,
    takes: int,
    words: Sequence[str],
    sample_rate: int,
) -> dict:
    """Write the whole data set into the (empty, existing) ``folder``; return its metadata."""
    from audioar import __version__

    start = time.perf_counter()
    people = [make_speaker(seed, i) for i in range(speakers)]
    jobs = [(i, w, t) for w in words for i in range(speakers) for t in range(takes)]
    dry = _dry_clips(engine, jobs, people, seed)
    validation, testing = _split_speakers([p.id for p in people])
    lists: dict[str, list[str]] = {"validation": [], "testing": []}
    for word in words:
        (folder / word).mkdir()
    for (index, word, take), (audio, rng) in zip(jobs, dry, strict=True):
        name = f"{word}/{people[index].id}_nohash_{take}.wav"
        clip = _render_clip(audio, people[index], rng, sample_rate)
        _write_wav(folder / name, clip, sample_rate)
        if people[index].id in validation:
            lists["validation"].append(name)
        elif people[index].id in testing:
            lists["testing"].append(name)
    (folder / "validation_list.txt").write_text("".join(f"{n}\n" for n in lists["validation"]))
    (folder / "testing_list.txt").write_text("".join(f"{n}\n" for n in lists["testing"]))
    meta = {
        "format": "audioar-synth",
        "version": _FORMAT_VERSION,
        "audioar": __version__,
        "engine": engine,
        "seed": seed,
        "words": list(words),
        "takes": takes,
        "speakers": [p.id for p in people],
        "validation_speakers": validation,
        "testing_speakers": testing,
        "clips": len(jobs),
        "sample_rate": sample_rate,
        "clip_seconds": CLIP_SECONDS,
    }
    (folder / "README.md").write_text(_readme(meta))
    (folder / MARKER_FILE).write_text(json.dumps(meta, indent=2) + "\n")  # last: complete
    logger.info(
        "synthesised %d clips with %s in %.1f s", len(jobs), engine, time.perf_counter() - start
    )
    return meta


def _check_options(
    seed: int, speakers: int, takes: int, words: Sequence[str], sample_rate: int
) -> tuple[str, ...]:
    """Check the options of a data set; return the words, normalised (lower case, a tuple)."""
    if sample_rate not in SAMPLE_RATES:
        raise ConfigError(
            f"sample_rate must be one of {', '.join(map(str, SAMPLE_RATES))}, got {sample_rate}"
        )
    if isinstance(words, str):
        words = [w for w in words.split(",") if w]
    words = tuple(w.strip().lower() for w in words)
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    if speakers < 3:
        raise ConfigError(f"speakers must be >= 3 (train, validation and test), got {speakers}")
    if takes < 1:
        raise ConfigError(f"takes must be >= 1, got {takes}")
    if not words or len(set(words)) != len(words):
        raise ConfigError(f"words must be distinct and not empty, got {list(words)}")
    unknown = [w for w in words if w not in LEXICON]
    if unknown:
        raise ConfigError(f"no pronunciation for {', '.join(unknown)}; known: {', '.join(LEXICON)}")
    return words


def read_metadata(folder: str | os.PathLike) -> dict:
    """The metadata a synthetic data set folder was made with (its ``MARKER_FILE``).

    Args:
        folder: A folder written by ``synthesize_dataset`` or ``default_dataset``.

    Returns:
        Keys ``format, version, audioar, engine, seed, words, takes, speakers,
        validation_speakers, testing_speakers, clips, sample_rate, clip_seconds``
        (``clip_seconds`` from version 2 on).

    Raises:
        DataError: The folder is not a (complete) synthetic data set.
    """
    path = Path(folder) / MARKER_FILE
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a synthetic data set marker ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != "audioar-synth":
        raise DataError(f"{path}: not a synthetic data set marker")
    return meta


def _is_synth_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a complete synthetic data set (its marker file)."""
    return (folder / MARKER_FILE).is_file()


def synthesize_dataset(
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    engine: str = "auto",
    speakers: int = DEFAULT_SPEAKERS,
    takes: int = DEFAULT_TAKES,
    words: Sequence[str] = DEFAULT_WORDS,
    sample_rate: int = SAMPLE_RATE,
    force: bool = False,
) -> Path:
    """Write the synthetic spoken-word data set to ``out_dir`` (offline, deterministic).

    The folder appears whole or not at all: everything is written into a temporary sibling
    folder that is then renamed to ``out_dir``.

    Args:
        out_dir: Folder to create; must be absent or empty unless ``force``.
        seed: Seed of every random draw; default 0. Same seed, same bytes.
        engine: ``"auto"`` (eSpeak NG when it works, else formant), ``"espeak"`` or
            ``"formant"``; default ``"auto"``.
        speakers: Number of speakers (>= 3); default 42. One in six (at least one) goes
            to validation, as many to test: by default 28 train, 7 validation, 7 test.
        takes: Takes per speaker and word; default 3 (so 84 training, 21 validation and
            21 test clips per word by default).
        words: Class names, keys of ``LEXICON``; default the ten digits.
        sample_rate: Rate of the written clips, 8000 or 16000 Hz; default 8000 (clips are
            ``CLIP_SECONDS`` = 0.8 s long either way: 12,844 bytes at 8 kHz).
        force: Replace an existing data set made by this function; default False.

    Returns:
        ``out_dir`` as a Path.

    Raises:
        ConfigError: Bad options or an unavailable engine.
        DataError: ``out_dir`` is a file, or a non-empty folder (without ``force``, or not a
            synthetic data set).

    Example:
        >>> root = synthesize_dataset("data/synth", seed=0, engine="formant")
        >>> sorted(p.name for p in root.iterdir())[:3]
        ['.audioar-synth.json', 'README.md', 'eight']
    """
    out = Path(out_dir).expanduser()
    words = _check_options(seed, speakers, takes, words, sample_rate)
    name = resolve_engine(engine)
    _write_whole(
        out,
        force,
        lambda tmp: _generate(
            tmp,
            seed=seed,
            engine=name,
            speakers=speakers,
            takes=takes,
            words=words,
            sample_rate=sample_rate,
        ),
    )
    return out


def _write_whole(out: Path, force: bool, generate: Callable[[Path], None]) -> None:
    """Write a synthetic data-set folder whole or not at all: ``generate`` fills a temporary
    sibling, which then replaces ``out``.

    Raises:
        DataError: ``out`` is a file, or a non-empty folder (without ``force``, or not a
            synthetic data set: no ``MARKER_FILE``).
    """
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise DataError(f"{out}: folder exists and is not empty (use --force to replace it)")
        if not _is_synth_folder(out):
            raise DataError(
                f"{out}: refusing to replace a folder that is not a synthetic data set "
                f"({MARKER_FILE} missing)"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(out, "tmp")
    try:
        generate(tmp)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def default_dataset_name(engine: str = "auto", seed: int = 0) -> str:
    """Cache folder name of the default data set, e.g. ``synth-v2-formant-seed0``."""
    return f"synth-v{_FORMAT_VERSION}-{resolve_engine(engine)}-seed{seed}"


def default_dataset(*, engine: str = "auto") -> Path:
    """The default data set (seed 0, default options), generated on first use.

    Lives in ``audioar.paths.cache_root() / "synth-v2-<engine>-seed0"`` (version 2: 42
    speakers x 3 takes x 10 words, 0.8 s at 8 kHz, about 16 MB; version 1 folders, 16
    speakers at 16 kHz, are not reused). It is generated
    into a temporary sibling folder and renamed into place, so a partial folder is never
    returned; later calls (and concurrent ones that lose the race) reuse it.

    Args:
        engine: As in ``synthesize_dataset``; default ``"auto"``.

    Returns:
        The data set folder.
    """
    name = resolve_engine(engine)
    target = cache_root() / default_dataset_name(name)
    if _is_synth_folder(target):
        return target
    _write_once(
        target,
        lambda tmp: _generate(
            tmp,
            seed=0,
            engine=name,
            speakers=DEFAULT_SPEAKERS,
            takes=DEFAULT_TAKES,
            words=DEFAULT_WORDS,
            sample_rate=SAMPLE_RATE,
        ),
    )
    logger.info("default data set ready at %s", target)
    return target


def _write_once(target: Path, generate: Callable[[Path], None]) -> None:
    """Generate a cached data set into a temporary sibling and rename it into place; a
    concurrent process that got there first wins, a stale incomplete folder is replaced."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(target, "tmp")
    try:
        generate(tmp)
        try:
            os.rename(tmp, target)  # atomic; fails if another process got there first
        except OSError:
            if not _is_synth_folder(target):  # a stale, incomplete folder: replace it
                replace_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
