/* GELU on the CPU, float32 or bfloat16, in its two forms: the function, or the function and its derivative.
 *
 * Built and loaded by layers/ckernel.py, called by layers/fast_ops.py (plain C11 with GNU vector
 * extensions, no Python or torch headers; called through ctypes).
 *
 * GELU (Hendrycks and Gimpel, "Gaussian Error Linear Units", 2016) is x Phi(x), Phi the standard normal's CDF.
 * In training each kernel also writes the derivative from the same pass, kept in place of x (the same memory;
 * PyTorch keeps x and computes the function's costly part again in its backward), so the backward is one
 * multiply.
 *
 * The tanh form, GPT-2's activation: gelu(x) = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3). Since
 * 1 + tanh(u) = 2 sigmoid(2u), gelu(x) = x s with s = 1 / (1 + exp(-2u)), and gelu'(x) = s + x s (1 - s) 2 u'(x),
 * u'(x) = sqrt(2/pi) (1 + 3 0.044715 x^2). PyTorch computes the tanh, which its CPU build runs at about 4 ns per
 * element on an AVX2 core; exp here is vecmath.h's exp2v, arithmetic that vectorises. s and the derivative's
 * terms are computed at x clamped to [-CLAMP, CLAMP]: beyond it s is 0 or 1 to float32 precision, and the clamp
 * keeps x^3 and exp finite; x itself multiplies s unclamped, so gelu(x) = x for large x. A NaN x passes the clamp
 * (its comparisons are false) and gives NaN; +-inf give +-inf forward (PyTorch's 0.5 x (1 + tanh u) gives NaN at
 * -inf) and a gradient of 1 or 0.
 *
 * The erf form, BERT's (and MiniLM's) activation: gelu(x) = x Phi(x), gelu'(x) = Phi(x) + x phi(x), phi(x) =
 * e^(-x^2/2) / sqrt(2 pi). With z = |x| / sqrt(2), erfc(z) = 2 Phi(-|x|) comes from Abramowitz and Stegun's
 * formula 7.1.26 (Handbook of Mathematical Functions, 1964: erfc(z) = t P(t) e^(-z^2), t = 1 / (1 + p z), P of
 * degree 4, absolute error below 1.5e-7), the form PyTorch's vectorised erf uses too; its e^(-z^2) is phi's
 * exponential, so the derivative costs no second exp. Phi(x) = 1 - erfc(z) / 2 for x >= 0 and erfc(z) / 2
 * below, which keeps the left tail's small values (within 1.5 % down to x = -9; PyTorch's float32 1 + erf(x /
 * sqrt(2)) cancels to 0 below about -5.5). Within 4.2e-7 of the float64 function forward (PyTorch's float32:
 * 3.7e-7) and 2.6e-7 for the derivative (PyTorch: 2.6e-7), on [-20, 20]. NaN and -inf give NaN, +inf gives
 * +inf, as PyTorch's; their derivatives are NaN, as PyTorch's.
 */
#include <stdint.h>

#include "vecmath.h"

#define CLAMP 10.0f /* 2u(10) = 87.3: exp(-2u) is below float32's smallest normal number */

static const float K0 = 0.7978845608028654f;  /* sqrt(2/pi) */
static const float K1 = 0.044715f;

#define INLINE static inline __attribute__((always_inline))

/* Elements are float32, or bfloat16 where `bf16` is 1 (input, output and derivative alike; a constant where
 * inlined): bf16 values widen to float32, the function is computed in float32 as for float32 tensors, and the
 * results round to the nearest bf16, as PyTorch's CPU GELU does for a bf16 tensor. */
INLINE vf load_elements(int bf16, const void *p, int64_t i, int64_t w) {
    return bf16 ? load_bf16((const uint16_t *)p + i, w) : load((const float *)p + i, w);
}
INLINE void store_elements(int bf16, void *p, int64_t i, vf v, int64_t w) {
    if (bf16) store_bf16((uint16_t *)p + i, v, w);
    else store((float *)p + i, v, w);
}

/* The kernels below run on blocks of m vectors of w lanes from element i on (m = INTERLEAVE and w = W for whole
 * blocks, m = 1 for the vectors of a last partial block), each step for all m vectors before the next
 * (vecmath.h's EACH). */

