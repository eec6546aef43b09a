// DType names, sizes and kinds; the FP8 formats' exact decoding tables and round-to-nearest-even
// encoder.
#include "wavg/core/dtype.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "wavg/core/error.h"

namespace wavg {

namespace {
struct DTypeInfo {
  DType type;
  const char* name;
  size_t bits;
  DTypeKind kind;
};
constexpr DTypeInfo kInfo[] = {
    {DType::kF64, "F64", 64, DTypeKind::kFloat},
    {DType::kF32, "F32", 32, DTypeKind::kFloat},
    {DType::kF16, "F16", 16, DTypeKind::kFloat},
    {DType::kBF16, "BF16", 16, DTypeKind::kFloat},
    {DType::kI64, "I64", 64, DTypeKind::kInteger},
    {DType::kI32, "I32", 32, DTypeKind::kInteger},
    {DType::kI16, "I16", 16, DTypeKind::kInteger},
    {DType::kI8, "I8", 8, DTypeKind::kInteger},
    {DType::kU8, "U8", 8, DTypeKind::kInteger},
    {DType::kBool, "BOOL", 8, DTypeKind::kInteger},
    {DType::kU16, "U16", 16, DTypeKind::kInteger},
    {DType::kU32, "U32", 32, DTypeKind::kInteger},
    {DType::kU64, "U64", 64, DTypeKind::kInteger},
    {DType::kC64, "C64", 64, DTypeKind::kComplex},
    {DType::kF8E4M3, "F8_E4M3", 8, DTypeKind::kFloat8},
    {DType::kF8E5M2, "F8_E5M2", 8, DTypeKind::kFloat8},
    {DType::kF8E4M3FNUZ, "F8_E4M3FNUZ", 8, DTypeKind::kFloat8},
    {DType::kF8E5M2FNUZ, "F8_E5M2FNUZ", 8, DTypeKind::kFloat8},
    {DType::kF8E8M0, "F8_E8M0", 8, DTypeKind::kMicroscale},
    {DType::kF4, "F4", 4, DTypeKind::kMicroscale},
    {DType::kF6E2M3, "F6_E2M3", 6, DTypeKind::kMicroscale},
    {DType::kF6E3M2, "F6_E3M2", 6, DTypeKind::kMicroscale},
};
const DTypeInfo& info(DType t) {
  for (const auto& i : kInfo)
    if (i.type == t) return i;
  WAVG_ASSERT(false);
  return kInfo[0];
}
}  // namespace

DTypeKind dtype_kind(DType t) { return info(t).kind; }
size_t dtype_bits(DType t) { return info(t).bits; }
size_t dtype_size(DType t) {
  WAVG_ASSERT(info(t).bits % 8 == 0);
  return info(t).bits / 8;
}
bool is_floating(DType t) { return info(t).kind == DTypeKind::kFloat; }
bool is_classic(DType t) { return int(t) <= int(DType::kBool); }
const char* dtype_name(DType t) { return info(t).name; }

bool try_parse_dtype(const std::string& s, DType* out) {
  std::string upper;
  for (char c : s) upper += char(c >= 'a' && c <= 'z' ? c - 32 : c);
  for (const auto& i : kInfo) {
    if (upper == i.name) {
      *out = i.type;
      return true;
    }
  }
  return false;
}

DType parse_dtype(const std::string& s) {
  DType t;
  std::string names;
  for (const auto& i : kInfo) names += std::string(names.empty() ? "" : ", ") + i.name;
  WAVG_CHECK(try_parse_dtype(s, &t), "unknown dtype '", quote_bytes(s), "' (expected one of ",
             names, ")");
  return t;
}

// Partial products in uint64, as the reference implementation multiplies (usize): a zero dimension
// after a large prefix ([2^32, 2^32 - 1, 0]) is a valid empty tensor; the count must fit int64.
bool shape_numel(const std::vector<int64_t>& shape, int64_t* numel) {
  uint64_t n = 1;
  for (int64_t d : shape)
    if (d < 0 || __builtin_mul_overflow(n, uint64_t(d), &n)) return false;
  if (n > uint64_t(INT64_MAX)) return false;
  *numel = int64_t(n);
  return true;
}

bool shape_nbytes(const std::vector<int64_t>& shape, DType t, uint64_t* nbytes) {
  int64_t n = 0;
  uint64_t bits = 0;
  if (!shape_numel(shape, &n) || __builtin_mul_overflow(uint64_t(n), dtype_bits(t), &bits))
    return false;
  if (bits % 8 != 0) return false;
  *nbytes = bits / 8;
  return true;
}

namespace {

// An FP8 format: exponent and mantissa widths, bias, and its special values.
struct Float8Format {
  int exp_bits, man_bits, bias;
  enum class Special { kIeee, kFn, kFnuz } special;
};

Float8Format float8_format(DType t) {
  switch (t) {
    case DType::kF8E4M3: return {4, 3, 7, Float8Format::Special::kFn};
    case DType::kF8E5M2: return {5, 2, 15, Float8Format::Special::kIeee};
    case DType::kF8E4M3FNUZ: return {4, 3, 8, Float8Format::Special::kFnuz};
    case DType::kF8E5M2FNUZ: return {5, 2, 16, Float8Format::Special::kFnuz};
    default: break;
  }
  throw std::invalid_argument(std::string("not an FP8 dtype: ") + dtype_name(t));
}

double decode_float8(const Float8Format& f, uint8_t b) {
  const int exp_max = (1 << f.exp_bits) - 1, man_max = (1 << f.man_bits) - 1;
  const bool neg = b & 0x80;
  const int e = (b >> f.man_bits) & exp_max, m = b & man_max;
  using S = Float8Format::Special;
  if (f.special == S::kFnuz && b == 0x80) return NAN;
  if (f.special == S::kFn && e == exp_max && m == man_max) return NAN;
  if (f.special == S::kIeee && e == exp_max) return m ? NAN : (neg ? -INFINITY : INFINITY);
  // subnormal: m * 2^(1 - bias - man_bits); normal: (2^man_bits + m) * 2^(e - bias - man_bits)
  const double mag = e == 0 ? std::ldexp(double(m), 1 - f.bias - f.man_bits)
                            : std::ldexp(double((1 << f.man_bits) + m), e - f.bias - f.man_bits);
  return neg ? -mag : mag;
}

struct Float8Tables {
  std::array<double, 256> values[4];
  double max[4] = {0, 0, 0, 0};  // largest finite value
  uint32_t max_code[4] = {0, 0, 0, 0};  // its code (positive codes grow with their values)
};

const Float8Tables& tables() {
  static const Float8Tables t = [] {
    Float8Tables out;
    const DType types[] = {DType::kF8E4M3, DType::kF8E5M2, DType::kF8E4M3FNUZ, DType::kF8E5M2FNUZ};
    for (int k = 0; k < 4; ++k) {
      for (int b = 0; b < 256; ++b) {
        const double v = decode_float8(float8_format(types[k]), uint8_t(b));
        out.values[k][size_t(b)] = v;
        if (std::isfinite(v) && v > out.max[k]) out.max[k] = v, out.max_code[k] = uint32_t(b);
      }
    }
    return out;
  }();
  return t;
}

int table_index(DType t) {
  float8_format(t);  // throws on a non-FP8 dtype
  return t == DType::kF8E4M3 ? 0 : t == DType::kF8E5M2 ? 1 : t == DType::kF8E4M3FNUZ ? 2 : 3;
}

// The magnitude code (sign bit clear) of finite a > 0 rounded to nearest even in f, computed on
// a's bits: its significand (53 bits with the implicit one) shifted right to f's mantissa width
// at a's exponent (further for f's subnormals), rounding on the bits shifted out. A normal result
// is ((exponent + bias - 1) << man_bits) + q with q in [2^man_bits, 2^(man_bits + 1)] (a carry of q
// moves into the exponent); a subnormal one is q itself (q = 2^man_bits is the smallest normal).
// Codes above the format's largest finite one are an overflow (for the caller to tell).
uint32_t magnitude_code(const Float8Format& f, double a) {
  uint64_t u = 0;
  std::memcpy(&u, &a, 8);
  const int biased = int(u >> 52);
  if (biased == 0) return 0;  // a double subnormal: far below half the smallest FP8 subnormal
  const int e = biased - 1023, min_exp = 1 - f.bias;
  const uint64_t sig = (u & ((uint64_t(1) << 52) - 1)) | (uint64_t(1) << 52);
  const int shift = 52 - f.man_bits + std::max(0, min_exp - e);
  if (shift > 62) return 0;  // below half the smallest subnormal
  uint64_t q = sig >> shift;
  const uint64_t rem = sig & ((uint64_t(1) << shift) - 1), half = uint64_t(1) << (shift - 1);
  if (rem > half || (rem == half && (q & 1))) ++q;
  if (e < min_exp) return uint32_t(q);
  return uint32_t((uint64_t(e + f.bias - 1) << f.man_bits) + q);
}

}  // namespace

const double* float8_table(DType t) { return tables().values[table_index(t)].data(); }

double float8_max(DType t) { return tables().max[table_index(t)]; }

uint8_t to_float8(DType t, double x, bool* overflow) {
  const Float8Format f = float8_format(t);
  using S = Float8Format::Special;
  const uint8_t nan = f.special == S::kFnuz ? 0x80 : f.special == S::kFn ? 0x7f : 0x7e;
  const uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
  if (std::isnan(x)) return nan;
  const double a = std::fabs(x);
  const uint8_t zero = f.special == S::kFnuz ? 0x00 : sign;  // the FNUZ formats have no -0
  if (a == 0) return zero;
  const uint8_t inf = f.special == S::kIeee ? uint8_t(sign | 0x7c) : nan;
  if (std::isinf(x)) return inf;
  const uint32_t code = magnitude_code(f, a);
  if (code > tables().max_code[table_index(t)]) {
    *overflow = true;
    return inf;
  }
  return code == 0 ? zero : uint8_t(sign | code);
}

}  // namespace wavg
