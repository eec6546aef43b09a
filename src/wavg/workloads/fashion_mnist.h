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

// Reads the four files from $WAVG_FMNIST_DIR or /usr/share/datasets/fashion-mnist. A missing or
// malformed file throws wavg::Error, prefixed with `workload`, naming the file and the package.
FashionMnist load_fashion_mnist(const std::string& workload);

}  // namespace wavg::detail
