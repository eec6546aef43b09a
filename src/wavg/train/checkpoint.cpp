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
#include "wavg/io/safetensors.h"

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

namespace {

// A rank's part of a state: its bank shard and its random-number generator.
std::string bank_file(int rank, int64_t world) {
  return world == 1 ? "bank.safetensors" : "bank.rank" + std::to_string(rank) + ".safetensors";
}
std::string rng_file(int rank, int64_t world) {
  return world == 1 ? "rng.bin" : "rng.rank" + std::to_string(rank) + ".bin";
}

void sync(const StateGroup& g) {
  if (g.world > 1) g.barrier();
}

void fsync_dir(const std::string& dir) {
  if (int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY); fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// This rank's part: the bank shard and the generator; rank 0 also the model and the optimizer.
void write_rank_part(const std::string& tmp, const StateCounters& c, torch::nn::Module& module,
                     torch::optim::Optimizer& optimizer, ModelAverager& averager,
                     const StateGroup& g) {
  const std::map<std::string, std::string> meta = {{"step", std::to_string(c.step)},
                                                   {"config_hash", c.config_hash}};
  if (g.rank == 0) {
    save_module(module, tmp + "/model.safetensors", meta);
    maybe_die_mid_write(c.step);
    std::ostringstream os;
    torch::save(optimizer, os);
    write_file_atomic(tmp + "/optimizer.pt", os.str());
  }
  save_bank_state(tmp + "/" + bank_file(g.rank, g.world), averager.bank(), meta);
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  const at::Tensor rng = gen.get_state();
  write_file_atomic(tmp + "/" + rng_file(g.rank, g.world),
                    std::string(static_cast<const char*>(rng.data_ptr()), size_t(rng.nbytes())));
}

}  // namespace

void save_state(const std::string& run_dir, const StateCounters& c, torch::nn::Module& module,
                torch::optim::Optimizer& optimizer, ModelAverager& averager, const StateGroup& g) {
  const std::string final_dir = run_dir + "/state/" + step_name("step_", c.step, "");
  const std::string tmp = final_dir + ".tmp";
  if (g.rank == 0) {
    ensure_dir(run_dir + "/state");
    remove_tree(tmp);
    ensure_dir(tmp);
  }
  sync(g);  // the temporary directory exists
  write_rank_part(tmp, c, module, optimizer, averager, g);
  sync(g);  // every rank has written its part
  if (g.rank != 0) return;
  nlohmann::ordered_json files = nlohmann::ordered_json::object();
  std::vector<std::string> names = {"model.safetensors", "optimizer.pt"};
  for (int r = 0; r < g.world; ++r) {
    names.push_back(bank_file(r, g.world));
    names.push_back(rng_file(r, g.world));
  }
  for (const std::string& name : names) {
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
  m["world_size"] = g.world;
  m["files"] = files;
  write_file_atomic(tmp + "/manifest.json", m.dump(2) + "\n");
  remove_tree(final_dir);
  WAVG_CHECK(::rename(tmp.c_str(), final_dir.c_str()) == 0, "cannot move ", tmp, " into place (",
             std::strerror(errno), ")");
  fsync_dir(run_dir + "/state");
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
      s.counters.world_size = m.value("world_size", int64_t(1));  // absent: one process
      return s;
    } catch (const std::exception& e) {
      warn("state " + dir + " is damaged (" + e.what() + "); falling back to an older one");
    }
  }
  return std::nullopt;
}

namespace {

// Resharding: this bank's shard cut from the shards of a state written by `world` processes. Every
// state array of a bank holds k rows of its shard's length (slot-major: an average, a sum, a ring
// of k slots), so row s of the new shard is stitched from row s of the old shards it overlaps.
void load_resharded_bank(const std::string& dir, int64_t world, AveragerBank& bank) {
  std::vector<SafetensorsFile> files;
  for (int r = 0; r < world; ++r) files.emplace_back(dir + "/" + bank_file(r, world));
  std::map<std::string, std::string> meta = files[0].metadata();
  meta["bank.shard_offset"] = std::to_string(bank.shard_offset());
  meta["bank.shard_length"] = std::to_string(bank.shard_length());
  bank.restore_meta(meta);
  const int64_t off = bank.shard_offset(), len = bank.shard_length();
  for (const StateArray& a : bank.state_arrays()) {
    if (len == 0) continue;
    WAVG_CHECK(a.numel % len == 0, "resharding: bank state '", a.name, "' has ", a.numel,
               " elements, not rows of the shard's ", len);
    const int64_t rows = a.numel / len;
    const size_t esize = dtype_size(a.dtype);
    auto* dst = static_cast<unsigned char*>(a.data);
    for (const SafetensorsFile& f : files) {
      const int64_t of = std::stoll(f.metadata().at("bank.shard_offset"));
      const int64_t ol = std::stoll(f.metadata().at("bank.shard_length"));
      const TensorInfo* t = f.find(a.name);
      WAVG_CHECK(t != nullptr && t->dtype == a.dtype && int64_t(t->numel()) == rows * ol,
                 "resharding: bank state '", a.name, "' is missing or differs in ", dir);
      const int64_t lo = std::max(off, of), hi = std::min(off + len, of + ol);
      for (int64_t row = 0; row < rows && lo < hi; ++row)
        f.read_bytes(*t, uint64_t(row * ol + lo - of) * esize, size_t(hi - lo) * esize,
                     dst + size_t(row * len + lo - off) * esize);
    }
  }
}

}  // namespace

void load_state(const FoundState& s, torch::nn::Module& module,
                torch::optim::Optimizer& optimizer, ModelAverager& averager, const StateGroup& g) {
  const int64_t world = s.counters.world_size;
  load_module(module, s.dir + "/model.safetensors");
  {
    std::istringstream is(read_file(s.dir + "/optimizer.pt"));
    torch::load(optimizer, is, module_device(module));  // the state follows the model's device
  }
  if (world == g.world)
    load_bank_state(s.dir + "/" + bank_file(g.rank, world), averager.bank());
  else
    load_resharded_bank(s.dir, world, averager.bank());
  // A rank the state had keeps its generator; a new one takes rank 0's.
  const std::string rng = read_file(s.dir + "/" + rng_file(g.rank < world ? g.rank : 0, world));
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
