// Streaming, fp64-accumulating average of checkpoints: plan (validate every input, open the
// weighted ones), accumulate tile by tile, write in the newest's form.
#include "wavg/io/checkpoint_average.h"

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>

#include "wavg/core/error.h"
#include "wavg/core/parallel.h"
#include "wavg/io/checkpoint_output.h"
#include "wavg/io/checkpoint_set.h"
#include "wavg/io/safetensors.h"

namespace wavg {

using detail::parallel_for;

namespace {

// Elements per output tile, and per inner chunk: one chunk's fp64 accumulator (512 KiB) stays in
// cache while every input file adds its slice, so the accumulator never travels to memory between
// files, and memory stays at a few tiles whatever the checkpoint size.
constexpr int64_t kTile = 1 << 20;
constexpr int64_t kChunk = 1 << 16;

// Inputs are read concurrently: allow as many open files as the hard limit permits.
void raise_open_file_limit() {
  struct rlimit lim;
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
}

struct Input {
  const CheckpointSet* set;
  double weight;  // w_i of the averager's offline form (times --weights)
  std::vector<const CheckpointTensor*> tensors;  // in the order of the newest's tensors
};

// The plan: every input validated against the newest checkpoint before any data is read, and the
// checkpoints that carry weight open (read together, chunk by chunk, while the output is written).
struct Plan {
  std::vector<std::unique_ptr<CheckpointSet>> open;  // the newest, and the weighted others
  const CheckpointSet* newest = nullptr;
  std::vector<Input> used;  // inputs with non-zero weight, oldest first
};

Plan plan_inputs(const std::vector<std::string>& inputs, const std::string& out,
                 const std::vector<double>& weights, const CheckpointSetOptions& set_options) {
  Plan plan;
  plan.open.push_back(std::make_unique<CheckpointSet>(inputs.back(), set_options));
  plan.newest = plan.open.back().get();
  check_output_apart(out, {plan.newest}, "average");
  for (size_t f = 0; f < inputs.size(); ++f) {
    const bool last = f + 1 == inputs.size();
    std::unique_ptr<CheckpointSet> set =
        last ? nullptr : std::make_unique<CheckpointSet>(inputs[f], set_options);
    const CheckpointSet* s = last ? plan.newest : set.get();
    std::vector<const CheckpointTensor*> matched;
    if (set) {
      check_output_apart(out, {s}, "average");
      matched = match_checkpoint(*set, *plan.newest, "average");
      // Only the newest's metadata goes to the output: the others' (validated when read, and up
      // to ~100 MB each) are freed, so memory does not grow with the number of inputs.
      set->release_metadata();
    } else {
      for (const CheckpointTensor& t : plan.newest->tensors()) matched.push_back(&t);
    }
    if (weights[f] == 0.0) continue;  // closed here (a zero-weight input is only validated)
    plan.used.push_back({s, weights[f], std::move(matched)});
    if (set) plan.open.push_back(std::move(set));
  }
  return plan;
}

// "wavg.average": the averager, the given --weights, and each used input's weight.
nlohmann::ordered_json average_record(const CheckpointAverageOptions& o,
                                      const std::vector<Input>& used) {
  const SchemeOptions& a = o.averager;
  nlohmann::ordered_json rec;
  rec["scheme"] = scheme_name(a.scheme());
  if (window_of(a) > 0) rec["window"] = window_of(a);
  if (const auto* x = a.as<LawaExpOptions>()) rec["alpha"] = x->alpha();
  if (const auto* e = a.as<EmaOptions>()) rec["beta"] = e->beta();
  rec["every"] = a.every();
  rec["start"] = a.start();
  if (!o.weights.empty()) rec["weights"] = o.weights;
  if (!o.strip_prefixes.empty()) rec["strip_prefixes"] = o.strip_prefixes;
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const Input& in : used) list.push_back({in.set->path(), in.weight});
  rec["inputs"] = list;
  return rec;
}

// Paths need not be UTF-8: invalid bytes are replaced rather than fail after all the checks.
std::string dump(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

// The averaged dtypes (README "Averaging checkpoints"): floats and FP8 as they are, C64 as its F32
// parts (component-wise, 2 scalars per element). Others are copied (integers) or refused
// (microscaling; check_averageable).
bool averaged(DType t) {
  const DTypeKind k = dtype_kind(t);
  return k == DTypeKind::kFloat || k == DTypeKind::kFloat8 || k == DTypeKind::kComplex;
}
DType scalar_dtype(DType t) { return dtype_kind(t) == DTypeKind::kComplex ? DType::kF32 : t; }
int64_t scalar_count(const TensorInfo& t) {
  return t.numel() * (dtype_kind(t.dtype) == DTypeKind::kComplex ? 2 : 1);
}
// "element 7", or for C64 "element 3 (imaginary part)", of scalar i.
std::string element_text(DType t, int64_t i) {
  if (dtype_kind(t) != DTypeKind::kComplex) return "element " + std::to_string(i);
  return "element " + std::to_string(i / 2) + (i % 2 ? " (imaginary part)" : " (real part)");
}

// Calls f(T{}, decode) with T the storage type of scalar dtype s and decode(T) its exact value.
template <typename F>
void dispatch_scalar(DType s, F&& f) {
  if (dtype_kind(s) == DTypeKind::kFloat8) {
    const double* table = float8_table(s);
    return f(uint8_t{}, [table](uint8_t b) { return table[b]; });
  }
  dispatch_floating(s, [&](auto tag) { f(tag, [](decltype(tag) x) { return load_f64(x); }); });
}

// acc[0, tn) = Σ_j w_j x_j[tile, tile + tn) over the scalars of averaged tensor t (the k-th of the
// newest file), in fp64.
void accumulate_tile(const TensorInfo& t, size_t k, int64_t tile, int64_t tn, const std::vector<Input>& used,
                     double* acc) {
  dispatch_scalar(scalar_dtype(t.dtype), [&](auto tag, auto decode) {
    using T = decltype(tag);
    parallel_for(tn, [&](int64_t b, int64_t e) {
      std::vector<T> x(size_t(std::min(kChunk, e - b)));
      for (int64_t c = b; c < e; c += kChunk) {
        const int64_t ce = std::min(e, c + kChunk);
        double* __restrict a = acc + c;
        for (size_t j = 0; j < used.size(); ++j) {
          // pread into a cache-resident buffer: no page faults, and no file pages mapped into
          // this process, so resident memory stays at a few tiles.
          used[j].set->read_bytes(*used[j].tensors[k], uint64_t(tile + c) * sizeof(T),
                                  size_t(ce - c) * sizeof(T), x.data());
          const T* xs = x.data();
          const double w = used[j].weight;
          if (j == 0) {
            for (int64_t i = 0; i < ce - c; ++i) a[i] = w * decode(xs[i]);
          } else {
            for (int64_t i = 0; i < ce - c; ++i) a[i] += w * decode(xs[i]);
          }
        }
      }
    });
  });
}

// A NaN/Inf in any weighted input leaves a non-finite sum (only additions of finite weights
// happen), so the check runs once on the result; on failure, the input is found to name it.
void check_tile_finite(const TensorInfo& t, size_t k, int64_t tile, int64_t tn,
                       const std::vector<Input>& used, const double* acc) {
  int64_t bad = -1;
  for (int64_t i = 0; i < tn && bad < 0; ++i)
    if (!std::isfinite(acc[i])) bad = i;
  if (bad < 0) return;
  const std::string name = quote_bytes(t.name);
  for (const Input& in : used) {
    const CheckpointTensor& ti = *in.tensors[k];
    double v = 0;
    dispatch_scalar(scalar_dtype(t.dtype), [&](auto tag, auto decode) {
      using T = decltype(tag);
      T x;
      in.set->read_bytes(ti, uint64_t(tile + bad) * sizeof(T), sizeof(T), &x);
      v = decode(x);
    });
    WAVG_CHECK(std::isfinite(v), in.set->shard(ti.shard).path(), ": tensor '",
               quote_bytes(ti.info->name), "' ", element_text(t.dtype, tile + bad),
               " is not finite: refused (the average would be poisoned)");
  }
  throw Error("average: tensor '" + name + "' " + element_text(t.dtype, tile + bad) + " overflows");
}

// A non-floating tensor, copied from the newest file in pieces of at most 1 MiB.
void copy_tensor(const CheckpointSet& newest, const CheckpointTensor& t, const ByteWriter& write) {
  const uint64_t nbytes = t.info->nbytes();
  std::vector<unsigned char> buf(size_t(std::min<uint64_t>(nbytes, 1 << 20)));
  for (uint64_t off = 0; off < nbytes; off += buf.size()) {
    const size_t n = size_t(std::min<uint64_t>(buf.size(), nbytes - off));
    newest.read_bytes(t, off, n, buf.data());
    write(buf.data(), n);
  }
}

// Largest finite value of a floating storage type.
template <typename O>
double max_finite();
template <>
double max_finite<double>() { return DBL_MAX; }
template <>
double max_finite<float>() { return FLT_MAX; }
template <>
double max_finite<Half>() { return 65504.0; }  // (2 - 2^-10) * 2^15
template <>
double max_finite<BFloat16>() { return to_float(BFloat16{0x7f7f}); }  // (2 - 2^-7) * 2^127

[[noreturn]] void out_of_range(const TensorInfo& t, int64_t element, double v, DType out_dtype) {
  throw Error("average: tensor '" + quote_bytes(t.name) + "' " + element_text(t.dtype, element) +
              " = " + std::to_string(v) + " is out of the range of " + dtype_name(out_dtype) +
              " (pass --saturate to clamp to the largest finite value)");
}

// Rounds acc[0, tn) to FP8 out_dtype (nearest even) into buf. A finite sum beyond the largest
// finite value (from a wider input through --dtype f8_*; never for a weighted mean of the same
// format, whose weights sum to 1) is an error, or with `saturate` the largest finite value of its
// sign.
void store_tile_float8(const TensorInfo& t, int64_t tile, int64_t tn, DType out_dtype, bool saturate,
                       const double* acc, std::vector<unsigned char>* buf) {
  std::atomic<int64_t> bad{-1};
  buf->resize(size_t(tn));
  uint8_t* y = buf->data();
  const double top = float8_max(out_dtype);
  parallel_for(tn, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      bool over = false;
      y[i] = to_float8(out_dtype, acc[size_t(i)], &over);
      if (over && saturate) y[i] = to_float8(out_dtype, std::copysign(top, acc[size_t(i)]), &over);
      int64_t none = -1;
      if (over && !saturate) bad.compare_exchange_strong(none, i);
    }
  });
  const int64_t i = bad.load();
  if (i >= 0) out_of_range(t, tile + i, acc[size_t(i)], out_dtype);
}

