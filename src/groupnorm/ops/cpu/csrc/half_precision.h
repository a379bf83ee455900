/* float16 and bfloat16 tensors through the float32 kernels, converted piecewise into float32 tiles or buffers that
 * stay in cache (converting whole tensors before and after the kernel read and wrote them in float32 as well, and
 * was slower than torch's own bfloat16 kernels: see kernel-choice.md, section "float16/bfloat16 in tiles"). Four
 * paths, which the entry points choose by size:
 *
 * - half_*_per_sample: samples of at most THREAD_SAMPLE_BYTES (float32), at least two per thread: each goes whole
 *   to one thread, converted into the thread's buffer, normalized there by the float32 kernel on one thread,
 *   rounded back, with no barrier between the steps;
 * - half_*_nchw_runs: NCHW otherwise, groups of at most RUN_ELEMS: runs of consecutive groups converted into
 *   per-thread tiles, the float32 kernels' statistics, apply and backward steps on the tile, rounded back: x (dy)
 *   is read from DRAM once;
 * - half_forward_channels_last_blocks: the channels_last forward otherwise: the float32 kernel's statistics blocks
 *   and apply pieces, each converted into a tile as it is needed (x read twice, in 2 bytes);
 * - half_*_waves: the rest (channels_last backward of large samples, NCHW groups over a tile): waves of a few
 *   samples converted into float32 buffers, the float32 kernel on them, the results rounded back.
 *
 * The float32 steps write y over x, and dx over dy, in the tiles and buffers: every pass reads an element of x
 * (dy) before it writes the same element of y (dx) and does not read it afterwards, and one buffer less keeps
 * large samples in cache.
 *
 * The results are bit for bit those of the float32 kernel on the whole tensor converted to float32, rounded to
 * the 2-byte type once at the end: the float32 kernels give the same bits for any number of samples per call and
 * any split of their work, the tiles go through the same blocks and steps in the same order, the batch sums of
 * dweight and dbias are taken over all samples at the end in the float32 path's order (gn_param_grad_sums), and
 * the conversions round to nearest even as torch's do. */
#ifndef GN_HALF_PRECISION_H
#define GN_HALF_PRECISION_H

#include <stdint.h>

#include "activations.h"
#include "backward_common.h"
#include "backward_nchw.h"
#include "common.h"
#include "forward_channels_last.h"
#include "forward_nchw.h"
#include "groupnorm_cpu.h"
#include "half_conversions.h"
#include "scratch_and_threads.h"
#include "statistics.h"

/* float32 bytes per work buffer that a wave aims for: small enough that the buffers of a wave stay in cache
 * between the conversions and the kernel, large enough for the kernel's parallel passes; a wave holds at least
 * one sample, however large */
#define WAVE_F32_BYTES (2 << 20)
/* work buffers up to this size are kept for the next call (a fresh buffer of several MiB costs its page faults on
 * every call); larger ones are freed when the call ends */
#define KEEP_BYTES (16 << 20)
/* Samples of at most this many float32 bytes go whole to one thread each (convert, normalize on one thread,
 * round back) when there are at least two per thread: no barrier between the steps, and the sample's buffers stay
 * in that core's L2. */
#define THREAD_SAMPLE_BYTES (1 << 20)
/* the half paths' work buffers: the calling thread's scratch slots from HALF_SLOT0 on */
static void *buffer(int slot, size_t bytes) { return scratch(HALF_SLOT0 + slot, bytes); }
static void release_large(void) { release_scratch(HALF_SLOT0, KEEP_BYTES); }

static i64 samples_per_wave(i64 N, i64 per_sample) {
    const i64 n = WAVE_F32_BYTES / (per_sample * (i64)sizeof(float));
    return n < 1 ? 1 : (n > N ? N : n);
}

static const float *at(const float *p, i64 offset) { return p ? p + offset : NULL; }
static float *at_mut(float *p, i64 offset) { return p ? p + offset : NULL; }

