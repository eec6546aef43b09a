// mri_recon: image reconstruction from undersampled k-space with a small U-Net — the CPU-sized
// stand-in for AlgoPerf's fastMRI (single-coil knee, SSIM, higher is better).
//
// Data. Fashion-MNIST images (Debian's dataset-fashion-mnist; the first 55 000 training images
// train, as in fmnist_cnn; the first 2 000 of the 5 000 held out validate, since evaluation dominates
// a study's cost; t10k is the test set), scaled to [0, 1], are the ground truth. Their 2-D Fourier transform ("k-space") keeps 7 of its 28 phase-encoding
// lines (columns) — 4x acceleration — by one fixed random Cartesian mask: the 4 lowest frequencies
// (fastMRI's RandomMaskFunc keeps a centre fraction, 8 % at 4x, which on 28 lines would be 2) and 3
// others drawn once from a fixed seed. The input is the magnitude of the zero-filled inverse FFT,
// |IFFT2(mask * FFT2(image))| (fastMRI's baseline input).
//
// Model. fastMRI's U-Net (Ronneberger et al. 2015; fastmri/models/unet.py) with 8 channels and two
// pooling levels (28 -> 14 -> 7): blocks of two [3x3 conv, InstanceNorm, LeakyReLU(0.2)], average
// pooling down, 2x2 transposed convolutions up, skip concatenations, a final 1x1 convolution. It
// predicts a correction added to the zero-filled input (residual learning; fastMRI's U-Net predicts
// the image itself from normalised inputs), which trains in a few hundred steps. InstanceNorm keeps
// no running statistics: a data-parallel run follows the one-process trajectory.
//
// Loss: L1 (fastMRI's U-Net baseline). Metric: SSIM as fastMRI's evaluate.py computes it (7x7
// uniform window, K1 = 0.01, K2 = 0.03, data range = the ground truth's maximum; each image is its
// own "volume"), averaged over the images (metrics.h).
#include <torch/torch.h>

#include <algorithm>
#include <random>

#include "wavg/core/error.h"
#include "wavg/torch/device.h"
#include "wavg/workloads/fashion_mnist.h"
#include "wavg/workloads/metrics.h"
#include "wavg/workloads/registry.h"

namespace wavg {

namespace {

constexpr int64_t kTrain = 55000, kSide = detail::kFashionSide, kPixels = detail::kFashionPixels;
constexpr int64_t kAcceleration = 4, kCentreLines = 4;
constexpr int64_t kChans = 8;
constexpr int64_t kValidationImages = 2000;  // of the 5 000 held out: evaluation dominates the cost
constexpr int64_t kEvalChunk = 250;           // images per evaluation batch
static_assert(kValidationImages % kEvalChunk == 0 && 10000 % kEvalChunk == 0, "whole batches");
constexpr uint64_t kMaskSeed = 20250802;

// The sampled columns of k-space (unshifted FFT order: column c holds frequency c, or c - kSide
// above kSide / 2), as a (1, kSide) float mask: the kCentreLines lowest frequencies and random
// others, kSide / kAcceleration in all.
torch::Tensor sampling_mask() {
  std::vector<int64_t> freq(kSide);  // frequencies -kSide/2 .. kSide/2 - 1, centre first
  for (int64_t i = 0; i < kSide; ++i) freq[size_t(i)] = i - kSide / 2;
  std::vector<int64_t> keep, others;
  for (int64_t f : freq) (f >= -kCentreLines / 2 && f < kCentreLines / 2 ? keep : others).push_back(f);
  std::mt19937_64 rng(kMaskSeed);
  std::shuffle(others.begin(), others.end(), rng);
  keep.insert(keep.end(), others.begin(), others.begin() + (kSide / kAcceleration - kCentreLines));
  torch::Tensor mask = torch::zeros({1, kSide});
  for (int64_t f : keep) mask[0][(f + kSide) % kSide] = 1.0f;
  return mask;
}

// |IFFT2(mask * FFT2(x))| of (B, H, W) images: the zero-filled reconstruction.
torch::Tensor zero_filled(const torch::Tensor& x, const torch::Tensor& mask) {
  return torch::fft::ifft2(torch::fft::fft2(x) * mask).abs();
}

// fastMRI's ConvBlock: two [3x3 conv (no bias), InstanceNorm2d, LeakyReLU(0.2)].
torch::nn::Sequential conv_block(int64_t in, int64_t out) {
  torch::nn::Sequential s;
  for (int64_t c : {in, out}) {
    s->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(c, out, 3).padding(1).bias(false)));
    s->push_back(torch::nn::InstanceNorm2d(out));
    s->push_back(torch::nn::LeakyReLU(torch::nn::LeakyReLUOptions().negative_slope(0.2)));
  }
  return s;
}

