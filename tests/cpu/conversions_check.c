/* Exhaustive check of half_conversions.h, built and run by test_half_precision.py:
 * - every binary16 value widened, and every float32 bit pattern narrowed, against the CPU's own F16C conversions
 *   (round to nearest even, subnormals, overflow; NaN only has to stay NaN);
 * - the AVX-512 vector conversions against the scalar ones, for both 2-byte types, on random bit patterns.
 * Prints the number of mismatches and exits non-zero when there is any. */
#include <stdio.h>

#include "half_conversions.h"

#ifdef __F16C__
#include <immintrin.h>
#endif

static long mismatch(long bad, const char *what, uint32_t input, uint32_t got, uint32_t want) {
    if (bad < 10) printf("%s %08x: got %08x, want %08x\n", what, input, got, want);
    return bad + 1;
}

int main(void) {
    long bad = 0;
#ifdef __F16C__
    for (uint32_t h = 0; h < 65536; h++) {
        const float a = f16_to_f32((uint16_t)h), b = _cvtsh_ss((unsigned short)h);
        uint32_t ua, ub;
        memcpy(&ua, &a, 4), memcpy(&ub, &b, 4);
        if (ua != ub && !(isnan(a) && isnan(b))) bad = mismatch(bad, "widen", h, ua, ub);
    }
    uint32_t u = 0;
    do {
        float f;
        memcpy(&f, &u, 4);
        const uint16_t a = f32_to_f16(f), b = (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
        const int a_nan = (a & 0x7C00) == 0x7C00 && (a & 0x3FF);
        if (a != b && !(isnan(f) && a_nan)) bad = mismatch(bad, "narrow", u, a, b);
    } while (++u != 0);
#else
    printf("no F16C: exhaustive comparison skipped\n");
#endif
#ifdef __AVX512F__
    uint32_t x = 12345;
    for (int it = 0; it < 200000; it++) {
        float v[16], w[16];
        uint16_t vec[16];
        for (int k = 0; k < 16; k++) x = x * 1664525u + 1013904223u, memcpy(&v[k], &x, 4);
        for (int dt = DT_FLOAT16; dt <= DT_BFLOAT16; dt++) {
            store16_f32(vec, _mm512_loadu_ps(v), dt);
            _mm512_storeu_ps(w, load16_f32(vec, dt));
            for (int k = 0; k < 16; k++) {
                const uint16_t s = dt == DT_FLOAT16 ? f32_to_f16(v[k]) : f32_to_bf16(v[k]);
                const float back = dt == DT_FLOAT16 ? f16_to_f32(vec[k]) : bf16_to_f32(vec[k]);
                uint32_t in, got, want;
                memcpy(&in, &v[k], 4), memcpy(&got, &w[k], 4), memcpy(&want, &back, 4);
                if (vec[k] != s && !isnan(v[k])) bad = mismatch(bad, "vector narrow", in, vec[k], s);
                if (got != want && !isnan(back)) bad = mismatch(bad, "vector widen", vec[k], got, want);
            }
        }
    }
#endif
    printf("mismatches: %ld\n", bad);
    return bad != 0;
}
