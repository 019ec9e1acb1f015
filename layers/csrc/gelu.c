/* GELU with the tanh approximation on the CPU, float32: the function, or the function and its derivative.
 *
 * Built and loaded by layers/ckernel.py, called by layers/fast_ops.py (plain C11 with GNU vector
 * extensions, no Python or torch headers; called through ctypes).
 *
 * gelu(x) = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3) (Hendrycks and Gimpel, "Gaussian Error
 * Linear Units", 2016): GPT-2's activation. Since 1 + tanh(u) = 2 sigmoid(2u), gelu(x) = x s with
 * s = 1 / (1 + exp(-2u)), and gelu'(x) = s + x s (1 - s) 2 u'(x), u'(x) = sqrt(2/pi) (1 + 3 0.044715 x^2).
 * PyTorch computes the tanh, which its CPU build runs at about 4 ns per element on an AVX2 core; exp here
 * is vecmath.h's exp2v, arithmetic that vectorises.
 *
 * s and the derivative's terms are computed at x clamped to [-CLAMP, CLAMP]: beyond it s is 0 or 1 to
 * float32 precision, and the clamp keeps x^3 and exp finite; x itself multiplies s unclamped, so gelu(x) = x
 * for large x. A NaN x passes the clamp (its comparisons are false) and gives NaN; +-inf give +-inf forward
 * (the limit; PyTorch's 0.5 x (1 + tanh u) gives NaN at -inf) and a gradient of 1 or 0.
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

/* y = gelu(x); d, when not NULL, receives gelu'(x) from the same pass: for training, where the backward is then
 * one multiply, g d, and d is kept in place of x (the same memory; PyTorch keeps x and computes the tanh
 * again in its backward) */
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
