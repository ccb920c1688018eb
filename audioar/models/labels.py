"""Class labels of a class-conditional model, checked: the one place that reads ``context``
as labels (MAF's one-hot context, PixelCNN's gate embeddings)."""

from __future__ import annotations

import torch
from torch import Tensor

from audioar.errors import DataError

__all__ = ["class_labels"]


def class_labels(
    context: Tensor | int | None, batch: int, classes: int, device: torch.device, model: str
) -> Tensor:
    """``context`` as ``(batch,)`` long labels in ``[0, classes)``.

    Args:
        context: ``(batch,)`` integer labels, or one label for the whole batch.
        batch: Clips in the batch.
        classes: Classes the model is conditioned on, >= 1.
        device: Where the labels go.
        model: The model's name, for the error message.

    Raises:
        DataError: No labels, labels that are not integers, or of the wrong shape or range.
    """
    if context is None:
        raise DataError(f"class labels are required: this {model} has classes={classes}")
    labels = torch.as_tensor(context, device=device)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise DataError(f"class labels must be integers, got {labels.dtype}")
    labels = labels.long()
    if labels.dim() == 0:
        labels = labels.expand(batch)
    if labels.shape != (batch,) or int(labels.min()) < 0 or int(labels.max()) >= classes:
        raise DataError(f"class labels must be (batch,)={batch} values in [0, {classes})")
    return labels
