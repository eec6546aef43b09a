// The averager kinds: EMA, SWA, post-hoc EMA profiles, LAWA and Kaddour's EXP window.
#include "wavg/core/averager_kinds.h"

#include <cstdlib>

#include "wavg/core/error.h"
#include "wavg/core/format.h"
#include "wavg/core/parallel.h"
#include "wavg/core/phema.h"
#include "wavg/core/sample_ring.h"

namespace wavg::detail {

namespace {

// Copies n fp32 values into out_dtype (an EMA's readout).
void copy_out(const float* m, int64_t n, DType out_dtype, void* out) {
  dispatch_floating(out_dtype, [&](auto tag) {
    using O = decltype(tag);
    O* y = static_cast<O*>(out);
    parallel_for(n, [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k) y[k] = store_as<O>(m[k]);
    });
  });
}

// EMA (Ajroldi et al. 2025, Algorithm 2): e_1 = x_1, e_n = β·e_{n−1} + (1 − β)·x_n in fp32.
class EmaKind final : public AveragerKind {
 public:
  explicit EmaKind(const EmaOptions& o) : AveragerKind(o), beta_(o.beta()) {}
  double own_bytes_per_element() const override { return sizeof(float); }
  void allocate(int64_t length, DType) override {
    length_ = length;
    ema_.assign(size_t(length), 0.0f);
  }
  void plan(int64_t, std::vector<TileOp>* ops) override {
    ops->push_back({ema_.data(), nullptr, beta_, samples_ == 0});
  }
  void average(int, DType out_dtype, void* out) const override {
    copy_out(ema_.data(), length_, out_dtype, out);
  }
  void arrays(const std::string& prefix, std::vector<StateArray>* out) override {
    if (!ema_.empty())  // an empty shard has none, as in files written before kinds were classes
      out->push_back({prefix + ".ema", DType::kF32, int64_t(ema_.size()), ema_.data()});
  }
  int64_t state_bytes() const override { return int64_t(ema_.size() * sizeof(float)); }

 private:
  double beta_;
  std::vector<float> ema_;
};

// Post-hoc EMA profiles (Karras et al. 2024, EDM2): one fp32 EMA per σ_rel, profile-major, whose β
// depends on the step: (1 − ν/t)^(γ+1).
class PhemaKind final : public AveragerKind {
 public:
  explicit PhemaKind(const PhemaOptions& o) : AveragerKind(o), sigma_rels_(o.sigma_rels()) {
    for (double s : sigma_rels_) gammas_.push_back(phema_gamma(s));
  }
  int profiles() const override { return int(gammas_.size()); }
  double own_bytes_per_element() const override { return sizeof(float) * double(gammas_.size()); }
  void allocate(int64_t length, DType) override {
    length_ = length;
    ema_.assign(gammas_.size() * size_t(length), 0.0f);
  }
  void plan(int64_t step, std::vector<TileOp>* ops) override {
    for (size_t p = 0; p < gammas_.size(); ++p)
      ops->push_back({ema_.data() + p * size_t(length_), nullptr,
                      phema_beta(gammas_[p], step, options_.every()), samples_ == 0});
  }
  void average(int profile, DType out_dtype, void* out) const override {
    copy_out(ema_.data() + size_t(profile) * size_t(length_), length_, out_dtype, out);
  }
  void arrays(const std::string& prefix, std::vector<StateArray>* out) override {
    if (!ema_.empty())  // an empty shard has none, as in files written before kinds were classes
      out->push_back({prefix + ".ema", DType::kF32, int64_t(ema_.size()), ema_.data()});
  }
  int64_t state_bytes() const override { return int64_t(ema_.size() * sizeof(float)); }
  std::string spec_extra() const override {
    std::string out;
    for (double v : sigma_rels_) out += (out.empty() ? "" : ",") + format_exact(v);
    return out;
  }

