// The bank that fuzz_bank_state loads its inputs into, and that make_bank_state_corpus.cpp writes
// the seed states of: two rings (ν = 2 shared by a LAWA and an EXP window, ν = 1 with a later
// start), EMA, SWA and post-hoc EMA, over 6 fp32 elements.
#pragma once

#include <memory>

#include "wavg/core/bank.h"

inline std::unique_ptr<wavg::AveragerBank> fuzz_bank() {
  using namespace wavg;
  auto bank = std::make_unique<AveragerBank>(6, DType::kF32);
  bank->add(LawaOptions(3).every(2));
  bank->add(LawaExpOptions(4, 0.3).every(2));
  bank->add(LawaOptions(2).start(3));
  bank->add(EmaOptions(0.8));
  bank->add(SwaOptions().start(2));
  bank->add(PhemaOptions({0.05, 0.1}));
  return bank;
}
