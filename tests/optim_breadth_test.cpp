// Shampoo, Lookahead and Schedule-Free AdamW (issue 13) against independent references
// (tests/optim_breadth_reference.py: numpy for Shampoo and Lookahead, the `schedulefree`
// package's AdamWScheduleFree on python3-torch for Schedule-Free, or a numpy transcription of it
// where the package is not installed), step by step in float64; each optimizer's state saved and
// loaded mid-run continues bit-identically; ModelAverager's sample source and parameter swap.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "wavg/core/error.h"
#include "wavg/torch/model_averager.h"
#include "wavg/torch/optim.h"
#include "wavg/torch/shampoo.h"

namespace {

using Rows = std::vector<std::vector<double>>;

Rows run_reference(const std::string& python, const std::string& mode) {
  const std::string cmd =
      python + " " + WAVG_SOURCE_DIR + "/tests/optim_breadth_reference.py " + mode;
  std::FILE* f = ::popen(cmd.c_str(), "r");
  EXPECT_NE(f, nullptr);
  std::string out;
  char buf[1 << 14];
  while (f && std::fgets(buf, sizeof buf, f)) out += buf;
  EXPECT_EQ(f ? ::pclose(f) : -1, 0) << cmd;
  Rows rows;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream in(line);
    rows.emplace_back();
    for (double v; in >> v;) rows.back().push_back(v);
  }
  return rows;
}

const Rows& reference(const std::string& mode) {
  static std::map<std::string, Rows> cache;
  auto it = cache.find(mode);
  if (it == cache.end())
    it = cache.emplace(mode, run_reference(mode == "schedule_free" ? WAVG_SF_PYTHON : WAVG_PYTHON,
                                           mode)).first;
  return it->second;
}

// The reference's problem: shapes, initial values, gradients and learning rates.
std::vector<torch::Tensor> initial_params() {
  std::vector<torch::Tensor> ps;
  int k = 0;
  for (std::vector<int64_t> shape : {std::vector<int64_t>{6, 5}, {3, 2, 2, 2}, {5}, {1, 7}}) {
    torch::Tensor p = torch::empty(shape, torch::kDouble);
    auto flat = p.view(-1);
    for (int64_t i = 0; i < p.numel(); ++i) flat[i] = std::cos(0.1 * double(k + i));
    k += int(p.numel());
    ps.push_back(p.set_requires_grad(true));
  }
  return ps;
}

void set_gradients(std::vector<torch::Tensor>& params, int t) {
  const double scale = t % 2 == 0 ? 3.0 : 0.1;
  int64_t k = 0;
  for (auto& p : params) {
    torch::Tensor g = torch::empty({p.numel()}, torch::kDouble);
    for (int64_t i = 0; i < p.numel(); ++i)
      g[i] = scale * std::sin(0.37 * (t + 1) * double(k + i + 1));
    p.mutable_grad() = (g.view(p.sizes()) + 0.3 * p.detach()).detach();
    k += p.numel();
  }
}

double lr_at(int t) { return 0.01 * (1 + t % 3); }

std::vector<double> flat(const std::vector<torch::Tensor>& ts) {
  std::vector<double> out;
  for (const auto& t : ts) {
    torch::Tensor c = t.detach().contiguous().view(-1);
    for (int64_t i = 0; i < c.numel(); ++i) out.push_back(c[i].item<double>());
  }
  return out;
}

void expect_near(const std::vector<double>& got, const std::vector<double>& want, double tol,
                 int step) {
  ASSERT_EQ(got.size(), want.size()) << "step " << step;
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], tol * (1 + std::abs(want[i]))) << "step " << step << ", element " << i;
}

wavg::OptimizerConfig shampoo_config() {
  wavg::OptimizerConfig c;
  c.name = "shampoo";
  c.beta1 = 0.9;
  c.beta2 = 0.95;
  c.eps = 1e-8;
  c.weight_decay = 0.1;
  c.shampoo_block_size = 4;  // (6, 5) is cut into 4 blocks; (3, 2, 2, 2) merges to (3, 4, 2)
  c.shampoo_precondition_frequency = 3;
  c.shampoo_start_step = 5;
  c.shampoo_eps = 1e-6;
  return c;
}

