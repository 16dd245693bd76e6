# cython: language_level=3
"""e^x for x <= 0 in plain C arithmetic that the compiler vectorises.

Every exponential in the kernels has a non-positive argument: the sigmoid's
e^-|z|, the softmax's and the log-sum-exp's e^(z - max).  libm's ``exp`` is
a call per element, which keeps those loops scalar (a quarter of a 784-30-10
sigmoid epoch); these functions are branch-free (selects, integer adds and
shifts, a polynomial), so ``-O3`` turns a loop over them into SIMD code on
any x86-64 (SSE2) or ARM64 compiler, with no ``-ffast-math``.

Method: x = k·ln2 + r with k = round(x/ln2) (the 1.5·2^23 / 1.5·2^52
rounding trick, whose bit pattern also carries k), ln2 split in a high part
with trailing zero bits (k·LN2_HI is exact) and a low part; e^r by its
Taylor polynomial to r^7 (float) or r^13 (double), whose truncation error
is below 1e-8 (1e-17) relative on |r| <= ln2/2; then times 2^k built from
bits.  Accuracy (tests/test_vmath.py, against NumPy's exp on every float32
in [-87.3, 0] and 10^6 float64s in [-708, 0]): at most 2 ulp.  Results below
the smallest normal number (x < -87.33 in float32, x < -708.39 in float64)
are 0, as the kernels' flush-to-zero makes them anyway (cymlp/_fpu.pxd);
NaN stays NaN and -inf gives 0.  Valid, though not needed, up to x = 88
(float32) and 709 (float64).
"""

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>

    static inline float cymlp_exp_nonpos_f32(float x) {
        const float shift = 12582912.0f;                 /* 1.5 * 2^23 */
        float kf = x * 1.44269504088896341f + shift;    /* round(x / ln2) + shift */
        uint32_t bits;
        memcpy(&bits, &kf, sizeof bits);
        bits = (bits + 127u) << 23;                      /* 2^k: the shift's bits fall off */
        float scale;
        memcpy(&scale, &bits, sizeof scale);
        kf -= shift;
        float r = (x - kf * 0.693359375f) - kf * -2.12194440e-4f;
        float p = 1.0f / 5040.0f;
        p = p * r + 1.0f / 720.0f;
        p = p * r + 1.0f / 120.0f;
        p = p * r + 1.0f / 24.0f;
        p = p * r + 1.0f / 6.0f;
        p = p * r + 0.5f;
        p = p * r + 1.0f;
        p = p * r + 1.0f;
        float y = p * scale;
        y = x < -87.33654f ? 0.0f : y;
        return x != x ? x : y;                           /* NaN in, NaN out */
    }

    static inline double cymlp_exp_nonpos_f64(double x) {
        const double shift = 6755399441055744.0;         /* 1.5 * 2^52 */
        double kd = x * 1.4426950408889634 + shift;
        uint64_t bits;
        memcpy(&bits, &kd, sizeof bits);
        bits = (bits + 1023u) << 52;
        double scale;
        memcpy(&scale, &bits, sizeof scale);
        kd -= shift;
        double r = (x - kd * 6.93147180369123816490e-01) - kd * 1.90821492927058770002e-10;
        double p = 1.0 / 6227020800.0;                   /* 1/13! */
        p = p * r + 1.0 / 479001600.0;
        p = p * r + 1.0 / 39916800.0;
        p = p * r + 1.0 / 3628800.0;
        p = p * r + 1.0 / 362880.0;
        p = p * r + 1.0 / 40320.0;
        p = p * r + 1.0 / 5040.0;
        p = p * r + 1.0 / 720.0;
        p = p * r + 1.0 / 120.0;
        p = p * r + 1.0 / 24.0;
        p = p * r + 1.0 / 6.0;
        p = p * r + 0.5;
        p = p * r + 1.0;
        p = p * r + 1.0;
        double y = p * scale;
        y = x < -708.3964185322641 ? 0.0 : y;
        return x != x ? x : y;
    }
    """
    float exp_nonpos_f32 "cymlp_exp_nonpos_f32"(float x) noexcept nogil
    double exp_nonpos_f64 "cymlp_exp_nonpos_f64"(double x) noexcept nogil
