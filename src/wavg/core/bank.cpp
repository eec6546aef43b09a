// AveragerBank: storage, the fused update kernel, averages, and exact state.
#include "wavg/core/bank.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <cstdlib>

#include "wavg/core/error.h"
#include "wavg/core/format.h"
#include "wavg/core/parallel.h"
#include "wavg/core/phema.h"

namespace wavg {

using detail::parallel_for;

namespace {

// Elements per inner chunk: the sample chunk stays in L1/L2 while every averager consumes it, so
// the sample is read from memory once per step whatever the number of averagers.
constexpr int64_t kChunk = 4096;

// Non-finite test on bit patterns: the exponent field is all ones. `flag` returns a value with the
// top bit set exactly when the element is non-finite, so a block test is an OR-reduction that the
// compiler vectorizes.
inline uint32_t flag(float x) { return ((float_to_bits(x) & 0x7f800000u) + 0x00800000u); }
inline uint32_t flag(double x) {
  uint64_t u;
  std::memcpy(&u, &x, 8);
  return uint32_t(((u & 0x7ff0000000000000ull) + 0x0010000000000000ull) >> 32);
}
inline uint32_t flag(Half x) { return uint32_t((x.bits & 0x7c00u) + 0x0400u) << 16; }
inline uint32_t flag(BFloat16 x) { return uint32_t((x.bits & 0x7f80u) + 0x0080u) << 16; }

// Copies x into y while testing it: the flags of a block are OR-ed as its elements are copied, so
// the data are read once. Returns the first non-finite index, or -1 once y holds all of x; after a
// refusal y's contents are unspecified (callers copy into space that a refusal leaves unused).
template <typename T>
int64_t copy_first_non_finite(const T* __restrict x, T* __restrict y, int64_t n) {
  for (int64_t b = 0; b < n; b += kChunk) {
    const int64_t e = std::min(n, b + kChunk);
    uint32_t any = 0;
    for (int64_t i = b; i < e; ++i) {
      any |= flag(x[i]);
      y[i] = x[i];
    }
    if (any & 0x80000000u)
      for (int64_t i = b; i < e; ++i)
        if (flag(x[i]) & 0x80000000u) return i;
  }
  return -1;
}

template <typename T>
int64_t first_non_finite(const T* x, int64_t n) {
  for (int64_t b = 0; b < n; b += kChunk) {
    const int64_t e = std::min(n, b + kChunk);
    uint32_t any = 0;
    for (int64_t i = b; i < e; ++i) any |= flag(x[i]);
    if (any & 0x80000000u)
      for (int64_t i = b; i < e; ++i)
        if (flag(x[i]) & 0x80000000u) return i;
  }
  return -1;
}

// "name|scheme|window|beta|every|start": an averager as recorded in a state file; phema adds
// "|σ_1,σ_2,…".
std::string sigma_list(const std::vector<double>& sigma_rels) {
  std::string out;
  for (double v : sigma_rels) out += (out.empty() ? "" : ",") + format_exact(v);
  return out;
}

std::string spec_string(const AveragerOptions& o) {
  std::string s = o.name + "|" + scheme_name(o.scheme) + "|" + std::to_string(o.window) + "|" +
                  format_exact(o.beta) + "|" + std::to_string(o.every) + "|" +
                  std::to_string(o.start);
  if (o.scheme == Scheme::kPhema) s += "|" + sigma_list(o.sigma_rels);
  return s;
}

// Whether a recorded spec is the averager `o`. Fields are compared as values, not text, so that a
// beta written with more digits than format_exact's (older files: 17) still matches.
bool same_spec(const std::string& recorded, const AveragerOptions& o) {
  const std::string prefix = o.name + "|";
  if (recorded.compare(0, prefix.size(), prefix) != 0) return false;
  std::vector<std::string> f;  // scheme, window, beta, every, start
  for (size_t from = prefix.size();;) {
    const size_t bar = recorded.find('|', from);
    f.push_back(recorded.substr(from, bar == std::string::npos ? bar : bar - from));
    if (bar == std::string::npos) break;
    from = bar + 1;
  }
  const bool phema = o.scheme == Scheme::kPhema;
  if (f.size() != (phema ? 6u : 5u)) return false;
  if (phema && f[5] != sigma_list(o.sigma_rels)) return false;
  auto int_is = [](const std::string& t, int64_t want) {
    char* stop = nullptr;
    const long long v = std::strtoll(t.c_str(), &stop, 10);
    return !t.empty() && *stop == '\0' && v == want;
  };
  char* stop = nullptr;
  const double beta = std::strtod(f[2].c_str(), &stop);
  const bool beta_is = !f[2].empty() && *stop == '\0' && beta == o.beta;
  return f[0] == scheme_name(o.scheme) && int_is(f[1], o.window) && beta_is &&
         int_is(f[3], o.every) && int_is(f[4], o.start);
}

int64_t parse_int(const std::map<std::string, std::string>& meta, const std::string& key) {
  auto it = meta.find(key);
  WAVG_CHECK(it != meta.end(), "bank state: missing key '", key, "'");
  try {
    size_t pos = 0;
    const long long v = std::stoll(it->second, &pos);
    if (pos == it->second.size()) return v;
  } catch (const std::logic_error&) {
  }
  throw Error("bank state: key '" + key + "' is not an integer: '" + quote_bytes(it->second) +
              "'");
}

}  // namespace

AveragerBank::AveragerBank(int64_t numel, DType sample_dtype, int64_t shard_offset,
                           int64_t shard_length)
    : numel_(numel), offset_(shard_offset), dtype_(sample_dtype) {
  WAVG_CHECK(is_floating(sample_dtype), "bank: samples must be floating, got ",
             dtype_name(sample_dtype));
  WAVG_CHECK(numel >= 0, "bank: numel must be >= 0, got ", numel);
  WAVG_CHECK(shard_offset >= 0 && shard_offset <= numel, "bank: shard offset ", shard_offset,
             " outside [0, ", numel, "]");
  length_ = shard_length < 0 ? numel - shard_offset : shard_length;
  WAVG_CHECK(offset_ + length_ <= numel, "bank: shard [", offset_, ", ", offset_ + length_,
             ") exceeds numel ", numel);
}

int AveragerBank::add(AveragerOptions options) {
  WAVG_CHECK(!allocated_, "bank: averagers must be added before the first observe()");
  validate(options);
  if (options.name.empty()) options.name = default_name(options);
  WAVG_CHECK(find(options.name) < 0, "bank: duplicate averager name '", options.name, "'");
  Slot slot;
  slot.options = options;
  slots_.push_back(std::move(slot));
  return int(slots_.size()) - 1;
}

int AveragerBank::find(const std::string& name) const {
  for (size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].options.name == name) return int(i);
  return -1;
}