// fastMRI's TransposeConvBlock: 2x2 transposed convolution (stride 2), InstanceNorm2d, LeakyReLU.
torch::nn::Sequential up_block(int64_t in, int64_t out) {
  torch::nn::Sequential s;
  s->push_back(torch::nn::ConvTranspose2d(
      torch::nn::ConvTranspose2dOptions(in, out, 2).stride(2).bias(false)));
  s->push_back(torch::nn::InstanceNorm2d(out));
  s->push_back(torch::nn::LeakyReLU(torch::nn::LeakyReLUOptions().negative_slope(0.2)));
  return s;
}

struct UnetImpl : torch::nn::Module {
  UnetImpl() {
    down1 = register_module("down1", conv_block(1, kChans));            // 28 x 28
    down2 = register_module("down2", conv_block(kChans, 2 * kChans));   // 14 x 14
    bottom = register_module("bottom", conv_block(2 * kChans, 4 * kChans));  // 7 x 7
    up2 = register_module("up2", up_block(4 * kChans, 2 * kChans));
    up2_conv = register_module("up2_conv", conv_block(4 * kChans, 2 * kChans));
    up1 = register_module("up1", up_block(2 * kChans, kChans));
    up1_conv = register_module("up1_conv", conv_block(2 * kChans, kChans));
    out = register_module("out", torch::nn::Conv2d(torch::nn::Conv2dOptions(kChans, 1, 1)));
  }
  torch::Tensor forward(const torch::Tensor& x) {  // (B, 1, 28, 28) -> (B, 1, 28, 28)
    const torch::Tensor d1 = down1->forward(x);                                      // (B, C, 28, 28)
    const torch::Tensor d2 = down2->forward(torch::avg_pool2d(d1, 2));               // (B, 2C, 14, 14)
    const torch::Tensor b = bottom->forward(torch::avg_pool2d(d2, 2));               // (B, 4C, 7, 7)
    const torch::Tensor u2 = up2_conv->forward(torch::cat({up2->forward(b), d2}, 1));  // (B, 2C, 14, 14)
    const torch::Tensor u1 = up1_conv->forward(torch::cat({up1->forward(u2), d1}, 1));  // (B, C, 28, 28)
    return x + out->forward(u1);  // the zero-filled input, corrected
  }
  torch::nn::Sequential down1{nullptr}, down2{nullptr}, bottom{nullptr}, up2{nullptr},
      up2_conv{nullptr}, up1{nullptr}, up1_conv{nullptr};
  torch::nn::Conv2d out{nullptr};
};
TORCH_MODULE(Unet);

class MriRecon : public Workload {
 public:
  explicit MriRecon(const WorkloadOptions& o)
      : seed_(o.seed),
        batch_(o.batch_size > 0 ? o.batch_size : workload_defaults("mri_recon").batch_size),
        rank_(o.rank), world_(o.world), data_(detail::load_fashion_mnist("mri_recon")),
        mask_(sampling_mask()) {
    torch::manual_seed(uint64_t(seed_));
    model_ = Unet();
  }
  std::string name() const override { return "mri_recon"; }
  std::string metric() const override { return "ssim"; }
  bool lower_is_better() const override { return false; }
  std::shared_ptr<torch::nn::Module> model() override { return model_.ptr(); }

  // Data parallel: the rank's images of the global batch; the sum of their absolute errors over
  // the global batch's pixel count, times the world size, so that the runner's mean of the ranks'
  // gradients is the gradient of the global batch's mean L1 loss.
  torch::Tensor train_loss(int64_t step) override {
    model_->train();
    const auto [first, count] = shard_rows(batch_, rank_, world_);
    const auto [input, truth] = images(training_indices(step, 0, first, count));
    return torch::l1_loss(model_->forward(input), truth, at::Reduction::Sum) * double(world_) /
           double(batch_ * kPixels);
  }

  void forward_train_batch(int64_t index) override {
    torch::NoGradGuard no_grad;
    model_->forward(images(training_indices(index, 1, 0, batch_)).first);
  }

  Evaluation evaluate(Split split) override {
    c10::InferenceMode inference;
    const bool was_training = model_->is_training();
    model_->eval();
    double ssim = 0, l1 = 0, count = 0;
    for (const auto& [input, truth] : eval_batches(split)) {
      const torch::Tensor pred = model_->forward(input).to(torch::kCPU);
      const torch::Tensor gt = truth.to(torch::kCPU);
      ssim += detail::ssim_per_image(pred.squeeze(1), gt.squeeze(1)).sum().item<double>();
      l1 += (pred - gt).abs().to(torch::kDouble).mean({1, 2, 3}).sum().item<double>();
      count += double(input.size(0));
    }
    model_->train(was_training);
    return {ssim / count, l1 / count, ssim, l1, count, {}};
  }

