/* edgeloop portable kernels (C++11, no allocation, no exceptions).
 *
 * One function per operator and data type. Tensors are NHWC, batch first.
 * Quantized kernels follow the TensorFlow Lite quantization specification
 * (int8 activations with zero points, symmetric int8 weights, per-channel
 * where the converter made them, int32 biases) with the same integer
 * arithmetic as the reference kernels, so they are bit-exact with
 * TensorFlow Lite Micro. Written for edgeloop; Apache-2.0.
 */
#ifndef EL_KERNELS_H
#define EL_KERNELS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "el_fixedpoint.h"

namespace el {

struct ConvParams {
  int batches, in_h, in_w, in_c;
  int out_h, out_w, out_c;
  int filter_h, filter_w, filter_in_c;
  int stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;
  int depth_multiplier;
  int32_t in_offset, out_offset, act_min, act_max;
  float fact_min, fact_max;
};

struct PoolParams {
  int batches, in_h, in_w, channels;
  int out_h, out_w;
  int filter_h, filter_w, stride_h, stride_w, pad_h, pad_w;
  int32_t act_min, act_max;
  float fact_min, fact_max;
};

struct FcParams {
  int batches, in_depth, out_depth;
  int per_channel;
  int32_t in_offset, filter_offset, out_offset, act_min, act_max;
  float fact_min, fact_max;
};

struct AddParams {
  /* Output extents (4-D, leading ones added) and element strides of each
     input, 0 along broadcast dimensions. */
  int dims[4];
  int stride1[4];
  int stride2[4];
  int32_t in1_offset, in2_offset, out_offset;
  int left_shift;
  int32_t in1_multiplier, in2_multiplier, out_multiplier;
  int in1_shift, in2_shift, out_shift;
  int32_t act_min, act_max;
  float fact_min, fact_max;
};

struct MeanParams {
  int in_dims[4];  /* 4-D input extents, leading ones added */
  int reduce[4];   /* 1 where the axis is reduced */
  int count;       /* number of elements reduced into each output */
  int same_quant;  /* input and output share scale and zero point */
  int32_t in_zp, out_zp, multiplier;
  int shift;
};

/* Filter taps [*lo, *hi) whose input coordinate origin + dil * tap is inside [0, size). */
static inline void valid_taps(int origin, int dil, int taps, int size, int* lo, int* hi) {
  int a = 0;
  while (a < taps && origin + dil * a < 0) ++a;
  int b = taps;
  while (b > a && origin + dil * (b - 1) >= size) --b;
  *lo = a;
  *hi = b;
}

/* ------------------------------------------------------ shared loop nests
 *
 * Convolution, depthwise convolution, pooling and fully connected each have
 * one loop nest for both data types. A policy supplies the arithmetic:
 *   input(x), weight(w)  the factors of each product accumulated as
 *                        acc += weight(w) * input(x)
 *   output(acc, bias, oc, q)  bias, rescaling and activation clamp.
 * The nests visit output pixels in (batch, y, x) order and write ascending
 * addresses: codegen.py's overlap_delta() relies on this read/write order.
 * (The pixel loops are written out in each nest rather than shared through a
 * lambda: g++ -O2 does not inline a lambda that large, which cost 10-60% more
 * instructions.) */

/* int8: int32 accumulation of w * (x + in_offset); then bias, requantization
   by multiplier[q] / shift[q], output zero point and clamp. Offsets and
   bounds are read from the kernel's parameters (ConvParams or FcParams). */
template <class Params>
struct S8Policy {
  typedef int8_t Data;
  typedef int32_t Acc;
  typedef int32_t Bias;
  const Params& p;
  const int32_t* multiplier;
  const int32_t* shift;
  S8Policy(const Params& params, const int32_t* mult, const int32_t* sh)
      : p(params), multiplier(mult), shift(sh) {}
  Acc input(int8_t x) const { return static_cast<int32_t>(x) + p.in_offset; }
  Acc weight(int8_t w) const { return static_cast<int32_t>(w); }
  int8_t output(Acc acc, const int32_t* bias, int oc, int q) const {
    if (bias) acc += bias[oc];
    acc = mbqm(acc, multiplier[q], shift[q]) + p.out_offset;
    return static_cast<int8_t>(clamp32(acc, p.act_min, p.act_max));
  }
};

/* int8 fully connected: (w + filter_offset) * (x + in_offset). */
struct S8FcPolicy : S8Policy<FcParams> {
  S8FcPolicy(const FcParams& params, const int32_t* mult, const int32_t* sh)
      : S8Policy<FcParams>(params, mult, sh) {}
  Acc weight(int8_t w) const { return static_cast<int32_t>(w) + p.filter_offset; }
};

/* float32: float accumulation of w * x; then bias and activation clamp. */
template <class Params>
struct F32Policy {
  typedef float Data;
  typedef float Acc;
  typedef float Bias;
  const Params& p;
  explicit F32Policy(const Params& params) : p(params) {}
  Acc input(float x) const { return x; }
  Acc weight(float w) const { return w; }
  float output(Acc acc, const float* bias, int oc, int /* q */) const {
    if (bias) acc += bias[oc];
    return clampf(acc, p.fact_min, p.fact_max);
  }
};

template <class P>
static inline void fully_connected(const FcParams& p, const P& pol,
                                   const typename P::Data* input,
                                   const typename P::Data* filter,
                                   const typename P::Bias* bias, typename P::Data* output) {
  for (int b = 0; b < p.batches; ++b) {
    const typename P::Data* in = input + b * p.in_depth;
    for (int oc = 0; oc < p.out_depth; ++oc) {
      const typename P::Data* w = filter + oc * p.in_depth;
      typename P::Acc acc = 0;
      for (int d = 0; d < p.in_depth; ++d) acc += pol.weight(w[d]) * pol.input(in[d]);
      output[b * p.out_depth + oc] = pol.output(acc, bias, oc, p.per_channel ? oc : 0);
    }
  }
}

/* Convolution with OHWI weights (filter[oc][fy][fx][ic]), any groups. */
template <class P>
static inline void conv(const ConvParams& p, const P& pol, const typename P::Data* input,
                        const typename P::Data* filter, const typename P::Bias* bias,
                        typename P::Data* output) {
  typedef typename P::Data T;
  const int groups = p.in_c / p.filter_in_c;
  const int filters_per_group = p.out_c / groups;
  for (int b = 0; b < p.batches; ++b) {
    for (int oy = 0; oy < p.out_h; ++oy) {
      const int in_y0 = oy * p.stride_h - p.pad_h;
      int fy0, fy1;
      valid_taps(in_y0, p.dil_h, p.filter_h, p.in_h, &fy0, &fy1);
      for (int ox = 0; ox < p.out_w; ++ox) {
        const int in_x0 = ox * p.stride_w - p.pad_w;
        int fx0, fx1;
        valid_taps(in_x0, p.dil_w, p.filter_w, p.in_w, &fx0, &fx1);
        T* out = output + ((b * p.out_h + oy) * p.out_w + ox) * p.out_c;
        for (int oc = 0; oc < p.out_c; ++oc) {
          const int group = groups == 1 ? 0 : oc / filters_per_group;
          typename P::Acc acc = 0;
          for (int fy = fy0; fy < fy1; ++fy) {
            const int iy = in_y0 + p.dil_h * fy;
            for (int fx = fx0; fx < fx1; ++fx) {
              const int ix = in_x0 + p.dil_w * fx;
              const T* in =
                  input + ((b * p.in_h + iy) * p.in_w + ix) * p.in_c + group * p.filter_in_c;
              const T* w = filter + ((oc * p.filter_h + fy) * p.filter_w + fx) * p.filter_in_c;
              for (int ic = 0; ic < p.filter_in_c; ++ic) {
                acc += pol.weight(w[ic]) * pol.input(in[ic]);
              }
            }
          }
          out[oc] = pol.output(acc, bias, oc, oc);
        }
      }
    }
  }
}

/* Depthwise convolution, any depth multiplier (filter[fy][fx][oc]). */
template <class P>
static inline void depthwise_conv(const ConvParams& p, const P& pol,
                                  const typename P::Data* input, const typename P::Data* filter,
                                  const typename P::Bias* bias, typename P::Data* output) {
  typedef typename P::Data T;
  for (int b = 0; b < p.batches; ++b) {
    for (int oy = 0; oy < p.out_h; ++oy) {
      const int in_y0 = oy * p.stride_h - p.pad_h;
      int fy0, fy1;
      valid_taps(in_y0, p.dil_h, p.filter_h, p.in_h, &fy0, &fy1);
      for (int ox = 0; ox < p.out_w; ++ox) {
        const int in_x0 = ox * p.stride_w - p.pad_w;
        int fx0, fx1;
        valid_taps(in_x0, p.dil_w, p.filter_w, p.in_w, &fx0, &fx1);
        T* out = output + ((b * p.out_h + oy) * p.out_w + ox) * p.out_c;
        for (int ic = 0; ic < p.in_c; ++ic) {
          for (int m = 0; m < p.depth_multiplier; ++m) {
            const int oc = m + ic * p.depth_multiplier;
            typename P::Acc acc = 0;
            for (int fy = fy0; fy < fy1; ++fy) {
              const int iy = in_y0 + p.dil_h * fy;
              const T* in_row = input + ((b * p.in_h + iy) * p.in_w) * p.in_c + ic;
              const T* w_row = filter + fy * p.filter_w * p.out_c + oc;
              for (int fx = fx0; fx < fx1; ++fx) {
                const int ix = in_x0 + p.dil_w * fx;
                acc += pol.weight(w_row[fx * p.out_c]) * pol.input(in_row[ix * p.in_c]);
              }
            }
            out[oc] = pol.output(acc, bias, oc, oc);
          }
        }
      }
    }
  }
}

/* Convolution with HWIO weights (filter[fy][fx][ic][oc]), groups == 1: output
   channels are accumulated in blocks of kBlock in a small stack array so the
   innermost loop runs over contiguous output channels (vectorizable). */
static const int kBlock = 32;

template <class P>
static inline void conv_hwio(const ConvParams& p, const P& pol, const typename P::Data* input,
                             const typename P::Data* filter, const typename P::Bias* bias,
                             typename P::Data* output) {
  typedef typename P::Data T;
  typedef typename P::Acc Acc;
  for (int b = 0; b < p.batches; ++b) {
    for (int oy = 0; oy < p.out_h; ++oy) {
      const int in_y0 = oy * p.stride_h - p.pad_h;
      int fy0, fy1;
      valid_taps(in_y0, p.dil_h, p.filter_h, p.in_h, &fy0, &fy1);
      for (int ox = 0; ox < p.out_w; ++ox) {
        const int in_x0 = ox * p.stride_w - p.pad_w;
        int fx0, fx1;
        valid_taps(in_x0, p.dil_w, p.filter_w, p.in_w, &fx0, &fx1);
        T* out = output + ((b * p.out_h + oy) * p.out_w + ox) * p.out_c;
        for (int oc0 = 0; oc0 < p.out_c; oc0 += kBlock) {
          const int n = p.out_c - oc0 < kBlock ? p.out_c - oc0 : kBlock;
          Acc acc[kBlock];
          for (int j = 0; j < n; ++j) acc[j] = 0;
          for (int fy = fy0; fy < fy1; ++fy) {
            const int iy = in_y0 + p.dil_h * fy;
            for (int fx = fx0; fx < fx1; ++fx) {
              const int ix = in_x0 + p.dil_w * fx;
              const T* in = input + ((b * p.in_h + iy) * p.in_w + ix) * p.in_c;
              const T* w = filter + ((fy * p.filter_w + fx) * p.in_c) * p.out_c + oc0;
              for (int ic = 0; ic < p.in_c; ++ic) {
                const Acc x = pol.input(in[ic]);
                const T* wr = w + ic * p.out_c;
                for (int j = 0; j < n; ++j) acc[j] += pol.weight(wr[j]) * x;
              }
            }
          }
          for (int j = 0; j < n; ++j) out[oc0 + j] = pol.output(acc[j], bias, oc0 + j, oc0 + j);
        }
      }
    }
  }
}

/* Depthwise convolution with depth multiplier 1 (filter[fy][fx][c]), in
   blocks of kBlock channels. */
template <class P>
static inline void depthwise_conv_m1(const ConvParams& p, const P& pol,
                                     const typename P::Data* input,
                                     const typename P::Data* filter,
                                     const typename P::Bias* bias, typename P::Data* output) {
  typedef typename P::Data T;
  typedef typename P::Acc Acc;
  for (int b = 0; b < p.batches; ++b) {
    for (int oy = 0; oy < p.out_h; ++oy) {
      const int in_y0 = oy * p.stride_h - p.pad_h;
      int fy0, fy1;
      valid_taps(in_y0, p.dil_h, p.filter_h, p.in_h, &fy0, &fy1);
      for (int ox = 0; ox < p.out_w; ++ox) {
        const int in_x0 = ox * p.stride_w - p.pad_w;
        int fx0, fx1;
        valid_taps(in_x0, p.dil_w, p.filter_w, p.in_w, &fx0, &fx1);
        T* out = output + ((b * p.out_h + oy) * p.out_w + ox) * p.out_c;
        for (int c0 = 0; c0 < p.out_c; c0 += kBlock) {
          const int n = p.out_c - c0 < kBlock ? p.out_c - c0 : kBlock;
          Acc acc[kBlock];
          for (int j = 0; j < n; ++j) acc[j] = 0;
          for (int fy = fy0; fy < fy1; ++fy) {
            const int iy = in_y0 + p.dil_h * fy;
            for (int fx = fx0; fx < fx1; ++fx) {
              const int ix = in_x0 + p.dil_w * fx;
              const T* in = input + ((b * p.in_h + iy) * p.in_w + ix) * p.in_c + c0;
              const T* w = filter + (fy * p.filter_w + fx) * p.out_c + c0;
              for (int j = 0; j < n; ++j) acc[j] += pol.weight(w[j]) * pol.input(in[j]);
            }
          }
          for (int j = 0; j < n; ++j) out[c0 + j] = pol.output(acc[j], bias, c0 + j, c0 + j);
        }
      }
    }
  }
}

/* Pooling operations: init(), step(acc, v) per window element, output(p,
   acc, count) with count the number of valid window elements. */
struct MaxPoolS8 {
  typedef int8_t Data;
  typedef int32_t Acc;
  static Acc init() { return -128; }
  static void step(Acc& acc, Acc v) {
    if (v > acc) acc = v;
  }
  static int8_t output(const PoolParams& p, Acc acc, int /* count */) {
    return static_cast<int8_t>(clamp32(acc, p.act_min, p.act_max));
  }
};

struct AveragePoolS8 {
  typedef int8_t Data;
  typedef int32_t Acc;
  static Acc init() { return 0; }
  static void step(Acc& acc, Acc v) { acc += v; }
  static int8_t output(const PoolParams& p, Acc acc, int count) {
    if (count > 0) {
      acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
    }
    return static_cast<int8_t>(clamp32(acc, p.act_min, p.act_max));
  }
};

struct MaxPoolF32 {
  typedef float Data;
  typedef float Acc;
  static Acc init() { return -3.402823466e+38f; }
  static void step(Acc& acc, Acc v) {
    if (v > acc) acc = v;
  }
  static float output(const PoolParams& p, Acc acc, int /* count */) {
    return clampf(acc, p.fact_min, p.fact_max);
  }
};

struct AveragePoolF32 {
  typedef float Data;
  typedef float Acc;
  static Acc init() { return 0.f; }
  static void step(Acc& acc, Acc v) { acc += v; }
  static float output(const PoolParams& p, Acc acc, int count) {
    if (count > 0) acc /= static_cast<float>(count);
    return clampf(acc, p.fact_min, p.fact_max);
  }
};

template <class Op>
static inline void pool(const PoolParams& p, const typename Op::Data* input,
                        typename Op::Data* output) {
  for (int b = 0; b < p.batches; ++b) {
    for (int oy = 0; oy < p.out_h; ++oy) {
      for (int ox = 0; ox < p.out_w; ++ox) {
        const int in_y0 = oy * p.stride_h - p.pad_h;
        const int in_x0 = ox * p.stride_w - p.pad_w;
        const int fy0 = in_y0 < 0 ? -in_y0 : 0;
        const int fy1 = p.filter_h < p.in_h - in_y0 ? p.filter_h : p.in_h - in_y0;
        const int fx0 = in_x0 < 0 ? -in_x0 : 0;
        const int fx1 = p.filter_w < p.in_w - in_x0 ? p.filter_w : p.in_w - in_x0;
        const int count = (fy1 - fy0) * (fx1 - fx0);
        for (int c = 0; c < p.channels; ++c) {
          typename Op::Acc acc = Op::init();
          for (int fy = fy0; fy < fy1; ++fy) {
            for (int fx = fx0; fx < fx1; ++fx) {
              const typename Op::Acc v =
                  input[((b * p.in_h + in_y0 + fy) * p.in_w + in_x0 + fx) * p.channels + c];
              Op::step(acc, v);
            }
          }
          output[((b * p.out_h + oy) * p.out_w + ox) * p.channels + c] = Op::output(p, acc, count);
        }
      }
    }
  }
}

/* Element-wise binary operation with broadcasting: output[o] = f(a, b) for
   each output element o in order, a and b the input elements it reads. */
template <class T, class F>
static inline void broadcast_binary(const AddParams& p, const T* in1, const T* in2, T* output,
                                    F f) {
  int o = 0;
  for (int d0 = 0; d0 < p.dims[0]; ++d0) {
    for (int d1 = 0; d1 < p.dims[1]; ++d1) {
      for (int d2 = 0; d2 < p.dims[2]; ++d2) {
        const int base1 = d0 * p.stride1[0] + d1 * p.stride1[1] + d2 * p.stride1[2];
        const int base2 = d0 * p.stride2[0] + d1 * p.stride2[1] + d2 * p.stride2[2];
        for (int d3 = 0; d3 < p.dims[3]; ++d3, ++o) {
          output[o] = f(in1[base1 + d3 * p.stride1[3]], in2[base2 + d3 * p.stride2[3]]);
        }
      }
    }
  }
}

/* Reduction for MEAN: calls finish(o, sum) for each output element o in
   order, sum (type Acc) the sum of the input elements reduced into it. */
template <class Acc, class T, class F>
static inline void reduce_sum(const MeanParams& p, const T* input, F finish) {
  const int* d = p.in_dims;
  const int o0 = p.reduce[0] ? 1 : d[0], o1 = p.reduce[1] ? 1 : d[1];
  const int o2 = p.reduce[2] ? 1 : d[2], o3 = p.reduce[3] ? 1 : d[3];
  int o = 0;
  for (int a = 0; a < o0; ++a)
    for (int b = 0; b < o1; ++b)
      for (int c = 0; c < o2; ++c)
        for (int e = 0; e < o3; ++e, ++o) {
          Acc sum = 0;
          for (int i0 = p.reduce[0] ? 0 : a; i0 < (p.reduce[0] ? d[0] : a + 1); ++i0)
            for (int i1 = p.reduce[1] ? 0 : b; i1 < (p.reduce[1] ? d[1] : b + 1); ++i1)
              for (int i2 = p.reduce[2] ? 0 : c; i2 < (p.reduce[2] ? d[2] : c + 1); ++i2)
                for (int i3 = p.reduce[3] ? 0 : e; i3 < (p.reduce[3] ? d[3] : e + 1); ++i3)
                  sum += input[((i0 * d[1] + i1) * d[2] + i2) * d[3] + i3];
          finish(o, sum);
        }
}

/* ---------------------------------------------------------------- int8 */

static inline void fully_connected_s8(const FcParams& p, const int8_t* input,
                                      const int8_t* filter, const int32_t* bias,
                                      const int32_t* multiplier, const int32_t* shift,
                                      int8_t* output) {
  fully_connected(p, S8FcPolicy(p, multiplier, shift), input, filter, bias, output);
}

static inline void conv_s8(const ConvParams& p, const int8_t* input, const int8_t* filter,
                           const int32_t* bias, const int32_t* multiplier,
                           const int32_t* shift, int8_t* output) {
  conv(p, S8Policy<ConvParams>(p, multiplier, shift), input, filter, bias, output);
}

static inline void depthwise_conv_s8(const ConvParams& p, const int8_t* input,
                                     const int8_t* filter, const int32_t* bias,
                                     const int32_t* multiplier, const int32_t* shift,
                                     int8_t* output) {
  depthwise_conv(p, S8Policy<ConvParams>(p, multiplier, shift), input, filter, bias, output);
}

static inline void conv_hwio_s8(const ConvParams& p, const int8_t* input, const int8_t* filter,
                                const int32_t* bias, const int32_t* multiplier,
                                const int32_t* shift, int8_t* output) {
  conv_hwio(p, S8Policy<ConvParams>(p, multiplier, shift), input, filter, bias, output);
}

static inline void depthwise_conv_m1_s8(const ConvParams& p, const int8_t* input,
                                        const int8_t* filter, const int32_t* bias,
                                        const int32_t* multiplier, const int32_t* shift,
                                        int8_t* output) {
  depthwise_conv_m1(p, S8Policy<ConvParams>(p, multiplier, shift), input, filter, bias, output);
}

static inline void max_pool_s8(const PoolParams& p, const int8_t* input, int8_t* output) {
  pool<MaxPoolS8>(p, input, output);
}

static inline void average_pool_s8(const PoolParams& p, const int8_t* input, int8_t* output) {
  pool<AveragePoolS8>(p, input, output);
}

/* Softmax over the last dimension; output scale 1/256, zero point -128. */
static inline void softmax_s8(const int8_t* input, int8_t* output, int outer, int depth,
                              int32_t input_multiplier, int input_left_shift, int diff_min) {
  for (int i = 0; i < outer; ++i) {
    const int8_t* in = input + i * depth;
    int8_t* out = output + i * depth;
    int32_t max_in_row = -128;
    for (int c = 0; c < depth; ++c) {
      if (in[c] > max_in_row) max_in_row = in[c];
    }
    int32_t sum_of_exps = 0; /* Q12.19 */
    for (int c = 0; c < depth; ++c) {
      const int32_t diff = static_cast<int32_t>(in[c]) - max_in_row;
      if (diff >= diff_min) {
        const int32_t scaled = srdhm(shl(diff, input_left_shift), input_multiplier);
        sum_of_exps = wrap_add(sum_of_exps, rdbpot(exp_on_negative_values(scaled, 5), 12));
      }
    }
    const int headroom_plus_one = count_leading_zeros(static_cast<uint32_t>(sum_of_exps));
    const int num_bits_over_unit = 12 - headroom_plus_one;
    const int32_t shifted_sum_minus_one = static_cast<int32_t>(
        (static_cast<uint32_t>(sum_of_exps) << headroom_plus_one) - (static_cast<uint32_t>(1) << 31));
    const int32_t shifted_scale = one_over_one_plus_x(shifted_sum_minus_one);
    const int exponent = num_bits_over_unit + 31 - 8;
    for (int c = 0; c < depth; ++c) {
      const int32_t diff = static_cast<int32_t>(in[c]) - max_in_row;
      if (diff >= diff_min) {
        const int32_t scaled = srdhm(shl(diff, input_left_shift), input_multiplier);
        const int32_t exp_in_0 = exp_on_negative_values(scaled, 5);
        const int32_t unsat = rdbpot(srdhm(shifted_scale, exp_in_0), exponent);
        out[c] = static_cast<int8_t>(clamp32(unsat - 128, -128, 127));
      } else {
        out[c] = -128;
      }
    }
  }
}

/* Logistic; output scale 1/256, zero point -128. */
static inline void logistic_s8(const int8_t* input, int8_t* output, int n, int32_t input_zp,
                               int32_t input_range_radius, int32_t input_multiplier,
                               int input_left_shift) {
  for (int i = 0; i < n; ++i) {
    const int32_t v = static_cast<int32_t>(input[i]) - input_zp;
    if (v <= -input_range_radius) {
      output[i] = -128;
    } else if (v >= input_range_radius) {
      output[i] = 127;
    } else {
      const int32_t in_q4 = mbqm(v, input_multiplier, input_left_shift);
      const int32_t out_q0 = fixed_logistic(in_q4, 4);
      const int32_t out_q23 = rdbpot(out_q0, 31 - 8);
      output[i] = static_cast<int8_t>(clamp32(out_q23 - 128, -128, 127));
    }
  }
}

static inline int8_t add_one_s8(int8_t x, int8_t y, const AddParams& p) {
  const int32_t a = shl(p.in1_offset + x, p.left_shift);
  const int32_t b = shl(p.in2_offset + y, p.left_shift);
  const int32_t sa = mbqm(a, p.in1_multiplier, p.in1_shift);
  const int32_t sb = mbqm(b, p.in2_multiplier, p.in2_shift);
  const int32_t raw = mbqm(wrap_add(sa, sb), p.out_multiplier, p.out_shift) + p.out_offset;
  return static_cast<int8_t>(clamp32(raw, p.act_min, p.act_max));
}

static inline void add_s8(const AddParams& p, const int8_t* in1, const int8_t* in2,
                          int8_t* output) {
  broadcast_binary(p, in1, in2, output, [&p](int8_t x, int8_t y) { return add_one_s8(x, y, p); });
}

static inline void mean_s8(const MeanParams& p, const int8_t* input, int8_t* output) {
  int32_t multiplier = p.multiplier;
  int shift = p.shift;
  if (!p.same_quant) {
    int s = 0;
    while ((static_cast<int64_t>(1) << (s + 1)) <= p.count) ++s; /* floor(log2(count)) */
    if (s > 32) s = 32;
    if (s > 31 + shift) s = 31 + shift;
    multiplier = static_cast<int32_t>((static_cast<int64_t>(multiplier) << s) / p.count);
    shift = shift - s;
  }
  reduce_sum<int32_t>(p, input, [&](int o, int32_t sum) {
    if (p.same_quant) {
      output[o] = static_cast<int8_t>(sum / p.count);
    } else {
      const int32_t shifted = sum - p.in_zp * p.count;
      const int32_t v = mbqm(shifted, multiplier, shift) + p.out_zp;
      output[o] = static_cast<int8_t>(clamp32(v, -128, 127));
    }
  });
}

static inline void quantize_f32_s8(const float* input, int8_t* output, int n, float scale,
                                   int32_t zero_point) {
  for (int i = 0; i < n; ++i) {
    const int32_t v = static_cast<int32_t>(roundf(input[i] / scale)) + zero_point;
    output[i] = static_cast<int8_t>(clamp32(v, -128, 127));
  }
}

static inline void requantize_s8(const int8_t* input, int8_t* output, int n, int32_t in_zp,
                                 int32_t out_zp, int32_t multiplier, int shift) {
  for (int i = 0; i < n; ++i) {
    const int32_t v = mbqm(static_cast<int32_t>(input[i]) - in_zp, multiplier, shift) + out_zp;
    output[i] = static_cast<int8_t>(clamp32(v, -128, 127));
  }
}

static inline void dequantize_s8_f32(const int8_t* input, float* output, int n, double scale,
                                     int32_t zero_point) {
  for (int i = 0; i < n; ++i) {
    output[i] = static_cast<float>(scale * (static_cast<int32_t>(input[i]) - zero_point));
  }
}

/* ------------------------------------------------------------- float32 */

static inline void fully_connected_f32(const FcParams& p, const float* input, const float* filter,
                                       const float* bias, float* output) {
  fully_connected(p, F32Policy<FcParams>(p), input, filter, bias, output);
}

static inline void conv_f32(const ConvParams& p, const float* input, const float* filter,
                            const float* bias, float* output) {
  conv(p, F32Policy<ConvParams>(p), input, filter, bias, output);
}

static inline void depthwise_conv_f32(const ConvParams& p, const float* input, const float* filter,
                                      const float* bias, float* output) {
  depthwise_conv(p, F32Policy<ConvParams>(p), input, filter, bias, output);
}

static inline void conv_hwio_f32(const ConvParams& p, const float* input, const float* filter,
                                 const float* bias, float* output) {
  conv_hwio(p, F32Policy<ConvParams>(p), input, filter, bias, output);
}

static inline void depthwise_conv_m1_f32(const ConvParams& p, const float* input,
                                         const float* filter, const float* bias,
                                         float* output) {
  depthwise_conv_m1(p, F32Policy<ConvParams>(p), input, filter, bias, output);
}

static inline void pool_f32(const PoolParams& p, const float* input, float* output, bool is_max) {
  if (is_max) {
    pool<MaxPoolF32>(p, input, output);
  } else {
    pool<AveragePoolF32>(p, input, output);
  }
}

static inline void softmax_f32(const float* input, float* output, int outer, int depth,
                               float beta) {
  for (int i = 0; i < outer; ++i) {
    const float* in = input + i * depth;
    float* out = output + i * depth;
    float max_v = in[0];
    for (int c = 1; c < depth; ++c) {
      if (in[c] > max_v) max_v = in[c];
    }
    float sum = 0.f;
    for (int c = 0; c < depth; ++c) {
      const float e = expf((in[c] - max_v) * beta);
      out[c] = e;
      sum += e;
    }
    for (int c = 0; c < depth; ++c) out[c] = out[c] / sum;
  }
}

static inline void logistic_f32(const float* input, float* output, int n) {
  for (int i = 0; i < n; ++i) output[i] = 1.f / (1.f + expf(-input[i]));
}

static inline void add_f32(const AddParams& p, const float* in1, const float* in2, float* output) {
  broadcast_binary(p, in1, in2, output,
                   [&p](float x, float y) { return clampf(x + y, p.fact_min, p.fact_max); });
}

static inline void mean_f32(const MeanParams& p, const float* input, float* output) {
  reduce_sum<float>(p, input,
                    [&](int o, float sum) { output[o] = sum / static_cast<float>(p.count); });
}

}  // namespace el

#endif  // EL_KERNELS_H
