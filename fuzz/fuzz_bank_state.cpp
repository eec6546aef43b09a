// libFuzzer target: a bank state file (io/bank_state, issue 21 §1.4) on arbitrary bytes, loaded into
// the bank of bank_state_fixture.h. Loading either succeeds or throws wavg::Error; a state that
// loads must be usable: every average (which reads the rings at indices derived from the state's
// counts) and one more observed step, then every average again. Anything else (a crash, a sanitizer
// report, another exception type, a hang) is a finding.
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "bank_state_fixture.h"
#include "wavg/core/error.h"
#include "wavg/io/bank_state.h"

namespace {

const std::string& input_path() {
  static const std::string path = [] {
    char tmpl[] = "/tmp/wavg_fuzz_bank_XXXXXX";
    const char* d = ::mkdtemp(tmpl);
    if (!d) __builtin_trap();
    return std::string(d) + "/state.safetensors";
  }();
  return path;
}

void read_every_average(const wavg::AveragerBank& bank) {
  std::vector<double> out(size_t(bank.shard_length()));
  for (int i = 0; i < bank.size(); ++i)
    for (int p = 0; p < bank.profiles(i) && !bank.empty(i); ++p)
      bank.average(i, wavg::DType::kF64, out.data(), p);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::FILE* f = std::fopen(input_path().c_str(), "wb");
  if (!f) __builtin_trap();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) __builtin_trap();
  std::fclose(f);
  auto bank = fuzz_bank();
  try {
    wavg::load_bank_state(input_path(), *bank);
  } catch (const wavg::Error&) {
    return 0;
  }
  read_every_average(*bank);
  const std::vector<float> x(size_t(bank->numel()), 0.5f);
  if (bank->last_step() < INT64_MAX) bank->observe(bank->last_step() + 1, x.data());
  read_every_average(*bank);
  return 0;
}
