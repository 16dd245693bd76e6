# cython: language_level=3
"""Wider SIMD for the elementwise passes, chosen when the module loads.

Wheels are built for the baseline of their architecture (SSE2 on x86-64: 4
floats or 2 doubles per instruction), so that they run on any CPU of it.
The kernels' elementwise passes (bias and activation, softmax, σ', the loss
and output error) are declared ``cdef cloned``: with GCC on
x86-64 Linux (glibc) each is compiled three times, for AVX-512, AVX2 and
the baseline (``target_clones``), and the dynamic loader binds the best one
the CPU has (an ifunc); with other compilers and platforms ``cloned`` is
plain ``void``.  The build passes ``-ffp-contract=off``, so the wider clones
compute the same operations, rounded the same way: the results do not
depend on which clone runs.  (Sanitizer builds, ``CYMLP_SANITIZE=1``, are
not cloned.)  Functions inlined into a cloned one (the
exponentials of ``_vmath.pxd``, the activation loops) are compiled with it.
A cloned function is called from its own module only (the others call a
plain wrapper).  ``cymlp._kernels.SIMD_CLONES`` says whether this build has
the clones.  Measured: a float64 epoch of the learner's 1000-900-900-900-10
sigmoid network 7-8% faster on an AVX-512 Xeon (its exponentials); the
other cases measured moved by less than 1% (benchmarks/README.md).
"""

cdef extern from *:
    """
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__) \\
        && !(defined(CYMLP_SANITIZE) && CYMLP_SANITIZE)
    #define CYMLP_SIMD_CLONES 1
    #define CYMLP_CLONED __attribute__((target_clones("avx512f", "avx2", "default"))) void
    /* a module that calls a cloned function through Cython's cross-module pointer
       declares that pointer with the attribute too, where GCC ignores it */
    #pragma GCC diagnostic ignored "-Wattributes"
    #else
    #define CYMLP_SIMD_CLONES 0
    #define CYMLP_CLONED void
    #endif
    """
    ctypedef void cloned "CYMLP_CLONED"
    bint CYMLP_SIMD_CLONES
