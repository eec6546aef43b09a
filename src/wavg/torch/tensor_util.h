// Conversions between LibTorch scalar types and wavg dtypes.
#pragma once

#include <c10/core/ScalarType.h>

#include "wavg/core/dtype.h"

namespace wavg {

DType to_dtype(c10::ScalarType t);  // throws wavg::Error for types safetensors cannot hold
c10::ScalarType to_scalar_type(DType t);

}  // namespace wavg
