"""The types behind a :class:`~cymlp.network.Network`'s attributes: its parameters and architecture.

:class:`LayerParams` is the sequence behind ``net.weights`` and ``net.biases``:
views into the network's flat buffer, with checked assignment.  :class:`Fixed`
is the descriptor that makes the architecture attributes (``sizes``,
``activation``, ...) read-only once the network is built.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Generic, NoReturn, TypeVar, overload

import numpy as np
import numpy.typing as npt

from . import _validation as v
from ._typing import FloatArray

T = TypeVar("T")


class Fixed(Generic[T]):
    """A read-only attribute of the architecture, stored as ``_<name>``.

    The parameter buffer and the compiled plans are sized from the
    architecture, so changing it on a built network would leave them
    inconsistent; assignment raises an AttributeError that says what to do.
    """

    def __init__(self, doc: str, advice: str = "build a new Network with the architecture you want") -> None:
        self.__doc__ = doc
        self.advice = advice

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.private = "_" + name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Fixed[T]: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...

    def __get__(self, obj: object, owner: type | None = None) -> Fixed[T] | T:
        if obj is None:
            return self
        value: T = getattr(obj, self.private)
        return value

    # `value: NoReturn`: to a type checker no value can be assigned (a read-only attribute)
    def __set__(self, obj: object, value: NoReturn) -> NoReturn:
        self._refuse()

    def __delete__(self, obj: object) -> NoReturn:
        self._refuse()

    def _refuse(self) -> NoReturn:
        raise AttributeError(f"Network.{self.name} is fixed when the network is built "
                             f"(its parameter buffer is sized from it); {self.advice}")


class LayerParams(Sequence[FloatArray]):
    """The per-layer views ``weights`` or ``biases`` of a network's flat buffer.

    Reads give the views themselves (writing into ``net.weights[l][...]``
    changes the network).  ``net.weights[l] = W`` copies ``W`` into the
    view after checking its shape, that it converts to the network's dtype
    and that it is finite there; the buffer, and so every backend, sees the
    change.  Layers cannot be added, removed or replaced by other arrays.
    """

    __slots__ = ("_dtype", "_kind", "_views")

    def __init__(self, views: Iterable[FloatArray], kind: str, dtype: np.dtype[Any]) -> None:
        self._views = tuple(views)
        self._kind = kind
        self._dtype = dtype

    def __len__(self) -> int:
        return len(self._views)

    def __iter__(self) -> Iterator[FloatArray]:
        return iter(self._views)

    @overload
    def __getitem__(self, index: int) -> FloatArray: ...
    @overload
    def __getitem__(self, index: slice) -> list[FloatArray]: ...

    def __getitem__(self, index: int | slice) -> FloatArray | list[FloatArray]:
        if isinstance(index, slice):
            return list(self._views[index])
        return self._views[index]

    def __setitem__(self, index: int, value: npt.ArrayLike) -> None:
        if isinstance(index, slice):
            raise TypeError(f"assign {self._kind} one layer at a time: "
                            f"net.{self._kind}[l] = array")
        try:
            view = self._views[index]
        except TypeError:
            raise TypeError(f"{self._kind} indices must be integers; got {index!r}") from None
        except IndexError:
            raise IndexError(f"the network has {len(self)} layers of {self._kind}; "
                             f"got index {index}") from None
        name = f"{self._kind}[{index}]"
        value = v.check_finite_params(name, value, self._dtype)
        if value.shape != view.shape:
            hint = (" (transposed? weights[l] has shape (n_out, n_in))"
                    if value.shape == view.shape[::-1] else "")
            raise ValueError(f"{name} has shape {view.shape}; got an array of shape "
                             f"{value.shape}{hint}")
        view[...] = value

    def __delitem__(self, index: int | slice) -> NoReturn:
        raise TypeError("the layers of a network cannot be removed; build a new Network")

    def __add__(self, other: Iterable[FloatArray]) -> list[FloatArray]:
        return list(self) + list(other)

    def __radd__(self, other: Iterable[FloatArray]) -> list[FloatArray]:
        return list(other) + list(self)

    def __eq__(self, other: object) -> bool:
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]   # a live view of mutable parameters: unhashable

    def __repr__(self) -> str:
        return repr(list(self._views))
