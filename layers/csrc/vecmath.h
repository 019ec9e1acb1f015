/* Float vectors for the C kernels of layers/csrc: W lanes in GNU vector extensions (GCC and clang turn them
 * into AVX2/AVX-512 or NEON code, or scalar code without them), a lane-masked load and store for a last
 * partial vector, a select, exp2 and the logistic sigmoid. Included by the kernels; layers/ckernel.py hashes it
 * into every kernel's build key, so a change here rebuilds them. */
#ifndef CROSSALIGN_VECMATH_H
#define CROSSALIGN_VECMATH_H

#include <stdint.h>
#include <string.h>

#define W 8
typedef float vf __attribute__((vector_size(4 * W)));
typedef int32_t vi __attribute__((vector_size(4 * W)));
typedef uint32_t vu __attribute__((vector_size(4 * W)));

/* w lanes from p, the others 0; a whole vector (w == W) is one unaligned vector load, since a copy of a
 * constant size is inlined where one of w lanes is a call to memcpy. The two cases copy into separate
 * variables: one variable for both would have its address taken by the call, so GCC would keep even a whole
 * vector in memory (a store and a reload per use; twice the time of a loop of arithmetic like gelu.c's) */
static inline vf load(const float *p, int64_t w) {
    if (w == W) {
        vf v;
        memcpy(&v, p, sizeof v);
        return v;
    }
    vf v = {0};
    memcpy(&v, p, w * sizeof(float));
    return v;
}
static inline void store(float *p, vf v, int64_t w) {
    if (w == W) {
        memcpy(p, &v, sizeof v);
        return;
    }
    vf copy = v;
    memcpy(p, &copy, w * sizeof(float));
}
/* Elementwise kernels work on INTERLEAVE vectors at a time, one step (a few operations) for all of them before the
 * next: a single vector's chain of dependent operations (an exp, a division, a polynomial: 30-50 of them) waits on
 * their latencies, and the out-of-order core overlaps only about two such chains by itself. EACH(k, m) is that
 * step's loop, unrolled where m is a constant. The erf GELU kernel on [3200, 1536], one core: 1.34-1.41x. */
#define INTERLEAVE 4
#define EACH(k, m) _Pragma("GCC unroll 4") for (int k = 0; k < (m); k++)

static inline vf splat(float x) { return (vf){0} + x; }
static inline vf blend(vi mask, vf yes, vf no) { return (vf)(((vi)yes & mask) | ((vi)no & ~mask)); }
static inline float hsum(vf v) { float s = 0.0f; for (int k = 0; k < W; k++) s += v[k]; return s; }

/* 2^f for |f| <= 1/2, its Taylor polynomial of degree 6 (relative error < 2e-7, about float32's rounding) */
static inline vf exp2_fraction(vf f) {
    vf p = splat(1.540353039e-04f); /* coefficients ln(2)^k / k! */
    p = p * f + 1.333355815e-03f;
    p = p * f + 9.618129108e-03f;
    p = p * f + 5.550410866e-02f;
    p = p * f + 2.402265070e-01f;
    p = p * f + 6.931471806e-01f;
    return p * f + 1.000000000e+00f;
}

/* 2^x for x <= 128 (or NaN): 2^i 2^f with i = round(x) put in the exponent bits and 2^f, |f| <= 1/2, from its
 * Taylor polynomial of degree 6 (relative error < 2e-7, about float32's rounding). x is clamped below at -127
 * first, so that below about -126.5 the exponent bits are 0 (the result is 0, where float32 turns subnormal, -inf
 * included); x = 128 gives +inf; a NaN x passes the clamp and the polynomial, and comes out NaN. Rounding by the
 * 1.5 2^23 shifter: r = x + 1.5 2^23 holds round(x) (to nearest even) in its low mantissa bits, so round(x) and
 * f = x - round(x) take three operations, where converting to integers and back takes six. For exponents <= 0 by
 * construction: the softmax's (attention.c), the erf GELU's e^(-x^2 / 2) (gelu.c), softplus's e^-|v| */
static inline vf exp2_nonpositive(vf x) {
    const float shifter = 12582912.0f; /* 1.5 2^23 */
    x = blend(x < -127.0f, splat(-127.0f), x);
    vf r = x + shifter;
    vf f = x - (r - shifter); /* [-1/2, 1/2] */
    /* the shifter's bits plus round(x), minus the shifter's bits, plus the exponent bias, into the exponent */
    return exp2_fraction(f) * (vf)(((vu)r - (vu)splat(shifter) + 127u) << 23);
}

/* 2^x for any x: clamped at 128 above (from about 127.5 the result is +inf), then exp2_nonpositive. Rounding by
 * the shifter (converting to integers and back before: the scan's forward + backward 1.07-1.11x, the tanh GELU
 * 1.12x) */
static inline vf exp2v(vf x) { return exp2_nonpositive(blend(x > 128.0f, splat(128.0f), x)); }

/* 1 / (1 + e^-x), through exp2v: 0 below about -88 (e^-x overflows to inf), 1 above about 17 */
static inline vf sigmoidv(vf x) { return 1.0f / (1.0f + exp2v(x * -1.4426950408889634f)); }

#endif
