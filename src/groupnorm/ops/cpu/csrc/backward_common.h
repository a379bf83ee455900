/* What the backward of both layouts shares: the formulas, the per-(n, c) coefficients from the saved statistics,
 * the per-group dx coefficients and parameter-gradient terms, whether the sums pass stores the gradient at the
 * pre-activation for the dx pass, and BackwardPass, one call's inputs, outputs and work buffers.
 *
 * With g = dy * act'(pre) (the gradient at the pre-activation), per (n, c):
 *     S1 = sum_s g,   S2 = sum_s g * (x - mean)      (taken about the mean: no cancellation)
 * and per group, with k_c = weight_c * (1 + scale_c) and M = D * S elements:
 *     D1 = sum_c k_c S1_c,   D2 = rstd * sum_c k_c S2_c
 *     dx = rstd k_c g  - rstd^2 D2 / M (x - mean)  - rstd D1 / M
 *     dshift = S1, dscale = weight rstd S2 + bias S1, dbias = sum_n (1 + scale) S1,
 *     dweight = sum_n (1 + scale) rstd S2, dresidual = g.
 */
#ifndef GN_BACKWARD_COMMON_H
#define GN_BACKWARD_COMMON_H

#include "activations.h"
#include "common.h"
#include "statistics.h"

/* forward coefficients (M, A, B) for all (n, c) from the saved statistics */
static void all_coefs(i64 N, i64 C, i64 G, const float *mean, const float *rstd, const float *w, const float *bias,
                      const float *scale, const float *shift, float *M, float *A, float *B, int nthreads) {
    const i64 D = C / G;
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (i64 ng = 0; ng < N * G; ng++)
        channel_coefs(ng / G, ng % G, C, D, mean[ng], rstd[ng], w, bias, scale, shift, M, A, B);
}

/* per group: dx coefficients P (per channel), Q, R (per group, stored per channel) and per-(n, c) parameter
 * gradients, from S1/S2 */
static void group_grads(i64 n, i64 g, i64 C, i64 D, i64 S, float rstd, const float *w, const float *bias,
                        const float *scale, const float *S1, const float *S2, float *P, float *Q, float *R,
                        float *dscale, float *dshift, float *pw, float *pb) {
    double d1 = 0.0, d2 = 0.0;
    for (i64 c = g * D; c < (g + 1) * D; c++) {
        const i64 nc = n * C + c;
        const float s1 = scale ? 1.0f + scale[nc] : 1.0f;
        const float k = (w ? w[c] : 1.0f) * s1;
        d1 += (double)k * S1[nc];
        d2 += (double)k * S2[nc];
        if (dshift) dshift[nc] = S1[nc];
        if (dscale) dscale[nc] = (w ? w[c] : 1.0f) * rstd * S2[nc] + (bias ? bias[c] : 0.0f) * S1[nc];
        if (pw) pw[nc] = s1 * rstd * S2[nc];
        if (pb) pb[nc] = s1 * S1[nc];
    }
    const double inv_m = 1.0 / (double)(D * S);
    const float q = (float)(-(double)rstd * rstd * rstd * d2 * inv_m);
    const float r = (float)(-(double)rstd * d1 * inv_m);
    for (i64 c = g * D; c < (g + 1) * D; c++) {
        const i64 nc = n * C + c;
        const float s1 = scale ? 1.0f + scale[nc] : 1.0f;
        P[nc] = rstd * (w ? w[c] : 1.0f) * s1;
        Q[nc] = q;
        R[nc] = r;
    }
}

/* Whether the sums pass stores g = dy * act'(pre) (into dresidual when wanted, else into dx) so that the dx pass
 * reads it instead of evaluating act' a second time: with an exp/erf activation the backward is bound by that
 * arithmetic; ReLU's derivative costs less than the extra store, so it is recomputed (see kernel-choice.md, section
 * "Storing g for the dx pass"). dx is then p g + q (x - m) + r, the plain epilogue's formula with g for dy,
 * computed by the same loops whichever path runs. */
static int stores_g(int act) { return act == ACT_SILU || act == ACT_GELU || act == ACT_GELU_TANH; }

/* One backward call as the layouts' passes see it. The passes are: the sums S1, S2 (storing g into gbuf when it is
 * not NULL), the dx coefficients and parameter-gradient terms per group (group_grads), then the dx pass, which
 * reads dx_src (dy, or g where it was stored) with activation dx_act and writes dx and dres_out. */
typedef struct {
    const float *dy, *x, *rstd, *w, *bias, *scale;
    const float *res; /* the residual where the pre-activation needs it (an activation), else NULL */
    float *dscale, *dshift;
    /* per (n, c): forward coefficients M A B, sums S1 S2, dx coefficients P Q R; the dweight / dbias terms pw pb
     * (NULL where no one wants them) */
    float *M, *A, *B, *S1, *S2, *P, *Q, *R, *pw, *pb;
    float *gbuf;               /* where the sums pass stores g, or NULL (see stores_g) */
    const float *dx_src;       /* what the dx pass reads for dy */
    float *dx, *dres_out;      /* what the dx pass writes (either may be NULL) */
    int dx_act, dx_pass;       /* the dx pass's activation, and whether there is a dx pass at all */
    int act, nthreads, stream; /* stream: streaming stores for dx */
    i64 N, C, S, G, wave_bytes;
} BackwardPass;

#endif
