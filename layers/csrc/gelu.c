/* GELU on the CPU, float32, in its two forms: the function, or the function and its derivative.
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
 * sqrt(2)) cancels to 0 below about -5.5). Within 4.2e-7
 * of the float64 function forward (PyTorch's float32: 3.7e-7) and 2.6e-7 for the derivative (PyTorch: 2.6e-7),
 * on [-20, 20]. NaN and -inf give NaN, +inf gives +inf, as PyTorch's; their derivatives are NaN, as PyTorch's.
 */
#include <stdint.h>

#include "vecmath.h"

#define CLAMP 10.0f /* 2u(10) = 87.3: exp(-2u) is below float32's smallest normal number */

static const float K0 = 0.7978845608028654f;  /* sqrt(2/pi) */
static const float K1 = 0.044715f;

static inline vf clamped(vf x) {
    x = blend(x < -CLAMP, splat(-CLAMP), x);
    return blend(x > CLAMP, splat(CLAMP), x);
}

/* s = sigmoid(2u) at x already clamped */
static inline vf sigmoid_2u(vf xc) { return sigmoidv(2.0f * K0 * (xc + K1 * xc * xc * xc)); }

/* y = gelu(x), the tanh form; d, when not NULL, receives gelu'(x) from the same pass */
void gelu_tanh_f32(int64_t n, const float *x, float *y, float *d, int threads) {
    int64_t vectors = (n + W - 1) / W;
    #pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int64_t b = 0; b < vectors; b++) {
        int64_t i = b * W, w = n - i < W ? n - i : W;
        vf v = load(x + i, w), xc = clamped(v), s = sigmoid_2u(xc);
        store(y + i, v * s, w);
        if (d) store(d + i, s + xc * s * (1.0f - s) * ((2.0f * K0) * (1.0f + (3.0f * K1) * xc * xc)), w);
    }
}

/* Phi(x) for the erf form, and e^(-x^2 / 2) into *gauss */
static inline vf normal_cdf(vf x, vf *gauss) {
    vf z = (vf)((vu)x & ((vu){0} + 0x7fffffffu)) * 0.7071067811865476f; /* |x| / sqrt(2) */
    vf t = 1.0f / (1.0f + 0.3275911f * z);
    vf p = splat(1.061405429f);
    p = p * t - 1.453152027f;
    p = p * t + 1.421413741f;
    p = p * t - 0.284496736f;
    p = p * t + 0.254829592f;
    *gauss = exp2_nonpositive(z * z * -1.4426950408889634f);
    vf half_erfc = 0.5f * (p * t) * *gauss;
    return blend(x >= 0.0f, 1.0f - half_erfc, half_erfc);
}

/* y = gelu(x), the erf form; d, when not NULL, receives gelu'(x) from the same pass */
void gelu_erf_f32(int64_t n, const float *x, float *y, float *d, int threads) {
    int64_t vectors = (n + W - 1) / W;
    #pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int64_t b = 0; b < vectors; b++) {
        int64_t i = b * W, w = n - i < W ? n - i : W;
        vf v = load(x + i, w), gauss, cdf = normal_cdf(v, &gauss);
        store(y + i, v * cdf, w);
        if (d) store(d + i, cdf + v * (0.3989422804014327f * gauss), w); /* 1 / sqrt(2 pi) */
    }
}
