// `wavg average --last 10` over ten ~100 MB fp32 checkpoints against reading the same files
// sequentially (page cache warm for both). Usage: bench_average PATH_TO_WAVG [MB per file]
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>

#include "bench_util.h"
#include "wavg/io/atomic_file.h"
#include "wavg/io/safetensors.h"

using namespace wavg;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_average PATH_TO_WAVG [MB per file]\n");
    return 2;
  }
  const std::string wavg_bin = argv[1];
  const int64_t mb = argc > 2 ? std::atoll(argv[2]) : 100;
  const int files = 10, tensors = 8;
  const int64_t per_tensor = mb * 1000000 / 4 / tensors;
  char tmpl[] = "/tmp/wavg_bench_XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  std::vector<std::string> paths;
  std::vector<float> w(per_tensor);
  std::mt19937 rng(3);
  for (int f = 0; f < files; ++f) {
    for (auto& v : w) v = float(rng() % 10000) * 1e-4f;
    std::vector<TensorOut> ts;
    for (int t = 0; t < tensors; ++t)
      ts.push_back({"layer" + std::to_string(t) + ".weight", DType::kF32, {per_tensor}, w.data()});
    paths.push_back(dir + "/ckpt" + std::to_string(f) + ".safetensors");
    write_safetensors(paths.back(), ts);
  }
  std::vector<std::string> args = {wavg_bin, "average", "--last", "10", "-o",
                                   dir + "/avg.safetensors"};
  args.insert(args.end(), paths.begin(), paths.end());
  std::vector<char> buf(1 << 20);
  uint64_t total = 0;
  auto read_all = [&] {
    total = 0;
    for (const auto& p : paths) {
      const int fd = ::open(p.c_str(), O_RDONLY);
      ssize_t n;
      while ((n = ::read(fd, buf.data(), buf.size())) > 0) total += uint64_t(n);
      ::close(fd);
    }
  };
  // The output (one checkpoint) must be written too: its cost alone, atomically, is the other half
  // of the I/O floor.
  std::vector<char> out_bytes(size_t(per_tensor) * tensors * 4, 1);
  auto write_one = [&] {
    AtomicFile f(dir + "/written.safetensors");
    f.write(out_bytes.data(), out_bytes.size());
    f.commit();
  };
  // Peak memory: the child's VmHWM from /proc, polled until it exits (ru_maxrss of a spawned child
  // would include this process's own peak, which Linux carries across exec).
  long child_max_rss_kb = 0;
  auto vm_hwm_kb = [](pid_t pid) {
    std::FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/status").c_str(), "r");
    long kb = 0;
    if (!f) return kb;
    char line[256];
    while (std::fgets(line, sizeof line, f))
      if (std::sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
    std::fclose(f);
    return kb;
  };
  auto run_cmd = [&] {
    std::vector<char*> argv_c;
    for (auto& a : args) argv_c.push_back(a.data());
    argv_c.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int status = 1;
    if (::posix_spawn(&pid, argv_c[0], &actions, nullptr, argv_c.data(), environ) == 0) {
      while (::waitpid(pid, &status, WNOHANG) == 0) {
        child_max_rss_kb = std::max(child_max_rss_kb, vm_hwm_kb(pid));
        ::usleep(1000);
      }
    }
    posix_spawn_file_actions_destroy(&actions);
    return status;
  };
  int rc = 0;
  const auto t = wavg::bench::interleaved(
      {read_all, write_one, [&] { rc |= run_cmd(); }}, 7);
  std::printf("wavg average --last 10 over %d files of %.0f MB (input throughput):\n"
              "  read the inputs %.2f GB/s | write one output atomically %.3f s |"
              " wavg average %.2f GB/s (%.3f s)\n"
              "  ratio to reading alone %.2f   (target >= 0.5)\n"
              "  ratio to the I/O floor, reading the inputs + writing the output: %.2f\n",
              files, total / 1e6 / files, total / t[0] / 1e9, t[1], total / t[2] / 1e9, t[2],
              t[0] / t[2], (t[0] + t[1]) / t[2]);
  std::printf("  peak resident memory of wavg average: %.1f MB = %.2f x one checkpoint"
              "   (target <= 3)\n",
              child_max_rss_kb / 1e3, child_max_rss_kb * 1e3 / (total / double(files)));
  std::filesystem::remove_all(dir);
  return rc == 0 ? 0 : 1;
}
