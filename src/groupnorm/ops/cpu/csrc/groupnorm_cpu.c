/* Group Normalization forward and backward on CPU, float32, with the op's fused epilogue:
 *
 *     y = act((x - mean) * A[n,c] + B[n,c] + residual)
 *     A = rstd * weight * (1 + scale),   B = bias * (1 + scale) + shift
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
 * prefetcher, which measured 1.0-1.5x faster than handing out single blocks dynamically). A wave's statistics pass
 * reads it from DRAM; the apply pass, run right after it, finds the wave still in cache, so DRAM sees x once
 * whenever a wave fits.
 *
 * Statistics: each block's mean and M2 come from two passes over the block while it sits in L1 (no E[x^2]-E[x]^2),
 * and blocks are merged with Chan's formula in double.
 *
 * Compiled without -ffast-math on purpose: linking with it would turn on flush-to-zero for the whole process.
 * exp and erf are written out below so that they vectorize and still pass NaN/inf through.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "groupnorm_cpu.h"
#include "groupnorm_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef __AVX512F__
#include <immintrin.h>
#endif

/* NCS_BLOCK, NSC_BLOCK, NSC_MIN_PIX, APPLY_PIECE, FOLD_CHUNK: see groupnorm_internal.h */
/* A group (NCHW) or a sample (channels_last) of at most FUSED_BYTES (half of a 1 MiB L2), or of a thread's share of
 * a wave if that is more, is done start to end by one thread (see fused_ok): x comes from DRAM once, and there is
 * no barrier a descheduled thread could hold up on a busy machine. */
#define FUSED_BYTES (512 << 10)
/* Consecutive small units (NCHW groups) handed to one thread together, in input bytes: a quarter of L2, so the
 * run's x (and y, when written back) stay in L2 between its statistics and its apply pass. */
#define RUN_BYTES (256 << 10)

int gn_abi_version(void) { return 4; }

/* ---------------------------------------------------------------- vectorizable math, NaN/inf preserving */

static inline float gn_exp(float x) {
    /* Cody-Waite reduction + degree-5 polynomial (relative error ~2e-7); 2^n built in two halves so that n = 128
     * does not overflow the exponent field. Comparisons with NaN are false, so NaN flows through the clamp and the
     * polynomial. Below -86.6 the result stays at exp(-86.6) ~ 2e-38 instead of going to 0: every use adds it to
     * 1 or multiplies it by a finite value, where the difference is below float resolution. */
    float xc = x > 88.72f ? 88.72f : x;
    xc = xc < -86.6f ? -86.6f : xc;
    const float n = floorf(xc * 1.44269504088896341f + 0.5f);
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { int32_t i; float f; } half;
    half.i = ((int32_t)n + 126) << 23;
    const float out = (p * 2.0f) * half.f;
    return x > 88.7228f ? INFINITY : out;
}

static inline float gn_erf(float v) {
    /* Rational approximation on [-4, 4] (beyond, erf is +-1 in float32); a few ulp. */
    float x = v > 4.0f ? 4.0f : v;
    x = x < -4.0f ? -4.0f : x;
    float x2 = x * x;
    float p = -2.72614225801306e-10f;
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 + -2.10102402082508e-06f;
    p = p * x2 + -5.69250639462346e-05f;
    p = p * x2 + -7.34990630326855e-04f;
    p = p * x2 + -2.95459980854025e-03f;
    p = p * x2 + -1.60960333262415e-02f;
    p = p * x;
    float q = -1.45660718464996e-05f;
    q = q * x2 + -2.13374055278905e-04f;
    q = q * x2 + -1.68282697438203e-03f;
    q = q * x2 + -7.37332916720468e-03f;
    q = q * x2 + -1.42647390514189e-02f;
    return p / q;
}

#define GN_SQRT1_2 0.70710678118654752f
#define GN_INV_SQRT_2PI 0.39894228040143268f
#define GN_TANH_K 0.79788456080286536f /* sqrt(2/pi) */
#define GN_TANH_C 0.044715f

static inline float act_fwd(float v, const int act) {
    switch (act) {
    case ACT_RELU:
        return v > 0.0f ? v : (v != v ? v : 0.0f);
    case ACT_SILU:
        return v / (1.0f + gn_exp(-v));
    case ACT_GELU:
        return 0.5f * v * (1.0f + gn_erf(v * GN_SQRT1_2));
    case ACT_GELU_TANH: {
        float u = GN_TANH_K * (v + GN_TANH_C * v * v * v);
        float t = 1.0f - 2.0f / (1.0f + gn_exp(2.0f * u));
        return 0.5f * v * (1.0f + t);
    }
    default:
        return v;
    }
}