/* whether the samples go whole to one thread each (the per_sample paths) */
static int per_thread_samples(i64 N, i64 per_sample, int nthreads) {
    return nthreads > 1 && N >= 2 * (i64)nthreads && per_sample * (i64)sizeof(float) <= THREAD_SAMPLE_BYTES;
}

/* ---------------------------------------------------------------- forward */

/* each sample converted, normalized on one thread by the float32 kernel, rounded back, by one thread */
static int half_forward_per_sample(const void *x, void *y, float *mean, float *rstd, const float *w,
                                   const float *bias, const float *scale, const float *shift, const void *res, i64 N,
                                   i64 C, i64 S, i64 G, float eps, int act, int channels_last, int nthreads,
                                   i64 wave_bytes, int dtype) {
    const i64 per = C * S;
    const i64 k = res ? 2 : 1; /* x, then y in place (, residual) per thread */
    float *all = buffer(0, sizeof(float) * (size_t)(nthreads * k * per));
    if (!all) return -1;
    int fail = 0;
#pragma omp parallel for schedule(static) num_threads(nthreads) reduction(min : fail)
    for (i64 n = 0; n < N; n++) {
        float *xs = all + thread_num() * k * per, *ys = xs, *rs = res ? xs + per : NULL;
        to_f32_range((const uint16_t *)x + n * per, xs, per, dtype);
        if (res) to_f32_range((const uint16_t *)res + n * per, rs, per, dtype);
        const int rc = gn_forward_f32(xs, ys, mean + n * G, rstd + n * G, w, bias, at(scale, n * C),
                                      at(shift, n * C), rs, 1, C, S, G, eps, act, channels_last, 1, wave_bytes, 0);
        if (rc != 0) fail = rc < fail ? rc : fail;
        else from_f32_range(ys, (uint16_t *)y + n * per, per, dtype);
    }
    return fail;
}

/* ---------------------------------------------------------------- forward reading 2-byte data directly
 *
 * For samples too large to go whole to one thread: a statistics pass over blocks and an apply pass over pieces, as
 * the float32 kernels' split paths, with each block or piece converted into a per-thread float32 tile (L1/L2)
 * first and the piece's result rounded straight into y. DRAM then sees x twice and y once in the 2-byte type, as
 * torch's own kernels do. Same blocks, same merges, same per-element formula: the float32 kernels' bits. */

/* NCHW: runs of consecutive groups (a group is contiguous) of up to RUN_ELEMS elements, one run at a time per
 * thread: the run is converted into the thread's float32 tile (L2), then each group's statistics in the float32
 * kernels' blocks and merge order, the apply pass over the tile in place, and the tile rounded into y. x is read
 * from DRAM once, y written once, both in the 2-byte type. Groups larger than a tile take the waves instead. */
#define RUN_ELEMS (128 << 10) /* 512 KiB of float32 */

