/* The backward in channels_last layout (a sample is S pixels of C contiguous channels): the loops of the
 * per-channel sums over a block of pixels and of dx over pixels, the fold of the blocks' sums, then
 * backward_channels_last. */
#ifndef GN_BACKWARD_CHANNELS_LAST_H
#define GN_BACKWARD_CHANNELS_LAST_H

#include "activations.h"
#include "backward_common.h"
#include "common.h"
#include "scratch_and_threads.h"
#include "simd_avx512.h"
#include "statistics.h"

/* The backward's per-channel sums over a block of pixels. Up to PIXEL_ORDER_MAX_C channels the pixels go in
 * address order with the sums in memory (they and the coefficients stay in L1); wider pixels go in chunks of
 * channels with the sums in registers. Chunks re-walk the block's pixels at a stride of C floats, from L2 after the
 * first chunk; address order wins up to 512 channels and not beyond (see kernel-choice.md, section "channels_last
 * backward sums in pixel order"). Each channel's sum takes the pixels in the same order either way. */
#define PIXEL_ORDER_MAX_C 512

GN_INLINE void pixel_sums_impl(const float *dy, const float *x, const float *res, i64 npix, i64 C, const float *m,
                               const float *a, const float *b, float *s1, float *s2, float *gout, const int act,
                               const int has_res, const int has_gout) {
    /* wide pixels: 32-channel chunks keep their two sums in registers across the pixels; the rest (and every
     * channel of narrower pixels) the generic way, in address order */
    i64 c0 = 0;
    for (; C > PIXEL_ORDER_MAX_C && c0 + 32 <= C; c0 += 32) {
        float a1[32], a2[32];
        for (int j = 0; j < 32; j++) a1[j] = s1[c0 + j], a2[j] = s2[c0 + j];
        for (i64 p = 0; p < npix; p++) {
            const i64 o = p * C + c0;
            for (int j = 0; j < 32; j++) {
                const float gg =
                    grad_pre(dy[o + j], x[o + j], m[c0 + j], a[c0 + j], b[c0 + j], has_res ? res[o + j] : 0.0f, act);
                if (has_gout) gout[o + j] = gg;
                a1[j] += gg;
                a2[j] += gg * (x[o + j] - m[c0 + j]);
            }
        }
        for (int j = 0; j < 32; j++) s1[c0 + j] = a1[j], s2[c0 + j] = a2[j];
    }
    for (i64 p = 0; p < npix && c0 < C; p++) {
        const float *dyp = dy + p * C, *xp = x + p * C, *rp = has_res ? res + p * C : NULL;
#pragma omp simd
        for (i64 c = c0; c < C; c++) {
            const float gg = grad_pre(dyp[c], xp[c], m[c], a[c], b[c], has_res ? rp[c] : 0.0f, act);
            if (has_gout) gout[p * C + c] = gg;
            s1[c] += gg;
            s2[c] += gg * (xp[c] - m[c]);
        }
    }
}

#ifdef __AVX512F__
/* Plain epilogue (g = dy) over pixels: 16-channel vectors, one sum chain per channel in pixel order; the same
 * arithmetic per channel whatever the block or the loop order, so the fused and split paths give the same bits. */
