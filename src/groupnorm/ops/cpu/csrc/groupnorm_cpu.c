/* Group Normalization forward and backward on CPU, with the op's fused epilogue:
 *
 *     y = act((x - mean) * A[n,c] + B[n,c] + residual)
 *     A = rstd * weight * (1 + scale),   B = bias * (1 + scale) + shift
 *
 * This file is the library: its entry points (groupnorm_cpu.h) and the choice of path each call takes. It is the
 * only translation unit; the parts it includes hold the rest, one job each, as static functions, so that gcc sees
 * every loop together with the helpers it calls and inlines them:
 *
 *     common.h                  index type, integer helpers, block and work sizes
 *     activations.h             activation codes, exp/erf, each activation and its derivative
 *     simd_avx512.h             AVX-512 helpers (masks, SiLU on 16 lanes, lane totals)
 *     statistics.h              block statistics and their merges, per-channel coefficients
 *     scratch_and_threads.h     per-thread work buffers, thread number, NCHW run schedule, whole-unit rule
 *     forward_nchw.h            forward, (N, C, *spatial) contiguous
 *     forward_channels_last.h   forward, (N, *spatial, C) contiguous
 *     backward_common.h         backward formulas, coefficients and BackwardPass, shared by both layouts
 *     backward_nchw.h           backward, (N, C, *spatial) contiguous
 *     backward_channels_last.h  backward, (N, *spatial, C) contiguous
 *     half_conversions.h        float16/bfloat16 to and from float32
 *     half_precision.h          float16/bfloat16 tensors through the float32 kernels, in tiles
 *
 * Layouts: 0 = (N, C, S) with S contiguous (NCHW, NCDHW, (N, C, L)); 1 = (N, S, C) with C contiguous
 * (channels_last, channels_last_3d). S is the product of the spatial sizes.
 *
 * Determinism: every reduction is split into blocks whose size depends only on the shape, never on the thread
 * count, and partial results are merged in a fixed order. Any thread may compute any block, so the bits are the
 * same for every thread count and every run.
 *
 * Cache use: where there are enough units (NCHW groups, channels_last samples) of at most a thread's share of a
 * wave, each unit goes whole to one thread (NCHW runs of groups: see set_run_schedule; channels_last samples in
 * contiguous ranges): statistics, then the apply pass while the unit is still in L2 or L3. Otherwise the work
 * goes in "waves" of consecutive samples or groups of at most wave_bytes of input, each pass split among the
 * threads in contiguous ranges (static schedule: every thread's reads stay sequential for the hardware
 * prefetcher, which beats handing out single blocks dynamically; see kernel-choice.md, section "Contiguous ranges
 * per thread"). A wave's statistics pass reads it from DRAM; the apply pass, run right after it, finds the wave
 * still in cache, so DRAM sees x once whenever a wave fits.
 *
 * Every entry point returns 0, -1 when a work buffer could not be allocated, or -2 for bad sizes.
 */
#include <stdint.h>
#include <string.h>

#include "groupnorm_cpu.h"

/* in the order of the table above (each part also includes what it uses) */
#include "common.h"
#include "activations.h"
#include "simd_avx512.h"
#include "statistics.h"
#include "scratch_and_threads.h"
#include "forward_nchw.h"
#include "forward_channels_last.h"
#include "backward_common.h"
#include "backward_nchw.h"
#include "backward_channels_last.h"
#include "half_conversions.h"
#include "half_precision.h"

int gn_abi_version(void) { return GN_ABI_VERSION; }

int gn_vector_bits(void) {
#if defined(__AVX512F__)
    return 512;
#elif defined(__AVX__)
    return 256;
#else
    return 128;
#endif
}

static int bad_sizes(i64 N, i64 C, i64 S, i64 G, int nthreads) {
    return N <= 0 || C <= 0 || S <= 0 || G <= 0 || C % G != 0 || nthreads <= 0;
}

/* ---------------------------------------------------------------- float32 */

int gn_forward_f32(const float *x, float *y, float *mean, float *rstd, const float *w, const float *bias,
                   const float *scale, const float *shift, const float *res, i64 N, i64 C, i64 S, i64 G,
                   float eps, int act, int channels_last, int nthreads, i64 wave_bytes, i64 stream_bytes) {
    if (bad_sizes(N, C, S, G, nthreads)) return -2;
    /* streaming stores: plain epilogue, output at least stream_bytes (0 = never), and for channels_last whole
     * 64-byte pixels */
    int stream = GN_HAVE_STREAM && stream_bytes > 0 && act == ACT_NONE && res == NULL &&
                 N * C * S * 4 >= stream_bytes;
    if (channels_last) {
        stream = stream && C % 16 == 0 && ((uintptr_t)y & 63) == 0;
        return forward_channels_last(x, y, mean, rstd, w, bias, scale, shift, res, N, C, S, G, eps, act, nthreads,
                                     wave_bytes, stream);
    }
    return forward_nchw(x, y, mean, rstd, w, bias, scale, shift, res, N, C, S, G, eps, act, nthreads, wave_bytes,
                        stream);
}

