// SampleRing: storage of the shared window samples, their exact fp64 readout, format-1 conversion.
#include "wavg/core/sample_ring.h"

#include <algorithm>

#include "wavg/core/parallel.h"

namespace wavg::detail {

namespace {
// Elements per readout tile: the tile's fp64 accumulator stays in L1 while the k samples stream
// through it.
constexpr int64_t kTile = 4096;
}  // namespace

void SampleRing::join(int64_t window, int64_t start) {
  window_max_ = std::max(window_max_, window);
  start_ = std::min(start_, start);
}

void SampleRing::allocate(DType dtype, int64_t length) {
  dtype_ = dtype;
  length_ = length;
  slot_bytes_ = size_t(length) * dtype_size(dtype);
  samples_.assign(size_t(slots()) * slot_bytes_, 0);
}

void SampleRing::window_sum(int64_t k, const std::vector<double>& weights, double divisor,
                            DType out_dtype, void* out) const {
  std::vector<const unsigned char*> window;
  for (int64_t m = count_ - k; m < count_; ++m) window.push_back(at(m));
  const bool weighted = !weights.empty();
  dispatch_floating(dtype_, [&](auto tag) {
    using T = decltype(tag);
    dispatch_floating(out_dtype, [&](auto out_tag) {
      using O = decltype(out_tag);
      O* y = static_cast<O*>(out);
      parallel_for(length_, [&](int64_t begin, int64_t end) {
        std::vector<double> acc(static_cast<size_t>(kTile));
        for (int64_t b = begin; b < end; b += kTile) {
          const int64_t n = std::min(end, b + kTile) - b;
          double* __restrict a = acc.data();
          std::fill(a, a + n, 0.0);
          for (size_t j = 0; j < window.size(); ++j) {
            const T* __restrict x = reinterpret_cast<const T*>(window[j]) + b;
            if (weighted) {
              const double w = weights[j];
              for (int64_t i = 0; i < n; ++i) a[i] += w * load_f64(x[i]);
            } else {
              for (int64_t i = 0; i < n; ++i) a[i] += load_f64(x[i]);
            }
          }
          for (int64_t i = 0; i < n; ++i) y[b + i] = store_as<O>(a[i] / divisor);
        }
      });
    });
  });
}

StateArray SampleRing::array(const std::string& name) {
  return {name, dtype_, slots() * length_, samples_.data()};
}

void SampleRing::restore_from_cumulative_sums(const double* cumsum) {
  const int64_t n = slots();
  dispatch_floating(dtype_, [&](auto tag) {
    using T = decltype(tag);
    for (int64_t k = std::max<int64_t>(0, count_ - window_max_); k < count_; ++k) {
      const double* lo = cumsum + (k % n) * length_;        // C_k
      const double* hi = cumsum + ((k + 1) % n) * length_;  // C_{k+1}
      T* x = reinterpret_cast<T*>(at(k));
      for (int64_t i = 0; i < length_; ++i) x[i] = store_as<T>(hi[i] - lo[i]);
    }
  });
}

}  // namespace wavg::detail
