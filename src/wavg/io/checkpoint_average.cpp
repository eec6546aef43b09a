// Streaming, fp64-accumulating average of safetensors checkpoints: plan (validate headers, open the
// weighted files), accumulate tile by tile, write.
#include "wavg/io/checkpoint_average.h"

#include <sys/resource.h>
#include <sys/stat.h>

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
#include "wavg/io/safetensors.h"

namespace wavg {

using detail::parallel_for;

namespace {

// Elements per output tile, and per inner chunk: one chunk's fp64 accumulator (512 KiB) stays in
// cache while every input file adds its slice, so the accumulator never travels to memory between
// files, and memory stays at a few tiles whatever the checkpoint size.
constexpr int64_t kTile = 1 << 20;
constexpr int64_t kChunk = 1 << 16;

std::string base_name(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Inputs are read concurrently: allow as many open files as the hard limit permits.
void raise_open_file_limit() {
  struct rlimit lim;
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
}

struct Input {
  const std::string* path;
  std::unique_ptr<SafetensorsFile> file;
  double weight;  // w_i of the averager's offline form
  std::vector<const TensorInfo*> tensors;  // in the order of the newest file's tensors
};

// Every tensor of `f` is in `ref` with the same dtype and shape, and every tensor of `ref` in `f`;
// returns f's tensors in the order of ref's (looked up once here, not per tile).
std::vector<const TensorInfo*> match_tensors(const SafetensorsFile& f, const SafetensorsFile& ref) {
  std::vector<const TensorInfo*> matched(ref.tensors().size());
  for (const TensorInfo& t : f.tensors()) {
    const TensorInfo* r = ref.find(t.name);
    WAVG_CHECK(r != nullptr, f.path(), ": tensor '", quote_bytes(t.name), "' is not in ",
               ref.path());
    WAVG_CHECK(r->dtype == t.dtype, f.path(), ": tensor '", quote_bytes(t.name), "' has dtype ",
               dtype_name(t.dtype), " but ", dtype_name(r->dtype), " in ", ref.path());
    WAVG_CHECK(r->shape == t.shape, f.path(), ": tensor '", quote_bytes(t.name),
               "' has a different shape than in ", ref.path());
    matched[size_t(r - ref.tensors().data())] = &t;
  }
  for (size_t k = 0; k < matched.size(); ++k)  // names are unique: unmatched ones are missing
    WAVG_CHECK(matched[k] != nullptr, f.path(), ": tensor '", quote_bytes(ref.tensors()[k].name),
               "' is missing (present in ", ref.path(), ")");
  return matched;
}

// The plan: every header validated against the newest file's before any data is read, and the
// files that carry weight open (read together, chunk by chunk, while the output is written).
struct Plan {
  std::unique_ptr<SafetensorsFile> newest;
  std::vector<Input> used;  // inputs with non-zero weight, oldest first
};

Plan plan_inputs(const std::vector<std::string>& inputs, const std::vector<double>& weights) {
  Plan plan;
  plan.newest = std::make_unique<SafetensorsFile>(inputs.back());
  for (size_t f = 0; f < inputs.size(); ++f) {
    const bool last = f + 1 == inputs.size();
    auto file = last ? nullptr : std::make_unique<SafetensorsFile>(inputs[f]);
    std::vector<const TensorInfo*> matched;
    if (file) {
      matched = match_tensors(*file, *plan.newest);
    } else {
      for (const TensorInfo& t : plan.newest->tensors()) matched.push_back(&t);
    }
    // Only the newest file's metadata goes to the output: the others' (validated when read, and
    // up to ~100 MB each) are freed, so memory does not grow with the number of inputs.
    if (file) file->release_metadata();
    if (weights[f] == 0.0) continue;
    if (!file) file = std::make_unique<SafetensorsFile>(inputs[f]);
    plan.used.push_back({&inputs[f], std::move(file), weights[f], std::move(matched)});
  }
  return plan;
}

// The newest file's metadata, plus "wavg.average": the averager and each used input's weight.
std::map<std::string, std::string> output_metadata(const SafetensorsHeader& ref,
                                                   const AveragerOptions& o,
                                                   const std::vector<Input>& used) {
  std::map<std::string, std::string> meta = ref.metadata;
  nlohmann::ordered_json rec;
  rec["scheme"] = scheme_name(o.scheme);
  if (o.scheme == Scheme::kLawa) rec["window"] = o.window;
  if (o.scheme == Scheme::kEma) rec["beta"] = o.beta;
  rec["every"] = o.every;
  rec["start"] = o.start;
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const Input& in : used) list.push_back({base_name(*in.path), in.weight});
  rec["inputs"] = list;
  // Paths need not be UTF-8: replace invalid bytes rather than fail after all the checks.
  meta["wavg.average"] = rec.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  return meta;
}

// acc[0, tn) = Σ_j w_j x_j[tile, tile + tn) for floating tensor t (the k-th of the newest file), in
// fp64.
void accumulate_tile(const TensorInfo& t, size_t k, int64_t tile, int64_t tn, const std::vector<Input>& used,
                     double* acc) {
  dispatch_floating(t.dtype, [&](auto tag) {
    using T = decltype(tag);
    parallel_for(tn, [&](int64_t b, int64_t e) {
      std::vector<T> x(size_t(std::min(kChunk, e - b)));
      for (int64_t c = b; c < e; c += kChunk) {
        const int64_t ce = std::min(e, c + kChunk);
        double* __restrict a = acc + c;
        for (size_t j = 0; j < used.size(); ++j) {
          // pread into a cache-resident buffer: no page faults, and no file pages mapped into
          // this process, so resident memory stays at a few tiles.
          const SafetensorsFile& file = *used[j].file;
          file.read_bytes(*used[j].tensors[k], uint64_t(tile + c) * sizeof(T),
                          size_t(ce - c) * sizeof(T), x.data());
          const T* xs = x.data();
          const double w = used[j].weight;
          if (j == 0) {
            for (int64_t i = 0; i < ce - c; ++i) a[i] = w * load_f64(xs[i]);
          } else {
            for (int64_t i = 0; i < ce - c; ++i) a[i] += w * load_f64(xs[i]);
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
    const TensorInfo& ti = *in.tensors[k];
    double v = 0;
    dispatch_floating(t.dtype, [&](auto tag) {
      using T = decltype(tag);
      T x;
      in.file->read_bytes(ti, uint64_t(tile + bad) * sizeof(T), sizeof(T), &x);
      v = load_f64(x);
    });
    WAVG_CHECK(std::isfinite(v), *in.path, ": tensor '", name, "' element ", tile + bad,
               " is not finite: refused (the average would be poisoned)");
  }
  throw Error("average: tensor '" + name + "' element " + std::to_string(tile + bad) +
              " overflows");
}

// Refuses an output that is one of the inputs under another spelling (./a, a hard link, a
// symlink): compared by identity (device and inode, symlinks resolved), not by name.
void check_output_not_input(const std::vector<std::string>& inputs, const std::string& out) {
  struct stat so;
  if (::stat(out.c_str(), &so) != 0) return;  // nothing there yet
  for (const std::string& in : inputs) {
    struct stat si;
    if (::stat(in.c_str(), &si) == 0 && si.st_dev == so.st_dev && si.st_ino == so.st_ino)
      throw Error("average: output " + quote_bytes(out, 200) + " is the input " +
                  quote_bytes(in, 200) + " (the same file): refused, it would be replaced");
  }
}

// A non-floating tensor, copied from the newest file in pieces of at most 1 MiB.
void copy_tensor(const SafetensorsFile& newest, const TensorInfo& t, const ByteWriter& write) {
  std::vector<unsigned char> buf(size_t(std::min<uint64_t>(t.nbytes(), 1 << 20)));
  for (uint64_t off = 0; off < t.nbytes(); off += buf.size()) {
    const size_t n = size_t(std::min<uint64_t>(buf.size(), t.nbytes() - off));
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

// Rounds acc[0, tn) to out_dtype into buf. A finite sum that rounds to ±Inf (out of the narrower
// dtype's range: |x| >= 65520 for f16) is an error naming the tensor, or, with `saturate`, becomes
// the largest finite value of that sign.
void store_tile(const TensorInfo& t, int64_t tile, int64_t tn, DType out_dtype, bool saturate,
                const double* acc, std::vector<unsigned char>* buf) {
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
  if (i >= 0)
    throw Error("average: tensor '" + quote_bytes(t.name) + "' element " +
                std::to_string(tile + i) + " = " + std::to_string(acc[size_t(i)]) +
                " is out of the range of " + dtype_name(out_dtype) +
                " (pass --saturate to clamp to the largest finite value)");
}

// A floating tensor, tile by tile: accumulate, check, round to out_dtype, and hand the tile to a
// background writer while the next one is computed (two output buffers).
void write_averaged_tensor(const TensorInfo& t, size_t k, DType out_dtype, const std::vector<Input>& used,
                           bool check_finite, bool saturate, const ByteWriter& write) {
  std::vector<double> acc(size_t(std::min(kTile, t.numel())));
  std::vector<unsigned char> out_buf[2];
  int which = 0;
  std::future<void> pending;
  struct Drain {  // the writer thread never outlives the buffers, also on exceptions
    std::future<void>& f;
    ~Drain() {
      if (f.valid()) f.wait();
    }
  } drain{pending};
  for (int64_t tile = 0; tile < t.numel(); tile += kTile) {
    const int64_t tn = std::min(kTile, t.numel() - tile);
    accumulate_tile(t, k, tile, tn, used, acc.data());
    if (check_finite) check_tile_finite(t, k, tile, tn, used, acc.data());
    std::vector<unsigned char>& buf = out_buf[which];
    which ^= 1;
    store_tile(t, tile, tn, out_dtype, saturate, acc.data(), &buf);
    if (pending.valid()) pending.get();  // rethrows a write error
    if (t.numel() <= kTile) {  // one tile: nothing to overlap (and no thread per small tensor)
      write(buf.data(), buf.size());
      continue;
    }
    pending = std::async(std::launch::async, [&write, &buf] { write(buf.data(), buf.size()); });
  }
  if (pending.valid()) pending.get();
}

}  // namespace

CheckpointAverageReport average_checkpoints(const std::vector<std::string>& inputs,
                                            const std::string& out,
                                            const CheckpointAverageOptions& options) {
  WAVG_CHECK(!inputs.empty(), "average: no input files");
  if (options.out_dtype)
    WAVG_CHECK(is_floating(*options.out_dtype), "average: --dtype must be floating, got ",
               dtype_name(*options.out_dtype));
  check_output_not_input(inputs, out);
  CheckpointAverageReport report;
  report.weights = offline_weights(options.averager, int64_t(inputs.size()));
  raise_open_file_limit();
  const Plan plan = plan_inputs(inputs, report.weights);
  const SafetensorsHeader& ref = plan.newest->header();
  report.files_read = int64_t(plan.used.size());
  report.tensors = int64_t(ref.tensors.size());

  std::vector<TensorOut> outs;
  for (const TensorInfo& t : ref.tensors) {
    DType dt = t.dtype;
    if (is_floating(t.dtype)) {
      report.averaged_elements += t.numel();
      if (options.out_dtype) dt = *options.out_dtype;
    }
    outs.push_back({t.name, dt, t.shape, nullptr});
  }
  write_safetensors_streamed(
      out, outs, output_metadata(ref, options.averager, plan.used),
      [&](size_t k, const ByteWriter& write) {
        const TensorInfo& t = ref.tensors[k];
        if (is_floating(t.dtype))
          write_averaged_tensor(t, k, outs[k].dtype, plan.used, options.check_finite,
                                options.saturate, write);
        else
          copy_tensor(*plan.newest, t, write);
      });
  return report;
}

}  // namespace wavg
