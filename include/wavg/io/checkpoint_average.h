// Averages an ordered list of checkpoints (each a safetensors file, a sharded checkpoint's index, or
// a directory: CheckpointSet) into one (`wavg average`): checkpoint i plays step i of DESIGN.md §2's
// sampling rule. Floating tensors (F64/F32/F16/BF16, the four FP8 formats, C64 component-wise) are
// accumulated in fp64 as Σ w_i x_i with the averager's offline weights (times --weights,
// renormalised); integer and BOOL tensors are copied from the newest; microscaling dtypes (F4, F6_*,
// F8_E8M0) and FP8 tensors that come with scale tensors are refused (README "Averaging checkpoints").
// Every checkpoint with a non-zero weight stays open and all of them are read together, chunk by
// chunk (pread, nothing mapped), while the output is written tile by tile: memory is a few tiles (an
// 8 MiB fp64 accumulator and two output buffers) whatever the checkpoint size and the number of
// inputs, and one file descriptor per weighted shard is held (the soft limit is raised to the hard
// one). The output takes the newest input's form (checkpoint_output.h).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "wavg/core/averager.h"
#include "wavg/core/dtype.h"

namespace wavg {

struct CheckpointAverageOptions {
  SchemeOptions averager = SwaOptions();  // default: the uniform mean of every input
  // Averaged tensors' output dtype (floating or FP8; C64 stays C64); default: each tensor's own.
  std::optional<DType> out_dtype;
  bool check_finite = true;        // refuse NaN/Inf in an input
  bool saturate = false;  // a finite average out of out_dtype's range: clamp (else an error)
  // Per-input weights (--weights), one per input, >= 0, not all 0: input i's weight becomes
  // w_i = a_i g_i / Σ_j a_j g_j, with a_i the averager's offline weight and g_i the given one.
  // Only for averagers whose weights are uniform over the inputs they select (LAWA, SWA; for a
  // plain weighted mean of every input, SWA with every = 1, start = 0): refused with EMA.
  std::vector<double> weights;
  std::vector<std::string> strip_prefixes;  // removed from names before matching (--strip-prefix)
  std::optional<uint64_t> max_shard_size;   // bytes: re-shard the output (--max-shard-size)
  bool overwrite = false;                   // replace an existing output (--overwrite)
  // Called with (bytes written, bytes to write) as the output grows; never concurrently.
  std::function<void(uint64_t, uint64_t)> progress;
};

struct CheckpointAverageReport {
  std::vector<double> weights;  // per input checkpoint
  int64_t files_read = 0;       // checkpoints with non-zero weight
  int64_t shards_written = 0;   // 1 for a single-file output
  int64_t tensors = 0;
  int64_t averaged_elements = 0;
};

// Validates every input first (same keys, shapes and dtypes as the newest checkpoint), then
// accumulates and writes `out` atomically. Throws wavg::Error naming the file and tensor.
CheckpointAverageReport average_checkpoints(const std::vector<std::string>& inputs,
                                            const std::string& out,
                                            const CheckpointAverageOptions& options);

// The weights of the inputs: offline_weights(options.averager, count), times options.weights
// (validated) and renormalised.
std::vector<double> input_weights(const CheckpointAverageOptions& options, int64_t count);

}  // namespace wavg
