"""The type aliases of cymlp's public annotations (checked by mypy, see ``[tool.mypy]``).

A network computes in one floating dtype, float32 or float64, chosen when it
is built, so its arrays are annotated :data:`FloatArray` (``numpy.floating``
of either width); class labels are :data:`LabelArray` (the platform integer
``argmax`` returns).  Inputs are anything NumPy converts (``ArrayLike``).
The names a parameter accepts (activations, losses, backends) are
``Literal`` types, so a type checker catches a misspelt name before a run.
"""

from __future__ import annotations

import os
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = ["Activation", "BackendName", "FloatArray", "FloatDType", "LabelArray", "LossName",
           "OutputActivation", "PathLike", "SklearnActivation", "SklearnLearningRate", "SklearnRegressionLoss",
           "SklearnSolver"]

FloatArray: TypeAlias = npt.NDArray[np.floating[Any]]
"""An array of the network's dtype (float32 or float64)."""

LabelArray: TypeAlias = npt.NDArray[np.intp]
"""Class labels 0..k-1, as ``argmax`` returns them."""

Activation: TypeAlias = Literal["relu", "sigmoid", "tanh", "leaky_relu", "identity"]
OutputActivation: TypeAlias = Literal["softmax", "sigmoid", "identity", "exp"]
LossName: TypeAlias = Literal["cross_entropy", "quadratic", "poisson"]
BackendName: TypeAlias = Literal["cython", "numpy"]

FloatDType: TypeAlias = (Literal["float32", "float64"] | type[np.float32] | type[np.float64]
                         | np.dtype[np.float32] | np.dtype[np.float64])
"""A dtype a network accepts: the name, the NumPy scalar type, or the dtype."""

PathLike: TypeAlias = str | os.PathLike[str]
"""A file name: a ``str`` or a ``pathlib.Path``."""

# scikit-learn's names, as cymlp.sklearn's estimators take them: every value scikit-learn
# accepts (a few are refused by cymlp at fit time, with what to use instead) plus cymlp's
# "leaky_relu"; tests/test_typing.py checks them against the values the estimators accept
SklearnActivation: TypeAlias = Literal["relu", "logistic", "tanh", "identity", "leaky_relu"]
SklearnSolver: TypeAlias = Literal["adam", "sgd", "lbfgs"]
SklearnLearningRate: TypeAlias = Literal["constant", "invscaling", "adaptive"]
SklearnRegressionLoss: TypeAlias = Literal["squared_error", "poisson"]
