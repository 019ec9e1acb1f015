/* Mamba's causal depthwise convolution over time followed by SiLU, on the CPU, float32, channels last:
 * forward and backward.
 *
 * Built and loaded by layers/ckernel.py, called by layers/conv_kernel.py (plain C11 with GNU vector
 * extensions, no Python or torch headers; called through ctypes).
 *
 *   c[b, t, e] = bias[e] + sum_k w[k, e] x[b, t - K + 1 + k, e]   (x before the first step is 0)
 *   y = silu(c) = c sigmoid(c)
 *
 * x [B, L, E] with strides (sb, st, 1), so that Mamba's half of its input projection's output is read in
 * place; w [K, E] (the transposed [E, K] of nn.Conv1d); y, gy, gx [B, L, E] contiguous. The backward
 * recomputes c from x (K multiply-adds per element) instead of keeping it:
 *
 *   gc = gy silu'(c) = gy s (1 + c (1 - s)),  s = sigmoid(c)
 *   gx[t] = sum_k w[k] gc[t + K - 1 - k] (steps past the end give 0),  gw[k] = sum_{b,t} gc[t] x[t - K + 1 + k],
 *   gbias = sum_{b,t} gc[t]
 *
 * sigmoid is vecmath.h's sigmoidv, through exp2v (relative error about float32's rounding).
 * Channels are processed W at a time (a last partial vector padded with zeros), each block swept through time
 * with its weights and sums in registers; Mamba's width, 4, is compiled as a constant. Batch rows are split
 * across OpenMP threads when built with -fopenmp (inside PyTorch the process's libgomp, so the threads are
 * PyTorch's own); gw and gbias, sums over the batch, are kept per thread, in slots the caller zeroes and adds
 * up. Both functions return 0, or 1 for a width above MAX_K (which the caller rules out first) or when a
 * working buffer could not be allocated.
 */
#include <stdint.h>
#include <stdlib.h>

#include "threads.h"
#include "vecmath.h"

#define MAX_K 16 /* the widest convolution; Mamba's is 4 */
#define INLINE static inline __attribute__((always_inline))

/* c at step t of one batch row, channels [e, e + w), with the weights wk and the bias vb of those channels */
INLINE vf conv_at(int64_t t, int64_t K, int64_t st, int64_t e, int64_t w, const float *xb, const vf *wk, vf vb) {
    vf c = vb;
    for (int64_t k = 0; k < K; k++) {
        int64_t src = t - K + 1 + k;
        if (src >= 0) c += wk[k] * load(xb + src * st + e, w);
    }
    return c;
}

/* one batch row's channels [e, e + w) */
INLINE void fwd_block(int64_t L, int64_t E, int64_t K, int64_t st, int64_t e, int64_t w, const float *xb,
                      const float *wt, const float *bias, float *yb) {
    vf wk[MAX_K], vb = bias ? load(bias + e, w) : splat(0.0f);
    for (int64_t k = 0; k < K; k++) wk[k] = load(wt + k * E + e, w);
    for (int64_t t = 0; t < L; t++) {
        vf c = conv_at(t, K, st, e, w, xb, wk, vb);
        store(yb + t * E + e, c * sigmoidv(c), w);
    }
}

int causal_conv_silu_fwd_f32(int64_t B, int64_t L, int64_t E, int64_t K, int64_t sb, int64_t st, const float *x,
                             const float *wt, const float *bias, float *y, int threads) {
    if (K > MAX_K) return 1;
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t b = 0; b < B; b++)
        for (int64_t e = 0; e < E; e += W) {
            int64_t w = E - e < W ? E - e : W;
            if (K == 4 && w == W) fwd_block(L, E, 4, st, e, W, x + b * sb, wt, bias, y + b * L * E);
            else fwd_block(L, E, K, st, e, w, x + b * sb, wt, bias, y + b * L * E);
        }
    return 0;
}

/* one batch row's channels [e, e + w): gx written, the sums added into gw and gbias; gc a buffer of L + K */
INLINE void bwd_block(int64_t L, int64_t E, int64_t K, int64_t st, int64_t e, int64_t w, const float *xb,
                      const float *wt, const float *bias, const float *gyb, float *gxb, float *gw, float *gbias,
                      vf *gc) {
    vf wk[MAX_K], gwk[MAX_K], vb = bias ? load(bias + e, w) : splat(0.0f), gb = splat(0.0f);
    for (int64_t k = 0; k < K; k++) wk[k] = load(wt + k * E + e, w), gwk[k] = splat(0.0f);
    for (int64_t t = 0; t < L; t++) {
        vf c = conv_at(t, K, st, e, w, xb, wk, vb), s = sigmoidv(c);
        vf g = load(gyb + t * E + e, w) * s * (1.0f + c * (1.0f - s));
        gc[t] = g;
        gb += g;
        for (int64_t k = 0; k < K; k++) {
            int64_t src = t - K + 1 + k;
            if (src >= 0) gwk[k] += g * load(xb + src * st + e, w);
        }
    }
    for (int64_t t = L; t < L + K; t++) gc[t] = splat(0.0f);
    for (int64_t t = 0; t < L; t++) {
        vf acc = splat(0.0f);
        for (int64_t k = 0; k < K; k++) acc += wk[k] * gc[t + K - 1 - k];
        store(gxb + t * E + e, acc, w);
    }
    for (int64_t k = 0; k < K; k++) store(gw + k * E + e, load(gw + k * E + e, w) + gwk[k], w);
    store(gbias + e, load(gbias + e, w) + gb, w);
}

/* gw_parts [threads, K, E] and gbias_parts [threads, E] zeroed by the caller; slot i the sums over thread i's
 * batch rows */
int causal_conv_silu_bwd_f32(int64_t B, int64_t L, int64_t E, int64_t K, int64_t sb, int64_t st, const float *x,
                             const float *wt, const float *bias, const float *gy, float *gx, float *gw_parts,
                             float *gbias_parts, int threads) {
    if (K > MAX_K) return 1;
    int failed = 0;
    #pragma omp parallel num_threads(threads)
    {
        float *gw = gw_parts + thread_slot() * K * E, *gbias = gbias_parts + thread_slot() * E;
        vf *gc = aligned_alloc(sizeof(vf), (L + K) * sizeof(vf)); /* gc of one channel block, then K zeros */
        if (!gc) failed = 1;
        #pragma omp for schedule(static)
        for (int64_t b = 0; b < B; b++) {
            if (!gc) continue;
            for (int64_t e = 0; e < E; e += W) {
                int64_t w = E - e < W ? E - e : W;
                if (K == 4 && w == W)
                    bwd_block(L, E, 4, st, e, W, x + b * sb, wt, bias, gy + b * L * E, gx + b * L * E, gw, gbias, gc);
                else
                    bwd_block(L, E, K, st, e, w, x + b * sb, wt, bias, gy + b * L * E, gx + b * L * E, gw, gbias, gc);
            }
        }
        free(gc);
    }
    return failed;
}