static void pixel_sums_plain(const float *dy, const float *x, i64 npix, i64 C, const float *m, float *s1,
                             float *s2) {
    if (C <= PIXEL_ORDER_MAX_C) {
        const i64 Cv = C / 16 * 16;
        const __mmask16 kt = tail_mask(C - Cv);
        for (i64 p = 0; p < npix; p++) {
            const float *dyp = dy + p * C, *xp = x + p * C;
            for (i64 c = 0; c < Cv; c += 16) {
                const __m512 d = _mm512_loadu_ps(dyp + c);
                const __m512 xc = _mm512_sub_ps(_mm512_loadu_ps(xp + c), _mm512_loadu_ps(m + c));
                _mm512_storeu_ps(s1 + c, _mm512_add_ps(_mm512_loadu_ps(s1 + c), d));
                _mm512_storeu_ps(s2 + c, _mm512_fmadd_ps(d, xc, _mm512_loadu_ps(s2 + c)));
            }
            if (kt) {
                const __m512 d = _mm512_maskz_loadu_ps(kt, dyp + Cv);
                const __m512 xc =
                    _mm512_sub_ps(_mm512_maskz_loadu_ps(kt, xp + Cv), _mm512_maskz_loadu_ps(kt, m + Cv));
                _mm512_mask_storeu_ps(s1 + Cv, kt, _mm512_add_ps(_mm512_maskz_loadu_ps(kt, s1 + Cv), d));
                _mm512_mask_storeu_ps(s2 + Cv, kt, _mm512_fmadd_ps(d, xc, _mm512_maskz_loadu_ps(kt, s2 + Cv)));
            }
        }
        return;
    }
    for (i64 c = 0; c < C; c += 64) {
        __m512 vm[4], a1[4], a2[4];
        __mmask16 k[4];
        for (int j = 0; j < 4; j++) {
            const i64 cj = c + 16 * j;
            k[j] = cj >= C ? 0 : (C - cj >= 16 ? (__mmask16)0xFFFF : tail_mask(C - cj));
            vm[j] = _mm512_maskz_loadu_ps(k[j], m + cj);
            a1[j] = _mm512_maskz_loadu_ps(k[j], s1 + cj);
            a2[j] = _mm512_maskz_loadu_ps(k[j], s2 + cj);
        }
        for (i64 p = 0; p < npix; p++)
            for (int j = 0; j < 4; j++) {
                const i64 o = p * C + c + 16 * j;
                const __m512 d = _mm512_maskz_loadu_ps(k[j], dy + o);
                a1[j] = _mm512_add_ps(a1[j], d);
                a2[j] = _mm512_fmadd_ps(d, _mm512_sub_ps(_mm512_maskz_loadu_ps(k[j], x + o), vm[j]), a2[j]);
            }
        for (int j = 0; j < 4; j++) {
            _mm512_mask_storeu_ps(s1 + c + 16 * j, k[j], a1[j]);
            _mm512_mask_storeu_ps(s2 + c + 16 * j, k[j], a2[j]);
        }
    }
}

/* dx = p dy + q (x - m) + r per channel (and dresidual = dy); with many channels four pixels per load of the
 * four coefficient vectors (one pixel at a time needs six loads per vector of dx) */
static void dx_pixels_plain(const float *dy, const float *x, float *dx, float *dres, i64 npix, i64 C,
                            const float *m, const float *pp, const float *qq, const float *rr, int stream) {
    const i64 block = C >= 1024 ? 4 : 1; /* as in apply_pixels_plain: with fewer channels, more streams cost more */
    for (i64 p = 0; p < npix; p += block)
        for (i64 c = 0; c < C; c += 16) {
            const __mmask16 k = C - c >= 16 ? (__mmask16)0xFFFF : tail_mask(C - c);
            const __m512 vm = _mm512_maskz_loadu_ps(k, m + c), vp = _mm512_maskz_loadu_ps(k, pp + c);
            const __m512 vq = _mm512_maskz_loadu_ps(k, qq + c), vr = _mm512_maskz_loadu_ps(k, rr + c);
            for (i64 q = 0; q < imin(block, npix - p); q++) {
                const i64 o = (p + q) * C + c;
                const __m512 d = _mm512_maskz_loadu_ps(k, dy + o);
                if (dx) {
                    const __m512 xc = _mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + o), vm);
                    const __m512 v = _mm512_fmadd_ps(vq, xc, _mm512_fmadd_ps(vp, d, vr));
                    if (stream) /* C % 16 == 0 and dx aligned (see gn_backward_f32) */
                        _mm512_stream_ps(dx + o, v);
                    else
                        _mm512_mask_storeu_ps(dx + o, k, v);
                }
                if (dres) _mm512_mask_storeu_ps(dres + o, k, d);
            }
        }
}
#endif

#ifdef __AVX512F__
/* SiLU epilogue over pixels: g = dy silu'((x - m) a + b + res), in AVX-512 (the portable loop recomputed the exp
 * polynomial with scalar-width bookkeeping); pixel order or channel chunks as in pixel_sums_impl */
