/* Mamba's selective scan (Gu & Dao 2023) on the CPU: forward and backward, float32, channels last.
 *
 * Built and loaded by layers/scan_kernel.py (plain C11 with GNU vector extensions, no Python or torch
 * headers; called through ctypes). The maths is that of layers/mamba.py's _ScanCore, whose docstring
 * derives the backward; here every [B, T, N, D] intermediate of the PyTorch version stays in registers
 * or in a per-thread buffer of one segment, and each element's decay exp(delta A) is computed once per
 * pass instead of being written to and read back from memory by separate operators.
 *
 * Layout: u, delta, y, gy, gu, gdelta [B, L, D]; At = A^T and At2 = A^T log2(e) [N, D]; Bm, Cm, gB, gC
 * [B, L, N]; hs [B, nseg - 1, N, D], the state entering each segment of S time steps after the first,
 * written by the forward and read by the backward, which recomputes a segment's states from it.
 * Channels are processed W at a time (one vector); a last partial block is padded with zeros, which
 * contribute nothing to any sum. Batch rows are independent: they are split across OpenMP threads when
 * built with -fopenmp (inside PyTorch the process's libgomp, so the threads are PyTorch's own); gA, a sum
 * over the batch, is kept per thread.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "threads.h"
#include "vecmath.h"

/* forward over all time steps of one batch row, channels [d0, d0 + w), w <= W */
static inline __attribute__((always_inline)) void fwd_block(
    int64_t L, int64_t D, int64_t N, int64_t S, int64_t w, int64_t d0,
    const float *u, const float *dl, const float *A2, const float *Bm, const float *Cm,
    float *y, float *hs, vf *h, vf *a)
{
    for (int64_t n = 0; n < N; n++) { a[n] = load(A2 + n * D + d0, w); h[n] = splat(0.0f); }
    for (int64_t t = 0; t < L; t++) {
        if (hs && t > 0 && t % S == 0)
            for (int64_t n = 0; n < N; n++) store(hs + (t / S - 1) * N * D + n * D + d0, h[n], w);
        vf dt = load(dl + t * D + d0, w), dtu = dt * load(u + t * D + d0, w), acc = splat(0.0f);
        const float *bt = Bm + t * N, *ct = Cm + t * N;
        int64_t n = 0;
        for (; n + INTERLEAVE <= N; n += INTERLEAVE) { /* INTERLEAVE states' decays at a time (vecmath.h) */
            vf e[INTERLEAVE];
            EACH(k, INTERLEAVE) e[k] = dt * a[n + k];
            exp2v_each(INTERLEAVE, e);
            EACH(k, INTERLEAVE) h[n + k] = e[k] * h[n + k] + dtu * bt[n + k];
            EACH(k, INTERLEAVE) acc += ct[n + k] * h[n + k];
        }
        for (; n < N; n++) {
            h[n] = exp2v(dt * a[n]) * h[n] + dtu * bt[n];   /* h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t */
            acc += ct[n] * h[n];                             /* y_t = <h_t, C_t> */
        }
        store(y + t * D + d0, acc, w);
    }
}

/* rows split across `threads` OpenMP threads (one without OpenMP); hs may be NULL (no backward to follow);
 * returns 0, or 1 when out of memory */
int scan_fwd(int64_t batch, int64_t L, int64_t D, int64_t N, int64_t S, int threads,
             const float *u, const float *delta, const float *At2, const float *Bm, const float *Cm,
             float *y, float *hs)
{
    int64_t nseg = (L + S - 1) / S;
    int failed = 0;
    #pragma omp parallel num_threads(threads)
    {
        vf *h = aligned_alloc(sizeof(vf), 2 * N * sizeof(vf)), *a = h + N;
        if (!h) failed = 1;
        #pragma omp for schedule(static)
        for (int64_t b = 0; b < batch; b++) {
            if (!h) continue;
            const float *ub = u + b * L * D, *db = delta + b * L * D, *Bb = Bm + b * L * N, *Cb = Cm + b * L * N;
            float *yb = y + b * L * D, *hb = hs ? hs + b * (nseg - 1) * N * D : NULL;
            int64_t d0 = 0;
            for (; d0 + W <= D; d0 += W) fwd_block(L, D, N, S, W, d0, ub, db, At2, Bb, Cb, yb, hb, h, a);
            if (d0 < D) fwd_block(L, D, N, S, D - d0, d0, ub, db, At2, Bb, Cb, yb, hb, h, a);
        }
        free(h);
    }
    return failed;
}

