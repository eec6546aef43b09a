// Scaling of safetensors headers with the tensor count (issue 11 §3: the reader was quadratic).
// For N = 10^5 and 10^6 one-element F32 tensors, times the header writer, the reader, and
// average_checkpoints over two such files, and prints the ratio time(10^6) / time(10^5): near 10
// when linear, near 100 when quadratic. Each time is given as wall-clock seconds and as the
// process's CPU seconds (user + system, all threads): on a shared machine the wall clock also
// counts other processes' load, the CPU time does not. Usage: bench_header [DIR] (files go to DIR,
// default /tmp).
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <tuple>
#include <vector>

#include "bench_util.h"
#include "wavg/io/checkpoint_average.h"
#include "wavg/io/safetensors.h"

using namespace wavg;

namespace {

struct Time {
  double wall = 0, cpu = 0;  // seconds
};
struct Times {
  Time write, read, average;
};

double cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

Time time_of(const std::function<void()>& fn) {
  const double c0 = cpu_seconds();
  Time t;
  t.wall = bench::seconds_of(fn);
  t.cpu = cpu_seconds() - c0;
  return t;
}

Times measure(int64_t n, const std::string& dir) {
  std::vector<float> values(size_t(n), 1.5f);
  std::vector<TensorOut> outs;
  outs.reserve(size_t(n));
  for (int64_t i = 0; i < n; ++i)
    outs.push_back({"layer." + std::to_string(i) + ".weight", DType::kF32, {1}, &values[size_t(i)]});
  const std::string tag = dir + "/bench_header_" + std::to_string(::getpid()) + "_";
  const std::vector<std::string> files = {tag + "a.safetensors", tag + "b.safetensors"};
  Times t;
  t.write = time_of([&] { write_safetensors(files[0], outs); });
  write_safetensors(files[1], outs);
  t.read = time_of([&] {
    SafetensorsFile f(files[0]);
    if (f.tensors().size() != size_t(n)) std::abort();
  });
  CheckpointAverageOptions o;
  o.averager = LawaOptions(2);
  t.average = time_of([&] { average_checkpoints(files, tag + "avg.safetensors", o); });
  for (const auto& f : {files[0], files[1], tag + "avg.safetensors"}) ::unlink(f.c_str());
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : "/tmp";
  const Times small = measure(100000, dir), large = measure(1000000, dir);
  std::printf("%-8s %10s %10s %8s %10s %10s %8s\n", "", "1e5 wall", "1e6 wall", "ratio",
              "1e5 cpu", "1e6 cpu", "ratio");
  for (auto [name, a, b] : {std::tuple{"write", small.write, large.write},
                            std::tuple{"read", small.read, large.read},
                            std::tuple{"average", small.average, large.average}})
    std::printf("%-8s %10.3f %10.3f %8.1f %10.3f %10.3f %8.1f\n", name, a.wall, b.wall,
                b.wall / a.wall, a.cpu, b.cpu, b.cpu / a.cpu);
  std::printf("(near 10: linear in the tensor count; near 100: quadratic)\n");
  return 0;
}