 private:
  // Images idx of the training split (first 55 000) or test set: (zero-filled input, ground truth),
  // each (B, 1, 28, 28), on the model's device.
  std::pair<torch::Tensor, torch::Tensor> images(const std::vector<int64_t>& idx,
                                                 bool test = false) const {
    const std::vector<uint8_t>& pixels = test ? data_.test_images : data_.train_images;
    const int64_t n = int64_t(idx.size());
    torch::Tensor truth = torch::empty({n, kSide, kSide});
    float* p = truth.data_ptr<float>();
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < kPixels; ++k)
        p[i * kPixels + k] = float(pixels[size_t(idx[size_t(i)] * kPixels + k)]) / 255.0f;
    const c10::Device device = module_device(*model_);
    return {zero_filled(truth, mask_).unsqueeze(1).to(device), truth.unsqueeze(1).to(device)};
  }

  // Images [first, first + count) of batch `index` of stream s: epochs of a seeded permutation of
  // the training split.
  std::vector<int64_t> training_indices(int64_t index, int stream, int64_t first, int64_t count) {
    std::vector<int64_t> idx;
    for (int64_t k = first; k < first + count; ++k) idx.push_back(order_[stream].at(index * batch_ + k));
    return idx;
  }

  // This rank's batches of a split, built on first use and kept. The split is cut into fixed
  // batches of kEvalChunk images and ranks take whole batches, so that every image is
  // reconstructed in the same batch whatever the world size (the same SSIM, bit for bit).
  const std::vector<std::pair<torch::Tensor, torch::Tensor>>& eval_batches(Split split) {
    std::vector<std::pair<torch::Tensor, torch::Tensor>>& cache = cached_[int(split)];
    if (!cache.empty()) return cache;
    int64_t begin = 0, size = kValidationImages;  // the training split: its first images
    if (split == Split::kValidation) begin = kTrain;
    if (split == Split::kTest) size = 10000;
    const auto [first, count] = shard_rows(size / kEvalChunk, rank_, world_);
    for (int64_t b = first; b < first + count; ++b) {
      std::vector<int64_t> idx;
      for (int64_t i = 0; i < kEvalChunk; ++i) idx.push_back(begin + b * kEvalChunk + i);
      cache.push_back(images(idx, split == Split::kTest));
    }
    return cache;
  }

  int64_t seed_, batch_;
  int rank_, world_;
  detail::FashionMnist data_;
  torch::Tensor mask_;  // (1, 28): 1 where a k-space column is sampled
  Unet model_{nullptr};
  std::vector<std::pair<torch::Tensor, torch::Tensor>> cached_[3];  // by Split
  detail::EpochShuffle order_[2] = {{seed_, kTrain, 0}, {seed_, kTrain, 1}};  // by stream
};

}  // namespace

// Memory of a run, from UnetImpl's shapes (per example, fp32; channels x pixels of each level).
WorkloadFootprint mri_recon_footprint() {
  constexpr int64_t c = kChans, p1 = kPixels, p2 = p1 / 4, p3 = p1 / 16;
  auto block = [](int64_t in, int64_t out) { return 9 * in * out + 9 * out * out; };
  WorkloadFootprint f;
  f.averaged_elements = block(1, c) + block(c, 2 * c) + block(2 * c, 4 * c) + 4 * 4 * c * 2 * c +
                        block(4 * c, 2 * c) + 4 * 2 * c * c + block(2 * c, c) + (c + 1);
  // Kept for backward: the ground truth, input (and its FFTs, complex: 4 floats), each conv block's
  // 6 outputs (conv, norm, activation twice) with the norm's statistics, the pooled maps, the up
  // blocks' 3 outputs, the concatenations, the output, the residual sum and the L1 terms.
  const int64_t kept = 6 * p1 + (6 * c + 6 * c + 3 * c + 2 * c) * p1 +
                       (c + 6 * 2 * c + 6 * 2 * c + 3 * 2 * c + 4 * c) * p2 +
                       (2 * c + 6 * 4 * c) * p3 + 4 * p1;
  f.example_bytes = 2 * 4 * kept;  // and a gradient of each
  // The u8 images and labels; the cached validation and test sets (input and truth, fp32).
  f.data_bytes = (60000 + 10000) * (kPixels + 1) + (2 * kValidationImages + 10000) * 2 * 4 * kPixels;
  f.train_examples = kTrain;
  return f;
}

std::unique_ptr<Workload> make_mri_recon(const WorkloadOptions& o) {
  return std::make_unique<MriRecon>(o);
}

}  // namespace wavg
