// Run-directory checkpoints: atomic state directories with checksummed manifests.
#include "wavg/train/checkpoint.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <torch/torch.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "wavg/core/error.h"
#include "wavg/io/atomic_file.h"
#include "wavg/io/bank_state.h"
#include "wavg/torch/device.h"

namespace wavg {

namespace {

std::string step_name(const char* prefix, int64_t step, const char* suffix) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s%08lld%s", prefix, (long long)step, suffix);
  return buf;
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n != "." && n != "..") out.push_back(n);
    }
    ::closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

void ensure_dir(const std::string& d) {
  if (::mkdir(d.c_str(), 0755) != 0 && errno != EEXIST)
    throw Error("cannot create directory " + d + " (" + std::strerror(errno) + ")");
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  WAVG_CHECK(f.good(), path, ": cannot read");
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void remove_tree(const std::string& path) {
  std::error_code ec;  // best effort: a leftover is found and removed again next time
  std::filesystem::remove_all(path, ec);
}

// Test hook: WAVG_TEST_KILL_IN_STATE_WRITE=STEP kills the process half way through writing the
// state of that step, as a power cut would.
void maybe_die_mid_write(int64_t step) {
  const char* env = std::getenv("WAVG_TEST_KILL_IN_STATE_WRITE");
  if (env && std::atoll(env) == step) ::raise(SIGKILL);
}

}  // namespace

uint32_t crc32_of(const std::string& bytes) {
  return uint32_t(::crc32(0L, reinterpret_cast<const Bytef*>(bytes.data()), uInt(bytes.size())));
}

std::string model_checkpoint_path(const std::string& run_dir, int64_t step) {
  return run_dir + "/checkpoints/" + step_name("model_", step, ".safetensors");
}

std::vector<std::pair<int64_t, std::string>> list_model_checkpoints(const std::string& run_dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  for (const auto& n : list_dir(run_dir + "/checkpoints")) {
    long long step;
    char tail[32];
    if (std::sscanf(n.c_str(), "model_%lld.%31s", &step, tail) == 2 &&
        std::string(tail) == "safetensors")
      out.push_back({step, run_dir + "/checkpoints/" + n});
  }
  std::sort(out.begin(), out.end());
  return out;
}

