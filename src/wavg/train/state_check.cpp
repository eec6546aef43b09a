// Checks of a state's manifest, model, optimizer and generator files before they are loaded
// (state_check.h). The bank's files are checked by io/bank_state (AveragerBank::restore_meta).
#include "wavg/train/state_check.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "wavg/core/error.h"
#include "wavg/io/safetensors.h"
#include "wavg/torch/lookahead.h"
#include "wavg/torch/scalar_types.h"

namespace wavg::detail {

namespace {

using nlohmann::json;
constexpr int64_t kMaxInt = std::numeric_limits<int64_t>::max();

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  WAVG_CHECK(f.good(), path, ": cannot read");
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// An integer field of a JSON object in [lo, hi], or an error naming the file and the field.
int64_t int_field(const json& m, const std::string& file, const std::string& key, int64_t lo,
                  int64_t hi) {
  const json* v = m.contains(key) ? &m.at(key) : nullptr;
  WAVG_CHECK(v != nullptr && v->is_number_integer(), file, ": field '", key, "' is ",
             v ? "not an integer" : "missing");
  const bool big = v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(kMaxInt);
  WAVG_CHECK(!big && v->get<int64_t>() >= lo && v->get<int64_t>() <= hi, file, ": field '", key,
             "' is ", v->dump(), ", outside [", lo, ", ", hi, "]");
  return v->get<int64_t>();
}

double seconds_field(const json& m, const std::string& file, const std::string& key) {
  const json* v = m.contains(key) ? &m.at(key) : nullptr;
  WAVG_CHECK(v != nullptr && v->is_number() && std::isfinite(v->get<double>()) &&
                 v->get<double>() >= 0,
             file, ": field '", key, "' is ", v ? v->dump() : "missing",
             ", not a finite number of seconds >= 0");
  return v->get<double>();
}

std::string string_field(const json& m, const std::string& file, const std::string& key) {
  WAVG_CHECK(m.contains(key) && m.at(key).is_string(), file, ": field '", key, "' is ",
             m.contains(key) ? "not a string" : "missing");
  return m.at(key).get<std::string>();
}

// Every file of the state listed (no more, no fewer), each of its recorded size and CRC-32.
void check_files(const json& m, const std::string& dir, const std::string& file, int64_t world) {
  WAVG_CHECK(m.contains("files") && m.at("files").is_object(), file,
             ": field 'files' is missing or not an object");
  const std::vector<std::string> want = state_file_names(world);
  const json& files = m.at("files");
  for (auto f = files.begin(); f != files.end(); ++f)
    WAVG_CHECK(std::find(want.begin(), want.end(), f.key()) != want.end(), file, ": field 'files' ",
               "lists '", quote_bytes(f.key()), "', not a file of a state of world_size ", world);
  for (const std::string& name : want) {
    WAVG_CHECK(files.contains(name) && files.at(name).is_object(), file, ": field 'files' lacks '",
               name, "'");
    const std::string entry = file + ": files['" + name + "']";
    const int64_t bytes = int_field(files.at(name), entry, "bytes", 0, kMaxInt);
    const int64_t crc = int_field(files.at(name), entry, "crc32", 0, 0xffffffffLL);
    const std::string data = read_all(dir + "/" + name);
    WAVG_CHECK(int64_t(data.size()) == bytes, name, " has ", data.size(),
               " bytes, the manifest says ", bytes);
    WAVG_CHECK(crc32_of(data) == uint32_t(crc), name, " fails its checksum");
  }
}

// metrics.jsonl (when there) reaches metrics_bytes, and that is the end of a line.
void check_metrics_bytes(int64_t bytes, const std::string& run_dir, const std::string& file) {
  const std::string path = run_dir + "/metrics.jsonl";
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f.good()) return;  // resume names the missing file
  const int64_t size = int64_t(f.tellg());
  WAVG_CHECK(bytes <= size, file, ": field 'metrics_bytes' is ", bytes, ", past the end of ", path,
             " (", size, " bytes)");
  if (bytes == 0) return;
  char last = 0;
  f.seekg(bytes - 1);
  f.get(last);
  WAVG_CHECK(last == '\n', file, ": field 'metrics_bytes' is ", bytes, ", not the end of a line of ",
             path);
}

// Per-parameter tensors of the optimizers' states that have their parameter's shape.
const std::set<std::string>& param_shaped() {
  static const std::set<std::string> names = {"exp_avg",         "exp_avg_sq", "max_exp_avg_sq",
                                              "momentum_buffer", "z",          "x"};
  return names;
}

struct Steps {
  int64_t limit;  // the manifest's step
  int64_t largest = -1;
  void add(int64_t s, const std::string& where) {
    WAVG_CHECK(s >= 0 && s <= limit, where, " is ", s, ", outside [0, ", limit,
               "] (the manifest's step)");
    largest = std::max(largest, s);
  }
};

using torch::serialize::InputArchive;

void check_param_state(InputArchive& st, const torch::Tensor& p, const std::string& where,
                       Steps& steps) {
  for (const std::string& name : param_shaped()) {
    c10::IValue v;
    if (!st.try_read(name, v) || !v.isTensor()) continue;
    WAVG_CHECK(v.toTensor().sizes() == p.sizes(), where, " '", name, "' has shape ",
               v.toTensor().sizes(), ", its parameter ", p.sizes());
  }
  c10::IValue s;
  if (st.try_read("step", s) && s.isInt()) steps.add(s.toInt(), where + " 'step'");
}

int64_t size_entry(InputArchive& a, const std::string& key) {
  torch::Tensor n;
  a.read(key, n);
  WAVG_CHECK(n.numel() == 1 && !n.is_floating_point(), "'", key, "' is not a count");
  return n.item<int64_t>();
}

// torch::optim::serialize's layout: param_groups/{size, I/params/{size, J}}, state/KEY/...
void check_groups(InputArchive& ar, torch::optim::Optimizer& opt, const std::string& path,
                  Steps& steps) {
  InputArchive groups, state;
  ar.read("param_groups", groups);
  ar.read("state", state);
  const int64_t n = size_entry(groups, "param_groups/size");
  WAVG_CHECK(n == int64_t(opt.param_groups().size()), path, ": 'param_groups/size' is ", n,
             ", the optimizer has ", opt.param_groups().size(), " parameter groups");
  for (int64_t g = 0; g < n; ++g) {
    InputArchive ga;
    groups.read("param_groups/" + std::to_string(g), ga);
    const std::vector<torch::Tensor>& params = opt.param_groups()[size_t(g)].params();
    const int64_t size = size_entry(ga, "params/size");
    WAVG_CHECK(size == int64_t(params.size()), path, ": parameter group ", g, " has ", size,
               " parameters, the optimizer's has ", params.size());
    for (int64_t j = 0; j < size; ++j) {
      c10::IValue key;
      ga.read("params/" + std::to_string(j), key);
      WAVG_CHECK(key.isString(), path, ": parameter ", j, " of group ", g, " has no key");
      InputArchive st;
      if (state.try_read(key.toStringRef(), st))
        check_param_state(st, params[size_t(j)],
                          path + ": parameter " + std::to_string(j) + " of group " +
                              std::to_string(g),
                          steps);
    }
  }
}

void check_archive(InputArchive& ar, torch::optim::Optimizer& opt, const std::string& path,
                   Steps& steps) {
  auto* lookahead = dynamic_cast<Lookahead*>(&opt);
  if (lookahead == nullptr) return check_groups(ar, opt, path, steps);
  InputArchive inner;
  ar.read("inner", inner);
  c10::IValue s;
  ar.read("lookahead_steps", s);
  WAVG_CHECK(s.isInt(), path, ": 'lookahead_steps' is not an integer");
  steps.add(s.toInt(), path + ": 'lookahead_steps'");
  size_t i = 0;
  for (const auto& group : opt.param_groups())
    for (const torch::Tensor& p : group.params()) {
      torch::Tensor slow;
      ar.read("slow_" + std::to_string(i), slow);
      WAVG_CHECK(slow.sizes() == p.sizes(), path, ": Lookahead's slow weight ", i, " has shape ",
                 slow.sizes(), ", its parameter ", p.sizes());
      ++i;
    }
  check_archive(inner, lookahead->inner(), path, steps);
}

}  // namespace

