/* Philox4x64-10 random bits for the C kernels of layers/csrc, and the float32 dropout they decide: dropout.c's,
 * shared by lora.c's fused LoRA dropout so that both draw and apply the same mask for the same seed and element.
 *
 * Philox4x64-10 (Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011) is a
 * counter-based generator: block b of 256 bits is a function of its counter (b + 1, 0, 0, 0) and the key
 * (seed, 0) alone, so any block can be drawn by any thread, in any order. Those are the counter and key of
 * numpy.random.Philox(key=seed), whose random_raw() returns the same 64-bit words in the same order (it counts
 * from 1): layers/fast_ops.py's path without a compiler draws the same masks with numpy, and the tests check
 * that they agree bit for bit.
 *
 * Element i of a flat array takes the 16-bit quarter i % 4 (little-endian) of word i / 4 of that stream, and
 * keeps its low 15 bits: BLOCK elements per Philox block. */
#ifndef CROSSALIGN_PHILOX_H
#define CROSSALIGN_PHILOX_H

#include <stdint.h>
#include <string.h>

#define BLOCK 16 /* elements per Philox block: four 64-bit words of four 16-bit draws */

/* the four 64-bit words of Philox4x64-10 block `counter` under the key (seed, 0) */
static inline __attribute__((always_inline)) void philox4x64(uint64_t counter, uint64_t seed, uint64_t out[4]) {
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

/* the 15-bit draws of elements [start, start + len) into d[0, len); start need not be a multiple of BLOCK */
static inline __attribute__((always_inline)) void philox_draws(int64_t start, int64_t len, uint64_t seed,
                                                               uint16_t *d) {
    uint64_t words[4];
    int64_t i = 0, skip = start % BLOCK;
    if (skip) { /* a partial first block */
        uint16_t block[BLOCK];
        int64_t take = BLOCK - skip < len ? BLOCK - skip : len;
        philox4x64((uint64_t)(start / BLOCK) + 1, seed, words);
        memcpy(block, words, sizeof words);
        memcpy(d, block + skip, take * sizeof *d);
        i = take;
    }
    for (; i + BLOCK <= len; i += BLOCK) { /* whole blocks straight into d */
        philox4x64((uint64_t)((start + i) / BLOCK) + 1, seed, words);
        memcpy(d + i, words, sizeof words);
    }
    if (i < len) { /* a partial last block */
        philox4x64((uint64_t)((start + i) / BLOCK) + 1, seed, words);
        memcpy(d + i, words, (len - i) * sizeof *d);
    }
    for (int64_t k = 0; k < len; k++) d[k] &= 0x7FFF;
}

/* float32 dropout by the draws d[0, len): kept iff d[i] >= threshold, y = x * (kept ? scale : 0) (so an inf or
 * NaN input gives NaN, as x * mask does in PyTorch), the keep flags (1 or 0) into flags when not NULL */
static inline __attribute__((always_inline)) void dropout_apply_f32(int64_t len, const uint16_t *d, int32_t threshold,
                                                                    float scale, const float *x, float *y,
                                                                    int8_t *flags) {
    if (flags) {
        for (int64_t i = 0; i < len; i++) {
            int keep = d[i] >= threshold;
            flags[i] = (int8_t)keep;
            y[i] = x[i] * (keep ? scale : 0.0f);
        }
    } else {
        for (int64_t i = 0; i < len; i++) y[i] = x[i] * (d[i] >= threshold ? scale : 0.0f);
    }
}

#endif
