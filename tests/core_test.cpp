// Tests of core/: every averager against a naive fp64 reference, the sampling rule, horizon units,
// 16-bit conversions against brute-force rounding, banks, shards, drift and exact state.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <deque>
#include <random>

#include "wavg/core/averager.h"
#include "wavg/core/bank.h"
#include "wavg/core/dtype.h"
#include "wavg/core/error.h"
#include "wavg/core/parallel.h"  // internal: the thread pool
#include "wavg/core/phema.h"

using namespace wavg;

namespace {

// ---- references -------------------------------------------------------------------------------

// Naive fp64 averager over whole samples, straight from DESIGN.md §2's table.
struct NaiveAverager {
  SchemeOptions o;
  std::vector<std::vector<double>> samples;  // every sample taken, in order
  void observe(int64_t step, const std::vector<double>& x) {
    if (step >= o.start() && step % o.every() == 0) samples.push_back(x);
  }
  std::vector<double> value() const {
    const size_t n = samples.size(), dim = samples[0].size();
    std::vector<double> v(dim, 0.0);
    if (const auto* e = o.as<EmaOptions>()) {
      const double beta = e->beta();
      v = samples[0];
      for (size_t k = 1; k < n; ++k)
        for (size_t i = 0; i < dim; ++i) v[i] = beta * v[i] + (1 - beta) * samples[k][i];
      return v;
    }
    if (const auto* x = o.as<LawaExpOptions>()) {
      // Kaddour's EXP: over the last m samples, x_{n−m+i} weighs (1 − α)^(m−i), i = 1..m.
      const size_t m = std::min(n, size_t(x->window()));
      double total = 0;
      for (size_t i = 1; i <= m; ++i) {
        const double w = std::pow(1.0 - x->alpha(), double(m - i));
        total += w;
        for (size_t d = 0; d < dim; ++d) v[d] += w * samples[n - m + i - 1][d];
      }
      for (double& x : v) x /= total;
      return v;
    }
    const auto* lawa = o.as<LawaOptions>();
    const size_t first = lawa && n > size_t(lawa->window()) ? n - size_t(lawa->window()) : 0;
    for (size_t k = first; k < n; ++k)
      for (size_t i = 0; i < dim; ++i) v[i] += samples[k][i];
    for (double& x : v) x /= double(n - first);
    return v;
  }
};

// Nearest value of a sorted list of candidates, ties to the one with even bits.
template <typename Bits>
Bits nearest(double x, const std::vector<std::pair<double, Bits>>& sorted) {
  auto it = std::lower_bound(sorted.begin(), sorted.end(), std::make_pair(x, Bits(0)),
                             [](const auto& a, const auto& b) { return a.first < b.first; });
  if (it == sorted.begin()) return it->second;
  if (it == sorted.end()) return (it - 1)->second;
  const auto lo = *(it - 1), hi = *it;
  const double dl = x - lo.first, dh = hi.first - x;
  if (dl < dh) return lo.second;
  if (dh < dl) return hi.second;
  return (lo.second & 1) ? hi.second : lo.second;
}

std::vector<double> to_doubles(DType t, const std::vector<unsigned char>& bytes, size_t n) {
  std::vector<double> out(n);
  dispatch_floating(t, [&](auto tag) {
    using T = decltype(tag);
    const T* p = reinterpret_cast<const T*>(bytes.data());
    for (size_t i = 0; i < n; ++i) out[i] = load_f64(p[i]);
  });
  return out;
}

// Fills a sample of dtype t with random values; returns them exactly as stored (as doubles).
std::vector<double> random_sample(DType t, size_t n, std::mt19937_64& rng,
                                  std::vector<unsigned char>* bytes, double scale = 1.0) {
  std::normal_distribution<double> dist(0.0, scale);
  bytes->assign(n * dtype_size(t), 0);
  dispatch_floating(t, [&](auto tag) {
    using T = decltype(tag);
    T* p = reinterpret_cast<T*>(bytes->data());
    for (size_t i = 0; i < n; ++i) p[i] = store_as<T>(dist(rng));
  });
  return to_doubles(t, *bytes, n);
}

std::vector<double> bank_value(const AveragerBank& bank, int i) {
  std::vector<double> v(size_t(bank.shard_length()));
  bank.average(i, DType::kF64, v.data());
  return v;
}

// Largest |got - want| relative to max(scale, |want|).
double max_rel_err(const std::vector<double>& got, const std::vector<double>& want,
                   double scale = 1.0) {
  double err = 0;
  for (size_t i = 0; i < got.size(); ++i)
    err = std::max(err, std::abs(got[i] - want[i]) / std::max(scale, std::abs(want[i])));
  return err;
}

}  // namespace

// ---- dtype ------------------------------------------------------------------------------------

TEST(DType, HalfRoundTripsEveryBitPattern) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const Half h{uint16_t(b)};
    const float f = to_float(h);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(to_float(to_half(f))));
      continue;
    }
    EXPECT_EQ(to_half(f).bits, h.bits) << "bits " << b;
  }
}

TEST(DType, HalfDecodesKnownValues) {
  EXPECT_EQ(to_float(Half{0x3c00}), 1.0f);
  EXPECT_EQ(to_float(Half{0xc000}), -2.0f);
  EXPECT_EQ(to_float(Half{0x7bff}), 65504.0f);
  EXPECT_EQ(to_float(Half{0x0001}), std::ldexp(1.0f, -24));
  EXPECT_TRUE(std::isinf(to_float(Half{0x7c00})));
}

TEST(DType, HalfRoundsToNearestEvenLikeBruteForce) {
  std::vector<std::pair<double, uint16_t>> finite;
  for (uint32_t b = 0; b < 65536; ++b) {
    const float f = to_float(Half{uint16_t(b)});
    if (std::isfinite(f) && !(f == 0 && (b & 0x8000))) finite.push_back({f, uint16_t(b)});
  }
  finite.push_back({65536.0, 0x7c00});  // +inf sits where the next binade would start (IEEE 754)
  std::sort(finite.begin(), finite.end());
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> exp(-26, 16);
  for (int k = 0; k < 200000; ++k) {
    const float x = float(std::ldexp(1.0, 0) * std::exp2(exp(rng)));
    const uint16_t want = nearest<uint16_t>(x, finite);
    EXPECT_EQ(to_half(x).bits, want) << "x=" << x;
    // halfway cases: exactly between two neighbours
    if (k < 2000) {
      const size_t i = size_t(k % (finite.size() - 1));
      if (finite[i].first < 0 || finite[i + 1].first > 65504) continue;
      const double mid = 0.5 * (finite[i].first + finite[i + 1].first);
      if (float(mid) != mid) continue;
      EXPECT_EQ(to_half(float(mid)).bits, nearest<uint16_t>(mid, finite)) << "mid=" << mid;
    }
  }
  EXPECT_EQ(to_half(70000.0f).bits, 0x7c00);  // overflow to inf
}

TEST(DType, BFloat16RoundsToNearestEven) {
  std::mt19937 rng(2);
  for (int k = 0; k < 200000; ++k) {
    const uint32_t u = rng() & 0x7f7fffffu;  // finite, positive, not max exponent
    const float x = bits_to_float(u);
    const uint16_t lo = uint16_t(u >> 16), hi = uint16_t(lo + 1);
    // +inf sits where the next binade would start, 2^128 (IEEE 754 overflow rounding)
    const double hi_value = hi == 0x7f80 ? std::ldexp(1.0, 128) : to_float(BFloat16{hi});
    const double dl = double(x) - to_float(BFloat16{lo}), dh = hi_value - double(x);
    const uint16_t want = dl < dh ? lo : dh < dl ? hi : ((lo & 1) ? hi : lo);
    EXPECT_EQ(to_bf16(x).bits, want) << "x=" << x;
  }
  EXPECT_TRUE(std::isnan(to_float(to_bf16(std::nanf("")))));
}

