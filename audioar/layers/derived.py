"""One cache for values derived from tensors (views, masks in a dtype, folded constants).

The fast paths derive things from parameters and buffers that would cost a call's worth
of small operations to make again on every call: per-block views of the weights, a mask
as floats, a batch norm folded into an affine map. :class:`Derived` keeps one such value
and makes it again when one of the tensors it came from changed:

* its storage moved (``.to()``, ``.double()``, a parameter replaced): always checked;
* it was written in place (an optimiser step, ``load_state_dict``, ``x.add_(1)`` under
  ``torch.no_grad()``): checked with ``versions=True``, through the tensor's version
  counter, which every in-place operation bumps. PyTorch's fused optimisers
  (``Adam(fused=True)``, torch 2.11) write parameters without bumping it;
  :func:`audioar.pipeline.train.optimizer_step` bumps it after such a step.

Values that are views of their tensors (the block views) see in-place writes as they
happen and need only the storage check. A value that others take views of (a dense weight
that sampling slices) can be made again in place after a write (``refresh``), so that
those views stay valid.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

from torch import Tensor

__all__ = ["Derived"]

_T = TypeVar("_T")


class Derived(Generic[_T]):
    """A value made from ``tensors`` by ``make()``, kept until one of them changes.

    Copies of the owner (``copy.deepcopy``, pickling) start empty: what was derived
    belongs to the original's tensors.

    Args:
        versions: Also make the value again after an in-place write to any of the tensors
            (default ``True``); ``False`` for values that are views and see such writes.

    Example:
        >>> w = torch.ones(2, 3)
        >>> total = Derived()
        >>> total.get([w], w.sum).item()
        6.0
        >>> _ = w.mul_(2)
        >>> total.get([w], w.sum).item()
        12.0
    """

    __slots__ = ("versions", "_found")

    def __init__(self, versions: bool = True) -> None:
        self.versions = versions
        self._found: tuple[tuple, tuple, _T] | None = None

    def get(
        self,
        tensors: Sequence[Tensor],
        make: Callable[[], _T],
        *extra: Hashable,
        refresh: Callable[[_T], object] | None = None,
    ) -> _T:
        """The kept value if ``tensors`` (and ``extra``) are as they were, else ``make()``.

        Args:
            tensors: What the value is derived from.
            make: Makes the value.
            *extra: Anything else the value depends on (a batch size, a bound).
            refresh: With ``versions``, called on the kept value (to make it again in
                place) when the tensors were only written in place, instead of ``make``.
        """
        key = (extra, tuple((t.data_ptr(), t.dtype, t.device) for t in tensors))
        versions = tuple(t._version for t in tensors) if self.versions else ()
        found = self._found  # one read: another thread may replace it meanwhile
        if found is not None and found[0] == key:
            if found[1] == versions:
                return found[2]
            if refresh is not None:
                refresh(found[2])
                self._found = (key, versions, found[2])
                return found[2]
        value = make()
        self._found = (key, versions, value)
        return value

    def clear(self) -> None:
        """Forget the kept value."""
        self._found = None

    def __deepcopy__(self, memo: dict) -> Derived[_T]:
        return Derived(self.versions)

    def __reduce__(self) -> tuple:
        return (Derived, (self.versions,))
