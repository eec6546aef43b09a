// SampleRing: the last L_max samples of one ν, shared by every windowed averager of that ν (LAWA,
// Kaddour's EXP). Internal to the bank (DESIGN.md §2, "Banks").
//
// The ring holds x_{n−L_max} … x_{n−1} in the sample dtype, plus one spare slot that receives the
// incoming sample x_n (so that the non-finite check rides the copy and a refused sample leaves the
// ring unchanged): (L_max + 1)·s bytes per element. A step writes one sample whatever the number of
// windows and their L. A window's value is computed when read by summing its last k samples in
// fp64, oldest first, tile by tile: O(N·k) per readout, no running sum, no drift.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "wavg/core/bank.h"
#include "wavg/core/dtype.h"

namespace wavg::detail {

class SampleRing {
 public:
  SampleRing(int64_t every, int64_t start) : every_(every), start_(start) {}

  // A window of `window` samples starting at `start` joins the ring (before allocate()).
  void join(int64_t window, int64_t start);
  void allocate(DType dtype, int64_t length);

  int64_t every() const { return every_; }
  int64_t start() const { return start_; }  // the smallest start among its windows
  int64_t window_max() const { return window_max_; }
  bool samples_at(int64_t step) const { return wavg::samples_at(every_, start_, step); }
  int64_t count() const { return count_; }  // n, samples pushed so far
  void set_count(int64_t n) { count_ = n; }  // restoring a state
  // The slot that receives x_n; commit() makes it the newest sample.
  unsigned char* spare() { return at(count_); }
  void commit() { ++count_; }

  // (Σ_j w_j·x_{n−k+j}) / divisor over the ring's last k samples, j = 0..k−1 oldest first, summed in
  // fp64; weights empty: every w_j = 1 (a plain sum, as a naive mean adds). Writes length elements
  // of out_dtype.
  void window_sum(int64_t k, const std::vector<double>& weights, double divisor, DType out_dtype,
                  void* out) const;

  StateArray array(const std::string& name);
  int64_t bytes() const { return int64_t(samples_.size()); }
  // Format 1 state: (L_max + 1)·length fp64 cumulative sums C_k in slot k mod (L_max + 1),
  // C_k = x_0 + … + x_{k−1} up to a common offset; x_k = C_{k+1} − C_k, rounded to the sample dtype
  // (exact when the old sums were exact). Call once count is restored.
  void restore_from_cumulative_sums(const double* cumsum);

 private:
  int64_t slots() const { return window_max_ + 1; }
  unsigned char* at(int64_t k) { return samples_.data() + size_t(k % slots()) * slot_bytes_; }
  const unsigned char* at(int64_t k) const {
    return samples_.data() + size_t(k % slots()) * slot_bytes_;
  }

  int64_t every_;
  int64_t start_;            // the smallest start among its windows
  int64_t window_max_ = 0;   // L_max of its windows
  int64_t count_ = 0;
  DType dtype_ = DType::kF32;
  int64_t length_ = 0;
  size_t slot_bytes_ = 0;    // length × sample size
  std::vector<unsigned char> samples_;  // x_k in slot k mod (L_max + 1)
};

}  // namespace wavg::detail
