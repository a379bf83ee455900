/* The backward in NCHW layout (rows of S contiguous elements, a group D consecutive rows): the loops of the sums
 * and of dx over rows, then backward_nchw. */
#ifndef GN_BACKWARD_NCHW_H
#define GN_BACKWARD_NCHW_H

#include "activations.h"
#include "backward_common.h"
#include "common.h"
#include "scratch_and_threads.h"
#include "simd_avx512.h"
#include "statistics.h"

/* S1 = sum g, S2 = sum g (x - m) of one row, g = dy act'(pre): RED_LANES partial sums and a scalar tail */
GN_INLINE void row_sums_impl(const float *dy, const float *x, const float *res, i64 len, float m, float a, float b,
                             float *o1, float *o2, float *gout, const int act, const int has_res, const int has_gout) {
    float a1[RED_LANES] = {0.0f}, a2[RED_LANES] = {0.0f};
    i64 i = 0;
    for (; i + RED_LANES <= len; i += RED_LANES)
        for (int j = 0; j < RED_LANES; j++) {
            const float gg = grad_pre(dy[i + j], x[i + j], m, a, b, has_res ? res[i + j] : 0.0f, act);
            if (has_gout) gout[i + j] = gg;
            a1[j] += gg;
            a2[j] += gg * (x[i + j] - m);
        }
    float t1 = 0.0f, t2 = 0.0f;
    for (; i < len; i++) {
        const float gg = grad_pre(dy[i], x[i], m, a, b, has_res ? res[i] : 0.0f, act);
        if (has_gout) gout[i] = gg;
        t1 += gg;
        t2 += gg * (x[i] - m);
    }
    *o1 = lanes_total(a1) + t1;
    *o2 = lanes_total(a2) + t2;
}

#ifdef __AVX512F__
/* Plain epilogue (g = dy), AVX-512 with a masked tail: NCHW rows of 49..196 elements never reach the RED_LANES
 * loop above, and its scalar remainder was slow on ResNet stage-4 shapes (see kernel-choice.md, section "Plain row
 * sums with a masked tail"). Four accumulators, combined in a fixed order: the same bits for any thread count. */
GN_INLINE void row_vectors_plain(const float *dy, const float *x, i64 len, float m, __m512 *v1, __m512 *v2) {
    const __m512 vm = _mm512_set1_ps(m);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, q0 = a0, q1 = a0, q2 = a0, q3 = a0;
    i64 i = 0;
    for (; i + 64 <= len; i += 64) {
        const __m512 d0 = _mm512_loadu_ps(dy + i), d1 = _mm512_loadu_ps(dy + i + 16);
        const __m512 d2 = _mm512_loadu_ps(dy + i + 32), d3 = _mm512_loadu_ps(dy + i + 48);
        a0 = _mm512_add_ps(a0, d0), a1 = _mm512_add_ps(a1, d1), a2 = _mm512_add_ps(a2, d2);
        a3 = _mm512_add_ps(a3, d3);
        q0 = _mm512_fmadd_ps(d0, _mm512_sub_ps(_mm512_loadu_ps(x + i), vm), q0);
        q1 = _mm512_fmadd_ps(d1, _mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vm), q1);
        q2 = _mm512_fmadd_ps(d2, _mm512_sub_ps(_mm512_loadu_ps(x + i + 32), vm), q2);
        q3 = _mm512_fmadd_ps(d3, _mm512_sub_ps(_mm512_loadu_ps(x + i + 48), vm), q3);
    }
    /* up to four more vectors, the last one masked, into a0..a2 / q0..q2 in turn */
    for (int k = 0; i < len; i += 16, k++) {
        const __mmask16 mk = len - i >= 16 ? (__mmask16)0xFFFF : tail_mask(len - i);
        const __m512 d = _mm512_maskz_loadu_ps(mk, dy + i);
        const __m512 xc = _mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + i), vm);
        if (k == 0) a0 = _mm512_add_ps(a0, d), q0 = _mm512_mask3_fmadd_ps(d, xc, q0, mk);
        else if (k == 1) a1 = _mm512_add_ps(a1, d), q1 = _mm512_mask3_fmadd_ps(d, xc, q1, mk);
        else a2 = _mm512_add_ps(a2, d), q2 = _mm512_mask3_fmadd_ps(d, xc, q2, mk);
    }
    *v1 = _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));
    *v2 = _mm512_add_ps(_mm512_add_ps(q0, q1), _mm512_add_ps(q2, q3));
}

