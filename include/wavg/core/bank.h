// AveragerBank: many averagers riding one training trajectory (DESIGN.md §2, "Banks").
//
// The bank sees the model as one flat vector of `numel` elements of one floating dtype (the sample).
// It may work on a contiguous shard [offset, offset + length) of that vector, so that a distributed
// trainer can give each process one shard. Each averager is an object of its kind (EMA, SWA, post-hoc
// EMA, LAWA, Kaddour's EXP; src/wavg/core/averager_kinds.h). At every observed step, one fused pass
// over the shard updates every averager that samples at that step:
//   EMA   e ← β·e + (1−β)·x                        (e₁ = x₁; fp32 state and arithmetic)
//   SWA   S ← S + x                                (fp64 running sum of all samples)
//   phema e_p ← β_t,p·e_p + (1−β_t,p)·x per profile (β_t,p = (1 − ν/t)^(γ_p+1); fp32, as EMA)
//   LAWA, EXP  ring[n mod (L_max+1)] ← x           (the sample itself, in its own dtype)
// Windowed averagers (LAWA and EXP) with the same ν share one ring holding their last L_max samples
// x_{n−L_max} … x_{n−1} in the sample dtype, plus one spare slot that receives the incoming sample
// (so that the non-finite check rides the copy and a refused sample leaves the ring unchanged):
// (L_max + 1)·s bytes per parameter, 84 B for L = 20 over fp32. A step writes one sample (s bytes
// per parameter) whatever the number of windows and their L. A window's value is computed when read
// (average(): evaluation, swap, save) by summing its last L samples in fp64 (EXP: each times its
// weight), oldest first, tile by tile: O(N·L) per readout, no running sum, no drift (exact unless an
// element's samples differ by ~2^25 in size).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
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
// Copies n elements of a floating dtype from src to dst (not overlapping) and returns the index of
// the first NaN/Inf among them, or -1: the check rides the copy, one read of the data. After a
// refusal (>= 0), dst's contents are unspecified.
int64_t copy_find_non_finite(DType dtype, const void* src, void* dst, int64_t n);

// Bytes of averager state per element of a shard for these averagers over samples of
// sample_dtype (the bank's layout; no allocation): what AveragerBank::state_bytes_per_element()
// reports once built, and what a run checks against the memory available before it starts.
double state_bytes_per_element(const std::vector<SchemeOptions>& averagers, DType sample_dtype);
// Samples of its ν an averager keeps in the ring its ν's windowed averagers share (LAWA and EXP: its
// window; 0 for the others). A ring holds the largest of them, plus one spare slot.
int64_t shared_ring_window(const SchemeOptions& o);

namespace detail {
class AveragerKind;
class SampleRing;
}  // namespace detail

class AveragerBank {
 public:
  // shard_length < 0: to the end of the vector.
  AveragerBank(int64_t numel, DType sample_dtype, int64_t shard_offset = 0,
               int64_t shard_length = -1);
  ~AveragerBank();
  AveragerBank(AveragerBank&&) noexcept;
  AveragerBank& operator=(AveragerBank&&) noexcept;

  // Adds an averager (an empty name becomes default_name(); names must be unique). Only before the
  // first observe().
  int add(SchemeOptions options);

  // Names tensors in error messages (optional).
  void set_layout(std::vector<TensorSpan> layout) { layout_ = std::move(layout); }
  // Refuse non-finite samples (default true). With a ring (LAWA or EXP windows) the check rides the
  // copy of the sample into the ring's spare slot; without one it reads the shard once before
  // updating.
  void set_check_finite(bool on) { check_finite_ = on; }

  // True when at least one averager samples at `step`: callers skip staging a sample otherwise.
  bool wants(int64_t step) const;

  // Observes the model after `step` optimizer steps. `sample` points at the full flat vector
  // (numel elements of the sample dtype); only the shard is read. Steps must increase. A sample
  // with a non-finite value in the shard is refused (wavg::Error) and leaves the bank unchanged.
  void observe(int64_t step, const void* sample);