bool AveragerBank::full(int i) const {
  const Slot& s = slots_.at(i);
  return s.options.scheme == Scheme::kLawa ? s.state.samples >= s.options.window
                                           : s.state.samples > 0;
}

int AveragerBank::profiles(int i) const {
  const AveragerOptions& o = slots_.at(i).options;
  return o.scheme == Scheme::kPhema ? int(o.sigma_rels.size()) : 1;
}

bool AveragerBank::wants(int64_t step) const {
  for (const Slot& s : slots_)
    if (samples_at(s.options, step)) return true;
  return false;
}

void AveragerBank::allocate() {
  if (allocated_) return;
  allocated_ = true;
  for (Slot& s : slots_) {
    if (s.options.scheme == Scheme::kEma) s.state.ema.assign(size_t(length_), 0.0f);
    if (s.options.scheme == Scheme::kPhema)  // one fp32 EMA per profile, profile-major
      s.state.ema.assign(s.options.sigma_rels.size() * size_t(length_), 0.0f);
    if (s.options.scheme == Scheme::kSwa) s.state.sum.assign(size_t(length_), 0.0);
    if (s.options.scheme != Scheme::kLawa) continue;
    auto it = std::find_if(rings_.begin(), rings_.end(),
                           [&](const Ring& r) { return r.every == s.options.every; });
    if (it == rings_.end()) {
      Ring r;
      r.every = s.options.every;
      r.start = s.options.start;
      rings_.push_back(r);
      it = rings_.end() - 1;
    }
    it->window_max = std::max(it->window_max, s.options.window);
    it->start = std::min(it->start, s.options.start);
    s.ring = int(it - rings_.begin());
  }
  for (Ring& r : rings_) {
    r.slot_bytes = size_t(length_) * dtype_size(dtype_);
    r.samples.assign(size_t(r.slots()) * r.slot_bytes, 0);
  }
}

