/* LoRA's rank-r products on the CPU, float32, with its input dropout fused in: forward and backward.
 *
 * Built and loaded by layers/ckernel.py, called by layers/fast_ops.py (plain C11 with GNU vector
 * extensions, no Python or torch headers; called through ctypes).
 *
 * A LoRA Linear (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022) computes
 * out = x W^T + b + s (drop(x) A^T) B^T with A [r, n_in], B [n_out, r] and r small (8). Its products with
 * A and B have one side of r columns: MKL runs them at 12-28 GFLOP/s on an AVX2 core, where the big ones
 * run at 60-70, and the dropout in front of A costs a pass of its own that writes drop(x) for the backward.
 * Here each such product is one pass over the big operand, four rows at a time, with the r-column side
 * (r x n floats, 12 KB for n = 384) staying in the L1 or L2 cache:
 *
 *   lora_down_f32:          a = drop(x) A^T                          [m, r]
 *   lora_up_f32:            out = bias + s a B^T (as a Bt)           [m, n_out], before the base product adds
 *                           x W^T into it: the bias and the adapter cost no pass over the output of their own
 *   lora_up_backward_f32:   ga = s g B (as g Bt^T),  gBt += s a^T g  (the backward of s a B^T)
 *   lora_down_backward_f32: gA += ga^T drop(x),  gx += mask (ga A)   (the backward of drop(x) A^T)
 *
 * drop(x) is never stored: the forward writes one keep flag per element (as dropout.c), and the backward
 * rebuilds each dropped row from x and the flags. The dropout is dropout.c's (philox.h's draws and rule): element
 * (i, k) of the row-major [m, n] input is flat element i n + k of the seed's stream, so a fused LoRA
 * dropout draws exactly the mask that dropout_f32 would on the same contiguous input and seed.
 *
 * Rows are split across OpenMP threads when built with -fopenmp (inside PyTorch the process's libgomp,
 * so the threads are PyTorch's own); the sums over rows (gA, gBt) are kept per thread, in slots the caller
 * zeroes and adds up in a fixed order. Every function returns 0, or 1 when a working buffer could not be
 * allocated.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "philox.h"
#include "threads.h"
#include "vecmath.h"

#define ROWS 4 /* rows of the big operand handled together (see the helpers below) */
#define INLINE static inline __attribute__((always_inline))

INLINE int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Each helper below works on `rows` rows at once: ROWS in the main loop, 1 for the last few. They are
 * inlined with `rows` a constant, so their loops over rows unroll and their sums stay in registers: several
 * rows give each pass over the r x n operand that many independent sums, which hide the multiply-adds'
 * latency, and read each of its vectors once for all of them. */

/* acc[q][j] += y[q][k, k + w) . M[j n + k, k + w) for q < rows, j < jn */
INLINE void dots_step(int64_t n, int64_t k, int64_t w, int64_t jn, int64_t rows, const float *const *y,
                      const float *M, vf acc[ROWS][2]) {
    vf m0 = load(M + k, w), m1 = jn == 2 ? load(M + n + k, w) : splat(0.0f);
    #pragma GCC unroll 4
    for (int64_t q = 0; q < rows; q++) {
        vf v = load(y[q] + k, w);
        acc[q][0] += v * m0;
        acc[q][1] += v * m1;
    }
}

/* out[q r + j] = sum_k y[q][k] M[j n + k] for q < rows, j < r: two rows of M per pass over the y rows */
INLINE void dots(int64_t n, int64_t r, int64_t rows, const float *const *y, const float *M, float *out) {
    for (int64_t j0 = 0; j0 < r; j0 += 2) {
        int64_t jn = min64(2, r - j0), k = 0;
        vf acc[ROWS][2] = {{{0}}};
        for (; k + W <= n; k += W) dots_step(n, k, W, jn, rows, y, M + j0 * n, acc);
        if (k < n) dots_step(n, k, n - k, jn, rows, y, M + j0 * n, acc);
        #pragma GCC unroll 4
        for (int64_t q = 0; q < rows; q++)
            for (int64_t j = 0; j < jn; j++) out[q * r + j0 + j] = hsum(acc[q][j]);
    }
}

/* S[j n + k, k + w) += sum_q c[q r + j] y[q][k, k + w) for j < r */
INLINE void accumulate_step(int64_t n, int64_t r, int64_t k, int64_t w, int64_t rows, const float *const *y,
                            const float *c, float *S) {
    vf v[ROWS];
    #pragma GCC unroll 4
    for (int64_t q = 0; q < rows; q++) v[q] = load(y[q] + k, w);
    for (int64_t j = 0; j < r; j++) {
        vf s = load(S + j * n + k, w);
        #pragma GCC unroll 4
        for (int64_t q = 0; q < rows; q++) s += c[q * r + j] * v[q];
        store(S + j * n + k, s, w);
    }
}