/* The backward of both entry points. dweight and dbias are sums over the batch of per-(n, c) terms pw, pb: with
 * pw_out / pb_out the terms are copied there (N x C) for the caller to sum over several calls (see
 * gn_param_grad_sums), instead of being summed into dw / db. */
static int backward_f32(const float *dy, const float *x, const float *mean, const float *rstd, const float *w,
                        const float *bias, const float *scale, const float *shift, const float *res, float *dx,
                        float *dw, float *db, float *dres, float *dscale, float *dshift, i64 N, i64 C, i64 S, i64 G,
                        int act, int channels_last, int nthreads, i64 wave_bytes, i64 stream_bytes, float *pw_out,
                        float *pb_out) {
    if (bad_sizes(N, C, S, G, nthreads)) return -2;
    const i64 NC = N * C;
    /* M A B: forward coefficients; S1 S2: sums; P Q R: dx coefficients; pw pb: per-(n, c) dweight/dbias */
    float *buf = scratch(0, sizeof(float) * 10 * NC);
    if (!buf) return -1;
    float *M = buf, *A = buf + NC, *B = buf + 2 * NC, *S1 = buf + 3 * NC, *S2 = buf + 4 * NC;
    float *P = buf + 5 * NC, *Q = buf + 6 * NC, *R = buf + 7 * NC, *pw = buf + 8 * NC, *pb = buf + 9 * NC;
    all_coefs(N, C, G, mean, rstd, w, bias, scale, shift, M, A, B, NC >= 4096 ? nthreads : 1);
    const int want_dx = dx != NULL || dres != NULL;
    float *gbuf = stores_g(act) && want_dx ? (dres ? dres : dx) : NULL;
    const BackwardPass bp = {
        .dy = dy, .x = x, .rstd = rstd, .w = w, .bias = bias, .scale = scale,
        /* the pre-activation needs the residual only when there is an activation */
        .res = act == ACT_NONE ? NULL : res,
        .dscale = dscale, .dshift = dshift,
        .M = M, .A = A, .B = B, .S1 = S1, .S2 = S2, .P = P, .Q = Q, .R = R,
        .pw = dw || pw_out ? pw : NULL, .pb = db || pb_out ? pb : NULL,
        .gbuf = gbuf,
        /* the dx pass: from g where it was stored (nothing left to do when only dresidual is wanted) */
        .dx_src = gbuf ? gbuf : dy, .dx = dx, .dres_out = gbuf ? NULL : dres,
        .dx_act = gbuf ? ACT_NONE : act, .dx_pass = want_dx && !(gbuf && !dx),
        .act = act, .nthreads = nthreads,
        /* streaming stores for dx as in the forward: plain epilogue, dx only, large outputs (channels_last: whole,
         * aligned 64-byte vectors) */
        .stream = GN_HAVE_STREAM && stream_bytes > 0 && act == ACT_NONE && dx && !dres &&
                  NC * S * 4 >= stream_bytes && (!channels_last || (C % 16 == 0 && ((uintptr_t)dx & 63) == 0)),
        .N = N, .C = C, .S = S, .G = G, .wave_bytes = wave_bytes,
    };
    const int rc = channels_last ? backward_channels_last(&bp) : backward_nchw(&bp);
    if (rc != 0) return rc;
    if (pw_out) memcpy(pw_out, pw, sizeof(float) * NC);
    if (pb_out) memcpy(pb_out, pb, sizeof(float) * NC);
    gn_param_grad_sums(pw, pb, N, C, dw, db, nthreads);
    return 0;
}

int gn_backward_f32(const float *dy, const float *x, const float *mean, const float *rstd, const float *w,
                    const float *bias, const float *scale, const float *shift, const float *res, float *dx,
                    float *dw, float *db, float *dres, float *dscale, float *dshift, i64 N, i64 C, i64 S, i64 G,
                    int act, int channels_last, int nthreads, i64 wave_bytes, i64 stream_bytes) {
    return backward_f32(dy, x, mean, rstd, w, bias, scale, shift, res, dx, dw, db, dres, dscale, dshift, N, C, S, G,
                        act, channels_last, nthreads, wave_bytes, stream_bytes, NULL, NULL);
}