int64_t AveragerBank::state_bytes() const {
  int64_t bytes = 0;
  for (const Slot& s : slots_)
    bytes += int64_t(s.state.ema.size() * sizeof(float) + s.state.sum.size() * sizeof(double));
  for (const Ring& r : rings_) bytes += int64_t(r.samples.size());
  return bytes;
}

double state_bytes_per_element(const std::vector<AveragerOptions>& averagers, DType sample_dtype) {
  // EMA: fp32 average; SWA: fp64 sum; phema: fp32 per profile; LAWA: one ring per ν of L_max + 1
  // samples.
  double bytes = 0;
  std::map<int64_t, int64_t> ring_window;  // ν -> L_max
  for (const AveragerOptions& o : averagers) {
    if (o.scheme == Scheme::kEma) bytes += sizeof(float);
    if (o.scheme == Scheme::kSwa) bytes += sizeof(double);
    if (o.scheme == Scheme::kPhema) bytes += sizeof(float) * double(o.sigma_rels.size());
    if (o.scheme != Scheme::kLawa) continue;
    int64_t& w = ring_window[o.every];
    w = std::max(w, o.window);
  }
  for (const auto& [every, window] : ring_window)
    bytes += (double(window) + 1) * double(dtype_size(sample_dtype));
  return bytes;
}

double AveragerBank::state_bytes_per_element() const {
  std::vector<AveragerOptions> averagers;
  for (const Slot& s : slots_) averagers.push_back(s.options);
  return wavg::state_bytes_per_element(averagers, dtype_);
}

std::string AveragerBank::where(int64_t index) const {
  const int64_t flat = offset_ + index;
  for (const TensorSpan& t : layout_)
    if (flat >= t.offset && flat < t.offset + t.numel)
      return "tensor '" + t.name + "' element " + std::to_string(flat - t.offset);
  return "element " + std::to_string(flat);
}

int64_t find_non_finite(DType dtype, const void* data, int64_t n) {
  int64_t first = -1;
  dispatch_floating(dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* x = static_cast<const T*>(data);
    std::mutex mu;
    parallel_for(n, [&](int64_t b, int64_t e) {
      const int64_t f = first_non_finite(x + b, e - b);
      if (f < 0) return;
      std::lock_guard<std::mutex> lock(mu);
      if (first < 0 || b + f < first) first = b + f;
    });
  });
  return first;
}

int64_t copy_find_non_finite(DType dtype, const void* src, void* dst, int64_t n) {
  int64_t first = -1;
  dispatch_floating(dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* x = static_cast<const T*>(src);
    T* y = static_cast<T*>(dst);
    std::mutex mu;
    parallel_for(n, [&](int64_t b, int64_t e) {
      const int64_t f = copy_first_non_finite(x + b, y + b, e - b);
      if (f < 0) return;
      std::lock_guard<std::mutex> lock(mu);
      if (first < 0 || b + f < first) first = b + f;
    });
  });
  return first;
}

