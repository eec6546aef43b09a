// fmnist_cnn: Fashion-MNIST (Debian's dataset-fashion-mnist, IDX gzip) with a small CNN with
// BatchNorm — the CPU-sized stand-in for AlgoPerf's ImageNet ResNet. Split: the first 55 000
// training images train, the last 5 000 validate, t10k is the test set. Metric: error rate.
#include <torch/torch.h>

#include <algorithm>
#include <random>

#include "wavg/core/error.h"
#include "wavg/torch/device.h"
#include "wavg/workloads/fashion_mnist.h"
#include "wavg/workloads/registry.h"

namespace wavg {

namespace {

constexpr int64_t kTrain = 55000, kPixels = detail::kFashionPixels;
constexpr float kMean = 0.2860f, kStd = 0.3530f;

struct CnnImpl : torch::nn::Module {
  CnnImpl()
      : conv1(torch::nn::Conv2dOptions(1, 16, 3).padding(1).bias(false)),
        bn1(16),
        conv2(torch::nn::Conv2dOptions(16, 32, 3).padding(1).bias(false)),
        bn2(32),
        fc1(32 * 7 * 7, 64),
        fc2(64, 10) {
    register_module("conv1", conv1);
    register_module("bn1", bn1);
    register_module("conv2", conv2);
    register_module("bn2", bn2);
    register_module("fc1", fc1);
    register_module("fc2", fc2);
  }
  torch::Tensor forward(torch::Tensor x) {  // (B, 1, 28, 28) -> (B, 10) logits
    x = torch::max_pool2d(torch::relu(bn1(conv1(x))), 2);  // (B, 16, 14, 14)
    x = torch::max_pool2d(torch::relu(bn2(conv2(x))), 2);  // (B, 32, 7, 7)
    x = torch::relu(fc1(x.flatten(1)));
    return fc2(x);
  }
  torch::nn::Conv2d conv1;
  torch::nn::BatchNorm2d bn1;
  torch::nn::Conv2d conv2;
  torch::nn::BatchNorm2d bn2;
  torch::nn::Linear fc1, fc2;
};
TORCH_MODULE(Cnn);

class FmnistCnn : public Workload {
 public:
  explicit FmnistCnn(const WorkloadOptions& o)
      : seed_(o.seed), batch_(o.batch_size > 0 ? o.batch_size : fmnist_defaults().batch_size),
        rank_(o.rank), world_(o.world) {
    detail::FashionMnist data = detail::load_fashion_mnist("fmnist_cnn");
    train_images_ = std::move(data.train_images);
    train_labels_ = std::move(data.train_labels);
    test_images_ = std::move(data.test_images);
    test_labels_ = std::move(data.test_labels);
    torch::manual_seed(uint64_t(seed_));
    model_ = Cnn();
  }

  std::string name() const override { return "fmnist_cnn"; }
  std::string metric() const override { return "error_rate"; }
  std::shared_ptr<torch::nn::Module> model() override { return model_.ptr(); }

  torch::Tensor train_loss(int64_t step) override {
    auto [x, y] = batch(step, /*stream=*/0);
    if (world_ > 1) {  // this rank's rows of the global batch (BatchNorm: per-rank statistics)
      const auto [first, count] = shard_rows(batch_, rank_, world_);
      x = x.narrow(0, first, count);
      y = y.narrow(0, first, count);
    }
    model_->train();
    return torch::nn::functional::cross_entropy(model_->forward(x), y);
  }

  void forward_train_batch(int64_t index) override {
    torch::NoGradGuard no_grad;
    auto [x, y] = batch(index, /*stream=*/1);
    model_->forward(x);
  }

