// Element types of samples, averages and files, and exact conversions between the 16-bit floating
// formats and fp32 (IEEE binary16 and bfloat16, round to nearest even).
#pragma once

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace wavg {

enum class DType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

size_t dtype_size(DType t);
bool is_floating(DType t);
// safetensors spelling: "F32", "BF16", ...
const char* dtype_name(DType t);
// Parses a safetensors dtype ("F32") or a lower-case CLI spelling ("f32", "bf16"); throws on others.
DType parse_dtype(const std::string& s);
bool try_parse_dtype(const std::string& s, DType* out);

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
