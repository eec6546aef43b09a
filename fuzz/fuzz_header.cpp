// libFuzzer target: the safetensors header parser on arbitrary bytes (a whole file image).
// Any outcome but success or wavg::Error (a crash, a sanitizer report, another exception type, a
// hang) is a finding.
#include <cstddef>
#include <cstdint>

#include "wavg/core/error.h"
#include "wavg/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const wavg::SafetensorsHeader h = wavg::parse_safetensors(data, size, "fuzz input");
    for (const wavg::TensorInfo& t : h.tensors) {
      // Every tensor the parser accepts lies inside the file and has a consistent size.
      if (h.data_start + t.end > size || t.begin > t.end) __builtin_trap();
      // shape_nbytes, not numel * dtype_size: sub-byte dtypes (F4, F6) have no whole-byte size.
      uint64_t nbytes = 0;
      if (!wavg::shape_nbytes(t.shape, t.dtype, &nbytes) || nbytes != t.nbytes()) __builtin_trap();
    }
  } catch (const wavg::Error&) {
  }
  return 0;
}
