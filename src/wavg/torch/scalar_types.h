// LibTorch scalar types (c10::ScalarType) <-> wavg dtypes. Internal (not installed): wavg::detail.
#pragma once

#include <c10/core/ScalarType.h>

#include "wavg/core/dtype.h"

namespace wavg::detail {

DType to_dtype(c10::ScalarType t);  // throws wavg::Error for types safetensors cannot hold
c10::ScalarType to_scalar_type(DType t);

}  // namespace wavg::detail
