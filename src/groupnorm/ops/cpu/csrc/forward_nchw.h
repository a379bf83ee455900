/* The forward in NCHW layout ((N, C, *spatial) contiguous: each (n, c) is a row of S contiguous elements, each
 * group D consecutive rows): the apply loops over rows, then forward_nchw. */
#ifndef GN_FORWARD_NCHW_H
#define GN_FORWARD_NCHW_H

#include "activations.h"
#include "common.h"
#include "scratch_and_threads.h"
#include "simd_avx512.h"
#include "statistics.h"

#ifdef __AVX512F__
/* Streaming (non-temporal) stores for large outputs without an epilogue: y then bypasses the caches, which saves
 * the read-for-ownership of every y line and leaves the cache to x, whose second read (the apply pass) then comes
 * from L3 instead of DRAM. Same arithmetic as the plain loop (fma(x - m, a, b)), so the same bits. */
static void apply_row_stream(const float *x, float *y, i64 len, float m, float a, float b) {
    const __m512 vm = _mm512_set1_ps(m), va = _mm512_set1_ps(a), vb = _mm512_set1_ps(b);
    /* masked plain stores up to the first 64-byte boundary and for the tail, streaming stores in between */
    i64 i = imin(len, (i64)(((64 - ((uintptr_t)y & 63)) & 63) / sizeof(float)));
    if (i > 0) {
        const __mmask16 k = (__mmask16)((1u << i) - 1u);
        _mm512_mask_storeu_ps(y, k, _mm512_fmadd_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x), vm), va, vb));
    }
    for (; i + 16 <= len; i += 16)
        _mm512_stream_ps(y + i, _mm512_fmadd_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm), va, vb));
    if (i < len) {
        const __mmask16 k = (__mmask16)((1u << (len - i)) - 1u);
        _mm512_mask_storeu_ps(y + i, k,
                              _mm512_fmadd_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vm), va, vb));
    }
}

static void apply_row_silu(const float *x, const float *res, float *y, i64 len, float m, float a, float b) {
    const __m512 vm = _mm512_set1_ps(m), va = _mm512_set1_ps(a), vb = _mm512_set1_ps(b);
    for (i64 i = 0; i < len; i += 16) {
        const __mmask16 k = len - i >= 16 ? (__mmask16)0xFFFF : tail_mask(len - i);
        __m512 v = _mm512_fmadd_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vm), va, vb);
        if (res) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, res + i));
        _mm512_mask_storeu_ps(y + i, k, silu16(v));
    }
}

/* The plain epilogue with a masked tail: NCHW rows are often short (49 or 196 elements), where the compiler's
 * scalar remainder loop costs as much as the vector body. */
static void apply_row_plain(const float *x, const float *res, float *y, i64 len, float m, float a, float b) {
    const __m512 vm = _mm512_set1_ps(m), va = _mm512_set1_ps(a), vb = _mm512_set1_ps(b);
    i64 i = 0;
    for (; i + 16 <= len; i += 16) {
        __m512 v = _mm512_fmadd_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm), va, vb);
        if (res) v = _mm512_add_ps(v, _mm512_loadu_ps(res + i));
        _mm512_storeu_ps(y + i, v);
    }
    if (i < len) {
        const __mmask16 k = tail_mask(len - i);
        __m512 v = _mm512_fmadd_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vm), va, vb);
        if (res) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, res + i));
        _mm512_mask_storeu_ps(y + i, k, v);
    }
}

/* Plain (or SiLU) epilogue over a contiguous range of rows as one stream of full vectors: a vector that straddles
 * a row boundary takes each lane's coefficients from its own row (S >= 16, so at most two rows per vector). With
 * short rows (49 elements) the per-row loop spent as long on its prologue and masked tail as on the data (see
 * kernel-choice.md, section "Short NCHW rows as one vector stream"). Same arithmetic per element as
 * apply_row_plain / apply_row_silu. */
