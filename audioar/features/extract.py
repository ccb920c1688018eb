"""Featurize many clips: load, batch, featurize, and keep the results in the on-disk cache.

Windowed featurizers (:class:`~audioar.features.windows.Windowed`) stream each file instead
(:func:`featurize_windows`): its windows are read and featurized a block at a time, so a long
recording never sits in memory whole.
"""

import itertools
import logging
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from audioar.data.io import iter_windows, load_audio, stream_audio
from audioar.errors import AudioError, ConfigError, FeatureError
from audioar.features.base import Featurizer
from audioar.features.cache import FeatureCache, file_key
from audioar.features.windows import Windowed
from audioar.paths import cache_root

__all__ = [
    "ExtractResult",
    "default_cache_dir",
    "extract",
    "iter_extract",
    "featurize_waveforms",
    "featurize_windows",
    "length_blocks",
    "BLOCK_SAMPLES",
    "CACHE_WRITE_BYTES",
    "DECODE_SAMPLES",
    "DECODE_JOB_FILES",
    "DECODE_JOBS_AHEAD",
]

logger = logging.getLogger(__name__)

ON_ERROR = ("raise", "skip")
#: Most windows of a streamed file featurized in one batch: the batch's spectra are what
#: a long recording adds to memory (32 one-second windows: a few MB).
WINDOWS_PER_BLOCK = 32
#: Most padded samples (clips x padded width) featurized in one call by
#: :func:`featurize_waveforms`: the featurizer's intermediates scale with it (some 50 bytes a
#: sample for the default segment spectra: ~13 MB), whatever the mix of clip lengths. Blocks
#: this small also stay in the cache: FSDD's 3,000 clips featurized in 0.2-0.25 s with 2**16
#: to 2**20 samples a block, 0.66 s with 2**21, 0.9 s in one block per 256 clips (2 cores).
BLOCK_SAMPLES = 1 << 18


@dataclass
class ExtractResult:
    """What :func:`extract` returns.

    Attributes:
        paths: The paths that have features, in input order (skipped ones left out).
        features: ``(clips, *feature_shape)`` tensor when the featurizer has a fixed
            feature shape, else a list with one tensor per clip.
        errors: ``{path: one-line reason}`` for the clips skipped (``on_error="skip"``).
        cache_hits: Clips read from the cache.
        computed: Clips featurized in this call.
        positions: For each of ``paths``, its index in the input paths (of the batch, for
            :func:`iter_extract`): which rows a skipped clip left out.
    """

    paths: list[Path]
    features: Tensor | list[Tensor]
    errors: dict[Path, str] = field(default_factory=dict)
    cache_hits: int = 0
    computed: int = 0
    positions: list[int] = field(default_factory=list)


def default_cache_dir() -> Path:
    """``audioar.paths.cache_root() / "features"``."""
    return cache_root() / "features"


def _device_of(featurizer: Featurizer) -> torch.device:
    for tensor in featurizer.buffers():
        return tensor.device
    return torch.device("cpu")


