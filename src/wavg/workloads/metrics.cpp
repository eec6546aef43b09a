// Average precision (OGB's evaluator) and SSIM (fastMRI's), see metrics.h.
#include "wavg/workloads/metrics.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "wavg/core/error.h"

namespace wavg::detail {

double average_precision(std::vector<std::pair<float, bool>> scored) {
  for (const auto& [s, y] : scored)
    WAVG_CHECK(!std::isnan(s), "average precision: a score is NaN (the model diverged?)");
  std::sort(scored.begin(), scored.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  int64_t positives = 0;
  for (const auto& e : scored) positives += e.second;
  WAVG_CHECK(positives > 0, "average precision: no positive example");
  // One threshold per distinct score: the true and false positives at or above it.
  double ap = 0;
  int64_t tp = 0, seen = 0, tp_before = 0;
  for (size_t i = 0; i < scored.size(); ++i) {
    tp += scored[i].second;
    ++seen;
    if (i + 1 < scored.size() && scored[i + 1].first == scored[i].first) continue;
    const double recall_step = double(tp - tp_before) / double(positives);
    ap += recall_step * (double(tp) / double(seen));
    tp_before = tp;
  }
  return ap;
}

double ogb_mean_average_precision(const std::vector<float>& y_true, const std::vector<float>& y_score,
                                  int64_t tasks) {
  WAVG_CHECK(tasks > 0 && y_true.size() == y_score.size() && y_true.size() % size_t(tasks) == 0,
             "average precision: ", y_true.size(), " labels and ", y_score.size(),
             " scores do not form rows of ", tasks, " tasks");
  const size_t n = y_true.size() / size_t(tasks);
  double sum = 0;
  int64_t counted = 0;
  for (int64_t t = 0; t < tasks; ++t) {
    std::vector<std::pair<float, bool>> scored;
    int64_t pos = 0;
    for (size_t i = 0; i < n; ++i) {
      const float y = y_true[i * size_t(tasks) + size_t(t)];
      if (std::isnan(y)) continue;  // a missing label
      scored.emplace_back(y_score[i * size_t(tasks) + size_t(t)], y == 1.0f);
      pos += y == 1.0f;
    }
    if (pos == 0 || pos == int64_t(scored.size())) continue;  // one class only: OGB skips the task
    sum += average_precision(std::move(scored));
    ++counted;
  }
  WAVG_CHECK(counted > 0, "average precision: no task has both a positive and a negative label "
             "(OGB: 'No positively labeled data available')");
  return sum / double(counted);
}

at::Tensor ssim_per_image(const at::Tensor& pred, const at::Tensor& gt) {
  constexpr int64_t kWin = 7;
  constexpr double kK1 = 0.01, kK2 = 0.03, kCovNorm = double(kWin * kWin) / double(kWin * kWin - 1);
  TORCH_CHECK(pred.dim() == 3 && pred.sizes() == gt.sizes() && pred.size(1) >= kWin &&
                  pred.size(2) >= kWin,
              "ssim: images must be (N, H, W) with H, W >= 7 and equal shapes");
  const at::Tensor x = gt.to(torch::kDouble).unsqueeze(1), y = pred.to(torch::kDouble).unsqueeze(1);
  const at::Tensor range = std::get<0>(x.flatten(1).max(1)).view({-1, 1, 1, 1});
  const at::Tensor c1 = (kK1 * range).square(), c2 = (kK2 * range).square();
  // Window means over every 7 x 7 window inside the image: skimage's uniform_filter, cropped.
  auto mean = [&](const at::Tensor& t) { return torch::avg_pool2d(t, kWin, /*stride=*/1); };
  const at::Tensor ux = mean(x), uy = mean(y);
  const at::Tensor vx = kCovNorm * (mean(x * x) - ux * ux);
  const at::Tensor vy = kCovNorm * (mean(y * y) - uy * uy);
  const at::Tensor vxy = kCovNorm * (mean(x * y) - ux * uy);
  const at::Tensor s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2));
  return s.flatten(1).mean(1);
}

}  // namespace wavg::detail