static void apply_range_plain(const float *x, float *y, i64 i0, i64 i1, i64 S, const float *M, const float *A,
                              const float *B, int silu) {
    i64 row = i0 / S, row_end = (row + 1) * S;
    __m512 vm = _mm512_set1_ps(M[row]), va = _mm512_set1_ps(A[row]), vb = _mm512_set1_ps(B[row]);
    for (i64 i = i0; i < i1; i += 16) {
        if (i >= row_end) {
            row++, row_end += S;
            vm = _mm512_set1_ps(M[row]), va = _mm512_set1_ps(A[row]), vb = _mm512_set1_ps(B[row]);
        }
        const __mmask16 k = i1 - i >= 16 ? (__mmask16)0xFFFF : tail_mask(i1 - i);
        const __m512 v = _mm512_maskz_loadu_ps(k, x + i);
        if (i + 16 <= row_end || row_end >= i1) {
            const __m512 t = _mm512_fmadd_ps(_mm512_sub_ps(v, vm), va, vb);
            _mm512_mask_storeu_ps(y + i, k, silu ? silu16(t) : t);
        } else {
            /* lanes from row_end - i on belong to the next row */
            const __mmask16 next = (__mmask16)~tail_mask(row_end - i);
            row++, row_end += S;
            const __m512 nm = _mm512_set1_ps(M[row]), na = _mm512_set1_ps(A[row]), nb = _mm512_set1_ps(B[row]);
            const __m512 bm = _mm512_mask_blend_ps(next, vm, nm), ba = _mm512_mask_blend_ps(next, va, na);
            const __m512 bb = _mm512_mask_blend_ps(next, vb, nb);
            const __m512 t = _mm512_fmadd_ps(_mm512_sub_ps(v, bm), ba, bb);
            _mm512_mask_storeu_ps(y + i, k, silu ? silu16(t) : t);
            vm = nm, va = na, vb = nb;
        }
    }
}
#endif

/* y[i] = act((x[i] - m) * a + b + res[i]) for one contiguous run with scalar coefficients (NCHW rows) */
#define APPLY_ROW(ACT)                                                                                           \
    do {                                                                                                         \
        if (res) {                                                                                               \
            _Pragma("omp simd") for (i64 i = 0; i < len; i++) y[i] =                                             \
                act_fwd((x[i] - m) * a + b + res[i], ACT);                                                       \
        } else {                                                                                                 \
            _Pragma("omp simd") for (i64 i = 0; i < len; i++) y[i] = act_fwd((x[i] - m) * a + b, ACT);           \
        }                                                                                                        \
    } while (0)

static void apply_row(const float *x, const float *res, float *y, i64 len, float m, float a, float b, int act) {
#ifdef __AVX512F__
    if (act == ACT_SILU) {
        apply_row_silu(x, res, y, len, m, a, b);
        return;
    }
    if (act == ACT_NONE) {
        apply_row_plain(x, res, y, len, m, a, b);
        return;
    }
#endif
    switch (act) {
    case ACT_RELU: APPLY_ROW(ACT_RELU); break;
    case ACT_SILU: APPLY_ROW(ACT_SILU); break;
    case ACT_GELU: APPLY_ROW(ACT_GELU); break;
    case ACT_GELU_TANH: APPLY_ROW(ACT_GELU_TANH); break;
    default: APPLY_ROW(ACT_NONE); break;
    }
}

/* Elements [i0, i1) of a (rows of S) array, row r with coefficients M[r], A[r], B[r]. */
GN_NOCLONE
static void apply_range(const float *x, const float *res, float *y, i64 i0, i64 i1, i64 S, const float *M,
                        const float *A, const float *B, int act, int stream) {
#ifdef __AVX512F__
    /* short rows only: a win at S = 49, a loss at 196 (kernel-choice.md, "Short NCHW rows as one vector stream") */
    if ((act == ACT_NONE || act == ACT_SILU) && !res && !stream && S >= 16 && S < 128) {
        apply_range_plain(x, y, i0, i1, S, M, A, B, act == ACT_SILU);
        return;
    }
#endif
    for (i64 i = i0; i < i1;) {
        const i64 row = i / S, row_end = imin(i1, (row + 1) * S);
#if GN_HAVE_STREAM
        if (stream)
            apply_row_stream(x + i, y + i, row_end - i, M[row], A[row], B[row]);
        else
#endif
            apply_row(x + i, res ? res + i : NULL, y + i, row_end - i, M[row], A[row], B[row], act);
        i = row_end;
    }
    if (stream) GN_SFENCE();
}

/* Groups go whole to one thread in runs of consecutive groups when there are enough small ones (fused_ok);
 * otherwise in waves of consecutive groups, each pass (block statistics, merges, apply) split among the threads. */
