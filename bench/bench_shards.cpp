// `wavg average --last 4` over four sharded checkpoints (Hugging Face layout: 4 shards + index each)
// against the same four checkpoints as single files (issue 15 §1): the ratio time(sharded) /
// time(single) shows what reading through an index and writing a shard set atomically costs (near
// 1: nothing). Page cache warm for both; interleaved rounds, medians.
// Usage: bench_shards PATH_TO_WAVG [MB per checkpoint, default 100]
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "bench_util.h"
#include "wavg/io/atomic_file.h"
#include "wavg/io/safetensors.h"

using namespace wavg;

namespace {

constexpr int kCheckpoints = 4, kTensors = 8, kShards = 4;

// Checkpoint f as one file and as a directory of kShards shards and their index.
void write_checkpoint_pair(const std::string& dir, int f, int64_t per_tensor, std::mt19937* rng) {
  std::vector<std::vector<float>> data(kTensors, std::vector<float>(size_t(per_tensor)));
  std::vector<TensorOut> all;
  for (int t = 0; t < kTensors; ++t) {
    for (float& v : data[size_t(t)]) v = float((*rng)() % 10000) * 1e-4f;
    all.push_back({"layer" + std::to_string(t) + ".weight", DType::kF32, {per_tensor},
                   data[size_t(t)].data()});
  }
  const std::string tag = dir + "/ck" + std::to_string(f);
  write_safetensors(tag + ".safetensors", all);
  std::filesystem::create_directory(tag);
  std::string map;
  const int per_shard = kTensors / kShards;
  for (int s = 0; s < kShards; ++s) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, kShards);
    std::vector<TensorOut> part(all.begin() + s * per_shard, all.begin() + (s + 1) * per_shard);
    write_safetensors(tag + "/" + name, part);
    for (const TensorOut& t : part)
      map += std::string(map.empty() ? "" : ", ") + "\"" + t.name + "\": \"" + name + "\"";
  }
  const int64_t total = int64_t(kTensors) * per_tensor * 4;
  write_file_atomic(tag + "/model.safetensors.index.json",
                    "{\"metadata\": {\"total_size\": " + std::to_string(total) +
                        "}, \"weight_map\": {" + map + "}}\n");
}

void run_or_die(const std::string& command) {
  if (std::system(command.c_str()) != 0) {
    std::fprintf(stderr, "bench_shards: failed: %s\n", command.c_str());
    std::exit(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_shards PATH_TO_WAVG [MB per checkpoint]\n");
    return 2;
  }
  const std::string wavg_bin = argv[1];
  const int64_t mb = argc > 2 ? std::atoll(argv[2]) : 100;
  const int64_t per_tensor = mb * 1000000 / 4 / kTensors;
  char tmpl[] = "/tmp/wavg_bench_shards_XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  std::mt19937 rng(5);
  for (int f = 0; f < kCheckpoints; ++f) write_checkpoint_pair(dir, f, per_tensor, &rng);
  std::string singles, sharded;
  for (int f = 0; f < kCheckpoints; ++f) {
    singles += " " + dir + "/ck" + std::to_string(f) + ".safetensors";
    sharded += " " + dir + "/ck" + std::to_string(f);
  }
  const std::string base = wavg_bin + " average --last 4 --overwrite -o ";
  const std::vector<double> t = bench::interleaved(
      {[&] { run_or_die(base + dir + "/avg.safetensors" + singles + " >/dev/null"); },
       [&] { run_or_die(base + dir + "/avg_sharded" + sharded + " >/dev/null"); }},
      /*rounds=*/3);
  std::printf("wavg average --last 4, %d checkpoints of %lld MB (%d tensors; sharded: %d shards)\n",
              kCheckpoints, (long long)mb, kTensors, kShards);
  std::printf("%-10s %10s\n%-10s %10.3f\n%-10s %10.3f\n", "", "time [s]", "single", t[0], "sharded",
              t[1]);
  std::printf("ratio sharded / single: %.2f (near 1: sharding costs nothing)\n", t[1] / t[0]);
  std::filesystem::remove_all(dir);
  return 0;
}