def length_blocks(
    lengths: Sequence[int], width: int | None = None, max_samples: int = BLOCK_SAMPLES
) -> list[list[int]]:
    """Clips grouped for :func:`featurize_waveforms`: similar lengths, bounded padded size.

    Clips are taken shortest first; a block grows while its rows times its padded width (its
    longest clip, or ``width`` for a featurizer with a fixed window) stay within
    ``max_samples``. A clip longer than that is a block of its own. So the padded batch, and
    the featurizer's intermediates that scale with it, never exceed what ``max_samples``
    (or the longest clip) needs, whatever the mix of lengths.

    Args:
        lengths: Samples per clip.
        width: Every block's padded width (a fixed window), or None: its longest clip.
        max_samples: Most padded samples per block (rows x width). Default
            :data:`BLOCK_SAMPLES`.

    Returns:
        Lists of clip indices: every index once, each list in increasing length.

    Example:
        >>> length_blocks([4000, 480000, 3000, 5000], max_samples=20000)
        [[2, 0, 3], [1]]
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    blocks: list[list[int]] = []
    block: list[int] = []
    for i in order:
        longest = width if width is not None else lengths[i]  # shortest first: i is the longest
        if block and (len(block) + 1) * longest > max_samples:
            blocks.append(block)
            block = []
        block.append(i)
    if block:
        blocks.append(block)
    return blocks


def featurize_waveforms(
    featurizer: Featurizer,
    waveforms: Sequence[np.ndarray],
    *,
    max_samples: int = BLOCK_SAMPLES,
) -> list[Tensor]:
    """Featurize clips of different lengths in a few batched calls (fast path of ``extract``).

    Clips are grouped by :func:`length_blocks` (similar lengths, at most ``max_samples``
    padded samples a block, so memory does not depend on the mix of lengths: one long clip
    among short ones is featurized with the few clips of its own length, not padded onto
    all of them); each block is zero-padded at the end into one ``(batch, time)`` array (the
    featurizer's window when it has ``seconds``, else the block's longest clip); the
    featurizer gets the real lengths when it uses them, and variable-length outputs are
    trimmed to each clip's own ``output_shape``. The plain reference is
    ``featurizer(torch.from_numpy(w))`` per clip.

    Args:
        featurizer: Any featurizer.
        waveforms: 1-D float32 arrays at ``featurizer.sample_rate``, at least one sample each.
        max_samples: Most padded samples featurized in one call. Default
            :data:`BLOCK_SAMPLES`.

    Returns:
        One feature tensor per clip, on the CPU, in input order.
    """
    if not waveforms:
        return []
    fixed = featurizer.num_samples
    lengths = [len(w) if fixed is None else min(len(w), fixed) for w in waveforms]
    device = _device_of(featurizer)
    fixed_size = featurizer.fixed_size  # a property that asks the featurizer: once
    clips: list[Tensor | None] = [None] * len(waveforms)
    for block in length_blocks(lengths, fixed, max_samples):
        width = fixed if fixed is not None else lengths[block[-1]]
        batch = np.zeros((len(block), width), dtype=np.float32)
        for row, i in enumerate(block):
            batch[row, : lengths[i]] = waveforms[i][: lengths[i]]
        x = torch.from_numpy(batch).to(device)
        with torch.inference_mode():
            if featurizer.uses_lengths:
                real = torch.tensor([lengths[i] for i in block], device=device)
                out = featurizer(x, lengths=real)
            else:
                out = featurizer(x)
        out = out.cpu()
        for row, i in enumerate(block):
            if fixed_size:
                clips[i] = out[row]
            else:
                shape = featurizer.output_shape(len(waveforms[i]))
                clips[i] = out[row][tuple(slice(0, s) for s in shape)]
    return clips  # type: ignore[return-value]


def featurize_windows(
    windowed: Windowed, path: str | os.PathLike[str], *, windows_per_block: int = 64
) -> Tensor:
    """Features of one file's windows, streamed: memory flat in the recording's length.

    The file is read with :func:`audioar.data.io.stream_audio` at ``windowed.sample_rate`` and cut
    by :func:`audioar.data.io.iter_windows` into ``(k, window)`` blocks of consecutive windows;
    each block goes through ``windowed.inner`` (with the windows' real lengths when it uses
    them). Only one block of windows (and one block of samples) is in memory at a time,
    besides the features. The result equals ``windowed(torch.from_numpy(load_audio(path,
    windowed.sample_rate)[0]))`` (to float rounding: the inner featurizer sees other batches).

    Args:
        windowed: The windowed featurizer; it runs on the device of its buffers.
        path: An audio file.
        windows_per_block: Windows featurized per batch. Default 64.

    Returns:
        ``(windows, *inner_shape)`` features on the CPU, ``windows = windowed.count(n)`` for a
        recording of ``n`` samples at ``windowed.sample_rate``.

    Raises:
        AudioError: The file cannot be read (see :func:`audioar.data.io.stream_audio`).
        ConfigError: ``windows_per_block`` is not a positive integer.
    """
    window, hop = windowed.window_samples, windowed.hop_samples
    # Read about one block of windows' worth of new samples at a time (at the file's rate).
    blocks = stream_audio(
        path, windowed.sample_rate, block_samples=max(4096, windows_per_block * hop)
    )
    device = _device_of(windowed)
    inner = windowed.inner
    parts = []
    with torch.inference_mode():
        for windows, lengths in iter_windows(
            blocks, window, hop, windows_per_block=windows_per_block
        ):
            x = torch.from_numpy(windows).to(device)
            if inner.uses_lengths:
                out = inner(x, lengths=torch.from_numpy(lengths).to(device))
            else:
                out = inner(x)
            parts.append(out.cpu())
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _decoded(
    paths: Sequence[Path],
    order: Sequence[int],
    rate: int,
    pool: ThreadPoolExecutor | None,
    budget: int,
) -> Iterator[np.ndarray | AudioError]:
    """The audio of ``paths[i]`` (or its error) for each ``i`` in ``order``, in order.

    Without a pool each file is read when asked for. With one, files are read in jobs of
    :data:`DECODE_JOB_FILES` ahead of the caller, as many jobs as keep the audio decoded
    ahead under ``budget`` samples (judged by the largest job so far; at least one job,
    at most :data:`DECODE_JOBS_AHEAD`): short clips are read far ahead, long ones a job
    at a time, so memory does not grow with the clips' length.
    """
    if pool is None:
        for i in order:
            yield _load(paths[i], rate)
        return

    def read(part: Sequence[int]) -> list[np.ndarray | AudioError]:
        return [_load(paths[i], rate) for i in part]

    jobs = [order[s : s + DECODE_JOB_FILES] for s in range(0, len(order), DECODE_JOB_FILES)]
    flight: deque[Future[list[np.ndarray | AudioError]]] = deque()
    submitted, largest = 0, 0
    while submitted < len(jobs) or flight:
        limit = 1 if largest == 0 else min(DECODE_JOBS_AHEAD, max(1, budget // largest))
        while submitted < len(jobs) and len(flight) < limit:
            flight.append(pool.submit(read, jobs[submitted]))
            submitted += 1
        items = flight.popleft().result()
        largest = max(largest, sum(len(x) for x in items if not isinstance(x, AudioError)))
        yield from items


def _load(path: Path, sample_rate: int) -> np.ndarray | AudioError:
    try:
        waveform, _ = load_audio(path, sample_rate=sample_rate)
    except AudioError as exc:
        return exc
    return waveform


#: New features :func:`iter_extract` holds before writing them to the cache as one shard
#: (and whatever is left at its end): a long job writes few shards, and memory stays bounded.
CACHE_WRITE_BYTES = 64 << 20
#: Most decoded samples held at once (64 MB of float32): a batch of long clips is featurized
#: in parts, and background decoders (``num_workers``) read ahead only this much, so memory
#: does not grow with ``batch_size`` times the clips' length.
DECODE_SAMPLES = 1 << 24
#: Files per background decoding job, and most jobs decoded ahead of the featurizer.
DECODE_JOB_FILES = 32
DECODE_JOBS_AHEAD = 32


def extract(
    featurizer: Featurizer,
    paths: Sequence[str | os.PathLike[str]],
    *,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    batch_size: int = 256,
    on_error: str = "raise",
    num_workers: int = 0,
) -> ExtractResult:
    """Features of many audio files, in input order, through the on-disk cache.

    Each file is read with ``load_audio(path, sample_rate=featurizer.sample_rate)`` (so it is
    resampled to the featurizer's rate), featurized in batches, and the new features are
    written to the cache (one shard per call, see :mod:`audioar.features.cache`). Clips whose
    file and featurizer config are unchanged since they were cached are read back instead.
    :func:`iter_extract` does the same a batch at a time.

    Args:
        featurizer: The featurizer; it runs on the device of its buffers (CPU by default).
        paths: Audio files.
        cache_dir: Cache folder. Default None: ``audioar.paths.cache_root() / "features"``.
        use_cache: Read and write the cache. Default True; False bypasses both.
        batch_size: Clips read per chunk, default 256; each chunk is featurized in blocks
            of similar lengths (:func:`featurize_waveforms`, at most
            :data:`BLOCK_SAMPLES` padded samples a call). With a ``Windowed``
            featurizer: windows featurized per batch, at most :data:`WINDOWS_PER_BLOCK`
            (each file is streamed, see :func:`featurize_windows`).
        on_error: ``"raise"`` (default): the first bad clip raises. ``"skip"``: bad clips
            (unreadable audio, or non-finite features) are left out and listed in
            ``errors``.
        num_workers: Background threads decoding audio ahead of the featurizer, up to
            :data:`DECODE_SAMPLES` samples ahead (libsndfile releases the GIL). Default 0:
            decode in the calling thread; on the shared 2-core test machine 1, 2 or 4
            threads gave no measurable gain to extraction alone (``benchmarks/featurize.py``);
            they may on a machine with idle cores, or for a caller with work of its own per
            batch (see :func:`iter_extract`). Not used with a ``Windowed`` featurizer (files
            are streamed in the calling thread).

    Returns:
        An :class:`ExtractResult`.

    Raises:
        AudioError: A file cannot be read (``on_error="raise"``).
        FeatureError: A clip's features are not finite (``on_error="raise"``).
        ConfigError: Bad ``on_error``, ``batch_size`` or ``num_workers``.

    Example:
        >>> result = extract(WholeWindowFFT(), sorted(Path("recordings").glob("*.wav")))
        >>> result.features.shape  # doctest: +SKIP
        torch.Size([3000, 257])
    """
    parts = list(
        iter_extract(
            featurizer,
            paths,
            cache_dir=cache_dir,
            use_cache=use_cache,
            batch_size=batch_size,
            on_error=on_error,
            num_workers=num_workers,
            cache_write_bytes=None,
        )
    )
    if len(parts) == 1:
        return parts[0]
    if featurizer.fixed_size:
        tensors = [part.features for part in parts]
        features: Tensor | list[Tensor] = (
            torch.cat(tensors)  # type: ignore[arg-type]
            if tensors
            else torch.zeros((0, *featurizer.feature_shape), dtype=featurizer.dtype)
        )
    else:
        features = [clip for part in parts for clip in part.features]
    return ExtractResult(
        paths=[p for part in parts for p in part.paths],
        features=features,
        errors={k: v for part in parts for k, v in part.errors.items()},
        cache_hits=sum(part.cache_hits for part in parts),
        computed=sum(part.computed for part in parts),
        positions=[k * batch_size + i for k, part in enumerate(parts) for i in part.positions],
    )


def iter_extract(
    featurizer: Featurizer,
    paths: Sequence[str | os.PathLike[str]],
    *,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    batch_size: int = 256,
    on_error: str = "raise",
    num_workers: int = 0,
    cache_write_bytes: int | None = CACHE_WRITE_BYTES,
) -> Iterator[ExtractResult]:
    """:func:`extract` a batch at a time: one :class:`ExtractResult` per ``batch_size``
    paths, in order (its ``paths``: the batch's clips that have features).

    The cache is looked up once for every path. With ``num_workers`` the next files are
    decoded in the background while this batch is featurized *and* while the caller works
    on it (:func:`audioar.pipeline.score_files.score_files` runs this generator in a thread
    of its own and scores in the calling one: decoding, featurizing and the model overlap).
    Memory holds at most about :data:`DECODE_SAMPLES` of decoded audio ahead and one such
    part being featurized, the batch's features and, until written to the cache, at most
    ``cache_write_bytes`` of new features.

    Args:
        featurizer: As :func:`extract`.
        paths: As :func:`extract`.
        cache_dir: As :func:`extract`.
        use_cache: As :func:`extract`.
        batch_size: Paths per yielded batch (and per chunk read), default 256.
        on_error: As :func:`extract`.
        num_workers: As :func:`extract`.
        cache_write_bytes: Write the new features to the cache as a shard once they take
            this many bytes (and the rest at the end, also when the caller stops early).
            Default :data:`CACHE_WRITE_BYTES`; None: one shard at the end.

    Yields:
        :class:`ExtractResult` per batch; ``features`` as :func:`extract` gives them.

    Raises:
        AudioError: A file cannot be read (``on_error="raise"``).
        FeatureError: A clip's features are not finite (``on_error="raise"``).
        ConfigError: Bad ``on_error``, ``batch_size`` or ``num_workers``.
    """
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    if batch_size < 1 or num_workers < 0:
        raise ConfigError(
            f"batch_size must be >= 1 and num_workers >= 0, got {batch_size}, {num_workers}"
        )
    paths = [p if isinstance(p, Path) else Path(p) for p in paths]
    features: list[Tensor | np.ndarray | None] = [None] * len(paths)
    identities = [file_key(p) if use_cache else None for p in paths]
    cache = None
    if use_cache:
        cache = FeatureCache(
            cache_dir if cache_dir is not None else default_cache_dir(), featurizer.to_config()
        )
        hits = cache.get([ident[0] for ident in identities if ident is not None])
        for i, ident in enumerate(identities):
            if ident is not None and ident[0] in hits:
                features[i] = hits[ident[0]]
    cached = [f is not None for f in features]
    totals = {"hits": sum(cached), "computed": 0, "skipped": 0}
    errors: dict[Path, str] = {}
    new_keys: list[str] = []
    new_paths: list[str] = []
    new_arrays: list[np.ndarray] = []
    new_bytes = 0  # of new_arrays

    def fail(i: int, error: AudioError | FeatureError) -> None:
        if on_error == "raise":
            raise error
        errors[paths[i]] = str(error)
        totals["skipped"] += 1
        logger.warning("skipping %s", error)

    def keep(i: int, clip: Tensor) -> None:
        nonlocal new_bytes
        array = clip.numpy()
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            fail(i, FeatureError(f"{paths[i]}: features are not finite (NaN or inf)"))
            return
        features[i] = array
        totals["computed"] += 1
        if cache is not None and identities[i] is not None:
            new_keys.append(identities[i][0])
            new_paths.append(identities[i][1])
            new_arrays.append(array)
            new_bytes += array.nbytes

    def write_cache(at_least: int) -> None:
        nonlocal new_bytes
        if cache is None or not new_keys or new_bytes < at_least:
            return
        cache.put(new_keys, new_paths, new_arrays)
        new_keys.clear()
        new_paths.clear()
        new_arrays.clear()
        new_bytes = 0

    def featurize_and_keep(good: list[tuple[int, np.ndarray]]) -> None:
        clips = featurize_waveforms(featurizer, [w for _, w in good])
        for (i, _), clip in zip(good, clips, strict=True):
            keep(i, clip)

    streamed = isinstance(featurizer, Windowed)
    rate = featurizer.sample_rate
    batches = [range(s, min(s + batch_size, len(paths))) for s in range(0, len(paths), batch_size)]
    todo = [[i for i in batch if not cached[i]] for batch in batches]
    # With num_workers, decoding runs in background threads ahead of the featurizer (and of
    # the caller), so on two cores libsndfile (which releases the GIL) and torch work at once.
    pool = ThreadPoolExecutor(num_workers) if num_workers > 0 and not streamed else None
    source = _decoded(paths, [i for part in todo for i in part], rate, pool, DECODE_SAMPLES)
    try:
        for number, batch in enumerate(batches):
            errors.clear()
            computed_before = totals["computed"]
            if streamed:
                for i in todo[number]:
                    try:
                        clip = featurize_windows(
                            featurizer,  # type: ignore[arg-type]
                            paths[i],
                            windows_per_block=min(batch_size, WINDOWS_PER_BLOCK),
                        )
                    except AudioError as error:
                        fail(i, error)
                        continue
                    keep(i, clip)
            else:
                loaded = itertools.islice(source, len(todo[number]))
                good: list[tuple[int, np.ndarray]] = []
                held = 0
                for i, item in zip(todo[number], loaded, strict=True):
                    if isinstance(item, AudioError):
                        fail(i, item)
                        continue
                    good.append((i, item))
                    held += len(item)
                    if held >= DECODE_SAMPLES:  # featurize what is decoded, then go on
                        featurize_and_keep(good)
                        good, held = [], 0
                featurize_and_keep(good)
            if cache_write_bytes is not None:
                write_cache(cache_write_bytes)
            hits = sum(cached[i] for i in batch)
            result = _assemble(
                featurizer,
                [paths[i] for i in batch],
                [features[i] for i in batch],
                dict(errors),
                hits,
                totals["computed"] - computed_before,
            )
            for i in batch:
                features[i] = None  # given away: memory holds the batches in flight only
            yield result
    finally:
        source.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        write_cache(0)
    logger.info(
        "features: %d from cache, %d computed%s, %d skipped",
        totals["hits"],
        totals["computed"],
        " (streamed)" if streamed else "",
        totals["skipped"],
    )


def _assemble(
    featurizer: Featurizer,
    paths: list[Path],
    features: list[Tensor | np.ndarray | None],
    errors: dict[Path, str],
    cache_hits: int,
    computed: int,
) -> ExtractResult:
    positions = [k for k, f in enumerate(features) if f is not None]
    kept = [(paths[k], features[k]) for k in positions]
    arrays = [f.numpy() if isinstance(f, Tensor) else f for _, f in kept]
    if featurizer.fixed_size:
        if arrays:
            stacked = torch.from_numpy(np.stack(arrays))
        else:
            stacked = torch.zeros((0, *featurizer.feature_shape), dtype=featurizer.dtype)
        out: Tensor | list[Tensor] = stacked
    else:
        out = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
    return ExtractResult(
        paths=[p for p, _ in kept],
        features=out,
        errors=errors,
        cache_hits=cache_hits,
        computed=computed,
        positions=positions,
    )
