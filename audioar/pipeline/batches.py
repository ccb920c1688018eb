"""Items, batches and batched evaluation shared by training and scoring.

Every model in the pipeline is fed the same items: ``(x, label, length)`` per clip (a
feature tensor, the class index, the valid steps), batched by :func:`collate` (stacked when
the clips have one shape, zero-padded along time when they do not), so that
``model.log_prob(*batch)`` is the one call for every family.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset, TensorDataset

from audioar.errors import ConfigError, DataError, TrainingError

__all__ = [
    "ClipSet",
    "collate",
    "stack_padded",
    "as_dataset",
    "resolve_device",
    "batch_to_device",
    "evaluating",
    "intra_op_threads",
    "log_likelihoods",
]

logger = logging.getLogger(__name__)


class ClipSet(Dataset):
    """Items ``(x, label, length)``: a clip's features, its class index and its valid steps.

    Args:
        items: One tensor per clip: ``(features,)``, codes ``(time,)``, frames
            ``(time, bins)`` or an image ``(channels, height, width)``.
        labels: Class index per clip; default None: all 0 (scoring, where it is unused).
        lengths: Valid steps per clip; default None: ``len(x)`` for a sequence (1 for a
            vector). Images padded to a fixed width pass their valid columns.
    """

    def __init__(
        self,
        items: Sequence[Tensor],
        labels: Sequence[int] | None = None,
        lengths: Sequence[int] | None = None,
    ) -> None:
        n = len(items)
        if (labels is not None and len(labels) != n) or (lengths is not None and len(lengths) != n):
            raise DataError(f"{n} clips but {len(labels or [])} labels / lengths")
        self.items = list(items)
        self.labels = list(labels) if labels is not None else [0] * n
        self.lengths = list(lengths) if lengths is not None else [len(x) for x in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        return (
            self.items[index],
            torch.tensor(self.labels[index]),
            torch.tensor(self.lengths[index]),
        )


def stack_padded(xs: Sequence[Tensor]) -> Tensor:
    """Clips as one batch: stacked when all share one shape, else zero-padded at the end of
    the time axis, ``(batch, time[, bins])``."""
    if all(x.shape == xs[0].shape for x in xs):
        return torch.stack(list(xs))
    return pad_sequence(list(xs), batch_first=True)


def collate(items: list[tuple]) -> tuple:
    """Batch ``(x, label, length)`` items: ``x`` by :func:`stack_padded`, the rest
    stacked."""
    x = stack_padded([item[0] for item in items])
    rest = [torch.stack([item[i] for item in items]) for i in range(1, len(items[0]))]
    return (x, *rest)


class _Tupled(Dataset):
    """Wraps a dataset whose items are single tensors so that every item is a tuple."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple:
        item = self.dataset[index]
        return tuple(item) if isinstance(item, tuple | list) else (item,)


def as_dataset(data: Dataset | Tensor | Sequence[Tensor]) -> Dataset:
    """Normalize training/scoring data to a ``Dataset`` whose items are tuples.

    Args:
        data: A ``torch.utils.data.Dataset`` (items: a tensor or a tuple of tensors), a
            tensor ``(n, ...)`` (items ``(x,)``), or a tuple/list of tensors sharing their
            first dimension (items ``(x, context, ...)``).

    Returns:
        A dataset whose items are tuples: the positional arguments of ``model.log_prob``.

    Raises:
        DataError: Tensors of different lengths, or something that is not data.
    """
    if isinstance(data, Tensor):
        return TensorDataset(data)
    if isinstance(data, tuple | list) and data and all(isinstance(t, Tensor) for t in data):
        lengths = {len(t) for t in data}
        if len(lengths) != 1:
            raise DataError(
                f"tensors of different lengths {sorted(lengths)} cannot form one data set"
            )
        return TensorDataset(*data)
    if isinstance(data, Dataset):
        return _Tupled(data)
    raise DataError(
        f"expected a Dataset, a tensor or a tuple of tensors, got {type(data).__name__}"
    )


def resolve_device(
    device: str | torch.device | None, model: nn.Module | None = None
) -> torch.device:
    """``"auto"`` -> cuda when available else cpu; ``None`` -> the model's device (or cpu).

    Raises:
        ConfigError: ``"cuda"`` was asked for but no CUDA device is available.
    """
    if device is None:
        param = next(iter(model.parameters()), None) if model is not None else None
        return param.device if param is not None else torch.device("cpu")
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for but no CUDA device is available; use cpu")
    return device


@contextmanager
def evaluating(model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """``model`` on ``device`` in evaluation mode for the ``with`` block; each submodule's
    mode is restored after it.

    Only what needs it is moved or switched: ``.to()`` and ``.eval()`` walk every submodule
    (some 2 ms for the default MAF), which a scorer would otherwise pay once per batch.
    """
    tensors = itertools.chain(model.parameters(), model.buffers())
    if any(t.device != device for t in tensors):
        model.to(device)
    training = [m for m in model.modules() if m.training]
    if training:
        model.eval()
    try:
        yield model
    finally:
        for module in training:
            module.training = True


@contextmanager
def intra_op_threads(threads: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``threads`` for the ``with`` block, restored
    after (untouched when it is already that)."""
    before = torch.get_num_threads()
    if threads != before:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if threads != before:
            torch.set_num_threads(before)


def batch_to_device(batch: Any, device: torch.device) -> tuple:
    """A batch (a tensor, or a tuple/list whose tensors move) as a tuple on ``device``."""
    if isinstance(batch, Tensor):
        batch = (batch,)
    return tuple(t.to(device, non_blocking=True) if isinstance(t, Tensor) else t for t in batch)


@torch.no_grad()
def log_likelihoods(
    model: nn.Module,
    data: Dataset | Tensor | Sequence[Tensor],
    *,
    batch_size: int = 512,
    device: str | torch.device | None = None,
    collate_fn: Callable[[list], Any] | None = None,
) -> Tensor:
    """Log-likelihood of every item under ``model``, in eval mode, batched, without gradients.

    Eval mode matters: batch norm then uses its running statistics, so a clip's score does
    not depend on the other clips in its batch. The model's train/eval mode is restored.

    Args:
        model: Any module with ``log_prob(*item) -> (batch,)`` in nats.
        data: As for :func:`as_dataset`; each batch tuple is passed as ``model.log_prob(*batch)``.
        batch_size: Items per forward pass. Default: 512.
        device: Where to compute; ``None`` (default) is the model's device, ``"auto"`` cuda
            when available.
        collate_fn: Builds a batch from a list of items (e.g. padding variable-length codes);
            ``None`` uses PyTorch's default stacking.

    Returns:
        ``(n,)`` float32 log-likelihoods (nats) on the CPU, in data order.

    Raises:
        TrainingError: ``log_prob`` returned something other than one value per item.
    """
    dataset = as_dataset(data)
    device = resolve_device(device, model)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn)
    out = []
    with evaluating(model, device):
        for batch in loader:
            batch = batch_to_device(batch, device)
            ll = model.log_prob(*batch)
            if ll.dim() != 1 or len(ll) != len(batch[0]):
                raise TrainingError(
                    f"model.log_prob returned shape {tuple(ll.shape)}; "
                    f"expected ({len(batch[0])},), one log-likelihood per item"
                )
            out.append(ll.detach().float().cpu())
    return torch.cat(out) if out else torch.empty(0)
