// DType names and sizes.
#include "wavg/core/dtype.h"

#include "wavg/core/error.h"

namespace wavg {

namespace {
struct DTypeInfo {
  DType type;
  const char* name;
  size_t size;
  bool floating;
};
constexpr DTypeInfo kInfo[] = {
    {DType::kF64, "F64", 8, true},  {DType::kF32, "F32", 4, true},
    {DType::kF16, "F16", 2, true},  {DType::kBF16, "BF16", 2, true},
    {DType::kI64, "I64", 8, false}, {DType::kI32, "I32", 4, false},
    {DType::kI16, "I16", 2, false}, {DType::kI8, "I8", 1, false},
    {DType::kU8, "U8", 1, false},   {DType::kBool, "BOOL", 1, false},
};
const DTypeInfo& info(DType t) {
  for (const auto& i : kInfo)
    if (i.type == t) return i;
  WAVG_ASSERT(false);
  return kInfo[0];
}
}  // namespace

size_t dtype_size(DType t) { return info(t).size; }
bool is_floating(DType t) { return info(t).floating; }
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
  WAVG_CHECK(try_parse_dtype(s, &t), "unknown dtype '", quote_bytes(s),
             "' (expected one of F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL)");
  return t;
}

bool shape_numel(const std::vector<int64_t>& shape, int64_t* numel) {
  int64_t n = 1;
  for (int64_t d : shape)
    if (d < 0 || __builtin_mul_overflow(n, d, &n)) return false;
  *numel = n;
  return true;
}

bool shape_nbytes(const std::vector<int64_t>& shape, DType t, uint64_t* nbytes) {
  int64_t n = 0;
  return shape_numel(shape, &n) && !__builtin_mul_overflow(uint64_t(n), dtype_size(t), nbytes);
}

}  // namespace wavg
