// TrainOptimizer's AdamW and gradient clipping by global norm against PyTorch itself (python3-torch):
// tests/optim_reference.py runs torch.optim.AdamW, with torch.nn.utils.clip_grad_norm_ before each
// step, on the same parameters, gradients and learning rates in float64 and prints the parameters
// after every step; each of TrainOptimizer's steps must match them.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "wavg/torch/optim.h"

namespace {

std::vector<std::vector<double>> run_reference(double clip) {
  const std::string cmd = std::string(WAVG_PYTHON) + " " + WAVG_SOURCE_DIR +
                          "/tests/optim_reference.py " + std::to_string(clip);
  std::FILE* f = ::popen(cmd.c_str(), "r");
  EXPECT_NE(f, nullptr);
  std::string out;
  char buf[4096];
  while (f && std::fgets(buf, sizeof buf, f)) out += buf;
  EXPECT_EQ(f ? ::pclose(f) : -1, 0) << cmd;
  std::vector<std::vector<double>> steps;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream in(line);
    steps.emplace_back();
    for (double v; in >> v;) steps.back().push_back(v);
  }
  return steps;
}

// Each trajectory computed once (python3 with torch starts slowly).
const std::vector<std::vector<double>>& reference(double clip) {
  static std::map<double, std::vector<std::vector<double>>> cache;
  auto it = cache.find(clip);
  if (it == cache.end()) it = cache.emplace(clip, run_reference(clip)).first;
  return it->second;
}

void check_against_torch(double clip) {
  const std::vector<std::vector<double>>& ref = reference(clip);
  ASSERT_EQ(ref.size(), 12u);
  std::vector<torch::Tensor> params = {torch::empty({3, 4}, torch::kDouble),
                                       torch::empty({5}, torch::kDouble)};
  for (int i = 0; i < 12; ++i) params[0].view(-1)[i] = std::cos(0.1 * i);
  for (int i = 0; i < 5; ++i) params[1][i] = std::cos(0.1 * i + 2.0);
  for (auto& p : params) p.set_requires_grad(true);
  wavg::OptimizerConfig c;
  c.name = "adamw";
  c.lr = 0.01;
  c.beta1 = 0.9;
  c.beta2 = 0.95;
  c.eps = 1e-8;
  c.weight_decay = 0.1;
  c.clip_norm = clip;
  wavg::TrainOptimizer opt(c, params);
  for (int t = 0; t < 12; ++t) {
    const double scale = t % 2 == 0 ? 3.0 : 0.1;
    int k = 0;
    for (auto& p : params) {
      torch::Tensor g = torch::empty_like(p).view(-1);
      for (int64_t i = 0; i < p.numel(); ++i)
        g[i] = scale * std::sin(0.37 * (t + 1) * double(k + i + 1));
      p.mutable_grad() = g.view(p.sizes()).detach();
      k += int(p.numel());
    }
    opt.step(0.01 * (1 + t % 3));
    std::vector<double> got;
    for (auto& p : params)
      for (int64_t i = 0; i < p.numel(); ++i) got.push_back(p.detach().view(-1)[i].item<double>());
    ASSERT_EQ(got.size(), ref[size_t(t)].size());
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_NEAR(got[i], ref[size_t(t)][i], 1e-12) << "step " << t + 1 << ", element " << i;
  }
}

TEST(AdamW, MatchesTorchOptimAdamWStepByStep) { check_against_torch(0.0); }
TEST(AdamW, ClippingMatchesClipGradNormStepByStep) { check_against_torch(1.0); }

TEST(AdamW, ClippingChangesTheTrajectory) {
  // The reference itself differs with and without clipping (the gradients of even steps are
  // clipped), so the two tests above could not both pass with clipping ignored.
  const auto& a = reference(0.0);
  const auto& b = reference(1.0);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_GT(std::abs(a[0][0] - b[0][0]) + std::abs(a.back()[0] - b.back()[0]), 1e-6);
}

TEST(AdamW, ClipNormIsValidated) {
  wavg::OptimizerConfig c;
  c.clip_norm = -1;
  EXPECT_THROW(wavg::validate(c), std::exception);
  c.clip_norm = NAN;
  EXPECT_THROW(wavg::validate(c), std::exception);
}

}  // namespace
