/* Scaled dot-product attention on the CPU in float32, forward and backward, with the scores' scale, the causal
 * mask, the softmax and the dropout of the attention weights fused around the products (Vaswani et al.,
 * "Attention is all you need", NeurIPS 2017: O = dropout(softmax(scale Q K^T + mask)) V).
 *
 * Built and loaded by layers/ckernel.py, called by layers/fast_ops.py (plain C11, no Python or torch headers;
 * called through ctypes).
 *
 * Why: at the heads of the models here (T = S = 100 positions, E = 32-64 per head) each of attention's products
 * is a batch of GEMMs of a few hundred thousand multiply-adds, which PyTorch's batched GEMM and its fused CPU
 * attention run at 35-60 % of the rate of the model's big products on an AVX2 core, and the scores, the weights
 * and their gradients each take passes of their own over [N, T, S] tensors. Here one problem (one sample's head)
 * at a time is packed into small padded buffers that stay in the core's caches; its six products (two forward,
 * four backward) run through one register-tiled GEMM (MR rows x 2 vectors of accumulators, the A operand
 * broadcast from memory), and the softmax, the causal mask, the dropout and the softmax's backward are applied to
 * each row in between.
 *
 * Layout: dims = {N, H, T, S, E, Ev}; q [N, H, T, E], k [N, H, S, E], v [N, H, S, Ev] and out [N, H, T, Ev]
 * are read and written through their strides (batch, head, row: three per tensor, in that order in `strides`;
 * the last dimension is contiguous), so the heads of a projection's [N, T, H, E] output are read in place and
 * the output is written straight into [N, T, H, Ev]. probs [N H, T, Sp] (Sp: S rounded up to a multiple of W,
 * so that its rows are whole vectors) keeps the softmax for the backward (NULL in inference), with the dropout's
 * keep flags in its sign bits (normalise_row): no tensor of flags.
 *
 * Memory: a head's rows lie H E floats apart in the projections' outputs, and its packs took 3x their in-cache
 * time waiting for them (one Zen 3 core, [32, 12, 100, 100, 32]), so the packs fetch AHEAD rows ahead, and the
 * forward's first product reads Q in place (no pack; the scale is folded into the packed K^T), fetching the next
 * tile's rows while it computes: forward 1.11-1.12x, backward 1.06-1.07x at the models' heads.
 *
 * Dropout: threshold 0 is none. Otherwise element (n, t, s) of the weights, flat index (n T + t) S + s, takes
 * philox.h's draw of that index, so the mask is the one dropout.c draws for softmax(...) as one [N H, T, S]
 * tensor: the fused and the unfused paths drop the same weights for the same seed.
 *
 * Problems (n, h) are split across OpenMP threads when built with -fopenmp, each thread with its own buffers;
 * the result does not depend on the split. Returns 0, or 1 when a buffer could not be allocated. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "philox.h"
#include "vecmath.h"

#if defined(__AVX__)
#include <immintrin.h>
#endif

#define MR 6      /* rows of a GEMM tile: 6 x 2 vectors of accumulators fill 12 of AVX2's 16 registers */
#define ROWS 120  /* query rows per block, a multiple of MR: a block's scores stay in the L2 cache */
#define AHEAD 12  /* rows ahead of the one being packed that a pack fetches into the cache */
#define INLINE static inline __attribute__((always_inline))

static int64_t round_up(int64_t n) { return (n + W - 1) / W * W; }
INLINE vf vload(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
INLINE void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }

/* C[r x nv W] = (accumulate ? C : 0) + A B with A[i][p] = a[i ars + p acs] and B[p][j] = b[p ldb + j]; r <= MR and
 * nv (1 or 2) are constants where this is inlined, so the accumulators stay in registers */
INLINE void tile(const int r, const int nv, int64_t k, const float *a, int64_t ars, int64_t acs, const float *b,
                 int64_t ldb, float *c, int64_t ldc, int accumulate) {
    vf s[MR][2] = {{{0}}};
    for (int64_t p = 0; p < k; p++) {
        vf b0 = vload(b + p * ldb), b1 = nv == 2 ? vload(b + p * ldb + W) : b0;
        #pragma GCC unroll 6
        for (int i = 0; i < r; i++) {
            float x = a[i * ars + p * acs]; /* scalar times vector: one broadcast */
            s[i][0] += x * b0;
            if (nv == 2) s[i][1] += x * b1;
        }
    }
    #pragma GCC unroll 6
    for (int i = 0; i < r; i++)
        for (int j = 0; j < nv; j++) {
            vf y = s[i][j];
            if (accumulate) y += vload(c + i * ldc + j * W);
            vstore(c + i * ldc + j * W, y);
        }
}