// Rounds acc[0, tn) to out_dtype (a scalar dtype) into buf. A finite sum that rounds to ±Inf (out of
// the narrower dtype's range: |x| >= 65520 for f16) is an error naming the tensor, or, with
// `saturate`, becomes the largest finite value of that sign.
void store_tile(const TensorInfo& t, int64_t tile, int64_t tn, DType out_dtype, bool saturate,
                const double* acc, std::vector<unsigned char>* buf) {
  if (dtype_kind(out_dtype) == DTypeKind::kFloat8)
    return store_tile_float8(t, tile, tn, out_dtype, saturate, acc, buf);
  std::atomic<int64_t> bad{-1};
  dispatch_floating(out_dtype, [&](auto tag) {
    using O = decltype(tag);
    buf->resize(size_t(tn) * sizeof(O));
    O* y = reinterpret_cast<O*>(buf->data());
    const O top = store_as<O>(max_finite<O>()), bottom = store_as<O>(-max_finite<O>());
    parallel_for(tn, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        y[i] = store_as<O>(acc[size_t(i)]);
        if (std::isinf(load_f64(y[i])) && std::isfinite(acc[size_t(i)])) {
          if (saturate) {
            y[i] = acc[size_t(i)] > 0 ? top : bottom;
          } else {
            int64_t none = -1;
            bad.compare_exchange_strong(none, i);
          }
        }
      }
    });
  });
  const int64_t i = bad.load();
  if (i >= 0) out_of_range(t, tile + i, acc[size_t(i)], out_dtype);
}

