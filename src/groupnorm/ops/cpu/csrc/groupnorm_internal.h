/* What groupnorm_half.c shares with the float32 kernels of groupnorm_cpu.c: block sizes, the statistics merge and
 * the statistics and apply steps (hidden from the library's exported symbols). Reading 2-byte data block by block
 * through the same steps gives the float32 kernels' bits. */
#ifndef GROUPNORM_INTERNAL_H
#define GROUPNORM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#define GN_INTERNAL __attribute__((visibility("hidden")))

typedef int64_t i64;

enum { ACT_NONE = 0, ACT_RELU = 1, ACT_SILU = 2, ACT_GELU = 3, ACT_GELU_TANH = 4 };

static inline i64 imin(i64 a, i64 b) { return a < b ? a : b; }
static inline i64 imax(i64 a, i64 b) { return a > b ? a : b; }
static inline i64 cdiv(i64 a, i64 b) { return (a + b - 1) / b; }

/* Work buffers kept per calling thread, by slot, that only grow (a fresh malloc of several hundred KiB per call is
 * an mmap and its page faults): slots below GN_HALF_SLOT0 belong to the float32 kernels, the rest to
 * groupnorm_half.c, which calls the float32 kernels while it holds its own. */
#define GN_SCRATCH_SLOTS 9
#define GN_HALF_SLOT0 3
GN_INTERNAL void *gni_scratch(int slot, size_t bytes);
/* frees the buffers of slots first.. that are larger than keep_bytes */
GN_INTERNAL void gni_release_scratch(int first, size_t keep_bytes);

#define NCS_BLOCK 2048 /* elements per statistics block, NCHW: 8 KiB stays in L1 for the second pass */
/* elements per statistics block, channels_last (whole pixels, at least NSC_MIN_PIX): 64 KiB, L2-resident for the
 * second pass, and half the partial sums of 8192 (+8-20% on large samples, where merging them took a tenth) */
#define NSC_BLOCK 16384
#define NSC_MIN_PIX 16    /* each block writes 2 C partial results: keep that a small share of the block */
#define APPLY_PIECE 16384 /* elements per apply work item */
#define FOLD_CHUNK 64     /* channels per fold work item */

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

GN_INTERNAL void gni_block_stats(const float *x, int64_t len, float *mean_out, float *m2_out);
GN_INTERNAL float gni_rstd_of(const Stat *st, float eps);
GN_INTERNAL void gni_channel_coefs(int64_t n, int64_t g, int64_t C, int64_t D, float mean, float rstd,
                                   const float *w, const float *bias, const float *scale, const float *shift,
                                   float *M, float *A, float *B);
GN_INTERNAL void gni_pixel_block_stats(const float *xb, int64_t np, int64_t C, float *cm, float *cq);
GN_INTERNAL void gni_fold_channels(const float *part, int64_t nblk, int64_t P, int64_t S, int64_t C, int64_t c0,
                                   int64_t c1, double *cmean, double *cm2);
GN_INTERNAL void gni_group_from_channels(const double *cmean, const double *cm2, int64_t n, int64_t g, int64_t C,
                                         int64_t D, int64_t S, float eps, float *mean_out, float *rstd_out,
                                         const float *w, const float *bias, const float *scale, const float *shift,
                                         float *M, float *A, float *B);
/* elements [i0, i1) of rows of S elements, row r with coefficients M[r], A[r], B[r] (no streaming stores) */
GN_INTERNAL void gni_apply_range(const float *x, const float *res, float *y, int64_t i0, int64_t i1, int64_t S,
                                 const float *M, const float *A, const float *B, int act);
GN_INTERNAL void gni_apply_pixels(const float *x, const float *res, float *y, int64_t npix, int64_t C,
                                  const float *m, const float *a, const float *b, int act);

/* backward steps (see backward_impl in groupnorm_cpu.c) */
GN_INTERNAL void gni_all_coefs(int64_t N, int64_t C, int64_t G, const float *mean, const float *rstd, const float *w,
                               const float *bias, const float *scale, const float *shift, float *M, float *A,
                               float *B, int nthreads);
GN_INTERNAL void gni_rows_sums(const float *dy, const float *x, const float *res, int64_t S, int64_t r0, int64_t r1,
                               const float *M, const float *A, const float *B, int act, float *S1, float *S2,
                               float *gbuf);
GN_INTERNAL void gni_group_grads(int64_t n, int64_t g, int64_t C, int64_t D, int64_t S, float rstd, const float *w,
                                 const float *bias, const float *scale, const float *S1, const float *S2, float *P,
                                 float *Q, float *R, float *dscale, float *dshift, float *pw, float *pb);
GN_INTERNAL void gni_dx_range(const float *dy, const float *x, const float *res, float *dx, float *dres, int64_t i0,
                              int64_t i1, int64_t S, const float *M, const float *A, const float *B, const float *P,
                              const float *Q, const float *R, int act);
GN_INTERNAL int gni_stores_g(int act);

#endif