std::vector<std::string> state_file_names(int64_t world) {
  std::vector<std::string> names = {"model.safetensors", "optimizer.pt"};
  for (int64_t r = 0; r < world; ++r) {
    const std::string rank = world == 1 ? "" : ".rank" + std::to_string(r);
    names.push_back("bank" + rank + ".safetensors");
    names.push_back("rng" + rank + ".bin");
  }
  return names;
}

StateCounters read_manifest(const std::string& dir, const std::string& run_dir) {
  const std::string file = dir + "/manifest.json";
  json m;
  try {
    m = json::parse(read_all(file));
  } catch (const json::exception& e) {
    throw Error(file + ": not JSON (" + e.what() + ")");
  }
  WAVG_CHECK(m.is_object(), file, ": not a JSON object");
  long long dir_step = -1;
  const std::string base = dir.substr(dir.find_last_of('/') + 1);
  char tail = 0;
  WAVG_CHECK(std::sscanf(base.c_str(), "step_%lld%c", &dir_step, &tail) == 1 && dir_step >= 0,
             dir, ": not a state directory name (step_N)");
  StateCounters c;
  c.step = int_field(m, file, "step", dir_step, dir_step);
  c.world_size = m.contains("world_size") ? int_field(m, file, "world_size", 1, 65536) : 1;
  check_files(m, dir, file, c.world_size);
  c.train_wall_s = seconds_field(m, file, "train_wall_s");
  c.eval_wall_s = seconds_field(m, file, "eval_wall_s");
  c.metrics_bytes = uint64_t(int_field(m, file, "metrics_bytes", 0, kMaxInt));
  check_metrics_bytes(int64_t(c.metrics_bytes), run_dir, file);
  c.config_hash = string_field(m, file, "config_hash");
  c.stop_reason = m.contains("stop_reason") ? string_field(m, file, "stop_reason") : "";
  WAVG_CHECK(c.stop_reason.empty() || c.stop_reason == "budget" || c.stop_reason == "early_stop",
             file, ": field 'stop_reason' is '", quote_bytes(c.stop_reason),
             "', not \"\", \"budget\" or \"early_stop\"");
  return c;
}

