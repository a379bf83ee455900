/* The forward in channels_last layout ((N, *spatial, C) contiguous, C innermost: each pixel holds every channel,
 * a sample is S pixels of C channels): the apply loops over pixels, then forward_channels_last. */
#ifndef GN_FORWARD_CHANNELS_LAST_H
#define GN_FORWARD_CHANNELS_LAST_H

#include "activations.h"
#include "common.h"
#include "scratch_and_threads.h"
#include "simd_avx512.h"
#include "statistics.h"

#ifdef __AVX512F__
/* the plain epilogue with streaming stores (see apply_row_stream in forward_nchw.h); requires C % 16 == 0 and a
 * 64-byte aligned y */
static void apply_pixels_stream(const float *x, float *y, i64 npix, i64 C, const float *m, const float *a,
                                const float *b) {
    for (i64 p = 0; p < npix; p++)
        for (i64 c = 0; c < C; c += 16) {
            const __m512 v = _mm512_sub_ps(_mm512_loadu_ps(x + p * C + c), _mm512_loadu_ps(m + c));
            _mm512_stream_ps(y + p * C + c, _mm512_fmadd_ps(v, _mm512_loadu_ps(a + c), _mm512_loadu_ps(b + c)));
        }
}

/* The plain epilogue over pixels. With many channels, four pixels per load of the coefficient vectors: with one
 * pixel at a time the three coefficient loads (24 KiB of them for 2048 channels) competed with x for L1 and the
 * load ports; with fewer channels the four streams cost more than they save, so one pixel at a time (see
 * kernel-choice.md, section "Four pixels per coefficient load"). */
/* (x - m) a + b (+ res) for the 16 channels c.. of pixel offset o = p C + c, k masking the channels past C */
static inline __m512 pixel_pre16(const float *x, const float *res, i64 o, i64 c, __mmask16 k, const float *m,
                                 const float *a, const float *b) {
    const __m512 v = _mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + o), _mm512_maskz_loadu_ps(k, m + c));
    const __m512 pre = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(k, a + c), _mm512_maskz_loadu_ps(k, b + c));
    return res ? _mm512_add_ps(pre, _mm512_maskz_loadu_ps(k, res + o)) : pre;
}

static void apply_pixels_plain(const float *x, const float *res, float *y, i64 npix, i64 C, const float *m,
                               const float *a, const float *b) {
    i64 p = 0;
    /* four pixels per coefficient load only when the coefficients (3 C floats) crowd L1 (and without a residual,
     * which is rare) */
    for (; !res && C >= 1024 && p + 4 <= npix; p += 4) {
        const float *x0 = x + p * C, *x1 = x0 + C, *x2 = x1 + C, *x3 = x2 + C;
        float *y0 = y + p * C, *y1 = y0 + C, *y2 = y1 + C, *y3 = y2 + C;
        for (i64 c = 0; c < C; c += 16) {
            const __mmask16 k = C - c >= 16 ? (__mmask16)0xFFFF : tail_mask(C - c);
            const __m512 vm = _mm512_maskz_loadu_ps(k, m + c), va = _mm512_maskz_loadu_ps(k, a + c);
            const __m512 vb = _mm512_maskz_loadu_ps(k, b + c);
#define GN_PIX(XP) _mm512_fmadd_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, (XP) + c), vm), va, vb)
            _mm512_mask_storeu_ps(y0 + c, k, GN_PIX(x0));
            _mm512_mask_storeu_ps(y1 + c, k, GN_PIX(x1));
            _mm512_mask_storeu_ps(y2 + c, k, GN_PIX(x2));
            _mm512_mask_storeu_ps(y3 + c, k, GN_PIX(x3));
#undef GN_PIX
        }
    }
    for (; p < npix; p++)
        for (i64 c = 0; c < C; c += 16) {
            const __mmask16 k = C - c >= 16 ? (__mmask16)0xFFFF : tail_mask(C - c);
            _mm512_mask_storeu_ps(y + p * C + c, k, pixel_pre16(x, res, p * C + c, c, k, m, a, b));
        }
}