// An averaged tensor, tile by tile over its scalars: accumulate, check, round to out_dtype, and hand
// the tile to a background writer while the next one is computed (two output buffers).
void write_averaged_tensor(const TensorInfo& t, size_t k, DType out_dtype, const std::vector<Input>& used,
                           bool check_finite, bool saturate, const ByteWriter& write) {
  const int64_t n = scalar_count(t);
  out_dtype = scalar_dtype(out_dtype);
  std::vector<double> acc(size_t(std::min(kTile, n)));
  std::vector<unsigned char> out_buf[2];
  int which = 0;
  std::future<void> pending;
  struct Drain {  // the writer thread never outlives the buffers, also on exceptions
    std::future<void>& f;
    ~Drain() {
      if (f.valid()) f.wait();
    }
  } drain{pending};
  for (int64_t tile = 0; tile < n; tile += kTile) {
    const int64_t tn = std::min(kTile, n - tile);
    accumulate_tile(t, k, tile, tn, used, acc.data());
    if (check_finite) check_tile_finite(t, k, tile, tn, used, acc.data());
    std::vector<unsigned char>& buf = out_buf[which];
    which ^= 1;
    store_tile(t, tile, tn, out_dtype, saturate, acc.data(), &buf);
    if (pending.valid()) pending.get();  // rethrows a write error
    if (n <= kTile) {  // one tile: nothing to overlap (and no thread per small tensor)
      write(buf.data(), buf.size());
      continue;
    }
    pending = std::async(std::launch::async, [&write, &buf] { write(buf.data(), buf.size()); });
  }
  if (pending.valid()) pending.get();
}