static int half_forward_nchw_runs(const uint16_t *x, uint16_t *y, float *mean_out, float *rstd_out, const float *w,
                                  const float *bias, const float *scale, const float *shift, const uint16_t *res,
                                  i64 N, i64 C, i64 S, i64 G, float eps, int act, int nthreads, int dtype) {
    const i64 D = C / G, L = D * S, NG = N * G, nblk = cdiv(L, NCHW_BLOCK);
    const i64 per_run = imax(1, imin(cdiv(NG, 2 * (i64)nthreads), RUN_ELEMS / L)), tile = per_run * L;
    float *coef = buffer(1, sizeof(float) * 3 * (size_t)(N * C));
    float *tiles = buffer(2, sizeof(float) * (size_t)((res ? 2 : 1) * nthreads * tile));
    if (!coef || !tiles) return -1;
    float *M = coef, *A = coef + N * C, *B = coef + 2 * N * C;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (i64 g0 = 0; g0 < NG; g0 += per_run) {
        const i64 g1 = imin(NG, g0 + per_run), count = (g1 - g0) * L;
        float *xt = tiles + (res ? 2 : 1) * thread_num() * tile, *rt = res ? xt + tile : NULL;
        to_f32_range(x + g0 * L, xt, count, dtype);
        if (res) to_f32_range(res + g0 * L, rt, count, dtype);
        for (i64 gi = g0; gi < g1; gi++) {
            const float *xg = xt + (gi - g0) * L;
            Stat st = {0.0, 0.0, 0.0};
            for (i64 b = 0; b < nblk; b++) {
                const i64 start = b * NCHW_BLOCK, len = imin(NCHW_BLOCK, L - start);
                float bm, bq;
                block_stats(xg + start, len, &bm, &bq);
                chan_merge(&st, (double)len, bm, bq);
            }
            const float mean = (float)st.mean, rstd = rstd_of(&st, eps);
            mean_out[gi] = mean;
            rstd_out[gi] = rstd;
            channel_coefs(gi / G, gi % G, C, D, mean, rstd, w, bias, scale, shift, M, A, B);
        }
        /* y over x in the tile; rows counted from the run's first */
        apply_range(xt, rt, xt, 0, count, S, M + g0 * D, A + g0 * D, B + g0 * D, act, 0);
        from_f32_range(xt, y + g0 * L, count, dtype);
    }
    return 0;
}

/* channels_last: the statistics blocks and the apply pieces of forward_channels_last's split path, each converted
 * into the thread's tile as it is needed */
static int half_forward_channels_last_blocks(const uint16_t *x, uint16_t *y, float *mean_out, float *rstd_out,
                                             const float *w, const float *bias, const float *scale,
                                             const float *shift, const uint16_t *res, i64 N, i64 C, i64 S, i64 G,
                                             float eps, int act, int nthreads, int dtype) {
    const i64 D = C / G, per = S * C, P = imax(CHANNELS_LAST_MIN_PIX, CHANNELS_LAST_BLOCK / C), nblk = cdiv(S, P);
    const i64 nchunk = cdiv(C, FOLD_CHUNK), pix_per_piece = imax(1, APPLY_PIECE / C);
    const i64 tile = imax(P, pix_per_piece) * C;
    float *part = buffer(0, sizeof(float) * 2 * (size_t)(N * nblk * C));
    float *coef = buffer(1, sizeof(float) * 3 * (size_t)(N * C));
    float *tiles = buffer(2, sizeof(float) * 2 * (size_t)(nthreads * tile));
    double *chan = buffer(3, sizeof(double) * 2 * (size_t)(N * C));
    if (!part || !coef || !tiles || !chan) return -1;
    float *M = coef, *A = coef + N * C, *B = coef + 2 * N * C;
    const i64 pieces_per_sample = cdiv(S, pix_per_piece);
#pragma omp parallel num_threads(nthreads)
    {
        float *xt = tiles + 2 * thread_num() * tile, *rt = xt + tile;
#pragma omp for schedule(static)
        for (i64 it = 0; it < N * nblk; it++) {
            const i64 n = it / nblk, p0 = (it % nblk) * P, np = imin(P, S - p0);
            to_f32_range(x + n * per + p0 * C, xt, np * C, dtype);
            pixel_block_stats(xt, np, C, part + 2 * it * C, part + 2 * it * C + C);
        }
#pragma omp for schedule(static)
        for (i64 it = 0; it < N * nchunk; it++) {
            const i64 n = it / nchunk, c0 = (it % nchunk) * FOLD_CHUNK;
            fold_channels(part + 2 * n * nblk * C, nblk, P, S, C, c0, imin(C, c0 + FOLD_CHUNK), chan + 2 * n * C,
                          chan + 2 * n * C + C);
        }
#pragma omp for schedule(static)
        for (i64 ng = 0; ng < N * G; ng++) {
            const double *cmean = chan + 2 * (ng / G) * C;
            group_from_channels(cmean, cmean + C, ng / G, ng % G, C, D, S, eps, mean_out, rstd_out, w, bias, scale,
                                shift, M, A, B);
        }
#pragma omp for schedule(static)
        for (i64 pc = 0; pc < N * pieces_per_sample; pc++) {
            const i64 n = pc / pieces_per_sample, p0 = (pc % pieces_per_sample) * pix_per_piece;
            const i64 np = imin(pix_per_piece, S - p0), off = n * per + p0 * C;
            to_f32_range(x + off, xt, np * C, dtype);
            if (res) to_f32_range(res + off, rt, np * C, dtype);
            apply_pixels(xt, res ? rt : NULL, xt, np, C, M + n * C, A + n * C, B + n * C, act);
            from_f32_range(xt, y + off, np * C, dtype);
        }
    }
    return 0;
}