/* d act / d v */
static inline float act_grad(float v, const int act) {
    switch (act) {
    case ACT_RELU:
        return v > 0.0f ? 1.0f : (v != v ? v : 0.0f);
    case ACT_SILU: {
        float s = 1.0f / (1.0f + gn_exp(-v));
        return s * (1.0f + v * (1.0f - s));
    }
    case ACT_GELU: {
        float cdf = 0.5f * (1.0f + gn_erf(v * GN_SQRT1_2));
        float pdf = GN_INV_SQRT_2PI * gn_exp(-0.5f * v * v);
        return cdf + v * pdf;
    }
    case ACT_GELU_TANH: {
        float v2 = v * v;
        float u = GN_TANH_K * (v + GN_TANH_C * v2 * v);
        float t = 1.0f - 2.0f / (1.0f + gn_exp(2.0f * u));
        return 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * GN_TANH_K * (1.0f + 3.0f * GN_TANH_C * v2);
    }
    default:
        return 1.0f;
    }
}

/* ---------------------------------------------------------------- statistics helpers */

/* Stat and chan_merge: see groupnorm_internal.h */

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
static inline __mmask16 tail_mask(i64 rem);

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

/* ---------------------------------------------------------------- apply loops */

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

#ifdef __AVX512F__
static void apply_row_silu(const float *x, const float *res, float *y, i64 len, float m, float a, float b);
static void apply_row_plain(const float *x, const float *res, float *y, i64 len, float m, float a, float b);
static void apply_pixels_silu(const float *x, const float *res, float *y, i64 npix, i64 C, const float *m,
                              const float *a, const float *b);
static void apply_pixels_plain(const float *x, const float *res, float *y, i64 npix, i64 C, const float *m,
                               const float *a, const float *b);
#endif

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

/* Work buffers are kept per calling thread and only grow: a fresh malloc of a few hundred KiB per call is an mmap
 * whose pages the kernel zeroes on first touch, which cost more than the kernels' own work on mid-sized tensors.
 * The float32 kernels use slots 0-2 (a call needs up to three buffers at once); see groupnorm_internal.h. */
static __thread void *scratch_buf[GN_SCRATCH_SLOTS];
static __thread size_t scratch_size[GN_SCRATCH_SLOTS];

static void *scratch(int slot, size_t bytes) {
    if (bytes > scratch_size[slot]) {
        free(scratch_buf[slot]);
        scratch_buf[slot] = malloc(bytes);
        scratch_size[slot] = scratch_buf[slot] ? bytes : 0;
    }
    return scratch_buf[slot];
}

GN_INTERNAL void *gni_scratch(int slot, size_t bytes) { return scratch(slot, bytes); }

GN_INTERNAL void gni_release_scratch(int first, size_t keep_bytes) {
    for (int i = first; i < GN_SCRATCH_SLOTS; i++)
        if (scratch_size[i] > keep_bytes) free(scratch_buf[i]), scratch_buf[i] = NULL, scratch_size[i] = 0;
}

/* Whether units (NCHW groups, channels_last samples) go whole to one thread each: statistics, then the apply
 * pass right away while the unit is still in L2 or, up to a thread's share of a wave, in L3. Measured against the
 * split path on the 2-core EPYC: 2.4x on 8x1024x14x14 channels_last (800 KB samples), 1.9x on 4x512x1024
 * channels_last (2 MB samples), 1.5-1.9x on 1x64x512x512 NCHW (2 MB groups). */
static int fused_ok(i64 units, i64 unit_bytes, int nthreads, i64 wave_bytes) {
    return unit_bytes <= imax(FUSED_BYTES, wave_bytes / nthreads) && units >= 2 * (i64)nthreads;
}

/* Streaming (non-temporal) stores for large outputs without an epilogue: y then bypasses the caches, which saves
 * the read-for-ownership of every y line and leaves the cache to x, whose second read (the apply pass) then comes
 * from L3 instead of DRAM. Same arithmetic as the plain loop (fma(x - m, a, b)), so the same bits. */
#ifdef __AVX512F__
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

/* requires C % 16 == 0 and a 64-byte aligned y */
static void apply_pixels_stream(const float *x, float *y, i64 npix, i64 C, const float *m, const float *a,
                                const float *b) {
    for (i64 p = 0; p < npix; p++)
        for (i64 c = 0; c < C; c += 16) {
            const __m512 v = _mm512_sub_ps(_mm512_loadu_ps(x + p * C + c), _mm512_loadu_ps(m + c));
            _mm512_stream_ps(y + p * C + c, _mm512_fmadd_ps(v, _mm512_loadu_ps(a + c), _mm512_loadu_ps(b + c)));
        }
}