// FP8 tensors hold values that mean something only times their scale tensor (DeepSeek-V3's
// `<name>_scale_inv`, compressed-tensors' `<name>_scale` for `.weight`): the scale of an average
// is not the average of the scales, so such a checkpoint is refused.
const CheckpointTensor* float8_scale(const CheckpointSet& set, const CheckpointTensor& t) {
  if (dtype_kind(t.info->dtype) != DTypeKind::kFloat8) return nullptr;
  for (const char* suffix : {"_scale_inv", "_scale"})
    if (const CheckpointTensor* s = set.find(t.key + suffix)) return s;
  return nullptr;
}

// Refuses, before anything is read or written, the tensors `wavg average` cannot average honestly:
// microscaling dtypes, and FP8 tensors that come with scale tensors.
void check_averageable(const CheckpointSet& newest) {
  for (const CheckpointTensor& t : newest.tensors()) {
    const DType d = t.info->dtype;
    if (dtype_kind(d) != DTypeKind::kMicroscale && dtype_kind(d) != DTypeKind::kFloat8) continue;
    const std::string name = "average: " + newest.shard(t.shard).path() + ": tensor '" +
                             quote_bytes(t.info->name) + "' ";
    WAVG_CHECK(d != DType::kF8E8M0, name, "has dtype F8_E8M0, a microscaling block scale (a ",
               "power of two that means nothing apart from the block it scales): refused");
    WAVG_CHECK(dtype_kind(d) != DTypeKind::kMicroscale, name, "has dtype ", dtype_name(d), ", ",
               dtype_bits(d), "-bit microscaling elements (meaningless without their blocks' ",
               "F8_E8M0 scales; not supported): refused");
    const CheckpointTensor* scale = float8_scale(newest, t);
    WAVG_CHECK(scale == nullptr, name, "(", dtype_name(d), ") comes with the scale tensor '",
               quote_bytes(scale ? scale->info->name : ""), "': quantized FP8 values mean nothing ",
               "without their scales, and averaging both is not averaging the weights: refused ",
               "(dequantize the checkpoints first)");
  }
}

}  // namespace

