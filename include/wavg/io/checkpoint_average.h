// Averages an ordered list of safetensors checkpoints into one file (`wavg average`): file i plays
// step i of DESIGN.md §2's sampling rule. Floating tensors are accumulated in fp64 as Σ w_i x_i with
// the averager's offline weights; non-floating tensors are copied from the newest file.
// Every file with a non-zero weight stays open and all of them are read together, chunk by chunk
// (pread, nothing mapped), while the output is written tile by tile: memory is a few tiles (an 8 MiB
// fp64 accumulator and two output buffers) whatever the checkpoint size and the number of files,
// and one file descriptor per weighted input is held (the soft limit is raised to the hard one).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "wavg/core/averager.h"
#include "wavg/core/dtype.h"

namespace wavg {

struct CheckpointAverageOptions {
  AveragerOptions averager;
  std::optional<DType> out_dtype;  // floating tensors' output dtype; default: each tensor's own
  bool check_finite = true;        // refuse NaN/Inf in an input
  bool saturate = false;  // a finite average out of out_dtype's range: clamp (else an error)
};

struct CheckpointAverageReport {
  std::vector<double> weights;  // per input file
  int64_t files_read = 0;       // files with non-zero weight
  int64_t tensors = 0;
  int64_t averaged_elements = 0;
};

// Validates every input header first (same names, shapes and dtypes as the newest file), then
// accumulates and writes `out` atomically. Throws wavg::Error naming the file and tensor.
CheckpointAverageReport average_checkpoints(const std::vector<std::string>& inputs,
                                            const std::string& out,
                                            const CheckpointAverageOptions& options);

}  // namespace wavg
