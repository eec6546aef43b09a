// The higher-is-better AlgoPerf mirrors (graph_mol, mri_recon): their metrics against the
// references the benchmarks use — OGB's Evaluator (scikit-learn's average_precision_score per task)
// and fastMRI's evaluate.py (scikit-image's structural_similarity), run by tests/metric_reference.py
// on the same inputs — including ties, tasks with one class only, missing labels and images at the
// window's minimum size; then a short training run of each workload (loss falls, metric improves,
// batches are pure functions of (seed, step)) and their data-parallel pieces (the ranks' losses
// and gathered rows give the one-process loss and metric).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "wavg/core/error.h"
#include "wavg/torch/optim.h"
#include "wavg/workloads/metrics.h"
#include "wavg/workloads/workload.h"

namespace {

using wavg::detail::average_precision;
using wavg::detail::ogb_mean_average_precision;
using wavg::detail::ssim_per_image;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

struct ApCase {
  int64_t tasks;
  std::vector<float> y_true, y_score;  // row-major (examples, tasks)
};
struct SsimCase {
  torch::Tensor gt, pred;  // (N, H, W) float
};

std::string json_floats(const float* p, int64_t n) {
  std::string s = "[";
  char buf[32];
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(p[i])) {
      s += "NaN";
    } else {
      std::snprintf(buf, sizeof buf, "%.9g", double(p[i]));  // float32 round-trips exactly
      s += buf;
    }
    s += i + 1 < n ? "," : "";
  }
  return s + "]";
}

// Runs tests/metric_reference.py on the cases; one output line per case.
std::vector<std::string> reference(const std::vector<ApCase>& ap, const std::vector<SsimCase>& ssim) {
  std::string js = "{\"ap\": [";
  for (size_t i = 0; i < ap.size(); ++i)
    js += std::string(i ? "," : "") + "{\"tasks\": " + std::to_string(ap[i].tasks) +
          ", \"y_true\": " + json_floats(ap[i].y_true.data(), int64_t(ap[i].y_true.size())) +
          ", \"y_score\": " + json_floats(ap[i].y_score.data(), int64_t(ap[i].y_score.size())) + "}";
  js += "], \"ssim\": [";
  for (size_t i = 0; i < ssim.size(); ++i) {
    const torch::Tensor gt = ssim[i].gt.contiguous(), pred = ssim[i].pred.contiguous();
    js += std::string(i ? "," : "") + "{\"n\": " + std::to_string(gt.size(0)) +
          ", \"h\": " + std::to_string(gt.size(1)) + ", \"w\": " + std::to_string(gt.size(2)) +
          ", \"gt\": " + json_floats(gt.data_ptr<float>(), gt.numel()) +
          ", \"pred\": " + json_floats(pred.data_ptr<float>(), pred.numel()) + "}";
  }
  js += "]}";
  const std::string path =
      (std::filesystem::temp_directory_path() / ("wavg_metric_cases_" + std::to_string(::getpid()) + ".json"))
          .string();
  std::ofstream(path) << js;
  const std::string cmd =
      std::string(WAVG_PYTHON) + " " + WAVG_SOURCE_DIR + "/tests/metric_reference.py " + path;
  std::FILE* f = ::popen(cmd.c_str(), "r");
  EXPECT_NE(f, nullptr);
  std::string out;
  char buf[65536];
  while (f && std::fgets(buf, sizeof buf, f)) out += buf;
  EXPECT_EQ(f ? ::pclose(f) : -1, 0) << cmd;
  std::filesystem::remove(path);
  std::vector<std::string> lines;
  std::istringstream in(out);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

// Random labels (positive rate `rate`, a fraction `missing` NaN) and scores that lean towards them;
// `levels` > 0 rounds the scores to that many distinct values (ties).
ApCase random_ap(std::mt19937_64& rng, int64_t n, int64_t tasks, double rate, double missing,
                 int levels) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::normal_distribution<double> g(0.0, 1.0);
  ApCase c{tasks, {}, {}};
  for (int64_t i = 0; i < n * tasks; ++i) {
    const bool pos = u(rng) < rate;
    double s = g(rng) + (pos ? 1.0 : 0.0);
    if (levels > 0) s = std::round(s * levels / 4.0);
    c.y_true.push_back(u(rng) < missing ? kNaN : float(pos));
    c.y_score.push_back(float(s));
  }
  return c;
}