int gn_backward_f32_partial(const float *dy, const float *x, const float *mean, const float *rstd, const float *w,
                            const float *bias, const float *scale, const float *shift, const float *res, float *dx,
                            float *dres, float *dscale, float *dshift, i64 N, i64 C, i64 S, i64 G, int act,
                            int channels_last, int nthreads, i64 wave_bytes, float *pw_out, float *pb_out) {
    return backward_f32(dy, x, mean, rstd, w, bias, scale, shift, res, dx, NULL, NULL, dres, dscale, dshift, N, C,
                        S, G, act, channels_last, nthreads, wave_bytes, 0, pw_out, pb_out);
}

void gn_param_grad_sums(const float *pw, const float *pb, i64 N, i64 C, float *dw, float *db, int nthreads) {
    if (!dw && !db) return;
    /* channel chunks in parallel, each summed over n in order (vectorized across the chunk's channels) */
#pragma omp parallel for schedule(static) num_threads(N * C >= 4096 ? nthreads : 1)
    for (i64 c0 = 0; c0 < C; c0 += FOLD_CHUNK) {
        const i64 c1 = imin(C, c0 + FOLD_CHUNK);
        double sw[FOLD_CHUNK], sb[FOLD_CHUNK];
        for (i64 c = c0; c < c1; c++) sw[c - c0] = 0.0, sb[c - c0] = 0.0;
        for (i64 n = 0; n < N; n++) {
            if (dw) {
                const float *pwn = pw + n * C;
#pragma omp simd
                for (i64 c = c0; c < c1; c++) sw[c - c0] += pwn[c];
            }
            if (db) {
                const float *pbn = pb + n * C;
#pragma omp simd
                for (i64 c = c0; c < c1; c++) sb[c - c0] += pbn[c];
            }
        }
        for (i64 c = c0; c < c1; c++) {
            if (dw) dw[c] = (float)sw[c - c0];
            if (db) db[c] = (float)sb[c - c0];
        }
    }
}

/* ---------------------------------------------------------------- float16 / bfloat16 (see half_precision.h) */

int gn_forward_half(const void *x, void *y, float *mean, float *rstd, const float *w, const float *bias,
                    const float *scale, const float *shift, const void *res, i64 N, i64 C, i64 S, i64 G, float eps,
                    int act, int channels_last, int nthreads, i64 wave_bytes, int dtype) {
    if (bad_sizes(N, C, S, G, nthreads)) return -2;
    if (dtype != DT_FLOAT16 && dtype != DT_BFLOAT16) return -2;
    int rc;
    if (per_thread_samples(N, C * S, nthreads))
        rc = half_forward_per_sample(x, y, mean, rstd, w, bias, scale, shift, res, N, C, S, G, eps, act,
                                     channels_last, nthreads, wave_bytes, dtype);
    else if (!channels_last && (C / G) * S <= RUN_ELEMS)
        rc = half_forward_nchw_runs(x, y, mean, rstd, w, bias, scale, shift, res, N, C, S, G, eps, act, nthreads,
                                    dtype);
    else if (channels_last)
        rc = half_forward_channels_last_blocks(x, y, mean, rstd, w, bias, scale, shift, res, N, C, S, G, eps, act,
                                               nthreads, dtype);
    else
        rc = half_forward_waves(x, y, mean, rstd, w, bias, scale, shift, res, N, C, S, G, eps, act, channels_last,
                                nthreads, wave_bytes, dtype);
    release_large();
    return rc;
}

int gn_backward_half(const void *dy, const void *x, const float *mean, const float *rstd, const float *w,
                     const float *bias, const float *scale, const float *shift, const void *res, void *dx, float *dw,
                     float *db, void *dres, float *dscale, float *dshift, i64 N, i64 C, i64 S, i64 G, int act,
                     int channels_last, int nthreads, i64 wave_bytes, int dtype) {
    if (bad_sizes(N, C, S, G, nthreads)) return -2;
    if (dtype != DT_FLOAT16 && dtype != DT_BFLOAT16) return -2;
    int rc;
    if (per_thread_samples(N, C * S, nthreads))
        rc = half_backward_per_sample(dy, x, mean, rstd, w, bias, scale, shift, res, dx, dw, db, dres, dscale,
                                      dshift, N, C, S, G, act, channels_last, nthreads, wave_bytes, dtype);
    else if (!channels_last && (C / G) * S <= RUN_ELEMS)
        rc = half_backward_nchw_runs(dy, x, mean, rstd, w, bias, scale, shift, res, dx, dw, db, dres, dscale, dshift,
                                     N, C, S, G, act, nthreads, dtype);
    else
        rc = half_backward_waves(dy, x, mean, rstd, w, bias, scale, shift, res, dx, dw, db, dres, dscale, dshift, N,
                                 C, S, G, act, channels_last, nthreads, wave_bytes, dtype);
    release_large();
    return rc;
}
