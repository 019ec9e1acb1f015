/* Philox4x32-10 random bits for the C kernels of layers/csrc, and the float32 dropout they decide: dropout.c's,
 * shared by lora.c's fused LoRA dropout and attention.c's dropout of the attention weights, so that all draw and
 * apply the same mask for the same seed and element.
 *
 * Philox4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011; the
 * generator of cuRAND and of PyTorch's CUDA dropout) is counter-based: block b of 128 bits is a function of its
 * counter (b mod 2^32, b / 2^32, 0, 0) and the key (seed mod 2^32, seed / 2^32) alone, so any block can be drawn
 * by any thread, in any order. Its rounds multiply 32-bit words into 64-bit products, which vector units do
 * PHILOX_LANES blocks at a time (AVX2's vpmuludq: four products per instruction, two for each lane pair); the
 * 64-bit multiplies of Philox4x64 have no vector form there and cost about 1 ns per draw.
 *
 * The stream: element i of a flat array belongs to group g = i / GROUP, the blocks PHILOX_LANES g + l for lanes
 * l = 0 .. PHILOX_LANES - 1; element GROUP g + PHILOX_LANES (2 w + h) + l takes the 16-bit half h (0: low) of
 * word w of block PHILOX_LANES g + l, and keeps its low 15 bits. layers/fast_ops.py's path without a compiler
 * draws the same bits with numpy, and the tests check that they agree bit for bit and that the blocks are
 * Philox4x32-10's (Random123's known-answer vectors). */
#ifndef CROSSALIGN_PHILOX_H
#define CROSSALIGN_PHILOX_H

#include <stdint.h>
#include <string.h>

#define PHILOX_LANES 8                /* blocks drawn side by side */
#define GROUP (8 * PHILOX_LANES)      /* elements per group: four 32-bit words of two draws per block */

typedef uint32_t philox_u32 __attribute__((vector_size(4 * PHILOX_LANES)));
typedef uint16_t philox_u16 __attribute__((vector_size(2 * PHILOX_LANES)));

#ifdef __AVX2__
#include <immintrin.h>
/* hi and lo 32 bits of each lane's 64-bit product m x: the even lanes' products, then the odd lanes' (shifted
 * down into the even positions), blended back into lane order */
static inline __attribute__((always_inline)) void mulhilo32(uint32_t m, philox_u32 x, philox_u32 *hi,
                                                              philox_u32 *lo) {
    const __m256i mv = _mm256_set1_epi64x(m);
    __m256i even = _mm256_mul_epu32((__m256i)x, mv), odd = _mm256_mul_epu32(_mm256_srli_epi64((__m256i)x, 32), mv);
    *lo = (philox_u32)_mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
    *hi = (philox_u32)_mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}
#else
/* the same, lane by lane (the compiler vectorises what it can) */
static inline __attribute__((always_inline)) void mulhilo32(uint32_t m, philox_u32 x, philox_u32 *hi,
                                                              philox_u32 *lo) {
    for (int l = 0; l < PHILOX_LANES; l++) {
        uint64_t product = (uint64_t)m * x[l];
        (*hi)[l] = (uint32_t)(product >> 32), (*lo)[l] = (uint32_t)product;
    }
}
#endif

/* the four words of Philox4x32-10 blocks PHILOX_LANES (group + g) + l, lane l of w[g][0..3], for g < groups (1 or
 * 2, a constant where inlined): two groups' rounds interleaved, since one group's rounds are a chain of dependent
 * multiplies that waits on their latency (0.52 -> 0.40 ns per draw on an AVX2 core) */
static inline __attribute__((always_inline)) void philox4x32(int groups, uint64_t group, uint64_t seed,
                                                              philox_u32 w[2][4]) {
    philox_u32 lane;
    for (int l = 0; l < PHILOX_LANES; l++) lane[l] = (uint32_t)l;
    for (int g = 0; g < groups; g++) {
        const uint64_t first = (group + g) * PHILOX_LANES; /* a multiple of PHILOX_LANES: adding a lane never carries */
        w[g][0] = lane + (uint32_t)first, w[g][1] = (philox_u32){0} + (uint32_t)(first >> 32);
        w[g][2] = w[g][3] = (philox_u32){0};
    }
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    #pragma GCC unroll 10
    for (int round = 0; round < 10; round++) {
        philox_u32 hi0[2], lo0[2], hi1[2], lo1[2];
        for (int g = 0; g < groups; g++) mulhilo32(0xD2511F53u, w[g][0], &hi0[g], &lo0[g]);
        for (int g = 0; g < groups; g++) mulhilo32(0xCD9E8D57u, w[g][2], &hi1[g], &lo1[g]);
        for (int g = 0; g < groups; g++)
            w[g][0] = hi1[g] ^ w[g][1] ^ k0, w[g][1] = lo1[g], w[g][2] = hi0[g] ^ w[g][3] ^ k1, w[g][3] = lo0[g];
        k0 += 0x9E3779B9u, k1 += 0xBB67AE85u; /* the key schedule's Weyl increments */
    }
}

/* the GROUP 15-bit draws of each of `groups` (1 or 2) groups from `group` on into d */
static inline __attribute__((always_inline)) void philox_groups(int groups, uint64_t group, uint64_t seed,
                                                                 uint16_t *d) {
    philox_u32 w[2][4];
    philox4x32(groups, group, seed, w);
    for (int g = 0; g < groups; g++)
        for (int k = 0; k < 4; k++) {
            philox_u16 low = __builtin_convertvector(w[g][k] & 0x7FFFu, philox_u16);
            philox_u16 high = __builtin_convertvector((w[g][k] >> 16) & 0x7FFFu, philox_u16);
            memcpy(d + g * GROUP + 2 * k * PHILOX_LANES, &low, sizeof low);
            memcpy(d + g * GROUP + (2 * k + 1) * PHILOX_LANES, &high, sizeof high);
        }
}

/* the 15-bit draws of elements [start, start + len) into d[0, len); start need not be a multiple of GROUP */
static inline __attribute__((always_inline)) void philox_draws(int64_t start, int64_t len, uint64_t seed,
                                                               uint16_t *d) {
    int64_t i = 0, skip = start % GROUP;
    if (skip) { /* a partial first group */
        uint16_t group[GROUP];
        int64_t take = GROUP - skip < len ? GROUP - skip : len;
        philox_groups(1, (uint64_t)(start / GROUP), seed, group);
        memcpy(d, group + skip, take * sizeof *d);
        i = take;
    }
    for (; i + 2 * GROUP <= len; i += 2 * GROUP) philox_groups(2, (uint64_t)((start + i) / GROUP), seed, d + i);
    if (i + GROUP <= len) {
        philox_groups(1, (uint64_t)((start + i) / GROUP), seed, d + i);
        i += GROUP;
    }
    if (i < len) { /* a partial last group */
        uint16_t group[GROUP];
        philox_groups(1, (uint64_t)((start + i) / GROUP), seed, group);
        memcpy(d + i, group, (len - i) * sizeof *d);
    }
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
