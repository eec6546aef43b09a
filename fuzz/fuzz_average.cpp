// libFuzzer target: checkpoint averaging (`wavg average`) over an arbitrary file. The first byte
// picks the averager, the output dtype and the finite check; the rest is one checkpoint, given as
// the two inputs of the average. Anything but success or wavg::Error is a finding; on success the
// output must be a valid safetensors file with the input's tensor names.
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "wavg/core/error.h"
#include "wavg/io/checkpoint_average.h"
#include "wavg/io/safetensors.h"

namespace {

const std::string& work_dir() {
  static const std::string dir = [] {
    char tmpl[] = "/tmp/wavg_fuzz_XXXXXX";
    const char* d = ::mkdtemp(tmpl);
    if (!d) __builtin_trap();
    return std::string(d);
  }();
  return dir;
}

wavg::CheckpointAverageOptions options_from(uint8_t b) {
  wavg::CheckpointAverageOptions o;
  if ((b & 3) == 0) o.averager = wavg::LawaOptions(2);
  else if ((b & 3) == 1) o.averager = wavg::EmaOptions(0.5);
  else o.averager = wavg::SwaOptions();
  switch ((b >> 2) & 3) {
    case 1: o.out_dtype = wavg::DType::kF32; break;
    case 2: o.out_dtype = wavg::DType::kBF16; break;
    case 3: o.out_dtype = wavg::DType::kF16; break;
    default: break;
  }
  o.check_finite = !(b & 16);
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string in = work_dir() + "/in.safetensors", out = work_dir() + "/out.safetensors";
  std::FILE* f = std::fopen(in.c_str(), "wb");
  if (!f) __builtin_trap();
  if (size > 1 && std::fwrite(data + 1, 1, size - 1, f) != size - 1) __builtin_trap();
  std::fclose(f);
  try {
    wavg::average_checkpoints({in, in}, out, options_from(data[0]));
    const wavg::SafetensorsFile a(in), b(out);
    if (a.tensors().size() != b.tensors().size()) __builtin_trap();
    for (const wavg::TensorInfo& t : a.tensors())
      if (!b.find(t.name)) __builtin_trap();
  } catch (const wavg::Error&) {
  }
  ::unlink(out.c_str());
  return 0;
}