void save_state(const std::string& run_dir, const StateCounters& c, torch::nn::Module& module,
                torch::optim::Optimizer& optimizer, ModelAverager& averager) {
  ensure_dir(run_dir + "/state");
  const std::string final_dir = run_dir + "/state/" + step_name("step_", c.step, "");
  const std::string tmp = final_dir + ".tmp";
  remove_tree(tmp);
  ensure_dir(tmp);
  nlohmann::ordered_json files = nlohmann::ordered_json::object();
  auto add_file = [&](const std::string& name, const std::string& bytes) {
    write_file_atomic(tmp + "/" + name, bytes);
    files[name] = {{"bytes", bytes.size()}, {"crc32", crc32_of(bytes)}};
  };
  const std::map<std::string, std::string> meta = {{"step", std::to_string(c.step)},
                                                   {"config_hash", c.config_hash}};
  save_module(module, tmp + "/model.safetensors", meta);
  files["model.safetensors"] = nlohmann::ordered_json::object();  // checksummed below
  maybe_die_mid_write(c.step);
  {
    std::ostringstream os;
    torch::save(optimizer, os);
    add_file("optimizer.pt", os.str());
  }
  save_bank_state(tmp + "/bank.safetensors", averager.bank(), meta);
  files["bank.safetensors"] = nlohmann::ordered_json::object();
  {
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    const at::Tensor rng = gen.get_state();
    add_file("rng.bin", std::string(static_cast<const char*>(rng.data_ptr()), size_t(rng.nbytes())));
  }
  for (const char* name : {"model.safetensors", "bank.safetensors"}) {
    const std::string bytes = read_file(tmp + "/" + name);
    files[name] = {{"bytes", bytes.size()}, {"crc32", crc32_of(bytes)}};
  }
  nlohmann::ordered_json m;
  m["step"] = c.step;
  m["train_wall_s"] = c.train_wall_s;
  m["eval_wall_s"] = c.eval_wall_s;
  m["metrics_bytes"] = c.metrics_bytes;
  m["config_hash"] = c.config_hash;
  m["stop_reason"] = c.stop_reason;
  m["files"] = files;
  write_file_atomic(tmp + "/manifest.json", m.dump(2) + "\n");
  remove_tree(final_dir);
  WAVG_CHECK(::rename(tmp.c_str(), final_dir.c_str()) == 0, "cannot move ", tmp, " into place (",
             std::strerror(errno), ")");
  if (int fd = ::open((run_dir + "/state").c_str(), O_RDONLY | O_DIRECTORY); fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

std::optional<FoundState> find_state(const std::string& run_dir,
                                     const std::function<void(const std::string&)>& warn) {
  std::vector<std::string> names;
  for (const auto& n : list_dir(run_dir + "/state"))
    if (n.rfind("step_", 0) == 0 && n.find(".tmp") == std::string::npos) names.push_back(n);
  for (auto it = names.rbegin(); it != names.rend(); ++it) {
    const std::string dir = run_dir + "/state/" + *it;
    try {
      const auto m = nlohmann::json::parse(read_file(dir + "/manifest.json"));
      for (auto f = m.at("files").begin(); f != m.at("files").end(); ++f) {
        const std::string bytes = read_file(dir + "/" + f.key());
        WAVG_CHECK(bytes.size() == f.value().at("bytes").get<size_t>(), f.key(), " has ",
                   bytes.size(), " bytes, the manifest says ", f.value().at("bytes").get<size_t>());
        WAVG_CHECK(crc32_of(bytes) == f.value().at("crc32").get<uint32_t>(), f.key(),
                   " fails its checksum");
      }
      FoundState s;
      s.dir = dir;
      s.counters.step = m.at("step").get<int64_t>();
      s.counters.train_wall_s = m.at("train_wall_s").get<double>();
      s.counters.eval_wall_s = m.at("eval_wall_s").get<double>();
      s.counters.metrics_bytes = m.at("metrics_bytes").get<uint64_t>();
      s.counters.config_hash = m.at("config_hash").get<std::string>();
      s.counters.stop_reason = m.value("stop_reason", std::string());  // absent before format 1
      return s;
    } catch (const std::exception& e) {
      warn("state " + dir + " is damaged (" + e.what() + "); falling back to an older one");
    }
  }
  return std::nullopt;
}

void load_state(const FoundState& s, torch::nn::Module& module,
                torch::optim::Optimizer& optimizer, ModelAverager& averager) {
  load_module(module, s.dir + "/model.safetensors");
  {
    std::istringstream is(read_file(s.dir + "/optimizer.pt"));
    torch::load(optimizer, is, module_device(module));  // the state follows the model's device
  }
  load_bank_state(s.dir + "/bank.safetensors", averager.bank());
  const std::string rng = read_file(s.dir + "/rng.bin");
  at::Tensor t = torch::empty({int64_t(rng.size())}, torch::kUInt8);
  std::memcpy(t.data_ptr(), rng.data(), rng.size());
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  gen.set_state(t);
}

void prune_states(const std::string& run_dir, int64_t keep) {
  std::vector<std::string> names;
  for (const auto& n : list_dir(run_dir + "/state")) {
    if (n.find(".tmp") != std::string::npos) {
      remove_tree(run_dir + "/state/" + n);
      continue;
    }
    if (n.rfind("step_", 0) == 0) names.push_back(n);
  }
  for (size_t i = 0; i + size_t(keep) < names.size(); ++i)
    remove_tree(run_dir + "/state/" + names[i]);
}

}  // namespace wavg