std::vector<ApCase> ap_cases() {
  std::mt19937_64 rng(11);
  std::vector<ApCase> cases;
  cases.push_back({1, {1, 0, 1, 0}, {0.9f, 0.8f, 0.7f, 0.1f}});  // by hand: 1/2 + 1/2 * 2/3
  cases.push_back(random_ap(rng, 300, 5, 0.2, 0.15, 0));          // distinct scores, missing labels
  cases.push_back(random_ap(rng, 400, 4, 0.3, 0.0, 3));           // many ties
  cases.push_back(random_ap(rng, 5000, 12, 0.1, 0.1, 0));         // a validation set's size
  cases.push_back({1, {0, 1, 1, 0, 1}, {0.5f, 0.5f, 0.5f, 0.5f, 0.5f}});  // one threshold: the rate
  cases.push_back({1, {1, 1, 0, 0, 0}, {5, 4, 3, 2, 1}});         // perfect ranking: 1
  cases.push_back({1, {0, 0, 0, 1, 1}, {5, 4, 3, 2, 1}});         // reversed
  cases.push_back({1, {1, 0}, {-1e30f, 1e30f}});                  // two examples, extreme scores
  // Tasks with one class only (all 0, all 1, one label left) are skipped; task 3 counts.
  ApCase skip = random_ap(rng, 50, 4, 0.4, 0.0, 0);
  for (int64_t i = 0; i < 50; ++i) {
    skip.y_true[size_t(i * 4 + 0)] = 0;
    skip.y_true[size_t(i * 4 + 1)] = i % 3 == 0 ? kNaN : 1.0f;
    skip.y_true[size_t(i * 4 + 2)] = i == 7 ? 0.0f : kNaN;
  }
  skip.y_true[3] = 1, skip.y_true[7] = 0;
  cases.push_back(skip);
  cases.push_back({2, {0, 1, kNaN, 0, 0, 1}, {1, 2, 3, 4, 5, 6}});  // task 0: no positive; task 1 counts
  cases.push_back({2, {0, 1, 0, 1, kNaN, 1}, {1, 2, 3, 4, 5, 6}});  // no task with both: OGB raises
  return cases;
}

std::vector<SsimCase> ssim_cases() {
  torch::manual_seed(5);
  std::vector<SsimCase> cases;
  // Fashion-MNIST-like: a dark background with an object, and a noisy reconstruction.
  torch::Tensor gt = torch::rand({4, 28, 28});
  gt.narrow(1, 0, 6).zero_();
  gt.narrow(2, 20, 8).mul_(0.1);
  cases.push_back({gt, gt + 0.1 * torch::randn({4, 28, 28})});
  cases.push_back({gt, gt.clone()});                        // identical: SSIM 1
  cases.push_back({gt, torch::zeros({4, 28, 28})});         // a blank reconstruction
  cases.push_back({gt, torch::full({4, 28, 28}, 0.5f)});    // a constant one
  const torch::Tensor small = torch::rand({3, 7, 7}) * 0.01;  // one window; a small data range
  cases.push_back({small, small - 0.005 * torch::rand({3, 7, 7})});  // negative predictions
  const torch::Tensor wide = torch::rand({2, 9, 13}).square();
  cases.push_back({wide, wide.flip(2)});  // not square
  return cases;
}

TEST(Metrics, AveragePrecisionByHand) {
  EXPECT_NEAR(average_precision({{0.9f, true}, {0.8f, false}, {0.7f, true}, {0.1f, false}}),
              0.5 + 0.5 * 2.0 / 3.0, 1e-15);
  EXPECT_DOUBLE_EQ(average_precision({{0.5f, true}, {0.5f, false}, {0.5f, false}}), 1.0 / 3.0);
  EXPECT_THROW(average_precision({{0.5f, false}}), wavg::Error);
  EXPECT_THROW(average_precision({{kNaN, true}, {0.5f, false}}), wavg::Error);
}

