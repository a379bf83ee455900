/* Statistics without cancellation, and their merges. Each block's mean and M2 come from two passes over the block
 * while it sits in L1 (no E[x^2] - E[x]^2), and blocks are merged with Chan's formula in double, in block order.
 * NCHW groups are contiguous: blocks of NCHW_BLOCK elements, merged per group. channels_last pixels hold every
 * channel: per-(pixel block, channel) statistics, merged per channel over the blocks, then channels into groups
 * by the exact equal-count formula. Also here: the per-(n, c) coefficients the statistics give the epilogue. */
#ifndef GN_STATISTICS_H
#define GN_STATISTICS_H

#include <math.h>

#include "common.h"
#include "simd_avx512.h"

/* running count, mean and M2 (sum of squared deviations) of a set of values */
typedef struct {
    double count, mean, m2;
} Stat;

/* Chan's merge of a block (nb values, mean_b, m2_b) into a */
static inline void chan_merge(Stat *a, double nb, double mean_b, double m2_b) {
    double n = a->count + nb;
    if (n == 0.0) return;
    double delta = mean_b - a->mean;
    a->mean += delta * (nb / n);
    a->m2 += m2_b + delta * delta * (a->count * nb / n);
    a->count = n;
}

/* Reductions keep RED_LANES independent partial sums (four AVX-512 registers' worth): with a single vector
 * accumulator a sum is bound by the add latency, not by the loads. The lanes are combined in a fixed tree, so the
 * result depends only on the data. */
#define RED_LANES 64

