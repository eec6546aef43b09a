// Writes tests/data/bank_state_format2.safetensors: a bank state of format 2 written by wavg as it
// was before the averager kinds became classes (main at 600a172), for bank_state_test's check that
// such files still load and continue exactly. Not built by CMake; built once by hand against that
// tree:
//   g++ -std=c++17 -O2 -I$OLD/include -I$OLD/src make_bank_state_format2.cpp \
//       $OLD/build/libwavg_io.a $OLD/build/libwavg_core.a -lz -pthread -o make_state && ./make_state OUT
#include <cmath>
#include <cstdio>
#include <vector>

#include "wavg/core/bank.h"
#include "wavg/io/bank_state.h"

using namespace wavg;

// Must match bank_state_test.cpp.
float sample(int64_t step, int64_t i) {
  return float(std::sin(0.37 * double(step) + 1.3 * double(i)) * (1.0 + 0.1 * double(step)));
}

int main(int argc, char** argv) {
  const int64_t n = 37, steps = 23;
  AveragerBank bank(n, DType::kF32);
  bank.add(LawaOptions(5).every(2));
  bank.add(LawaOptions(3).every(2).start(6));
  bank.add(LawaOptions(4));
  bank.add(EmaOptions(0.9));
  bank.add(SwaOptions().start(4));
  bank.add(PhemaOptions({0.05, 0.1}));
  std::vector<float> x(n);
  for (int64_t step = 0; step < steps; ++step) {
    for (int64_t i = 0; i < n; ++i) x[size_t(i)] = sample(step, i);
    bank.observe(step, x.data());
  }
  save_bank_state(argc > 1 ? argv[1] : "bank_state_format2.safetensors", bank);
  return 0;
}
