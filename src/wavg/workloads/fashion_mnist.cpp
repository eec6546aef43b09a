// Fashion-MNIST's IDX gzip files (Debian's dataset-fashion-mnist).
#include "wavg/workloads/fashion_mnist.h"

#include <zlib.h>

#include <algorithm>
#include <cstdlib>
#include <random>

#include "wavg/core/error.h"

namespace wavg::detail {

namespace {

constexpr const char* kDefaultDir = "/usr/share/datasets/fashion-mnist";

// Reads a gzip'ed IDX file: magic (0x0000080D with D dimensions), big-endian sizes, u8 data.
std::vector<uint8_t> read_idx(const std::string& who, const std::string& path,
                              std::vector<int64_t>* dims) {
  gzFile f = gzopen(path.c_str(), "rb");
  WAVG_CHECK(f != nullptr, who, ": cannot open ", path,
             " (install the data with 'apt-get install dataset-fashion-mnist' or "
             "'scripts/setup.sh')");
  auto read_u32 = [&](const char* what) {
    unsigned char b[4];
    if (gzread(f, b, 4) != 4) {
      gzclose(f);
      throw Error(who + ": " + path + ": truncated " + what);
    }
    return uint32_t(b[0]) << 24 | uint32_t(b[1]) << 16 | uint32_t(b[2]) << 8 | uint32_t(b[3]);
  };
  const uint32_t magic = read_u32("magic");
  const uint32_t nd = magic & 0xff;
  if ((magic >> 8) != 0x08 || nd < 1 || nd > 3) {
    gzclose(f);
    throw Error(who + ": " + path + ": not an IDX u8 file");
  }
  int64_t total = 1;
  dims->clear();
  for (uint32_t i = 0; i < nd; ++i) {
    dims->push_back(read_u32("dimensions"));
    total *= dims->back();
  }
  std::vector<uint8_t> data(static_cast<size_t>(total));
  const int got = gzread(f, data.data(), unsigned(total));
  gzclose(f);
  WAVG_CHECK(got == total, who, ": ", path, ": truncated data (", got, " of ", total, " bytes)");
  return data;
}

}  // namespace

FashionMnist load_fashion_mnist(const std::string& workload) {
  const char* env = std::getenv("WAVG_FMNIST_DIR");
  const std::string dir = env ? env : kDefaultDir;
  FashionMnist d;
  std::vector<int64_t> dims;
  d.train_images = read_idx(workload, dir + "/train-images-idx3-ubyte.gz", &dims);
  WAVG_CHECK(dims.size() == 3 && dims[0] == 60000 && dims[1] * dims[2] == kFashionPixels, workload,
             ": unexpected training image file shape");
  d.train_labels = read_idx(workload, dir + "/train-labels-idx1-ubyte.gz", &dims);
  WAVG_CHECK(dims.size() == 1 && dims[0] == 60000, workload, ": unexpected training label file shape");
  d.test_images = read_idx(workload, dir + "/t10k-images-idx3-ubyte.gz", &dims);
  WAVG_CHECK(dims.size() == 3 && dims[0] == 10000 && dims[1] * dims[2] == kFashionPixels, workload,
             ": unexpected test image file shape");
  d.test_labels = read_idx(workload, dir + "/t10k-labels-idx1-ubyte.gz", &dims);
  WAVG_CHECK(dims.size() == 1 && dims[0] == 10000, workload, ": unexpected test label file shape");
  return d;
}

int64_t EpochShuffle::at(int64_t pos) {
  const int64_t epoch = pos / n_;
  if (epoch != epoch_) {
    perm_.resize(size_t(n_));
    for (int64_t i = 0; i < n_; ++i) perm_[size_t(i)] = i;
    std::mt19937_64 rng(uint64_t(seed_) * 1000003u + uint64_t(epoch) * 7919u + uint64_t(stream_));
    std::shuffle(perm_.begin(), perm_.end(), rng);
    epoch_ = epoch;
  }
  return perm_[size_t(pos % n_)];
}

}  // namespace wavg::detail
