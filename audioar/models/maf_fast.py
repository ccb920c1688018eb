"""The MAF's fast path behind one call: ``fast(x, context, bound) -> (z, log_det)``.

:class:`~audioar.models.MAF` holds a :class:`MAFFastPath` and calls it in place of its
flow-by-flow reference loop when :meth:`MAFFastPath.applies`; both give the same numbers
(tests check values and gradients). Everything the fast path keeps lives here:

* the MADEs' weight blocks stacked over flows when every MADE has the same masks (equal
  hidden degrees, the default): one ``(flows, rows, cols)`` parameter per layer and block
  (:func:`~audioar.layers.masked_linear.stack_blocks`), 12 tensors instead of 120 for an
  optimiser to step and for autograd to accumulate, and each one's gradient a single
  batched product; the MADEs read their rows, and save and load their dense weights as
  before;
* the block views of every flow's weights, and what evaluation folds into the flows
  (:class:`~audioar.models.maf_stack.Evaluation`), each kept by one
  :class:`~audioar.layers.derived.Derived` until the parameters move or change;
* a pool of the large per-call buffers (:class:`~audioar.models.maf_stack.BufferPool`).

The arithmetic is :func:`~audioar.models.maf_stack.maf_stack`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from audioar.errors import TrainingError
from audioar.layers.block_linear import FUSED_ACTIVATIONS, BlockViews, block_views
from audioar.layers.derived import Derived
from audioar.layers.masked_linear import stack_blocks
from audioar.models.made import MADE
from audioar.models.maf_stack import (
    BufferPool,
    Evaluation,
    FlowStack,
    evaluation_columns,
    evaluation_layers,
    maf_stack,
)

__all__ = ["MAFFastPath"]


class MAFFastPath(nn.Module):
    """All flows of a MAF as one autograd node (:mod:`audioar.models.maf_stack`).

    It reads the MAF's MADEs and batch norms (it does not own them) and owns only the
    stacked weight blocks, which state dicts leave out: the MADEs' entries hold their
    values.

    Args:
        mades: The flows' Gaussian MADEs.
        norms: A :class:`~audioar.models.maf.BatchNormBijector` per flow, or empty.
    """

    def __init__(self, mades: Sequence[MADE], norms: Sequence[nn.Module]) -> None:
        super().__init__()
        self._flows = (tuple(mades), tuple(norms))  # a tuple: read, not registered
        first = mades[0].layers
        self.shared = all(
            a.blocks == b.blocks and torch.equal(a.mask, b.mask)
            for made in mades[1:]
            for a, b in zip(made.layers, first, strict=True)
        )
        self.stacks = (
            nn.ModuleList(
                stack_blocks([made.layers[i] for made in mades], _Unsaved())
                for i in range(len(first))
            )
            if self.shared
            else None
        )
        self._views: Derived[list[list[BlockViews]]] = Derived(versions=False)
        self._evaluation: Derived[Evaluation] = Derived()
        self._pool = BufferPool()

    def applies(self, x: Tensor) -> bool:
        """Whether the fast path serves ``x``: every MADE ``block_sparse`` with a fused
        activation (tanh, relu, identity), every MADE and batch norm in the same mode, no
        autocast."""
        mades, norms = self._flows
        return (
            all(made.block_sparse for made in mades)
            and mades[0].activation in FUSED_ACTIVATIONS
            and not torch.is_autocast_enabled(x.device.type)
            and len({module.training for module in [*mades, *norms]}) == 1
        )

    def forward(self, x: Tensor, context: Tensor | None, bound: float) -> tuple[Tensor, Tensor]:
        """``z`` ``(batch, features)`` and ``log_det`` ``(batch,)`` of ``x`` ``(batch,
        features)`` given ``context``, with MADE log-scales soft-clamped to ``bound``."""
        mades, norms = self._flows
        first = mades[0]
        batch_stats = bool(norms) and norms[0].training
        if batch_stats and x.shape[0] < 2:
            raise TrainingError("batch norm needs a batch of at least 2 in training mode")
        context = first.check_context(context, x.shape[0])
        if self.stacks is not None:
            weights = [w for stacks in self.stacks for w in stacks]
        else:
            weights = [w for m in mades for layer in m.layers for w in layer.stored_weights()]
        biases = [layer.bias for made in mades for layer in made.layers]
        norm_params = [p for norm in norms for p in (norm.log_gamma, norm.beta)]
        x = x.to(weights[0].dtype)
        dropout = first.dropout if first.training else 0.0
        grad = torch.is_grad_enabled() and (
            x.requires_grad
            or (context is not None and context.requires_grad)
            or any(p.requires_grad for p in (*weights, *biases, *norm_params))
        )
        views = self._views.get([*weights, *biases], lambda: self._block_views(weights, biases))
        evaluation = None
        if not grad and not batch_stats and dropout == 0:
            running = [t for norm in norms for t in (norm.running_mean, norm.running_var)]
            evaluation = self._evaluation.get(
                [*weights, *biases, *norm_params, *running],
                lambda: self._make_evaluation(views, bound),
                bound,
            )
        stack = FlowStack(
            mades=mades,
            views=views,
            norms=norms,
            bound=bound,
            activation=first.activation,
            batch_stats=batch_stats,
            dropout=dropout,
            shared=self.stacks is not None,
            buffers=self._pool,
            evaluation=evaluation,
        )
        return maf_stack(x, context, stack, weights, biases, norm_params)

    def _block_views(self, weights: list[Tensor], biases: list[Tensor]) -> list[list[BlockViews]]:
        """Every flow's :class:`~audioar.layers.block_linear.BlockViews` (views, no copies)."""
        mades = self._flows[0]
        with torch.no_grad():
            return [
                block_views(
                    [list(layer.stored_weights()) for layer in made.layers],
                    [layer.bias for layer in made.layers],
                    [layer.float_mask() for layer in made.layers],
                    [layer.blocks for layer in made.layers],
                )
                for made in mades
            ]

    def _make_evaluation(self, views: list[list[BlockViews]], bound: float) -> Evaluation:
        mades, norms = self._flows
        with torch.no_grad():
            layers = evaluation_layers(views, mades[0].activation)
            if not norms:
                return Evaluation(None, 0.0, layers)
            columns, log_det = evaluation_columns(mades, norms, bound)
            return Evaluation(columns, log_det, layers)


class _Unsaved(nn.ParameterList):
    """Parameters that state dicts leave out: the MADEs save (and load) their values."""

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        return

    def _load_from_state_dict(self, *args: object, **kwargs: object) -> None:
        return