wavg::OptimizerConfig lookahead_config() {
  wavg::OptimizerConfig c;
  c.name = "adamw";
  c.beta1 = 0.9;
  c.beta2 = 0.95;
  c.weight_decay = 0.1;
  c.lookahead_k = 3;
  c.lookahead_alpha = 0.5;
  return c;
}

wavg::OptimizerConfig schedule_free_config() {
  wavg::OptimizerConfig c;
  c.name = "schedule_free_adamw";
  c.lr = 0.05;
  c.beta1 = 0.9;
  c.beta2 = 0.95;
  c.weight_decay = 0.1;
  return c;
}

// The package's warmup: lr·(k+1)/W for k < W (what the run's constant schedule with warmup gives).
double sf_lr_at(int t) { return t < 4 ? 0.05 * double(t + 1) / 4.0 : 0.05; }

Rows trajectory(const wavg::OptimizerConfig& c, int steps, double (*lr)(int), bool with_x) {
  std::vector<torch::Tensor> params = initial_params();
  wavg::TrainOptimizer opt(c, params);
  Rows rows;
  for (int t = 0; t < steps; ++t) {
    set_gradients(params, t);
    opt.step(lr(t));
    std::vector<double> row = flat(params);
    if (with_x) {
      const std::vector<double> x = flat(opt.eval_params());
      row.insert(row.end(), x.begin(), x.end());
    }
    rows.push_back(row);
  }
  return rows;
}

TEST(Shampoo, MergedShapesAsDistributedShampoo) {
  using V = std::vector<int64_t>;
  EXPECT_EQ(wavg::shampoo_merged_shape({3, 2, 2, 2}, 4), (V{3, 4, 2}));
  EXPECT_EQ(wavg::shampoo_merged_shape({1, 7}, 4), (V{7}));
  EXPECT_EQ(wavg::shampoo_merged_shape({32, 16, 3, 3}, 1024), (V{512, 9}));
  EXPECT_EQ(wavg::shampoo_merged_shape({1, 1}, 4), (V{1}));
}

TEST(Shampoo, MatchesNumpyReferenceStepByStep) {
  const Rows& ref = reference("shampoo");
  ASSERT_EQ(ref.size(), 30u);
  const Rows got = trajectory(shampoo_config(), 30, lr_at, false);
  for (size_t t = 0; t < got.size(); ++t) expect_near(got[t], ref[t], 1e-10, int(t) + 1);
}

TEST(Shampoo, PreconditioningChangesTheTrajectory) {
  // Without preconditioning (start after the run) only the grafted AdamW step is left: the steps
  // before the start match the reference, the last one does not, so the test above sees Shampoo.
  wavg::OptimizerConfig c = shampoo_config();
  c.shampoo_start_step = 1000;
  const Rows graft = trajectory(c, 30, lr_at, false);
  const Rows& ref = reference("shampoo");
  expect_near(graft[3], ref[3], 1e-10, 4);
  double diff = 0;
  for (size_t i = 0; i < graft.back().size(); ++i) diff += std::abs(graft.back()[i] - ref.back()[i]);
  EXPECT_GT(diff, 1e-2);
}

TEST(Lookahead, MatchesNumpyReferenceStepByStep) {
  const Rows& ref = reference("lookahead");
  ASSERT_EQ(ref.size(), 20u);
  const Rows got = trajectory(lookahead_config(), 20, lr_at, false);
  for (size_t t = 0; t < got.size(); ++t) expect_near(got[t], ref[t], 1e-12, int(t) + 1);
  wavg::OptimizerConfig plain = lookahead_config();
  plain.lookahead_k = 0;
  EXPECT_GT(std::abs(trajectory(plain, 20, lr_at, false).back()[0] - ref.back()[0]), 1e-4);
}

TEST(ScheduleFree, MatchesAdamWScheduleFreeStepByStep) {
  const Rows& ref = reference("schedule_free");
  ASSERT_EQ(ref.size(), 20u);
  const Rows got = trajectory(schedule_free_config(), 20, sf_lr_at, true);  // y, then x
  for (size_t t = 0; t < got.size(); ++t) expect_near(got[t], ref[t], 1e-12, int(t) + 1);
}

