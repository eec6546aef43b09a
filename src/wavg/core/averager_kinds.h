// The averager kinds of a bank (DESIGN.md §2), each its own class behind one interface. Internal to
// the bank: AveragerBank owns one AveragerKind per averager and one SampleRing per ν of windowed
// kinds, and runs every kind's step in one fused pass (bank.cpp):
//   EmaKind      e ← β·e + (1−β)·x                     (e₁ = x₁; fp32 state and arithmetic)
//   SwaKind      S ← S + x                             (fp64 running sum of all samples)
//   PhemaKind    e_p ← β_t,p·e_p + (1−β_t,p)·x per profile (β_t,p = (1 − ν/t)^(γ_p+1))
//   LawaKind     mean of the ring's last min(n, L) samples, read when needed
//   LawaExpKind  Σ (1−α)^(m−i)·x_{n−m+i} / Σ (1−α)^(m−i) over the ring's last m = min(n, k)
// A kind states what it adds to a step (plan: TileOps, run by the bank's fused kernel tile by tile
// so that the sample is read from memory once), how to read its value, and its state arrays.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "wavg/core/averager.h"
#include "wavg/core/bank.h"
#include "wavg/core/dtype.h"

namespace wavg::detail {

class SampleRing;

// One update of a step's fused pass over the shard: an fp32 EMA (ema set: e ← β·e + (1−β)·x, or
// e ← x when first) or an fp64 sum (sum set: S ← S + x).
struct TileOp {
  float* ema = nullptr;
  double* sum = nullptr;
  double beta = 0.0;
  bool first = false;
};

class AveragerKind {
 public:
  explicit AveragerKind(SchemeOptions options) : options_(std::move(options)) {}
  virtual ~AveragerKind() = default;
  AveragerKind(const AveragerKind&) = delete;
  AveragerKind& operator=(const AveragerKind&) = delete;

  const SchemeOptions& options() const { return options_; }
  bool samples_at(int64_t step) const { return wavg::samples_at(options_, step); }
  int64_t samples() const { return samples_; }  // n, samples taken
  void set_samples(int64_t n) { samples_ = n; }  // restoring a state
  void commit() { ++samples_; }                 // after a step's pass

  virtual int profiles() const { return 1; }
  virtual bool full() const { return samples_ > 0; }
  // Samples this kind reads from the shared ring of its ν (0: none).
  virtual int64_t ring_window() const { return 0; }
  virtual void attach(SampleRing* ring) {}
  // Bytes per shard element of the state it owns (a shared ring is counted by the bank).
  virtual double own_bytes_per_element() const = 0;

  // Allocates its state for a shard of `length` elements of `sample_dtype`.
  virtual void allocate(int64_t length, DType sample_dtype) { length_ = length; }
  // Its updates at a step where it samples (before commit()).
  virtual void plan(int64_t step, std::vector<TileOp>* ops) {}
  // Writes its value (profile `profile`) over the shard: length elements of out_dtype. Not empty.
  virtual void average(int profile, DType out_dtype, void* out) const = 0;
  // Its arrays of state, named prefix + ".ema" / ".sum"; and their bytes.
  virtual void arrays(const std::string& prefix, std::vector<StateArray>* out) {}
  virtual int64_t state_bytes() const { return 0; }

  // The spec's field after "name|scheme|window|beta|every|start" in a state file ("" when none),
  // and whether a recorded one is this kind's.
  virtual std::string spec_extra() const { return ""; }
  virtual bool same_extra(const std::string& recorded) const { return recorded == spec_extra(); }

 protected:
  SchemeOptions options_;
  int64_t samples_ = 0;
  int64_t length_ = 0;
};

// The kind of o's scheme, built from its typed options.
std::unique_ptr<AveragerKind> make_kind(const SchemeOptions& o);

}  // namespace wavg::detail
