// AveragerBank: many averagers riding one training trajectory (DESIGN.md §2, "Banks").
//
// The bank sees the model as one flat vector of `numel` elements of one floating dtype (the sample).
// It may work on a contiguous shard [offset, offset + length) of that vector, so that a distributed
// trainer can give each process one shard. At every observed step, one fused pass over the shard
// updates every averager that samples at that step:
//   EMA   e ← β·e + (1−β)·x                        (e₁ = x₁; fp32 state and arithmetic)
//   SWA   S ← S + x                                (fp64 running sum of all samples)
//   LAWA  C_{n+1} ← C_n + x in a shared ring        (fp64 cumulative sums)
// LAWA averagers with the same ν share one ring holding the cumulative sums C_{n−L_max} … C_n of
// the ring's samples; a window of L is (C_n − C_{n−L}) / L. A step costs one O(N) pass for all the
// windows of a ring together, whatever their number and L. Every kRebase samples the ring is rebased
// (C_{n−L_max} subtracted from every entry) so magnitudes, and rounding, stay bounded.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "wavg/core/averager.h"
#include "wavg/core/dtype.h"

namespace wavg {

// A named tensor inside the flat vector, used to name the tensor in error messages.
struct TensorSpan {
  std::string name;
  int64_t offset = 0;  // elements, in the full flat vector
  int64_t numel = 0;
};

// One array of the bank's state, pointing into the bank (read to save, written to restore).
struct StateArray {
  std::string name;
  DType dtype;
  int64_t numel;
  void* data;
};

// Index of the first NaN/Inf among n elements of a floating dtype, or -1 (both cores on large data).
int64_t find_non_finite(DType dtype, const void* data, int64_t n);

class AveragerBank {
 public:
  // shard_length < 0: to the end of the vector.
  AveragerBank(int64_t numel, DType sample_dtype, int64_t shard_offset = 0,
               int64_t shard_length = -1);

  // Adds an averager (validated; names must be unique). Only before the first observe().
  int add(AveragerOptions options);

  // Names tensors in error messages (optional).
  void set_layout(std::vector<TensorSpan> layout) { layout_ = std::move(layout); }
  // Refuse non-finite samples (default true). The check reads the shard once before updating.
  void set_check_finite(bool on) { check_finite_ = on; }

  // True when at least one averager samples at `step`: callers skip staging a sample otherwise.
  bool wants(int64_t step) const;

  // Observes the model after `step` optimizer steps. `sample` points at the full flat vector
  // (numel elements of the sample dtype); only the shard is read. Steps must increase. A sample
  // with a non-finite value in the shard is refused (wavg::Error) and leaves the bank unchanged.
  void observe(int64_t step, const void* sample);

  int size() const { return int(slots_.size()); }
  int find(const std::string& name) const;  // -1 if absent
  const AveragerOptions& options(int i) const { return slots_.at(i).options; }
  const std::string& name(int i) const { return slots_.at(i).options.name; }
  int64_t samples(int i) const { return slots_.at(i).state.samples; }
  bool empty(int i) const { return slots_.at(i).state.samples == 0; }
  // LAWA: the window holds L samples; EMA, SWA: at least one sample.
  bool full(int i) const;
  int64_t last_step() const { return last_step_; }

  int64_t numel() const { return numel_; }
  int64_t shard_offset() const { return offset_; }
  int64_t shard_length() const { return length_; }
  DType sample_dtype() const { return dtype_; }
  // Bytes of state held (averages, sums and rings).
  int64_t state_bytes() const;

  // Writes the current average of averager i over the shard (shard_length elements of out_dtype,
  // a floating dtype). Throws wavg::Error if the averager is still empty.
  void average(int i, DType out_dtype, void* out) const;

  // Exact state for save/resume: counters as strings, arrays pointing into the bank. Restoring
  // requires a bank built with the same averagers, numel, dtype and shard (checked).
  std::map<std::string, std::string> state_meta() const;
  void restore_meta(const std::map<std::string, std::string>& meta);
  std::vector<StateArray> state_arrays();

 private:
  // A LAWA ring: its settings are derived from the windows that share it; count and cumsum are
  // state.
  struct Ring {
    int64_t every = 1;
    int64_t window_max = 0;  // L_max of its windows
    int64_t start = 0;       // smallest start among its windows
    int64_t count = 0;       // n, samples pushed so far
    std::vector<double> cumsum;  // (L_max + 1) × length: C_k in slot k mod (L_max + 1)
    int64_t slots() const { return window_max + 1; }
    double* at(int64_t k, int64_t length) { return cumsum.data() + (k % slots()) * length; }
    const double* at(int64_t k, int64_t length) const {
      return cumsum.data() + (k % slots()) * length;
    }
  };
  // What one averager has accumulated: saved and restored (state_meta, state_arrays) next to the
  // options that produced it. A LAWA window's values live in its ring.
  struct AveragerState {
    int64_t samples = 0;      // n, samples taken
    std::vector<float> ema;   // EMA: the average e_n (fp32), shard_length elements
    std::vector<double> sum;  // SWA: Σ x_k (fp64), shard_length elements
  };
  struct Slot {
    AveragerOptions options;  // as added (validated, named); never changes
    int ring = -1;            // LAWA: index into rings_
    AveragerState state;
  };

  void allocate();
  void rebase(Ring& r);
  void check_finite(int64_t step, const void* shard) const;
  std::string where(int64_t index) const;

  int64_t numel_, offset_, length_;
  DType dtype_;
  bool check_finite_ = true;
  bool allocated_ = false;
  int64_t last_step_ = -1;
  std::vector<Slot> slots_;
  std::vector<Ring> rings_;
  std::vector<TensorSpan> layout_;
};

}  // namespace wavg
