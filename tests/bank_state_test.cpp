// Bank state files: a format-2 state written before the averager kinds became classes
// (tests/data/bank_state_format2.safetensors, made by tests/data/make_bank_state_format2.cpp at
// 600a172) loads into today's bank, holds the values a naive fp64 reference gives, and continues
// bit-identically to an uninterrupted bank; states with Kaddour's EXP windows round-trip through a
// file and continue exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <memory>
#include <vector>

#include <unistd.h>

#include "wavg/core/bank.h"
#include "wavg/core/error.h"
#include "wavg/io/bank_state.h"
#include "wavg/io/safetensors.h"

using namespace wavg;

namespace {

// Must match tests/data/make_bank_state_format2.cpp.
float sample(int64_t step, int64_t i) {
  return float(std::sin(0.37 * double(step) + 1.3 * double(i)) * (1.0 + 0.1 * double(step)));
}

constexpr int64_t kN = 37, kSavedSteps = 23;

std::unique_ptr<AveragerBank> old_averagers() {
  auto bank = std::make_unique<AveragerBank>(kN, DType::kF32);
  bank->add(LawaOptions(5).every(2));
  bank->add(LawaOptions(3).every(2).start(6));
  bank->add(LawaOptions(4));
  bank->add(EmaOptions(0.9));
  bank->add(SwaOptions().start(4));
  bank->add(PhemaOptions({0.05, 0.1}));
  return bank;
}

void observe_range(AveragerBank& bank, int64_t from, int64_t to) {
  std::vector<float> x(kN);
  for (int64_t step = from; step < to; ++step) {
    for (int64_t i = 0; i < kN; ++i) x[size_t(i)] = sample(step, i);
    bank.observe(step, x.data());
  }
}

std::vector<double> value(const AveragerBank& bank, int a, int profile = 0) {
  std::vector<double> v(size_t(bank.shard_length()));
  bank.average(a, DType::kF64, v.data(), profile);
  return v;
}

// Mean of the samples at the given steps, in fp64.
std::vector<double> naive_mean(const std::vector<int64_t>& steps) {
  std::vector<double> v(kN, 0.0);
  for (int64_t s : steps)
    for (int64_t i = 0; i < kN; ++i) v[size_t(i)] += double(sample(s, i));
  for (double& x : v) x /= double(steps.size());
  return v;
}

std::string data_file() { return std::string(WAVG_TEST_DATA) + "/bank_state_format2.safetensors"; }

}  // namespace

TEST(BankStateFile, Format2FromBeforeTheKindClassesLoadsWithTheNaiveValues) {
  auto bank = old_averagers();
  load_bank_state(data_file(), *bank);
  EXPECT_EQ(bank->last_step(), kSavedSteps - 1);
  EXPECT_EQ(bank->samples(0), 12);  // steps 0, 2, …, 22
  auto near = [](const std::vector<double>& got, const std::vector<double>& want, double tol) {
    for (size_t i = 0; i < got.size(); ++i)
      if (std::abs(got[i] - want[i]) > tol * (1 + std::abs(want[i]))) return false;
    return true;
  };
  EXPECT_TRUE(near(value(*bank, 0), naive_mean({14, 16, 18, 20, 22}), 1e-12));
  EXPECT_TRUE(near(value(*bank, 1), naive_mean({18, 20, 22}), 1e-12));
  EXPECT_TRUE(near(value(*bank, 2), naive_mean({19, 20, 21, 22}), 1e-12));
  std::vector<int64_t> swa;
  for (int64_t s = 4; s < kSavedSteps; ++s) swa.push_back(s);
  EXPECT_TRUE(near(value(*bank, 4), naive_mean(swa), 1e-12));
  std::vector<double> ema(kN);
  for (int64_t s = 0; s < kSavedSteps; ++s)
    for (int64_t i = 0; i < kN; ++i)
      ema[size_t(i)] = s == 0 ? sample(0, i) : 0.9 * ema[size_t(i)] + 0.1 * sample(s, i);
  EXPECT_TRUE(near(value(*bank, 3), ema, 1e-5));  // fp32 state
}