  // Inference mode (no autograd bookkeeping at all); the validation and test batches are gathered
  // once per workload and reused by every evaluation (the raw model and each average), in the same
  // 1000-image batches and order as before, so every value is bit-identical.
  Evaluation evaluate(Split split) override {
    c10::InferenceMode inference;
    const bool was_training = model_->is_training();
    model_->eval();
    const std::vector<std::pair<torch::Tensor, torch::Tensor>>& batches = eval_batches(split);
    double loss = 0, errors = 0;
    int64_t count = 0;
    for (const auto& [x, y] : batches) {
      const torch::Tensor logits = model_->forward(x);
      loss += torch::nn::functional::cross_entropy(
                  logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                  .item<double>();
      errors += logits.argmax(1).ne(y).sum().item<double>();
      count += x.size(0);
    }
    model_->train(was_training);
    return {errors / double(count), loss / double(count), errors, loss, double(count), {}};
  }

 private:
  static WorkloadDefaults fmnist_defaults() { return workload_defaults("fmnist_cnn"); }

  // The split in batches of 1000 images, gathered on first use (validation and test are kept; the
  // training split, evaluated rarely, is gathered each time).
  const std::vector<std::pair<torch::Tensor, torch::Tensor>>& eval_batches(Split split) {
    std::vector<std::pair<torch::Tensor, torch::Tensor>>& cache = cached_[int(split)];
    if (!cache.empty() && split != Split::kTrain) return cache;
    cache.clear();
    const std::vector<uint8_t>& images = split == Split::kTest ? test_images_ : train_images_;
    const std::vector<uint8_t>& labels = split == Split::kTest ? test_labels_ : train_labels_;
    int64_t begin = 0, end = kTrain;
    if (split == Split::kValidation) begin = kTrain, end = 60000;
    if (split == Split::kTest) begin = 0, end = 10000;
    const auto [first, count] = shard_rows(end - begin, rank_, world_);  // this rank's rows
    begin += first;
    end = begin + count;
    for (int64_t b = begin; b < end; b += 1000) {
      const int64_t n = std::min<int64_t>(1000, end - b);
      std::vector<int64_t> idx(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) idx[size_t(i)] = b + i;
      cache.push_back(gather(images, labels, idx));
    }
    return cache;
  }

  std::pair<torch::Tensor, torch::Tensor> gather(const std::vector<uint8_t>& images,
                                                 const std::vector<uint8_t>& labels,
                                                 const std::vector<int64_t>& idx) const {
    const int64_t n = int64_t(idx.size());
    torch::Tensor x = torch::empty({n, 1, 28, 28});
    torch::Tensor y = torch::empty({n}, torch::kLong);
    float* xp = x.data_ptr<float>();
    int64_t* yp = y.data_ptr<int64_t>();
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t* src = images.data() + idx[size_t(i)] * kPixels;
      for (int64_t p = 0; p < kPixels; ++p)
        xp[i * kPixels + p] = (float(src[p]) / 255.0f - kMean) / kStd;
      yp[i] = labels[size_t(idx[size_t(i)])];
    }
    const c10::Device device = module_device(*model_);  // made on the CPU, moved to the model
    return {x.to(device), y.to(device)};
  }

  // Batch `index` of stream s: epochs of a seeded permutation of the training split.
  std::pair<torch::Tensor, torch::Tensor> batch(int64_t index, int stream) {
    std::vector<int64_t> idx(static_cast<size_t>(batch_));
    for (int64_t k = 0; k < batch_; ++k) idx[size_t(k)] = order_[stream].at(index * batch_ + k);
    return gather(train_images_, train_labels_, idx);
  }

  int64_t seed_, batch_;
  int rank_, world_;
  std::vector<uint8_t> train_images_, train_labels_, test_images_, test_labels_;
  Cnn model_{nullptr};
  std::vector<std::pair<torch::Tensor, torch::Tensor>> cached_[3];  // by Split
  detail::EpochShuffle order_[2] = {{seed_, kTrain, 0}, {seed_, kTrain, 1}};  // by stream
};

}  // namespace

// Memory of a run, from CnnImpl's shapes (per example, fp32 unless said).
WorkloadFootprint fmnist_cnn_footprint() {
  constexpr int64_t c1 = 16 * 28 * 28, p1 = 16 * 14 * 14, c2 = 32 * 14 * 14, p2 = 32 * 7 * 7;
  WorkloadFootprint f;
  f.averaged_elements = (16 * 9 + 2 * 16) + (32 * 16 * 9 + 2 * 32) + (p2 * 64 + 64) + (64 * 10 + 10) +
                        2 * (16 + 32);  // + BatchNorm running means and variances
  // Kept for backward: the image, conv/bn/relu outputs, pooled outputs with their int64 indices
  // (3 floats' worth each), fc1 and its relu, the logits and their softmax.
  const int64_t kept = kPixels + 3 * c1 + 3 * p1 + 3 * c2 + 3 * p2 + 2 * 64 + 2 * 10;
  f.example_bytes = 2 * 4 * kept + 8;  // and a gradient of each; the int64 label
  f.data_bytes = (60000 + 10000) * (kPixels + 1);  // u8 images and labels
  f.train_examples = kTrain;
  return f;
}

std::unique_ptr<Workload> make_fmnist_cnn(const WorkloadOptions& o) {
  return std::make_unique<FmnistCnn>(o);
}

}  // namespace wavg
