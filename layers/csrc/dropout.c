/* Inverted dropout on the CPU, float32 and bfloat16: the mask drawn and applied in one pass.
 *
 * Built and loaded by layers/ckernel.py, called by layers/fast_ops.py (plain C11, no Python or torch
 * headers; called through ctypes).
 *
 * Random bits: Philox4x64-10 (Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as 1, 2,
 * 3", SC 2011), a counter-based generator: block b of 256 bits is a function of its counter (b + 1, 0, 0, 0)
 * and the key (seed, 0) alone, so any block can be drawn by any thread, in any order. Those are the
 * counter and key of numpy.random.Philox(key=seed), whose random_raw() returns the same 64-bit words in
 * the same order (it counts from 1): layers/fast_ops.py's path without a compiler draws the same masks
 * with numpy, and the tests check that the two agree bit for bit.
 *
 * Element i takes the 16-bit quarter i % 4 (little-endian) of word i / 4 of that stream; its low 15 bits d
 * decide: kept iff d >= threshold (threshold = round(p 2^15), so P(drop) = threshold / 2^15). Kept elements
 * are multiplied by scale, dropped ones by 0 (so an inf or NaN input gives NaN, as x * mask does in
 * PyTorch). bfloat16 is multiplied in float32 and rounded to nearest even, as PyTorch rounds a bfloat16
 * tensor times a Python float.
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

#define BLOCK 16   /* elements per Philox block: four 64-bit words of four 16-bit draws */
#define CHUNK 1024 /* elements per chunk, a multiple of BLOCK */
#define INLINE static inline __attribute__((always_inline))

/* the four 64-bit words of Philox4x64-10 block `counter` under the key (seed, 0) */
INLINE void philox4x64(uint64_t counter, uint64_t seed, uint64_t out[4]) {
    uint64_t x0 = counter, x1 = 0, x2 = 0, x3 = 0, k0 = seed, k1 = 0;
    #pragma GCC unroll 10
    for (int round = 0; round < 10; round++) {
        unsigned __int128 p0 = (unsigned __int128)0xD2E7470EE14C6C93ull * x0;
        unsigned __int128 p1 = (unsigned __int128)0xCA5A826395121157ull * x2;
        uint64_t y0 = (uint64_t)(p1 >> 64) ^ x1 ^ k0, y2 = (uint64_t)(p0 >> 64) ^ x3 ^ k1;
        x1 = (uint64_t)p1;
        x3 = (uint64_t)p0;
        x0 = y0;
        x2 = y2;
        k0 += 0x9E3779B97F4A7C15ull; /* the key schedule's Weyl increments */
        k1 += 0xBB67AE8584CAA73Bull;
    }
    out[0] = x0, out[1] = x1, out[2] = x2, out[3] = x3;
}

/* the 15-bit draws of elements [start, start + CHUNK), start a multiple of CHUNK */
INLINE void draws(int64_t start, uint64_t seed, uint16_t *d) {
    for (int64_t b = 0; b < CHUNK / BLOCK; b++) {
        uint64_t words[4];
        philox4x64((uint64_t)(start / BLOCK + b) + 1, seed, words);
        memcpy(d + b * BLOCK, words, sizeof words);
    }
    for (int i = 0; i < CHUNK; i++) d[i] &= 0x7FFF;
}

INLINE float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

INLINE uint16_t f32_to_bf16(float f) { /* round to nearest even; NaN to the quiet NaN 0x7FC0, as PyTorch */
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return f != f ? 0x7FC0 : (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

#define CHUNKS_OF(n) (((n) + CHUNK - 1) / CHUNK)
#define LENGTH(n, c) ((n) - (c) * CHUNK < CHUNK ? (n) - (c) * CHUNK : CHUNK)

void dropout_f32(int64_t n, uint64_t seed, int32_t threshold, float scale, const float *x, float *y,
                 int8_t *mask, int threads) {
    #pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int64_t c = 0; c < CHUNKS_OF(n); c++) {
        uint16_t d[CHUNK];
        const int64_t start = c * CHUNK, len = LENGTH(n, c);
        const float *xc = x + start;
        float *yc = y + start;
        draws(start, seed, d);
        if (mask) {
            int8_t *mc = mask + start;
            for (int64_t i = 0; i < len; i++) {
                int keep = d[i] >= threshold;
                mc[i] = (int8_t)keep;
                yc[i] = xc[i] * (keep ? scale : 0.0f);
            }
        } else {
            for (int64_t i = 0; i < len; i++) yc[i] = xc[i] * (d[i] >= threshold ? scale : 0.0f);
        }
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
        draws(start, seed, d);
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