/* S[j n + k] += sum_q c[q r + j] y[q][k] over q < rows, for j < r */
INLINE void accumulate(int64_t n, int64_t r, int64_t rows, const float *const *y, const float *c, float *S) {
    int64_t k = 0;
    for (; k + W <= n; k += W) accumulate_step(n, r, k, W, rows, y, c, S);
    if (k < n) accumulate_step(n, r, k, n - k, rows, y, c, S);
}

/* t[q][k, k + w) = init[k, k + w) + sum_j c[q r + j] A[j n + k, k + w) for q < rows; init NULL: 0 */
INLINE void combination_step(int64_t n, int64_t r, int64_t k, int64_t w, int64_t rows, const float *c,
                             const float *A, const float *init, float *t) {
    vf acc[ROWS];
    #pragma GCC unroll 4
    for (int64_t q = 0; q < rows; q++) acc[q] = init ? load(init + k, w) : splat(0.0f);
    for (int64_t j = 0; j < r; j++) {
        vf a = load(A + j * n + k, w);
        #pragma GCC unroll 4
        for (int64_t q = 0; q < rows; q++) acc[q] += c[q * r + j] * a;
    }
    #pragma GCC unroll 4
    for (int64_t q = 0; q < rows; q++) store(t + q * n + k, acc[q], w);
}

/* t[q][0, n) = init[0, n) + sum_j c[q r + j] A[j n, j n + n) for q < rows (row stride n); init NULL: 0 */
INLINE void combination(int64_t n, int64_t r, int64_t rows, const float *c, const float *A, const float *init,
                        float *t) {
    int64_t k = 0;
    for (; k + W <= n; k += W) combination_step(n, r, k, W, rows, c, A, init, t);
    if (k < n) combination_step(n, r, k, n - k, rows, c, A, init, t);
}

/* gx[q][k] += mask_q[k] sum_j c[q r + j] A[j n + k] for q < rows, through t [rows, n]; mask_q the keep flags
 * f[q] times scale, or 1 when f is NULL */
INLINE void add_combination(int64_t n, int64_t r, int64_t rows, const float *c, const float *A,
                            const int8_t *const *f, float scale, float *const *gx, float *t) {
    combination(n, r, rows, c, A, NULL, t);
    for (int64_t q = 0; q < rows; q++) {
        float *g = gx[q];
        const float *tq = t + q * n;
        if (f) {
            const int8_t *fq = f[q];
            for (int64_t k = 0; k < n; k++) g[k] += tq[k] * (fq[k] ? scale : 0.0f);
        } else {
            for (int64_t k = 0; k < n; k++) g[k] += tq[k];
        }
    }
}

/* a = drop(x) A^T: x [m, n], A [r, n], a [m, r]. threshold > 0: dropout as dropout_f32 with (seed,
 * threshold, scale), keep flags into flags [m, n] when not NULL; threshold <= 0: no dropout (a = x A^T). */
int lora_down_f32(int64_t m, int64_t n, int64_t r, const float *x, const float *A, float *a, uint64_t seed,
                  int32_t threshold, float scale, int8_t *flags, int threads) {
    int failed = 0;
    #pragma omp parallel num_threads(threads)
    {
        float *xd = threshold > 0 ? malloc(n * (ROWS * sizeof(float) + sizeof(uint16_t))) : NULL;
        if (threshold > 0 && !xd) failed = 1;
        #pragma omp for schedule(static)
        for (int64_t i0 = 0; i0 < m; i0 += ROWS) {
            if (threshold > 0 && !xd) continue;
            int64_t rows = min64(ROWS, m - i0);
            const float *y[ROWS];
            for (int64_t q = 0; q < rows; q++) {
                int64_t i = i0 + q;
                y[q] = x + i * n;
                if (threshold > 0) {
                    uint16_t *draws = (uint16_t *)(xd + ROWS * n);
                    philox_draws(i * n, n, seed, draws);
                    dropout_apply_f32(n, draws, threshold, scale, y[q], xd + q * n, flags ? flags + i * n : NULL);
                    y[q] = xd + q * n;
                }
            }
            if (rows == ROWS) dots(n, r, ROWS, y, A, a + i0 * r);
            else for (int64_t q = 0; q < rows; q++) dots(n, r, 1, y + q, A, a + (i0 + q) * r);
        }
        free(xd);
    }
    return failed;
}

