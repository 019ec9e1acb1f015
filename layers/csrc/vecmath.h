/* Float vectors for the C kernels of layers/csrc: W lanes in GNU vector extensions (GCC and clang turn them
 * into AVX2/AVX-512 or NEON code, or scalar code without them), a lane-masked load and store for a last
 * partial vector (and their bfloat16 forms), a select, exp2 and the logistic sigmoid. Included by the
 * kernels; layers/ckernel.py hashes it into every kernel's build key, so a change here rebuilds them. */
#ifndef CROSSALIGN_VECMATH_H
#define CROSSALIGN_VECMATH_H

#include <stdint.h>
#include <string.h>

#if defined(__AVX__)
#include <immintrin.h>
#endif

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
/* bfloat16: a bf16 is a float's high 16 bits, so it widens to a float by a shift, and a float rounds to the
 * nearest bf16, ties to even, by adding 0x7FFF plus the lowest kept bit before dropping the low half; a NaN
 * becomes the quiet NaN 0x7FC0, as in PyTorch's rounding. One value at a time, then w of them in a vector (the
 * other lanes 0; whole and partial vectors use separate variables, as in load() above). */
static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return f != f ? 0x7FC0 : (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}
typedef uint16_t vh __attribute__((vector_size(2 * W)));
static inline vf load_bf16(const uint16_t *p, int64_t w) {
    if (w == W) {
        vh h;
        memcpy(&h, p, sizeof h);
        return (vf)(__builtin_convertvector(h, vu) << 16);
    }
    vh h = {0};
    memcpy(&h, p, w * sizeof(uint16_t));
    return (vf)(__builtin_convertvector(h, vu) << 16);
}
static inline void store_bf16(uint16_t *p, vf v, int64_t w) {
    vu u = (vu)v;
    vu rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
    vi nan = v != v;
    vh h = __builtin_convertvector((rounded & (vu)~nan) | ((vu)nan & 0x7FC0u), vh);
    if (w == W) {
        memcpy(p, &h, sizeof h);
        return;
    }
    vh copy = h;
    memcpy(p, &copy, w * sizeof(uint16_t));
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

/* x clamped to at least lo, or at most hi, a NaN x passing through: with AVX one vmaxps / vminps (which return
 * their second operand where either is NaN), where GCC turns the compare and select below into two. exp2v's two
 * clamps are 4 of the scan forward's ~32 instructions per state update: [32, 100, 256] x 16 states, one Zen 3
 * core, forward 14.1 -> 12.4 ms, forward + backward 38.1 -> 35.2 ms (results bit-identical) */
static inline vf at_least(vf x, float lo) {
#if defined(__AVX__) && W == 8
    return (vf)_mm256_max_ps(_mm256_set1_ps(lo), (__m256)x);
#else
    return blend(x < lo, splat(lo), x);
#endif
}
static inline vf at_most(vf x, float hi) {
#if defined(__AVX__) && W == 8
    return (vf)_mm256_min_ps(_mm256_set1_ps(hi), (__m256)x);
#else
    return blend(x > hi, splat(hi), x);
#endif
}

/* x[k] = 2^x[k] for k < m (at most INTERLEAVE), x[k] <= 128 (or NaN), each step for all m vectors before the next:
 * 2^x = 2^i 2^f with i = round(x) put in the exponent bits and 2^f, |f| <= 1/2, from its Taylor polynomial of
 * degree 6 (coefficients ln(2)^k / k!; relative error < 2e-7, about float32's rounding). x is clamped below at -127
 * first, so that below about -126.5 the exponent bits are 0 (the result is 0, where float32 turns subnormal, -inf
 * included); x = 128 gives +inf; a NaN x passes the clamp and the polynomial, and comes out NaN. Rounding by the
 * 1.5 2^23 shifter: r = x + 1.5 2^23 holds round(x) (to nearest even) in its low mantissa bits, so round(x) and
 * f = x - round(x) take three operations, where converting to integers and back takes six (the scan's forward +
 * backward 1.07-1.11x, the tanh GELU 1.12x). */
static inline __attribute__((always_inline)) void exp2_nonpositive_each(int m, vf *x) {
    const float shifter = 12582912.0f; /* 1.5 2^23 */
    vf r[INTERLEAVE], p[INTERLEAVE];
    EACH(k, m) x[k] = at_least(x[k], -127.0f);
    EACH(k, m) r[k] = x[k] + shifter;
    EACH(k, m) x[k] = x[k] - (r[k] - shifter); /* f in [-1/2, 1/2] */
    EACH(k, m) p[k] = 1.540353039e-04f * x[k] + 1.333355815e-03f;
    EACH(k, m) p[k] = p[k] * x[k] + 9.618129108e-03f;
    EACH(k, m) p[k] = p[k] * x[k] + 5.550410866e-02f;
    EACH(k, m) p[k] = p[k] * x[k] + 2.402265070e-01f;
    EACH(k, m) p[k] = p[k] * x[k] + 6.931471806e-01f;
    EACH(k, m) p[k] = p[k] * x[k] + 1.0f;
    /* the shifter's bits plus round(x), minus the shifter's bits, plus the exponent bias, into the exponent */
    EACH(k, m) x[k] = p[k] * (vf)(((vu)r[k] - (vu)splat(shifter) + 127u) << 23);
}

/* x[k] = 2^x[k] for any x[k], k < m: clamped at 128 above (from about 127.5 the result is +inf) */
static inline __attribute__((always_inline)) void exp2v_each(int m, vf *x) {
    EACH(k, m) x[k] = at_most(x[k], 128.0f);
    exp2_nonpositive_each(m, x);
}

/* one vector of each: exp2_nonpositive where the exponent is <= 0 by construction (the softmax's in attention.c,
 * softplus's e^-|v|), exp2v elsewhere */
static inline vf exp2_nonpositive(vf x) { exp2_nonpositive_each(1, &x); return x; }
static inline vf exp2v(vf x) { exp2v_each(1, &x); return x; }

/* 1 / (1 + e^-x), through exp2v: 0 below about -88 (e^-x overflows to inf), 1 above about 17 */
static inline vf sigmoidv(vf x) { return 1.0f / (1.0f + exp2v(x * -1.4426950408889634f)); }

#endif
