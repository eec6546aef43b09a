// Writes tests/data/bank_state_before_typed_options.safetensors: a bank state of today's format (2)
// written by wavg as it was while banks still took the generic AveragerOptions bag (main at ea00c8c),
// for bank_state_test's check that such files still load and continue exactly once the typed options
// reach the averager kinds. Every kind is present: two LAWA windows and an EXP window sharing the
// ring of ν = 2, a LAWA window with its own ring, named averagers, an EMA whose β has 17 digits, SWA
// with a start, post-hoc EMA with three profiles. Not built by CMake; built once by hand against that
// tree:
//   g++ -std=c++17 -O2 -I$OLD/include -I$OLD/src make_bank_state_before_typed_options.cpp \
//       $OLD/build/libwavg_io.a $OLD/build/libwavg_core.a -lz -pthread -o make_state && ./make_state OUT
#include <cmath>
#include <cstdio>
#include <vector>

#include "wavg/core/bank.h"
#include "wavg/io/bank_state.h"

using namespace wavg;

// Must match bank_state_test.cpp.
float sample_v3(int64_t step, int64_t i) {
  return float(std::cos(0.29 * double(step) - 0.7 * double(i)) * (2.0 - 0.05 * double(step)) +
               0.01 * double(i));
}

int main(int argc, char** argv) {
  const int64_t n = 41, steps = 27;
  AveragerBank bank(n, DType::kF32);
  bank.add(LawaOptions(5).every(2));
  bank.add(LawaOptions(3).every(2).start(6).name("late_lawa"));
  bank.add(LawaExpOptions(4, 0.3).every(2));
  bank.add(LawaOptions(4).every(3));
  bank.add(EmaOptions(0.98765432109876543));
  bank.add(EmaOptions(0.5).every(4).start(3).name("ema_fast"));
  bank.add(SwaOptions().every(2).start(4));
  bank.add(PhemaOptions({0.05, 0.1, 0.2}));
  std::vector<float> x(n);
  for (int64_t step = 0; step < steps; ++step) {
    for (int64_t i = 0; i < n; ++i) x[size_t(i)] = sample_v3(step, i);
    bank.observe(step, x.data());
  }
  save_bank_state(argc > 1 ? argv[1] : "bank_state_before_typed_options.safetensors", bank);
  return 0;
}