/* out = bias + s a Bt: a [m, r], Bt = B^T [r, n], bias [n] or NULL (0), out [m, n] */
int lora_up_f32(int64_t m, int64_t n, int64_t r, const float *a, const float *Bt, const float *bias, float s,
                float *out, int threads) {
    int failed = 0;
    #pragma omp parallel num_threads(threads)
    {
        float *c = malloc(ROWS * r * sizeof(float));
        if (!c) failed = 1;
        #pragma omp for schedule(static)
        for (int64_t i0 = 0; i0 < m; i0 += ROWS) {
            if (!c) continue;
            int64_t rows = min64(ROWS, m - i0);
            for (int64_t j = 0; j < rows * r; j++) c[j] = s * a[i0 * r + j];
            float *t = out + i0 * n;
            if (rows == ROWS) combination(n, r, ROWS, c, Bt, bias, t);
            else for (int64_t q = 0; q < rows; q++) combination(n, r, 1, c + q * r, Bt, bias, t + q * n);
        }
        free(c);
    }
    return failed;
}

/* The backward of out += s a Bt (a [m, r], Bt = B^T [r, n], g = dLoss/dout [m, n]):
 * ga = s g Bt^T [m, r], and gBt_parts[t] [r, n] += s a^T g over thread t's rows. */
int lora_up_backward_f32(int64_t m, int64_t n, int64_t r, const float *g, const float *Bt, const float *a,
                         float s, float *ga, float *gBt_parts, int threads) {
    int failed = 0;
    #pragma omp parallel num_threads(threads)
    {
        float *gBt = gBt_parts + thread_slot() * r * n, *c = malloc(ROWS * r * sizeof(float));
        if (!c) failed = 1;
        #pragma omp for schedule(static)
        for (int64_t i0 = 0; i0 < m; i0 += ROWS) {
            if (!c) continue;
            int64_t rows = min64(ROWS, m - i0);
            const float *y[ROWS];
            for (int64_t q = 0; q < rows; q++) y[q] = g + (i0 + q) * n;
            for (int64_t k = 0; k < rows * r; k++) c[k] = s * a[i0 * r + k];
            if (rows == ROWS) {
                dots(n, r, ROWS, y, Bt, ga + i0 * r);
                accumulate(n, r, ROWS, y, c, gBt);
            } else {
                for (int64_t q = 0; q < rows; q++) {
                    dots(n, r, 1, y + q, Bt, ga + (i0 + q) * r);
                    accumulate(n, r, 1, y + q, c + q * r, gBt);
                }
            }
            for (int64_t k = 0; k < rows * r; k++) ga[i0 * r + k] *= s;
        }
        free(c);
    }
    return failed;
}

/* The backward of a = drop(x) A^T (x [m, n], A [r, n], ga = dLoss/da [m, r]): gA_parts[t] [r, n] +=
 * ga^T drop(x) over thread t's rows, and, when gx is not NULL, gx [m, n] += mask * (ga A), mask the kept
 * elements' scale and the dropped ones' 0. flags NULL: no dropout (mask 1). */
int lora_down_backward_f32(int64_t m, int64_t n, int64_t r, const float *x, const int8_t *flags, float scale,
                           const float *ga, const float *A, float *gA_parts, float *gx, int threads) {
    int failed = 0;
    #pragma omp parallel num_threads(threads)
    {
        float *gA = gA_parts + thread_slot() * r * n, *xd = malloc(2 * ROWS * n * sizeof(float)), *t = xd + ROWS * n;
        if (!xd) failed = 1;
        #pragma omp for schedule(static)
        for (int64_t i0 = 0; i0 < m; i0 += ROWS) {
            if (!xd) continue;
            int64_t rows = min64(ROWS, m - i0);
            const float *y[ROWS];
            const int8_t *f[ROWS];
            float *gxr[ROWS];
            for (int64_t q = 0; q < rows; q++) {
                int64_t i = i0 + q;
                y[q] = x + i * n;
                gxr[q] = gx ? gx + i * n : NULL;
                f[q] = flags ? flags + i * n : NULL;
                if (flags) {
                    float *d = xd + q * n;
                    for (int64_t k = 0; k < n; k++) d[k] = y[q][k] * (f[q][k] ? scale : 0.0f);
                    y[q] = d;
                }
            }
            const int8_t *const *fq = flags ? f : NULL;
            if (rows == ROWS) {
                accumulate(n, r, ROWS, y, ga + i0 * r, gA);
                if (gx) add_combination(n, r, ROWS, ga + i0 * r, A, fq, scale, gxr, t);
            } else {
                for (int64_t q = 0; q < rows; q++) {
                    accumulate(n, r, 1, y + q, ga + (i0 + q) * r, gA);
                    if (gx) add_combination(n, r, 1, ga + (i0 + q) * r, A, fq ? fq + q : NULL, scale, gxr + q, t);
                }
            }
        }
        free(xd);
    }
    return failed;
}