TEST(Metrics, AgreeWithScikitLearnAndScikitImage) {
  const std::vector<ApCase> ap = ap_cases();
  const std::vector<SsimCase> ssim = ssim_cases();
  const std::vector<std::string> ref = reference(ap, ssim);
  ASSERT_EQ(ref.size(), ap.size() + ssim.size());
  for (size_t i = 0; i < ap.size(); ++i) {
    if (ref[i] == "error") {
      EXPECT_THROW(ogb_mean_average_precision(ap[i].y_true, ap[i].y_score, ap[i].tasks), wavg::Error)
          << "AP case " << i;
      continue;
    }
    const double got = ogb_mean_average_precision(ap[i].y_true, ap[i].y_score, ap[i].tasks);
    EXPECT_NEAR(got, std::stod(ref[i]), 1e-12) << "AP case " << i;
  }
  for (size_t i = 0; i < ssim.size(); ++i) {
    const torch::Tensor got = ssim_per_image(ssim[i].pred, ssim[i].gt);
    std::istringstream in(ref[ap.size() + i]);
    std::vector<double> want;
    for (double v; in >> v;) want.push_back(v);
    ASSERT_EQ(int64_t(want.size()), got.size(0)) << "SSIM case " << i;
    for (size_t k = 0; k < want.size(); ++k)
      EXPECT_NEAR(got[int64_t(k)].item<double>(), want[k], 1e-12) << "SSIM case " << i << " image " << k;
  }
  EXPECT_NEAR(ssim_per_image(ssim[1].pred, ssim[1].gt).min().item<double>(), 1.0, 1e-12);
}

// ---- the workloads --------------------------------------------------------------------------------

struct Trained {
  std::vector<double> losses;
  wavg::Evaluation before, after;
};

Trained train(const std::string& name, int64_t batch, int64_t steps, double lr) {
  wavg::WorkloadOptions o;
  o.seed = 3;
  o.batch_size = batch;
  auto w = wavg::make_workload(name, o);
  wavg::OptimizerConfig c;
  c.name = "adamw";
  c.lr = lr;
  wavg::TrainOptimizer opt(c, w->model()->parameters());
  Trained t;
  t.before = w->evaluate(wavg::Split::kValidation);
  for (int64_t step = 0; step < steps; ++step) {
    opt.zero_grad();
    torch::Tensor loss = w->train_loss(step);
    loss.backward();
    opt.step(lr);
    t.losses.push_back(loss.item<double>());
  }
  t.after = w->evaluate(wavg::Split::kValidation);
  return t;
}

double mean(const std::vector<double>& v, size_t first, size_t n) {
  double s = 0;
  for (size_t i = first; i < first + n; ++i) s += v[i];
  return s / double(n);
}

class HigherIsBetter : public ::testing::TestWithParam<std::string> {};

TEST_P(HigherIsBetter, LossFallsMetricRises) {
  torch::set_num_threads(1);
  const std::string name = GetParam();
  EXPECT_FALSE(wavg::make_workload(name, {})->lower_is_better());
  const bool graph = name == "graph_mol";  // cheaper steps: more of them, larger batches
  const int64_t steps = graph ? 100 : 40;
  const Trained t = train(name, /*batch=*/graph ? 64 : 16, steps, /*lr=*/graph ? 1e-3 : 3e-3);
  EXPECT_LT(mean(t.losses, size_t(steps) - 10, 10), 0.85 * mean(t.losses, 0, 10))
      << name << ": training loss falls";
  EXPECT_LT(t.after.loss, t.before.loss) << name << ": validation loss falls";
  EXPECT_GT(t.after.value, t.before.value + 0.05) << name << ": the metric rises";
  EXPECT_TRUE(t.after.value > 0 && t.after.value <= 1) << t.after.value;
  std::printf("%s: validation %.4f -> %.4f after %d steps (loss %.4f -> %.4f)\n", name.c_str(),
              t.before.value, t.after.value, int(steps), t.before.loss, t.after.loss);
}