// ---- quoting untrusted bytes ----------------------------------------------------------------------

TEST(QuoteBytes, KeepsPrintableUtf8AndEscapesEverythingElse) {
  EXPECT_EQ(quote_bytes("net.fc1.weight"), "net.fc1.weight");
  EXPECT_EQ(quote_bytes("caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80"),
            "caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80");  // é, 日, 😀 kept
  EXPECT_EQ(quote_bytes("a\xff"), "a\\xff");
  EXPECT_EQ(quote_bytes(std::string("x\n\t\x01\x7f", 5)), "x\\x0a\\x09\\x01\\x7f");
  EXPECT_EQ(quote_bytes(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(quote_bytes("back\\slash"), "back\\x5cslash");  // unambiguous: '\' itself escaped
  EXPECT_EQ(quote_bytes("\xc0\xaf"), "\\xc0\\xaf");                  // overlong '/'
  EXPECT_EQ(quote_bytes("\xed\xa0\x80"), "\\xed\\xa0\\x80");        // a UTF-16 surrogate
  EXPECT_EQ(quote_bytes("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");  // above U+10FFFF
  EXPECT_EQ(quote_bytes("\xe2\x82z"), "\\xe2\\x82z");                // cut sequence
  EXPECT_EQ(quote_bytes("\xc2\x85"), "\\xc2\\x85");                  // C1 control (NEL)
  EXPECT_EQ(quote_bytes("a\xe2\x80\xae" "b"), "a\\xe2\\x80\\xaeb");     // U+202E, right-to-left
}

TEST(QuoteBytes, BoundsTheLengthWithoutCuttingAnEscapeOrACharacter) {
  EXPECT_EQ(quote_bytes(std::string(100, 'x'), 10), std::string(10, 'x') + "...");
  EXPECT_EQ(quote_bytes(std::string(10, 'x'), 10), std::string(10, 'x'));
  EXPECT_EQ(quote_bytes("abcdefgh\xff", 10), "abcdefgh...");  // the escape would need 4
  EXPECT_EQ(quote_bytes("abcdef\xff", 10), "abcdef\\xff");
  EXPECT_EQ(quote_bytes("\xc3\xa9\xc3\xa9\xc3\xa9", 2), "\xc3\xa9\xc3\xa9...");
  EXPECT_EQ(quote_bytes(std::string(1000, '\xff')).size(), 64u + 3u);
}

// ---- options, sampling, horizons ----------------------------------------------------------------

// Error text of f(), or "no error".
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(Averager, TypedSettersRejectBadValuesAtOnceNamingTheValue) {
  EXPECT_EQ(error_of([] { EmaOptions(1.5); }), "ema: beta must be in [0, 1), got 1.5");
  EXPECT_EQ(error_of([] { EmaOptions(1.0); }), "ema: beta must be in [0, 1), got 1");
  EXPECT_EQ(error_of([] { EmaOptions(std::nan("")); }), "ema: beta must be in [0, 1), got nan");
  EXPECT_EQ(error_of([] { EmaOptions(0.5).beta(-0.1); }), "ema: beta must be in [0, 1), got -0.1");
  EXPECT_EQ(error_of([] { LawaOptions(0); }), "lawa: window (L) must be >= 1, got 0");
  EXPECT_EQ(error_of([] { LawaOptions(3).window(-4); }), "lawa: window (L) must be >= 1, got -4");
  EXPECT_EQ(error_of([] { SwaOptions().every(0); }), "swa: every (nu) must be >= 1, got 0");
  EXPECT_EQ(error_of([] { LawaOptions(3).start(-2); }), "lawa: start must be >= 0, got -2");
  EXPECT_EQ(error_of([] { EmaOptions(0.9).every(-1); }), "ema: every (nu) must be >= 1, got -1");
  EXPECT_EQ(error_of([] { EmaOptions(0.0).every(3).start(5); }), "no error");
}

TEST(Averager, TypedOptionsChainAndSchemeOptionsHoldOneOfThem) {
  const LawaOptions lawa = LawaOptions(20).every(16).start(100).name("x");
  EXPECT_EQ(lawa.window(), 20);
  EXPECT_EQ(lawa.every(), 16);
  EXPECT_EQ(lawa.start(), 100);
  EXPECT_EQ(lawa.name(), "x");
  const SchemeOptions g = lawa;
  EXPECT_EQ(g.scheme(), Scheme::kLawa);
  ASSERT_NE(g.as<LawaOptions>(), nullptr);
  EXPECT_EQ(g.as<EmaOptions>(), nullptr);
  EXPECT_EQ(g.as<LawaOptions>()->window(), 20);
  EXPECT_EQ(window_of(g), 20);
  EXPECT_EQ(g.every(), 16);
  EXPECT_EQ(g.start(), 100);
  EXPECT_EQ(g.name(), "x");
  SchemeOptions e = EmaOptions(0.9).every(16);
  EXPECT_EQ(e.scheme(), Scheme::kEma);
  EXPECT_EQ(e.as<EmaOptions>()->beta(), 0.9);
  EXPECT_EQ(window_of(e), 0);
  EXPECT_EQ(e.every(), 16);
  EXPECT_EQ(e.start(), 0);
  EXPECT_EQ(e.name(), "");
  e.name("slow");
  EXPECT_EQ(e.as<EmaOptions>()->name(), "slow");
  const SchemeOptions s = SwaOptions().every(4).start(500);
  EXPECT_EQ(s.scheme(), Scheme::kSwa);
  EXPECT_EQ(s.every(), 4);
  EXPECT_EQ(s.start(), 500);
  const SchemeOptions p = PhemaOptions({0.05, 0.2});
  EXPECT_EQ(p.scheme(), Scheme::kPhema);
  EXPECT_EQ(p.as<PhemaOptions>()->sigma_rels(), (std::vector<double>{0.05, 0.2}));
  // A failed setter leaves the options as they were.
  LawaOptions o(5);
  EXPECT_THROW(o.every(0), Error);
  EXPECT_EQ(o.every(), 1);
}

TEST(Averager, EachSettersMessageNamesTheSchemeAndTheValue) {
  EXPECT_EQ(error_of([] { EmaOptions(1.5); }), "ema: beta must be in [0, 1), got 1.5");
  EXPECT_EQ(error_of([] { LawaOptions(0); }), "lawa: window (L) must be >= 1, got 0");
  EXPECT_EQ(error_of([] { LawaOptions(3).start(-2); }), "lawa: start must be >= 0, got -2");
  EXPECT_EQ(error_of([] { SwaOptions().every(0); }), "swa: every (nu) must be >= 1, got 0");
  EXPECT_EQ(error_of([] { PhemaOptions({0.1, 0.1}); }), "phema: sigma_rel 0.1 is listed twice");
  EXPECT_EQ(error_of([] { SwaOptions().every(2); }), "no error");
}

TEST(Averager, SamplingRule) {
  EXPECT_TRUE(samples_at(4, 0, 0));  // step 0 (the initialisation) when start == 0
  EXPECT_FALSE(samples_at(4, 0, 3));
  EXPECT_TRUE(samples_at(4, 0, 8));
  EXPECT_FALSE(samples_at(4, 10, 8));
  EXPECT_FALSE(samples_at(4, 10, 10));  // 10 is not a multiple of 4
  EXPECT_TRUE(samples_at(4, 10, 12));
}

TEST(Averager, HorizonUnits) {
  // β = 0.5^(ν/h): after h steps (h/ν samples) the weight of a sample halves.
  const double beta = ema_beta_for_half_life(/*half_life=*/200, /*every=*/8);
  EXPECT_NEAR(std::pow(beta, 200.0 / 8.0), 0.5, 1e-12);
  EXPECT_NEAR(ema_half_life(beta, 8), 200.0, 1e-9);
  // ν·L/T = 1 % of T = 10000 with ν = 5 gives L = 20.
  EXPECT_EQ(lawa_window_for_horizon(0.01, 5, 10000), 20);
  EXPECT_DOUBLE_EQ(lawa_horizon(20, 5, 10000), 0.01);
  EXPECT_EQ(lawa_window_for_horizon(1e-9, 5, 100), 1);  // at least one sample
  EXPECT_THROW(lawa_window_for_horizon(0.0, 5, 100), Error);
  EXPECT_THROW(ema_beta_for_half_life(-1, 1), Error);
  EXPECT_NE(describe(EmaOptions(0.9).every(64)).find("half-life"), std::string::npos);
}

TEST(Averager, DefaultNames) {
  EXPECT_EQ(default_name(LawaOptions(20).every(16)), "lawa_L20_nu16");
  EXPECT_EQ(default_name(EmaOptions(0.9).every(64)), "ema_b0.9_nu64");
  EXPECT_EQ(default_name(SwaOptions().start(500)), "swa_nu1_s500");
  EXPECT_EQ(default_name(LawaExpOptions(20, 0.1).every(4)), "lawa_exp_k20_a0.1_nu4");
  EXPECT_EQ(default_name(LawaExpOptions(5, 0.25).start(30)), "lawa_exp_k5_a0.25_nu1_s30");
}

// ---- offline weights --------------------------------------------------------------------------

TEST(OfflineWeights, MatchEasyCases) {
  // β = 0 copies the last sample; L = 1 is the last sample; SWA is uniform.
  EXPECT_EQ(offline_weights(EmaOptions(0.0), 4), (std::vector<double>{0, 0, 0, 1}));
  EXPECT_EQ(offline_weights(LawaOptions(1), 3), (std::vector<double>{0, 0, 1}));
  EXPECT_EQ(offline_weights(LawaOptions(2).every(2), 5),
            (std::vector<double>{0, 0, 0.5, 0, 0.5}));
  EXPECT_EQ(offline_weights(SwaOptions().start(2), 4), (std::vector<double>{0, 0, 0.5, 0.5}));
  const auto w = offline_weights(EmaOptions(0.5), 3);  // e = .25 x0 + .25 x1 + .5 x2
  EXPECT_EQ(w, (std::vector<double>{0.25, 0.25, 0.5}));
  EXPECT_THROW(offline_weights(LawaOptions(2).start(10), 5), Error);
}

// ---- bank vs the naive reference -----------------------------------------------------------------

class BankVsNaive : public ::testing::TestWithParam<DType> {};

TEST_P(BankVsNaive, RandomHyperparametersAndSequences) {
  const DType dtype = GetParam();
  std::mt19937_64 rng(42 + int(dtype));
  for (int trial = 0; trial < 12; ++trial) {
    const size_t n = 1 + rng() % 300;
    AveragerBank bank(int64_t(n), dtype);
    std::vector<NaiveAverager> naive;
    const int count = 1 + int(rng() % 6);
    for (int a = 0; a < count; ++a) {
      SchemeOptions o = SwaOptions();
      const int kind = int(rng() % 4);
      const int64_t every = 1 + int64_t(rng() % 4), start = int64_t(rng() % 3) * 3;
      if (kind == 3)
        o = LawaExpOptions(1 + int64_t(rng() % 9), double(1 + rng() % 999) / 1000.0)
                .every(every)
                .start(start);
      if (kind == 0) o = LawaOptions(1 + int64_t(rng() % 7)).every(every).start(start);
      if (kind == 1) o = EmaOptions(double(rng() % 1000) / 1000.0).every(every).start(start);
      if (kind == 2) o = SwaOptions().every(every).start(start);
      o.name("a" + std::to_string(a));
      bank.add(o);
      naive.push_back({o, {}});
    }
    std::vector<unsigned char> bytes;
    for (int64_t step = 0; step < 60; ++step) {
      const auto x = random_sample(dtype, n, rng, &bytes, 1.0 + double(step));
      bank.observe(step, bytes.data());
      for (auto& r : naive) r.observe(step, x);
      for (int a = 0; a < count; ++a) {
        ASSERT_EQ(bank.empty(a), naive[a].samples.empty());
        ASSERT_EQ(bank.samples(a), int64_t(naive[a].samples.size()));
        if (bank.empty(a)) continue;
        // EMA keeps fp32 state: error relative to the samples' scale (1 + step).
        const double tol = naive[a].o.scheme() == Scheme::kEma ? 1e-6 : 1e-11;
        ASSERT_LT(max_rel_err(bank_value(bank, a), naive[a].value(), 1.0 + double(step)), tol)
            << describe(naive[a].o) << " step " << step;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, BankVsNaive,
                         ::testing::Values(DType::kF32, DType::kF64, DType::kF16, DType::kBF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(Bank, EasyCases) {
  AveragerBank bank(3, DType::kF32);
  const int copy = bank.add(EmaOptions(0.0));
  const int last = bank.add(LawaOptions(1));
  const int swa = bank.add(SwaOptions());
  const int lawa2 = bank.add(LawaOptions(2));
  const float xs[3][3] = {{1, 2, 3}, {5, 5, 5}, {7, 2, 0}};
  for (int s = 0; s < 3; ++s) bank.observe(s, xs[s]);
  float out[3];
  bank.average(copy, DType::kF32, out);
  EXPECT_EQ(std::vector<float>(out, out + 3), (std::vector<float>{7, 2, 0}));
  bank.average(last, DType::kF32, out);
  EXPECT_EQ(std::vector<float>(out, out + 3), (std::vector<float>{7, 2, 0}));
  bank.average(swa, DType::kF32, out);
  EXPECT_EQ(std::vector<float>(out, out + 3), (std::vector<float>{13.f / 3, 3, 8.f / 3}));
  bank.average(lawa2, DType::kF32, out);
  EXPECT_EQ(std::vector<float>(out, out + 3), (std::vector<float>{6, 3.5, 2.5}));
  EXPECT_TRUE(bank.full(lawa2));
}

TEST(Bank, SwaOfAConstantIsTheConstant) {
  AveragerBank bank(4, DType::kBF16);
  bank.add(SwaOptions());
  const BFloat16 c = to_bf16(0.3f);
  std::vector<BFloat16> x(4, c);
  for (int s = 0; s < 1000; ++s) bank.observe(s, x.data());
  float out[4];
  bank.average(0, DType::kF32, out);
  for (float v : out) EXPECT_EQ(v, to_float(c));
}

TEST(Bank, EmptyAveragerRefusesEvaluation) {
  AveragerBank bank(2, DType::kF32);
  bank.add(LawaOptions(3).every(10).start(100));
  const float x[2] = {1, 2};
  bank.observe(0, x);
  float out[2];
  EXPECT_TRUE(bank.empty(0));
  try {
    bank.average(0, DType::kF32, out);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("empty"), std::string::npos);
  }
  bank.observe(100, x);
  EXPECT_FALSE(bank.empty(0));
  EXPECT_FALSE(bank.full(0));
}

TEST(Bank, LawaFullFlag) {
  AveragerBank bank(1, DType::kF32);
  bank.add(LawaOptions(3).every(2));
  const float x = 1;
  for (int s = 0; s <= 4; ++s) bank.observe(s, &x);  // samples at 0, 2, 4
  EXPECT_EQ(bank.samples(0), 3);
  EXPECT_TRUE(bank.full(0));
}

TEST(Bank, RefusesNonFiniteSamplesAndStaysUnchanged) {
  AveragerBank bank(6, DType::kF32);
  bank.set_layout({{"w", 0, 4}, {"b", 4, 2}});
  bank.add(EmaOptions(0.5));
  bank.add(LawaOptions(2));
  const float a[6] = {1, 2, 3, 4, 5, 6};
  bank.observe(0, a);
  const auto before0 = bank_value(bank, 0), before1 = bank_value(bank, 1);
  float b[6] = {1, 2, 3, 4, 5, std::nanf("")};
  try {
    bank.observe(1, b);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "non-finite sample (nan) in tensor 'b' element 1 at step 1: refused");
  }
  EXPECT_EQ(bank_value(bank, 0), before0);
  EXPECT_EQ(bank_value(bank, 1), before1);
  EXPECT_EQ(bank.samples(0), 1);
  b[5] = 6;
  b[0] = INFINITY;
  EXPECT_THROW(bank.observe(2, b), Error);
}

TEST(Bank, StepsMustIncrease) {
  AveragerBank bank(1, DType::kF32);
  bank.add(SwaOptions());
  const float x = 1;
  bank.observe(5, &x);
  EXPECT_THROW(bank.observe(5, &x), Error);
  EXPECT_THROW(bank.observe(3, &x), Error);
}

TEST(Bank, RejectsDuplicateNamesAndLateAdds) {
  AveragerBank bank(1, DType::kF32);
  bank.add(LawaOptions(2));
  EXPECT_THROW(bank.add(LawaOptions(2)), Error);
  const float x = 1;
  bank.observe(0, &x);
  EXPECT_THROW(bank.add(LawaOptions(3)), Error);
}

// Passive averagers: a bank gives bit-identical results to separate single-averager banks.
TEST(Bank, ManyAveragersEqualSeparateRunsBitExactly) {
  const std::vector<SchemeOptions> specs = {
      LawaOptions(2),          LawaOptions(20),          LawaOptions(5).start(7),
      LawaOptions(3).every(4), EmaOptions(0.9).every(4), EmaOptions(0.99),
      SwaOptions().every(2).start(10), LawaExpOptions(30, 0.2), LawaExpOptions(4, 0.5).every(4)};
  const int64_t n = 100000;  // above the parallel grain: exercises the thread split
  AveragerBank all(n, DType::kF32);
  std::vector<std::unique_ptr<AveragerBank>> single;
  for (const auto& s : specs) {
    all.add(s);
    single.push_back(std::make_unique<AveragerBank>(n, DType::kF32));
    single.back()->add(s);
  }
  std::mt19937_64 rng(7);
  std::vector<unsigned char> bytes;
  for (int64_t step = 0; step < 40; ++step) {
    random_sample(DType::kF32, size_t(n), rng, &bytes);
    all.observe(step, bytes.data());
    for (auto& b : single) b->observe(step, bytes.data());
  }
  for (size_t i = 0; i < specs.size(); ++i)
    EXPECT_EQ(bank_value(all, int(i)), bank_value(*single[i], 0)) << describe(specs[i]);
}

TEST(Bank, ShardsEqualTheSliceOfTheFullBank) {
  const int64_t n = 1000;
  AveragerBank full(n, DType::kBF16);
  AveragerBank left(n, DType::kBF16, 0, 400), right(n, DType::kBF16, 400);
  for (AveragerBank* b : {&full, &left, &right}) {
    b->add(LawaOptions(4).every(2));
    b->add(EmaOptions(0.8));
  }
  EXPECT_EQ(right.shard_length(), 600);
  std::mt19937_64 rng(3);
  std::vector<unsigned char> bytes;
  for (int64_t step = 0; step < 30; ++step) {
    random_sample(DType::kBF16, size_t(n), rng, &bytes);
    for (AveragerBank* b : {&full, &left, &right}) b->observe(step, bytes.data());
  }
  for (int a = 0; a < 2; ++a) {
    auto f = bank_value(full, a), l = bank_value(left, a), r = bank_value(right, a);
    l.insert(l.end(), r.begin(), r.end());
    EXPECT_EQ(f, l);
  }
  EXPECT_THROW(AveragerBank(n, DType::kF32, 900, 200), Error);
}

TEST(Bank, OnlineEqualsOfflineWeights) {
  const int64_t n = 50, files = 23;
  std::mt19937_64 rng(11);
  std::vector<std::vector<double>> xs;
  std::vector<std::vector<unsigned char>> raw(files);
  for (int64_t i = 0; i < files; ++i) xs.push_back(random_sample(DType::kF64, n, rng, &raw[i]));
  for (const SchemeOptions& o : std::vector<SchemeOptions>{
           LawaOptions(4).every(3).start(2), EmaOptions(0.7).every(2),
           SwaOptions().every(5).start(1), LawaExpOptions(5, 0.3).every(2).start(1),
           LawaExpOptions(40, 0.05)}) {
    AveragerBank bank(n, DType::kF64);
    bank.add(o);
    for (int64_t i = 0; i < files; ++i) bank.observe(i, raw[i].data());
    const auto w = offline_weights(o, files);
    std::vector<double> want(n, 0.0);
    for (int64_t i = 0; i < files; ++i)
      for (int64_t k = 0; k < n; ++k) want[k] += w[i] * xs[i][k];
    EXPECT_LT(max_rel_err(bank_value(bank, 0), want), 1e-6) << describe(o);
  }
}

// The LAWA running sum stays within 1e-6 relative of an exact recomputation after 10^6 updates.
TEST(Bank, LawaDriftIsBoundedOverAMillionUpdates) {
  const int64_t n = 8, window = 10, updates = 1000000;
  AveragerBank bank(n, DType::kF32);
  bank.add(LawaOptions(window));
  std::mt19937_64 rng(5);
  std::lognormal_distribution<double> mag(0.0, 3.0);
  std::deque<std::vector<float>> last;
  std::vector<float> x(n);
  for (int64_t step = 0; step < updates; ++step) {
    const double scale = mag(rng);
    for (auto& v : x) v = float((double(rng() % 2000) / 1000.0 - 1.0) * scale);
    bank.observe(step, x.data());
    last.push_back(x);
    if (int64_t(last.size()) > window) last.pop_front();
  }
  std::vector<double> exact(n, 0.0), scale(n, 0.0);
  for (const auto& s : last)
    for (int64_t i = 0; i < n; ++i) exact[i] += double(s[i]) / window, scale[i] += std::abs(s[i]);
  const auto got = bank_value(bank, 0);
  for (int64_t i = 0; i < n; ++i)
    EXPECT_LE(std::abs(got[i] - exact[i]), 1e-6 * scale[i] / window) << "element " << i;
}

// LAWA windows of different L (one with a later start) sharing one ring, and two more with another
// ν, over 15000 steps: thousands of samples per ring, many times the longest window. At many steps
// (every 50th, and every step around 1024 and 3072 samples) each window must equal the mean of its
// last L samples recomputed in fp64 from the stored samples: behaviour against an independent
// reference, whatever the bank does inside. Samples drift (100 + 0.01·step) so that a window off by
// one sample is off by ~1e-5 relative, far above the 1e-9 allowed.
class LawaSharedRing : public ::testing::TestWithParam<DType> {};

TEST_P(LawaSharedRing, WindowsOverThousandsOfSamplesEqualTheNaiveMean) {
  const DType dtype = GetParam();
  const int64_t n = 33, steps = 15000;
  const std::vector<LawaOptions> windows = {
      LawaOptions(1),           LawaOptions(7),          LawaOptions(100),
      LawaOptions(1500),        LawaOptions(3000),       LawaOptions(64).start(250),
      LawaOptions(10).every(3), LawaOptions(400).every(3).start(7)};  // ν = 3: 5000 samples
  AveragerBank bank(n, dtype);
  for (const auto& w : windows) bank.add(w);
  std::mt19937_64 rng(17 + int(dtype));
  std::normal_distribution<double> noise(0.0, 1.0);
  std::vector<std::vector<double>> xs;  // xs[step]: the sample as stored, exactly, in fp64
  std::vector<unsigned char> bytes(size_t(n) * dtype_size(dtype));
  int64_t checks = 0;
  for (int64_t step = 0; step < steps; ++step) {
    dispatch_floating(dtype, [&](auto tag) {
      using T = decltype(tag);
      T* p = reinterpret_cast<T*>(bytes.data());
      for (int64_t i = 0; i < n; ++i) p[i] = store_as<T>(100.0 + 0.01 * double(step) + noise(rng));
    });
    xs.push_back(to_doubles(dtype, bytes, size_t(n)));
    bank.observe(step, bytes.data());
    const bool check = step % 50 == 0 || step == steps - 1 || std::abs(step - 1024) <= 3 ||
                       std::abs(step - 3 * 1024) <= 6;
    if (!check) continue;
    for (size_t a = 0; a < windows.size(); ++a) {
      const LawaOptions& o = windows[a];
      std::vector<int64_t> taken;  // steps this window has sampled, newest last
      for (int64_t t = 0; t <= step; ++t)
        if (t >= o.start() && t % o.every() == 0) taken.push_back(t);
      if (taken.empty()) {
        EXPECT_TRUE(bank.empty(int(a)));
        continue;
      }
      const size_t k = std::min(taken.size(), size_t(o.window()));
      std::vector<double> want(size_t(n), 0.0);
      for (size_t j = taken.size() - k; j < taken.size(); ++j)
        for (int64_t i = 0; i < n; ++i) want[size_t(i)] += xs[size_t(taken[j])][size_t(i)];
      for (double& v : want) v /= double(k);
      ASSERT_LT(max_rel_err(bank_value(bank, int(a)), want), 1e-9)
          << describe(o) << " at step " << step << " (" << taken.size() << " samples)";
      ++checks;
    }
  }
  EXPECT_GT(checks, 2000);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, LawaSharedRing, ::testing::Values(DType::kF32, DType::kBF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(Bank, StateRestoresForBitIdenticalContinuation) {
  const int64_t n = 777;
  auto make = [&] {
    auto b = std::make_unique<AveragerBank>(n, DType::kF16);
    b->add(LawaOptions(5).every(2));
    b->add(LawaOptions(3).every(2).start(6));
    b->add(EmaOptions(0.95).every(3));
    b->add(SwaOptions().start(4));
    return b;
  };
  auto straight = make(), first = make(), second = make();
  std::mt19937_64 rng(9);
  std::vector<std::vector<unsigned char>> samples(60);
  for (auto& s : samples) random_sample(DType::kF16, n, rng, &s);
  for (int64_t step = 0; step < 60; ++step) straight->observe(step, samples[step].data());
  for (int64_t step = 0; step < 25; ++step) first->observe(step, samples[step].data());
  // Copy state out of `first` into `second`, as a save/load would.
  second->restore_meta(first->state_meta());
  auto src = first->state_arrays(), dst = second->state_arrays();
  ASSERT_EQ(src.size(), dst.size());
  for (size_t i = 0; i < src.size(); ++i)
    std::memcpy(dst[i].data, src[i].data, size_t(src[i].numel) * dtype_size(src[i].dtype));
  for (int64_t step = 25; step < 60; ++step) second->observe(step, samples[step].data());
  for (int a = 0; a < straight->size(); ++a)
    EXPECT_EQ(bank_value(*straight, a), bank_value(*second, a));
  // A bank with other averagers refuses the state.
  AveragerBank other(n, DType::kF16);
  other.add(LawaOptions(6).every(2));
  EXPECT_THROW(other.restore_meta(first->state_meta()), Error);
}

// ---- LAWA ring of samples ---------------------------------------------------------------------------

// Windows shorter than the ring's L_max, and windows that have seen fewer than L samples, on samples
// whose means are known by hand: sample k is the constant k, so the mean of the last m of n samples
// (0 … n−1) is n − 1 − (m − 1)/2, exactly.
TEST(LawaRing, ShortWindowsAndPartialWindowsOnHandCheckedMeans) {
  AveragerBank bank(5, DType::kF32);
  const int l3 = bank.add(LawaOptions(3)), l8 = bank.add(LawaOptions(8));
  const int l1 = bank.add(LawaOptions(1)), l2 = bank.add(LawaOptions(2).every(2));
  for (int64_t n = 1; n <= 30; ++n) {
    const std::vector<float> x(5, float(n - 1));
    bank.observe(n - 1, x.data());
    for (auto [a, window] : {std::pair{l3, 3}, std::pair{l8, 8}, std::pair{l1, 1}}) {
      const int64_t m = std::min<int64_t>(n, window);
      const double want = double(n - 1) - double(m - 1) / 2.0;
      for (double v : bank_value(bank, a)) ASSERT_EQ(v, want) << "L=" << window << " n=" << n;
      ASSERT_EQ(bank.full(a), n >= window);
    }
    // ν = 2 samples steps 0, 2, 4, …: its last two are the newest even steps.
    const int64_t last_even = (n - 1) / 2 * 2;
    const double want2 = last_even == 0 ? 0.0 : double(last_even) - 1.0;
    for (double v : bank_value(bank, l2)) ASSERT_EQ(v, want2) << "nu=2 n=" << n;
  }
}

// State: one ring of L_max + 1 samples of the sample dtype per ν (L = 20 over fp32: 84 B/param,
// under the ~90 B/param target), fp32 per EMA and fp64 per SWA.
TEST(LawaRing, StateBytesPerParameter) {
  AveragerBank one(1000, DType::kF32);
  one.add(LawaOptions(20));
  EXPECT_EQ(one.state_bytes_per_element(), 84.0);
  const float x[1000] = {};
  one.observe(0, x);
  EXPECT_EQ(one.state_bytes(), 84 * 1000);
  AveragerBank mixed(10, DType::kBF16);
  for (int64_t w : {2, 5, 20}) mixed.add(LawaOptions(w));  // one ring: L_max = 20
  mixed.add(LawaOptions(4).every(3));                      // another: L_max = 4
  mixed.add(EmaOptions(0.9));
  mixed.add(SwaOptions());
  EXPECT_EQ(mixed.state_bytes_per_element(), 21 * 2 + 5 * 2 + 4 + 8);
}

// A refused sample leaves full, wrapped rings as they were (the check rides the copy into the spare
// slot), also when two rings of different ν sample at that step; the next good sample continues
// exactly as if the bad one had never come.
TEST(LawaRing, RefusedSampleLeavesWrappedRingsUnchanged) {
  const int64_t n = 100000;  // above the parallel grain
  AveragerBank bank(n, DType::kF32), clean(n, DType::kF32);
  bank.set_layout({{"w", 0, n}});
  for (AveragerBank* b : {&bank, &clean}) {
    b->add(LawaOptions(3));
    b->add(LawaOptions(2).every(2));
  }
  std::mt19937_64 rng(3);
  std::vector<unsigned char> bytes;
  for (int64_t step = 0; step < 11; ++step) {
    random_sample(DType::kF32, n, rng, &bytes);
    bank.observe(step, bytes.data());
    clean.observe(step, bytes.data());
  }
  const auto before0 = bank_value(bank, 0), before1 = bank_value(bank, 1);
  random_sample(DType::kF32, n, rng, &bytes);
  reinterpret_cast<float*>(bytes.data())[n - 7] = -INFINITY;
  try {
    bank.observe(12, bytes.data());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "non-finite sample (inf) in tensor 'w' element " +
                                         std::to_string(n - 7) + " at step 12: refused");
  }
  EXPECT_EQ(bank_value(bank, 0), before0);
  EXPECT_EQ(bank_value(bank, 1), before1);
  EXPECT_EQ(bank.samples(0), 11);
  random_sample(DType::kF32, n, rng, &bytes);
  bank.observe(14, bytes.data());
  clean.observe(14, bytes.data());
  EXPECT_EQ(bank_value(bank, 0), bank_value(clean, 0));
  EXPECT_EQ(bank_value(bank, 1), bank_value(clean, 1));
}

// ---- Kaddour's EXP window ------------------------------------------------------------------------

TEST(LawaExp, OptionsRejectBadValuesNamingThem) {
  EXPECT_EQ(error_of([] { LawaExpOptions(0, 0.1); }), "lawa_exp: window (k) must be >= 1, got 0");
  EXPECT_EQ(error_of([] { LawaExpOptions(5, 0.0); }), "lawa_exp: alpha must be in (0, 1), got 0");
  EXPECT_EQ(error_of([] { LawaExpOptions(5, 1.0); }), "lawa_exp: alpha must be in (0, 1), got 1");
  EXPECT_EQ(error_of([] { LawaExpOptions(5, std::nan("")); }),
            "lawa_exp: alpha must be in (0, 1), got nan");
  EXPECT_EQ(error_of([] { LawaExpOptions(5, 0.5).every(0); }),
            "lawa_exp: every (nu) must be >= 1, got 0");
  LawaExpOptions o(5, 0.5);
  EXPECT_EQ(error_of([&] { o.alpha(-0.5); }), "lawa_exp: alpha must be in (0, 1), got -0.5");
  EXPECT_EQ(o.alpha(), 0.5);  // unchanged by the refused value
  const SchemeOptions g = LawaExpOptions(20, 0.1).every(4).start(8);
  EXPECT_EQ(g.scheme(), Scheme::kLawaExp);
  EXPECT_EQ(window_of(g), 20);
  EXPECT_EQ(g.as<LawaExpOptions>()->alpha(), 0.1);
  EXPECT_EQ(g.every(), 4);
  EXPECT_EQ(g.start(), 8);
  EXPECT_EQ(std::string(scheme_name(g.scheme())), "lawa_exp");
}

// Sample k is the constant k (k = 0, 1, …); window k = 3, α = 1/2: weights 1/4, 1/2, 1 (oldest
// first), by hand: n = 1: 0; n = 2: (½·0 + 1)/(3/2) = 2/3; n = 3: (½ + 2)/(7/4) = 10/7;
// n = 4: (¼ + 1 + 3)/(7/4) = 17/7; then +1 per sample.
TEST(LawaExp, HandCheckedValuesWithFewerAndMoreSamplesThanTheWindow) {
  AveragerBank bank(4, DType::kF32);
  const int exp = bank.add(LawaExpOptions(3, 0.5));
  const double want[] = {0.0, 2.0 / 3.0, 10.0 / 7.0, 17.0 / 7.0, 24.0 / 7.0, 31.0 / 7.0};
  for (int64_t n = 1; n <= 6; ++n) {
    const std::vector<float> x(4, float(n - 1));
    bank.observe(n - 1, x.data());
    for (double v : bank_value(bank, exp)) ASSERT_NEAR(v, want[n - 1], 1e-15) << "n=" << n;
    ASSERT_EQ(bank.full(exp), n >= 3);
  }
  // The offline weights of the same averager over six inputs: (¼, ½, 1)/(7/4) on the last three.
  const auto w = offline_weights(LawaExpOptions(3, 0.5), 6);
  const std::vector<double> hand = {0, 0, 0, 1.0 / 7.0, 2.0 / 7.0, 4.0 / 7.0};
  for (size_t i = 0; i < hand.size(); ++i) EXPECT_NEAR(w[i], hand[i], 1e-16) << i;
}

// EXP and LAWA windows of one ν read one ring (sized by the largest window of either kind); another
// ν has its own. Their state is that ring only.
TEST(LawaExp, SharesTheRingOfTheLawaWindowsOfItsNu) {
  AveragerBank bank(10, DType::kF32);
  bank.add(LawaOptions(20));
  bank.add(LawaExpOptions(30, 0.1));  // widens the ν = 1 ring to 30 + 1 samples
  bank.add(LawaExpOptions(4, 0.1).every(3));
  EXPECT_EQ(bank.state_bytes_per_element(), 31 * 4 + 5 * 4);
  EXPECT_EQ(state_bytes_per_element({LawaExpOptions(20, 0.5)}, DType::kBF16), 21 * 2);
  EXPECT_EQ(shared_ring_window(LawaExpOptions(7, 0.5)), 7);
  EXPECT_EQ(shared_ring_window(EmaOptions(0.5)), 0);
  const float x[10] = {};
  bank.observe(0, x);
  EXPECT_EQ(bank.ring_count(), 2);
  EXPECT_EQ(bank.state_bytes(), (31 + 5) * 4 * 10);
}

// Random trajectories against the naive fp64 reference (DESIGN.md §2's formula, in NaiveAverager):
// windows longer and shorter than the number of samples, later starts, ν > 1, sharing a ring with
// LAWA windows; the state copied out mid-way into a fresh bank, which continues bit-identically to an
// uninterrupted one; at the end the value equals the offline weights applied to the same inputs.
class LawaExpVsNaive : public ::testing::TestWithParam<DType> {};

TEST_P(LawaExpVsNaive, RandomTrajectoriesSaveRestoreAndOffline) {
  const DType dtype = GetParam();
  const int64_t n = 5000, steps = 90, cut = 37;  // n above the parallel grain
  const std::vector<SchemeOptions> specs = {
      LawaExpOptions(12, 0.2).every(2).start(3), LawaOptions(5).every(2),
      LawaExpOptions(4, 0.5).every(3),           LawaExpOptions(200, 0.01),
      LawaExpOptions(1, 0.9).start(50),          LawaExpOptions(7, 0.999)};
  auto make = [&] {
    auto b = std::make_unique<AveragerBank>(n, dtype);
    for (const auto& o : specs) b->add(o);
    return b;
  };
  auto straight = make(), first = make();
  std::unique_ptr<AveragerBank> second;
  std::vector<NaiveAverager> naive;
  for (const auto& o : specs) naive.push_back({o, {}});
  std::mt19937_64 rng(31 + int(dtype));
  std::vector<std::vector<double>> xs;
  std::vector<unsigned char> bytes;
  for (int64_t step = 0; step < steps; ++step) {
    xs.push_back(random_sample(dtype, size_t(n), rng, &bytes, 1.0 + 0.1 * double(step)));
    straight->observe(step, bytes.data());
    (second ? *second : *first).observe(step, bytes.data());
    for (auto& r : naive) r.observe(step, xs.back());
    for (size_t a = 0; a < specs.size(); ++a) {
      ASSERT_EQ(straight->empty(int(a)), naive[a].samples.empty());
      if (straight->empty(int(a))) continue;
      ASSERT_LT(max_rel_err(bank_value(*straight, int(a)), naive[a].value(), 1.0 + 0.1 * step),
                1e-12)
          << describe(specs[a]) << " step " << step;
    }
    if (step != cut) continue;
    second = make();  // a save and a load, in memory
    second->restore_meta(first->state_meta());
    auto src = first->state_arrays(), dst = second->state_arrays();
    ASSERT_EQ(src.size(), dst.size());
    for (size_t i = 0; i < src.size(); ++i)
      std::memcpy(dst[i].data, src[i].data, size_t(src[i].numel) * dtype_size(src[i].dtype));
  }
  for (size_t a = 0; a < specs.size(); ++a) {
    EXPECT_EQ(bank_value(*straight, int(a)), bank_value(*second, int(a))) << describe(specs[a]);
    const auto w = offline_weights(specs[a], steps);
    std::vector<double> want(size_t(n), 0.0);
    for (int64_t i = 0; i < steps; ++i)
      for (int64_t k = 0; k < n; ++k) want[size_t(k)] += w[size_t(i)] * xs[size_t(i)][size_t(k)];
    EXPECT_LT(max_rel_err(bank_value(*second, int(a)), want, 10.0), 1e-12) << describe(specs[a]);
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, LawaExpVsNaive, ::testing::Values(DType::kF32, DType::kBF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// A state records α: a bank whose EXP has another α (or a LAWA of the same window) refuses it.
TEST(LawaExp, StateRecordsAlphaAndRefusesAnother) {
  AveragerBank a(3, DType::kF32);
  a.add(LawaExpOptions(4, 0.1).name("w"));
  const float x[3] = {1, 2, 3};
  a.observe(0, x);
  const auto meta = a.state_meta();
  EXPECT_EQ(meta.at("averager.0.spec"), "w|lawa_exp|4|0|1|0|0.1");
  AveragerBank same(3, DType::kF32), other(3, DType::kF32), lawa(3, DType::kF32);
  same.add(LawaExpOptions(4, 0.1).name("w"));
  other.add(LawaExpOptions(4, 0.2).name("w"));
  lawa.add(LawaOptions(4).name("w"));
  EXPECT_EQ(same.restore_meta(meta), AveragerBank::kStateFormat);
  EXPECT_EQ(error_of([&] { other.restore_meta(meta); }),
            "bank state: averager 0 is 'w|lawa_exp|4|0|1|0|0.1', this bank has "
            "'w|lawa_exp|4|0|1|0|0.2'");
  EXPECT_THROW(lawa.restore_meta(meta), Error);
}

// copy_find_non_finite against a naive scan and a plain copy, for every floating dtype, with NaN
// and Inf planted anywhere in large arrays (both threads' halves).
TEST(NonFinite, CopyWithTheCheckEqualsACopyAndANaiveScan) {
  std::mt19937_64 rng(21);
  for (DType t : {DType::kF32, DType::kF64, DType::kF16, DType::kBF16}) {
    for (int64_t n : {int64_t(1), int64_t(4097), int64_t(300000)}) {
      for (int trial = 0; trial < 4; ++trial) {
        std::vector<unsigned char> src;
        random_sample(t, size_t(n), rng, &src);
        std::vector<int64_t> planted;
        for (int k = 0; k < trial; ++k) planted.push_back(int64_t(rng() % uint64_t(n)));
        dispatch_floating(t, [&](auto tag) {
          using T = decltype(tag);
          for (size_t k = 0; k < planted.size(); ++k)
            reinterpret_cast<T*>(src.data())[planted[k]] =
                store_as<T>(k % 2 ? -HUGE_VAL : std::nan(""));
        });
        int64_t want = -1;
        for (int64_t i : planted) want = want < 0 ? i : std::min(want, i);
        std::vector<unsigned char> dst(src.size(), 0xab);
        EXPECT_EQ(copy_find_non_finite(t, src.data(), dst.data(), n), want)
            << dtype_name(t) << " n=" << n;
        EXPECT_EQ(find_non_finite(t, src.data(), n), want);
        if (want < 0) {  // a refused copy's contents are unspecified
          EXPECT_EQ(0, std::memcmp(src.data(), dst.data(), src.size())) << dtype_name(t);
        }
      }
    }
  }
}

// ---- post-hoc EMA (EDM2) --------------------------------------------------------------------------

// γ for σ_rel against EDM2's std_to_exp (numpy: np.roots([1, 7, 16 - t, 12 - t]).real.max() with
// t = σ_rel⁻², values printed by numpy 1.24), and σ_rel(γ) against Eq. 123 by hand (γ = 0: 1/√12).
TEST(Phema, GammaOfSigmaRelMatchesEdm2) {
  for (auto [sigma, gamma] : {std::pair{0.05, 16.9721986}, std::pair{0.07, 11.24493945},
                              std::pair{0.10, 6.93720394}, std::pair{0.20, 1.82621378}}) {
    EXPECT_NEAR(phema_gamma(sigma), gamma, 1e-7) << sigma;
    EXPECT_NEAR(phema_sigma_rel(phema_gamma(sigma)), sigma, 1e-13) << sigma;
  }
  EXPECT_DOUBLE_EQ(phema_sigma_rel(0.0), 1.0 / std::sqrt(12.0));
  EXPECT_NEAR(phema_max_sigma_rel(), 0.30028, 1e-5);
  for (double bad : {0.0, -0.1, 0.31, double(NAN)})
    EXPECT_THROW(phema_gamma(bad), Error) << bad;
  EXPECT_THROW(PhemaOptions({0.05, 0.05}), Error);
  EXPECT_THROW(PhemaOptions(std::vector<double>{}), Error);
  EXPECT_EQ(default_name(PhemaOptions({0.05, 0.1})), "phema_0.05_0.1_nu1");
}

// The bank's phema profiles against a naive fp64 power-function EMA: e = x at the first sample,
// then e ← β_t e + (1 − β_t) x with β_t = (1 − ν/t)^(γ+1) (EDM2 Eq. 127 with t_delta = ν); and the
// offline weights against the same recursion.
TEST(Phema, BankProfilesEqualTheNaivePowerFunctionEma) {
  const int64_t n = 70000, steps = 60;  // above the parallel grain
  for (int64_t every : {int64_t(1), int64_t(3)}) {
    AveragerBank bank(n, DType::kBF16);
    const std::vector<double> sigmas = {0.05, 0.10, 0.2};
    bank.add(PhemaOptions(sigmas).every(every).start(2));
    EXPECT_EQ(bank.profiles(0), 3);
    std::mt19937_64 rng(5);
    std::vector<std::vector<double>> naive(3);
    std::vector<unsigned char> bytes;
    bool first = true;
    for (int64_t step = 0; step < steps; ++step) {
      const auto x = random_sample(DType::kBF16, size_t(n), rng, &bytes, 1.0 + 0.1 * double(step));
      bank.observe(step, bytes.data());
      if (step < 2 || step % every != 0) continue;
      for (size_t p = 0; p < 3; ++p) {
        if (first) {
          naive[p] = x;
          continue;
        }
        const double g = phema_gamma(sigmas[p]);
        const double beta = step <= every ? 0.0 : std::pow(1.0 - double(every) / double(step), g + 1);
        for (int64_t i = 0; i < n; ++i) naive[p][i] = beta * naive[p][i] + (1 - beta) * x[i];
      }
      first = false;
    }
    for (int p = 0; p < 3; ++p) {
      std::vector<double> got(n);
      bank.average(0, DType::kF64, got.data(), p);
      EXPECT_LT(max_rel_err(got, naive[p], 1.0 + 0.1 * steps), 1e-6) << "profile " << p;
    }
    EXPECT_EQ(bank.state_bytes_per_element(), 12.0);
  }
  // Offline weights: β_t of each sample's step, the first profile's.
  const SchemeOptions o = PhemaOptions({0.1}).every(2);
  const auto w = offline_weights(o, 7);  // samples at 0, 2, 4, 6
  const double g = phema_gamma(0.1), b4 = std::pow(0.5, g + 1), b6 = std::pow(2.0 / 3.0, g + 1);
  // Sample 0 is overwritten at step 2 (β = 0); step 2 keeps b4·b6 of its weight.
  const std::vector<double> expect = {0, 0, b4 * b6, 0, (1 - b4) * b6, 0, 1 - b6};
  ASSERT_EQ(w.size(), expect.size());
  for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(w[i], expect[i], 1e-15) << i;
}

// A tracked profile at a snapshot step is reconstructed by itself alone (coefficient 1); an output
// between two profiles takes weight from both; identical inputs are a singular system.
TEST(Phema, CoefficientsReproduceATrackedProfile) {
  std::vector<PhemaProfile> in;
  for (int64_t t : {100, 200, 300})
    for (double s : {0.05, 0.10}) in.push_back({t, s});
  const auto c = phema_coefficients(in, {200, 0.10});
  for (size_t i = 0; i < in.size(); ++i)
    EXPECT_NEAR(c[i], in[i].step == 200 && in[i].sigma_rel == 0.10 ? 1.0 : 0.0, 1e-9) << i;
  const auto mid = phema_coefficients(in, {300, 0.07});
  double sum = 0;
  for (double v : mid) sum += v;
  EXPECT_NEAR(sum, 1.0, 1e-12);
  EXPECT_GT(mid[4], 0.1);
  EXPECT_GT(mid[5], 0.1);
  EXPECT_THROW(phema_coefficients({{100, 0.05}, {100, 0.05}}, {100, 0.05}), Error);
  EXPECT_THROW(phema_coefficients({}, {100, 0.05}), Error);
}

// phema state (one fp32 EMA per profile) and its spec restore bit-identically; another σ_rel list
// is refused.
TEST(Phema, StateRestoresAndSpecsCompareTheProfiles) {
  const int64_t n = 500;
  auto make = [&](std::vector<double> sigmas) {
    auto b = std::make_unique<AveragerBank>(n, DType::kF32);
    b->add(PhemaOptions(sigmas).name("ph"));
    b->add(LawaOptions(3));
    return b;
  };
  auto straight = make({0.05, 0.1}), first = make({0.05, 0.1}), second = make({0.05, 0.1});
  std::mt19937_64 rng(2);
  std::vector<std::vector<unsigned char>> xs(30);
  for (auto& x : xs) random_sample(DType::kF32, n, rng, &x);
  for (int64_t s = 0; s < 30; ++s) straight->observe(s, xs[s].data());
  for (int64_t s = 0; s < 13; ++s) first->observe(s, xs[s].data());
  second->restore_meta(first->state_meta());
  auto src = first->state_arrays(), dst = second->state_arrays();
  ASSERT_EQ(src.size(), dst.size());
  for (size_t i = 0; i < src.size(); ++i) {
    ASSERT_EQ(src[i].numel, dst[i].numel);
    std::memcpy(dst[i].data, src[i].data, size_t(src[i].numel) * dtype_size(src[i].dtype));
  }
  for (int64_t s = 13; s < 30; ++s) second->observe(s, xs[s].data());
  for (int p = 0; p < 2; ++p) {
    std::vector<double> a(n), b(n);
    straight->average(0, DType::kF64, a.data(), p);
    second->average(0, DType::kF64, b.data(), p);
    EXPECT_EQ(a, b) << "profile " << p;
  }
  EXPECT_THROW(make({0.05, 0.2})->restore_meta(first->state_meta()), Error);
  EXPECT_THROW(straight->average(0, DType::kF64, nullptr, 2), Error);
}

TEST(Parallel, CoversTheRangeOnce) {
  for (int threads : {1, 2, 3}) {
    detail::set_averaging_threads(threads);
    std::vector<int> hits(300001, 0);
    detail::parallel_for(int64_t(hits.size()), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) ++hits[i];
    });
    for (int h : hits) ASSERT_EQ(h, 1);
  }
  detail::set_averaging_threads(0);
}

// ---- schedules ----------------------------------------------------------------------------------

#include "wavg/core/schedule.h"

TEST(Schedule, EdgesOfEveryKind) {
  Schedule s;
  s.lr = 1.0;
  s.warmup_steps = 10;
  s.total_steps = 110;
  s.final_fraction = 0.1;
  s.kind = ScheduleKind::kCosine;
  EXPECT_DOUBLE_EQ(lr_at(s, 0), 0.1);   // linear warmup: lr·(step+1)/W
  EXPECT_DOUBLE_EQ(lr_at(s, 9), 1.0);
  EXPECT_DOUBLE_EQ(lr_at(s, 10), 1.0);  // decay starts at the peak
  EXPECT_NEAR(lr_at(s, 60), 0.55, 1e-12);  // half way: (1 + 0.1) / 2
  EXPECT_DOUBLE_EQ(lr_at(s, 110), 0.1);
  EXPECT_DOUBLE_EQ(lr_at(s, 500), 0.1);
  s.kind = ScheduleKind::kLinear;
  EXPECT_NEAR(lr_at(s, 60), 0.55, 1e-12);
  EXPECT_NEAR(lr_at(s, 35), 1.0 - 0.9 * 0.25, 1e-12);
  s.kind = ScheduleKind::kConstant;
  EXPECT_DOUBLE_EQ(lr_at(s, 109), 1.0);
  s.kind = ScheduleKind::kWsd;
  s.decay_fraction = 0.2;  // decay over the last 22 steps: from 88 to 110
  EXPECT_DOUBLE_EQ(lr_at(s, 87), 1.0);
  EXPECT_DOUBLE_EQ(lr_at(s, 88), 1.0);
  EXPECT_NEAR(lr_at(s, 99), 1.0 - 0.9 * 0.5, 1e-12);
  EXPECT_DOUBLE_EQ(lr_at(s, 110), 0.1);
  s.final_fraction = 0.0;
  s.kind = ScheduleKind::kCosine;
  EXPECT_DOUBLE_EQ(lr_at(s, 110), 0.0);
  s.warmup_steps = 0;
  EXPECT_DOUBLE_EQ(lr_at(s, 0), 1.0);
}

TEST(Schedule, RejectsBadValues) {
  Schedule s;
  s.lr = -1;
  EXPECT_THROW(validate(s), Error);
  s.lr = 1;
  s.total_steps = 10;
  s.warmup_steps = 11;
  EXPECT_THROW(validate(s), Error);
  s.warmup_steps = 0;
  s.final_fraction = 1.5;
  EXPECT_THROW(validate(s), Error);
  EXPECT_THROW(parse_schedule_kind("cosin"), Error);
}