TEST(BankStateFile, Format2FromBeforeTheKindClassesContinuesBitIdentically) {
  auto straight = old_averagers(), loaded = old_averagers();
  observe_range(*straight, 0, 41);
  load_bank_state(data_file(), *loaded);
  observe_range(*loaded, kSavedSteps, 41);
  for (int a = 0; a < straight->size(); ++a)
    for (int p = 0; p < straight->profiles(a); ++p)
      EXPECT_EQ(value(*straight, a, p), value(*loaded, a, p)) << straight->name(a) << " " << p;
}

// tests/data/bank_state_before_typed_options.safetensors (made by
// tests/data/make_bank_state_before_typed_options.cpp at ea00c8c, while banks took the generic
// AveragerOptions bag): every kind, shared rings, names, a 17-digit β.
namespace {

// Must match tests/data/make_bank_state_before_typed_options.cpp.
float sample_v3(int64_t step, int64_t i) {
  return float(std::cos(0.29 * double(step) - 0.7 * double(i)) * (2.0 - 0.05 * double(step)) +
               0.01 * double(i));
}

constexpr int64_t kN3 = 41, kSaved3 = 27;

std::unique_ptr<AveragerBank> bank_before_typed_options() {
  auto bank = std::make_unique<AveragerBank>(kN3, DType::kF32);
  bank->add(LawaOptions(5).every(2));
  bank->add(LawaOptions(3).every(2).start(6).name("late_lawa"));
  bank->add(LawaExpOptions(4, 0.3).every(2));
  bank->add(LawaOptions(4).every(3));
  bank->add(EmaOptions(0.98765432109876543));
  bank->add(EmaOptions(0.5).every(4).start(3).name("ema_fast"));
  bank->add(SwaOptions().every(2).start(4));
  bank->add(PhemaOptions({0.05, 0.1, 0.2}));
  return bank;
}

void observe_v3(AveragerBank& bank, int64_t from, int64_t to) {
  std::vector<float> x(kN3);
  for (int64_t step = from; step < to; ++step) {
    for (int64_t i = 0; i < kN3; ++i) x[size_t(i)] = sample_v3(step, i);
    bank.observe(step, x.data());
  }
}

// Σ w_s x_s / Σ w_s over the given steps, in fp64.
std::vector<double> naive_weighted(const std::vector<int64_t>& steps, const std::vector<double>& w) {
  std::vector<double> v(kN3, 0.0);
  double total = 0;
  for (size_t k = 0; k < steps.size(); ++k) {
    total += w[k];
    for (int64_t i = 0; i < kN3; ++i) v[size_t(i)] += w[k] * double(sample_v3(steps[k], i));
  }
  for (double& x : v) x /= total;
  return v;
}

std::vector<double> naive_ema(double beta, int64_t every, int64_t start, int64_t last) {
  std::vector<double> e(kN3);
  bool first = true;
  for (int64_t s = start; s <= last; ++s) {
    if (s % every != 0) continue;
    for (int64_t i = 0; i < kN3; ++i)
      e[size_t(i)] = first ? sample_v3(s, i) : beta * e[size_t(i)] + (1 - beta) * sample_v3(s, i);
    first = false;
  }
  return e;
}

bool near(const std::vector<double>& got, const std::vector<double>& want, double tol) {
  for (size_t i = 0; i < got.size(); ++i)
    if (std::abs(got[i] - want[i]) > tol * (1 + std::abs(want[i]))) return false;
  return got.size() == want.size();
}

std::string typed_options_file() {
  return std::string(WAVG_TEST_DATA) + "/bank_state_before_typed_options.safetensors";
}

}  // namespace

TEST(BankStateFile, StateFromBeforeTheTypedOptionsLoadsWithTheNaiveValues) {
  auto bank = bank_before_typed_options();
  load_bank_state(typed_options_file(), *bank);
  EXPECT_EQ(bank->last_step(), kSaved3 - 1);
  EXPECT_EQ(bank->name(1), "late_lawa");
  EXPECT_EQ(bank->name(5), "ema_fast");
  const std::vector<double> ones(5, 1.0);
  EXPECT_TRUE(near(value(*bank, 0), naive_weighted({18, 20, 22, 24, 26}, ones), 1e-12));
  EXPECT_TRUE(near(value(*bank, 1), naive_weighted({22, 24, 26}, ones), 1e-12));
  // EXP k = 4, α = 0.3: weights (0.7)^3, (0.7)^2, 0.7, 1, oldest first.
  EXPECT_TRUE(near(value(*bank, 2), naive_weighted({20, 22, 24, 26}, {0.343, 0.49, 0.7, 1.0}),
                   1e-12));
  EXPECT_TRUE(near(value(*bank, 3), naive_weighted({15, 18, 21, 24}, ones), 1e-12));
  EXPECT_TRUE(near(value(*bank, 4), naive_ema(0.98765432109876543, 1, 0, 26), 1e-5));
  EXPECT_TRUE(near(value(*bank, 5), naive_ema(0.5, 4, 3, 26), 1e-5));
  std::vector<int64_t> swa;
  for (int64_t s = 4; s < kSaved3; s += 2) swa.push_back(s);
  EXPECT_TRUE(near(value(*bank, 6), naive_weighted(swa, std::vector<double>(swa.size(), 1.0)),
                   1e-12));
  EXPECT_EQ(bank->profiles(7), 3);
}

