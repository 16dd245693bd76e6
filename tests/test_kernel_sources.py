"""Checks a machine runs on the kernel sources (cymlp/*.pyx, *.pxd): the
conventions docs/architecture.md describes, so that they cannot drift.

- Every pointer or typed-memoryview argument of a kernel function definition
  is tagged ``# IN``, ``# OUT`` or ``# INOUT`` on its own line, as
  scikit-learn tags its kernels (scalars are passed by value: IN).
- The stop flag shared by OpenMP threads goes through the atomic helpers
  of cymlp/_atomic.pxd, never a ``volatile`` access.

(File sizes and import cycles are checked for every module by test_layout.py.)

The sources are read from the checkout; the test skips where they are not
shipped (the installed wheel holds no .pyx).
"""

import os
import re

import pytest

SOURCE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "cymlp")
FILES = sorted(f for f in os.listdir(SOURCE) if f.endswith((".pyx", ".pxd"))) if os.path.isdir(SOURCE) else []
pytestmark = pytest.mark.skipif(not FILES, reason="no cymlp/*.pyx sources next to the tests")

TAG = re.compile(r"#\s*(IN|OUT|INOUT)\b")
# a function definition (with a body): cdef/cpdef/def ... name(...) ... :
START = re.compile(r"^(?:cdef|cpdef|def)\s+(?:inline\s+)?(?!class\b)[^=(]*?\b(\w+)\s*\(")


def _read(name):
    with open(os.path.join(SOURCE, name), encoding="utf-8") as f:
        return f.read().splitlines()


def function_signatures(lines):
    """(name, [signature lines]) of every function definition with a body."""
    i = 0
    while i < len(lines):
        match = START.match(lines[i])
        if not match:
            i += 1
            continue
        j, depth = i, 0
        while True:
            code = lines[j].split("#", 1)[0]
            depth += code.count("(") - code.count(")")
            if depth <= 0 and code.rstrip().endswith(":"):
                yield match.group(1), lines[i:j + 1]
                break
            if depth <= 0 and not code.rstrip().endswith((",", "(")):
                break           # a declaration (.pxd): no body
            j += 1
        i = j + 1


def untagged_arguments(signature):
    """The pointer or memoryview arguments on lines without an IN/OUT tag."""
    text_lines = list(signature)
    text_lines[0] = text_lines[0].split("(", 1)[1]
    bad = []
    for line in text_lines:
        code = line.split("#", 1)[0]
        if "noexcept" in code or "except" in code:
            code = code.split(")")[0]
        args = [a for a in code.split(",") if a.strip()]
        pointers = [a for a in args if "*" in a or "[" in a]
        if pointers and not TAG.search(line):
            bad.append(line.strip())
        if len(pointers) > 1:
            bad.append(f"{line.strip()}  (one tagged argument per line)")
    return bad


def kernel_functions():
    for name in FILES:
        for func, signature in function_signatures(_read(name)):
            # Python-level checks (``except *``/``except -1``, no nogil) take Python objects
            if "nogil" in "".join(signature) or any("[" in line for line in signature):
                yield name, func, signature


def test_the_signature_reader_sees_the_kernels():
    names = {(f, func) for f, func, _ in kernel_functions()}
    for expected in [("_kernels_block.pyx", "block_forward"), ("_kernels_update.pyx", "layer_update"),
                     ("_kernels.pyx", "step_chunked"), ("_kernels_split.pyx", "step_split"),
                     ("_kernels_parallel.pyx", "worker_steps"), ("_kernels_passes.pyx", "forward"),
                     ("_kernels_common.pxd", "worker_block")]:
        assert expected in names
    assert untagged_arguments(["cdef void f(floating* a, const double* b) noexcept nogil:"])
    assert not untagged_arguments(["cdef void f(floating* a,   # OUT", "int n) noexcept nogil:"])


def test_every_pointer_and_array_argument_of_a_kernel_is_tagged_in_or_out():
    bad = {f"{name}:{func}": untagged_arguments(signature)
           for name, func, signature in kernel_functions() if untagged_arguments(signature)}
    assert not bad, f"arguments without # IN / # OUT / # INOUT: {bad}"


def test_threads_share_flags_through_atomics_only():
    for name in FILES:
        text = "\n".join(_read(name))
        assert "volatile int" not in text, name
    parallel = "\n".join(_read("_kernels_parallel.pyx"))
    assert "flag_get(failed)" in parallel and "flag_set(failed)" in parallel
