/* The epilogue's activations: their codes (the ACT_* enum, which groupnorm.activations.TABLE must match), exp and
 * erf written out so that loops over them vectorize, each activation and its derivative, and ACT_SWITCH, which
 * turns a run-time code into a compile-time one for the always-inline loops.
 *
 * Compiled without -ffast-math on purpose: linking with it would turn on flush-to-zero for the whole process.
 * exp and erf are therefore written out below (glibc's vector expf needs finite-math), and they pass NaN/inf
 * through. */
#ifndef GN_ACTIVATIONS_H
#define GN_ACTIVATIONS_H

#include <math.h>
#include <stdint.h>

enum { ACT_NONE = 0, ACT_RELU = 1, ACT_SILU = 2, ACT_GELU = 3, ACT_GELU_TANH = 4 };

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

/* the gradient at the pre-activation, g = dy * act'(pre), pre = (x - m) a + b + r */
static inline float grad_pre(float dy, float x, float m, float a, float b, float r, const int act) {
    if (act == ACT_NONE) return dy;
    return dy * act_grad((x - m) * a + b + r, act);
}

/* CALL(the activation code as a constant) for the run-time code act */
#define ACT_SWITCH(CALL)                                                                                         \
    switch (act) {                                                                                               \
    case ACT_RELU: CALL(ACT_RELU); break;                                                                        \
    case ACT_SILU: CALL(ACT_SILU); break;                                                                        \
    case ACT_GELU: CALL(ACT_GELU); break;                                                                        \
    case ACT_GELU_TANH: CALL(ACT_GELU_TANH); break;                                                              \
    default: CALL(ACT_NONE); break;                                                                              \
    }

#endif