std::vector<double> input_weights(const CheckpointAverageOptions& o, int64_t count) {
  std::vector<double> w = offline_weights(o.averager, count);
  if (o.weights.empty()) return w;
  WAVG_CHECK(int64_t(o.weights.size()) == count, "average: --weights has ", o.weights.size(),
             " values for ", count, " inputs (one per input)");
  WAVG_CHECK(o.averager.scheme() != Scheme::kEma, "average: --weights does not combine with --ema ",
             "(an EMA's weights come from its beta); use it alone or with --last, --lawa or --swa");
  double given = 0, top = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    const double g = o.weights[i];
    WAVG_CHECK(std::isfinite(g) && g >= 0, "average: --weights value ", i + 1, " must be a finite ",
               "number >= 0, got ", g);
    given = std::max(given, g);
    w[i] = w[i] > 0 ? g : 0.0;  // the averager selects; the given weights weigh the selection
    top = std::max(top, w[i]);
  }
  WAVG_CHECK(given > 0, "average: --weights are all zero");
  WAVG_CHECK(top > 0, "average: --weights gives weight 0 to every input that the averager selects");
  // Divided by the largest first: the sum of weights up to DBL_MAX each (1e308 + 1e308 is Inf) is
  // then at most the input count.
  double sum = 0;
  for (double& x : w) sum += (x /= top);
  for (double& x : w) x /= sum;
  return w;
}

namespace {

// The shards' and the index's metadata: the newest's, plus the record of the average.
void record_average(const CheckpointSet& newest, const nlohmann::ordered_json& rec,
                    OutputLayout* layout, CheckpointWriteOptions* write) {
  for (OutputShard& s : layout->shards) s.metadata["wavg.average"] = dump(rec);
  nlohmann::ordered_json meta = nlohmann::ordered_json::parse(newest.index_metadata());
  meta["wavg.average"] = rec;
  write->index_metadata = dump(meta);
}

}  // namespace

CheckpointAverageReport average_checkpoints(const std::vector<std::string>& inputs,
                                            const std::string& out_arg,
                                            const CheckpointAverageOptions& options) {
  WAVG_CHECK(!inputs.empty(), "average: no input files");
  // "out/" names the directory out: its temporary goes beside it, not into it.
  std::string out = out_arg;
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  if (options.out_dtype)
    WAVG_CHECK(is_floating(*options.out_dtype) || dtype_kind(*options.out_dtype) == DTypeKind::kFloat8,
               "average: --dtype must be floating or FP8, got ", dtype_name(*options.out_dtype));
  CheckpointAverageReport report;
  report.weights = input_weights(options, int64_t(inputs.size()));
  raise_open_file_limit();
  CheckpointSetOptions set_options;
  set_options.strip_prefixes = options.strip_prefixes;
  set_options.all_dtypes = true;
  const Plan plan = plan_inputs(inputs, out, report.weights, set_options);
  const CheckpointSet& ref = *plan.newest;
  check_averageable(ref);
  report.files_read = int64_t(plan.used.size());
  report.tensors = int64_t(ref.tensors().size());

  std::vector<TensorOut> outs;
  std::vector<uint64_t> out_bytes;
  uint64_t total = 0;
  for (const CheckpointTensor& ct : ref.tensors()) {
    const TensorInfo& t = *ct.info;
    DType dt = t.dtype;
    if (averaged(t.dtype)) {
      report.averaged_elements += t.numel();
      if (options.out_dtype && dtype_kind(t.dtype) != DTypeKind::kComplex) dt = *options.out_dtype;
    }
    outs.push_back({t.name, dt, t.shape, nullptr});
    uint64_t nbytes = 0;
    WAVG_ASSERT(shape_nbytes(t.shape, dt, &nbytes));  // validated when read, dt no wider than F64
    out_bytes.push_back(nbytes);
    total += out_bytes.back();
  }
  OutputLayout layout = output_layout(ref, out_bytes, options.max_shard_size);
  CheckpointWriteOptions write_options;
  write_options.overwrite = options.overwrite;
  record_average(ref, average_record(options, plan.used), &layout, &write_options);
  report.shards_written = int64_t(layout.shards.size());
  uint64_t done = 0;
  write_checkpoint(
      out, layout, outs,
      [&](size_t k, const ByteWriter& write) {
        const ByteWriter counted = [&](const void* p, size_t n) {
          write(p, n);
          done += n;
          if (options.progress) options.progress(done, total);
        };
        const TensorInfo& t = *ref.tensors()[k].info;
        if (averaged(t.dtype))
          write_averaged_tensor(t, k, outs[k].dtype, plan.used, options.check_finite,
                                options.saturate, counted);
        else
          copy_tensor(ref, ref.tensors()[k], counted);
      },
      write_options);
  return report;
}

}  // namespace wavg
