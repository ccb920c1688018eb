"""From featurizer output to model input: which layout a family gets, and the clips in it.

A featurizer gives one tensor per clip: a vector ``(features,)`` (``segments``, ``fft``,
flattened ``stft``), frames ``(time, bins)`` (``stft``) or codes ``(time,)`` (``mulaw``). A
family takes some of the layouts of :data:`audioar.models.contract.INPUT_KINDS`; frames
suit both a sequence model (WaveNet, variable length) and an image model (PixelCNN: a
``1 x bins x width`` spectrogram, each clip padded or trimmed to one width, the padded
columns masked out of the likelihood).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor

from audioar.errors import ConfigError, DataError
from audioar.features import Featurizer
from audioar.models.contract import InputSpec

__all__ = ["feature_kinds", "input_spec", "arrange", "longest"]


def feature_kinds(featurizer: Featurizer) -> tuple[str, ...]:
    """The layouts ``featurizer``'s output can take, best first."""
    if featurizer.name == "mulaw":  # codes, one per sample (fixed length or not)
        return ("sequence",)
    shape = featurizer.feature_shape
    if len(shape) == 1 and shape[0] is not None:
        return ("vector",)
    return ("sequence", "image")


def input_spec(
    featurizer: Featurizer,
    family: type,
    name: str,
    classes: int,
    width: int | None = None,
) -> InputSpec:
    """The :class:`InputSpec` of ``featurizer``'s clips for model family ``family``.

    Args:
        featurizer: The run's featurizer.
        family: The model class (its ``inputs``).
        name: The family's registered name (for messages).
        classes: Classes of the training split (a conditional model's class count).
        width: Frames per clip for an image model (pad/trim width).

    Raises:
        ConfigError: The family takes none of the layouts these features give, or an image
            model without a width.
    """
    kinds = [k for k in feature_kinds(featurizer) if k in family.inputs]
    if not kinds:
        wanted = " or ".join(family.inputs)
        given = " or ".join(feature_kinds(featurizer))
        raise ConfigError(
            f"model {name} takes {wanted} features; features.name={featurizer.name} gives "
            f"{given} (vectors: segments, fft or stft with flatten; sequences: stft frames "
            "or mulaw codes; images: stft frames)"
        )
    kind = kinds[0]
    shape = featurizer.feature_shape
    levels = int(getattr(featurizer, "quantization_channels", 0) or 0)
    if kind == "vector":
        return InputSpec("vector", (int(shape[0]),), levels, classes)
    if kind == "sequence":  # the time axis stays variable (clips are padded, lengths kept)
        return InputSpec("sequence", (None, *shape[1:]), levels, classes)
    if width is None or width < 1:
        raise ConfigError(f"model {name} needs a fixed number of frames per clip (features.frames)")
    return InputSpec("image", (1, int(shape[-1]), int(width)), levels, classes)


def arrange(features: Sequence[Tensor], spec: InputSpec) -> tuple[list[Tensor], list[int]]:
    """Featurizer tensors -> model inputs and their valid steps.

    Vectors stay ``(features,)`` (1 step); sequences stay as they are (``len(x)`` steps);
    frames become images ``(1, bins, width)``, trimmed or zero-padded at the end (the
    valid columns are the steps).

    Raises:
        DataError: A clip with no steps.
    """
    items, lengths = [], []
    for x in features:
        if spec.kind == "vector":
            items.append(x.reshape(-1))
            lengths.append(1)
            continue
        if len(x) == 0:
            raise DataError("a clip gives no feature steps")
        if spec.kind == "sequence":
            items.append(x)
            lengths.append(len(x))
            continue
        width = int(spec.shape[-1] or 0)
        image = x[:width].t().unsqueeze(0)  # (1, bins, time)
        lengths.append(image.shape[-1])
        items.append(F.pad(image, (0, width - image.shape[-1])))
    return items, lengths


def longest(features: Sequence[Tensor], cap: int | None = None) -> int:
    """The longest clip in steps (at most ``cap``): the default image width."""
    top = max((len(x) for x in features), default=1)
    return int(min(top, cap)) if cap else int(top)
