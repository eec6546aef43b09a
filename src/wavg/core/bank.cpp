// AveragerBank: its averager kinds and rings, the fused update kernel, the non-finite check, and
// exact state.
#include "wavg/core/bank.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <cstdlib>
#include <limits>

#include "wavg/core/averager_kinds.h"
#include "wavg/core/error.h"
#include "wavg/core/format.h"
#include "wavg/core/parallel.h"
#include "wavg/core/sample_ring.h"

namespace wavg {

using detail::AveragerKind;
using detail::parallel_for;
using detail::SampleRing;
using detail::TileOp;

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

// "name|scheme|window|beta|every|start": an averager as recorded in a state file; kinds with more
// settings add a field (phema "|σ_1,σ_2,…", EXP "|α").
// The window field is L or k (0 for the other schemes), the beta field EMA's β (0 for the others).
double spec_beta(const SchemeOptions& o) {
  const auto* e = o.as<EmaOptions>();
  return e ? e->beta() : 0.0;
}

std::string spec_string(const AveragerKind& k) {
  const SchemeOptions& o = k.options();
  std::string s = o.name() + "|" + scheme_name(o.scheme()) + "|" + std::to_string(window_of(o)) +
                  "|" + format_exact(spec_beta(o)) + "|" + std::to_string(o.every()) + "|" +
                  std::to_string(o.start());
  const std::string extra = k.spec_extra();
  if (!extra.empty()) s += "|" + extra;
  return s;
}

// Whether a recorded spec is the averager `k`. Fields are compared as values, not text, so that a
// beta written with more digits than format_exact's (older files: 17) still matches.
bool same_spec(const std::string& recorded, const AveragerKind& k) {
  const SchemeOptions& o = k.options();
  const std::string prefix = o.name() + "|";
  if (recorded.compare(0, prefix.size(), prefix) != 0) return false;
  std::vector<std::string> f;  // scheme, window, beta, every, start[, extra]
  for (size_t from = prefix.size();;) {
    const size_t bar = recorded.find('|', from);
    f.push_back(recorded.substr(from, bar == std::string::npos ? bar : bar - from));
    if (bar == std::string::npos) break;
    from = bar + 1;
  }
  const bool extra = !k.spec_extra().empty();
  if (f.size() != (extra ? 6u : 5u)) return false;
  if (extra && !k.same_extra(f[5])) return false;
  auto int_is = [](const std::string& t, int64_t want) {
    char* stop = nullptr;
    const long long v = std::strtoll(t.c_str(), &stop, 10);
    return !t.empty() && *stop == '\0' && v == want;
  };
  char* stop = nullptr;
  const double beta = std::strtod(f[2].c_str(), &stop);
  const bool beta_is = !f[2].empty() && *stop == '\0' && beta == spec_beta(o);
  return f[0] == scheme_name(o.scheme()) && int_is(f[1], window_of(o)) && beta_is &&
         int_is(f[3], o.every()) && int_is(f[4], o.start());
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

AveragerBank::~AveragerBank() = default;
AveragerBank::AveragerBank(AveragerBank&&) noexcept = default;
AveragerBank& AveragerBank::operator=(AveragerBank&&) noexcept = default;

int AveragerBank::add(SchemeOptions options) {
  WAVG_CHECK(!allocated_, "bank: averagers must be added before the first observe()");
  if (options.name().empty()) options.name(default_name(options));
  WAVG_CHECK(find(options.name()) < 0, "bank: duplicate averager name '", options.name(), "'");
  kinds_.push_back(detail::make_kind(options));
  return int(kinds_.size()) - 1;
}

int AveragerBank::find(const std::string& name) const {
  for (size_t i = 0; i < kinds_.size(); ++i)
    if (kinds_[i]->options().name() == name) return int(i);
  return -1;
}

const SchemeOptions& AveragerBank::options(int i) const { return kinds_.at(size_t(i))->options(); }
int64_t AveragerBank::samples(int i) const { return kinds_.at(size_t(i))->samples(); }
bool AveragerBank::full(int i) const { return kinds_.at(size_t(i))->full(); }
int AveragerBank::profiles(int i) const { return kinds_.at(size_t(i))->profiles(); }

bool AveragerBank::wants(int64_t step) const {
  for (const auto& k : kinds_)
    if (k->samples_at(step)) return true;
  return false;
}

void AveragerBank::allocate() {
  if (allocated_) return;
  allocated_ = true;
  for (auto& k : kinds_) {
    k->allocate(length_, dtype_);
    const int64_t window = k->ring_window();
    if (window == 0) continue;
    const SchemeOptions& o = k->options();
    auto it = std::find_if(rings_.begin(), rings_.end(),
                           [&](const auto& r) { return r->every() == o.every(); });
    if (it == rings_.end()) {
      rings_.push_back(std::make_unique<SampleRing>(o.every(), o.start()));
      it = rings_.end() - 1;
    }
    (*it)->join(window, o.start());
    k->attach(it->get());
  }
  for (auto& r : rings_) r->allocate(dtype_, length_);
}

int64_t AveragerBank::state_bytes() const {
  int64_t bytes = 0;
  for (const auto& k : kinds_) bytes += k->state_bytes();
  for (const auto& r : rings_) bytes += r->bytes();
  return bytes;
}

int64_t shared_ring_window(const SchemeOptions& o) { return detail::make_kind(o)->ring_window(); }

double state_bytes_per_element(const std::vector<SchemeOptions>& averagers, DType sample_dtype) {
  // Each kind's own state, plus one ring per ν of windowed kinds: L_max + 1 samples.
  double bytes = 0;
  std::map<int64_t, int64_t> ring_window;  // ν -> L_max
  for (const SchemeOptions& o : averagers) {
    const auto kind = detail::make_kind(o);
    bytes += kind->own_bytes_per_element();
    if (kind->ring_window() == 0) continue;
    int64_t& w = ring_window[o.every()];
    w = std::max(w, kind->ring_window());
  }
  for (const auto& [every, window] : ring_window)
    bytes += (double(window) + 1) * double(dtype_size(sample_dtype));
  return bytes;
}

double AveragerBank::state_bytes_per_element() const {
  std::vector<SchemeOptions> averagers;
  for (const auto& k : kinds_) averagers.push_back(k->options());
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

// The fused pass of a step over a shard of `length` samples x: every op, then the copy of x into
// each ring slot in `pushes`, chunk by chunk, so that x is read from memory once.
void fused_update(DType dtype, const void* shard, int64_t length, const std::vector<TileOp>& ops,
                  const std::vector<unsigned char*>& pushes) {
  dispatch_floating(dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* x = static_cast<const T*>(shard);
    parallel_for(length, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; b += kChunk) {
        const int64_t e = std::min(end, b + kChunk);
        for (const TileOp& op : ops) {
          if (op.ema) {
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
  std::vector<TileOp> ops;
  std::vector<unsigned char*> pushes;  // the spare slot of each sampling ring: x_n goes there
  for (auto& k : kinds_)
    if (k->samples_at(step)) k->plan(step, &ops);
  for (auto& r : rings_)
    if (r->samples_at(step)) pushes.push_back(r->spare());
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

  for (auto& k : kinds_)
    if (k->samples_at(step)) k->commit();
  for (auto& r : rings_)
    if (r->samples_at(step)) r->commit();
  last_step_ = step;
}

void AveragerBank::average(int i, DType out_dtype, void* out, int profile) const {
  const AveragerKind& k = *kinds_.at(size_t(i));
  const SchemeOptions& o = k.options();
  WAVG_CHECK(profile >= 0 && profile < k.profiles(), "averager '", o.name(), "' has no profile ",
             profile, " (it has ", k.profiles(), ")");
  WAVG_CHECK(k.samples() > 0, "averager '", o.name(),
             "' is empty: it has taken no sample yet (first sample at step >= ", o.start(),
             ", every ", o.every(), ")");
  k.average(profile, out_dtype, out);
}

std::map<std::string, std::string> AveragerBank::state_meta() const {
  std::map<std::string, std::string> m;
  m["bank.format"] = std::to_string(kStateFormat);
  m["bank.numel"] = std::to_string(numel_);
  m["bank.dtype"] = dtype_name(dtype_);
  m["bank.shard_offset"] = std::to_string(offset_);
  m["bank.shard_length"] = std::to_string(length_);
  m["bank.last_step"] = std::to_string(last_step_);
  m["bank.averagers"] = std::to_string(kinds_.size());
  for (size_t i = 0; i < kinds_.size(); ++i) {
    const std::string p = "averager." + std::to_string(i);
    m[p + ".spec"] = spec_string(*kinds_[i]);
    m[p + ".samples"] = std::to_string(kinds_[i]->samples());
  }
  // Rings are derived from the averagers; their counters are state.
  AveragerBank* self = const_cast<AveragerBank*>(this);
  self->allocate();
  for (size_t j = 0; j < rings_.size(); ++j)
    m["ring." + std::to_string(j) + ".count"] = std::to_string(rings_[j]->count());
  return m;
}

namespace {

// The most samples an averager (or ring) sampling every `every` steps from `start` can hold once
// steps 0..last were observed: the number of those steps it samples at.
int64_t max_samples(int64_t every, int64_t start, int64_t last) {
  const int64_t first = (std::max<int64_t>(start, 0) + every - 1) / every * every;
  return last < first ? 0 : (last - first) / every + 1;
}

// A counter of a state (key `key`) inside [lo, hi], or an error naming the field and the range.
int64_t bounded(const std::map<std::string, std::string>& meta, const std::string& key, int64_t lo,
                int64_t hi, const char* why) {
  const int64_t v = parse_int(meta, key);
  WAVG_CHECK(v >= lo && v <= hi, "bank state: '", key, "' is ", v, ", outside [", lo, ", ", hi,
             "] (", why, ")");
  return v;
}

}  // namespace

int AveragerBank::check_meta(const std::map<std::string, std::string>& meta,
                             std::vector<int64_t>* samples, std::vector<int64_t>* counts,
                             int64_t* last_step) const {
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
  WAVG_CHECK(averagers == int64_t(kinds_.size()), "bank state: has ", averagers,
             " averagers, this bank has ", kinds_.size());
  const int64_t last = bounded(meta, "bank.last_step", -1, std::numeric_limits<int64_t>::max() - 1,
                               "the last step observed; -1: none");
  for (size_t i = 0; i < kinds_.size(); ++i) {
    const std::string p = "averager." + std::to_string(i);
    auto it = meta.find(p + ".spec");
    WAVG_CHECK(it != meta.end() && same_spec(it->second, *kinds_[i]), "bank state: averager ", i,
               " is '", it == meta.end() ? "?" : quote_bytes(it->second), "', this bank has '",
               spec_string(*kinds_[i]), "'");
    const SchemeOptions& o = kinds_[i]->options();
    samples->push_back(bounded(meta, p + ".samples", 0, max_samples(o.every(), o.start(), last),
                               "its sampled steps up to bank.last_step"));
  }
  for (size_t j = 0; j < rings_.size(); ++j) {
    int64_t least = 0;  // every window of the ring reads its last min(n, L) samples from it
    for (size_t i = 0; i < kinds_.size(); ++i)
      if (kinds_[i]->ring_window() > 0 && kinds_[i]->options().every() == rings_[j]->every())
        least = std::max(least, (*samples)[i]);
    counts->push_back(bounded(meta, "ring." + std::to_string(j) + ".count", least,
                              max_samples(rings_[j]->every(), rings_[j]->start(), last),
                              "at least the samples of each of its windows, at most its sampled "
                              "steps up to bank.last_step"));
  }
  *last_step = last;
  return int(format);
}

int AveragerBank::check_state_meta(const std::map<std::string, std::string>& meta) {
  allocate();
  std::vector<int64_t> samples, counts;
  int64_t last = -1;
  return check_meta(meta, &samples, &counts, &last);
}

int AveragerBank::restore_meta(const std::map<std::string, std::string>& meta) {
  allocate();
  std::vector<int64_t> samples, counts;
  int64_t last = -1;
  const int format = check_meta(meta, &samples, &counts, &last);  // nothing changes on an error
  for (size_t i = 0; i < kinds_.size(); ++i) kinds_[i]->set_samples(samples[i]);
  for (size_t j = 0; j < rings_.size(); ++j) rings_[j]->set_count(counts[j]);
  last_step_ = last;
  return format;
}

void AveragerBank::restore_ring_from_cumulative_sums(int j, const double* cumsum) {
  allocate();
  rings_.at(size_t(j))->restore_from_cumulative_sums(cumsum);
}

std::vector<StateArray> AveragerBank::state_arrays() {
  allocate();
  std::vector<StateArray> out;
  for (size_t i = 0; i < kinds_.size(); ++i) kinds_[i]->arrays("averager." + std::to_string(i), &out);
  for (size_t j = 0; j < rings_.size(); ++j)
    out.push_back(rings_[j]->array("ring." + std::to_string(j)));
  return out;
}

}  // namespace wavg