/* Plain epilogue sums of rows [r0, r1) of S elements (S1[r] = sum dy, S2[r] = sum dy (x - M[r])), 16 rows at a
 * time: one horizontal sum per row had been a visible share of the sums pass on the short rows of ResNet maps (49,
 * 196 elements). A last batch of fewer rows is padded with zero vectors, so every row goes through the same tree
 * of adds however the rows are batched: the same bits for any split of the rows between threads. */
static void rows_sums_plain(const float *dy, const float *x, i64 S, i64 r0, i64 r1, const float *M, float *S1,
                            float *S2) {
    for (i64 r = r0; r < r1; r += 16) {
        const int n = (int)imin(16, r1 - r);
        __m512 v1[16], v2[16];
        for (int k = 0; k < 16; k++) {
            if (k < n) row_vectors_plain(dy + (r + k) * S, x + (r + k) * S, S, M[r + k], &v1[k], &v2[k]);
            else v1[k] = v2[k] = _mm512_setzero_ps();
        }
        const __mmask16 kn = n == 16 ? (__mmask16)0xFFFF : tail_mask(n);
        _mm512_mask_storeu_ps(S1 + r, kn, lane_totals16(v1));
        _mm512_mask_storeu_ps(S2 + r, kn, lane_totals16(v2));
    }
}

/* SiLU epilogue: g = dy * silu'((x - m) a + b + res), then the same sums; masked tail, fixed lane order */
static void row_sums_silu(const float *dy, const float *x, const float *res, i64 len, float m, float a, float b,
                          float *o1, float *o2, float *gout) {
    const __m512 vm = _mm512_set1_ps(m), va = _mm512_set1_ps(a), vb = _mm512_set1_ps(b);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, q0 = a0, q1 = a0;
    for (i64 i = 0, k = 0; i < len; i += 16, k ^= 1) {
        const __mmask16 mk = len - i >= 16 ? (__mmask16)0xFFFF : tail_mask(len - i);
        const __m512 xc = _mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + i), vm);
        __m512 pre = _mm512_fmadd_ps(xc, va, vb);
        if (res) pre = _mm512_add_ps(pre, _mm512_maskz_loadu_ps(mk, res + i));
        const __m512 g = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, dy + i), silu_grad16(pre));
        if (gout) _mm512_mask_storeu_ps(gout + i, mk, g);
        if (k == 0) a0 = _mm512_mask_add_ps(a0, mk, a0, g), q0 = _mm512_mask3_fmadd_ps(g, xc, q0, mk);
        else a1 = _mm512_mask_add_ps(a1, mk, a1, g), q1 = _mm512_mask3_fmadd_ps(g, xc, q1, mk);
    }
    *o1 = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    *o2 = _mm512_reduce_add_ps(_mm512_add_ps(q0, q1));
}

/* dx = p dy + q (x - m) + r (and dresidual = dy) for the plain epilogue, masked tail */
static void dx_row_plain(const float *dy, const float *x, float *dx, float *dres, i64 len, float m, float p,
                         float q, float r) {
    const __m512 vm = _mm512_set1_ps(m), vp = _mm512_set1_ps(p), vq = _mm512_set1_ps(q), vr = _mm512_set1_ps(r);
    for (i64 i = 0; i < len; i += 16) {
        const __mmask16 mk = len - i >= 16 ? (__mmask16)0xFFFF : tail_mask(len - i);
        const __m512 d = _mm512_maskz_loadu_ps(mk, dy + i);
        if (dx) {
            const __m512 xc = _mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + i), vm);
            _mm512_mask_storeu_ps(dx + i, mk, _mm512_fmadd_ps(vq, xc, _mm512_fmadd_ps(vp, d, vr)));
        }
        if (dres) _mm512_mask_storeu_ps(dres + i, mk, d);
    }
}

/* dx of the plain epilogue with streaming stores (outputs too large to stay in the last-level cache, see the
 * forward's apply_row_stream): aligned body streamed, masked plain stores for the unaligned head and the tail */
