// wavg._wavg: the C++ bank behind the Python package (python/wavg/__init__.py holds the public
// API). A thin layer: every averaging, swap, save and state operation is ModelAverager's (C++); this
// file converts arguments and turns wavg::Error into wavg.Error (a ValueError) with the same text.
// Tensors cross through torch's own pybind11 casters: the at::Tensor a function receives is the
// caller's torch.Tensor (one TensorImpl), so a swap exchanges the storage of the user's Parameters.
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <torch/csrc/utils/pybind.h>
#include <torch/torch.h>

#include <optional>

#include "wavg/core/averager.h"
#include "wavg/core/error.h"
#include "wavg/core/parallel.h"
#include "wavg/io/checkpoint_average.h"
#include "wavg/torch/model_averager.h"

namespace py = pybind11;
using namespace wavg;

namespace {

// The scheme's own options from the Python keywords (each validated as it is set: wavg::Error names
// the bad value); keywords of other schemes are ignored.
SchemeOptions scheme_options(const std::string& scheme, int64_t window, double beta, double alpha,
                             std::vector<double> sigma_rels) {
  if (scheme == "lawa") return LawaOptions(window);
  if (scheme == "ema") return EmaOptions(beta);
  if (scheme == "swa") return SwaOptions();
  if (scheme == "phema") return PhemaOptions(std::move(sigma_rels));
  if (scheme == "lawa_exp") return LawaExpOptions(window, alpha);
  throw Error("unknown averaging scheme '" + scheme + "' (lawa, ema, swa, phema, lawa_exp)");
}

// An averager's options and buffer policy.
AveragerSpec make_spec(const std::string& scheme, int64_t window, double beta, double alpha,
                       std::vector<double> sigma_rels, int64_t every, int64_t start,
                       std::string name, const std::string& buffers) {
  SchemeOptions o = scheme_options(scheme, window, beta, alpha, std::move(sigma_rels));
  o.every(every).start(start).name(std::move(name));
  return AveragerSpec(o, parse_buffer_policy(buffers));
}

// A live swap, ended by close() (the context manager's exit) or when collected.
struct PySwap {
  std::optional<EvalSwap> swap;
  void close() { swap.reset(); }
};

py::dict to_dict(const NamedTensors& named) {
  py::dict d;
  for (const auto& [name, t] : named) d[py::str(name)] = t;
  return d;
}

py::dict average_files(const std::vector<std::string>& inputs, const std::string& out,
                       const AveragerSpec& spec, const std::optional<std::string>& dtype,
                       std::vector<double> weights, std::vector<std::string> strip_prefixes,
                       bool overwrite, bool saturate) {
  CheckpointAverageOptions o;
  o.averager = spec.averager;
  if (dtype) o.out_dtype = parse_dtype(*dtype);
  o.weights = std::move(weights);
  o.strip_prefixes = std::move(strip_prefixes);
  o.overwrite = overwrite;
  o.saturate = saturate;
  CheckpointAverageReport r;
  {
    py::gil_scoped_release release;  // pure C++ file work
    r = average_checkpoints(inputs, out, o);
  }
  py::dict d;
  d["weights"] = r.weights;
  d["files_read"] = r.files_read;
  d["shards_written"] = r.shards_written;
  d["tensors"] = r.tensors;
  d["averaged_elements"] = r.averaged_elements;
  return d;
}

// The bank holds [offset, offset + length) of the flat sample; `gather(whole)` (Python: its
// collectives are torch.distributed's, never a ProcessGroup cast into C++) fills the other ranks'
// shards of `whole`, a uint8 tensor over the C++ buffer (numel elements of elem_bytes bytes).
void set_shard(ModelAverager& a, int64_t offset, int64_t length, py::function gather) {
  a.set_shard(offset, length, [gather](void* whole, int64_t numel, size_t elem_bytes) {
    py::gil_scoped_acquire gil;  // called from swap_in, on the Python thread
    at::Tensor bytes = torch::from_blob(whole, {numel * int64_t(elem_bytes)}, torch::kUInt8);
    gather(bytes, numel, elem_bytes);
  });
}

void bind_averager(py::module_& m) {
  py::class_<ModelAverager>(m, "_ModelAverager")
      .def(py::init([](NamedTensors params, NamedTensors buffers, std::vector<AveragerSpec> specs,
                       std::optional<std::function<void()>> recompute) {
             return std::make_unique<ModelAverager>(std::move(params), std::move(buffers),
                                                    std::move(specs),
                                                    recompute ? *recompute : RecomputeBuffers());
           }),
           py::arg("parameters"), py::arg("buffers"), py::arg("specs"), py::arg("recompute"))
      .def("observe", &ModelAverager::observe, py::arg("step"))
      .def("wait", &ModelAverager::wait)
      .def("set_async", &ModelAverager::set_async, py::arg("on"))
      .def("is_async", &ModelAverager::is_async)
      .def("size", &ModelAverager::size)
      .def("find", &ModelAverager::find, py::arg("name"))
      .def("name", &ModelAverager::name, py::arg("i"))
      .def("describe", [](ModelAverager& a, int i) { return describe(a.spec(i).averager); })
      .def("buffers", [](ModelAverager& a, int i) { return buffer_policy_name(a.spec(i).buffers); })
      .def("samples", [](ModelAverager& a, int i) { return a.bank().samples(i); })
      .def("profiles", [](ModelAverager& a, int i) { return a.bank().profiles(i); })
      .def("last_step", [](ModelAverager& a) { return a.bank().last_step(); })
      .def("state_bytes", [](ModelAverager& a) { return a.bank().state_bytes(); })
      .def("staged_samples", &ModelAverager::staged_samples)
      .def("staged_bytes", &ModelAverager::staged_bytes)
      .def(
          "swap_in",
          [](ModelAverager& a, int i, int profile) {
            auto s = std::make_unique<PySwap>();
            s->swap.emplace(a.swap_in(i, nullptr, profile));
            return s;
          },
          py::arg("i"), py::arg("profile"), py::keep_alive<0, 1>())  // the swap views the bank
      .def(
          "save",
          [](ModelAverager& a, int i, const std::string& path,
             const std::map<std::string, std::string>& metadata,
             int profile) { a.save(i, path, nullptr, metadata, profile); },
          py::arg("i"), py::arg("path"), py::arg("metadata"), py::arg("profile"))
      .def(
          "average",
          [](ModelAverager& a, int i, int profile) { return to_dict(a.average(i, nullptr, profile)); },
          py::arg("i"), py::arg("profile"))
      .def("set_shard", &set_shard, py::arg("offset"), py::arg("length"), py::arg("gather"))
      .def("numel", [](ModelAverager& a) { return a.bank().numel(); })
      .def("shard", [](ModelAverager& a) {
        return std::make_pair(a.bank().shard_offset(), a.bank().shard_length());
      })
      .def("state_meta", &ModelAverager::state_meta)
      .def("state_arrays", [](ModelAverager& a) { return to_dict(a.state_arrays()); })
      .def("load_state", &ModelAverager::load_state, py::arg("meta"), py::arg("arrays"));
  py::class_<PySwap>(m, "_Swap").def("close", &PySwap::close);
}

}  // namespace