void AveragerBank::refuse(int64_t step, const void* shard, int64_t i) const {
  const double v = dispatch_floating(dtype_, [&](auto tag) {
    using T = decltype(tag);
    return load_f64(static_cast<const T*>(shard)[i]);
  });
  throw Error("non-finite sample (" + std::string(std::isnan(v) ? "nan" : "inf") + ") in " +
              where(i) + " at step " + std::to_string(step) + ": refused");
}

void AveragerBank::check_finite(int64_t step, const void* shard) const {
  const int64_t i = find_non_finite(dtype_, shard, length_);
  if (i >= 0) refuse(step, shard, i);
}

namespace {

// One EMA or SWA update of a step.
struct Op {
  Scheme scheme;
  float* ema;
  double* sum;
  double beta;
  bool first;
};

// The fused pass of a step over a shard of `length` samples x: every op, then the copy of x into
// each ring slot in `pushes`, chunk by chunk, so that x is read from memory once.
void fused_update(DType dtype, const void* shard, int64_t length, const std::vector<Op>& ops,
                  const std::vector<unsigned char*>& pushes) {
  dispatch_floating(dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* x = static_cast<const T*>(shard);
    parallel_for(length, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; b += kChunk) {
        const int64_t e = std::min(end, b + kChunk);
        for (const Op& op : ops) {
          if (op.scheme == Scheme::kEma) {
            float* __restrict m = op.ema;
            if (op.first) {
              for (int64_t i = b; i < e; ++i) m[i] = load_f32(x[i]);
            } else {
              // fp32 arithmetic on the fp32 state: 4 lanes per SSE instruction, and the cache-
              // resident case (small models, many EMAs) is compute-bound.
              const float beta = float(op.beta), alpha = float(1.0 - op.beta);
              for (int64_t i = b; i < e; ++i) m[i] = beta * m[i] + alpha * load_f32(x[i]);
            }
          } else {
            double* __restrict sum = op.sum;
            for (int64_t i = b; i < e; ++i) sum[i] += load_f64(x[i]);
          }
        }
        for (unsigned char* slot : pushes)
          std::memcpy(reinterpret_cast<T*>(slot) + b, x + b, size_t(e - b) * sizeof(T));
      }
    });
  });
}

}  // namespace

void AveragerBank::observe(int64_t step, const void* sample) {
  WAVG_CHECK(step > last_step_, "bank: steps must increase, got step ", step, " after step ",
             last_step_);
  allocate();
  std::vector<Op> ops;
  std::vector<unsigned char*> pushes;  // the spare slot of each sampling ring: x_n goes there
  for (Slot& s : slots_) {
    if (!samples_at(s.options, step) || s.options.scheme == Scheme::kLawa) continue;
    if (s.options.scheme != Scheme::kPhema) {
      ops.push_back({s.options.scheme, s.state.ema.data(), s.state.sum.data(), s.options.beta,
                     s.state.samples == 0});
      continue;
    }
    // Each profile is an EMA whose β depends on the step: (1 − ν/t)^(γ+1).
    for (size_t p = 0; p < s.options.sigma_rels.size(); ++p)
      ops.push_back({Scheme::kEma, s.state.ema.data() + p * size_t(length_), nullptr,
                     phema_beta(phema_gamma(s.options.sigma_rels[p]), step, s.options.every),
                     s.state.samples == 0});
  }
  for (Ring& r : rings_)
    if (samples_at(r.every, r.start, step)) pushes.push_back(r.at(r.count));
  if (ops.empty() && pushes.empty()) {
    last_step_ = step;
    return;
  }
  const size_t esize = dtype_size(dtype_);
  const unsigned char* shard = static_cast<const unsigned char*>(sample) + size_t(offset_) * esize;
  if (check_finite_ && !pushes.empty()) {
    // The check rides the copy into a spare slot, which no window reads until the step commits:
    // a refused sample leaves every ring as it was.
    const int64_t bad = copy_find_non_finite(dtype_, shard, pushes[0], length_);
    if (bad >= 0) refuse(step, shard, bad);
    pushes.erase(pushes.begin());
  } else if (check_finite_) {
    check_finite(step, shard);
  }
  if (!ops.empty() || !pushes.empty()) fused_update(dtype_, shard, length_, ops, pushes);

  for (Slot& s : slots_)
    if (samples_at(s.options, step)) ++s.state.samples;
  for (Ring& r : rings_)
    if (samples_at(r.every, r.start, step)) ++r.count;
  last_step_ = step;
}