static void dx_row_stream(const float *dy, const float *x, float *dx, i64 len, float m, float p, float q,
                          float r) {
    const __m512 vm = _mm512_set1_ps(m), vp = _mm512_set1_ps(p), vq = _mm512_set1_ps(q), vr = _mm512_set1_ps(r);
#define GN_DX(K, I)                                                                                              \
    _mm512_fmadd_ps(vq, _mm512_sub_ps(_mm512_maskz_loadu_ps((K), x + (I)), vm),                                 \
                    _mm512_fmadd_ps(vp, _mm512_maskz_loadu_ps((K), dy + (I)), vr))
    i64 i = imin(len, (i64)(((64 - ((uintptr_t)dx & 63)) & 63) / sizeof(float)));
    if (i > 0) _mm512_mask_storeu_ps(dx, tail_mask(i), GN_DX(tail_mask(i), 0));
    for (; i + 16 <= len; i += 16) _mm512_stream_ps(dx + i, GN_DX((__mmask16)0xFFFF, i));
    if (i < len) _mm512_mask_storeu_ps(dx + i, tail_mask(len - i), GN_DX(tail_mask(len - i), i));
#undef GN_DX
}
#endif

/* gout: where the SiLU sums store the gradient at the pre-activation for the dx pass (see stores_g), or NULL */
static void row_sums(const float *dy, const float *x, const float *res, i64 len, float m, float a, float b,
                     int act, float *o1, float *o2, float *gout) {
#ifdef __AVX512F__
    if (act == ACT_NONE) {
        rows_sums_plain(dy, x, len, 0, 1, &m, o1, o2);
        return;
    }
    if (act == ACT_SILU) {
        row_sums_silu(dy, x, res, len, m, a, b, o1, o2, gout);
        return;
    }
#endif
#define RS(A, HR, HG) row_sums_impl(dy, x, res, len, m, a, b, o1, o2, gout, A, HR, HG)
#define RS_R1(A) RS(A, 1, 1)
#define RS_R0(A) RS(A, 1, 0)
#define RS_N1(A) RS(A, 0, 1)
#define RS_N0(A) RS(A, 0, 0)
    if (res) {
        if (gout) { ACT_SWITCH(RS_R1) } else { ACT_SWITCH(RS_R0) }
    } else {
        if (gout) { ACT_SWITCH(RS_N1) } else { ACT_SWITCH(RS_N0) }
    }
}

/* row_sums for rows [r0, r1) of S elements, with the per-row coefficients; g stored at gbuf's rows when given */
GN_NOCLONE
static void rows_sums(const float *dy, const float *x, const float *res, i64 S, i64 r0, i64 r1, const float *M,
                      const float *A, const float *B, int act, float *S1, float *S2, float *gbuf) {
#ifdef __AVX512F__
    if (act == ACT_NONE) {
        rows_sums_plain(dy, x, S, r0, r1, M, S1, S2);
        return;
    }
#endif
    for (i64 row = r0; row < r1; row++)
        row_sums(dy + row * S, x + row * S, res ? res + row * S : NULL, S, M[row], A[row], B[row], act, &S1[row],
                 &S2[row], gbuf ? gbuf + row * S : NULL);
}

GN_INLINE void dx_row_impl(const float *dy, const float *x, const float *res, float *dx, float *dres, i64 len,
                           float m, float a, float b, float p, float q, float r, const int act, const int has_res,
                           const int has_dx, const int has_dres) {
#pragma omp simd
    for (i64 i = 0; i < len; i++) {
        const float gg = grad_pre(dy[i], x[i], m, a, b, has_res ? res[i] : 0.0f, act);
        if (has_dx) dx[i] = p * gg + q * (x[i] - m) + r;
        if (has_dres) dres[i] = gg;
    }
}

