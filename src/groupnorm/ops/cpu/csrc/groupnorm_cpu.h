/* The library's entry points (groupnorm_cpu.c; groupnorm.ops.cpu.loader declares the same signatures to ctypes).
 * Every function returns 0, -1 when a work buffer could not be allocated, or -2 for bad sizes.
 *
 * Tensors are (N, C, S) with S the product of the spatial sizes, in layout channels_last = 0 ((N, C, *spatial)
 * contiguous) or 1 ((N, *spatial, C) contiguous); mean and rstd are (N, G); w, bias are (C), scale, shift (N, C);
 * any of w, bias, scale, shift, res may be NULL, as may any gradient output that is not wanted. act is a code of
 * groupnorm.activations.TABLE. nthreads is the OpenMP thread count; the results are the same bits for every
 * value. wave_bytes sizes the work that goes through the cache together, stream_bytes the output size from which
 * the plain epilogue writes with streaming stores (0: never). */
#ifndef GROUPNORM_CPU_H
#define GROUPNORM_CPU_H

#include <stdint.h>

/* The ABI number, in this one place: gn_abi_version() returns it, and groupnorm.ops.cpu.loader reads it from this
 * file and refuses a library that reports another (one built from other sources). Raise it with any change of the
 * signatures below. */
#define GN_ABI_VERSION 4

int gn_abi_version(void);

/* the widest vector registers the build was compiled for: 512 (AVX-512), 256 (AVX, AVX2), else 128 (SSE2 on
 * x86-64); GROUPNORM_CPU_MARCH chooses the target, the tests check that each build is what it says */
int gn_vector_bits(void);

int gn_forward_f32(const float *x, float *y, float *mean, float *rstd, const float *w, const float *bias,
                   const float *scale, const float *shift, const float *res, int64_t N, int64_t C, int64_t S,
                   int64_t G, float eps, int act, int channels_last, int nthreads, int64_t wave_bytes,
                   int64_t stream_bytes);

int gn_backward_f32(const float *dy, const float *x, const float *mean, const float *rstd, const float *w,
                    const float *bias, const float *scale, const float *shift, const float *res, float *dx,
                    float *dw, float *db, float *dres, float *dscale, float *dshift, int64_t N, int64_t C, int64_t S,
                    int64_t G, int act, int channels_last, int nthreads, int64_t wave_bytes, int64_t stream_bytes);

/* gn_backward_f32 without the batch sums of dweight / dbias: their per-(n, c) terms go to pw_out / pb_out (N x C,
 * either may be NULL), to be summed by gn_param_grad_sums once every sample has been through */
int gn_backward_f32_partial(const float *dy, const float *x, const float *mean, const float *rstd, const float *w,
                            const float *bias, const float *scale, const float *shift, const float *res, float *dx,
                            float *dres, float *dscale, float *dshift, int64_t N, int64_t C, int64_t S, int64_t G,
                            int act, int channels_last, int nthreads, int64_t wave_bytes, float *pw_out,
                            float *pb_out);

/* dweight[c] = sum_n pw[n, c], dbias[c] = sum_n pb[n, c], in double, in order of n (either output may be NULL) */
void gn_param_grad_sums(const float *pw, const float *pb, int64_t N, int64_t C, float *dw, float *db, int nthreads);

/* float16 (dtype 1) and bfloat16 (dtype 2) tensors: the same arguments as the float32 functions, with x, y, res,
 * dy, dx, dres in the given dtype (weight, bias, scale, shift, mean, rstd and the parameter gradients stay
 * float32). The float32 kernels do the work on float32 copies made piece by piece, so that DRAM sees the 2-byte
 * tensors and the copies stay in cache; the pieces depend on the size (half_precision.h):
 *
 * - with two threads or more, at least two samples per thread of at most 1 MiB as float32: each by one thread;
 * - NCHW, groups of at most 128 Ki elements: runs of consecutive groups in per-thread tiles (x or dy read once);
 * - channels_last forward otherwise: each statistics block and apply piece converted as it is needed;
 * - otherwise (the channels_last backward, larger NCHW groups): waves of whole samples in float32 buffers.
 *
 * Every path gives the bits of the float32 kernels on the whole tensor converted to float32, rounded to the
 * 2-byte type once at the end. */
int gn_forward_half(const void *x, void *y, float *mean, float *rstd, const float *w, const float *bias,
                    const float *scale, const float *shift, const void *res, int64_t N, int64_t C, int64_t S,
                    int64_t G, float eps, int act, int channels_last, int nthreads, int64_t wave_bytes, int dtype);

int gn_backward_half(const void *dy, const void *x, const float *mean, const float *rstd, const float *w,
                     const float *bias, const float *scale, const float *shift, const void *res, void *dx, float *dw,
                     float *db, void *dres, float *dscale, float *dshift, int64_t N, int64_t C, int64_t S, int64_t G,
                     int act, int channels_last, int nthreads, int64_t wave_bytes, int dtype);

#endif