static void pixel_sums_silu(const float *dy, const float *x, const float *res, i64 npix, i64 C, const float *m,
                            const float *a, const float *b, float *s1, float *s2, float *gout) {
    if (C <= PIXEL_ORDER_MAX_C) {
        for (i64 p = 0; p < npix; p++)
            for (i64 c = 0; c < C; c += 16) {
                const __mmask16 k = C - c >= 16 ? (__mmask16)0xFFFF : tail_mask(C - c);
                const i64 o = p * C + c;
                const __m512 xc = _mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + o), _mm512_maskz_loadu_ps(k, m + c));
                __m512 pre = _mm512_fmadd_ps(xc, _mm512_maskz_loadu_ps(k, a + c), _mm512_maskz_loadu_ps(k, b + c));
                if (res) pre = _mm512_add_ps(pre, _mm512_maskz_loadu_ps(k, res + o));
                const __m512 g = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, dy + o), silu_grad16(pre));
                if (gout) _mm512_mask_storeu_ps(gout + o, k, g);
                const __m512 a1 = _mm512_maskz_loadu_ps(k, s1 + c), a2 = _mm512_maskz_loadu_ps(k, s2 + c);
                _mm512_mask_storeu_ps(s1 + c, k, _mm512_mask_add_ps(a1, k, a1, g));
                _mm512_mask_storeu_ps(s2 + c, k, _mm512_mask3_fmadd_ps(g, xc, a2, k));
            }
        return;
    }
    /* wide pixels: 32-channel chunks keep the coefficients and the sums in registers across the pixels */
    for (i64 c = 0; c < C; c += 32) {
        __m512 vm[2], va[2], vb[2], a1[2], a2[2];
        __mmask16 k[2];
        for (int j = 0; j < 2; j++) {
            const i64 cj = c + 16 * j;
            k[j] = cj >= C ? 0 : (C - cj >= 16 ? (__mmask16)0xFFFF : tail_mask(C - cj));
            vm[j] = _mm512_maskz_loadu_ps(k[j], m + cj), va[j] = _mm512_maskz_loadu_ps(k[j], a + cj);
            vb[j] = _mm512_maskz_loadu_ps(k[j], b + cj);
            a1[j] = _mm512_maskz_loadu_ps(k[j], s1 + cj), a2[j] = _mm512_maskz_loadu_ps(k[j], s2 + cj);
        }
        for (i64 p = 0; p < npix; p++)
            for (int j = 0; j < 2; j++) {
                const i64 o = p * C + c + 16 * j;
                const __m512 xc = _mm512_sub_ps(_mm512_maskz_loadu_ps(k[j], x + o), vm[j]);
                __m512 pre = _mm512_fmadd_ps(xc, va[j], vb[j]);
                if (res) pre = _mm512_add_ps(pre, _mm512_maskz_loadu_ps(k[j], res + o));
                const __m512 g = _mm512_mul_ps(_mm512_maskz_loadu_ps(k[j], dy + o), silu_grad16(pre));
                if (gout) _mm512_mask_storeu_ps(gout + o, k[j], g);
                a1[j] = _mm512_mask_add_ps(a1[j], k[j], a1[j], g);
                a2[j] = _mm512_mask3_fmadd_ps(g, xc, a2[j], k[j]);
            }
        for (int j = 0; j < 2; j++) {
            _mm512_mask_storeu_ps(s1 + c + 16 * j, k[j], a1[j]);
            _mm512_mask_storeu_ps(s2 + c + 16 * j, k[j], a2[j]);
        }
    }
}

#endif

static void pixel_sums(const float *dy, const float *x, const float *res, i64 npix, i64 C, const float *m,
                       const float *a, const float *b, int act, float *s1, float *s2, float *gout) {
#ifdef __AVX512F__
    if (act == ACT_NONE) {
        pixel_sums_plain(dy, x, npix, C, m, s1, s2);
        return;
    }
    if (act == ACT_SILU) {
        pixel_sums_silu(dy, x, res, npix, C, m, a, b, s1, s2, gout);
        return;
    }
#endif
#define PS(A, HR, HG) pixel_sums_impl(dy, x, res, npix, C, m, a, b, s1, s2, gout, A, HR, HG)
#define PS_R1(A) PS(A, 1, 1)
#define PS_R0(A) PS(A, 1, 0)
#define PS_N1(A) PS(A, 0, 1)
#define PS_N0(A) PS(A, 0, 0)
    if (res) {
        if (gout) { ACT_SWITCH(PS_R1) } else { ACT_SWITCH(PS_R0) }
    } else {
        if (gout) { ACT_SWITCH(PS_N1) } else { ACT_SWITCH(PS_N0) }
    }
}