// Steps 0..steps-1 of `c`, the optimizer saved after `cut` steps and loaded into a fresh one over
// a copy of the parameters: parameters and evaluation points bit-identical to one run.
void check_exact_resume(const wavg::OptimizerConfig& c, int steps, int cut, double (*lr)(int)) {
  std::vector<torch::Tensor> a = initial_params();
  wavg::TrainOptimizer whole(c, a);
  std::vector<torch::Tensor> b = initial_params();
  auto first = std::make_unique<wavg::TrainOptimizer>(c, b);
  std::ostringstream saved;
  for (int t = 0; t < steps; ++t) {
    set_gradients(a, t);
    whole.step(lr(t));
    if (t >= cut) continue;
    set_gradients(b, t);
    first->step(lr(t));
    if (t + 1 == cut) torch::save(first->torch_optimizer(), saved);
  }
  std::vector<torch::Tensor> resumed_params;
  for (const auto& p : b) resumed_params.push_back(p.detach().clone().set_requires_grad(true));
  first.reset();  // nothing of the first optimizer survives but its saved bytes
  wavg::TrainOptimizer resumed(c, resumed_params);
  std::istringstream in(saved.str());
  torch::load(resumed.torch_optimizer(), in);
  for (int t = cut; t < steps; ++t) {
    set_gradients(resumed_params, t);
    resumed.step(lr(t));
  }
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::equal(a[i], resumed_params[i])) << c.name << ": parameter " << i;
    EXPECT_TRUE(torch::equal(whole.eval_params()[i], resumed.eval_params()[i]))
        << c.name << ": evaluation point " << i;
  }
}

TEST(ExactResume, Shampoo) { check_exact_resume(shampoo_config(), 14, 7, lr_at); }
TEST(ExactResume, LookaheadMidCycle) { check_exact_resume(lookahead_config(), 14, 7, lr_at); }
TEST(ExactResume, ScheduleFree) { check_exact_resume(schedule_free_config(), 14, 7, sf_lr_at); }

TEST(Validation, OneLineErrorsNameTheValue) {
  auto message = [](wavg::OptimizerConfig c) {
    try {
      wavg::validate(c);
    } catch (const wavg::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  wavg::OptimizerConfig c = shampoo_config();
  c.shampoo_block_size = 1;
  EXPECT_NE(message(c).find("shampoo_block_size must be >= 2, got 1"), std::string::npos);
  c = lookahead_config();
  c.lookahead_alpha = 1.5;
  EXPECT_NE(message(c).find("lookahead_alpha must be in (0, 1], got 1.5"), std::string::npos);
  c = schedule_free_config();
  c.lookahead_k = 2;
  EXPECT_NE(message(c).find("cannot wrap schedule_free_adamw"), std::string::npos);
  c.lookahead_k = 0;
  EXPECT_EQ(message(c), "");
}

// The averagers sample what the sample source gives, not the module; swap_in_params puts given
// values into the module and restores it exactly; no sample is taken during that swap.
TEST(ModelAverager, SamplesFromTheSampleSource) {
  torch::manual_seed(0);
  auto lin = torch::nn::Linear(3, 2);
  auto module = std::shared_ptr<torch::nn::Module>(lin.ptr());
  std::vector<torch::Tensor> source;
  for (const auto& p : module->parameters()) source.push_back(torch::randn_like(p));
  wavg::ModelAverager avg(module, {wavg::EmaOptions(/*beta=*/0.0)});  // β = 0: the last sample
  avg.set_sample_source([&] { return source; });
  avg.observe(0);
  std::vector<torch::Tensor> before;
  for (const auto& p : module->parameters()) before.push_back(p.detach().clone());
  {
    wavg::EvalSwap swap = avg.swap_in(0);
    size_t k = 0;
    for (const auto& p : module->parameters()) EXPECT_TRUE(torch::equal(p, source[k++]));
  }
  {
    wavg::EvalSwap swap = avg.swap_in_params(source, nullptr, 1);
    size_t k = 0;
    for (const auto& p : module->parameters()) EXPECT_TRUE(torch::equal(p, source[k++]));
    EXPECT_THROW(avg.observe(1), wavg::Error);
    EXPECT_THROW(avg.swap_in(0), wavg::Error);
  }
  size_t k = 0;
  for (const auto& p : module->parameters()) EXPECT_TRUE(torch::equal(p, before[k++]));
}

}  // namespace