void check_model_file(const std::string& path, torch::nn::Module& module, int64_t step) {
  const SafetensorsFile f(path);
  const auto it = f.metadata().find("step");
  WAVG_CHECK(it != f.metadata().end() && it->second == std::to_string(step), path,
             ": metadata 'step' is '", it == f.metadata().end() ? "missing" : quote_bytes(it->second),
             "', the manifest's step is ", step);
  auto check = [&](const std::string& name, const torch::Tensor& target) {
    const TensorInfo* t = f.find(name);
    WAVG_CHECK(t != nullptr, path, ": tensor '", name, "' of the model is missing");
    WAVG_CHECK(t->shape == target.sizes().vec() && to_scalar_type(t->dtype) == target.scalar_type(),
               path, ": tensor '", name, "' is ", dtype_name(t->dtype), " of shape ",
               c10::IntArrayRef(t->shape), ", the model's is ", target.scalar_type(), " of shape ",
               target.sizes());
  };
  for (const auto& item : module.named_parameters()) check(item.key(), item.value());
  for (const auto& item : module.named_buffers()) check(item.key(), item.value());
}

void check_optimizer_file(const std::string& path, const std::string& bytes,
                          torch::optim::Optimizer& optimizer, int64_t step) {
  Steps steps{step};
  try {
    InputArchive ar;
    std::istringstream is(bytes);
    ar.load_from(is);
    check_archive(ar, optimizer, path, steps);
  } catch (const c10::Error& e) {
    throw Error(path + ": not an optimizer state of this run (" +
                quote_bytes(e.what_without_backtrace(), 200) + ")");
  }
  WAVG_CHECK(steps.largest < 0 || steps.largest == step, path, ": its largest step count is ",
             steps.largest, ", the manifest's step is ", step);
}

void check_rng_file(const std::string& path, size_t bytes) {
  const size_t want = size_t(at::detail::getDefaultCPUGenerator().get_state().numel());
  WAVG_CHECK(bytes == want, path, ": ", bytes, " bytes, a CPU generator state has ", want);
}

}  // namespace wavg::detail