static int forward_nchw(const float *x, float *y, float *mean_out, float *rstd_out, const float *w,
                        const float *bias, const float *scale, const float *shift, const float *res, i64 N, i64 C,
                        i64 S, i64 G, float eps, int act, int nthreads, i64 wave_bytes, int stream) {
    const i64 D = C / G, L = D * S, NG = N * G;
    const i64 nblk = cdiv(L, NCHW_BLOCK);
    const i64 wave = imax(1, imin(NG, wave_bytes / (L * 4)));
    float *bstat = scratch(0, sizeof(float) * 2 * wave * nblk);
    float *coef = scratch(1, sizeof(float) * 3 * N * C);
    if (!bstat || !coef) return -1;
    float *M = coef, *A = coef + N * C, *B = coef + 2 * N * C;

    if (fused_ok(NG, L * 4, nthreads, wave_bytes)) {
        /* Runs of consecutive groups, up to RUN_BYTES of input, go to one thread: statistics of the whole run
         * (one long sequential read, which the hardware prefetcher follows far better than one short group at a
         * time), then the apply pass over the run from L2. Same blocks, same merge order as below: the same
         * bits. */
        const i64 per_run = imax(1, imin(cdiv(NG, 2 * (i64)nthreads), RUN_BYTES / (L * 4)));
        const i64 nruns = cdiv(NG, per_run);
        const SavedSchedule saved = set_run_schedule(act);
#pragma omp parallel for schedule(runtime) num_threads(nthreads)
        for (i64 run = 0; run < nruns; run++) {
            const i64 g_begin = run * per_run, g_end = imin(NG, g_begin + per_run);
            for (i64 gi = g_begin; gi < g_end; gi++) {
                Stat st = {0.0, 0.0, 0.0};
                for (i64 b = 0; b < nblk; b++) {
                    const i64 start = b * NCHW_BLOCK, len = imin(NCHW_BLOCK, L - start);
                    float bm, bq;
                    block_stats(x + gi * L + start, len, &bm, &bq);
                    chan_merge(&st, (double)len, bm, bq);
                }
                const float mean = (float)st.mean, rstd = rstd_of(&st, eps);
                mean_out[gi] = mean;
                rstd_out[gi] = rstd;
                channel_coefs(gi / G, gi % G, C, D, mean, rstd, w, bias, scale, shift, M, A, B);
            }
            apply_range(x, res, y, g_begin * L, g_end * L, S, M, A, B, act, stream);
        }
        restore_schedule(saved);
        return 0;
    }

#pragma omp parallel num_threads(nthreads)
    for (i64 g0 = 0; g0 < NG; g0 += wave) {
        const i64 g1 = imin(NG, g0 + wave), items = (g1 - g0) * nblk;
#pragma omp for schedule(static)
        for (i64 it = 0; it < items; it++) {
            const i64 gi = g0 + it / nblk, b = it % nblk;
            const i64 start = b * NCHW_BLOCK, len = imin(NCHW_BLOCK, L - start);
            block_stats(x + gi * L + start, len, &bstat[2 * it], &bstat[2 * it + 1]);
        }
#pragma omp for schedule(static)
        for (i64 gi = g0; gi < g1; gi++) {
            Stat st = {0.0, 0.0, 0.0};
            const float *bs = bstat + 2 * (gi - g0) * nblk;
            for (i64 b = 0; b < nblk; b++)
                chan_merge(&st, (double)imin(NCHW_BLOCK, L - b * NCHW_BLOCK), bs[2 * b], bs[2 * b + 1]);
            /* (the fused path above merges the same values in the same order) */
            const float mean = (float)st.mean, rstd = rstd_of(&st, eps);
            mean_out[gi] = mean;
            rstd_out[gi] = rstd;
            channel_coefs(gi / G, gi % G, C, D, mean, rstd, w, bias, scale, shift, M, A, B);
        }
        /* apply over the wave's contiguous range in equal pieces */
        const i64 base = g0 * L, total = (g1 - g0) * L, npieces = cdiv(total, APPLY_PIECE);
#pragma omp for schedule(static)
        for (i64 pc = 0; pc < npieces; pc++) {
            const i64 i = base + pc * APPLY_PIECE;
            apply_range(x, res, y, i, imin(base + total, i + APPLY_PIECE), S, M, A, B, act, stream);
        }
    }
    return 0;
}

#endif