/* waves of samples converted into float32 buffers, the float32 kernel on each wave, rounded back */
static int half_forward_waves(const void *x, void *y, float *mean, float *rstd, const float *w, const float *bias,
                              const float *scale, const float *shift, const void *res, i64 N, i64 C, i64 S, i64 G,
                              float eps, int act, int channels_last, int nthreads, i64 wave_bytes, int dtype) {
    const i64 per = C * S;
    const i64 wave = samples_per_wave(N, per);
    const size_t bytes = sizeof(float) * (size_t)(wave * per);
    float *xs = buffer(0, bytes), *ys = xs, *rs = res ? buffer(2, bytes) : NULL; /* y in place of x */
    int rc = (!xs || (res && !rs)) ? -1 : 0;
    for (i64 n0 = 0; n0 < N && rc == 0; n0 += wave) {
        const i64 n = imin(wave, N - n0), count = n * per, off = n0 * per;
        to_f32(x, off, xs, count, dtype, nthreads);
        if (res) to_f32(res, off, rs, count, dtype, nthreads);
        /* no streaming stores: the float32 output is read right back */
        rc = gn_forward_f32(xs, ys, mean + n0 * G, rstd + n0 * G, w, bias, at(scale, n0 * C), at(shift, n0 * C), rs,
                            n, C, S, G, eps, act, channels_last, nthreads, wave_bytes, 0);
        if (rc == 0) from_f32(ys, y, off, count, dtype, nthreads);
    }
    return rc;
}

/* ---------------------------------------------------------------- backward */

/* where the per-(n, c) dweight / dbias terms go before their batch sums (NULL where not wanted); -1 without memory */
static int param_terms(i64 N, i64 C, const float *dw, const float *db, float **pw, float **pb) {
    float *terms = dw || db ? buffer(5, sizeof(float) * 2 * (size_t)(N * C)) : NULL;
    *pw = dw ? terms : NULL, *pb = db ? terms + N * C : NULL;
    return (dw || db) && !terms ? -1 : 0;
}

