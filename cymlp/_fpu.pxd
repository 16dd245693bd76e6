# cython: language_level=3
"""Subnormal numbers flushed to zero while the compiled kernels run.

A saturated sigmoid, a decaying momentum velocity or Adam's ``g²`` drift
into the subnormal range (below 1.2e-38 in float32, 2.2e-308 in float64),
where x86 cores take a microcode assist of ~100 cycles per operation: a
Nielsen network at lr 10 trained 7x slower than at lr 0.1 (issue 12).

``flush_subnormals()`` sets the FTZ (results) and DAZ (inputs) bits of the
calling thread's MXCSR and returns the old register, which
``restore_fpu(old)`` puts back.  Every entry point and every OpenMP
worker's share of the work brackets itself with the pair, so the caller's
thread and libgomp's pooled threads leave a kernel as they entered it.
NaN and ±inf are untouched (no ``-ffast-math``): only numbers smaller than
the smallest normal become ±0.  Elsewhere (ARM, whose cores handle
subnormals at speed, or a compiler without SSE intrinsics) both are no-ops
and ``FLUSH_SUBNORMALS`` is 0.

BLAS threads other than the calling one (batch mode with several threads)
keep their own MXCSR; they receive inputs already flushed by this thread.
"""

cdef extern from *:
    """
    #if defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)
    #include <xmmintrin.h>
    #define CYMLP_FLUSH_SUBNORMALS 1
    /* MXCSR bit 15: flush-to-zero (FTZ), bit 6: denormals-are-zero (DAZ) */
    static inline unsigned int cymlp_flush_subnormals(void) {
        unsigned int old = _mm_getcsr();
        _mm_setcsr(old | 0x8040u);
        return old;
    }
    static inline void cymlp_restore_fpu(unsigned int old) { _mm_setcsr(old); }
    static inline unsigned int cymlp_fpu_flags(void) { return _mm_getcsr() & 0x8040u; }
    #else
    #define CYMLP_FLUSH_SUBNORMALS 0
    static inline unsigned int cymlp_flush_subnormals(void) { return 0; }
    static inline void cymlp_restore_fpu(unsigned int old) { (void)old; }
    static inline unsigned int cymlp_fpu_flags(void) { return 0; }
    #endif
    """
    bint FLUSH_SUBNORMALS "CYMLP_FLUSH_SUBNORMALS"
    unsigned int flush_subnormals "cymlp_flush_subnormals"() noexcept nogil
    void restore_fpu "cymlp_restore_fpu"(unsigned int old) noexcept nogil
    unsigned int fpu_flags "cymlp_fpu_flags"() noexcept nogil