/* one segment [t0, t1) of one batch row, channels [d0, d0 + w): recompute the segment's states from the
 * one entering it (h_in, NULL for zero), then run the reverse recurrence, g_t = gy_t C_t + carry with
 * carry = exp(delta_{t+1} A) g_{t+1}. carry and ga belong to this channel block; pB, pC [S * N] collect
 * per-lane partial sums over channels of dB and dC (summed across lanes once per segment) */
static inline __attribute__((always_inline)) void bwd_segment(
    int64_t D, int64_t N, int64_t t0, int64_t t1, int64_t w, int64_t d0,
    const float *u, const float *dl, const float *At, const float *A2, const float *Bm, const float *Cm,
    const float *h_in, const float *gy, float *gu, float *gd,
    vf *hbuf, vf *carry, vf *a, vf *a1, vf *ga, vf *pB, vf *pC, vf *dabuf)
{
    for (int64_t n = 0; n < N; n++) {
        a[n] = load(A2 + n * D + d0, w); a1[n] = load(At + n * D + d0, w);
        hbuf[n] = h_in ? load(h_in + n * D + d0, w) : splat(0.0f);
    }
    /* hbuf[k * N + n]: k = 0 the state entering the segment, k > 0 the state after step t0 + k - 1 */
    for (int64_t t = t0; t < t1; t++) {
        vf dt = load(dl + t * D + d0, w), dtu = dt * load(u + t * D + d0, w);
        const vf *hp = hbuf + (t - t0) * N;
        vf *hc = hbuf + (t - t0 + 1) * N;
        const float *bt = Bm + t * N;
        vf *dat = dabuf + (t - t0) * N;
        int64_t n = 0;
        for (; n + INTERLEAVE <= N; n += INTERLEAVE) { /* as in fwd_block */
            EACH(k, INTERLEAVE) dat[n + k] = dt * a[n + k];
            exp2v_each(INTERLEAVE, dat + n);
            EACH(k, INTERLEAVE) hc[n + k] = dat[n + k] * hp[n + k] + dtu * bt[n + k];
        }
        for (; n < N; n++) { dat[n] = exp2v(dt * a[n]); hc[n] = dat[n] * hp[n] + dtu * bt[n]; }
    }
    for (int64_t t = t1 - 1; t >= t0; t--) {
        vf dt = load(dl + t * D + d0, w), ut = load(u + t * D + d0, w), gyt = load(gy + t * D + d0, w);
        vf dtu = dt * ut, sgB = splat(0.0f), sq = splat(0.0f);
        const vf *hp = hbuf + (t - t0) * N, *hc = hp + N;
        const float *bt = Bm + t * N, *ct = Cm + t * N;
        vf *pBt = pB + (t - t0) * N, *pCt = pC + (t - t0) * N;
        for (int64_t n = 0; n < N; n++) {
            vf g = gyt * ct[n] + carry[n];      /* dLoss/dh_t */
            vf da = dabuf[(t - t0) * N + n];
            vf q = g * da * hp[n];              /* dLoss/d(delta_t A) */
            sgB += g * bt[n];
            sq += q * a1[n];
            ga[n] += q * dt;                    /* dA = sum_{b,t} q delta */
            pBt[n] += g * dtu;                  /* dB_t = sum_d g delta u */
            pCt[n] += gyt * hc[n];              /* dC_t = sum_d gy h */
            carry[n] = da * g;
        }
        store(gu + t * D + d0, sgB * dt, w);                /* du = delta sum_n g B */
        store(gd + t * D + d0, sq + sgB * ut, w);           /* ddelta = sum_n q A + u sum_n g B */
    }
}

/* rows split across `threads` OpenMP threads as in scan_fwd; gu, gd, gB, gC overwritten; gA_parts
 * [threads, N, D] zeroed by the caller, slot k the sum over thread k's rows (the caller adds them up,
 * in a fixed order); returns 0, or 1 when out of memory */