static void dx_row(const float *dy, const float *x, const float *res, float *dx, float *dres, i64 len, float m,
                   float a, float b, float p, float q, float r, int act) {
#ifdef __AVX512F__
    if (act == ACT_NONE) {
        dx_row_plain(dy, x, dx, dres, len, m, p, q, r);
        return;
    }
#endif
#define DXR(A, HR, HX, HD) dx_row_impl(dy, x, res, dx, dres, len, m, a, b, p, q, r, A, HR, HX, HD)
#define DXR_R11(A) DXR(A, 1, 1, 1)
#define DXR_R10(A) DXR(A, 1, 1, 0)
#define DXR_R01(A) DXR(A, 1, 0, 1)
#define DXR_N11(A) DXR(A, 0, 1, 1)
#define DXR_N10(A) DXR(A, 0, 1, 0)
#define DXR_N01(A) DXR(A, 0, 0, 1)
    if (res) {
        if (dx && dres) { ACT_SWITCH(DXR_R11) } else if (dx) { ACT_SWITCH(DXR_R10) } else { ACT_SWITCH(DXR_R01) }
    } else {
        if (dx && dres) { ACT_SWITCH(DXR_N11) } else if (dx) { ACT_SWITCH(DXR_N10) } else { ACT_SWITCH(DXR_N01) }
    }
}

#ifdef __AVX512F__
/* dx over a contiguous range of rows as one stream of full vectors (see apply_range_plain): plain epilogue */
static void dx_range_plain(const float *dy, const float *x, float *dx, i64 i0, i64 i1, i64 S, const float *M,
                           const float *P, const float *Q, const float *R) {
    i64 row = i0 / S, row_end = (row + 1) * S;
    __m512 vm = _mm512_set1_ps(M[row]), vp = _mm512_set1_ps(P[row]), vq = _mm512_set1_ps(Q[row]);
    __m512 vr = _mm512_set1_ps(R[row]);
    for (i64 i = i0; i < i1; i += 16) {
        if (i >= row_end) {
            row++, row_end += S;
            vm = _mm512_set1_ps(M[row]), vp = _mm512_set1_ps(P[row]), vq = _mm512_set1_ps(Q[row]);
            vr = _mm512_set1_ps(R[row]);
        }
        const __mmask16 k = i1 - i >= 16 ? (__mmask16)0xFFFF : tail_mask(i1 - i);
        const __m512 d = _mm512_maskz_loadu_ps(k, dy + i), v = _mm512_maskz_loadu_ps(k, x + i);
        __m512 bm = vm, bp = vp, bq = vq, br = vr;
        if (i + 16 > row_end && row_end < i1) {
            const __mmask16 next = (__mmask16)~tail_mask(row_end - i);
            row++, row_end += S;
            vm = _mm512_set1_ps(M[row]), vp = _mm512_set1_ps(P[row]), vq = _mm512_set1_ps(Q[row]);
            vr = _mm512_set1_ps(R[row]);
            bm = _mm512_mask_blend_ps(next, bm, vm), bp = _mm512_mask_blend_ps(next, bp, vp);
            bq = _mm512_mask_blend_ps(next, bq, vq), br = _mm512_mask_blend_ps(next, br, vr);
        }
        const __m512 xc = _mm512_sub_ps(v, bm);
        _mm512_mask_storeu_ps(dx + i, k, _mm512_fmadd_ps(bq, xc, _mm512_fmadd_ps(bp, d, br)));
    }
}
#endif

/* dx (and dresidual) for elements [i0, i1) of the (rows of S) arrays */
GN_NOCLONE
static void dx_range(const float *dy, const float *x, const float *res, float *dx, float *dres, i64 i0, i64 i1,
                     i64 S, const float *M, const float *A, const float *B, const float *P, const float *Q,
                     const float *R, int act, int stream) {
#ifdef __AVX512F__
    if (stream) { /* plain epilogue, dx only (see backward_f32) */
        for (i64 i = i0; i < i1;) {
            const i64 row = i / S, row_end = imin(i1, (row + 1) * S);
            dx_row_stream(dy + i, x + i, dx + i, row_end - i, M[row], P[row], Q[row], R[row]);
            i = row_end;
        }
        GN_SFENCE();
        return;
    }
    if (act == ACT_NONE && dx && !dres && S >= 16 && S < 128) { /* as apply_range: short rows only */
        dx_range_plain(dy, x, dx, i0, i1, S, M, P, Q, R);
        return;
    }
#endif
    for (i64 i = i0; i < i1;) {
        const i64 row = i / S, row_end = imin(i1, (row + 1) * S);
        dx_row(dy + i, x + i, res ? res + i : NULL, dx ? dx + i : NULL, dres ? dres + i : NULL, row_end - i,
               M[row], A[row], B[row], P[row], Q[row], R[row], act);
        i = row_end;
    }
}

