/* Inverted dropout on the CPU, float32 and bfloat16: the mask drawn and applied in one pass.
 *
 * Built and loaded by layers/ckernel.py, called by layers/fast_ops.py (plain C11, no Python or torch
 * headers; called through ctypes).
 *
 * Random bits: philox.h's Philox4x32-10 stream keyed by the seed (layers/fast_ops.py's path without a
 * compiler draws it with numpy, and the tests check that the two agree bit for bit).
 *
 * Element i's 15-bit draw d (philox.h) decides: kept iff d >= threshold (threshold = round(p 2^15), so
 * P(drop) = threshold / 2^15). Kept elements are multiplied by scale, dropped ones by 0 (so an inf or NaN
 * input gives NaN, as x * mask does in PyTorch). bfloat16 is multiplied in float32 and rounded to nearest
 * even, as PyTorch rounds a bfloat16 tensor times a Python float.
 *
 * mask, when not NULL, receives the keep flags, one byte (1 or 0) per element; the backward
 * (masked_scale_*) multiplies the output gradient by the same flags and scale: a quarter of a float32
 * mask's memory, and no second draw.
 *
 * Elements are processed in chunks of CHUNK: first the chunk's random bits into a buffer on the stack,
 * then one loop over the chunk that the compiler vectorises. Chunks are independent: they are split across
 * OpenMP threads when built with -fopenmp (inside PyTorch the process's libgomp, so the threads are
 * PyTorch's own); the result does not depend on the split.
 */
#include <stdint.h>
#include <string.h>

#include "philox.h"
#include "vecmath.h" /* bf16_to_f32, f32_to_bf16 */

#define CHUNK 1024 /* elements per chunk, a multiple of GROUP */

#define CHUNKS_OF(n) (((n) + CHUNK - 1) / CHUNK)
#define LENGTH(n, c) ((n) - (c) * CHUNK < CHUNK ? (n) - (c) * CHUNK : CHUNK)

void dropout_f32(int64_t n, uint64_t seed, int32_t threshold, float scale, const float *x, float *y,
                 int8_t *mask, int threads) {
    #pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int64_t c = 0; c < CHUNKS_OF(n); c++) {
        uint16_t d[CHUNK];
        const int64_t start = c * CHUNK;
        philox_draws(start, CHUNK, seed, d);
        dropout_apply_f32(LENGTH(n, c), d, threshold, scale, x + start, y + start, mask ? mask + start : NULL);
    }
}

void dropout_bf16(int64_t n, uint64_t seed, int32_t threshold, float scale, const uint16_t *x, uint16_t *y,
                  int8_t *mask, int threads) {
    #pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int64_t c = 0; c < CHUNKS_OF(n); c++) {
        uint16_t d[CHUNK];
        const int64_t start = c * CHUNK, len = LENGTH(n, c);
        const uint16_t *xc = x + start;
        uint16_t *yc = y + start;
        philox_draws(start, CHUNK, seed, d);
        for (int64_t i = 0; i < len; i++) {
            int keep = d[i] >= threshold;
            if (mask) mask[start + i] = (int8_t)keep;
            yc[i] = f32_to_bf16(bf16_to_f32(xc[i]) * (keep ? scale : 0.0f));
        }
    }
}

void masked_scale_f32(int64_t n, const int8_t *mask, float scale, const float *g, float *out, int threads) {
    #pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int64_t i = 0; i < n; i++) out[i] = g[i] * (mask[i] ? scale : 0.0f);
}

void masked_scale_bf16(int64_t n, const int8_t *mask, float scale, const uint16_t *g, uint16_t *out,
                       int threads) {
    #pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int64_t i = 0; i < n; i++) out[i] = f32_to_bf16(bf16_to_f32(g[i]) * (mask[i] ? scale : 0.0f));
}
