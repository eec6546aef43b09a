// DType names, sizes and kinds; the FP8 formats' exact decoding tables and round-to-nearest-even
// encoder.
#include "wavg/core/dtype.h"

#include <algorithm>
#include <array>
#include <cmath>

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
};

const Float8Tables& tables() {
  static const Float8Tables t = [] {
    Float8Tables out;
    const DType types[] = {DType::kF8E4M3, DType::kF8E5M2, DType::kF8E4M3FNUZ, DType::kF8E5M2FNUZ};
    for (int k = 0; k < 4; ++k) {
      for (int b = 0; b < 256; ++b) {
        const double v = decode_float8(float8_format(types[k]), uint8_t(b));
        out.values[k][size_t(b)] = v;
        if (std::isfinite(v) && v > out.max[k]) out.max[k] = v;
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

// The byte of a finite non-negative value v that is representable in f (v <= its max).
uint8_t encode_exact(const Float8Format& f, double v) {
  const int min_exp = 1 - f.bias;  // of the smallest normal, 2^min_exp
  if (v < std::ldexp(1.0, min_exp)) return uint8_t(std::ldexp(v, f.man_bits - min_exp));
  int e = 0;
  const double frac = std::frexp(v, &e);  // v = frac * 2^e, frac in [0.5, 1)
  const int exp_field = e - 1 + f.bias;
  const int man = int(std::ldexp(frac, f.man_bits + 1)) - (1 << f.man_bits);
  return uint8_t((exp_field << f.man_bits) | man);
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
  // The quantum of a's binade (or of the subnormals), then round a / quantum to nearest even: exact
  // in double, since quanta are powers of two far inside double's range.
  int e = 0;
  std::frexp(a, &e);
  const int quantum_exp = std::max(e - 1, 1 - f.bias) - f.man_bits;
  const double rounded = std::ldexp(std::nearbyint(std::ldexp(a, -quantum_exp)), quantum_exp);
  if (rounded > float8_max(t)) {
    *overflow = true;
    return inf;
  }
  if (rounded == 0) return zero;
  return uint8_t(sign | encode_exact(f, rounded));
}

}  // namespace wavg