int scan_bwd(int64_t batch, int64_t L, int64_t D, int64_t N, int64_t S, int threads,
             const float *u, const float *delta, const float *At, const float *At2, const float *Bm,
             const float *Cm, const float *hs, const float *gy,
             float *gu, float *gd, float *gA_parts, float *gB, float *gC)
{
    int64_t nseg = (L + S - 1) / S, nblk = (D + W - 1) / W;
    int failed = 0;
    #pragma omp parallel num_threads(threads)
    {
        float *gA = gA_parts + thread_slot() * N * D;
        vf *hbuf = aligned_alloc(sizeof(vf), ((S + 1) * N + 2 * N + 2 * nblk * N + 3 * S * N) * sizeof(vf));
        if (!hbuf) failed = 1;
        vf *a = hbuf + (S + 1) * N, *a1 = a + N, *carry = a1 + N, *ga = carry + nblk * N, *pB = ga + nblk * N,
           *pC = pB + S * N, *dabuf = pC + S * N;
        if (hbuf)
            for (int64_t k = 0; k < nblk * N; k++) ga[k] = splat(0.0f);
        #pragma omp for schedule(static)
        for (int64_t b = 0; b < batch; b++) {
            if (!hbuf) continue;
            int64_t o = b * L * D, on = b * L * N;
            for (int64_t k = 0; k < nblk * N; k++) carry[k] = splat(0.0f);
            for (int64_t s = nseg - 1; s >= 0; s--) {
                int64_t t0 = s * S, t1 = t0 + S < L ? t0 + S : L;
                const float *h_in = s > 0 ? hs + (b * (nseg - 1) + s - 1) * N * D : NULL;
                for (int64_t k = 0; k < 2 * S * N; k++) pB[k] = splat(0.0f);
                int64_t k = 0;
                for (; k * W + W <= D; k++)
                    bwd_segment(D, N, t0, t1, W, k * W, u + o, delta + o, At, At2, Bm + on, Cm + on, h_in, gy + o,
                                gu + o, gd + o, hbuf, carry + k * N, a, a1, ga + k * N, pB, pC, dabuf);
                if (k * W < D)
                    bwd_segment(D, N, t0, t1, D - k * W, k * W, u + o, delta + o, At, At2, Bm + on, Cm + on, h_in,
                                gy + o, gu + o, gd + o, hbuf, carry + k * N, a, a1, ga + k * N, pB, pC, dabuf);
                for (int64_t t = t0; t < t1; t++)
                    for (int64_t n = 0; n < N; n++) {
                        gB[on + t * N + n] = hsum(pB[(t - t0) * N + n]);
                        gC[on + t * N + n] = hsum(pC[(t - t0) * N + n]);
                    }
            }
        }
        if (hbuf)
            for (int64_t k = 0; k < nblk; k++)
                for (int64_t n = 0; n < N; n++) store(gA + n * D + k * W, ga[k * N + n], k * W + W <= D ? W : D - k * W);
        free(hbuf);
    }
    return failed;
}

/* softplus_bias_f32 (below) on w <= W elements: inlined with w = W for whole vectors, so that they stay in registers */
static inline __attribute__((always_inline)) void softplus_vector(int64_t w, const float *x, const float *bias,
                                                                  float *out, float *deriv) {
    vf v = load(x, w);
    if (bias) v += load(bias, w);
    vf ex = exp2_nonpositive((vf)((vu)v | ((vu){0} + 0x80000000u)) * 1.4426950408889634f); /* e^-|v| */
    vf t = ex / (2.0f + ex), t2 = t * t;
    vf series = splat(1.0f / 13.0f);
    series = series * t2 + 1.0f / 11.0f;
    series = series * t2 + 1.0f / 9.0f;
    series = series * t2 + 1.0f / 7.0f;
    series = series * t2 + 1.0f / 5.0f;
    series = series * t2 + 1.0f / 3.0f;
    series = series * t2 + 1.0f;
    store(out, blend(v > 0.0f, v, splat(0.0f)) + 2.0f * t * series, w);
    if (deriv) {
        vf r = 1.0f / (1.0f + ex);
        store(deriv, blend(v >= 0.0f, r, ex * r), w);
    }
}

