// A small persistent thread pool for the averaging kernels: parallel_for splits a range into
// contiguous blocks, one per thread, when the range is large enough to pay for the hand-off.
// Internal (not installed): wavg::detail.
#pragma once

#include <cstdint>
#include <functional>

namespace wavg::detail {

// Threads used by the averaging kernels (the caller counts as one). Default: min(2, hardware).
int averaging_threads();
// Sets the number of threads; 0 restores the default. Not thread-safe against running kernels.
void set_averaging_threads(int n);

// Elements below which a kernel runs on the calling thread only.
constexpr int64_t kParallelGrain = 1 << 16;

// Calls fn(begin, end) over disjoint blocks covering [0, n); blocks are multiples of `align`
// elements (except the last) so that kernels may assume aligned chunk starts.
void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t align = 64);

}  // namespace wavg::detail