/* SiLU with AVX-512 intrinsics: exp through vscalefps (2^n * 2^f, f in [-1/2, 1/2], degree-5 polynomial) and the
 * division through vrcp14ps plus one Newton step: fewer and cheaper instructions than the portable loop, which
 * matters because the fused GN+SiLU is compute-bound there. The exponent is clamped to +-126 so exp stays finite
 * (silu(+inf) = +inf), in one vrangeps (the smaller magnitude, with t's sign), which returns a NaN t as it is.
 * The degree-5 polynomial (near-minimax for relative error, 7.6e-8 in exact arithmetic) and the one-instruction
 * clamp made the GN+SiLU forward 7-10% faster than degree 6 with min/max. Against float64 SiLU of the same
 * pre-activation the error is unchanged where it is largest (16 ulp at v = -20, from rounding t = -v log2(e) to
 * float32) and 5 ulp against 4.4 at most for |v| <= 5 (99.9th percentile 2.9 against 2.4); see kernel-choice.md. */
static inline __m512 sigmoid16(__m512 v) {
    __m512 t = _mm512_mul_ps(v, _mm512_set1_ps(-1.44269504088896341f));
#ifdef __AVX512DQ__
    t = _mm512_range_ps(t, _mm512_set1_ps(126.0f), 0x02); /* imm: absolute minimum, sign of t */
#else
    t = _mm512_max_ps(_mm512_set1_ps(-126.0f), _mm512_min_ps(_mm512_set1_ps(126.0f), t));
#endif
    const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_set1_ps(0.001328230369836092f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.009675590321421623f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.05550695210695267f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.24022118747234344f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.6931470036506653f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0000001192092896f));
    const __m512 d = _mm512_add_ps(_mm512_scalef_ps(p, n), _mm512_set1_ps(1.0f));
    __m512 r = _mm512_rcp14_ps(d);
    return _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0f)));
}

static inline __m512 silu16(__m512 v) {
    /* the clamp leaves 1/(1 + e) a tiny positive number at -inf: give torch's -inf * 0 = NaN explicitly */
    const __mmask16 neg_inf = _mm512_cmp_ps_mask(v, _mm512_set1_ps(-INFINITY), _CMP_EQ_OQ);
    return _mm512_mask_mov_ps(_mm512_mul_ps(v, sigmoid16(v)), neg_inf, _mm512_set1_ps(NAN));
}

/* d silu / d v = s (1 + v (1 - s)); at -inf torch gives 0 * -inf = NaN, at +inf 1 + inf * 0 = NaN (the latter
 * follows from the arithmetic, the former is set explicitly as in silu16) */
static inline __m512 silu_grad16(__m512 v) {
    const __m512 s = sigmoid16(v), one = _mm512_set1_ps(1.0f);
    const __m512 g = _mm512_mul_ps(s, _mm512_fmadd_ps(v, _mm512_sub_ps(one, s), one));
    const __mmask16 neg_inf = _mm512_cmp_ps_mask(v, _mm512_set1_ps(-INFINITY), _CMP_EQ_OQ);
    return _mm512_mask_mov_ps(g, neg_inf, _mm512_set1_ps(NAN));
}

static inline __mmask16 tail_mask(i64 rem) { return (__mmask16)((1u << rem) - 1u); }

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

/* The plain epilogue over pixels. With many channels, four pixels per load of the coefficient vectors: with one
 * pixel at a time the three coefficient loads (24 KiB of them for 2048 channels) competed with x for L1 and the
 * load ports (+16% on 32x2048x7x7; with fewer channels the four streams cost 3-10%, so one pixel at a time). */
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
#define GN_HAVE_STREAM 1
#define GN_SFENCE() _mm_sfence()
#else
#define GN_HAVE_STREAM 0
#define GN_SFENCE() ((void)0)
#endif

/* Elements [i0, i1) of a (rows of S) array, row r with coefficients M[r], A[r], B[r]. */
#ifdef __AVX512F__
/* Plain (or SiLU) epilogue over a contiguous range of rows as one stream of full vectors: a vector that straddles
 * a row boundary takes each lane's coefficients from its own row (S >= 16, so at most two rows per vector). With
 * short rows (49 elements) the per-row loop spent as long on its prologue and masked tail as on the data (+17%
 * plain, +26-29% SiLU at S = 49). Same arithmetic per element as apply_row_plain / apply_row_silu. */
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

