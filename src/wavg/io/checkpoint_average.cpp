// Streaming, fp64-accumulating average of safetensors checkpoints.
#include "wavg/io/checkpoint_average.h"

#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>

#include "wavg/core/error.h"
#include "wavg/core/parallel.h"
#include "wavg/io/safetensors.h"

namespace wavg {

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
  double weight;
};

}  // namespace

CheckpointAverageReport average_checkpoints(const std::vector<std::string>& inputs,
                                            const std::string& out,
                                            const CheckpointAverageOptions& options) {
  WAVG_CHECK(!inputs.empty(), "average: no input files");
  CheckpointAverageReport report;
  report.weights = offline_weights(options.averager, int64_t(inputs.size()));
  if (options.out_dtype)
    WAVG_CHECK(is_floating(*options.out_dtype), "average: --dtype must be floating, got ",
               dtype_name(*options.out_dtype));
  raise_open_file_limit();

  // 1. Validate every header against the newest file before reading any data; keep the files
  //    that carry weight open.
  const std::string& newest_path = inputs.back();
  auto newest = std::make_unique<SafetensorsFile>(newest_path);
  const SafetensorsHeader& ref = newest->header();
  std::vector<Input> used;
  for (size_t f = 0; f < inputs.size(); ++f) {
    auto file = f + 1 == inputs.size() ? nullptr : std::make_unique<SafetensorsFile>(inputs[f]);
    const SafetensorsFile& fr = file ? *file : *newest;
    for (const TensorInfo& t : fr.tensors()) {
      const TensorInfo* r = ref.find(t.name);
      WAVG_CHECK(r != nullptr, inputs[f], ": tensor '", t.name, "' is not in ", newest_path);
      WAVG_CHECK(r->dtype == t.dtype, inputs[f], ": tensor '", t.name, "' has dtype ",
                 dtype_name(t.dtype), " but ", dtype_name(r->dtype), " in ", newest_path);
      WAVG_CHECK(r->shape == t.shape, inputs[f], ": tensor '", t.name,
                 "' has a different shape than in ", newest_path);
    }
    for (const TensorInfo& r : ref.tensors)
      WAVG_CHECK(fr.find(r.name) != nullptr, inputs[f], ": tensor '", r.name,
                 "' is missing (present in ", newest_path, ")");
    if (report.weights[f] == 0.0) continue;
    if (!file) file = std::make_unique<SafetensorsFile>(newest_path);
    used.push_back({&inputs[f], std::move(file), report.weights[f]});
  }
  report.files_read = int64_t(used.size());
  report.tensors = int64_t(ref.tensors.size());

  // 2. Stream the output: floating tensors tile by tile as Σ w_i x_i in fp64, the others copied
  //    from the newest file.
  std::vector<TensorOut> outs;
  for (const TensorInfo& t : ref.tensors) {
    DType dt = t.dtype;
    if (is_floating(t.dtype)) {
      report.averaged_elements += t.numel();
      if (options.out_dtype) dt = *options.out_dtype;
    }
    outs.push_back({t.name, dt, t.shape, nullptr});
  }
  std::map<std::string, std::string> meta = ref.metadata;
  {
    const AveragerOptions& o = options.averager;
    nlohmann::ordered_json rec;
    rec["scheme"] = scheme_name(o.scheme);
    if (o.scheme == Scheme::kLawa) rec["window"] = o.window;
    if (o.scheme == Scheme::kEma) rec["beta"] = o.beta;
    rec["every"] = o.every;
    rec["start"] = o.start;
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const Input& in : used) list.push_back({base_name(*in.path), in.weight});
    rec["inputs"] = list;
    meta["wavg.average"] = rec.dump();
  }

  std::vector<double> acc(static_cast<size_t>(kTile));
  // Two output buffers: tile t is written by a background thread while tile t+1 is computed.
  std::vector<unsigned char> out_buf[2];
  int which = 0;
  write_safetensors_streamed(out, outs, meta, [&](size_t k, const ByteWriter& write) {
    const TensorInfo& t = ref.tensors[k];
    if (!is_floating(t.dtype)) {
      std::vector<unsigned char> buf(size_t(std::min<uint64_t>(t.nbytes(), 1 << 20)));
      for (uint64_t off = 0; off < t.nbytes(); off += buf.size()) {
        const size_t n = size_t(std::min<uint64_t>(buf.size(), t.nbytes() - off));
        newest->read_bytes(t, off, n, buf.data());
        write(buf.data(), n);
      }
      return;
    }
    const int64_t numel = t.numel();
    std::future<void> pending;
    struct Drain {  // the writer thread never outlives the buffers, also on exceptions
      std::future<void>& f;
      ~Drain() {
        if (f.valid()) f.wait();
      }
    } drain{pending};
    for (int64_t tile = 0; tile < numel; tile += kTile) {
      const int64_t tn = std::min(kTile, numel - tile);
      dispatch_floating(t.dtype, [&](auto tag) {
        using T = decltype(tag);
        parallel_for(tn, [&](int64_t b, int64_t e) {
          std::vector<T> x(size_t(std::min(kChunk, e - b)));
          for (int64_t c = b; c < e; c += kChunk) {
            const int64_t ce = std::min(e, c + kChunk);
            double* __restrict a = acc.data() + c;
            for (size_t j = 0; j < used.size(); ++j) {
              // pread into a cache-resident buffer: no page faults, and no file pages mapped
              // into this process, so resident memory stays at a few tiles.
              const SafetensorsFile& file = *used[j].file;
              file.read_bytes(*file.find(t.name), uint64_t(tile + c) * sizeof(T),
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
      // A NaN/Inf in any weighted input leaves a non-finite sum (only additions of finite weights
      // happen), so the check runs once on the result; on failure, find the file to name it.
      if (options.check_finite) {
        int64_t bad = -1;
        for (int64_t i = 0; i < tn && bad < 0; ++i)
          if (!std::isfinite(acc[size_t(i)])) bad = i;
        if (bad >= 0) {
          for (const Input& in : used) {
            const TensorInfo& ti = *in.file->find(t.name);
            double v = 0;
            dispatch_floating(t.dtype, [&](auto tag) {
              using T = decltype(tag);
              T x;
              in.file->read_bytes(ti, uint64_t(tile + bad) * sizeof(T), sizeof(T), &x);
              v = load_f64(x);
            });
            WAVG_CHECK(std::isfinite(v), *in.path, ": tensor '", t.name, "' element ", tile + bad,
                       " is not finite: refused (the average would be poisoned)");
          }
          throw Error("average: tensor '" + t.name + "' element " + std::to_string(tile + bad) +
                      " overflows");
        }
      }
      std::vector<unsigned char>& buf = out_buf[which];
      which ^= 1;
      dispatch_floating(outs[k].dtype, [&](auto tag) {
        using O = decltype(tag);
        buf.resize(size_t(tn) * sizeof(O));
        O* y = reinterpret_cast<O*>(buf.data());
        parallel_for(tn, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) y[i] = store_as<O>(acc[size_t(i)]);
        });
      });
      if (pending.valid()) pending.get();  // rethrows a write error
      pending = std::async(std::launch::async, [&write, &buf] { write(buf.data(), buf.size()); });
    }
    if (pending.valid()) pending.get();
  });
  return report;
}

}  // namespace wavg
