// Training-step benchmarks (issue: harness):
//  1. step time with a bank of 20 averagers (10 LAWA windows L = 2..50, 10 EMAs), ν = 1 and ν = 8,
//     against no averaging, on fmnist_cnn and text_lm (target overhead <= 5 %);
//  2. wavg's step time against the same model, batch and optimizer in Debian's python3-torch with
//     the same threads (bench/torch_step.py, run between wavg's rounds; target >= 1.0).
// Usage: bench_train [--python-script bench/torch_step.py] [--steps N] [--averaging-threads N]
//                    [--intra-op-threads N] [--workload NAME]   (on a loaded machine: 1 thread,
//                    which LibTorch's spinning threads need when the cores are oversubscribed)
#include <torch/torch.h>

#include <cstdio>
#include <cstring>
#include <memory>

#include "bench_util.h"
#include "wavg/torch/model_averager.h"
#include "wavg/torch/optim.h"
#include "wavg/torch/threads.h"
#include "wavg/workloads/workload.h"

using namespace wavg;

namespace {

std::vector<AveragerSpec> bank_of_20(int64_t every) {
  std::vector<AveragerSpec> specs;
  for (int64_t w : {2, 5, 8, 10, 15, 20, 25, 30, 40, 50})
    specs.emplace_back(LawaOptions(w).every(every));
  for (double b : {0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999})
    specs.emplace_back(EmaOptions(b).every(every));
  return specs;
}

void python_comparison(const std::string& python_script, const ThreadSettings& threads,
                       int64_t steps) {
  // wavg against python3-torch, alternating one round of each, same threads and BLAS.
  std::vector<std::vector<double>> ours(2), theirs(2);
  std::vector<std::unique_ptr<Workload>> ws;
  std::vector<std::unique_ptr<TrainOptimizer>> opts;
  for (const std::string name : {"fmnist_cnn", "text_lm"}) {
    ws.push_back(make_workload(name, {}));
    OptimizerConfig oc;
    oc.lr = 1e-3;
    opts.push_back(std::make_unique<TrainOptimizer>(oc, ws.back()->model()->parameters()));
  }
  const std::string cmd = "OPENBLAS_NUM_THREADS=" + std::to_string(threads.blas) +
                          " /usr/bin/python3 " + python_script + " " +
                          std::to_string(threads.intra_op) + " 1 " + std::to_string(steps);
  for (int round = -1; round < 5; ++round) {
    for (size_t k = 0; k < ws.size(); ++k) {
      const double t = bench::seconds_of([&] {
        for (int64_t s = 0; s < steps; ++s) {
          opts[k]->zero_grad();
          ws[k]->train_loss(s).backward();
          opts[k]->step(1e-3);
        }
      });
      if (round >= 0) ours[k].push_back(t / double(steps) * 1e3);
    }
    std::FILE* p = ::popen(cmd.c_str(), "r");
    char name[64];
    double ms;
    for (size_t k = 0; p && k < 2 && std::fscanf(p, "%63s %lf", name, &ms) == 2; ++k)
      if (round >= 0) theirs[k].push_back(ms);
    if (p) ::pclose(p);
  }
  const char* names[] = {"fmnist_cnn", "text_lm"};
  for (size_t k = 0; k < 2; ++k) {
    if (theirs[k].empty()) {
      std::printf("%-10s python3-torch run failed (%s)\n", names[k], cmd.c_str());
      continue;
    }
    const double a = bench::median(ours[k]), b = bench::median(theirs[k]);
    std::printf("%-10s python3-torch %.1f ms/step, wavg %.1f ms/step: speed ratio %.2f   "
                "(target >= 1.0)\n", names[k], b, a, b / a);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string python_script;
  int64_t steps = 25;
  std::string only;  // empty: both workloads
  ThreadSettings requested;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--python-script")) {
      python_script = argv[i + 1];
    } else if (!std::strcmp(argv[i], "--averaging-threads")) {
      requested.averaging = std::atoi(argv[i + 1]);
    } else if (!std::strcmp(argv[i], "--intra-op-threads")) {
      requested.intra_op = std::atoi(argv[i + 1]);
    } else if (!std::strcmp(argv[i], "--workload")) {
      only = argv[i + 1];
    } else if (!std::strcmp(argv[i], "--steps")) {
      steps = std::atoll(argv[i + 1]);
    }
  }
  const ThreadSettings threads = apply_threads(requested);
  std::printf("training steps: %s, %lld steps per sample, median of rounds\n",
              describe(threads).c_str(), (long long)steps);
  if (!python_script.empty()) python_comparison(python_script, threads, steps);
  for (const std::string name : {"fmnist_cnn", "text_lm"}) {
    if (!only.empty() && name != only) continue;
    WorkloadOptions wo;
    auto w = make_workload(name, wo);
    auto model = w->model();
    OptimizerConfig oc;
    oc.lr = 1e-3;
    TrainOptimizer opt(oc, model->parameters());
    ModelAverager sync1(model, bank_of_20(1)), async1(model, bank_of_20(1)),
        async8(model, bank_of_20(8));
    sync1.set_async(false);
    async1.set_async(true);
    async8.set_async(true);
    int64_t step = 0;
    auto train = [&](ModelAverager* avg) {
      return [&, avg] {
        for (int64_t k = 0; k < steps; ++k) {
          opt.zero_grad();
          w->train_loss(step).backward();
          opt.step(oc.lr);
          ++step;
          if (avg) avg->observe(step);
        }
        if (avg) avg->wait();
      };
    };
    const auto t = bench::interleaved(
        {train(nullptr), train(&async1), train(&sync1), train(&async8)}, 9);
    const double base = t[0] / double(steps) * 1e3;
    std::printf("%-10s no averaging %.1f ms/step | 20 averagers (%.1f MB of state, %.0f B/param): "
                "nu=1 async %+.1f%%, nu=1 sync %+.1f%%, nu=8 async %+.1f%%   (target <= +5%%)\n",
                name.c_str(), base, async1.bank().state_bytes() / 1e6,
                async1.bank().state_bytes_per_element(), 100 * (t[1] / t[0] - 1),
                100 * (t[2] / t[0] - 1), 100 * (t[3] / t[0] - 1));
  }
  return 0;
}
