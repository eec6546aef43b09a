// Fashion-MNIST from Debian's dataset-fashion-mnist (IDX gzip files), shared by the workloads that
// train on it (fmnist_cnn, mri_recon). Internal to workloads/.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace wavg::detail {

constexpr int64_t kFashionSide = 28, kFashionPixels = kFashionSide * kFashionSide;

struct FashionMnist {
  std::vector<uint8_t> train_images, train_labels;  // 60 000 images (row-major 28 x 28), labels
  std::vector<uint8_t> test_images, test_labels;    // 10 000 (t10k)
};

// The training order of the Fashion-MNIST workloads: position `pos` of a stream runs through epochs
// e = pos / n, each a permutation of [0, n) drawn by std::shuffle with
// mt19937_64(seed·1000003 + e·7919 + stream), so a batch is a pure function of (seed, stream, pos).
// Keeps the current epoch's permutation.
class EpochShuffle {
 public:
  EpochShuffle(int64_t seed, int64_t n, int stream) : seed_(seed), n_(n), stream_(stream) {}
  int64_t at(int64_t pos);

 private:
  int64_t seed_, n_;
  int stream_;
  int64_t epoch_ = -1;
  std::vector<int64_t> perm_;
};

// Reads the four files from $WAVG_FMNIST_DIR or /usr/share/datasets/fashion-mnist. A missing or
// malformed file throws wavg::Error, prefixed with `workload`, naming the file and the package.
FashionMnist load_fashion_mnist(const std::string& workload);

}  // namespace wavg::detail
