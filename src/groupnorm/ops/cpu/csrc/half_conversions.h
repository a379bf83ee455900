/* float16 and bfloat16 to and from float32, rounding to nearest even as torch does: scalar conversions (exact
 * widening; narrowing with subnormals, overflow to infinity and NaN kept NaN), AVX-512 ones for 16 values at a
 * time, and loops over ranges. tests/cpu/conversions_check.c checks them exhaustively. */
#ifndef GN_HALF_CONVERSIONS_H
#define GN_HALF_CONVERSIONS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef __AVX512F__
#include <immintrin.h>
#endif

#include "common.h"

/* the library's dtype codes (groupnorm.ops.cpu.kernels.HALF_DTYPE_CODES) */
enum { DT_FLOAT16 = 1, DT_BFLOAT16 = 2 };

#define CONVERT_PIECE 16384 /* elements per conversion work item */

static inline float bf16_to_f32(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* torch's rounding (c10::BFloat16): NaN to the canonical quiet NaN, everything else to nearest even, subnormals
 * included (AVX512-BF16's vcvtneps2bf16 would flush those to zero) */
static inline uint16_t f32_to_bf16(float f) {
    if (isnan(f)) return 0x7FC0;
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

/* IEEE binary16 by bit manipulation (compilers before gcc 12 have no _Float16 on x86): exact widening, and
 * narrowing rounded to nearest even with subnormals, overflow to infinity and NaN kept NaN */
static inline float f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
    uint32_t u;
    float f;
    if (exp == 0x1F) {
        u = sign | 0x7F800000u | (man << 13); /* infinity, NaN */
    } else if (exp != 0) {
        u = sign | ((exp + 112u) << 23) | (man << 13); /* rebias 15 -> 127 */
    } else {
        f = (float)man * 0x1p-24f; /* zero or subnormal: man 2^-24, exact */
        memcpy(&u, &f, sizeof u);
        u |= sign;
    }
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint16_t f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    u &= 0x7FFFFFFFu;
    if (u > 0x7F800000u) return sign | 0x7E00u;  /* NaN */
    if (u >= 0x477FF000u) return sign | 0x7C00u; /* 65520 and up round to infinity */
    if (u >= 0x38800000u) {                      /* normal binary16: rebias, round 23 -> 10 mantissa bits */
        const uint32_t v = u - 0x38000000u;
        return sign | (uint16_t)((v + 0xFFFu + ((v >> 13) & 1u)) >> 13);
    }
    float a; /* subnormal or zero: |f| 2^24 rounded to an integer, nearest even (1024 is the smallest normal) */
    memcpy(&a, &u, sizeof a);
    const float m = (a * 0x1p24f + 0x1p23f) - 0x1p23f;
    return sign | (uint16_t)m;
}

#ifdef __AVX512F__
static inline __m512 load16_f32(const uint16_t *p, int dtype) {
    const __m256i h = _mm256_loadu_si256((const __m256i *)p);
    if (dtype == DT_FLOAT16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

static inline void store16_f32(uint16_t *p, __m512 v, int dtype) {
    __m256i h;
    if (dtype == DT_FLOAT16) {
        h = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    } else {
        const __m512i u = _mm512_castps_si512(v);
        const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
        __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF))), 16);
        r = _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7FC0));
        h = _mm512_cvtepi32_epi16(r);
    }
    _mm256_storeu_si256((__m256i *)p, h);
}
#endif

/* n values widened (vectors of 16, then a scalar tail) */
static void to_f32_range(const uint16_t *src, float *dst, i64 n, int dtype) {
    i64 i = 0;
#ifdef __AVX512F__
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, load16_f32(src + i, dtype));
#endif
    for (; i < n; i++) dst[i] = dtype == DT_FLOAT16 ? f16_to_f32(src[i]) : bf16_to_f32(src[i]);
}

/* n values rounded to the 2-byte type */
static void from_f32_range(const float *src, uint16_t *dst, i64 n, int dtype) {
    i64 i = 0;
#ifdef __AVX512F__
    for (; i + 16 <= n; i += 16) store16_f32(dst + i, _mm512_loadu_ps(src + i), dtype);
#endif
    for (; i < n; i++) dst[i] = dtype == DT_FLOAT16 ? f32_to_f16(src[i]) : f32_to_bf16(src[i]);
}

/* the range loops over whole buffers, in pieces split among the threads */
static void to_f32(const void *src, i64 offset, float *dst, i64 n, int dtype, int nthreads) {
    const uint16_t *s = (const uint16_t *)src + offset;
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (i64 i = 0; i < n; i += CONVERT_PIECE) to_f32_range(s + i, dst + i, imin(CONVERT_PIECE, n - i), dtype);
}

static void from_f32(const float *src, void *dst, i64 offset, i64 n, int dtype, int nthreads) {
    uint16_t *d = (uint16_t *)dst + offset;
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (i64 i = 0; i < n; i += CONVERT_PIECE) from_f32_range(src + i, d + i, imin(CONVERT_PIECE, n - i), dtype);
}

#endif
