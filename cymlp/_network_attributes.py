"""The types behind a :class:`~cymlp.network.Network`'s attributes: its parameters and architecture.

:class:`LayerParams` is the sequence behind ``net.weights`` and ``net.biases``:
views into the network's flat buffer, with checked assignment.  :class:`Fixed`
is the descriptor that makes the architecture attributes (``sizes``,
``activation``, ...) read-only once the network is built.
"""

from collections.abc import Sequence

from . import _validation as v


class Fixed:
    """A read-only attribute of the architecture, stored as ``_<name>``.

    The parameter buffer and the compiled plans are sized from the
    architecture, so changing it on a built network would leave them
    inconsistent; assignment raises an AttributeError that says what to do.
    """

    def __init__(self, doc, advice="build a new Network with the architecture you want"):
        self.__doc__ = doc
        self.advice = advice

    def __set_name__(self, owner, name):
        self.name = name
        self.private = "_" + name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        return getattr(obj, self.private)

    def __set__(self, obj, value):
        raise AttributeError(f"Network.{self.name} is fixed when the network is built "
                             f"(its parameter buffer is sized from it); {self.advice}")

    def __delete__(self, obj):
        self.__set__(obj, None)


class LayerParams(Sequence):
    """The per-layer views ``weights`` or ``biases`` of a network's flat buffer.

    Reads give the views themselves (writing into ``net.weights[l][...]``
    changes the network).  ``net.weights[l] = W`` copies ``W`` into the
    view after checking its shape, that it converts to the network's dtype
    and that it is finite there; the buffer, and so every backend, sees the
    change.  Layers cannot be added, removed or replaced by other arrays.
    """

    __slots__ = ("_dtype", "_kind", "_views")

    def __init__(self, views, kind, dtype):
        self._views = tuple(views)
        self._kind = kind
        self._dtype = dtype

    def __len__(self):
        return len(self._views)

    def __iter__(self):
        return iter(self._views)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return list(self._views[index])
        return self._views[index]

    def __setitem__(self, index, value):
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

    def __delitem__(self, index):
        raise TypeError("the layers of a network cannot be removed; build a new Network")

    def __add__(self, other):
        return list(self) + list(other)

    def __radd__(self, other):
        return list(other) + list(self)

    def __eq__(self, other):
        return NotImplemented

    __hash__ = None

    def __repr__(self):
        return repr(list(self._views))