GN_INLINE void dx_pixels_impl(const float *dy, const float *x, const float *res, float *dx, float *dres, i64 npix,
                              i64 C, const float *m, const float *a, const float *b, const float *pp,
                              const float *qq, const float *rr, const int act, const int has_res, const int has_dx,
                              const int has_dres) {
    for (i64 p = 0; p < npix; p++) {
        const float *dyp = dy + p * C, *xp = x + p * C, *rp = has_res ? res + p * C : NULL;
        float *dxp = has_dx ? dx + p * C : NULL, *drp = has_dres ? dres + p * C : NULL;
#pragma omp simd
        for (i64 c = 0; c < C; c++) {
            const float gg = grad_pre(dyp[c], xp[c], m[c], a[c], b[c], has_res ? rp[c] : 0.0f, act);
            if (has_dx) dxp[c] = pp[c] * gg + qq[c] * (xp[c] - m[c]) + rr[c];
            if (has_dres) drp[c] = gg;
        }
    }
}

static void dx_pixels(const float *dy, const float *x, const float *res, float *dx, float *dres, i64 npix, i64 C,
                      const float *m, const float *a, const float *b, const float *pp, const float *qq,
                      const float *rr, int act, int stream) {
#ifdef __AVX512F__
    if (act == ACT_NONE) {
        dx_pixels_plain(dy, x, dx, dres, npix, C, m, pp, qq, rr, stream);
        if (stream) GN_SFENCE();
        return;
    }
#endif
#define DXP(A, HR, HX, HD) dx_pixels_impl(dy, x, res, dx, dres, npix, C, m, a, b, pp, qq, rr, A, HR, HX, HD)
#define DXP_R11(A) DXP(A, 1, 1, 1)
#define DXP_R10(A) DXP(A, 1, 1, 0)
#define DXP_R01(A) DXP(A, 1, 0, 1)
#define DXP_N11(A) DXP(A, 0, 1, 1)
#define DXP_N10(A) DXP(A, 0, 1, 0)
#define DXP_N01(A) DXP(A, 0, 0, 1)
    if (res) {
        if (dx && dres) { ACT_SWITCH(DXP_R11) } else if (dx) { ACT_SWITCH(DXP_R10) } else { ACT_SWITCH(DXP_R01) }
    } else {
        if (dx && dres) { ACT_SWITCH(DXP_N11) } else if (dx) { ACT_SWITCH(DXP_N10) } else { ACT_SWITCH(DXP_N01) }
    }
}

/* block sums of a sample, added in block order, for channels [c0, c1) */
static void fold_sums(const float *part, i64 nblk, i64 C, i64 c0, i64 c1, float *o1, float *o2) {
    for (i64 c = c0; c < c1; c++) o1[c] = 0.0f, o2[c] = 0.0f;
    for (i64 b = 0; b < nblk; b++) {
        const float *s1 = part + 2 * b * C, *s2 = s1 + C;
#pragma omp simd
        for (i64 c = c0; c < c1; c++) o1[c] += s1[c], o2[c] += s2[c];
    }
}

/* Samples go whole to one thread when there are enough small ones (fused_ok, with dy and x counted); otherwise in
 * waves of samples, each pass (block sums, fold, group gradients, dx) split among the threads. */