static inline float lanes_total(float *acc) {
    for (int w = RED_LANES / 2; w > 0; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    return acc[0];
}

#ifdef __AVX512F__
/* sum of x[0..len) - shift (shift = 0: plain sum) or of its squares, four vector accumulators combined in a fixed
 * order, the last vector masked: no scalar loop, which for short groups (a few dozen elements, as in small
 * feature maps) had been most of the call */
static inline float block_sum16(const float *x, i64 len, float shift, int squares) {
    const __m512 vs = _mm512_set1_ps(shift);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    i64 i = 0;
    for (; i + 64 <= len; i += 64) {
        const __m512 v0 = _mm512_loadu_ps(x + i), v1 = _mm512_loadu_ps(x + i + 16);
        const __m512 v2 = _mm512_loadu_ps(x + i + 32), v3 = _mm512_loadu_ps(x + i + 48);
        if (squares) {
            const __m512 d0 = _mm512_sub_ps(v0, vs), d1 = _mm512_sub_ps(v1, vs);
            const __m512 d2 = _mm512_sub_ps(v2, vs), d3 = _mm512_sub_ps(v3, vs);
            a0 = _mm512_fmadd_ps(d0, d0, a0), a1 = _mm512_fmadd_ps(d1, d1, a1);
            a2 = _mm512_fmadd_ps(d2, d2, a2), a3 = _mm512_fmadd_ps(d3, d3, a3);
        } else {
            a0 = _mm512_add_ps(a0, v0), a1 = _mm512_add_ps(a1, v1);
            a2 = _mm512_add_ps(a2, v2), a3 = _mm512_add_ps(a3, v3);
        }
    }
    for (int k = 0; i < len; i += 16, k++) {
        const __mmask16 mk = len - i >= 16 ? (__mmask16)0xFFFF : tail_mask(len - i);
        const __m512 v = _mm512_maskz_loadu_ps(mk, x + i);
        const __m512 d = _mm512_maskz_sub_ps(mk, v, vs); /* masked lanes stay 0 */
        __m512 *acc = k == 0 ? &a0 : (k == 1 ? &a1 : &a2);
        *acc = squares ? _mm512_fmadd_ps(d, d, *acc) : _mm512_add_ps(*acc, v);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}
#endif

/* mean and M2 of a contiguous block, two passes (the block is L1-resident for the second) */
static void block_stats(const float *x, i64 len, float *mean_out, float *m2_out) {
#ifdef __AVX512F__
    const float mean16 = block_sum16(x, len, 0.0f, 0) / (float)len;
    *mean_out = mean16;
    *m2_out = block_sum16(x, len, mean16, 1);
#else
    float acc[RED_LANES] = {0.0f};
    i64 i = 0;
    for (; i + RED_LANES <= len; i += RED_LANES)
        for (int j = 0; j < RED_LANES; j++) acc[j] += x[i + j];
    float tail = 0.0f;
    for (i64 k = i; k < len; k++) tail += x[k];
    const float mean = (lanes_total(acc) + tail) / (float)len;
    float acq[RED_LANES] = {0.0f};
    for (i = 0; i + RED_LANES <= len; i += RED_LANES)
        for (int j = 0; j < RED_LANES; j++) {
            const float d = x[i + j] - mean;
            acq[j] += d * d;
        }
    float tq = 0.0f;
    for (i64 k = i; k < len; k++) tq += (x[k] - mean) * (x[k] - mean);
    *mean_out = mean;
    *m2_out = lanes_total(acq) + tq;
#endif
}

static float rstd_of(const Stat *st, float eps) {
    double var = st->m2 / st->count;
    if (var < 0.0) var = 0.0;
    return (float)(1.0 / sqrt(var + (double)eps));
}

/* per-(n, c) coefficients from the group statistics and the epilogue parameters */
static void channel_coefs(i64 n, i64 g, i64 C, i64 D, float mean, float rstd, const float *w, const float *bias,
                          const float *scale, const float *shift, float *M, float *A, float *B) {
    for (i64 c = g * D; c < (g + 1) * D; c++) {
        float s1 = scale ? 1.0f + scale[n * C + c] : 1.0f;
        float wc = w ? w[c] : 1.0f;
        float bc = bias ? bias[c] : 0.0f;
        M[n * C + c] = mean;
        A[n * C + c] = rstd * wc * s1;
        B[n * C + c] = bc * s1 + (shift ? shift[n * C + c] : 0.0f);
    }
}

/* per-channel mean and M2 of np pixels of C channels, two passes (the block is L1/L2-resident for the second).
 * Channels go in chunks of 64 whose sums stay in registers across the pixels; the rest the generic way. */
static void pixel_block_stats(const float *xb, i64 np, i64 C, float *cm, float *cq) {
    const float inv = 1.0f / (float)np;
    i64 c0 = 0;
    for (; c0 + 64 <= C; c0 += 64) {
        float acc[64] = {0.0f};
        for (i64 p = 0; p < np; p++)
            for (int j = 0; j < 64; j++) acc[j] += xb[p * C + c0 + j];
        for (int j = 0; j < 64; j++) cm[c0 + j] = acc[j] * inv;
        float aq[64] = {0.0f};
        for (i64 p = 0; p < np; p++)
            for (int j = 0; j < 64; j++) {
                const float d = xb[p * C + c0 + j] - cm[c0 + j];
                aq[j] += d * d;
            }
        for (int j = 0; j < 64; j++) cq[c0 + j] = aq[j];
    }
    if (c0 == C) return;
    for (i64 c = c0; c < C; c++) cm[c] = 0.0f, cq[c] = 0.0f;
    for (i64 p = 0; p < np; p++) {
#pragma omp simd
        for (i64 c = c0; c < C; c++) cm[c] += xb[p * C + c];
    }
#pragma omp simd
    for (i64 c = c0; c < C; c++) cm[c] *= inv;
    for (i64 p = 0; p < np; p++) {
#pragma omp simd
        for (i64 c = c0; c < C; c++) {
            const float d = xb[p * C + c] - cm[c];
            cq[c] += d * d;
        }
    }
}

/* Chan merge of a sample's pixel blocks, in block order, for channels [c0, c1) */
static void fold_channels(const float *part, i64 nblk, i64 P, i64 S, i64 C, i64 c0, i64 c1, double *cmean,
                          double *cm2) {
    for (i64 c = c0; c < c1; c++) cmean[c] = 0.0, cm2[c] = 0.0;
    double na = 0.0;
    for (i64 b = 0; b < nblk; b++) {
        const float *bm = part + 2 * b * C, *bq = bm + C;
        const double nb = (double)imin(P, S - b * P), nn = na + nb;
        const double fb = nb / nn, fab = na * nb / nn;
#pragma omp simd
        for (i64 c = c0; c < c1; c++) {
            const double delta = (double)bm[c] - cmean[c];
            cmean[c] += delta * fb;
            cm2[c] += (double)bq[c] + delta * delta * fab;
        }
        na = nn;
    }
}

/* channels -> group (n, g): equal counts S per channel, so an exact two-level formula; writes the statistics and
 * the group's channel coefficients */
static void group_from_channels(const double *cmean, const double *cm2, i64 n, i64 g, i64 C, i64 D, i64 S,
                                float eps, float *mean_out, float *rstd_out, const float *w, const float *bias,
                                const float *scale, const float *shift, float *M, float *A, float *B) {
    /* four partial sums in a fixed order: a single chain of dependent adds is latency-bound, and with many
     * small samples (e.g. 2048 channels x 7 x 7) this step is a visible share of the call */
    const double *mc = cmean + g * D, *qc = cm2 + g * D;
    double sm[4] = {0.0, 0.0, 0.0, 0.0};
    for (i64 c = 0; c < D; c++) sm[c & 3] += mc[c];
    const double gm = ((sm[0] + sm[1]) + (sm[2] + sm[3])) / (double)D;
    double q[4] = {0.0, 0.0, 0.0, 0.0}, bt[4] = {0.0, 0.0, 0.0, 0.0};
    for (i64 c = 0; c < D; c++) {
        const double d = mc[c] - gm;
        q[c & 3] += qc[c];
        bt[c & 3] += d * d;
    }
    const double between = (bt[0] + bt[1]) + (bt[2] + bt[3]);
    Stat st = {(double)(S * D), gm, ((q[0] + q[1]) + (q[2] + q[3])) + (double)S * between};
    const float mean = (float)gm, rstd = rstd_of(&st, eps);
    mean_out[n * (C / D) + g] = mean;
    rstd_out[n * (C / D) + g] = rstd;
    channel_coefs(n, g, C, D, mean, rstd, w, bias, scale, shift, M, A, B);
}

#endif