PYBIND11_MODULE(_wavg, m) {
  m.doc() = "wavg's C++ bank (use the wavg package, not this module)";
  // wavg::Error -> wavg.Error, a ValueError with the same one-line message.
  py::register_exception<Error>(m, "Error", PyExc_ValueError);
  py::class_<AveragerSpec>(m, "_Spec").def("describe", [](const AveragerSpec& s) {
    return describe(s.averager);
  }).def_property_readonly("name", [](const AveragerSpec& s) {
    std::string scratch;
    return display_name(s.averager, &scratch);
  });
  m.def("make_spec", &make_spec, py::arg("scheme"), py::arg("window"), py::arg("beta"),
        py::arg("alpha"), py::arg("sigma_rels"), py::arg("every"), py::arg("start"),
        py::arg("name"), py::arg("buffers"));
  m.def("set_threads", &wavg::detail::set_averaging_threads, py::arg("n"));
  m.def("threads", &wavg::detail::averaging_threads);
  m.def("lawa_window_for_horizon", &lawa_window_for_horizon, py::arg("horizon"), py::arg("every"),
        py::arg("total_steps"));
  m.def("ema_beta_for_half_life", &ema_beta_for_half_life, py::arg("half_life"), py::arg("every"));
  m.def("average_checkpoints", &average_files, py::arg("inputs"), py::arg("out"), py::arg("spec"),
        py::arg("dtype"), py::arg("weights"), py::arg("strip_prefixes"), py::arg("overwrite"),
        py::arg("saturate"));
  bind_averager(m);
}