/* The scan's step sizes: out = softplus(x + bias) (Mamba's delta = softplus(dt_proj(x)), its bias added here) and,
 * for the backward, deriv = sigmoid(x + bias), softplus's derivative, from the same pass. PyTorch's softplus runs
 * unvectorised at about 4 ns per element on an AVX2 core, and its bias add and backward are passes of their own.
 * With v = x + bias and e = e^-|v|: softplus(v) = max(v, 0) + log(1 + e), log(1 + e) = 2 atanh(s) with
 * s = e / (2 + e) in [0, 1/3], by its series to s^13 (truncation below 1e-8); sigmoid(v) = 1 / (1 + e) for v >= 0,
 * e / (1 + e) below. Against the float64 function: relative error below 3e-7 for v > -1, about 6e-8 |v| in the
 * left tail (e^v computed as 2^(v log2 e): that product's rounding, scaled by |v|; 1.9e-6 at v = -30), absolute
 * below 5e-7 (PyTorch's float32: 1.2e-7 relative); NaN gives NaN, +inf +inf, -inf 0.
 * x, out, deriv [rows, E] contiguous; bias [E] or NULL; deriv NULL when no gradient is needed. */
void softplus_bias_f32(int64_t rows, int64_t E, const float *x, const float *bias, float *out, float *deriv,
                       int threads) {
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t i = 0; i < rows; i++) {
        int64_t e = 0, o = i * E;
        for (; e + W <= E; e += W)
            softplus_vector(W, x + o + e, bias ? bias + e : NULL, out + o + e, deriv ? deriv + o + e : NULL);
        if (e < E)
            softplus_vector(E - e, x + o + e, bias ? bias + e : NULL, out + o + e, deriv ? deriv + o + e : NULL);
    }
}

/* The end of the selective scan: the D skip and the SiLU gate, out = (y + D u) silu(z), silu(z) = z s,
 * s = sigmoid(z) (vecmath.h's sigmoidv). In PyTorch that is an addcmul, a SiLU and a multiply forward and some
 * seven passes backward; here one pass each way, the backward recomputing y + D u and s:
 *   gy = g z s,  gu = D gy,  gz = g (y + D u) s (1 + z (1 - s)),  gD = sum_{b,t} gy u.
 * y, u, out, g, gy, gu, gz [B, L, E] contiguous; D [E]; z [B, L, E] with strides (sb, st, 1), so that Mamba's
 * half of its input projection's output is read in place. Batch rows split across threads as above; gD_parts
 * [threads, E] zeroed by the caller, slot k the sum over thread k's rows. */
void gate_fwd_f32(int64_t B, int64_t L, int64_t E, int64_t sb, int64_t st, const float *y, const float *u,
                  const float *D, const float *z, float *out, int threads) {
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < L; t++) {
            int64_t o = (b * L + t) * E;
            const float *zr = z + b * sb + t * st;
            for (int64_t e = 0; e < E; e += W) {
                int64_t w = E - e < W ? E - e : W;
                vf zv = load(zr + e, w);
                vf yd = load(y + o + e, w) + load(D + e, w) * load(u + o + e, w);
                store(out + o + e, yd * zv * sigmoidv(zv), w);
            }
        }
}

/* gD_parts [threads, E] zeroed by the caller; slot i the sum over thread i's batch rows */
void gate_bwd_f32(int64_t B, int64_t L, int64_t E, int64_t sb, int64_t st, const float *y, const float *u,
                  const float *D, const float *z, const float *g, float *gy, float *gu, float *gz, float *gD_parts,
                  int threads) {
    #pragma omp parallel num_threads(threads)
    {
        float *gD = gD_parts + thread_slot() * E;
        #pragma omp for schedule(static)
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < L; t++) {
                int64_t o = (b * L + t) * E;
                const float *zr = z + b * sb + t * st;
                for (int64_t e = 0; e < E; e += W) {
                    int64_t w = E - e < W ? E - e : W;
                    vf zv = load(zr + e, w), s = sigmoidv(zv), gv = load(g + o + e, w), uv = load(u + o + e, w);
                    vf dv = load(D + e, w), gyv = gv * zv * s;
                    store(gy + o + e, gyv, w);
                    store(gu + o + e, dv * gyv, w);
                    store(gz + o + e, gv * (load(y + o + e, w) + dv * uv) * s * (1.0f + zv * (1.0f - s)), w);
                    store(gD + e, load(gD + e, w) + gyv * uv, w);
                }
            }
    }
}
