// ScalarType <-> DType.
#include "wavg/torch/scalar_types.h"

#include "wavg/core/error.h"

namespace wavg::detail {

DType to_dtype(c10::ScalarType t) {
  switch (t) {
    case c10::kFloat: return DType::kF32;
    case c10::kDouble: return DType::kF64;
    case c10::kHalf: return DType::kF16;
    case c10::kBFloat16: return DType::kBF16;
    case c10::kLong: return DType::kI64;
    case c10::kInt: return DType::kI32;
    case c10::kShort: return DType::kI16;
    case c10::kChar: return DType::kI8;
    case c10::kByte: return DType::kU8;
    case c10::kBool: return DType::kBool;
    default: break;
  }
  throw Error(std::string("unsupported tensor dtype ") + c10::toString(t));
}

c10::ScalarType to_scalar_type(DType t) {
  switch (t) {
    case DType::kF32: return c10::kFloat;
    case DType::kF64: return c10::kDouble;
    case DType::kF16: return c10::kHalf;
    case DType::kBF16: return c10::kBFloat16;
    case DType::kI64: return c10::kLong;
    case DType::kI32: return c10::kInt;
    case DType::kI16: return c10::kShort;
    case DType::kI8: return c10::kChar;
    case DType::kU8: return c10::kByte;
    case DType::kBool: return c10::kBool;
    default: break;
  }
  // FP8, unsigned wider than 8 bits, complex and sub-byte dtypes have no LibTorch 1.13 type: the
  // readers refuse them before they get here (only `wavg average`, which needs no LibTorch, reads them).
  throw Error("dtype " + std::string(dtype_name(t)) + " has no LibTorch tensor type");
}

}  // namespace wavg::detail
