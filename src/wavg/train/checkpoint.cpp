// Run-directory checkpoints: atomic state directories with checksummed manifests.
#include "wavg/train/checkpoint.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <torch/torch.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
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
#include "wavg/torch/lookahead.h"
#include "wavg/train/state_check.h"

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
  for (const std::string& name : detail::state_file_names(g.world)) {
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
  fsync_directory(run_dir + "/state");
}

std::optional<FoundState> find_state(const std::string& run_dir,
                                     const std::function<void(const std::string&)>& warn,
                                     int64_t before) {
  std::vector<std::string> names;
  for (const auto& n : list_dir(run_dir + "/state"))
    if (n.rfind("step_", 0) == 0 && n.find(".tmp") == std::string::npos) names.push_back(n);
  for (auto it = names.rbegin(); it != names.rend(); ++it) {
    const std::string dir = run_dir + "/state/" + *it;
    if (std::atoll(it->c_str() + 5) >= before) continue;
    try {
      return FoundState{dir, detail::read_manifest(dir, run_dir)};
    } catch (const std::exception& e) {
      warn("state " + dir + " is damaged (" + e.what() + "); falling back to an older one");
    }
  }
  return std::nullopt;
}

namespace {

int64_t meta_int(const std::map<std::string, std::string>& meta, const std::string& key,
                 const std::string& path) {
  const auto it = meta.find(key);
  WAVG_CHECK(it != meta.end(), path, ": metadata '", key, "' is missing");
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(it->second.c_str(), &end, 10);
  WAVG_CHECK(!it->second.empty() && *end == '\0' && errno == 0, path, ": metadata '", key,
             "' is '", quote_bytes(it->second), "', not an integer");
  return v;
}

// A bank file's step (metadata) is the manifest's, and its bank observed no later step.
void check_bank_steps(const SafetensorsFile& f, int64_t step) {
  WAVG_CHECK(meta_int(f.metadata(), "step", f.path()) == step, f.path(),
             ": metadata 'step' is not the manifest's step ", step);
  const int64_t last = meta_int(f.metadata(), "bank.last_step", f.path());
  WAVG_CHECK(last <= step, f.path(), ": metadata 'bank.last_step' is ", last,
             ", after the manifest's step ", step);
}

// The counters of a bank state (what must agree between the shards of one state).
std::map<std::string, std::string> bank_counters(const std::map<std::string, std::string>& meta) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : meta)
    if ((k.rfind("bank.", 0) == 0 && k.rfind("bank.shard_", 0) != 0) ||
        k.rfind("averager.", 0) == 0 || k.rfind("ring.", 0) == 0)
      out[k] = v;
  return out;
}

// Resharding: the shards of a state written by `world` ranks tile the flat vector in rank order and
// agree on every counter; each of this bank's arrays is rows of the shard's length in each file.
void check_resharded_bank(const std::string& dir, int64_t world, AveragerBank& bank, int64_t step) {
  std::vector<SafetensorsFile> files;
  for (int r = 0; r < world; ++r) files.emplace_back(dir + "/" + bank_file(r, world));
  int64_t next = 0;
  for (const SafetensorsFile& f : files) {
    std::map<std::string, std::string> meta = f.metadata();
    const int64_t of = meta_int(meta, "bank.shard_offset", f.path());
    const int64_t ol = meta_int(meta, "bank.shard_length", f.path());
    WAVG_CHECK(of == next && ol >= 0 && ol <= bank.numel() - of, f.path(), ": metadata shard [",
               of, ", +", ol, ") does not continue the previous rank's at ", next, " within ",
               bank.numel(), " elements");
    next += ol;
    WAVG_CHECK(bank_counters(meta) == bank_counters(files[0].metadata()), f.path(),
               ": its counters differ from ", files[0].path(), "'s");
    check_bank_steps(f, step);
    meta["bank.shard_offset"] = std::to_string(bank.shard_offset());
    meta["bank.shard_length"] = std::to_string(bank.shard_length());
    try {
      bank.check_state_meta(meta);
    } catch (const Error& e) {
      throw Error(f.path() + ": " + e.what());
    }
    const int64_t len = bank.shard_length();
    for (const StateArray& a : bank.state_arrays()) {
      const TensorInfo* t = f.find(a.name);
      WAVG_CHECK(len > 0 && a.numel % len == 0 && t != nullptr && t->dtype == a.dtype &&
                     int64_t(t->numel()) == a.numel / len * ol,
                 f.path(), ": bank state '", a.name, "' is missing or not ", a.numel / std::max<int64_t>(len, 1),
                 " rows of the shard's ", ol, " elements");
    }
  }
  WAVG_CHECK(next == bank.numel(), dir, ": the bank shards cover ", next, " of ", bank.numel(),
             " elements");
}