TEST(BankStateFile, StateFromBeforeTheTypedOptionsContinuesBitIdentically) {
  auto straight = bank_before_typed_options(), loaded = bank_before_typed_options();
  observe_v3(*straight, 0, 50);
  load_bank_state(typed_options_file(), *loaded);
  observe_v3(*loaded, kSaved3, 50);
  for (int a = 0; a < straight->size(); ++a)
    for (int p = 0; p < straight->profiles(a); ++p)
      EXPECT_EQ(value(*straight, a, p), value(*loaded, a, p)) << straight->name(a) << " " << p;
}

TEST(BankStateFile, ExpWindowsRoundTripThroughAFileAndContinueExactly) {
  auto make = [] {
    auto bank = std::make_unique<AveragerBank>(kN, DType::kF32);
    bank->add(LawaOptions(3).every(2));
    bank->add(LawaExpOptions(6, 0.3).every(2));  // shares the ν = 2 ring, widens it
    bank->add(LawaExpOptions(40, 0.05).start(5));
    bank->add(EmaOptions(0.8));
    return bank;
  };
  auto straight = make(), first = make(), second = make();
  observe_range(*straight, 0, 60);
  observe_range(*first, 0, 31);
  const std::string path =
      (std::filesystem::temp_directory_path() / ("wavg_bank_state_test_" +
                                                 std::to_string(::getpid()) + ".safetensors"))
          .string();
  save_bank_state(path, *first);
  load_bank_state(path, *second);
  std::filesystem::remove(path);
  observe_range(*second, 31, 60);
  for (int a = 0; a < straight->size(); ++a)
    EXPECT_EQ(value(*straight, a), value(*second, a)) << straight->name(a);
  // A bank whose EXP has another α refuses the file, naming both specs.
  auto other = std::make_unique<AveragerBank>(kN, DType::kF32);
  other->add(LawaOptions(3).every(2));
  other->add(LawaExpOptions(6, 0.4).every(2));
  other->add(LawaExpOptions(40, 0.05).start(5));
  other->add(EmaOptions(0.8));
  save_bank_state(path, *first);
  try {
    load_bank_state(path, *other);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("lawa_exp|6|0|2|0|0.3"), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
}

// Issue 21 §1.4: every counter and array of a bank state is checked before the bank changes; a
// state whose ring count is negative, huge or below a window's sample count reached
// SampleRing::at as an index (abort or SIGSEGV). Each case rewrites one field of a valid state and
// expects one wavg::Error naming the file and the field, with the bank left as it was.
namespace {

struct Tamper {
  const char* name;   // the test's name
  const char* key;    // a metadata key to set, or a tensor to replace
  const char* value;  // the metadata value; nullptr: the tensor is replaced by `dtype`/`numel`
  DType dtype;
  int64_t numel;
  const char* field;  // what the error must name
};

std::unique_ptr<AveragerBank> checked_bank() {
  auto bank = std::make_unique<AveragerBank>(kN, DType::kF32);
  bank->add(LawaOptions(3).every(2));         // ring 0 (ν = 2), 16 samples after steps 0..30
  bank->add(LawaExpOptions(6, 0.3).every(2));  // the same ring
  bank->add(EmaOptions(0.8));
  bank->add(SwaOptions().start(4));            // 27 samples (steps 4..30)
  return bank;
}

std::string temp_path(const std::string& tag) {
  return (std::filesystem::temp_directory_path() /
          ("wavg_bank_check_" + tag + "_" + std::to_string(::getpid()) + ".safetensors"))
      .string();
}

// A valid state of checked_bank() after steps 0..30, with one field rewritten.
std::string tampered_state(const Tamper& t) {
  auto bank = checked_bank();
  observe_range(*bank, 0, 31);
  const std::string path = temp_path(t.name);
  std::map<std::string, std::string> meta = bank->state_meta();
  std::vector<TensorOut> outs;
  std::vector<std::vector<unsigned char>> keep;
  for (const StateArray& a : bank->state_arrays()) {
    if (t.value == nullptr && a.name == t.key) {
      keep.emplace_back(size_t(t.numel) * dtype_size(t.dtype), 0);
      outs.push_back({a.name, t.dtype, {t.numel}, keep.back().data()});
    } else {
      outs.push_back({a.name, a.dtype, {a.numel}, a.data});
    }
  }
  if (t.value != nullptr) meta[t.key] = t.value;
  write_safetensors(path, outs, meta);
  return path;
}

class BankStateCheck : public ::testing::TestWithParam<Tamper> {};

TEST_P(BankStateCheck, NamesTheFileAndTheFieldAndLeavesTheBankAsItWas) {
  const Tamper& t = GetParam();
  const std::string path = tampered_state(t);
  auto bank = checked_bank();
  try {
    load_bank_state(path, *bank);
    FAIL() << "expected an error for " << t.key << " = " << (t.value ? t.value : "(tensor)");
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(path), std::string::npos) << what;
    EXPECT_NE(what.find(t.field), std::string::npos) << what;
  }
  EXPECT_THROW(check_bank_state(path, *bank), Error);
  for (int a = 0; a < bank->size(); ++a) EXPECT_EQ(bank->samples(a), 0) << bank->name(a);
  EXPECT_EQ(bank->last_step(), -1);
  std::filesystem::remove(path);
}

const Tamper kTampers[] = {
    {"RingCountNegative", "ring.0.count", "-1", DType::kF32, 0, "'ring.0.count' is -1"},
    {"RingCountHuge", "ring.0.count", "9223372036854775807", DType::kF32, 0, "'ring.0.count'"},
    {"RingCountBelowAWindowsSamples", "ring.0.count", "15", DType::kF32, 0,
     "'ring.0.count' is 15, outside [16, 16]"},
    {"RingCountAboveItsSampledSteps", "ring.0.count", "17", DType::kF32, 0, "'ring.0.count'"},
    {"RingCountNotAnInteger", "ring.0.count", "3x", DType::kF32, 0, "'ring.0.count'"},
    {"SamplesNegative", "averager.2.samples", "-3", DType::kF32, 0, "'averager.2.samples'"},
    {"SamplesAboveSampledSteps", "averager.3.samples", "28", DType::kF32, 0,
     "'averager.3.samples' is 28, outside [0, 27]"},
    {"LastStepBelowMinusOne", "bank.last_step", "-2", DType::kF32, 0, "'bank.last_step'"},
    {"LastStepBeforeTheSamples", "bank.last_step", "3", DType::kF32, 0, "'averager.0.samples'"},
    {"NumelOfAnotherModel", "bank.numel", "38", DType::kF32, 0, "numel 38"},
    {"ShardOffset", "bank.shard_offset", "1", DType::kF32, 0, "shard"},
    {"AveragerCount", "bank.averagers", "5", DType::kF32, 0, "has 5 averagers"},
    {"RingTensorShort", "ring.0", nullptr, DType::kF32, kN, "'ring.0'"},
    {"EmaTensorWrongDtype", "averager.2.ema", nullptr, DType::kF64, kN, "'averager.2.ema'"},
    {"SwaTensorLong", "averager.3.sum", nullptr, DType::kF64, kN + 1, "'averager.3.sum'"},
};

INSTANTIATE_TEST_SUITE_P(Fields, BankStateCheck, ::testing::ValuesIn(kTampers),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace

TEST(BankStateFile, AnUntamperedStateStillLoads) {
  const std::string path = tampered_state({"Untampered", "wavg.test", "1", DType::kF32, 0, ""});
  auto bank = checked_bank();
  load_bank_state(path, *bank);
  EXPECT_EQ(bank->samples(0), 16);
  EXPECT_EQ(bank->samples(3), 27);
  EXPECT_EQ(bank->last_step(), 30);
  std::filesystem::remove(path);
}