static void apply_range(const float *x, const float *res, float *y, i64 i0, i64 i1, i64 S, const float *M,
                        const float *A, const float *B, int act, int stream) {
#ifdef __AVX512F__
    /* measured (plain epilogue): +17% at S = 49, -7% at 196 */
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

/* The NCHW run loops take their schedule at run time: contiguous ranges per thread for the plain epilogue, which
 * is bound by memory and gains from each thread reading sequentially (forward 0.99-1.08x, backward 1.02-1.10x, two
 * builds side by side), runs handed out one by one with an activation, which is bound by arithmetic and gains
 * from the balancing (static: 0.87-1.03x on the SiLU backward). The caller's schedule is restored afterwards. */
typedef struct {
    int kind, chunk; /* an omp_sched_t and its chunk size */
} SavedSchedule;

static SavedSchedule set_run_schedule(int act) {
    SavedSchedule saved = {0, 0};
#ifdef _OPENMP
    omp_sched_t kind;
    omp_get_schedule(&kind, &saved.chunk);
    saved.kind = (int)kind;
    omp_set_schedule(act == ACT_NONE ? omp_sched_static : omp_sched_dynamic, act == ACT_NONE ? 0 : 1);
#else
    (void)act;
#endif
    return saved;
}

static void restore_schedule(SavedSchedule saved) {
#ifdef _OPENMP
    omp_set_schedule((omp_sched_t)saved.kind, saved.chunk);
#else
    (void)saved;
#endif
}

/* ---------------------------------------------------------------- forward */

static int fwd_ncs(const float *x, float *y, float *mean_out, float *rstd_out, const float *w, const float *bias,
                   const float *scale, const float *shift, const float *res, i64 N, i64 C, i64 S, i64 G, float eps,
                   int act, int nthreads, i64 wave_bytes, int stream) {
    const i64 D = C / G, L = D * S, NG = N * G;
    const i64 nblk = cdiv(L, NCS_BLOCK);
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
                    const i64 start = b * NCS_BLOCK, len = imin(NCS_BLOCK, L - start);
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
            const i64 start = b * NCS_BLOCK, len = imin(NCS_BLOCK, L - start);
            block_stats(x + gi * L + start, len, &bstat[2 * it], &bstat[2 * it + 1]);
        }
#pragma omp for schedule(static)
        for (i64 gi = g0; gi < g1; gi++) {
            Stat st = {0.0, 0.0, 0.0};
            const float *bs = bstat + 2 * (gi - g0) * nblk;
            for (i64 b = 0; b < nblk; b++)
                chan_merge(&st, (double)imin(NCS_BLOCK, L - b * NCS_BLOCK), bs[2 * b], bs[2 * b + 1]);
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
 * groups per (n, g). Small samples go whole to one thread each (fused), with the same arithmetic. */
static int fwd_nsc(const float *x, float *y, float *mean_out, float *rstd_out, const float *w, const float *bias,
                   const float *scale, const float *shift, const float *res, i64 N, i64 C, i64 S, i64 G, float eps,
                   int act, int nthreads, i64 wave_bytes, int stream) {
    const i64 D = C / G, per_sample = S * C;
    const i64 P = imax(NSC_MIN_PIX, NSC_BLOCK / C); /* pixels per statistics block */
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
#ifdef _OPENMP
            const int t = omp_get_thread_num();
#else
            const int t = 0;
#endif
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

int gn_forward_f32(const float *x, float *y, float *mean, float *rstd, const float *w, const float *bias,
                   const float *scale, const float *shift, const float *res, i64 N, i64 C, i64 S, i64 G,
                   float eps, int act, int channels_last, int nthreads, i64 wave_bytes, i64 stream_bytes) {
    if (N <= 0 || C <= 0 || S <= 0 || G <= 0 || C % G != 0 || nthreads <= 0) return -2;
    /* streaming stores: plain epilogue, output at least stream_bytes (0 = never), and for channels_last whole
     * 64-byte pixels */
    int stream = GN_HAVE_STREAM && stream_bytes > 0 && act == ACT_NONE && res == NULL &&
                 N * C * S * 4 >= stream_bytes;
    if (channels_last) {
        stream = stream && C % 16 == 0 && ((uintptr_t)y & 63) == 0;
        return fwd_nsc(x, y, mean, rstd, w, bias, scale, shift, res, N, C, S, G, eps, act, nthreads, wave_bytes,
                       stream);
    }
    return fwd_ncs(x, y, mean, rstd, w, bias, scale, shift, res, N, C, S, G, eps, act, nthreads, wave_bytes,
                   stream);
}

/* ---------------------------------------------------------------- backward
 *
 * With g = dy * act'(pre) (the gradient at the pre-activation), per (n, c):
 *     S1 = sum_s g,   S2 = sum_s g * (x - mean)      (taken about the mean: no cancellation)
 * and per group, with k_c = weight_c * (1 + scale_c) and M = D * S elements:
 *     D1 = sum_c k_c S1_c,   D2 = rstd * sum_c k_c S2_c
 *     dx = rstd k_c g  - rstd^2 D2 / M (x - mean)  - rstd D1 / M
 *     dshift = S1, dscale = weight rstd S2 + bias S1, dbias = sum_n (1 + scale) S1,
 *     dweight = sum_n (1 + scale) rstd S2, dresidual = g.
 */

static inline float grad_pre(float dy, float x, float m, float a, float b, float r, const int act) {
    if (act == ACT_NONE) return dy;
    return dy * act_grad((x - m) * a + b + r, act);
}

/* The loops below are written once as always-inline functions whose flags (activation, residual present, which
 * outputs are wanted) are compile-time constants at each call site of the dispatchers: a run-time "res ? res[i] :
 * 0" or "if (dx)" inside the loop would stop gcc from vectorizing it. */
#define GN_INLINE static inline __attribute__((always_inline))

#define ACT_SWITCH(CALL)                                                                                         \
    switch (act) {                                                                                               \
    case ACT_RELU: CALL(ACT_RELU); break;                                                                        \
    case ACT_SILU: CALL(ACT_SILU); break;                                                                        \
    case ACT_GELU: CALL(ACT_GELU); break;                                                                        \
    case ACT_GELU_TANH: CALL(ACT_GELU_TANH); break;                                                              \
    default: CALL(ACT_NONE); break;                                                                              \
    }

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
 * loop above, and its scalar remainder made the backward of ResNet stage-4 shapes 2 ns per element. Four
 * accumulators, combined in a fixed order: the same bits for any thread count. */
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

/* the lane totals of 16 vectors as one vector, lane r = total of v[r]: a tree of shuffles and adds that adds lanes
 * (i, i + 8), (i, i + 4), (i, i + 2), (i, i + 1) of each vector, the order of _mm512_reduce_add_ps, in about a
 * quarter of its instructions per vector */
static inline __m512 lane_totals16(const __m512 *v) {
    __m512 h[8], q[4], e[2];
    for (int i = 0; i < 8; i++) /* 256-bit halves: lo = vector 2i, hi = vector 2i + 1 (8 partial lanes each) */
        h[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
    for (int i = 0; i < 4; i++) /* 128-bit quarters: vectors 4i .. 4i + 3 (4 partial lanes each) */
        q[i] = _mm512_add_ps(_mm512_shuffle_f32x4(h[2 * i], h[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(h[2 * i], h[2 * i + 1], 0xDD));
    for (int i = 0; i < 2; i++) /* quarter k: lanes 0-1 vector 8i + k, lanes 2-3 vector 8i + 4 + k */
        e[i] = _mm512_add_ps(_mm512_shuffle_ps(q[2 * i], q[2 * i + 1], 0x44),
                             _mm512_shuffle_ps(q[2 * i], q[2 * i + 1], 0xEE));
    /* quarter k, lane j: vector 4j + k */
    const __m512 t = _mm512_add_ps(_mm512_shuffle_ps(e[0], e[1], 0x88), _mm512_shuffle_ps(e[0], e[1], 0xDD));
    const __m512i order = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
    return _mm512_permutexvar_ps(order, t);
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
static void dx_range(const float *dy, const float *x, const float *res, float *dx, float *dres, i64 i0, i64 i1,
                     i64 S, const float *M, const float *A, const float *B, const float *P, const float *Q,
                     const float *R, int act, int stream) {
#ifdef __AVX512F__
    if (stream) { /* plain epilogue, dx only (see gn_backward_f32) */
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

/* The backward's per-channel sums over a block of pixels (channels_last). Up to PIXEL_ORDER_MAX_C channels the
 * pixels go in address order with the sums in memory (they and the coefficients stay in L1); wider pixels go in
 * chunks of channels with the sums in registers. Chunks re-walk the block's pixels at a stride of C floats, from L2
 * after the first chunk. Address order measured, against chunks, on 1x512x64x64, 2x256x56x56, 1x256x128x128,
 * 1x128x8x64x64 and 4x512x1024: plain 1.15-1.26x, SiLU 1.18-1.64x, GELU 1.34-1.68x, ReLU 1.25-1.34x; with 1024 and
 * 2048 channels 0.96-1.03x, hence the limit. Each channel's sum takes the pixels in the same order either way. */
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

/* block sums of a sample, added in block order, for channels [c0, c1) */
static void fold_sums(const float *part, i64 nblk, i64 C, i64 c0, i64 c1, float *o1, float *o2) {
    for (i64 c = c0; c < c1; c++) o1[c] = 0.0f, o2[c] = 0.0f;
    for (i64 b = 0; b < nblk; b++) {
        const float *s1 = part + 2 * b * C, *s2 = s1 + C;
#pragma omp simd
        for (i64 c = c0; c < c1; c++) o1[c] += s1[c], o2[c] += s2[c];
    }
}

/* Whether the sums pass stores g = dy * act'(pre) (into dresidual when wanted, else into dx) so that the dx pass
 * reads it instead of evaluating act' a second time: with an exp/erf activation the backward is bound by that
 * arithmetic (SiLU 1.2-1.6x, GELU 1.4-2.0x faster this way); ReLU's derivative costs less than the extra store
 * (0.66x in channels_last), so it is recomputed. dx is then p g + q (x - m) + r, the plain epilogue's formula with
 * g for dy, computed by the same loops whichever path runs. */
static int stores_g(int act) { return act == ACT_SILU || act == ACT_GELU || act == ACT_GELU_TANH; }

/* The backward. dweight and dbias are sums over the batch of per-(n, c) terms pw, pb: with pw_out / pb_out the
 * terms are copied there (N x C) for the caller to sum over several calls (see gn_param_grad_sums), instead of
 * being summed into dw / db. */
static int backward_impl(const float *dy, const float *x, const float *mean, const float *rstd, const float *w,
                         const float *bias, const float *scale, const float *shift, const float *res, float *dx,
                         float *dw, float *db, float *dres, float *dscale, float *dshift, i64 N, i64 C, i64 S, i64 G,
                         int act, int channels_last, int nthreads, i64 wave_bytes, i64 stream_bytes, float *pw_out,
                         float *pb_out) {
    if (N <= 0 || C <= 0 || S <= 0 || G <= 0 || C % G != 0 || nthreads <= 0) return -2;
    const i64 D = C / G, NC = N * C;
    /* M A B: forward coefficients; S1 S2: sums; P Q R: dx coefficients; pw pb: per-(n, c) dweight/dbias */
    float *buf = scratch(0, sizeof(float) * 10 * NC);
    if (!buf) return -1;
    float *M = buf, *A = buf + NC, *B = buf + 2 * NC, *S1 = buf + 3 * NC, *S2 = buf + 4 * NC;
    float *P = buf + 5 * NC, *Q = buf + 6 * NC, *R = buf + 7 * NC, *pw = buf + 8 * NC, *pb = buf + 9 * NC;
    all_coefs(N, C, G, mean, rstd, w, bias, scale, shift, M, A, B, N * C >= 4096 ? nthreads : 1);
    /* pre-activation needs the residual only when there is an activation */
    const float *rres = act == ACT_NONE ? NULL : res;
    const int want_dx = dx != NULL || dres != NULL;
    /* streaming stores for dx as in the forward: plain epilogue, dx only, large outputs (channels_last: whole,
     * aligned 64-byte vectors) */
    const int stream = GN_HAVE_STREAM && stream_bytes > 0 && act == ACT_NONE && dx && !dres &&
                       N * C * S * 4 >= stream_bytes && (!channels_last || (C % 16 == 0 && ((uintptr_t)dx & 63) == 0));
    int fail = 0;
    float *gbuf = stores_g(act) && want_dx ? (dres ? dres : dx) : NULL;
    /* the dx pass: from g where it was stored (nothing left to do when only dresidual is wanted) */
    const float *dx_src = gbuf ? gbuf : dy;
    const int dx_act = gbuf ? ACT_NONE : act, need_dx_pass = want_dx && !(gbuf && !dx);
    float *dx_res_out = gbuf ? NULL : dres;

    if (!channels_last && fused_ok(N * G, D * S * 8, nthreads, wave_bytes)) {
        /* runs of consecutive groups by one thread while dy and x sit in L2 (see the forward); the same calls
         * as the split path below */
        const i64 NG = N * G, per_run = imax(1, imin(cdiv(NG, 2 * (i64)nthreads), RUN_BYTES / (D * S * 8)));
        const SavedSchedule saved = set_run_schedule(act);
#pragma omp parallel for schedule(runtime) num_threads(nthreads)
        for (i64 run = 0; run < cdiv(NG, per_run); run++) {
            const i64 g_begin = run * per_run, g_end = imin(NG, g_begin + per_run);
            rows_sums(dy, x, rres, S, g_begin * D, g_end * D, M, A, B, act, S1, S2, gbuf);
            for (i64 ng = g_begin; ng < g_end; ng++)
                group_grads(ng / G, ng % G, C, D, S, rstd[ng], w, bias, scale, S1, S2, P, Q, R, dscale, dshift,
                            dw || pw_out ? pw : NULL, db || pb_out ? pb : NULL);
            if (need_dx_pass)
                dx_range(dx_src, x, gbuf ? NULL : rres, dx, dx_res_out, g_begin * D * S, g_end * D * S, S, M, A, B,
                         P, Q, R, dx_act, stream);
        }
        restore_schedule(saved);
    } else if (!channels_last) {
        const i64 L = D * S; /* a group is D contiguous rows of S */
        const i64 rows_per_wave = imax(1, imin(NC, wave_bytes / (S * 8))) ; /* dy and x */
        /* waves on group boundaries so a wave's coefficients are complete */
        const i64 wave_groups = imax(1, rows_per_wave / D);
        (void)L;
#pragma omp parallel num_threads(nthreads)
        for (i64 g0 = 0; g0 < N * G; g0 += wave_groups) {
            const i64 g1 = imin(N * G, g0 + wave_groups);
            /* rows in batches of 16 (see rows_sums_plain) */
            const i64 row0 = g0 * D, nbatch = cdiv((g1 - g0) * D, 16);
#pragma omp for schedule(static)
            for (i64 bt = 0; bt < nbatch; bt++)
                rows_sums(dy, x, rres, S, row0 + 16 * bt, imin(g1 * D, row0 + 16 * (bt + 1)), M, A, B, act, S1, S2,
                          gbuf);
#pragma omp for schedule(static)
            for (i64 ng = g0; ng < g1; ng++)
                group_grads(ng / G, ng % G, C, D, S, rstd[ng], w, bias, scale, S1, S2, P, Q, R, dscale, dshift,
                            dw || pw_out ? pw : NULL, db || pb_out ? pb : NULL);
            if (need_dx_pass) {
                const i64 base = g0 * D * S, total = (g1 - g0) * D * S, npieces = cdiv(total, APPLY_PIECE);
#pragma omp for schedule(static)
                for (i64 pc = 0; pc < npieces; pc++) {
                    const i64 i = base + pc * APPLY_PIECE;
                    dx_range(dx_src, x, gbuf ? NULL : rres, dx, dx_res_out, i, imin(base + total, i + APPLY_PIECE),
                             S, M, A, B, P, Q, R, dx_act, stream);
                }
            }
        }
    } else {
        const i64 per_sample = S * C;
        const i64 Pp = imax(NSC_MIN_PIX, NSC_BLOCK / C);
        const i64 nblk = cdiv(S, Pp);
        const int fused = fused_ok(N, per_sample * 8, nthreads, wave_bytes);
        const i64 wave = imax(1, imin(N, wave_bytes / (per_sample * 8)));
        float *part = scratch(1, sizeof(float) * 2 * (fused ? nthreads : wave) * nblk * C);
        if (!part) return -1;
        if (fused) {
            /* each sample by one thread while dy and x sit in L2; the same calls as the split path below */
#pragma omp parallel num_threads(nthreads)
            {
#ifdef _OPENMP
                float *mypart = part + 2 * (i64)omp_get_thread_num() * nblk * C;
#else
                float *mypart = part;
#endif
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
                        group_grads(n, g, C, D, S, rstd[n * G + g], w, bias, scale, S1, S2, P, Q, R, dscale, dshift,
                                    dw || pw_out ? pw : NULL, db || pb_out ? pb : NULL);
                    if (need_dx_pass)
                        dx_pixels(dx_src + base, x + base, !gbuf && rres ? rres + base : NULL, dx ? dx + base : NULL,
                                  dx_res_out ? dx_res_out + base : NULL, S, C, M + n * C, A + n * C, B + n * C,
                                  P + n * C, Q + n * C, R + n * C, dx_act, stream);
                }
            }
            goto param_grads;
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
                pixel_sums(dy + off, x + off, rres ? rres + off : NULL, np, C, M + n * C, A + n * C, B + n * C,
                           act, s1, s2, gbuf ? gbuf + off : NULL);
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
                group_grads(ng / G, ng % G, C, D, S, rstd[ng], w, bias, scale, S1, S2, P, Q, R, dscale, dshift,
                            dw || pw_out ? pw : NULL, db || pb_out ? pb : NULL);
            if (need_dx_pass) {
                const i64 pix_per_piece = imax(1, APPLY_PIECE / C);
                const i64 pps = cdiv(S, pix_per_piece), npieces = (n1 - n0) * pps;
#pragma omp for schedule(static)
                for (i64 pc = 0; pc < npieces; pc++) {
                    const i64 n = n0 + pc / pps, p0 = (pc % pps) * pix_per_piece;
                    const i64 np = imin(pix_per_piece, S - p0), off = n * per_sample + p0 * C;
                    dx_pixels(dx_src + off, x + off, !gbuf && rres ? rres + off : NULL, dx ? dx + off : NULL,
                              dx_res_out ? dx_res_out + off : NULL, np, C, M + n * C, A + n * C, B + n * C,
                              P + n * C, Q + n * C, R + n * C, dx_act, stream);
                }
            }
        }
    }
param_grads:
    if (pw_out) memcpy(pw_out, pw, sizeof(float) * NC);
    if (pb_out) memcpy(pb_out, pb, sizeof(float) * NC);
    gn_param_grad_sums(pw, pb, N, C, dw, db, nthreads);
    return fail;
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

int gn_backward_f32(const float *dy, const float *x, const float *mean, const float *rstd, const float *w,
                    const float *bias, const float *scale, const float *shift, const float *res, float *dx,
                    float *dw, float *db, float *dres, float *dscale, float *dshift, i64 N, i64 C, i64 S, i64 G,
                    int act, int channels_last, int nthreads, i64 wave_bytes, i64 stream_bytes) {
    return backward_impl(dy, x, mean, rstd, w, bias, scale, shift, res, dx, dw, db, dres, dscale, dshift, N, C, S,
                         G, act, channels_last, nthreads, wave_bytes, stream_bytes, NULL, NULL);
}

int gn_backward_f32_partial(const float *dy, const float *x, const float *mean, const float *rstd, const float *w,
                            const float *bias, const float *scale, const float *shift, const float *res, float *dx,
                            float *dres, float *dscale, float *dshift, i64 N, i64 C, i64 S, i64 G, int act,
                            int channels_last, int nthreads, i64 wave_bytes, float *pw_out, float *pb_out) {
    return backward_impl(dy, x, mean, rstd, w, bias, scale, shift, res, dx, NULL, NULL, dres, dscale, dshift, N, C,
                         S, G, act, channels_last, nthreads, wave_bytes, 0, pw_out, pb_out);
}

/* ---------------------------------------------------------------- for groupnorm_half.c (hidden) */

GN_INTERNAL void gni_block_stats(const float *x, i64 len, float *mean_out, float *m2_out) {
    block_stats(x, len, mean_out, m2_out);
}
GN_INTERNAL float gni_rstd_of(const Stat *st, float eps) { return rstd_of(st, eps); }
GN_INTERNAL void gni_channel_coefs(i64 n, i64 g, i64 C, i64 D, float mean, float rstd, const float *w,
                                   const float *bias, const float *scale, const float *shift, float *M, float *A,
                                   float *B) {
    channel_coefs(n, g, C, D, mean, rstd, w, bias, scale, shift, M, A, B);
}
GN_INTERNAL void gni_pixel_block_stats(const float *xb, i64 np, i64 C, float *cm, float *cq) {
    pixel_block_stats(xb, np, C, cm, cq);
}
GN_INTERNAL void gni_fold_channels(const float *part, i64 nblk, i64 P, i64 S, i64 C, i64 c0, i64 c1, double *cmean,
                                   double *cm2) {
    fold_channels(part, nblk, P, S, C, c0, c1, cmean, cm2);
}
GN_INTERNAL void gni_group_from_channels(const double *cmean, const double *cm2, i64 n, i64 g, i64 C, i64 D, i64 S,
                                         float eps, float *mean_out, float *rstd_out, const float *w,
                                         const float *bias, const float *scale, const float *shift, float *M,
                                         float *A, float *B) {
    group_from_channels(cmean, cm2, n, g, C, D, S, eps, mean_out, rstd_out, w, bias, scale, shift, M, A, B);
}
GN_INTERNAL void gni_apply_range(const float *x, const float *res, float *y, i64 i0, i64 i1, i64 S, const float *M,
                                 const float *A, const float *B, int act) {
    apply_range(x, res, y, i0, i1, S, M, A, B, act, 0);
}
GN_INTERNAL void gni_apply_pixels(const float *x, const float *res, float *y, i64 npix, i64 C, const float *m,
                                  const float *a, const float *b, int act) {
    apply_pixels(x, res, y, npix, C, m, a, b, act);
}
GN_INTERNAL void gni_all_coefs(i64 N, i64 C, i64 G, const float *mean, const float *rstd, const float *w,
                               const float *bias, const float *scale, const float *shift, float *M, float *A,
                               float *B, int nthreads) {
    all_coefs(N, C, G, mean, rstd, w, bias, scale, shift, M, A, B, nthreads);
}
GN_INTERNAL void gni_rows_sums(const float *dy, const float *x, const float *res, i64 S, i64 r0, i64 r1,
                               const float *M, const float *A, const float *B, int act, float *S1, float *S2,
                               float *gbuf) {
    rows_sums(dy, x, res, S, r0, r1, M, A, B, act, S1, S2, gbuf);
}
GN_INTERNAL void gni_group_grads(i64 n, i64 g, i64 C, i64 D, i64 S, float rstd, const float *w, const float *bias,
                                 const float *scale, const float *S1, const float *S2, float *P, float *Q, float *R,
                                 float *dscale, float *dshift, float *pw, float *pb) {
    group_grads(n, g, C, D, S, rstd, w, bias, scale, S1, S2, P, Q, R, dscale, dshift, pw, pb);
}
GN_INTERNAL void gni_dx_range(const float *dy, const float *x, const float *res, float *dx, float *dres, i64 i0,
                              i64 i1, i64 S, const float *M, const float *A, const float *B, const float *P,
                              const float *Q, const float *R, int act) {
    dx_range(dy, x, res, dx, dres, i0, i1, S, M, A, B, P, Q, R, act, 0);
}
GN_INTERNAL int gni_stores_g(int act) { return stores_g(act); }
