// Averaging-kernel benchmark: EMA update throughput against a plain fused loop that moves the same
// bytes (the machine's memory-bandwidth reference), LAWA's ring of samples against the previous
// ring of fp64 cumulative sums (side by side), LAWA readout cost, LAWA update time against L, and the
// step of a bank of 20 averagers at ν = 1 (10 LAWA windows, 10 EMAs; and with 5 EXP windows more,
// which share the LAWA ring) against a plain loop that does the same work.
// Prints ratios measured side by side in one run. Usage: bench_core [numel]
#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>

#include "bench_util.h"
#include "wavg/core/bank.h"
#include "wavg/core/parallel.h"

using namespace wavg;
using wavg::bench::interleaved;

int main(int argc, char** argv) {
  const int64_t n = argc > 1 ? std::atoll(argv[1]) : (int64_t(1) << 23);
  const int rounds = 15;
  std::printf("averaging kernels: N = %lld fp32 parameters, %d threads, median of %d rounds\n",
              (long long)n, detail::averaging_threads(), rounds);
  std::vector<float> x(n);
  std::mt19937 rng(1);
  for (auto& v : x) v = float(rng() % 1000) / 1000.0f;

  // EMA: reads x (4 B) and reads+writes the fp32 average (8 B) per parameter.
  {
    AveragerBank checked(n, DType::kF32), unchecked(n, DType::kF32);
    checked.add(EmaOptions(0.99));
    unchecked.add(EmaOptions(0.99));
    unchecked.set_check_finite(false);
    std::vector<float> ref(n, 0.0f);
    int64_t s1 = 0, s2 = 0;
    checked.observe(s1++, x.data());
    unchecked.observe(s2++, x.data());
    const auto t = interleaved(
        {[&] {
           detail::parallel_for(n, [&](int64_t b, int64_t e) {
             float* __restrict y = ref.data();
             const float* __restrict xx = x.data();
             for (int64_t i = b; i < e; ++i) y[i] = 0.99f * y[i] + 0.01f * xx[i];
           });
         },
         [&] { unchecked.observe(s2++, x.data()); }, [&] { checked.observe(s1++, x.data()); }},
        rounds);
    std::printf("EMA  update: reference %.2f Gparam/s (%.1f GB/s) | wavg %.2f Gparam/s, ratio %.2f"
                " | with non-finite check %.2f Gparam/s, ratio %.2f   (target >= 0.8)\n",
                n / t[0] / 1e9, 12.0 * n / t[0] / 1e9, n / t[1] / 1e9, t[0] / t[1], n / t[2] / 1e9,
                t[0] / t[2]);
  }

  // LAWA: one ring per ν serves all windows. Today's ring holds the samples themselves: a step
  // copies x into the ring (reads 4 B, writes 4 B per parameter), with the non-finite check riding
  // that copy. The previous design kept L_max + 1 fp64 cumulative sums: C_{n+1} = C_n + x (reads
  // 4 + 8 B, writes 8 B) — run here side by side as the reference.
  {
    const int64_t window = 20;
    AveragerBank checked(n, DType::kF32), unchecked(n, DType::kF32);
    checked.add(LawaOptions(window));
    unchecked.add(LawaOptions(window));
    unchecked.set_check_finite(false);
    std::vector<double> ring(size_t(n) * (window + 1), 0.5);
    int64_t s1 = 0, s2 = 0, s3 = 0;
    for (int64_t k = 0; k < window; ++k) {
      checked.observe(s1++, x.data());
      unchecked.observe(s2++, x.data());
    }
    const auto t = interleaved(
        {[&] {
           const double* from = ring.data() + size_t(s3 % (window + 1)) * n;
           double* to = ring.data() + size_t((s3 + 1) % (window + 1)) * n;
           ++s3;
           detail::parallel_for(n, [&](int64_t b, int64_t e) {
             const double* __restrict f = from;
             double* __restrict o = to;
             const float* __restrict xx = x.data();
             for (int64_t i = b; i < e; ++i) o[i] = f[i] + double(xx[i]);
           });
         },
         [&] { unchecked.observe(s2++, x.data()); }, [&] { checked.observe(s1++, x.data()); }},
        rounds);
    std::printf("LAWA update (L = %lld): previous design, fp64 cumulative-sum ring, %.2f Gparam/s, "
                "%.0f B/param | ring of samples %.2f Gparam/s, %.2fx | with non-finite check "
                "%.2f Gparam/s, %.2fx, %.0f B/param   (target: >= 1x, <= ~90 B/param)\n",
                (long long)window, n / t[0] / 1e9, double(window + 1) * 8, n / t[1] / 1e9,
                t[0] / t[1], n / t[2] / 1e9, t[0] / t[2], checked.state_bytes_per_element());

    // Reading a window (evaluation, swap, save): an exact fp64 sum of its L samples, O(N·L),
    // against copying one fp32 average out (what an EMA readout costs).
    std::vector<float> out(n);
    const auto r = interleaved(
        {[&] {
           detail::parallel_for(n, [&](int64_t b, int64_t e) {
             std::copy(x.data() + b, x.data() + e, out.data() + b);
           });
         },
         [&] { unchecked.average(0, DType::kF32, out.data()); }},
        5);
    std::printf("LAWA readout (L = %lld): %.1f ms = %.1f x an fp32 copy of the model (%.1f ms), "
                "paid per evaluation, not per step\n",
                (long long)window, r[1] * 1e3, r[1] / r[0], r[0] * 1e3);
  }

  // LAWA update time against L at fixed N: O(N) whatever L is.
  {
    const std::vector<int64_t> windows = {2, 5, 10, 20, 50};
    const int64_t m = std::min<int64_t>(n, int64_t(1) << 21);  // rings of 50 samples stay small
    std::vector<std::unique_ptr<AveragerBank>> banks;
    std::vector<int64_t> steps(windows.size(), 0);
    std::vector<std::function<void()>> variants;
    for (size_t k = 0; k < windows.size(); ++k) {
      banks.push_back(std::make_unique<AveragerBank>(m, DType::kF32));
      banks.back()->add(LawaOptions(windows[k]));
      banks.back()->set_check_finite(false);
      for (int64_t i = 0; i < windows[k]; ++i) banks.back()->observe(steps[k]++, x.data());
      variants.push_back([&, k] { banks[k]->observe(steps[k]++, x.data()); });
    }
    const auto t = interleaved(variants, rounds);
    std::printf("LAWA time vs window (N = %lld):", (long long)m);
    for (size_t k = 0; k < windows.size(); ++k)
      std::printf(" L=%lld %.2f ms;", (long long)windows[k], t[k] * 1e3);
    std::printf(" L=50 / L=2 = %.2f   (target <= 1.3)\n", t.back() / t.front());
  }

  // A bank of 20 averagers at ν = 1, as bench_train's (LAWA L = 2 … 50, EMA β = 0.5 … 0.999), the
  // sample checked by the caller (as ModelAverager does while staging): one step reads x once, updates
  // 10 fp32 EMAs and copies x into the ring. The reference does the same in one plain loop. Five EXP
  // windows over the same ν join the LAWA ring: they should cost nothing per step.
  {
    const int64_t m = std::min<int64_t>(n, int64_t(1) << 21);
    const std::vector<double> betas = {0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999};
    AveragerBank bank20(m, DType::kF32), bank25(m, DType::kF32);
    for (AveragerBank* b : {&bank20, &bank25}) {
      for (int64_t w : {2, 5, 8, 10, 15, 20, 25, 30, 40, 50}) b->add(LawaOptions(w));
      for (double beta : betas) b->add(EmaOptions(beta));
      b->set_check_finite(false);
    }
#ifndef WAVG_BENCH_WITHOUT_EXP  // defined by bench/bank_ab.sh when built against a tree without EXP
    for (int64_t w : {5, 10, 20, 30, 50}) bank25.add(LawaExpOptions(w, 0.1));
#endif
    std::vector<float> ema(size_t(m) * betas.size(), 0.0f), ring(size_t(m) * 51, 0.0f);
    int64_t s1 = 0, s2 = 0, s3 = 0;
    for (int64_t k = 0; k < 60; ++k) bank20.observe(s1++, x.data()), bank25.observe(s2++, x.data());
    const auto t = interleaved(
        {[&] {
           float* slot = ring.data() + size_t(s3++ % 51) * size_t(m);
           detail::parallel_for(m, [&](int64_t b, int64_t e) {
             for (int64_t c = b; c < e; c += 4096) {
               const int64_t ce = std::min(e, c + 4096);
               for (size_t a = 0; a < betas.size(); ++a) {
                 float* __restrict y = ema.data() + a * size_t(m);
                 const float beta = float(betas[a]), alpha = float(1 - betas[a]);
                 for (int64_t i = c; i < ce; ++i) y[i] = beta * y[i] + alpha * x[size_t(i)];
               }
               std::copy(x.data() + c, x.data() + ce, slot + c);
             }
           });
         },
         [&] { bank20.observe(s1++, x.data()); }, [&] { bank25.observe(s2++, x.data()); }},
        rounds);
    std::printf("bank step, 20 averagers at nu=1 (N = %lld): plain loop %.2f ms | bank %.2f ms, "
                "ratio %.2f | + 5 EXP windows on the same ring %.2f ms, ratio %.2f   "
                "(target >= 0.8)\n",
                (long long)m, t[0] * 1e3, t[1] * 1e3, t[0] / t[1], t[2] * 1e3, t[0] / t[2]);
  }
  // Staging a sample for the bank (ModelAverager::observe): before issue 14 §5, a copy and then a
  // second pass that checks for NaN/Inf (find_non_finite); now the check rides the copy
  // (copy_find_non_finite). Measured at the averaged sizes of fmnist_cnn and text_lm, against the
  // bank's own step of 20 averagers at ν = 1 over the same elements (the whole averaging step is
  // staging + bank step).
  for (const int64_t m : {int64_t(106000), int64_t(461000), std::min<int64_t>(n, 1 << 21)}) {
    std::vector<float> stage(static_cast<size_t>(m));
    AveragerBank bank(m, DType::kF32);
    for (int64_t w : {2, 5, 8, 10, 15, 20, 25, 30, 40, 50}) bank.add(LawaOptions(w));
    for (double b : {0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999})
      bank.add(EmaOptions(b));
    bank.set_check_finite(false);
    int64_t s = 0;
    for (int64_t k = 0; k < 60; ++k) bank.observe(s++, x.data());
    int64_t bad = 0;
    const int reps = int(std::max<int64_t>(1, (int64_t(1) << 22) / m));  // ~4M elements a sample
    const auto t = interleaved(
        {[&] {
           for (int r = 0; r < reps; ++r) {
             std::memcpy(stage.data(), x.data(), size_t(m) * sizeof(float));
             bad += find_non_finite(DType::kF32, stage.data(), m) >= 0;
           }
         },
         [&] {
           for (int r = 0; r < reps; ++r)
             bad += copy_find_non_finite(DType::kF32, x.data(), stage.data(), m) >= 0;
         },
         [&] {
           for (int r = 0; r < reps; ++r) bank.observe(s++, x.data());
         }},
        rounds);
    const double before = (t[0] + t[2]) / reps, after = (t[1] + t[2]) / reps;
    std::printf("staging + bank step of 20 averagers at nu=1 (N = %lld): copy then check %.3f ms, "
                "check riding the copy %.3f ms (%.2fx), bank step %.3f ms | averaging step before "
                "%.3f ms, now %.3f ms: now/before %.3f%s\n",
                (long long)m, t[0] / reps * 1e3, t[1] / reps * 1e3, t[0] / t[1], t[2] / reps * 1e3,
                before * 1e3, after * 1e3, after / before, bad ? " (non-finite?)" : "");
  }
  return 0;
}
