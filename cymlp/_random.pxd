# cython: language_level=3
"""Counter-based random numbers for dropout: the C twin of reference.dropout_masks.

A mask bit is a hash of its coordinates (seed, epoch, step, layer, row, unit),
not a draw from a stream, so it is the same on both paths and for every thread
count.  ``dropout_key`` hashes the coordinates above the (row, unit) grid once
per layer and step; ``keep_unit`` finishes the hash for one unit.
"""

from libc.stdint cimport uint64_t


cdef inline uint64_t mix64(uint64_t x) noexcept nogil:
    """splitmix64's finaliser (arithmetic modulo 2**64)."""
    x = (x ^ (x >> 30)) * <uint64_t>0xBF58476D1CE4E5B9ULL
    x = (x ^ (x >> 27)) * <uint64_t>0x94D049BB133111EBULL
    return x ^ (x >> 31)


cdef inline uint64_t dropout_key(uint64_t seed, uint64_t epoch, uint64_t step,
                                 uint64_t layer) noexcept nogil:
    return mix64(mix64(mix64(mix64(seed) ^ epoch) ^ step) ^ layer)


cdef inline bint keep_unit(uint64_t key, uint64_t row, uint64_t unit, double rate) noexcept nogil:
    """True when unit ``unit`` of batch row ``row`` survives dropout at ``rate``."""
    cdef uint64_t bits = mix64(key ^ ((row << 32) | unit))
    return <double>(bits >> 11) * (1.0 / 9007199254740992.0) >= rate