static void apply_pixels_silu(const float *x, const float *res, float *y, i64 npix, i64 C, const float *m,
                              const float *a, const float *b) {
    for (i64 p = 0; p < npix; p++)
        for (i64 c = 0; c < C; c += 16) {
            const __mmask16 k = C - c >= 16 ? (__mmask16)0xFFFF : tail_mask(C - c);
            _mm512_mask_storeu_ps(y + p * C + c, k, silu16(pixel_pre16(x, res, p * C + c, c, k, m, a, b)));
        }
}
#endif

/* one pixel of C channels with per-channel coefficient vectors (channels_last) */
#define APPLY_PIX(ACT)                                                                                           \
    do {                                                                                                         \
        for (i64 p = 0; p < npix; p++) {                                                                         \
            const float *xp = x + p * C;                                                                         \
            float *yp = y + p * C;                                                                               \
            if (res) {                                                                                           \
                const float *rp = res + p * C;                                                                   \
                _Pragma("omp simd") for (i64 c = 0; c < C; c++) yp[c] =                                          \
                    act_fwd((xp[c] - m[c]) * a[c] + b[c] + rp[c], ACT);                                          \
            } else {                                                                                             \
                _Pragma("omp simd") for (i64 c = 0; c < C; c++) yp[c] =                                          \
                    act_fwd((xp[c] - m[c]) * a[c] + b[c], ACT);                                                  \
            }                                                                                                    \
        }                                                                                                        \
    } while (0)

static void apply_pixels(const float *x, const float *res, float *y, i64 npix, i64 C, const float *m,
                         const float *a, const float *b, int act) {
#ifdef __AVX512F__
    if (act == ACT_SILU) {
        apply_pixels_silu(x, res, y, npix, C, m, a, b);
        return;
    }
    if (act == ACT_NONE) {
        apply_pixels_plain(x, res, y, npix, C, m, a, b);
        return;
    }
#endif
    switch (act) {
    case ACT_RELU: APPLY_PIX(ACT_RELU); break;
    case ACT_SILU: APPLY_PIX(ACT_SILU); break;
    case ACT_GELU: APPLY_PIX(ACT_GELU); break;
    case ACT_GELU_TANH: APPLY_PIX(ACT_GELU_TANH); break;
    default: APPLY_PIX(ACT_NONE); break;
    }
}

static void apply_sample_pixels(const float *x, const float *res, float *y, i64 p0, i64 np, i64 C,
                                const float *m, const float *a, const float *b, int act, int stream) {
    const i64 off = p0 * C;
#if GN_HAVE_STREAM
    if (stream) {
        apply_pixels_stream(x + off, y + off, np, C, m, a, b);
        GN_SFENCE();
        return;
    }
#endif
    (void)stream;
    apply_pixels(x + off, res ? res + off : NULL, y + off, np, C, m, a, b, act);
}

/* channels_last statistics in three steps: per-(pixel block, channel) mean/M2 (parallel over blocks), Chan merge
 * of the blocks in order per channel (parallel over channel chunks, vectorized over channels), then channels to
 * groups per (n, g). Small samples go whole to one thread each (fused), with the same arithmetic; otherwise the
 * samples go in waves, each of the three steps and the apply pass split among the threads. */