void AveragerBank::lawa_mean(const Ring& r, int64_t k, DType out_dtype, void* out) const {
  // (x_{n−k} + … + x_{n−1}) / k in fp64, oldest first, as a naive mean sums them. Tiles of kChunk
  // elements: the tile's fp64 accumulator stays in L1 while the k samples stream through it.
  std::vector<const unsigned char*> window;
  for (int64_t m = r.count - k; m < r.count; ++m) window.push_back(r.at(m));
  const double count = double(k);
  dispatch_floating(dtype_, [&](auto tag) {
    using T = decltype(tag);
    dispatch_floating(out_dtype, [&](auto out_tag) {
      using O = decltype(out_tag);
      O* y = static_cast<O*>(out);
      parallel_for(length_, [&](int64_t begin, int64_t end) {
        std::vector<double> acc(static_cast<size_t>(kChunk));
        for (int64_t b = begin; b < end; b += kChunk) {
          const int64_t n = std::min(end, b + kChunk) - b;
          double* __restrict a = acc.data();
          std::fill(a, a + n, 0.0);
          for (const unsigned char* slot : window) {
            const T* __restrict x = reinterpret_cast<const T*>(slot) + b;
            for (int64_t i = 0; i < n; ++i) a[i] += load_f64(x[i]);
          }
          for (int64_t i = 0; i < n; ++i) y[b + i] = store_as<O>(a[i] / count);
        }
      });
    });
  });
}

void AveragerBank::average(int i, DType out_dtype, void* out, int profile) const {
  const Slot& s = slots_.at(i);
  WAVG_CHECK(profile >= 0 && profile < profiles(i), "averager '", s.options.name, "' has no profile ",
             profile, " (it has ", profiles(i), ")");
  WAVG_CHECK(s.state.samples > 0, "averager '", s.options.name,
             "' is empty: it has taken no sample yet (first sample at step >= ",
             s.options.start, ", every ", s.options.every, ")");
  if (s.options.scheme == Scheme::kLawa) {
    // The window holds this averager's last k samples, the ring's last k.
    lawa_mean(rings_[size_t(s.ring)], std::min(s.state.samples, s.options.window), out_dtype, out);
    return;
  }
  dispatch_floating(out_dtype, [&](auto tag) {
    using O = decltype(tag);
    O* y = static_cast<O*>(out);
    if (s.options.scheme == Scheme::kEma || s.options.scheme == Scheme::kPhema) {
      const float* m = s.state.ema.data() + size_t(profile) * size_t(length_);
      parallel_for(length_, [&](int64_t b, int64_t e) {
        for (int64_t k = b; k < e; ++k) y[k] = store_as<O>(m[k]);
      });
      return;
    }
    const double count = double(s.state.samples);
    const double* sum = s.state.sum.data();
    parallel_for(length_, [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k) y[k] = store_as<O>(sum[k] / count);
    });
  });
}

std::map<std::string, std::string> AveragerBank::state_meta() const {
  std::map<std::string, std::string> m;
  m["bank.format"] = std::to_string(kStateFormat);
  m["bank.numel"] = std::to_string(numel_);
  m["bank.dtype"] = dtype_name(dtype_);
  m["bank.shard_offset"] = std::to_string(offset_);
  m["bank.shard_length"] = std::to_string(length_);
  m["bank.last_step"] = std::to_string(last_step_);
  m["bank.averagers"] = std::to_string(slots_.size());
  for (size_t i = 0; i < slots_.size(); ++i) {
    const std::string p = "averager." + std::to_string(i);
    m[p + ".spec"] = spec_string(slots_[i].options);
    m[p + ".samples"] = std::to_string(slots_[i].state.samples);
  }
  // Rings are derived from the averagers; their counters are state.
  AveragerBank* self = const_cast<AveragerBank*>(this);
  self->allocate();
  for (size_t j = 0; j < rings_.size(); ++j)
    m["ring." + std::to_string(j) + ".count"] = std::to_string(rings_[j].count);
  return m;
}

