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

namespace wavg {

using detail::parallel_for;

namespace {

// Elements per inner chunk: the sample chunk stays in L1/L2 while every averager consumes it, so
// the sample is read from memory once per step whatever the number of averagers.
constexpr int64_t kChunk = 4096;
// Ring samples between rebases (see bank.h).
constexpr int64_t kRebase = 1024;

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

// "name|scheme|window|beta|every|start": an averager as recorded in a state file.
std::string spec_string(const AveragerOptions& o) {
  return o.name + "|" + scheme_name(o.scheme) + "|" + std::to_string(o.window) + "|" +
         format_exact(o.beta) + "|" + std::to_string(o.every) + "|" + std::to_string(o.start);
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
  if (f.size() != 5) return false;
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
  for (Ring& r : rings_) r.cumsum.assign(size_t(r.slots() * length_), 0.0);  // C_0 = 0
}

int64_t AveragerBank::state_bytes() const {
  int64_t bytes = 0;
  for (const Slot& s : slots_)
    bytes += int64_t(s.state.ema.size() * sizeof(float) + s.state.sum.size() * sizeof(double));
  for (const Ring& r : rings_) bytes += int64_t(r.cumsum.size() * sizeof(double));
  return bytes;
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

void AveragerBank::check_finite(int64_t step, const void* shard) const {
  const int64_t i = find_non_finite(dtype_, shard, length_);
  if (i < 0) return;
  const double v = dispatch_floating(dtype_, [&](auto tag) {
    using T = decltype(tag);
    return load_f64(static_cast<const T*>(shard)[i]);
  });
  throw Error("non-finite sample (" + std::string(std::isnan(v) ? "nan" : "inf") + ") in " +
              where(i) + " at step " + std::to_string(step) + ": refused");
}

void AveragerBank::observe(int64_t step, const void* sample) {
  WAVG_CHECK(step > last_step_, "bank: steps must increase, got step ", step, " after step ",
             last_step_);
  allocate();
  struct Op {
    Scheme scheme;
    float* ema;
    double* sum;
    double beta;
    bool first;
  };
  struct Push {
    const double* from;  // C_n
    double* to;          // C_{n+1}
  };
  std::vector<Op> ops;
  std::vector<Push> pushes;
  for (Slot& s : slots_) {
    if (!samples_at(s.options, step) || s.options.scheme == Scheme::kLawa) continue;
    ops.push_back({s.options.scheme, s.state.ema.data(), s.state.sum.data(), s.options.beta,
                   s.state.samples == 0});
  }
  for (Ring& r : rings_)
    if (samples_at(r.every, r.start, step))
      pushes.push_back({r.at(r.count, length_), r.at(r.count + 1, length_)});
  if (ops.empty() && pushes.empty()) {
    last_step_ = step;
    return;
  }
  const size_t esize = dtype_size(dtype_);
  const unsigned char* shard = static_cast<const unsigned char*>(sample) + size_t(offset_) * esize;
  if (check_finite_) check_finite(step, shard);

  dispatch_floating(dtype_, [&](auto tag) {
    using T = decltype(tag);
    const T* x = reinterpret_cast<const T*>(shard);
    parallel_for(length_, [&](int64_t begin, int64_t end) {
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
        for (const Push& p : pushes) {
          const double* __restrict from = p.from;
          double* __restrict to = p.to;
          for (int64_t i = b; i < e; ++i) to[i] = from[i] + load_f64(x[i]);
        }
      }
    });
  });

  for (Slot& s : slots_)
    if (samples_at(s.options, step)) ++s.state.samples;
  for (Ring& r : rings_) {
    if (!samples_at(r.every, r.start, step)) continue;
    ++r.count;
    if (r.count % kRebase == 0) rebase(r);
  }
  last_step_ = step;
}

void AveragerBank::rebase(Ring& r) {
  // Subtract the oldest kept sum C_{n-L_max} from all kept sums: differences are unchanged (up to
  // one rounding each), magnitudes return to at most L_max samples' worth.
  const int64_t oldest = std::max<int64_t>(0, r.count - r.window_max);
  std::vector<double> base(r.at(oldest, length_), r.at(oldest, length_) + length_);
  for (int64_t k = oldest; k <= r.count; ++k) {
    double* c = r.at(k, length_);
    parallel_for(length_, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) c[i] -= base[size_t(i)];
    });
  }
}

void AveragerBank::average(int i, DType out_dtype, void* out) const {
  const Slot& s = slots_.at(i);
  WAVG_CHECK(s.state.samples > 0, "averager '", s.options.name,
             "' is empty: it has taken no sample yet (first sample at step >= ",
             s.options.start, ", every ", s.options.every, ")");
  dispatch_floating(out_dtype, [&](auto tag) {
    using O = decltype(tag);
    O* y = static_cast<O*>(out);
    if (s.options.scheme == Scheme::kEma) {
      const float* m = s.state.ema.data();
      parallel_for(length_, [&](int64_t b, int64_t e) {
        for (int64_t k = b; k < e; ++k) y[k] = store_as<O>(m[k]);
      });
      return;
    }
    if (s.options.scheme == Scheme::kSwa) {
      const double count = double(s.state.samples);
      const double* sum = s.state.sum.data();
      parallel_for(length_, [&](int64_t b, int64_t e) {
        for (int64_t k = b; k < e; ++k) y[k] = store_as<O>(sum[k] / count);
      });
      return;
    }
    // LAWA: the window holds this averager's last k samples, the ring's last k.
    const Ring& r = rings_[size_t(s.ring)];
    const int64_t k = std::min(s.state.samples, s.options.window);
    const double* hi = r.at(r.count, length_);
    const double* lo = r.at(r.count - k, length_);
    const double count = double(k);
    parallel_for(length_, [&](int64_t b, int64_t e) {
      for (int64_t j = b; j < e; ++j) y[j] = store_as<O>((hi[j] - lo[j]) / count);
    });
  });
}

std::map<std::string, std::string> AveragerBank::state_meta() const {
  std::map<std::string, std::string> m;
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

void AveragerBank::restore_meta(const std::map<std::string, std::string>& meta) {
  allocate();
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
}

std::vector<StateArray> AveragerBank::state_arrays() {
  allocate();
  std::vector<StateArray> out;
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot& s = slots_[i];
    const std::string p = "averager." + std::to_string(i);
    if (!s.state.ema.empty())
      out.push_back({p + ".ema", DType::kF32, length_, s.state.ema.data()});
    if (!s.state.sum.empty())
      out.push_back({p + ".sum", DType::kF64, length_, s.state.sum.data()});
  }
  for (size_t j = 0; j < rings_.size(); ++j)
    out.push_back({"ring." + std::to_string(j), DType::kF64, rings_[j].slots() * length_,
                   rings_[j].cumsum.data()});
  return out;
}

}  // namespace wavg