 private:
  std::vector<double> sigma_rels_, gammas_;
  std::vector<float> ema_;
};

// SWA (Izmailov et al. 2018): the mean of every sample, from an fp64 running sum.
class SwaKind final : public AveragerKind {
 public:
  explicit SwaKind(const SwaOptions& o) : AveragerKind(o) {}
  double own_bytes_per_element() const override { return sizeof(double); }
  void allocate(int64_t length, DType) override {
    length_ = length;
    sum_.assign(size_t(length), 0.0);
  }
  void plan(int64_t, std::vector<TileOp>* ops) override {
    ops->push_back({nullptr, sum_.data(), 0.0, false});
  }
  void average(int, DType out_dtype, void* out) const override {
    const double count = double(samples_);
    const double* sum = sum_.data();
    dispatch_floating(out_dtype, [&](auto tag) {
      using O = decltype(tag);
      O* y = static_cast<O*>(out);
      parallel_for(length_, [&](int64_t b, int64_t e) {
        for (int64_t k = b; k < e; ++k) y[k] = store_as<O>(sum[k] / count);
      });
    });
  }
  void arrays(const std::string& prefix, std::vector<StateArray>* out) override {
    if (!sum_.empty()) out->push_back({prefix + ".sum", DType::kF64, length_, sum_.data()});
  }
  int64_t state_bytes() const override { return int64_t(sum_.size() * sizeof(double)); }

 private:
  std::vector<double> sum_;
};

// A window over the last samples of its ν, kept in the ring that all windows of that ν share: a
// step costs it nothing beyond the ring's one copy; its value is summed when read.
class WindowKind : public AveragerKind {
 public:
  WindowKind(SchemeOptions o, int64_t window) : AveragerKind(std::move(o)), window_(window) {}
  bool full() const override { return samples_ >= window_; }
  int64_t ring_window() const override { return window_; }
  void attach(SampleRing* ring) override { ring_ = ring; }
  double own_bytes_per_element() const override { return 0.0; }

 protected:
  // Samples in the window: the ring's last ones (a later start than the ring's takes a suffix of
  // the same ν's samples).
  int64_t held() const { return std::min(samples_, window_); }
  const int64_t window_;
  SampleRing* ring_ = nullptr;
};

// LAWA (Kaddour 2022; Ajroldi et al. 2025, Algorithm 1): the uniform mean of the last L samples.
class LawaKind final : public WindowKind {
 public:
  explicit LawaKind(const LawaOptions& o) : WindowKind(o, o.window()) {}
  void average(int, DType out_dtype, void* out) const override {
    ring_->window_sum(held(), {}, double(held()), out_dtype, out);
  }
};

// Kaddour's EXP (Kaddour 2022, App. C; DESIGN.md §2): over the last m = min(n, k) samples,
// x_{n−m+i} weighs (1 − α)^(m−i), i = 1..m, normalised by their sum.
class LawaExpKind final : public WindowKind {
 public:
  explicit LawaExpKind(const LawaExpOptions& o) : WindowKind(o, o.window()), alpha_(o.alpha()) {}
  void average(int, DType out_dtype, void* out) const override {
    const std::vector<double> w = lawa_exp_weights(alpha_, held());
    double total = 0;
    for (double v : w) total += v;
    ring_->window_sum(held(), w, total, out_dtype, out);
  }
  std::string spec_extra() const override { return format_exact(alpha_); }
  bool same_extra(const std::string& recorded) const override {
    char* stop = nullptr;
    const double a = std::strtod(recorded.c_str(), &stop);
    return !recorded.empty() && *stop == '\0' && a == alpha_;
  }

 private:
  double alpha_;
};

}  // namespace

std::unique_ptr<AveragerKind> make_kind(const SchemeOptions& o) {
  return o.visit(Overloaded{
      [](const LawaOptions& l) -> std::unique_ptr<AveragerKind> {
        return std::make_unique<LawaKind>(l);
      },
      [](const LawaExpOptions& x) -> std::unique_ptr<AveragerKind> {
        return std::make_unique<LawaExpKind>(x);
      },
      [](const EmaOptions& e) -> std::unique_ptr<AveragerKind> {
        return std::make_unique<EmaKind>(e);
      },
      [](const SwaOptions& w) -> std::unique_ptr<AveragerKind> {
        return std::make_unique<SwaKind>(w);
      },
      [](const PhemaOptions& p) -> std::unique_ptr<AveragerKind> {
        return std::make_unique<PhemaKind>(p);
      }});
}

}  // namespace wavg::detail