// A batch is a pure function of (seed, step): the loss of step 5 is the same whatever was drawn
// before, in a fresh workload of the same seed, and differs for another step or seed.
TEST_P(HigherIsBetter, BatchesArePureFunctionsOfSeedAndStep) {
  torch::set_num_threads(1);
  auto loss = [&](int64_t seed, std::vector<int64_t> steps) {
    auto w = wavg::make_workload(GetParam(), {seed, /*batch_size=*/16});
    double last = 0;
    for (int64_t s : steps) last = w->train_loss(s).item<double>();
    return last;
  };
  const double a = loss(1, {5});
  EXPECT_EQ(a, loss(1, {9, 2, 5}));
  EXPECT_EQ(a, loss(1, {5000, 5}));  // mri_recon: another epoch's permutation in between
  EXPECT_NE(a, loss(1, {6}));
  EXPECT_NE(a, loss(2, {5}));
}

// Data parallel: the ranks' losses average to the one-process loss of the global batch (so do their
// gradients), and the ranks' evaluations combine into the one-process metric — the sums for
// mri_recon's SSIM, the gathered rows for graph_mol's average precision (the same rows, bit for
// bit: ranks evaluate whole batches of the split).
TEST_P(HigherIsBetter, RanksCombineIntoTheOneProcessValues) {
  torch::set_num_threads(1);
  const std::string name = GetParam();
  auto one = wavg::make_workload(name, {/*seed=*/4, /*batch_size=*/30});
  const double loss = one->train_loss(2).item<double>();
  const wavg::Evaluation whole = one->evaluate(wavg::Split::kValidation);
  double rank_losses = 0, metric_sum = 0, loss_sum = 0, count = 0;
  std::vector<float> rows;
  for (int rank = 0; rank < 3; ++rank) {  // 30 molecules or images: 10 per rank
    auto w = wavg::make_workload(name, {/*seed=*/4, /*batch_size=*/30, rank, /*world=*/3});
    rank_losses += w->train_loss(2).item<double>() / 3;
    const wavg::Evaluation e = w->evaluate(wavg::Split::kValidation);
    metric_sum += e.metric_sum, loss_sum += e.loss_sum, count += e.count;
    rows.insert(rows.end(), e.rows.begin(), e.rows.end());
  }
  EXPECT_NEAR(rank_losses, loss, 1e-5 * loss);
  EXPECT_EQ(count, whole.count);
  EXPECT_NEAR(loss_sum / count, whole.loss, 1e-5 * whole.loss);
  if (one->metric_needs_all_rows()) {  // the same scores and labels bit for bit (NaN included)
    ASSERT_EQ(rows.size(), whole.rows.size());
    EXPECT_EQ(std::memcmp(rows.data(), whole.rows.data(), rows.size() * sizeof(float)), 0);
    EXPECT_EQ(one->metric_of_rows(rows), whole.value);
  } else {
    EXPECT_NEAR(metric_sum / count, whole.value, 1e-9);
    EXPECT_THROW(one->metric_of_rows(rows), wavg::Error);
  }
}

TEST(MriRecon, MissingDataNamesThePackage) {
  ::setenv("WAVG_FMNIST_DIR", "/nonexistent", 1);
  try {
    wavg::make_workload("mri_recon", {});
    ADD_FAILURE() << "no error without the data";
  } catch (const wavg::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("mri_recon: cannot open /nonexistent/"), std::string::npos) << m;
    EXPECT_NE(m.find("apt-get install dataset-fashion-mnist"), std::string::npos) << m;
  }
  ::unsetenv("WAVG_FMNIST_DIR");
}

INSTANTIATE_TEST_SUITE_P(Workloads, HigherIsBetter, ::testing::Values("graph_mol", "mri_recon"));

}  // namespace
