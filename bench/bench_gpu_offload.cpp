// GPU training-step time with and without a bank of averagers at ν = 1 (issue 14 §4; DESIGN.md §8):
// a GPT-2-small-shaped model (12 layers, 12 heads, width 768, context 1024, vocabulary 50304, tied
// embeddings: 124M parameters, the paper's LM size) trained with AdamW on random tokens, fp32
// weights with TF32 matmuls. The averagers' samples leave the GPU through pinned memory on a side
// stream and the bank updates on CPU threads (device_offload.h), so the step should not wait; the
// synchronous variant (observe() returns once the bank is updated) shows what that saves.
// Each variant's time covers its steps and the bank's pending update (ModelAverager::wait), median
// of interleaved rounds. Built only against a LibTorch with CUDA. Run by bench/gpu_offload.sh.
// Usage: bench_gpu_offload [--batch 8] [--steps 20] [--rounds 3] [--averaging-threads 8]
//                          [--lawa-window 20]
#include <ATen/cuda/CUDAContext.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bench_util.h"
#include "wavg/torch/model_averager.h"
#include "wavg/torch/threads.h"

using namespace wavg;

namespace {

constexpr int64_t kLayers = 12, kHeads = 12, kDim = 768, kContext = 1024, kVocab = 50304;

struct BlockImpl : torch::nn::Module {
  BlockImpl()
      : ln1(torch::nn::LayerNormOptions({kDim})),
        qkv(kDim, 3 * kDim),
        proj(kDim, kDim),
        ln2(torch::nn::LayerNormOptions({kDim})),
        fc(kDim, 4 * kDim),
        out(4 * kDim, kDim) {
    register_module("ln1", ln1);
    register_module("qkv", qkv);
    register_module("proj", proj);
    register_module("ln2", ln2);
    register_module("fc", fc);
    register_module("out", out);
  }
  torch::Tensor forward(torch::Tensor x) {  // (B, T, C)
    const int64_t B = x.size(0), T = x.size(1);
    // (3, B, heads, T, head_dim)
    const auto parts = qkv(ln1(x)).view({B, T, 3, kHeads, kDim / kHeads}).permute({2, 0, 3, 1, 4});
    const torch::Tensor q = parts[0], k = parts[1], v = parts[2];
#if TORCH_VERSION_MAJOR >= 2
    torch::Tensor y = at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/true);
#else
    const auto mask = torch::ones({T, T}, x.options().dtype(torch::kBool)).triu(1);
    torch::Tensor y = torch::softmax(
        q.matmul(k.transpose(-2, -1)).div(std::sqrt(double(kDim / kHeads))).masked_fill(mask, -INFINITY),
        -1).matmul(v);
#endif
    x = x + proj(y.transpose(1, 2).reshape({B, T, kDim}));
    return x + out(torch::gelu(fc(ln2(x))));
  }
  torch::nn::LayerNorm ln1;
  torch::nn::Linear qkv, proj;
  torch::nn::LayerNorm ln2;
  torch::nn::Linear fc, out;
};
TORCH_MODULE(Block);

struct GptImpl : torch::nn::Module {
  GptImpl() : wte(kVocab, kDim), wpe(kContext, kDim), ln_f(torch::nn::LayerNormOptions({kDim})) {
    register_module("wte", wte);
    register_module("wpe", wpe);
    for (int64_t l = 0; l < kLayers; ++l)
      blocks.push_back(register_module("block" + std::to_string(l), Block()));
    register_module("ln_f", ln_f);
  }
  torch::Tensor forward(const torch::Tensor& idx) {  // (B, T) tokens -> (B, T, vocab) logits
    const auto pos = torch::arange(idx.size(1), idx.options());
    torch::Tensor x = wte(idx) + wpe(pos);
    for (auto& b : blocks) x = b->forward(x);
    return torch::nn::functional::linear(ln_f(x), wte->weight);  // tied with the embedding
  }
  torch::nn::Embedding wte, wpe;
  std::vector<Block> blocks;
  torch::nn::LayerNorm ln_f;
};
TORCH_MODULE(Gpt);

