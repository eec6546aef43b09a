// The smallest complete use of wavg's library: add LAWA and EMA to a LibTorch training loop.
//
// A two-layer MLP learns a noisy linear map with NAdamW. Two averagers ride the trajectory:
// LAWA (mean of the last 10 samples, one every 5 steps) and EMA (β = 0.9, every step). Every 100
// steps the raw model and both averages are evaluated on held-out data; at the end the EMA is saved
// as a safetensors file whose tensor names are the model's state-dict names.
//
// Build: part of the wavg build (examples/), or in your own project with find_package(wavg) and
// target_link_libraries(app PRIVATE wavg::wavg). Run: ./train_with_averaging [output_dir]
#include <torch/torch.h>

#include <cstdio>
#include <string>

#include "wavg/torch/model_averager.h"  // ModelAverager, EvalSwap, AveragerSpec
#include "wavg/torch/nadamw.h"          // NAdamW, the AlgoPerf reference optimizer

struct MlpImpl : torch::nn::Module {
  MlpImpl() : fc1(16, 64), fc2(64, 4) {
    register_module("fc1", fc1);
    register_module("fc2", fc2);
  }
  torch::Tensor forward(const torch::Tensor& x) { return fc2(torch::relu(fc1(x))); }
  torch::nn::Linear fc1, fc2;
};
TORCH_MODULE(Mlp);

int main(int argc, char** argv) {
  const std::string out_dir = argc > 1 ? argv[1] : ".";
  torch::manual_seed(0);

  // Data: y = x·W + noise, a fixed validation set.
  const torch::Tensor w_true = torch::randn({16, 4});
  auto make_batch = [&](int64_t n) {
    torch::Tensor x = torch::randn({n, 16});
    return std::make_pair(x, torch::matmul(x, w_true) + 0.5 * torch::randn({n, 4}));
  };
  const auto [x_val, y_val] = make_batch(2048);

  Mlp model;
  wavg::NAdamW optimizer(model->parameters(), wavg::NAdamWOptions(3e-3).weight_decay(1e-4));

  // 1. Attach the averagers. Names default to "lawa_L10_nu5" and "ema_b0.9_nu1".
  //    Options chain as LibTorch's do and validate as they are set (a bad value throws wavg::Error).
  wavg::ModelAverager averager(model.ptr(), {wavg::LawaOptions(/*window=*/10).every(5),
                                             wavg::EmaOptions(/*beta=*/0.9)});
  averager.observe(/*step=*/0);  // the initial weights are step 0's sample

  auto validation_loss = [&] {
    torch::NoGradGuard no_grad;
    return torch::mse_loss(model->forward(x_val), y_val).item<double>();
  };

  const int64_t steps = 600;
  for (int64_t step = 1; step <= steps; ++step) {
    const auto [x, y] = make_batch(64);
    optimizer.zero_grad();
    torch::mse_loss(model->forward(x), y).backward();
    optimizer.step();
    // 2. Let the bank observe the weights after `step` updates. It copies the weights once for all
    //    averagers (set_async(true) moves the update to a background thread).
    averager.observe(step);

    if (step % 100 == 0) {
      std::printf("step %4lld  raw %.4f", (long long)step, validation_loss());
      for (int i = 0; i < averager.size(); ++i) {
        // 3. Swap an average in for evaluation; the model is restored exactly at scope exit. One
        //    swap at a time, and no observe() or optimizer step while it lives.
        wavg::EvalSwap swap = averager.swap_in(i);
        std::printf("  %s %.4f", averager.name(i).c_str(), validation_loss());
      }
      std::printf("\n");
    }
  }
  // 4. Save an average with the model's state-dict names (fc1.weight, ...).
  const std::string path = out_dir + "/ema.safetensors";
  averager.save("ema_b0.9_nu1", path);
  std::printf("saved %s\n", path.c_str());
  return 0;
}