/* as half_forward_per_sample, with the float32 backward's per-(n, c) parameter terms summed at the end */
static int half_backward_per_sample(const void *dy, const void *x, const float *mean, const float *rstd,
                                    const float *w, const float *bias, const float *scale, const float *shift,
                                    const void *res, void *dx, float *dw, float *db, void *dres, float *dscale,
                                    float *dshift, i64 N, i64 C, i64 S, i64 G, int act, int channels_last,
                                    int nthreads, i64 wave_bytes, int dtype) {
    const i64 per = C * S;
    const void *rres = act == ACT_NONE ? NULL : res; /* enters only through the activation's derivative */
    float *pw, *pb;
    if (param_terms(N, C, dw, db, &pw, &pb) != 0) return -1;
    /* per thread: dy (dx in its place), x, then residual, dresidual where present */
    const i64 k = 2 + (rres != NULL) + (dres != NULL);
    float *all = buffer(0, sizeof(float) * (size_t)(nthreads * k * per));
    if (!all) return -1;
    int fail = 0;
#pragma omp parallel for schedule(static) num_threads(nthreads) reduction(min : fail)
    for (i64 n = 0; n < N; n++) {
        float *next = all + thread_num() * k * per;
        float *dys = next, *xs = dys + per;
        next = xs + per;
        float *rs = rres ? next : NULL;
        next += rres ? per : 0;
        float *dxs = dx ? dys : NULL, *dress = dres ? next : NULL;
        const i64 off = n * per;
        to_f32_range((const uint16_t *)dy + off, dys, per, dtype);
        to_f32_range((const uint16_t *)x + off, xs, per, dtype);
        if (rres) to_f32_range((const uint16_t *)rres + off, rs, per, dtype);
        const int rc = gn_backward_f32_partial(dys, xs, mean + n * G, rstd + n * G, w, bias, at(scale, n * C),
                                               at(shift, n * C), rs, dxs, dress, at_mut(dscale, n * C),
                                               at_mut(dshift, n * C), 1, C, S, G, act, channels_last, 1,
                                               wave_bytes, at_mut(pw, n * C), at_mut(pb, n * C));
        if (rc != 0) {
            fail = rc < fail ? rc : fail;
            continue;
        }
        if (dx) from_f32_range(dxs, (uint16_t *)dx + off, per, dtype);
        if (dres) from_f32_range(dress, (uint16_t *)dres + off, per, dtype);
    }
    if (fail == 0) gn_param_grad_sums(pw, pb, N, C, dw, db, nthreads);
    return fail;
}

/* NCHW backward in runs of groups, as the forward: the run's dy and x (and the residual, with an activation)
 * converted into per-thread tiles, then the float32 backward's steps for the run (sums, dx coefficients, dx) on
 * the tiles, dx written over dy, and the tiles rounded into dx (and dresidual). The float32 backward's fused path
 * with the same steps in the same order: its bits. */
static int half_backward_nchw_runs(const uint16_t *dy, const uint16_t *x, const float *mean, const float *rstd,
                                   const float *w, const float *bias, const float *scale, const float *shift,
                                   const uint16_t *res, uint16_t *dx, float *dw, float *db, uint16_t *dres,
                                   float *dscale, float *dshift, i64 N, i64 C, i64 S, i64 G, int act, int nthreads,
                                   int dtype) {
    const i64 D = C / G, L = D * S, NG = N * G, NC = N * C;
    const i64 per_run = imax(1, imin(cdiv(NG, 2 * (i64)nthreads), RUN_ELEMS / L)), tile = per_run * L;
    const uint16_t *rres = act == ACT_NONE ? NULL : res;
    const i64 k = 2 + (rres != NULL) + (dres != NULL); /* dy (dx over it), x, residual, dresidual */
    float *coef = buffer(1, sizeof(float) * 10 * (size_t)NC);
    float *tiles = buffer(2, sizeof(float) * (size_t)(k * nthreads * tile));
    if (!coef || !tiles) return -1;
    float *M = coef, *A = coef + NC, *B = coef + 2 * NC, *S1 = coef + 3 * NC, *S2 = coef + 4 * NC;
    float *P = coef + 5 * NC, *Q = coef + 6 * NC, *R = coef + 7 * NC, *pw = coef + 8 * NC, *pb = coef + 9 * NC;
    all_coefs(N, C, G, mean, rstd, w, bias, scale, shift, M, A, B, NC >= 4096 ? nthreads : 1);
    const int store_g = stores_g(act) && (dx || dres);
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (i64 g0 = 0; g0 < NG; g0 += per_run) {
        const i64 g1 = imin(NG, g0 + per_run), count = (g1 - g0) * L, r0 = g0 * D, rows = (g1 - g0) * D;
        float *dyt = tiles + k * thread_num() * tile, *xt = dyt + tile, *next = xt + tile;
        float *rt = rres ? next : NULL;
        next += rres ? tile : 0;
        float *drt = dres ? next : NULL;
        to_f32_range(dy + g0 * L, dyt, count, dtype);
        to_f32_range(x + g0 * L, xt, count, dtype);
        if (rres) to_f32_range(rres + g0 * L, rt, count, dtype);
        /* g = dy act'(pre) stored for the dx pass where the float32 backward stores it: in dresidual, else in dx
         * (here: over dy) */
        float *gbuf = store_g ? (dres ? drt : dyt) : NULL;
        rows_sums(dyt, xt, rt, S, 0, rows, M + r0, A + r0, B + r0, act, S1 + r0, S2 + r0, gbuf);
        for (i64 ng = g0; ng < g1; ng++)
            group_grads(ng / G, ng % G, C, D, S, rstd[ng], w, bias, scale, S1, S2, P, Q, R, dscale, dshift,
                        dw ? pw : NULL, db ? pb : NULL);
        if (dx || (dres && !gbuf))
            dx_range(gbuf ? gbuf : dyt, xt, gbuf ? NULL : rt, dx ? dyt : NULL, gbuf ? NULL : drt, 0, count, S,
                     M + r0, A + r0, B + r0, P + r0, Q + r0, R + r0, gbuf ? ACT_NONE : act, 0);
        if (dx) from_f32_range(dyt, dx + g0 * L, count, dtype);
        if (dres) from_f32_range(drt, dres + g0 * L, count, dtype);
    }
    gn_param_grad_sums(pw, pb, N, C, dw, db, nthreads);
    return 0;
}

