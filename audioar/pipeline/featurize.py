"""Features of data-set clips: one tensor per readable clip; bad clips skipped and reported."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor

from audioar.data.discovery import Clip
from audioar.features import Featurizer, extract

__all__ = ["featurize"]

logger = logging.getLogger(__name__)


def featurize(
    featurizer: Featurizer, clips: Sequence[Clip], *, use_cache: bool = True
) -> tuple[list[Tensor], list[Clip], dict[str, str]]:
    """One feature tensor per readable clip, in order (through the feature cache).

    Clips that cannot be read, give non-finite features or give no feature steps (an empty
    sequence) are left out and reported, never fatal.

    Returns:
        ``(features, kept clips, {path: reason} for skipped ones)``; features are
        ``(features,)`` vectors, ``(time,)`` codes or ``(time, bins)`` frames.
    """
    if not clips:
        return [], [], {}
    result = extract(featurizer, [c.path for c in clips], use_cache=use_cache, on_error="skip")
    errors = {str(p): reason for p, reason in result.errors.items()}
    features = result.features
    tensors = list(features.unbind(0)) if isinstance(features, Tensor) else list(features)
    by_path = dict(zip((str(p) for p in result.paths), tensors, strict=True))
    kept, out = [], []
    for clip in clips:
        x = by_path.get(str(Path(clip.path)))
        if x is None:
            continue
        if x.dim() > 0 and len(x) == 0:
            errors[str(clip.path)] = "clip gives no feature steps (too short for the featurizer)"
            continue
        kept.append(clip)
        out.append(x)
    for path, reason in list(errors.items())[:5]:
        logger.warning("skipped %s: %s", path, reason)
    return out, kept, errors