#define TILE_CASE(R)                                                                     \
    case R:                                                                              \
        if (nv == 2) tile(R, 2, k, ai, ars, acs, b + j, ldb, ci + j, ldc, accumulate);   \
        else tile(R, 1, k, ai, ars, acs, b + j, ldb, ci + j, ldc, accumulate);           \
        break;

/* asks for the cache lines of row[0, cols) */
INLINE void prefetch_row(const float *row, int64_t cols) {
    for (int64_t j = 0; j < cols; j += 64 / sizeof(float)) __builtin_prefetch(row + j);
}

/* C[m x n] = (accumulate ? C : 0) + A[m x k] B[k x n], A as in tile(), n a multiple of W. prefetch_a: A's rows
 * (acs 1) are in a strided tensor, not a packed buffer: each tile of rows fetches the next tile's */
static void gemm(int64_t m, int64_t n, int64_t k, const float *a, int64_t ars, int64_t acs, const float *b,
                 int64_t ldb, float *c, int64_t ldc, int accumulate, int prefetch_a) {
    for (int64_t i = 0; i < m; i += MR) {
        const float *ai = a + i * ars;
        float *ci = c + i * ldc;
        if (prefetch_a)
            for (int64_t r = i + MR; r < i + 2 * MR && r < m; r++) prefetch_row(a + r * ars, k);
        for (int64_t j = 0; j < n; j += 2 * W) {
            int nv = n - j >= 2 * W ? 2 : 1;
            switch (m - i < MR ? m - i : MR) {
                TILE_CASE(6) TILE_CASE(5) TILE_CASE(4) TILE_CASE(3) TILE_CASE(2) TILE_CASE(1)
            }
        }
    }
}

/* rows x cols of x (row stride ld, contiguous rows) into dst [rows_padded x ld_dst], the rest of dst 0 */
static void pack(int64_t rows, int64_t rows_padded, int64_t cols, const float *x, int64_t ld, float *dst,
                 int64_t ld_dst) {
    for (int64_t i = 0; i < rows; i++) {
        if (i + AHEAD < rows) prefetch_row(x + (i + AHEAD) * ld, cols);
        float *d = dst + i * ld_dst;
        for (int64_t j = 0; j < cols; j++) d[j] = x[i * ld + j];
        for (int64_t j = cols; j < ld_dst; j++) d[j] = 0.0f;
    }
    memset(dst + rows * ld_dst, 0, sizeof(float) * (rows_padded - rows) * ld_dst);
}