/* as half_forward_waves, with the float32 backward's per-(n, c) parameter terms summed at the end */
static int half_backward_waves(const void *dy, const void *x, const float *mean, const float *rstd, const float *w,
                               const float *bias, const float *scale, const float *shift, const void *res, void *dx,
                               float *dw, float *db, void *dres, float *dscale, float *dshift, i64 N, i64 C, i64 S,
                               i64 G, int act, int channels_last, int nthreads, i64 wave_bytes, int dtype) {
    const i64 per = C * S;
    const void *rres = act == ACT_NONE ? NULL : res; /* enters only through the activation's derivative */
    float *pw, *pb;
    if (param_terms(N, C, dw, db, &pw, &pb) != 0) return -1;
    const i64 wave = samples_per_wave(N, per);
    const size_t bytes = sizeof(float) * (size_t)(wave * per);
    float *dys = buffer(0, bytes), *xs = buffer(1, bytes), *rs = rres ? buffer(2, bytes) : NULL;
    float *dxs = dx ? dys : NULL, *dress = dres ? buffer(4, bytes) : NULL; /* dx in place of dy */
    int rc = (!dys || !xs || (rres && !rs) || (dres && !dress)) ? -1 : 0;
    for (i64 n0 = 0; n0 < N && rc == 0; n0 += wave) {
        const i64 n = imin(wave, N - n0), count = n * per, off = n0 * per;
        to_f32(dy, off, dys, count, dtype, nthreads);
        to_f32(x, off, xs, count, dtype, nthreads);
        if (rres) to_f32(rres, off, rs, count, dtype, nthreads);
        rc = gn_backward_f32_partial(dys, xs, mean + n0 * G, rstd + n0 * G, w, bias, at(scale, n0 * C),
                                     at(shift, n0 * C), rs, dxs, dress, at_mut(dscale, n0 * C),
                                     at_mut(dshift, n0 * C), n, C, S, G, act, channels_last, nthreads, wave_bytes,
                                     at_mut(pw, n0 * C), at_mut(pb, n0 * C));
        if (rc != 0) break;
        if (dx) from_f32(dxs, dx, off, count, dtype, nthreads);
        if (dres) from_f32(dress, dres, off, count, dtype, nthreads);
    }
    if (rc == 0) gn_param_grad_sums(pw, pb, N, C, dw, db, nthreads);
    return rc;
}

#endif