/* y = gelu(x), the tanh form, and d = gelu'(x) when d is not NULL, for the m vectors at element i */
INLINE void gelu_tanh_block(int m, int64_t w, int bf16, const void *x, void *y, void *d, int64_t i) {
    vf v[INTERLEAVE], xc[INTERLEAVE], s[INTERLEAVE];
    EACH(k, m) v[k] = load_elements(bf16, x, i + k * W, w);
    EACH(k, m) xc[k] = at_least(v[k], -CLAMP);
    EACH(k, m) xc[k] = at_most(xc[k], CLAMP);
    EACH(k, m) s[k] = 2.0f * K0 * (xc[k] + K1 * xc[k] * xc[k] * xc[k]); /* 2u */
    EACH(k, m) s[k] = s[k] * -1.4426950408889634f;
    exp2v_each(m, s);
    EACH(k, m) s[k] = 1.0f / (1.0f + s[k]); /* sigmoid(2u), as vecmath.h's sigmoidv */
    EACH(k, m) store_elements(bf16, y, i + k * W, v[k] * s[k], w);
    if (d)
        EACH(k, m) store_elements(bf16, d, i + k * W,
                                  s[k] + xc[k] * s[k] * (1.0f - s[k])
                                             * ((2.0f * K0) * (1.0f + (3.0f * K1) * xc[k] * xc[k])), w);
}

/* y = gelu(x), the erf form, and d = gelu'(x) when d is not NULL, for the m vectors at element i */
INLINE void gelu_erf_block(int m, int64_t w, int bf16, const void *x, void *y, void *d, int64_t i) {
    vf v[INTERLEAVE], z[INTERLEAVE], t[INTERLEAVE], gauss[INTERLEAVE], p[INTERLEAVE], cdf[INTERLEAVE];
    EACH(k, m) v[k] = load_elements(bf16, x, i + k * W, w);
    EACH(k, m) z[k] = (vf)((vu)v[k] & ((vu){0} + 0x7fffffffu)) * 0.7071067811865476f; /* |x| / sqrt(2) */
    EACH(k, m) t[k] = 1.0f / (1.0f + 0.3275911f * z[k]);
    EACH(k, m) gauss[k] = z[k] * z[k] * -1.4426950408889634f;
    exp2_nonpositive_each(m, gauss); /* e^(-x^2 / 2) */
    EACH(k, m) p[k] = 1.061405429f * t[k] - 1.453152027f;
    EACH(k, m) p[k] = p[k] * t[k] + 1.421413741f;
    EACH(k, m) p[k] = p[k] * t[k] - 0.284496736f;
    EACH(k, m) p[k] = p[k] * t[k] + 0.254829592f;
    EACH(k, m) p[k] = 0.5f * (p[k] * t[k]) * gauss[k]; /* erfc(z) / 2 = Phi(-|x|) */
    EACH(k, m) cdf[k] = blend(v[k] >= 0.0f, 1.0f - p[k], p[k]);
    EACH(k, m) store_elements(bf16, y, i + k * W, v[k] * cdf[k], w);
    if (d)
        EACH(k, m) store_elements(bf16, d, i + k * W, cdf[k] + v[k] * (0.3989422804014327f * gauss[k]),
                                  w); /* 1 / sqrt(2 pi) */
}

/* either form over n elements: the whole blocks split over threads, a last partial block one vector at a time */
INLINE void gelu(int tanh_form, int bf16, int64_t n, const void *x, void *y, void *d, int threads) {
    int64_t blocks = (n + INTERLEAVE * W - 1) / (INTERLEAVE * W);
    #pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int64_t b = 0; b < blocks; b++) {
        int64_t i = b * INTERLEAVE * W;
        if (i + INTERLEAVE * W <= n) {
            if (tanh_form) gelu_tanh_block(INTERLEAVE, W, bf16, x, y, d, i);
            else gelu_erf_block(INTERLEAVE, W, bf16, x, y, d, i);
        } else
            for (; i < n; i += W) {
                int64_t w = n - i < W ? n - i : W;
                if (tanh_form) gelu_tanh_block(1, w, bf16, x, y, d, i);
                else gelu_erf_block(1, w, bf16, x, y, d, i);
            }
    }
}

/* y = gelu(x), the tanh form; d, when not NULL, receives gelu'(x) from the same pass */
void gelu_tanh_f32(int64_t n, const float *x, float *y, float *d, int threads) { gelu(1, 0, n, x, y, d, threads); }

/* y = gelu(x), the erf form; d, when not NULL, receives gelu'(x) from the same pass */
void gelu_erf_f32(int64_t n, const float *x, float *y, float *d, int threads) { gelu(0, 0, n, x, y, d, threads); }

/* the same for bfloat16 x, y and d (as uint16_t bits) */
void gelu_tanh_bf16(int64_t n, const uint16_t *x, uint16_t *y, uint16_t *d, int threads) {
    gelu(1, 1, n, x, y, d, threads);
}
void gelu_erf_bf16(int64_t n, const uint16_t *x, uint16_t *y, uint16_t *d, int threads) {
    gelu(0, 1, n, x, y, d, threads);
}