#if defined(__AVX__)
/* d[j ld_dst + i] = x[i ld + j] for i, j < 8: eight rows in registers, transposed by shuffles */
INLINE void transpose8(const float *x, int64_t ld, float *d, int64_t ld_dst) {
    __m256 r[8], t[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(x + i * ld);
    for (int i = 0; i < 8; i += 2) { /* pairs of rows interleaved */
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) { /* then pairs of pairs: columns of four rows in each 128-bit half */
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) { /* the halves of rows 0-3 and 4-7 joined */
        _mm256_storeu_ps(d + i * ld_dst, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
        _mm256_storeu_ps(d + (i + 4) * ld_dst, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
    }
}
#endif

/* the transpose of rows x cols of x (row stride ld) into dst [cols_padded x ld_dst], the rest of dst 0; W rows of
 * x at a time (8 x 8 blocks in registers with AVX): a whole column at once would read lines of the same few cache
 * sets */
static void pack_transposed(int64_t rows, int64_t cols, int64_t cols_padded, const float *x, int64_t ld,
                            float *dst, int64_t ld_dst) {
    int64_t i0 = 0;
    for (int64_t i = 0; i < AHEAD && i < rows; i++) prefetch_row(x + i * ld, cols);
    for (; i0 + W <= rows; i0 += W) {
        for (int64_t i = i0 + AHEAD; i < i0 + AHEAD + W && i < rows; i++) prefetch_row(x + i * ld, cols);
        int64_t j = 0;
#if defined(__AVX__)
        for (; j + 8 <= cols; j += 8) transpose8(x + i0 * ld + j, ld, dst + j * ld_dst + i0, ld_dst);
#endif
        for (; j < cols; j++) {
            float *d = dst + j * ld_dst + i0;
            for (int ii = 0; ii < W; ii++) d[ii] = x[(i0 + ii) * ld + j];
        }
    }
    for (int64_t j = 0; j < cols; j++) {
        for (int64_t i = i0; i < rows; i++) dst[j * ld_dst + i] = x[i * ld + j];
        for (int64_t i = rows; i < ld_dst; i++) dst[j * ld_dst + i] = 0.0f;
    }
    memset(dst + cols * ld_dst, 0, sizeof(float) * (cols_padded - cols) * ld_dst);
}

static void unpack(int64_t rows, int64_t cols, const float *x, int64_t ld, float *dst, int64_t ld_dst) {
    for (int64_t i = 0; i < rows; i++) memcpy(dst + i * ld_dst, x + i * ld, cols * sizeof *x);
}

/* the largest of row[0, n), n a multiple of W: four independent running maxima, so the compares overlap */
static float row_max(const float *row, int64_t n) {
    vf m[4];
    for (int k = 0; k < 4; k++) m[k] = vload(row);
    int64_t j = 0;
    for (; j + 4 * W <= n; j += 4 * W)
        for (int k = 0; k < 4; k++) {
            vf x = vload(row + j + k * W);
            m[k] = blend(x > m[k], x, m[k]);
        }
    for (; j < n; j += W) {
        vf x = vload(row + j);
        m[0] = blend(x > m[0], x, m[0]);
    }
    for (int k = 1; k < 4; k++) m[0] = blend(m[k] > m[0], m[k], m[0]);
    float top = m[0][0];
    for (int k = 1; k < W; k++) top = m[0][k] > top ? m[0][k] : top;
    return top;
}

/* row[0, n) (n a multiple of W) = e^(row - max) over row[0, valid), 0 beyond; returns their sum; valid >= 1 */
static float exp_row(float *row, int64_t valid, int64_t n) {
    for (int64_t j = valid; j < n; j++) row[j] = -__builtin_inff();
    float top = row_max(row, n);
    if (top == -__builtin_inff()) top = 0.0f; /* a row of -inf scores: exp gives 0s, then 0/0 = NaN, as PyTorch */
    const float log2e = 1.4426950408889634f;
    vf offset = splat(top * log2e), sum[2] = {splat(0.0f), splat(0.0f)};
    int64_t j = 0;
    for (; j + INTERLEAVE * W <= n; j += INTERLEAVE * W) { /* INTERLEAVE vectors at a time (vecmath.h) */
        vf e[INTERLEAVE];
        EACH(k, INTERLEAVE) e[k] = vload(row + j + k * W) * log2e - offset;
        exp2_nonpositive_each(INTERLEAVE, e); /* exp2(-inf) is 0 */
        EACH(k, INTERLEAVE) sum[k & 1] += e[k], vstore(row + j + k * W, e[k]); /* INTERLEAVE is even */
    }
    for (; j < n; j += W) {
        vf e = exp2_nonpositive(vload(row + j) * log2e - offset);
        sum[(j / W) & 1] += e;
        vstore(row + j, e);
    }
    return hsum(sum[0] + sum[1]);
}

/* the softmax of row[0, n) from its exponentials (inv: the inverse of their sum) and its dropout: row[j] =
 * softmax_j (d[j] >= threshold ? keep_scale : 0), d the row's draws (threshold 0: no dropout). probs, when not
 * NULL, keeps the softmax for the backward with the dropout's flags in its sign bits: -softmax_j where dropped. A
 * softmax is never negative, so the backward reads both from it (-0 tells a dropped 0 from a kept one), and the
 * flags cost no tensor and no pass of their own. The row's padding, from n to the next multiple of W, stays 0 in
 * row and +-0 in probs. */
static void normalise_row(float *row, int64_t n, float inv, const uint16_t *d, int32_t threshold, float keep_scale,
                          float *probs) {
    const vu sign = (vu){0} + 0x80000000u;
    for (int64_t j = 0; j < n; j += W) {
        vf x = vload(row + j) * inv, y = x;
        if (threshold) {
            vh dj; /* W draws (vecmath.h's vh: W uint16 lanes) */
            memcpy(&dj, d + j, sizeof dj); /* lanes past n read the next row's draws, or the buffer's slack */
            vi keep = __builtin_convertvector(dj, vi) >= threshold;
            y = x * (vf)((vi)splat(keep_scale) & keep);
            x = (vf)((vu)x ^ (sign & ~(vu)keep));
        }
        vstore(row + j, y);
        if (probs) vstore(probs + j, x);
    }
}

typedef struct {
    int64_t N, H, T, S, E, Ev, Ep, Evp, Sp;
} shape;

static shape shape_of(const int64_t *dims) {
    shape s = {dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], 0, 0, 0};
    s.Ep = round_up(s.E), s.Evp = round_up(s.Ev), s.Sp = round_up(s.S);
    return s;
}

/* the first element of problem p's matrix in a tensor with strides {batch, head, row} */
static const float *head_of(const float *x, const int64_t *st, const shape *s, int64_t p) {
    return x + (p / s->H) * st[0] + (p % s->H) * st[1];
}

int attention_fwd_f32(const int64_t *dims, const int64_t *strides, const float *q, const float *k, const float *v,
                      float scale, int causal, uint64_t seed, int32_t threshold, float keep_scale, float *out,
                      float *probs, int threads) {
    const shape s = shape_of(dims);
    const int64_t *qs = strides, *ks = strides + 3, *vs = strides + 6, *os = strides + 9;
    int failed = 0;
    #pragma omp parallel num_threads(threads) if (threads > 1)
    {
        float *kt = malloc(sizeof(float) * (s.Ep * s.Sp + s.Sp * s.Evp + ROWS * (s.Sp + s.Evp)));
        uint16_t *draws = malloc(sizeof(uint16_t) * (ROWS * s.S + W)); /* + W: normalise_row's last vector */
        if (!kt || !draws) {
            #pragma omp atomic write
            failed = 1;
        }
        float *vp = kt + s.Ep * s.Sp, *sc = vp + s.Sp * s.Evp, *ob = sc + ROWS * s.Sp;
        #pragma omp for schedule(static)
        for (int64_t p = 0; p < s.N * s.H; p++) {
            if (!kt || !draws) continue;
            const float *qh = head_of(q, qs, &s, p);
            pack_transposed(s.S, s.E, s.Ep, head_of(k, ks, &s, p), ks[2], kt, s.Sp);
            for (int64_t j = 0; j < s.E * s.Sp; j++) kt[j] *= scale; /* scale K^T [Ep, Sp] */
            for (int64_t r = 0; r < MR && r < s.T; r++) prefetch_row(qh + r * qs[2], s.E); /* the first tile's */
            pack(s.S, s.Sp, s.Ev, head_of(v, vs, &s, p), vs[2], vp, s.Evp); /* V [Sp, Evp] */
            float *oh = out + (p / s.H) * os[0] + (p % s.H) * os[1];
            for (int64_t t0 = 0; t0 < s.T; t0 += ROWS) {
                int64_t rows = s.T - t0 < ROWS ? s.T - t0 : ROWS;
                gemm(rows, s.Sp, s.E, qh + t0 * qs[2], qs[2], 1, kt, s.Sp, sc, s.Sp, 0, 1); /* Q (scale K^T) */
                if (threshold) /* the block's rows are consecutive in the stream: one call, no group drawn twice */
                    philox_draws((p * s.T + t0) * s.S, rows * s.S, seed, draws);
                for (int64_t i = 0; i < rows; i++) {
                    int64_t t = t0 + i;
                    float *row = sc + i * s.Sp;
                    float sum = exp_row(row, causal && t + 1 < s.S ? t + 1 : s.S, s.Sp);
                    normalise_row(row, s.S, 1.0f / sum, threshold ? draws + i * s.S : 0, threshold, keep_scale,
                                  probs ? probs + (p * s.T + t) * s.Sp : 0);
                }
                gemm(rows, s.Evp, s.Sp, sc, s.Sp, 1, vp, s.Evp, ob, s.Evp, 0, 0); /* weights V */
                unpack(rows, s.Ev, ob, s.Evp, oh + t0 * os[2], os[2]);
            }
        }
        free(kt);
        free(draws);
    }
    return failed;
}

/* a row's way back through the dropout and the softmax: g[0, n) holds the gradient of the dropped weights and
 * becomes that of the scaled scores, scale P (g' - sum(g' P)) with g' = g f; w[0, n) receives the dropped weights
 * P f, f = keep_scale where kept, 0 where dropped (1 without dropout), from probs as normalise_row stored them;
 * both rows 0 from n to n_padded */
static void softmax_dropout_backward(float *g, float *w, const float *probs, int64_t n, int64_t n_padded,
                                     int dropout, float keep_scale, float scale) {
    const vu abs_mask = (vu){0} + 0x7fffffffu;
    vf acc = splat(0.0f);
    for (int64_t j = 0; j < n; j += W) {
        vf stored = vload(probs + j), pr = (vf)((vu)stored & abs_mask), gj = vload(g + j);
        if (dropout) {
            vf f = (vf)((vi)splat(keep_scale) & ((vi)stored >= 0));
            gj *= f;
            vstore(g + j, gj);
            vstore(w + j, pr * f);
        } else
            vstore(w + j, pr);
        acc += gj * pr;
    }
    float dot = hsum(acc);
    for (int64_t j = 0; j < n; j += W) {
        vf pr = (vf)((vu)vload(probs + j) & abs_mask);
        vstore(g + j, scale * pr * (vload(g + j) - dot));
    }
    for (int64_t j = n; j < n_padded; j++) g[j] = w[j] = 0.0f;
}

/* gradients of q, k, v from the output's; probs as the forward wrote them, dropout whether it had dropout */
int attention_bwd_f32(const int64_t *dims, const int64_t *strides, const float *q, const float *k, const float *v,
                      const float *grad_out, const float *probs, int dropout, float scale, float keep_scale,
                      float *grad_q, float *grad_k, float *grad_v, int threads) {
    const shape s = shape_of(dims);
    const int64_t *qs = strides, *ks = strides + 3, *vs = strides + 6, *gs = strides + 9, *gqs = strides + 12,
                  *gks = strides + 15, *gvs = strides + 18;
    int failed = 0;
    #pragma omp parallel num_threads(threads) if (threads > 1)
    {
        /* K [Sp, Ep], V^T [Evp, Sp], their gradients' sums, and one block's Q, dO, dQ, dS and weights */
        float *kp = malloc(sizeof(float) * (2 * s.Sp * s.Ep + 2 * s.Sp * s.Evp
                                            + ROWS * (2 * s.Ep + s.Evp + 2 * s.Sp)));
        if (!kp) {
            #pragma omp atomic write
            failed = 1;
        }
        float *vt = kp + s.Sp * s.Ep, *dk = vt + s.Evp * s.Sp, *dv = dk + s.Sp * s.Ep, *qb = dv + s.Sp * s.Evp,
              *gb = qb + ROWS * s.Ep, *dqb = gb + ROWS * s.Evp, *ds = dqb + ROWS * s.Ep, *wb = ds + ROWS * s.Sp;
        #pragma omp for schedule(static)
        for (int64_t p = 0; p < s.N * s.H; p++) {
            if (!kp) continue;
            const float *qh = head_of(q, qs, &s, p), *gh = head_of(grad_out, gs, &s, p);
            pack(s.S, s.Sp, s.E, head_of(k, ks, &s, p), ks[2], kp, s.Ep); /* K [Sp, Ep] */
            pack_transposed(s.S, s.Ev, s.Evp, head_of(v, vs, &s, p), vs[2], vt, s.Sp); /* V^T [Evp, Sp] */
            for (int64_t t0 = 0; t0 < s.T; t0 += ROWS) {
                int64_t rows = s.T - t0 < ROWS ? s.T - t0 : ROWS;
                pack(rows, rows, s.E, qh + t0 * qs[2], qs[2], qb, s.Ep);
                pack(rows, rows, s.Ev, gh + t0 * gs[2], gs[2], gb, s.Evp);
                gemm(rows, s.Sp, s.Evp, gb, s.Evp, 1, vt, s.Sp, ds, s.Sp, 0, 0); /* dO V^T: the weights' gradient */
                for (int64_t i = 0; i < rows; i++)
                    softmax_dropout_backward(ds + i * s.Sp, wb + i * s.Sp, probs + (p * s.T + t0 + i) * s.Sp, s.S,
                                             s.Sp, dropout, keep_scale, scale);
                gemm(rows, s.Ep, s.Sp, ds, s.Sp, 1, kp, s.Ep, dqb, s.Ep, 0, 0); /* dQ = dS K */
                unpack(rows, s.E, dqb, s.Ep, grad_q + (p / s.H) * gqs[0] + (p % s.H) * gqs[1] + t0 * gqs[2],
                       gqs[2]);
                gemm(s.S, s.Ep, rows, ds, 1, s.Sp, qb, s.Ep, dk, s.Ep, t0 > 0, 0); /* dK += dS^T Q */
                gemm(s.S, s.Evp, rows, wb, 1, s.Sp, gb, s.Evp, dv, s.Evp, t0 > 0, 0); /* dV += weights^T dO */
            }
            unpack(s.S, s.E, dk, s.Ep, grad_k + (p / s.H) * gks[0] + (p % s.H) * gks[1], gks[2]);
            unpack(s.S, s.Ev, dv, s.Evp, grad_v + (p / s.H) * gvs[0] + (p % s.H) * gvs[1], gvs[2]);
        }
        free(kp);
    }
    return failed;
}