static int forward_channels_last(const float *x, float *y, float *mean_out, float *rstd_out, const float *w,
                                 const float *bias, const float *scale, const float *shift, const float *res, i64 N,
                                 i64 C, i64 S, i64 G, float eps, int act, int nthreads, i64 wave_bytes, int stream) {
    const i64 D = C / G, per_sample = S * C;
    const i64 P = imax(CHANNELS_LAST_MIN_PIX, CHANNELS_LAST_BLOCK / C); /* pixels per statistics block */
    const i64 nblk = cdiv(S, P), nchunk = cdiv(C, FOLD_CHUNK);
    const int fused = fused_ok(N, per_sample * 4, nthreads, wave_bytes);
    const i64 wave = fused ? 1 : imax(1, imin(N, wave_bytes / (per_sample * 4)));
    const i64 part_sets = fused ? nthreads : wave, chan_sets = fused ? nthreads : wave;
    float *part = scratch(0, sizeof(float) * 2 * part_sets * nblk * C);
    double *chan = scratch(1, sizeof(double) * 2 * chan_sets * C); /* per-channel mean, M2 */
    float *coef = scratch(2, sizeof(float) * 3 * N * C);
    if (!part || !chan || !coef) return -1;
    float *M = coef, *A = coef + N * C, *B = coef + 2 * N * C;

    if (fused) {
#pragma omp parallel num_threads(nthreads)
        {
            const int t = thread_num();
            float *mypart = part + 2 * (i64)t * nblk * C;
            double *cmean = chan + 2 * (i64)t * C, *cm2 = cmean + C;
#pragma omp for schedule(static)
            for (i64 n = 0; n < N; n++) {
                const float *xs = x + n * per_sample;
                for (i64 b = 0; b < nblk; b++)
                    pixel_block_stats(xs + b * P * C, imin(P, S - b * P), C, mypart + 2 * b * C,
                                      mypart + 2 * b * C + C);
                for (i64 c0 = 0; c0 < C; c0 += FOLD_CHUNK)
                    fold_channels(mypart, nblk, P, S, C, c0, imin(C, c0 + FOLD_CHUNK), cmean, cm2);
                for (i64 g = 0; g < G; g++)
                    group_from_channels(cmean, cm2, n, g, C, D, S, eps, mean_out, rstd_out, w, bias, scale, shift,
                                        M, A, B);
                apply_sample_pixels(xs, res ? res + n * per_sample : NULL, y + n * per_sample, 0, S, C, M + n * C,
                                    A + n * C, B + n * C, act, stream);
            }
        }
        return 0;
    }

#pragma omp parallel num_threads(nthreads)
    for (i64 n0 = 0; n0 < N; n0 += wave) {
        const i64 n1 = imin(N, n0 + wave), items = (n1 - n0) * nblk;
#pragma omp for schedule(static)
        for (i64 it = 0; it < items; it++) {
            const i64 n = n0 + it / nblk, b = it % nblk, p0 = b * P;
            float *cm = part + 2 * it * C;
            pixel_block_stats(x + n * per_sample + p0 * C, imin(P, S - p0), C, cm, cm + C);
        }
#pragma omp for schedule(static)
        for (i64 it = 0; it < (n1 - n0) * nchunk; it++) {
            const i64 nw = it / nchunk, c0 = (it % nchunk) * FOLD_CHUNK;
            fold_channels(part + 2 * nw * nblk * C, nblk, P, S, C, c0, imin(C, c0 + FOLD_CHUNK),
                          chan + 2 * nw * C, chan + 2 * nw * C + C);
        }
#pragma omp for schedule(static)
        for (i64 ng = n0 * G; ng < n1 * G; ng++) {
            const double *cmean = chan + 2 * (ng / G - n0) * C;
            group_from_channels(cmean, cmean + C, ng / G, ng % G, C, D, S, eps, mean_out, rstd_out, w, bias, scale,
                                shift, M, A, B);
        }
        const i64 pix_per_piece = imax(1, APPLY_PIECE / C);
        const i64 pieces_per_sample = cdiv(S, pix_per_piece), npieces = (n1 - n0) * pieces_per_sample;
#pragma omp for schedule(static)
        for (i64 pc = 0; pc < npieces; pc++) {
            const i64 n = n0 + pc / pieces_per_sample;
            const i64 p0 = (pc % pieces_per_sample) * pix_per_piece;
            apply_sample_pixels(x + n * per_sample, res ? res + n * per_sample : NULL, y + n * per_sample, p0,
                                imin(pix_per_piece, S - p0), C, M + n * C, A + n * C, B + n * C, act, stream);
        }
    }
    return 0;
}

#endif
