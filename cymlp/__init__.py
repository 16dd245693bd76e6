"""cymlp: a multilayer perceptron you can read, trained as fast as your CPU allows.

>>> import cymlp
>>> net = cymlp.Network([64, 32, 10], activation="relu", output="softmax")
>>> history = net.fit(X, y, epochs=10)            # doctest: +SKIP

Two interchangeable paths compute the same maths: the NumPy reference path
(:mod:`cymlp.reference`, the one to read) and the compiled Cython/OpenMP path
(the default when built).
"""

__version__ = "0.1.0"

from . import _build_check
from ._backends import available_backends
from ._install_info import show_config
from .exceptions import TrainingDiverged
from .gradcheck import gradcheck
from .history import History
from .network import Network
from .training_state import TrainingState

# Load the compiled path's OpenMP runtime now (a tiny extension: no kernels, no SciPy), so that a
# threadpoolctl.threadpool_limits block entered after `import cymlp` limits cymlp's threads too.
_build_check.load_openmp_runtime()

__all__ = ["Network", "History", "TrainingDiverged", "TrainingState", "gradcheck", "show_config",
           "available_backends", "__version__"]
