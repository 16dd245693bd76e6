# cython: language_level=3
"""``prefetch(p)``: ask the cache for the line holding ``p`` now, without waiting for it.

The kernels read some data one random row at a time (a shuffled batch's
targets and labels): issued at the start of a step, the misses overlap the
forward GEMMs instead of stalling the loss pass.  A hint only, never a fault
(any address may be prefetched); a no-op where the compiler has no intrinsic.
"""

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define cymlp_prefetch(p) __builtin_prefetch((const void*)(p), 0, 3)
    #elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
    #include <xmmintrin.h>
    #define cymlp_prefetch(p) _mm_prefetch((const char*)(p), _MM_HINT_T0)
    #else
    #define cymlp_prefetch(p) ((void)(p))
    #endif
    """
    void prefetch "cymlp_prefetch"(const void* p) noexcept nogil