int AveragerBank::restore_meta(const std::map<std::string, std::string>& meta) {
  allocate();
  const int64_t format = meta.count("bank.format") ? parse_int(meta, "bank.format") : 1;
  WAVG_CHECK(format == 1 || format == kStateFormat, "bank state: format ", format,
             " is unknown to this wavg, which reads formats 1 and ", kStateFormat,
             " (written by a newer wavg?)");
  const int64_t numel = parse_int(meta, "bank.numel");
  WAVG_CHECK(numel == numel_, "bank state: numel ", numel, " does not match the model's ", numel_);
  WAVG_CHECK(meta.count("bank.dtype") && meta.at("bank.dtype") == dtype_name(dtype_),
             "bank state: sample dtype does not match (expected ", dtype_name(dtype_), ")");
  WAVG_CHECK(parse_int(meta, "bank.shard_offset") == offset_ &&
                 parse_int(meta, "bank.shard_length") == length_,
             "bank state: shard does not match");
  const int64_t averagers = parse_int(meta, "bank.averagers");
  WAVG_CHECK(averagers == int64_t(slots_.size()), "bank state: has ", averagers,
             " averagers, this bank has ", slots_.size());
  for (size_t i = 0; i < slots_.size(); ++i) {
    const std::string p = "averager." + std::to_string(i);
    auto it = meta.find(p + ".spec");
    WAVG_CHECK(it != meta.end() && same_spec(it->second, slots_[i].options),
               "bank state: averager ", i, " is '",
               it == meta.end() ? "?" : quote_bytes(it->second), "', this bank has '",
               spec_string(slots_[i].options), "'");
    slots_[i].state.samples = parse_int(meta, p + ".samples");
  }
  for (size_t j = 0; j < rings_.size(); ++j)
    rings_[j].count = parse_int(meta, "ring." + std::to_string(j) + ".count");
  last_step_ = parse_int(meta, "bank.last_step");
  return int(format);
}

void AveragerBank::restore_ring_from_cumulative_sums(int j, const double* cumsum) {
  allocate();
  Ring& r = rings_.at(size_t(j));
  const int64_t slots = r.slots();
  dispatch_floating(dtype_, [&](auto tag) {
    using T = decltype(tag);
    for (int64_t k = std::max<int64_t>(0, r.count - r.window_max); k < r.count; ++k) {
      const double* lo = cumsum + (k % slots) * length_;        // C_k
      const double* hi = cumsum + ((k + 1) % slots) * length_;  // C_{k+1}
      T* x = reinterpret_cast<T*>(r.at(k));
      for (int64_t i = 0; i < length_; ++i) x[i] = store_as<T>(hi[i] - lo[i]);
    }
  });
}

std::vector<StateArray> AveragerBank::state_arrays() {
  allocate();
  std::vector<StateArray> out;
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot& s = slots_[i];
    const std::string p = "averager." + std::to_string(i);
    if (!s.state.ema.empty())
      out.push_back({p + ".ema", DType::kF32, int64_t(s.state.ema.size()), s.state.ema.data()});
    if (!s.state.sum.empty())
      out.push_back({p + ".sum", DType::kF64, length_, s.state.sum.data()});
  }
  for (size_t j = 0; j < rings_.size(); ++j)
    out.push_back({"ring." + std::to_string(j), dtype_, rings_[j].slots() * length_,
                   rings_[j].samples.data()});
  return out;
}

}  // namespace wavg
