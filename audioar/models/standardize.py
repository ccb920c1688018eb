"""Any density model over standardised features, reporting densities of the raw ones.

Standardising with training statistics is what the MAF paper does to every data set. The
wrapped model sees ``z = (x - mean) / std`` (real-valued features; codes pass unchanged) and
the change of variables adds ``-sum(log std)`` per valid step, so log-likelihoods (and nats
per dimension) stay those of the raw features and models with different scalings compare.

The wrapper is also where the pipeline's one calling convention meets each family's own:
every batch is ``(x, labels, lengths)`` and :meth:`Standardized.log_prob` takes exactly
that, whatever the family (``labels`` are ignored by a one-class model, ``lengths`` count
the valid steps of padded sequences and of spectrogram images padded to a fixed width).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from audioar.errors import DataError
from audioar.models.contract import InputSpec

__all__ = ["Standardized", "feature_statistics"]


def feature_statistics(
    items: list[Tensor], spec: InputSpec, lengths: list[int] | None = None
) -> tuple[Tensor, Tensor]:
    """Training mean and standard deviation per feature of ``items`` (one tensor per clip).

    Vectors: per feature over clips. Sequences of frames: per bin over every valid frame.
    Images: per row (channel and height) over every valid column. Codes: zeros and ones.

    Returns:
        ``(mean, std)`` shaped as :meth:`Standardized` broadcasts them.
    """
    if spec.levels:
        shape = _stat_shape(spec)
        return torch.zeros(shape), torch.ones(shape)
    if spec.kind == "vector":
        x = torch.stack([t.reshape(-1) for t in items]).float()
        return x.mean(0), x.std(0)
    if spec.kind == "sequence":
        rows = torch.cat([t.reshape(len(t), -1) for t in items]).double()
        return rows.mean(0).float(), rows.std(0).float()
    widths = lengths or [t.shape[-1] for t in items]
    channels, height = items[0].shape[0], items[0].shape[1]
    cols = torch.cat(
        [t[..., :w].reshape(channels * height, -1) for t, w in zip(items, widths, strict=True)],
        dim=1,
    ).double()
    mean, std = cols.mean(1), cols.std(1)
    return mean.float().view(channels, height, 1), std.float().view(channels, height, 1)


def _stat_shape(spec: InputSpec) -> tuple[int, ...]:
    if spec.kind == "vector":
        return (spec.size,)
    if spec.kind == "sequence":
        return (spec.size,)
    return (int(spec.shape[0] or 1), int(spec.shape[1] or 1), 1)


class Standardized(nn.Module):
    """Wrap ``model`` so it sees standardised features and returns ``log p(x)`` in nats.

    Args:
        model: A density model following :mod:`audioar.models.contract`.
        spec: What one clip's features look like (``spec.levels > 0``: discrete codes, not
            standardised).
        mean: Training mean (:func:`feature_statistics`); default zeros.
        std: Training standard deviation, clamped to at least ``min_std``; default ones.
        min_std: Floor under ``std`` so constant features do not blow up. Default 1e-3.

    Shapes:
        ``x``: ``(batch, features)``, ``(batch, time[, bins])`` or ``(batch, channels,
        height, width)``; ``labels``: ``(batch,)`` class indices (ignored by one-class
        models); ``lengths``: ``(batch,)`` valid steps (time steps, or image columns).

    Example:
        >>> from audioar.models import MAF
        >>> x = torch.randn(100, 3) * 5 + 2
        >>> spec = InputSpec("vector", (3,))
        >>> wrapped = Standardized(MAF(3, num_flows=2, hidden_features=(8,)), spec,
        ...                        *feature_statistics(list(x), spec))
        >>> wrapped.log_prob(x).shape
        torch.Size([100])
    """

    def __init__(
        self,
        model: nn.Module,
        spec: InputSpec,
        mean: Tensor | None = None,
        std: Tensor | None = None,
        min_std: float = 1e-3,
    ) -> None:
        super().__init__()
        self.model = model
        self.spec = spec
        shape = _stat_shape(spec)
        mean = torch.zeros(shape) if mean is None or spec.levels else mean
        std = torch.ones(shape) if std is None or spec.levels else std
        self.register_buffer("mean", mean.detach().clone().float().reshape(shape))
        self.register_buffer("std", std.detach().clone().float().reshape(shape).clamp_min(min_std))

    @property
    def conditional(self) -> bool:
        """Whether the wrapped model is class-conditional."""
        return bool(getattr(self.model, "conditional", False))

    @property
    def classes(self) -> int:
        """Classes a conditional model is conditioned on (0 for a one-class model)."""
        return int(getattr(self.model, "classes", 0) or 0) if self.conditional else 0

    @property
    def has_posterior(self) -> bool:
        """Whether a clip has a class posterior: a conditional model over at least two
        classes (one fitted on the normal class alone is scored as a one-class model)."""
        return self.classes > 1

    def standardize(self, x: Tensor) -> Tensor:
        """``(x - mean) / std`` for real-valued features; codes unchanged."""
        return x if self.spec.levels else (x - self.mean) / self.std

    def _log_det(self) -> Tensor:
        """``-sum(log std)`` over one step (a vector, a frame, an image column)."""
        return -torch.log(self.std).sum()

    def _steps(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        """Valid steps per clip ``(batch,)`` as float: 1 for a vector."""
        if self.spec.kind == "vector":
            return x.new_ones(x.shape[0], dtype=torch.float32)
        if lengths is None:
            full = x.shape[1] if self.spec.kind == "sequence" else x.shape[-1]
            return torch.full((x.shape[0],), float(full), device=x.device)
        return torch.as_tensor(lengths, device=x.device).float()

    def _context(self, labels: Tensor | None) -> Tensor | None:
        if not self.conditional:
            return None
        if labels is None:
            raise DataError("a class-conditional model needs class labels")
        return labels

    def _column_mask(self, x: Tensor, lengths: Tensor | None) -> Tensor | None:
        """``(batch, width)`` valid image columns, or None when every column is valid."""
        if self.spec.kind != "image" or lengths is None:
            return None
        lengths = torch.as_tensor(lengths, device=x.device)
        if bool((lengths >= x.shape[-1]).all()):
            return None
        return torch.arange(x.shape[-1], device=x.device) < lengths.unsqueeze(1)

    def log_prob(
        self, x: Tensor, labels: Tensor | None = None, lengths: Tensor | None = None
    ) -> Tensor:
        """Clip log-likelihoods ``(batch,)`` of the raw features, nats (padding never counts).

        Can be called as ``log_prob(*batch)`` with ``batch = (x, labels, lengths)``.
        """
        z, context = self.standardize(x), self._context(labels)
        kind = self.spec.kind
        if kind == "vector":
            ll = self.model.log_prob(z, context)
        elif kind == "sequence":
            ll = self.model.log_prob(z, context, lengths)
        else:
            mask = self._column_mask(x, lengths)
            if mask is None:
                ll = self.model.log_prob(z, context)
            else:
                columns = self.model.log_prob_steps(z, context).sum(dim=1)  # (batch, width)
                ll = torch.where(mask, columns, torch.zeros_like(columns)).sum(dim=1)
        return ll + self._steps(x, lengths) * self._log_det()

    def log_prob_steps(
        self, x: Tensor, labels: Tensor | None = None, lengths: Tensor | None = None
    ) -> Tensor:
        """Per-step log-likelihoods ``(batch, steps)`` of the raw features, nats: one step
        per vector, per frame or sample of a sequence, per column of an image; padded
        steps are exactly 0 and the steps sum to :meth:`log_prob`."""
        z, context = self.standardize(x), self._context(labels)
        kind = self.spec.kind
        if kind == "vector":
            return self.log_prob(x, labels, lengths).unsqueeze(1)
        if kind == "sequence":
            steps = self.model.log_prob_steps(z, context, lengths)
            time = x.shape[1]
            valid = (
                torch.arange(time, device=x.device) < torch.as_tensor(lengths).unsqueeze(1)
                if lengths is not None
                else torch.ones_like(steps, dtype=torch.bool)
            )
        else:
            steps = self.model.log_prob_steps(z, context).sum(dim=1)  # (batch, width)
            mask = self._column_mask(x, lengths)
            valid = mask if mask is not None else torch.ones_like(steps, dtype=torch.bool)
        return torch.where(valid, steps + self._log_det(), torch.zeros_like(steps))

    def log_prob_all_classes(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``(batch, classes)``: ``log p(x | c)`` for every class (a conditional model).

        Uses the family's batched ``log_prob_all_classes`` where it takes the padding into
        account (sequences), else one :meth:`log_prob` per class.
        """
        if not self.conditional:
            raise DataError("only a class-conditional model scores under every class")
        shift = (self._steps(x, lengths) * self._log_det()).unsqueeze(1)
        batched = getattr(self.model, "log_prob_all_classes", None)
        if self.spec.kind == "sequence" and batched is not None:
            return batched(self.standardize(x), lengths) + shift
        labels = torch.arange(self.classes, device=x.device)
        return torch.stack([self.log_prob(x, c.expand(x.shape[0]), lengths) for c in labels], dim=1)

    def unstandardize(self, z: Tensor) -> Tensor:
        """Model-space values back to raw features (codes unchanged)."""
        return z if self.spec.levels else z * self.std + self.mean

    @torch.no_grad()
    def sample(self, n: int, labels: Tensor | None = None, **kwargs: object) -> Tensor:
        """``n`` samples in the raw feature space (``kwargs`` go to the family's ``sample``,
        e.g. ``length`` for a WaveNet)."""
        context = self._context(labels) if labels is not None else None
        return self.unstandardize(self.model.sample(n, context, **kwargs))