int64_t flag(int argc, char** argv, const char* name, int64_t fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::atoll(argv[i + 1]);
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  if (!torch::cuda::is_available()) {
    std::printf("bench_gpu_offload: no CUDA device visible; nothing measured\n");
    return 0;
  }
  const int64_t batch = flag(argc, argv, "--batch", 8), steps = flag(argc, argv, "--steps", 20);
  const int rounds = int(flag(argc, argv, "--rounds", 3));
  const int64_t window = flag(argc, argv, "--lawa-window", 20);
  ThreadSettings threads;
  threads.averaging = int(flag(argc, argv, "--averaging-threads", 8));
  const ThreadSettings in_force = apply_threads(threads);
  const torch::Device dev(torch::kCUDA, 0);
  at::globalContext().setAllowTF32CuBLAS(true);
  at::globalContext().setAllowTF32CuDNN(true);

  torch::manual_seed(0);
  Gpt net;
  net->to(dev);
  int64_t n = 0;
  for (const auto& p : net->parameters()) n += p.numel();
  torch::optim::AdamW opt(net->parameters(), torch::optim::AdamWOptions(3e-4).weight_decay(0.1));
  auto step = [&] {
    const auto tokens = torch::randint(0, kVocab, {batch, kContext + 1}, torch::TensorOptions(dev).dtype(torch::kLong));
    opt.zero_grad();
    const auto logits = net->forward(tokens.narrow(1, 0, kContext));
    torch::nn::functional::cross_entropy(logits.view({-1, kVocab}),
                                         tokens.narrow(1, 1, kContext).reshape(-1))
        .backward();
    opt.step();
  };
  std::printf("bench_gpu_offload: %s; GPT %.1fM parameters, batch %lld x %lld tokens, fp32 weights "
              "(TF32 matmuls), AdamW; LibTorch %s; %s\n",
              at::cuda::getCurrentDeviceProperties()->name, double(n) / 1e6, (long long)batch,
              (long long)kContext, TORCH_VERSION, describe(in_force).c_str());

  // The banks (all at ν = 1), each fed by its own ModelAverager on the same model.
  struct Variant {
    std::string name;
    std::unique_ptr<ModelAverager> avg;
  };
  std::vector<Variant> variants;
  variants.push_back({"no averaging", nullptr});
  auto add = [&](const std::string& name, std::vector<AveragerSpec> specs, bool async) {
    variants.push_back({name, std::make_unique<ModelAverager>(net.ptr(), std::move(specs))});
    variants.back().avg->set_async(async);
  };
  add("EMA, offloaded", {EmaOptions(0.999)}, true);
  add("EMA + LAWA L=" + std::to_string(window) + ", offloaded",
      {EmaOptions(0.999), LawaOptions(window)}, true);
  add("EMA, synchronous", {EmaOptions(0.999)}, false);
  int64_t t = 0;
  for (int w = 0; w < 3; ++w) step();  // warm-up: kernels chosen, allocator filled
  std::vector<std::function<void()>> runs;
  for (auto& v : variants)
    runs.push_back([&, avg = v.avg.get()] {
      torch::cuda::synchronize();
      for (int64_t s = 0; s < steps; ++s) {
        step();
        if (avg) avg->observe(++t);
      }
      if (avg) avg->wait();
      torch::cuda::synchronize();
    });
  const std::vector<double> secs = bench::interleaved(runs, rounds);
  const double base = secs[0] / double(steps) * 1e3;
  for (size_t i = 0; i < variants.size(); ++i) {
    const double ms = secs[i] / double(steps) * 1e3;
    std::printf("  %-32s %8.2f ms/step   ratio %.3f\n", variants[i].name.c_str(), ms, ms / base);
  }
  return 0;
}