// Resharding: this bank's shard cut from the shards of a state written by `world` processes (checked
// by check_resharded_bank). Every state array of a bank holds k rows of its shard's length
// (slot-major: an average, a sum, a ring of k slots), so row s of the new shard is stitched from row
// s of the old shards it overlaps.
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
    const int64_t rows = a.numel / len;
    const size_t esize = dtype_size(a.dtype);
    auto* dst = static_cast<unsigned char*>(a.data);
    for (const SafetensorsFile& f : files) {
      const int64_t of = std::stoll(f.metadata().at("bank.shard_offset"));
      const int64_t ol = std::stoll(f.metadata().at("bank.shard_length"));
      const TensorInfo* t = f.find(a.name);
      const int64_t lo = std::max(off, of), hi = std::min(off + len, of + ol);
      for (int64_t row = 0; row < rows && lo < hi; ++row)
        f.read_bytes(*t, uint64_t(row * ol + lo - of) * esize, size_t(hi - lo) * esize,
                     dst + size_t(row * len + lo - off) * esize);
    }
  }
}

// torch::load restores the saved parameter groups' options too (betas, eps, weight decay): the
// run's own are kept, so that a forced change of them (--resume --force) takes effect.
void load_optimizer(const std::string& bytes, torch::optim::Optimizer& optimizer,
                    torch::Device device) {
  auto* lookahead = dynamic_cast<Lookahead*>(&optimizer);
  torch::optim::Optimizer& target = lookahead ? lookahead->inner() : optimizer;
  std::vector<std::unique_ptr<torch::optim::OptimizerOptions>> keep;
  for (auto& g : target.param_groups()) keep.push_back(g.options().clone());
  std::istringstream is(bytes);
  torch::load(optimizer, is, device);
  for (size_t i = 0; i < keep.size(); ++i) target.param_groups()[i].set_options(std::move(keep[i]));
}

}  // namespace

void check_state(const FoundState& s, torch::nn::Module& module,
                 torch::optim::Optimizer& optimizer, ModelAverager& averager, const StateGroup& g) {
  const int64_t world = s.counters.world_size, step = s.counters.step;
  detail::check_model_file(s.dir + "/model.safetensors", module, step);
  detail::check_optimizer_file(s.dir + "/optimizer.pt", read_file(s.dir + "/optimizer.pt"),
                               optimizer, step);
  if (world == g.world) {
    const std::string path = s.dir + "/" + bank_file(g.rank, world);
    check_bank_state(path, averager.bank());
    check_bank_steps(SafetensorsFile(path), step);
  } else {
    check_resharded_bank(s.dir, world, averager.bank(), step);
  }
  const std::string rng = s.dir + "/" + rng_file(g.rank < world ? g.rank : 0, world);
  detail::check_rng_file(rng, read_file(rng).size());
}

void load_state(const FoundState& s, torch::nn::Module& module,
                torch::optim::Optimizer& optimizer, ModelAverager& averager, const StateGroup& g) {
  const int64_t world = s.counters.world_size;
  load_module(module, s.dir + "/model.safetensors");
  load_optimizer(read_file(s.dir + "/optimizer.pt"), optimizer, module_device(module));
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
