"""How a :class:`~cymlp.Network` becomes a dict and back: ``save``, ``load``, pickling, ``copy``.

:class:`NetworkIO` is the part of ``Network`` that owns its state dict (the
configuration, the flat parameter buffer, backend and threads, the shuffle
generator's state, the training seed and state, the history):
``__getstate__`` makes it, ``__setstate__`` rebuilds a network from it.
Pickling and :meth:`~NetworkIO.copy` use the dict directly; ``save`` and
``load`` turn it into a model file and back through :mod:`cymlp._persistence`,
which owns the file format and never sees a network.
"""

import numpy as np

from . import _persistence, _threads
from . import _validation as v
from ._backends import available_backends
from .training_state import resolve_seed


class NetworkIO:
    """``Network``'s persistence methods (a mixin: ``Network`` is the only class using it)."""

    def save(self, path, training_state=True):
        """Save architecture, dtype and parameters to a ``.npz`` file, atomically.

        The file is written to ``PATH.cymlp-tmp-XXXXXXXX`` beside ``path``,
        ``fsync``ed and renamed over it, so an interrupted save never leaves a
        broken model where a good one was.  Re-saving keeps the file's mode; a
        symlink ``path`` is followed (its target is replaced).

        Parameters
        ----------
        path : str or os.PathLike
            The file to write.
        training_state : bool
            Also write ``training_state_`` and the shuffle generator's state,
            so that a loaded network resumes exactly (``fit(...,
            resume=True)``); False writes the network alone, in the format of
            earlier versions.
        """
        state = self.training_state_ if training_state else None
        _persistence.save(path, _persistence.config_of(self), self._theta, state,
                          self._rng.bit_generator.state)

    @classmethod
    def load(cls, path, backend=None, n_threads=None, max_bytes=_persistence.DEFAULT_MAX_MODEL_BYTES):
        """Load a network saved by :meth:`save` (never executes code from the file).

        A damaged, truncated or hostile file raises ``ValueError`` naming the
        path; nothing large is decompressed or allocated before the file is
        checked against its own configuration and ``max_bytes``.  Anything
        but a regular file (a FIFO, a device, a folder) raises ``OSError`` at
        once.

        Parameters
        ----------
        path : str or os.PathLike
            The model file.
        backend : {"cython", "numpy"} or None
            The loaded network's backend (None: the default).
        n_threads : int or None
            The loaded network's ``n_threads``.
        max_bytes : int or None
            The most memory the model may need: its parameters and
            training-state buffers as the file declares them (default 4 GiB;
            None: no bound).  A larger model raises ``ValueError`` before
            anything is allocated (``cymlp ... --max-model-bytes`` on the
            command line).

        Returns
        -------
        Network
            The network, with its training state when the file holds one.
        """
        v.check_backend(backend, available_backends())    # blame the arguments, not the file
        _threads.check_n_threads(n_threads)
        if max_bytes is not None:
            max_bytes = v.check_positive_int("max_bytes", max_bytes)
        state = _persistence.load(path, max_bytes)
        net = cls.__new__(cls)
        net.__setstate__(dict(state, backend=backend, n_threads=n_threads))
        return net

    def __getstate__(self):
        """The network as a dict (pickle, :meth:`copy`): copies of its parameters and training state."""
        training = self.training_state_
        return dict(_persistence.config_of(self), theta=self._theta.copy(), backend=self.backend,
                    n_threads=self._n_threads, compiled_mode=self._compiled_mode,
                    rng=self._rng.bit_generator.state, history=self.history_, train_seed=self._train_seed,
                    training_state=None if training is None else training.copy())

    def __setstate__(self, state):
        """Rebuild from a :meth:`__getstate__` dict, or from what ``_persistence.load`` read.

        ``state["theta"]`` becomes the parameter buffer (converted to the
        dtype, copied only when it has to be).  ``state["rng"]`` None seeds a
        fresh generator from ``seed``.  An unavailable backend (unpickled
        where the extension is not built) falls back to NumPy.
        """
        self._set_architecture(state["sizes"], state["activation"], state["output"], state["loss"],
                               state["dtype"])
        self.dropout = state.get("dropout", 0.0)       # absent in files and pickles without dropout
        self.seed = state["seed"]
        try:
            self.backend = state["backend"]
        except ValueError:
            self.backend = "numpy"
        self._n_threads = state["n_threads"]
        self._compiled_mode = state.get("compiled_mode")
        self._rng = np.random.default_rng(self.seed)
        if state.get("rng") is not None:
            self._rng.bit_generator.state = state["rng"]
        theta = np.require(state["theta"], dtype=self.dtype, requirements=("C", "W", "O"))
        if theta.ndim != 1:
            theta = theta.reshape(-1)
        self._allocate(theta)
        self.history_ = state.get("history")
        # pickles from before the training state: none, and the training seed is the seed
        self._train_seed = resolve_seed(state.get("train_seed", self.seed))
        training = state.get("training_state")
        if training is not None:
            for name in ("m", "v"):
                buf = getattr(training, name)
                if buf is not None:
                    setattr(training, name, np.require(buf, dtype=self.dtype, requirements=("C", "W", "O")))
        self.training_state_ = training

    def copy(self, dtype=None, backend=None, seed=None):
        """An independent copy, optionally in another dtype or backend, or reseeded.

        The copy keeps the training state (cast to ``dtype``).

        Parameters
        ----------
        dtype : {"float32", "float64"} or None
            The copy's dtype (None: this network's); its parameters must fit.
        backend : {"cython", "numpy"} or None
            The copy's backend (None: this network's).
        seed : int or None
            The copy draws its shuffles from it (:meth:`reseed`), so replicas
            of one network see independent orders; None keeps this network's
            generator state.

        Returns
        -------
        Network
            The copy.
        """
        if seed is not None:
            v.check_seed(seed)
        state = self.__getstate__()
        if dtype is not None:
            state = _persistence.cast_state(state, v.check_dtype(dtype))
        if backend is not None:
            state["backend"] = backend
        net = type(self).__new__(type(self))
        net.__setstate__(state)
        if seed is not None:
            net.reseed(seed)
        return net
