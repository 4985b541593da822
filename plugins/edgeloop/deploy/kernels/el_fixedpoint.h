/* edgeloop portable kernels: fixed-point helpers (C++11, no allocation).
 *
 * Integer arithmetic follows the published TensorFlow Lite quantization
 * specification (gemmlowp-style rounding doubling high multiply, rounding
 * divide by power of two, double-rounding quantized multipliers) so results
 * are bit-exact with the TensorFlow Lite Micro reference kernels.
 * Written for edgeloop; Apache-2.0.
 */
#ifndef EL_FIXEDPOINT_H
#define EL_FIXEDPOINT_H

#include <stdint.h>

namespace el {

static inline int32_t wrap_add(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) + static_cast<uint32_t>(b));
}

static inline int32_t wrap_sub(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) - static_cast<uint32_t>(b));
}

static inline int32_t shl(int32_t x, int s) {
  return static_cast<int32_t>(static_cast<uint32_t>(x) << s);
}

/* round(a * b / 2^31), saturating the single overflow case. */
static inline int32_t srdhm(int32_t a, int32_t b) {
  const bool overflow = (a == b) && (a == INT32_MIN);
  const int64_t ab = static_cast<int64_t>(a) * static_cast<int64_t>(b);
  const int32_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
  const int32_t high = static_cast<int32_t>((ab + nudge) / (1ll << 31));
  return overflow ? INT32_MAX : high;
}

/* Rounding arithmetic right shift (round half away from zero). */
static inline int32_t rdbpot(int32_t x, int exponent) {
  const int32_t mask = static_cast<int32_t>((1ll << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* Saturating left shift by a positive power of two. */
static inline int32_t sat_shl(int32_t x, int exponent) {
  if (exponent == 0) return x;
  const int32_t threshold = (1 << (31 - exponent)) - 1;
  if (x > threshold) return INT32_MAX;
  if (x < -threshold) return INT32_MIN;
  return shl(x, exponent);
}

/* Multiply by multiplier * 2^shift (double rounding, the TFLM default). */
static inline int32_t mbqm(int32_t x, int32_t multiplier, int shift) {
  const int left = shift > 0 ? shift : 0;
  const int right = shift > 0 ? 0 : -shift;
  return rdbpot(srdhm(shl(x, left), multiplier), right);
}

static inline int32_t rounding_half_sum(int32_t a, int32_t b) {
  const int64_t sum = static_cast<int64_t>(a) + static_cast<int64_t>(b);
  const int64_t sign = sum >= 0 ? 1 : -1;
  return static_cast<int32_t>((sum + sign) / 2);
}

/* exp(x) for x in [-1/4, 0), Q0.31 in and out. */
static inline int32_t exp_quarter(int32_t a) {
  const int32_t constant_term = 1895147668;    /* exp(-1/8) */
  const int32_t constant_1_over_3 = 715827883; /* 1/3 */
  const int32_t x = wrap_add(a, 1 << 28);
  const int32_t x2 = srdhm(x, x);
  const int32_t x3 = srdhm(x2, x);
  const int32_t x4 = srdhm(x2, x2);
  const int32_t x4_over_4 = rdbpot(x4, 2);
  const int32_t poly =
      rdbpot(wrap_add(srdhm(wrap_add(x4_over_4, x3), constant_1_over_3), x2), 1);
  return wrap_add(constant_term, srdhm(constant_term, wrap_add(x, poly)));
}

/* exp(a) for a <= 0, a in Q(integer_bits).(31-integer_bits); result Q0.31. */
static inline int32_t exp_on_negative_values(int32_t a, int integer_bits) {
  const int fractional_bits = 31 - integer_bits;
  const int32_t one_quarter = 1 << (fractional_bits - 2);
  const int32_t mask = one_quarter - 1;
  const int32_t a_mod_quarter_minus_one_quarter = wrap_sub(a & mask, one_quarter);
  int32_t result = exp_quarter(sat_shl(a_mod_quarter_minus_one_quarter, integer_bits));
  const int32_t remainder = wrap_sub(a_mod_quarter_minus_one_quarter, a);
  static const int32_t kMultipliers[7] = {1672461947, 1302514674, 790015084, 290630308,
                                          39332535,   720401,     242};
  for (int i = 0; i < 7; ++i) {
    const int exponent = i - 2;
    if (integer_bits > exponent) {
      const int shift_amount = fractional_bits + exponent;
      if (remainder & (1 << shift_amount)) result = srdhm(result, kMultipliers[i]);
    }
  }
  if (integer_bits > 5) {
    const int32_t clamp = -(1 << (36 - integer_bits));
    if (a < clamp) result = 0;
  }
  if (a == 0) result = INT32_MAX;
  return result;
}

/* 1 / (1 + x) for x in [0, 1), Q0.31 in and out (Newton-Raphson). */
static inline int32_t one_over_one_plus_x(int32_t a) {
  const int32_t half_denominator = rounding_half_sum(a, INT32_MAX);
  const int32_t constant_48_over_17 = 1515870810;
  const int32_t constant_neg_32_over_17 = -1010580540;
  int32_t x = wrap_add(constant_48_over_17, srdhm(half_denominator, constant_neg_32_over_17));
  for (int i = 0; i < 3; ++i) {
    const int32_t half_denominator_times_x = srdhm(half_denominator, x);
    const int32_t one_minus = wrap_sub(1 << 29, half_denominator_times_x); /* F2 one */
    x = wrap_add(x, sat_shl(srdhm(x, one_minus), 2));
  }
  return sat_shl(x, 1);
}

/* logistic(a), a in Q(integer_bits), result Q0.31. */
static inline int32_t fixed_logistic(int32_t a, int integer_bits) {
  if (a == 0) return 1 << 30;
  const bool positive = a > 0;
  const int32_t abs_a = positive ? a : -a;
  const int32_t result_if_positive =
      one_over_one_plus_x(exp_on_negative_values(-abs_a, integer_bits));
  return positive ? result_if_positive : wrap_sub(INT32_MAX, result_if_positive);
}

static inline int count_leading_zeros(uint32_t x) {
  if (x == 0) return 32;
  int n = 0;
  while ((x & 0x80000000u) == 0) {
    x <<= 1;
    ++n;
  }
  return n;
}

static inline int32_t clamp32(int32_t v, int32_t lo, int32_t hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

static inline float clampf(float v, float lo, float hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

}  // namespace el

#endif  // EL_FIXEDPOINT_H
