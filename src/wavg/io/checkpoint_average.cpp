// Streaming, fp64-accumulating average of safetensors checkpoints.
#include "wavg/io/checkpoint_average.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>

#include "wavg/core/error.h"
#include "wavg/core/parallel.h"
#include "wavg/io/safetensors.h"

namespace wavg {

namespace {

template <typename T>
inline T load_unaligned(const unsigned char* p, int64_t i) {
  T v;
  std::memcpy(&v, p + i * int64_t(sizeof(T)), sizeof(T));
  return v;
}

inline bool is_bad(double v) { return !std::isfinite(v); }

std::string base_name(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

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

  // 1. Validate every header against the newest file before reading any data.
  const std::string& newest_path = inputs.back();
  SafetensorsHeader ref;
  {
    SafetensorsFile newest(newest_path);
    ref = newest.header();
  }
  for (size_t f = 0; f + 1 < inputs.size(); ++f) {
    SafetensorsFile file(inputs[f]);
    const auto& ts = file.tensors();
    for (const TensorInfo& t : ts) {
      const TensorInfo* r = ref.find(t.name);
      WAVG_CHECK(r != nullptr, inputs[f], ": tensor '", t.name, "' is not in ", newest_path);
      WAVG_CHECK(r->dtype == t.dtype, inputs[f], ": tensor '", t.name, "' has dtype ",
                 dtype_name(t.dtype), " but ", dtype_name(r->dtype), " in ", newest_path);
      WAVG_CHECK(r->shape == t.shape, inputs[f], ": tensor '", t.name,
                 "' has a different shape than in ", newest_path);
    }
    for (const TensorInfo& r : ref.tensors)
      WAVG_CHECK(file.find(r.name) != nullptr, inputs[f], ": tensor '", r.name,
                 "' is missing (present in ", newest_path, ")");
  }

  // 2. Accumulate Σ w_i x_i in fp64 over the floating tensors, one file at a time.
  std::vector<int64_t> acc_offset(ref.tensors.size(), -1);
  int64_t total = 0;
  for (size_t k = 0; k < ref.tensors.size(); ++k) {
    if (!is_floating(ref.tensors[k].dtype)) continue;
    acc_offset[k] = total;
    total += ref.tensors[k].numel();
  }
  report.tensors = int64_t(ref.tensors.size());
  report.averaged_elements = total;
  std::vector<double> acc(size_t(total), 0.0);
  bool first_read = true;
  for (size_t f = 0; f < inputs.size(); ++f) {
    const double w = report.weights[f];
    if (w == 0.0) continue;
    ++report.files_read;
    SafetensorsFile file(inputs[f]);
    for (size_t k = 0; k < ref.tensors.size(); ++k) {
      if (acc_offset[k] < 0) continue;
      const TensorInfo& t = *file.find(ref.tensors[k].name);
      const unsigned char* src = file.data(t);
      double* a = acc.data() + acc_offset[k];
      const bool assign = first_read;
      std::mutex mu;
      int64_t bad = -1;
      dispatch_floating(t.dtype, [&](auto tag) {
        using T = decltype(tag);
        parallel_for(t.numel(), [&](int64_t b, int64_t e) {
          bool any_bad = false;
          if (assign) {
            for (int64_t i = b; i < e; ++i) {
              const double x = load_f64(load_unaligned<T>(src, i));
              any_bad |= is_bad(x);
              a[i] = w * x;
            }
          } else {
            for (int64_t i = b; i < e; ++i) {
              const double x = load_f64(load_unaligned<T>(src, i));
              any_bad |= is_bad(x);
              a[i] += w * x;
            }
          }
          if (any_bad && options.check_finite) {
            for (int64_t i = b; i < e; ++i)
              if (is_bad(load_f64(load_unaligned<T>(src, i)))) {
                std::lock_guard<std::mutex> lock(mu);
                if (bad < 0 || i < bad) bad = i;
                break;
              }
          }
        });
      });
      WAVG_CHECK(bad < 0, inputs[f], ": tensor '", t.name, "' element ", bad,
                 " is not finite: refused (the average would be poisoned)");
    }
    file.release();
    first_read = false;
  }

  // 3. Write: floating tensors converted from the accumulator, the others copied from the newest.
  std::vector<TensorOut> outs;
  for (size_t k = 0; k < ref.tensors.size(); ++k) {
    const TensorInfo& t = ref.tensors[k];
    DType dt = t.dtype;
    if (acc_offset[k] >= 0 && options.out_dtype) dt = *options.out_dtype;
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
    nlohmann::ordered_json used = nlohmann::ordered_json::array();
    for (size_t f = 0; f < inputs.size(); ++f)
      if (report.weights[f] != 0.0) used.push_back({base_name(inputs[f]), report.weights[f]});
    rec["inputs"] = used;
    meta["wavg.average"] = rec.dump();
  }
  SafetensorsFile newest(newest_path);
  constexpr int64_t kBlock = 1 << 16;
  std::vector<unsigned char> buf;
  write_safetensors_streamed(out, outs, meta, [&](size_t k, const ByteWriter& write) {
    const TensorOut& o = outs[k];
    if (acc_offset[k] < 0) {
      const TensorInfo& t = *newest.find(o.name);
      write(newest.data(t), t.nbytes());
      return;
    }
    const double* a = acc.data() + acc_offset[k];
    const int64_t n = ref.tensors[k].numel();
    dispatch_floating(o.dtype, [&](auto tag) {
      using O = decltype(tag);
      buf.resize(size_t(kBlock) * sizeof(O));
      O* y = reinterpret_cast<O*>(buf.data());
      for (int64_t b = 0; b < n; b += kBlock) {
        const int64_t e = std::min(n, b + kBlock);
        for (int64_t i = b; i < e; ++i) y[i - b] = store_as<O>(a[i]);
        write(y, size_t(e - b) * sizeof(O));
      }
    });
  });
  return report;
}

}  // namespace wavg
