// The validation metrics of the AlgoPerf mirrors whose metric is not a mean of a per-example loss,
// computed exactly as the benchmarks' own evaluators do: average precision as OGB's ogbg-molpcba
// Evaluator (scikit-learn's average_precision_score per task), SSIM as fastMRI's evaluate.py
// (scikit-image's structural_similarity). Internal to workloads/; tests/workload_metrics_test.cpp
// checks them against scikit-learn and scikit-image.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace wavg::detail {

// Average precision of one binary task, as sklearn.metrics.average_precision_score (scikit-learn
// 1.2, _binary_uninterpolated_average_precision): over the distinct score thresholds t_k in
// decreasing order, AP = sum_k (R_k - R_{k-1}) * P_k, with precision P_k and recall R_k of the
// examples scoring >= t_k (tied scores form one threshold: no interpolation, no tie-breaking by
// order). `scored` holds (score, is_positive); it needs at least one positive. A NaN score throws
// wavg::Error (scikit-learn refuses NaN input too).
double average_precision(std::vector<std::pair<float, bool>> scored);

// OGB's Evaluator for ogbg-mol* with metric "ap" (ogb/graphproppred/evaluate.py, eval_ap): for each
// task, the average precision over the examples whose label is not NaN, when they hold both a
// positive and a negative; the mean over those tasks. y_true and y_score are row-major (examples,
// tasks); labels are 0, 1 or NaN (missing). No task with both classes throws wavg::Error, as OGB
// raises ("No positively labeled data available").
double ogb_mean_average_precision(const std::vector<float>& y_true, const std::vector<float>& y_score,
                                  int64_t tasks);

// SSIM of each image, as fastMRI's evaluate.py computes it with scikit-image's
// structural_similarity(gt, pred, data_range=gt.max()) at its defaults — a 7 x 7 uniform window,
// K1 = 0.01, K2 = 0.03, sample covariances (N/(N-1), N = 49) — the mean of the SSIM map over the
// pixels whose window lies inside the image (skimage crops (7-1)/2 pixels per side). Wang et al.
// 2004, eq. (13): SSIM = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2)),
// C1 = (K1 L)^2, C2 = (K2 L)^2, L the data range. pred and gt: (N, H, W) with H, W >= 7, any
// floating dtype; computed in float64; returns (N) float64. Each gt image needs a positive maximum.
at::Tensor ssim_per_image(const at::Tensor& pred, const at::Tensor& gt);

}  // namespace wavg::detail
