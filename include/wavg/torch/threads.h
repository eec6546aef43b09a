// Thread settings for training: LibTorch intra-op threads, OpenBLAS threads (found at run time, so
// any BLAS LibTorch was linked against works), and the averaging kernels' threads.
#pragma once

#include <string>

namespace wavg {

struct ThreadSettings {
  int intra_op = 0;   // LibTorch intra-op threads; 0: default
  int blas = 0;       // OpenBLAS threads; 0: default
  int averaging = 0;  // wavg averaging kernels; 0: default
};

// Defaults measured on the 2-core reference machine (docs/benchmarks.md): intra-op = all cores,
// OpenBLAS 1 (both busy oversubscribes: text_lm ran 2x slower), averaging = min(2, cores).
ThreadSettings default_threads();
// Keeps LibTorch's per-step buffers in glibc's heap instead of returning them to the kernel every
// step (a 30 % step-time difference measured on fmnist_cnn). Idempotent; apply_threads calls it.
void tune_allocator();
// Applies settings (and tune_allocator); zero fields take default_threads()'s value. Returns the
// settings in force.
ThreadSettings apply_threads(ThreadSettings requested);
std::string describe(const ThreadSettings& t);
// False when the BLAS in use offers no openblas_set_num_threads.
bool blas_threads_settable();

}  // namespace wavg
