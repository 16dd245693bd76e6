# cython: language_level=3
"""A flag that one OpenMP thread sets and the others poll, read and written atomically.

Plain (even ``volatile``) loads and stores of one variable from several
threads are a data race, which C11 leaves undefined; these are atomic, with
release (set) and acquire (get) ordering, and compile to plain moves on x86
and ARM.  One source for every compiler we build with: GCC and clang (Apple's
too) through their ``__atomic`` builtins, MSVC through its interlocked
intrinsics (its C mode has no ``<stdatomic.h>`` before VS 2022 17.5), any
other OpenMP compiler through ``#pragma omp atomic`` (OpenMP 3.1), and a
serial build (no other thread) through plain accesses.
"""

cdef extern from *:
    """
    #if defined(_MSC_VER) && !defined(__clang__)
    #include <intrin.h>
    /* long is 32 bits on Windows, as int */
    static __inline int cymlp_flag_get(int* p) {
        return (int)_InterlockedCompareExchange((volatile long*)p, 0, 0);
    }
    static __inline void cymlp_flag_set(int* p) { _InterlockedExchange((volatile long*)p, 1); }
    #elif defined(__GNUC__) || defined(__clang__)
    static inline int cymlp_flag_get(int* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void cymlp_flag_set(int* p) { __atomic_store_n(p, 1, __ATOMIC_RELEASE); }
    #elif defined(_OPENMP)
    static inline int cymlp_flag_get(int* p) {
        int v;
        _Pragma("omp atomic read")
        v = *p;
        return v;
    }
    static inline void cymlp_flag_set(int* p) {
        _Pragma("omp atomic write")
        *p = 1;
    }
    #else
    static inline int cymlp_flag_get(int* p) { return *p; }
    static inline void cymlp_flag_set(int* p) { *p = 1; }
    #endif
    """
    int flag_get "cymlp_flag_get"(int* p) noexcept nogil
    void flag_set "cymlp_flag_set"(int* p) noexcept nogil