  int size() const { return int(kinds_.size()); }
  int find(const std::string& name) const;  // -1 if absent
  const SchemeOptions& options(int i) const;
  const std::string& name(int i) const { return options(i).name(); }
  int64_t samples(int i) const;
  bool empty(int i) const { return samples(i) == 0; }
  // LAWA, EXP: the window holds L (k) samples; EMA, SWA, phema: at least one sample.
  bool full(int i) const;
  // Values an averager holds: its profiles for phema, 1 for the others.
  int profiles(int i) const;
  int64_t last_step() const { return last_step_; }

  int64_t numel() const { return numel_; }
  int64_t shard_offset() const { return offset_; }
  int64_t shard_length() const { return length_; }
  DType sample_dtype() const { return dtype_; }
  // Bytes of state held (averages, sums and rings), once allocated (at the first observe()).
  int64_t state_bytes() const;
  // The same, computed from the averagers whether or not allocated, per element of the shard.
  double state_bytes_per_element() const;

  // Writes the current average of averager i over the shard (shard_length elements of out_dtype,
  // a floating dtype): for phema, that of profile `profile` (0: the first). Throws wavg::Error if
  // the averager is still empty.
  void average(int i, DType out_dtype, void* out, int profile = 0) const;

  // Exact state for save/resume: counters as strings, arrays pointing into the bank. Restoring
  // requires a bank built with the same averagers, numel, dtype and shard (checked). The metadata
  // records kStateFormat as "bank.format"; states without it are format 1, written before LAWA
  // rings held samples (rings of L_max + 1 fp64 cumulative sums): restore_meta accepts them and
  // the caller converts each ring with restore_ring_from_cumulative_sums.
  static constexpr int kStateFormat = 2;
  std::map<std::string, std::string> state_meta() const;
  // Returns the state's format (1 or 2); throws wavg::Error naming any other. Every counter is
  // checked before the bank changes (an error leaves it as it was): each averager's samples in
  // [0, its sampled steps up to bank.last_step], each ring's count in [the largest sample count of
  // its windows, its sampled steps up to bank.last_step], bank.last_step >= -1; the error names
  // the field and its range.
  int restore_meta(const std::map<std::string, std::string>& meta);
  // The same checks without restoring anything; returns the format.
  int check_state_meta(const std::map<std::string, std::string>& meta);
  std::vector<StateArray> state_arrays();
  // Format 1 ring j: (L_max + 1)·shard_length fp64 cumulative sums C_k in slot k mod (L_max + 1),
  // C_k = x_0 + … + x_{k−1} up to a common offset. Its samples x_k = C_{k+1} − C_k are rounded to
  // the sample dtype into the ring (exact when the old sums were exact, as they are unless samples
  // differ in magnitude by about 2^29). Call after restore_meta.
  void restore_ring_from_cumulative_sums(int j, const double* cumsum);
  int64_t ring_count() const { return int64_t(rings_.size()); }

 private:
  void allocate();
  // restore_meta's checks (allocated): the counters it would restore, and the format.
  int check_meta(const std::map<std::string, std::string>& meta, std::vector<int64_t>* samples,
                 std::vector<int64_t>* counts, int64_t* last_step) const;
  // Throws the non-finite error for element i of the shard (at step).
  [[noreturn]] void refuse(int64_t step, const void* shard, int64_t i) const;
  void check_finite(int64_t step, const void* shard) const;
  std::string where(int64_t index) const;

  int64_t numel_, offset_, length_;
  DType dtype_;
  bool check_finite_ = true;
  bool allocated_ = false;
  int64_t last_step_ = -1;
  // One object per averager, in the order added (validated, named; options never change); and the
  // rings of the windowed ones, one per ν, in the order of their first window. Held by pointer so
  // that a moved bank keeps the kinds' links to their rings.
  std::vector<std::unique_ptr<detail::AveragerKind>> kinds_;
  std::vector<std::unique_ptr<detail::SampleRing>> rings_;
  std::vector<TensorSpan> layout_;
};

}  // namespace wavg
