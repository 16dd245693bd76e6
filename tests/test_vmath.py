"""The kernels' vectorisable e^x (x <= 0, cymlp/_vmath.pxd) against NumPy's exp.

Accepted: at most 2 ulp from the correctly rounded result (NumPy's float64
exp is within 1 ulp; float32 is checked against exp computed in float64), 0
below the smallest normal number (the kernels flush subnormals anyway),
NaN for NaN and 0 for -inf.
"""

import numpy as np
import pytest
from _helpers import skip_module_unless_compiled

skip_module_unless_compiled()
from cymlp import _kernels_common as kernels

SMALLEST_ARG = {"float32": -87.33654, "float64": -708.3964185322641}   # e^x = smallest normal


def ulps(got, exact, dtype):
    """|got - exact| in units of the last place of ``exact`` rounded to ``dtype``."""
    return np.abs(got.astype(np.float64) - exact) / np.spacing(exact.astype(dtype)).astype(np.float64)


def test_float32_every_61st_argument_down_to_the_normal_range():
    # every 61st float32 bit pattern in [-87.33, 0] (18 million of the 1.1e9), in slices,
    # plus the first 10^5 below each power of two (where ulps change size)
    lo = np.float32(SMALLEST_ARG["float32"])
    start, stop = (int(b) for b in np.array([-0.0, lo], dtype=np.float32).view(np.uint32))
    worst = 0.0
    for first in range(start, stop + 1, 61 * 2**20):
        x = np.arange(first, min(first + 61 * 2**20, stop + 1), 61, dtype=np.uint32).view(np.float32)
        worst = max(worst, ulps(kernels.exp_nonpos(x), np.exp(x.astype(np.float64)), np.float32).max())
    edges = -np.exp2(np.arange(-10, 7)).astype(np.float32)
    for e in edges:
        b = int(np.array([e], dtype=np.float32).view(np.uint32)[0])
        x = np.arange(b, b + 10**5, dtype=np.uint32).view(np.float32)
        x = x[x >= lo]
        worst = max(worst, ulps(kernels.exp_nonpos(x), np.exp(x.astype(np.float64)), np.float32).max())
    assert worst <= 2.0, worst


def test_float64_a_million_arguments_and_the_ends():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(SMALLEST_ARG["float64"], 0, 10**6),
                        -rng.exponential(1.0, 10**5), -rng.uniform(0, 1e-6, 10**4),
                        [0.0, -0.0, -np.log(2) / 2, np.log(2) / 2 - 1, SMALLEST_ARG["float64"]]])
    assert ulps(kernels.exp_nonpos(x), np.exp(x), np.float64).max() <= 2.0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_special_values(dtype):
    tiny = np.finfo(dtype).smallest_normal
    x = np.array([np.nan, -np.inf, 0.0, -0.0, SMALLEST_ARG[dtype] * 1.001, -1e4], dtype=dtype)
    y = kernels.exp_nonpos(x)
    assert np.isnan(y[0])
    np.testing.assert_array_equal(y[1:], [0.0, 1.0, 1.0, 0.0, 0.0])
    # just above the cut-off the result is normal and accurate
    x = np.array([SMALLEST_ARG[dtype] * 0.999], dtype=dtype)
    assert kernels.exp_nonpos(x)[0] >= tiny
    assert ulps(kernels.exp_nonpos(x), np.exp(x.astype(np.float64)), dtype).max() <= 2.0
