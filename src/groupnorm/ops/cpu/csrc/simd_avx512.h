/* AVX-512 building blocks shared by the forward and the backward: masks for a last partial vector, SiLU and its
 * derivative on 16 lanes, the lane totals of 16 vectors, and whether streaming stores exist. Everything is inside
 * #ifdef __AVX512F__: without AVX-512 (an x86-64-v3 or plain x86-64 build) the portable loops of the other parts
 * run instead, and GN_HAVE_STREAM is 0. */
#ifndef GN_SIMD_AVX512_H
#define GN_SIMD_AVX512_H

#include <math.h>

#include "common.h"

#ifdef __AVX512F__
#include <immintrin.h>

/* the first rem lanes, rem < 16 (0: none) */
static inline __mmask16 tail_mask(i64 rem) { return (__mmask16)((1u << rem) - 1u); }

/* SiLU with AVX-512 intrinsics: exp through vscalefps (2^n * 2^f, f in [-1/2, 1/2], degree-5 polynomial) and the
 * division through vrcp14ps plus one Newton step: fewer and cheaper instructions than the portable loop, which
 * matters because the fused GN+SiLU is compute-bound there. The exponent is clamped to +-126 so exp stays finite
 * (silu(+inf) = +inf), in one vrangeps (the smaller magnitude, with t's sign), which returns a NaN t as it is.
 * The degree-5 polynomial (near-minimax for relative error, 7.6e-8 in exact arithmetic) and the one-instruction
 * clamp are there for speed over degree 6 with min/max (see kernel-choice.md, section "SiLU arithmetic"). Against
 * float64 SiLU of the same pre-activation the error is unchanged where it is largest (16 ulp at v = -20, from
 * rounding t = -v log2(e) to float32) and 5 ulp against 4.4 at most for |v| <= 5 (99.9th percentile 2.9 against
 * 2.4). */
static inline __m512 sigmoid16(__m512 v) {
    __m512 t = _mm512_mul_ps(v, _mm512_set1_ps(-1.44269504088896341f));
#ifdef __AVX512DQ__
    t = _mm512_range_ps(t, _mm512_set1_ps(126.0f), 0x02); /* imm: absolute minimum, sign of t */
#else
    t = _mm512_max_ps(_mm512_set1_ps(-126.0f), _mm512_min_ps(_mm512_set1_ps(126.0f), t));
#endif
    const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_set1_ps(0.001328230369836092f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.009675590321421623f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.05550695210695267f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.24022118747234344f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.6931470036506653f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0000001192092896f));
    const __m512 d = _mm512_add_ps(_mm512_scalef_ps(p, n), _mm512_set1_ps(1.0f));
    __m512 r = _mm512_rcp14_ps(d);
    return _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0f)));
}

static inline __m512 silu16(__m512 v) {
    /* the clamp leaves 1/(1 + e) a tiny positive number at -inf: give torch's -inf * 0 = NaN explicitly */
    const __mmask16 neg_inf = _mm512_cmp_ps_mask(v, _mm512_set1_ps(-INFINITY), _CMP_EQ_OQ);
    return _mm512_mask_mov_ps(_mm512_mul_ps(v, sigmoid16(v)), neg_inf, _mm512_set1_ps(NAN));
}

/* d silu / d v = s (1 + v (1 - s)); at -inf torch gives 0 * -inf = NaN, at +inf 1 + inf * 0 = NaN (the latter
 * follows from the arithmetic, the former is set explicitly as in silu16) */
static inline __m512 silu_grad16(__m512 v) {
    const __m512 s = sigmoid16(v), one = _mm512_set1_ps(1.0f);
    const __m512 g = _mm512_mul_ps(s, _mm512_fmadd_ps(v, _mm512_sub_ps(one, s), one));
    const __mmask16 neg_inf = _mm512_cmp_ps_mask(v, _mm512_set1_ps(-INFINITY), _CMP_EQ_OQ);
    return _mm512_mask_mov_ps(g, neg_inf, _mm512_set1_ps(NAN));
}

/* the lane totals of 16 vectors as one vector, lane r = total of v[r]: a tree of shuffles and adds that adds lanes
 * (i, i + 8), (i, i + 4), (i, i + 2), (i, i + 1) of each vector, the order of _mm512_reduce_add_ps, in about a
 * quarter of its instructions per vector */
static inline __m512 lane_totals16(const __m512 *v) {
    __m512 h[8], q[4], e[2];
    for (int i = 0; i < 8; i++) /* 256-bit halves: lo = vector 2i, hi = vector 2i + 1 (8 partial lanes each) */
        h[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
    for (int i = 0; i < 4; i++) /* 128-bit quarters: vectors 4i .. 4i + 3 (4 partial lanes each) */
        q[i] = _mm512_add_ps(_mm512_shuffle_f32x4(h[2 * i], h[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(h[2 * i], h[2 * i + 1], 0xDD));
    for (int i = 0; i < 2; i++) /* quarter k: lanes 0-1 vector 8i + k, lanes 2-3 vector 8i + 4 + k */
        e[i] = _mm512_add_ps(_mm512_shuffle_ps(q[2 * i], q[2 * i + 1], 0x44),
                             _mm512_shuffle_ps(q[2 * i], q[2 * i + 1], 0xEE));
    /* quarter k, lane j: vector 4j + k */
    const __m512 t = _mm512_add_ps(_mm512_shuffle_ps(e[0], e[1], 0x88), _mm512_shuffle_ps(e[0], e[1], 0xDD));
    const __m512i order = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
    return _mm512_permutexvar_ps(order, t);
}

/* streaming (non-temporal) stores, and the fence that orders them before the call returns */
#define GN_HAVE_STREAM 1
#define GN_SFENCE() _mm_sfence()
#else
#define GN_HAVE_STREAM 0
#define GN_SFENCE() ((void)0)
#endif

#endif