static int backward_channels_last(const BackwardPass *bp) {
    const float *dy = bp->dy, *x = bp->x, *rres = bp->res, *rstd = bp->rstd, *w = bp->w, *bias = bp->bias;
    const float *scale = bp->scale, *dx_src = bp->dx_src;
    float *M = bp->M, *A = bp->A, *B = bp->B, *S1 = bp->S1, *S2 = bp->S2, *P = bp->P, *Q = bp->Q, *R = bp->R;
    float *pw = bp->pw, *pb = bp->pb, *gbuf = bp->gbuf, *dx = bp->dx, *dx_res_out = bp->dres_out;
    float *dscale = bp->dscale, *dshift = bp->dshift;
    const i64 N = bp->N, C = bp->C, S = bp->S, G = bp->G, D = C / G, per_sample = S * C;
    const int act = bp->act, dx_act = bp->dx_act, nthreads = bp->nthreads, stream = bp->stream;
    const i64 Pp = imax(CHANNELS_LAST_MIN_PIX, CHANNELS_LAST_BLOCK / C); /* pixels per block */
    const i64 nblk = cdiv(S, Pp);
    const int fused = fused_ok(N, per_sample * 8, nthreads, bp->wave_bytes);
    const i64 wave = imax(1, imin(N, bp->wave_bytes / (per_sample * 8)));
    float *part = scratch(1, sizeof(float) * 2 * (fused ? nthreads : wave) * nblk * C);
    if (!part) return -1;

    if (fused) {
        /* each sample by one thread while dy and x sit in L2; the same calls as the split path below */
#pragma omp parallel num_threads(nthreads)
        {
            float *mypart = part + 2 * (i64)thread_num() * nblk * C;
#pragma omp for schedule(static)
            for (i64 n = 0; n < N; n++) {
                const i64 base = n * per_sample;
                for (i64 b = 0; b < nblk; b++) {
                    const i64 p0 = b * Pp, off = base + p0 * C;
                    float *s1 = mypart + 2 * b * C, *s2 = s1 + C;
                    for (i64 c = 0; c < C; c++) s1[c] = 0.0f, s2[c] = 0.0f;
                    pixel_sums(dy + off, x + off, rres ? rres + off : NULL, imin(Pp, S - p0), C, M + n * C,
                               A + n * C, B + n * C, act, s1, s2, gbuf ? gbuf + off : NULL);
                }
                for (i64 c0 = 0; c0 < C; c0 += FOLD_CHUNK)
                    fold_sums(mypart, nblk, C, c0, imin(C, c0 + FOLD_CHUNK), S1 + n * C, S2 + n * C);
                for (i64 g = 0; g < G; g++)
                    group_grads(n, g, C, D, S, rstd[n * G + g], w, bias, scale, S1, S2, P, Q, R, dscale, dshift, pw,
                                pb);
                if (bp->dx_pass)
                    dx_pixels(dx_src + base, x + base, !gbuf && rres ? rres + base : NULL, dx ? dx + base : NULL,
                              dx_res_out ? dx_res_out + base : NULL, S, C, M + n * C, A + n * C, B + n * C,
                              P + n * C, Q + n * C, R + n * C, dx_act, stream);
            }
        }
        return 0;
    }

#pragma omp parallel num_threads(nthreads)
    for (i64 n0 = 0; n0 < N; n0 += wave) {
        const i64 n1 = imin(N, n0 + wave), items = (n1 - n0) * nblk;
#pragma omp for schedule(static)
        for (i64 it = 0; it < items; it++) {
            const i64 n = n0 + it / nblk, b = it % nblk;
            const i64 p0 = b * Pp, np = imin(Pp, S - p0), off = n * per_sample + p0 * C;
            float *s1 = part + 2 * it * C, *s2 = s1 + C;
            for (i64 c = 0; c < C; c++) s1[c] = 0.0f, s2[c] = 0.0f;
            pixel_sums(dy + off, x + off, rres ? rres + off : NULL, np, C, M + n * C, A + n * C, B + n * C, act,
                       s1, s2, gbuf ? gbuf + off : NULL);
        }
        /* fold blocks in order, per (sample, channel chunk), vectorized over channels */
        const i64 nchunk = cdiv(C, FOLD_CHUNK);
#pragma omp for schedule(static)
        for (i64 it = 0; it < (n1 - n0) * nchunk; it++) {
            const i64 n = n0 + it / nchunk, c0 = (it % nchunk) * FOLD_CHUNK, c1 = imin(C, c0 + FOLD_CHUNK);
            fold_sums(part + 2 * (n - n0) * nblk * C, nblk, C, c0, c1, S1 + n * C, S2 + n * C);
        }
#pragma omp for schedule(static)
        for (i64 ng = n0 * G; ng < n1 * G; ng++)
            group_grads(ng / G, ng % G, C, D, S, rstd[ng], w, bias, scale, S1, S2, P, Q, R, dscale, dshift, pw, pb);
        if (bp->dx_pass) {
            const i64 pix_per_piece = imax(1, APPLY_PIECE / C);
            const i64 pps = cdiv(S, pix_per_piece), npieces = (n1 - n0) * pps;
#pragma omp for schedule(static)
            for (i64 pc = 0; pc < npieces; pc++) {
                const i64 n = n0 + pc / pps, p0 = (pc % pps) * pix_per_piece;
                const i64 np = imin(pix_per_piece, S - p0), off = n * per_sample + p0 * C;
                dx_pixels(dx_src + off, x + off, !gbuf && rres ? rres + off : NULL, dx ? dx + off : NULL,
                          dx_res_out ? dx_res_out + off : NULL, np, C, M + n * C, A + n * C, B + n * C, P + n * C,
                          Q + n * C, R + n * C, dx_act, stream);
            }
        }
    }
    return 0;
}

#endif