/* Groups go whole to one thread in runs of consecutive groups when there are enough small ones (fused_ok, with dy
 * and x counted); otherwise in waves of consecutive groups, each pass split among the threads. */
static int backward_nchw(const BackwardPass *bp) {
    const float *dy = bp->dy, *x = bp->x, *rres = bp->res, *rstd = bp->rstd, *w = bp->w, *bias = bp->bias;
    const float *scale = bp->scale, *dx_src = bp->dx_src;
    float *M = bp->M, *A = bp->A, *B = bp->B, *S1 = bp->S1, *S2 = bp->S2, *P = bp->P, *Q = bp->Q, *R = bp->R;
    float *pw = bp->pw, *pb = bp->pb, *gbuf = bp->gbuf, *dx = bp->dx, *dx_res_out = bp->dres_out;
    float *dscale = bp->dscale, *dshift = bp->dshift;
    const i64 N = bp->N, C = bp->C, S = bp->S, G = bp->G, D = C / G, NG = N * G;
    const int act = bp->act, dx_act = bp->dx_act, nthreads = bp->nthreads, stream = bp->stream;

    if (fused_ok(NG, D * S * 8, nthreads, bp->wave_bytes)) {
        /* runs of consecutive groups by one thread while dy and x sit in L2 (see forward_nchw); the same calls
         * as the split path below */
        const i64 per_run = imax(1, imin(cdiv(NG, 2 * (i64)nthreads), RUN_BYTES / (D * S * 8)));
        const SavedSchedule saved = set_run_schedule(act);
#pragma omp parallel for schedule(runtime) num_threads(nthreads)
        for (i64 run = 0; run < cdiv(NG, per_run); run++) {
            const i64 g_begin = run * per_run, g_end = imin(NG, g_begin + per_run);
            rows_sums(dy, x, rres, S, g_begin * D, g_end * D, M, A, B, act, S1, S2, gbuf);
            for (i64 ng = g_begin; ng < g_end; ng++)
                group_grads(ng / G, ng % G, C, D, S, rstd[ng], w, bias, scale, S1, S2, P, Q, R, dscale, dshift, pw,
                            pb);
            if (bp->dx_pass)
                dx_range(dx_src, x, gbuf ? NULL : rres, dx, dx_res_out, g_begin * D * S, g_end * D * S, S, M, A, B,
                         P, Q, R, dx_act, stream);
        }
        restore_schedule(saved);
        return 0;
    }

    const i64 rows_per_wave = imax(1, imin(N * C, bp->wave_bytes / (S * 8))); /* dy and x */
    /* waves on group boundaries so a wave's coefficients are complete */
    const i64 wave_groups = imax(1, rows_per_wave / D);
#pragma omp parallel num_threads(nthreads)
    for (i64 g0 = 0; g0 < NG; g0 += wave_groups) {
        const i64 g1 = imin(NG, g0 + wave_groups);
        /* rows in batches of 16 (see rows_sums_plain) */
        const i64 row0 = g0 * D, nbatch = cdiv((g1 - g0) * D, 16);
#pragma omp for schedule(static)
        for (i64 bt = 0; bt < nbatch; bt++)
            rows_sums(dy, x, rres, S, row0 + 16 * bt, imin(g1 * D, row0 + 16 * (bt + 1)), M, A, B, act, S1, S2,
                      gbuf);
#pragma omp for schedule(static)
        for (i64 ng = g0; ng < g1; ng++)
            group_grads(ng / G, ng % G, C, D, S, rstd[ng], w, bias, scale, S1, S2, P, Q, R, dscale, dshift, pw, pb);
        if (bp->dx_pass) {
            const i64 base = g0 * D * S, total = (g1 - g0) * D * S, npieces = cdiv(total, APPLY_PIECE);
#pragma omp for schedule(static)
            for (i64 pc = 0; pc < npieces; pc++) {
                const i64 i = base + pc * APPLY_PIECE;
                dx_range(dx_src, x, gbuf ? NULL : rres, dx, dx_res_out, i, imin(base + total, i + APPLY_PIECE), S,
                         M, A, B, P, Q, R, dx_act, stream);
            }
        }
    }
    return 0;
}

#endif
