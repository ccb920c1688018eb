"""Where the word is and how fast it is said: trim quiet edges, resample frames to one length.

Two corpora of the same words differ in how much silence surrounds each word and in how
fast it is spoken (FSDD's trimmed 0.4 s takes against 0.7 s words in the synthetic set). A
model fitted on one then judges the other by its timing, not its word. Normalising the
timing of every clip removes that:

* :func:`active_range` finds the frames within ``top_db`` of the clip's loudest frame (the
  first to the last such frame; quiet frames inside the word are kept), like
  ``librosa.effects.trim``;
* :func:`resample_frames` resamples a clip's frames linearly to a fixed count, keeping its
  first and last frames (a tempo change of the whole clip).

:class:`audioar.features.STFT` applies both (``trim_db``, ``stretch_frames``) before its
per-clip normalisation; :class:`audioar.features.SegmentSpectrum` trims (``trim_db``) with
:func:`active_ranges`, the batched :func:`active_range`.
"""

import torch
from torch import Tensor

__all__ = ["interpolate", "active_range", "active_ranges", "resample_frames", "normalize_timing"]


def interpolate(x: Tensor, positions: Tensor, dim: int) -> Tensor:
    """Linear interpolation of ``x`` along ``dim`` at fractional ``positions`` (clamped).

    Args:
        x: Any tensor.
        positions: ``(n,)`` fractional indices into ``dim``.
        dim: The axis to read.

    Returns:
        ``x`` with ``dim`` of size ``n``.
    """
    size = x.shape[dim]
    positions = positions.clamp(0, size - 1)
    low = positions.floor().long().clamp(max=size - 1)
    high = (low + 1).clamp(max=size - 1)
    frac = (positions - low).to(x.dtype)
    shape = [1] * x.dim()
    shape[dim] = -1
    frac = frac.reshape(shape)
    return x.index_select(dim, low) * (1 - frac) + x.index_select(dim, high) * frac


def active_range(level_db: Tensor, top_db: float) -> tuple[int, int]:
    """``(start, stop)`` of the frames from the first to the last within ``top_db`` of the max.

    Args:
        level_db: ``(time,)`` frame levels in dB (any reference), at least one frame.
        top_db: How far below the loudest frame a frame still counts, > 0.

    Returns:
        ``start < stop``: frames ``start .. stop - 1`` hold the active part (all of a clip
        whose frames are all within ``top_db``, and the loudest frame at least).

    Example:
        >>> active_range(torch.tensor([-80.0, -10.0, -50.0, 0.0, -70.0]), 60.0)
        (1, 4)
    """
    loud = (level_db >= level_db.max() - top_db).nonzero().flatten()
    return int(loud[0]), int(loud[-1]) + 1


def active_ranges(level_db: Tensor, num_frames: Tensor, top_db: float) -> tuple[Tensor, Tensor]:
    """:func:`active_range` of every clip of a padded batch at once.

    Args:
        level_db: ``(batch, time)`` frame levels in dB; frames at or beyond ``num_frames``
            are padding and never count.
        num_frames: ``(batch,)`` valid frames per clip, >= 1.
        top_db: How far below each clip's loudest frame a frame still counts, > 0.

    Returns:
        ``(start, stop)``, two ``(batch,)`` integer tensors, as :func:`active_range` gives for
        each clip's valid frames.
    """
    steps = torch.arange(level_db.shape[-1], device=level_db.device)  # (time,)
    valid = steps[None, :] < num_frames.to(level_db.device)[:, None]  # (batch, time)
    level = level_db.masked_fill(~valid, float("-inf"))
    loud = valid & (level >= level.amax(dim=-1, keepdim=True) - top_db)
    start = torch.where(loud, steps, level_db.shape[-1]).amin(dim=-1)
    stop = torch.where(loud, steps, -1).amax(dim=-1) + 1
    return start, stop


def resample_frames(frames: Tensor, count: int) -> Tensor:
    """Resample the frame axis to ``count`` frames, linearly, first and last frames kept.

    Args:
        frames: ``(time, bins)`` frames, at least one.
        count: Frames wanted, >= 1.

    Returns:
        ``(count, bins)``; the input itself when it has ``count`` frames (``count = 1``
        keeps the first frame; a single frame is repeated).
    """
    time = frames.shape[0]
    if time == count:
        return frames
    positions = torch.linspace(0, time - 1, count, dtype=torch.float64, device=frames.device)
    return interpolate(frames, positions, dim=0)


def normalize_timing(
    frames: Tensor,
    level_db: Tensor | None,
    num_frames: Tensor,
    top_db: float | None,
    count: int | None,
) -> tuple[Tensor, Tensor]:
    """Trim every clip to its active frames and/or resample it to ``count`` frames.

    Args:
        frames: ``(batch, time, bins)`` frames; frames at or beyond ``num_frames`` are padding.
        level_db: ``(batch, time)`` frame levels in dB (needed with ``top_db`` only).
        num_frames: ``(batch,)`` valid frames per clip, >= 1.
        top_db: Trim frames quieter than the clip's loudest by more than this before and
            after the active part; None keeps every valid frame.
        count: Resample each clip's (trimmed) frames to this many; None keeps their number.

    Returns:
        ``(frames, num_frames)``: ``(batch, count or longest, bins)`` frames, zero beyond each
        clip's new valid count, and the ``(batch,)`` counts.
    """
    if top_db is None:
        starts, stops = torch.zeros_like(num_frames), num_frames
    else:
        starts, stops = active_ranges(level_db, num_frames, top_db)
    clips, counts = [], []
    for x, start, stop in zip(frames, starts.tolist(), stops.tolist(), strict=True):
        x = x[start:stop]
        if count is not None:
            x = resample_frames(x, count).to(frames.dtype)
        clips.append(x)
        counts.append(len(x))
    width = count if count is not None else max(counts)
    out = frames.new_zeros(len(clips), width, frames.shape[-1])
    for row, x in enumerate(clips):
        out[row, : len(x)] = x
    return out, torch.tensor(counts, device=frames.device)
