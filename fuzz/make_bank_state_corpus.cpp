// Writes fuzz/corpus/bank_state/: states of the fuzz bank (bank_state_fixture.h) after 0, 1 and 9
// steps, and the same state with its ring count negative, huge and below a window's samples (the
// states that crashed resume before issue 21). Not built by CMake; built once by hand:
//   g++ -std=c++17 -O2 -Iinclude -Isrc fuzz/make_bank_state_corpus.cpp BUILD/libwavg_io.a \
//       BUILD/libwavg_core.a -lz -pthread -o /tmp/make_corpus && /tmp/make_corpus fuzz/corpus/bank_state
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "bank_state_fixture.h"
#include "wavg/io/bank_state.h"
#include "wavg/io/safetensors.h"

using namespace wavg;

namespace {

void write_state(const std::string& path, int64_t steps,
                 const std::map<std::string, std::string>& changed = {}) {
  auto bank = fuzz_bank();
  std::vector<float> x(size_t(bank->numel()));
  for (int64_t s = 0; s < steps; ++s) {
    for (size_t i = 0; i < x.size(); ++i) x[i] = float(s) * 0.25f + float(i);
    bank->observe(s, x.data());
  }
  std::map<std::string, std::string> meta = bank->state_meta();
  for (const auto& [k, v] : changed) meta[k] = v;
  std::vector<TensorOut> outs;
  for (const StateArray& a : bank->state_arrays()) outs.push_back({a.name, a.dtype, {a.numel}, a.data});
  write_safetensors(path, outs, meta);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const std::string d = argv[1];
  write_state(d + "/valid_empty.safetensors", 0);
  write_state(d + "/valid_1.safetensors", 1);
  write_state(d + "/valid_9.safetensors", 9);
  write_state(d + "/bad_ring_negative.safetensors", 9, {{"ring.0.count", "-1"}});
  write_state(d + "/bad_ring_huge.safetensors", 9, {{"ring.0.count", "9223372036854775807"}});
  write_state(d + "/bad_ring_below.safetensors", 9, {{"ring.0.count", "1"}});
  write_state(d + "/bad_samples.safetensors", 9, {{"averager.5.samples", "-4"}});
  write_state(d + "/bad_last_step.safetensors", 9, {{"bank.last_step", "9223372036854775807"}});
  std::printf("wrote 8 bank states into %s\n", d.c_str());
  return 0;
}
