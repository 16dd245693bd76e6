# cython: language_level=3
"""Guarded OpenMP calls: the source builds with or without OpenMP.

Without ``-fopenmp`` the ``prange`` pragmas are ignored by the compiler and
these functions fall back to the serial answers (as in scikit-learn's
``_openmp_helpers.pxd``).
"""

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define CYMLP_OPENMP_ENABLED 1
    /* an orphaned barrier: it binds to the parallel region the caller runs in */
    static inline void cymlp_barrier(void) {
    #pragma omp barrier
    }
    #else
    #define CYMLP_OPENMP_ENABLED 0
    static int omp_get_max_threads(void) { return 1; }
    static int omp_get_thread_num(void) { return 0; }
    static int omp_get_num_threads(void) { return 1; }
    static inline void cymlp_barrier(void) {}
    #endif
    #ifndef CYMLP_DEBUG
    #define CYMLP_DEBUG 0
    #endif
    #ifndef CYMLP_SANITIZE
    #define CYMLP_SANITIZE 0
    #endif
    """
    bint CYMLP_OPENMP_ENABLED
    bint CYMLP_DEBUG
    bint CYMLP_SANITIZE
    int omp_get_max_threads() noexcept nogil
    int omp_get_thread_num() noexcept nogil
    int omp_get_num_threads() noexcept nogil
    void barrier "cymlp_barrier"() noexcept nogil
