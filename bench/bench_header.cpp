// Scaling of safetensors headers with the tensor count (issue 11 §3: the reader was quadratic).
// For N = 10^5 and 10^6 one-element F32 tensors, times the header writer, the reader, and
// average_checkpoints over two such files, and prints the ratio time(10^6) / time(10^5): near 10
// when linear, near 100 when quadratic. Usage: bench_header [DIR] (files go to DIR, default /tmp).
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "bench_util.h"
#include "wavg/io/checkpoint_average.h"
#include "wavg/io/safetensors.h"

using namespace wavg;

namespace {

struct Times {
  double write = 0, read = 0, average = 0;
};

Times measure(int64_t n, const std::string& dir) {
  std::vector<float> values(size_t(n), 1.5f);
  std::vector<TensorOut> outs;
  outs.reserve(size_t(n));
  for (int64_t i = 0; i < n; ++i)
    outs.push_back({"layer." + std::to_string(i) + ".weight", DType::kF32, {1}, &values[size_t(i)]});
  const std::string tag = dir + "/bench_header_" + std::to_string(::getpid()) + "_";
  const std::vector<std::string> files = {tag + "a.safetensors", tag + "b.safetensors"};
  Times t;
  t.write = bench::seconds_of([&] { write_safetensors(files[0], outs); });
  write_safetensors(files[1], outs);
  t.read = bench::seconds_of([&] {
    SafetensorsFile f(files[0]);
    if (f.tensors().size() != size_t(n)) std::abort();
  });
  CheckpointAverageOptions o;
  o.averager = LawaOptions(2);
  t.average = bench::seconds_of([&] { average_checkpoints(files, tag + "avg.safetensors", o); });
  for (const auto& f : {files[0], files[1], tag + "avg.safetensors"}) ::unlink(f.c_str());
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : "/tmp";
  const Times small = measure(100000, dir), large = measure(1000000, dir);
  std::printf("%-8s %12s %12s %8s\n", "", "1e5 [s]", "1e6 [s]", "ratio");
  std::printf("%-8s %12.3f %12.3f %8.1f\n", "write", small.write, large.write,
              large.write / small.write);
  std::printf("%-8s %12.3f %12.3f %8.1f\n", "read", small.read, large.read,
              large.read / small.read);
  std::printf("%-8s %12.3f %12.3f %8.1f\n", "average", small.average, large.average,
              large.average / small.average);
  std::printf("(near 10: linear in the tensor count; near 100: quadratic)\n");
  return 0;
}
