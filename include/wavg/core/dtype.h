// Element types of samples, averages and files, and exact conversions between the 16-bit floating
// formats and fp32 (IEEE binary16 and bfloat16, round to nearest even) and between the 8-bit
// floating formats and fp64.
#pragma once

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace wavg {

// Every dtype of the safetensors format as of the safetensors 0.8.0 release (its `Dtype` enum), in
// that spelling. The first ten are the classic ones (LibTorch 1.13 has all of them); the others are
// read from checkpoint files only (see DTypeKind).
enum class DType {
  kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool,
  kU16, kU32, kU64, kC64,
  kF8E4M3, kF8E5M2, kF8E4M3FNUZ, kF8E5M2FNUZ,  // FP8 (E4M3 is E4M3FN: no Inf)
  kF8E8M0, kF4, kF6E2M3, kF6E3M2,              // microscaling (OCP MX): a scale, sub-byte data
};

// What a dtype's values are, which decides what `wavg average` does with a tensor of it.
enum class DTypeKind {
  kFloat,       // F64, F32, F16, BF16: the kernels' types (dispatch_floating)
  kFloat8,      // FP8 with a sign, exponent and mantissa (decoded by float8_table)
  kComplex,     // C64: two F32 parts
  kInteger,     // signed and unsigned integers, BOOL
  kMicroscale,  // F8_E8M0 (a block's power-of-two scale), F4 and F6 (sub-byte block elements)
};
DTypeKind dtype_kind(DType t);
// Size of one element in bits (4 for F4, 6 for F6_*), and in bytes for the whole-byte dtypes
// (asserts on a sub-byte one: use shape_nbytes for a tensor's size).
size_t dtype_bits(DType t);
size_t dtype_size(DType t);
bool is_floating(DType t);  // DTypeKind::kFloat
// True for the ten dtypes every part of wavg handles (LibTorch has them); the others are read only
// where a reader asks for them (SafetensorsFile's all_dtypes).
bool is_classic(DType t);
// safetensors spelling: "F32", "BF16", "F8_E4M3", ...
const char* dtype_name(DType t);
// Parses a safetensors dtype ("F32") or a lower-case CLI spelling ("f32", "bf16"); throws on others.
DType parse_dtype(const std::string& s);
bool try_parse_dtype(const std::string& s, DType* out);

// FP8 formats (DTypeKind::kFloat8): E4M3FN (bias 7, no Inf, NaN S.1111.111, max 448), E5M2 (IEEE
// style, bias 15, Inf and NaN, max 57344), E4M3FNUZ and E5M2FNUZ (bias 8 and 16, no Inf, no -0, the
// one NaN 0x80, max 240 and 57344).
// The 256 values of an FP8 format, exactly (as doubles; NaN where the byte is a NaN).
const double* float8_table(DType t);
// Largest finite value of an FP8 format.
double float8_max(DType t);
// Rounds x to the FP8 format, to nearest even, from the double itself (no double rounding). A finite
// x whose rounding is beyond the largest finite value sets *overflow and gives Inf for E5M2, NaN for
// the formats without Inf (the caller refuses or saturates, as for a 16-bit --dtype). NaN gives a NaN.
uint8_t to_float8(DType t, double x, bool* overflow);

// Element count and byte size of a tensor of `shape`, with checked arithmetic (the one place that
// multiplies dimensions): false when a dimension is negative, when any partial product of the
// dimensions overflows int64 (also when a later dimension is 0: [2^32, 2^32 - 1, 0] is refused), or
// when the byte size overflows uint64.
bool shape_numel(const std::vector<int64_t>& shape, int64_t* numel);
bool shape_nbytes(const std::vector<int64_t>& shape, DType t, uint64_t* nbytes);

// 16-bit float storage types: plain bit patterns with conversions.
struct Half {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};
static_assert(sizeof(Half) == 2 && sizeof(BFloat16) == 2, "16-bit float types");

inline float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t float_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float to_float(BFloat16 h) { return bits_to_float(uint32_t(h.bits) << 16); }

inline BFloat16 to_bf16(float f) {
  uint32_t u = float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return BFloat16{uint16_t((u >> 16) | 0x40)};  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return BFloat16{uint16_t(u >> 16)};
}

inline float to_float(Half h) {
  const uint32_t sign = uint32_t(h.bits & 0x8000u) << 16;
  const uint32_t exp = (h.bits >> 10) & 0x1fu;
  const uint32_t man = h.bits & 0x3ffu;
  if (exp == 0x1f) return bits_to_float(sign | 0x7f800000u | (man << 13));  // inf / nan
  if (exp == 0) {
    // zero or subnormal: man * 2^-24
    const float mag = float(man) * 5.9604644775390625e-8f;
    return sign ? -mag : mag;
  }
  return bits_to_float(sign | ((exp + 112) << 23) | (man << 13));
}

inline Half to_half(float f) {
  const uint32_t u = float_to_bits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return Half{uint16_t(sign | 0x7e00u)};  // nan
  if (abs >= 0x477ff000u) return Half{uint16_t(sign | 0x7c00u)};  // rounds to inf (>= 65520)
  if (abs < 0x38800000u) {
    // subnormal or zero in half: value = m * 2^-24, round to nearest even
    const float a = bits_to_float(abs);
    const float scaled = a * 16777216.0f;  // exact: a < 2^-14, so scaled < 1024
    uint32_t m = uint32_t(scaled);
    const float rem = scaled - float(m);
    if (rem > 0.5f || (rem == 0.5f && (m & 1u))) ++m;
    return Half{uint16_t(sign | m)};
  }
  // normal: rebias exponent, round mantissa from 23 to 10 bits (nearest even)
  uint32_t v = abs - (112u << 23);
  v += 0xfffu + ((v >> 13) & 1u);
  return Half{uint16_t(sign | (v >> 13))};
}

// Uniform loads/stores used by templated kernels.
inline double load_f64(double x) { return x; }
inline double load_f64(float x) { return x; }
inline double load_f64(Half x) { return to_float(x); }
inline double load_f64(BFloat16 x) { return to_float(x); }
inline float load_f32(float x) { return x; }
inline float load_f32(double x) { return float(x); }
inline float load_f32(Half x) { return to_float(x); }
inline float load_f32(BFloat16 x) { return to_float(x); }

template <typename T>
T store_as(double x);
template <>
inline double store_as<double>(double x) { return x; }
template <>
inline float store_as<float>(double x) { return float(x); }
template <>
inline Half store_as<Half>(double x) { return to_half(float(x)); }
template <>
inline BFloat16 store_as<BFloat16>(double x) { return to_bf16(float(x)); }

// Calls f(T{}) with T the C++ type of a floating DType (double, float, Half, BFloat16).
template <typename F>
decltype(auto) dispatch_floating(DType t, F&& f) {
  switch (t) {
    case DType::kF64: return f(double{});
    case DType::kF32: return f(float{});
    case DType::kF16: return f(Half{});
    case DType::kBF16: return f(BFloat16{});
    default: break;
  }
  throw std::invalid_argument(std::string("not a floating dtype: ") + dtype_name(t));
}

}  // namespace wavg
