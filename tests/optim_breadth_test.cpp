// Shampoo, Lookahead and Schedule-Free AdamW (issue 13) against independent references, step by
// step in float64: Shampoo against Meta's Distributed Shampoo (facebookresearch/optimizers at a
// pinned commit), whose trajectories tests/gen_shampoo_reference.py committed to
// tests/data/shampoo_reference.json (the option mapping is written out there); Lookahead against
// numpy (tests/optim_breadth_reference.py); Schedule-Free against the `schedulefree` package's
// AdamWScheduleFree on python3-torch (or a numpy transcription of it where the package is not
// installed). Each optimizer's state saved and loaded mid-run continues bit-identically;
// ModelAverager's sample source and parameter swap.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
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
    it = cache
             .emplace(mode,
                      run_reference(mode == "schedule_free" ? WAVG_SF_PYTHON : WAVG_PYTHON, mode))
             .first;
  return it->second;
}

// The references' problem: shapes, initial values, gradients and learning rates.
using Shapes = std::vector<std::vector<int64_t>>;
const Shapes kShapes = {{6, 5}, {3, 2, 2, 2}, {5}, {1, 7}};

std::vector<torch::Tensor> initial_params(const Shapes& shapes = kShapes) {
  std::vector<torch::Tensor> ps;
  int k = 0;
  for (const std::vector<int64_t>& shape : shapes) {
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
// Dyadic (Distributed Shampoo keeps the learning rate in an fp32 tensor).
double shampoo_lr_at(int t) { return std::ldexp(1.0 + t % 3, -7); }

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
    ASSERT_NEAR(got[i], want[i], tol * (1 + std::abs(want[i])))
        << "step " << step << ", element " << i;
}

// Distributed Shampoo's trajectories (tests/gen_shampoo_reference.py): per case, wavg's options
// and the parameters after each step.
struct ShampooCase {
  wavg::OptimizerConfig config;
  Rows rows;
};

struct ShampooReference {
  Shapes shapes;
  std::map<std::string, ShampooCase> cases;
};

const ShampooReference& shampoo_reference() {
  static const ShampooReference ref = [] {
    std::ifstream in(std::string(WAVG_SOURCE_DIR) + "/tests/data/shampoo_reference.json");
    const nlohmann::json doc = nlohmann::json::parse(in);
    ShampooReference r;
    r.shapes = doc.at("shapes").get<Shapes>();
    for (const auto& [name, c] : doc.at("cases").items()) {
      const nlohmann::json& o = c.at("options");
      wavg::OptimizerConfig cfg;
      cfg.name = "shampoo";
      cfg.beta1 = o.at("beta1");
      cfg.beta2 = o.at("beta2");
      cfg.eps = o.at("eps");
      cfg.weight_decay = o.at("weight_decay");
      cfg.shampoo_block_size = o.at("block_size");
      cfg.shampoo_precondition_frequency = o.at("precondition_frequency");
      cfg.shampoo_start_step = o.at("start_step");
      cfg.shampoo_eps = o.at("shampoo_eps");
      r.cases[name] = {cfg, c.at("trajectory").get<Rows>()};
    }
    return r;
  }();
  return ref;
}

wavg::OptimizerConfig shampoo_config() { return shampoo_reference().cases.at("blocked").config; }

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

Rows trajectory(const wavg::OptimizerConfig& c, int steps, double (*lr)(int), bool with_x,
                const Shapes& shapes = kShapes) {
  std::vector<torch::Tensor> params = initial_params(shapes);
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
  // merge_small_dims(shape, threshold, target_tensor_dimensionality=1) at the pinned commit:
  // size-1 dimensions dropped, merged from the last dimension to the first.
  using V = std::vector<int64_t>;
  EXPECT_EQ(wavg::shampoo_merged_shape({3, 2, 2, 2}, 4), (V{3, 2, 4}));
  EXPECT_EQ(wavg::shampoo_merged_shape({1, 7}, 4), (V{7}));
  EXPECT_EQ(wavg::shampoo_merged_shape({32, 16, 3, 3}, 1024), (V{32, 144}));
  EXPECT_EQ(wavg::shampoo_merged_shape({32, 3, 64, 64}, 8192), (V{96, 4096}));  // its docstring's
  EXPECT_EQ(wavg::shampoo_merged_shape({1, 2, 5, 1}, 10), (V{10}));
  EXPECT_EQ(wavg::shampoo_merged_shape({1, 2, 5, 1}, 1), (V{2, 5}));
  EXPECT_EQ(wavg::shampoo_merged_shape({6, 5}, 1024), (V{30}));
  EXPECT_EQ(wavg::shampoo_merged_shape({1, 1}, 4), (V{1}));
  EXPECT_EQ(wavg::shampoo_merged_shape({}, 4), (V{1}));
  EXPECT_EQ(wavg::shampoo_merged_shape({3, 0}, 4), (V{0}));
}

// Every element at every step of every case within 1e-9·(1 + |reference|) of Distributed
// Shampoo's (fp64 both; the eigendecompositions are LibTorch 1.13's and torch 2.x's LAPACK calls,
// so not bit for bit); the worst difference is printed per parameter.
TEST(Shampoo, MatchesDistributedShampooStepByStep) {
  const ShampooReference& ref = shampoo_reference();
  ASSERT_EQ(ref.cases.size(), 2u);
  for (const auto& [name, c] : ref.cases) {
    ASSERT_EQ(c.rows.size(), 30u) << name;
    const Rows got = trajectory(c.config, 30, shampoo_lr_at, false, ref.shapes);
    ASSERT_EQ(got.back().size(), c.rows.back().size()) << name;
    size_t at = 0;
    for (size_t j = 0; j < ref.shapes.size(); ++j) {
      int64_t n = 1;
      for (int64_t d : ref.shapes[j]) n *= d;
      double abs_max = 0, rel_max = 0, mixed_max = 0;
      for (size_t t = 0; t < got.size(); ++t)
        for (size_t i = at; i < at + size_t(n); ++i) {
          const double want = c.rows[t][i], d = std::abs(got[t][i] - want);
          abs_max = std::max(abs_max, d);
          rel_max = std::max(rel_max, d / std::abs(want));
          mixed_max = std::max(mixed_max, d / (1 + std::abs(want)));
        }
      std::printf(
          "shampoo %s, parameter %zu %s: max |wavg - Distributed Shampoo| %.3g, relative %.3g\n",
          name.c_str(), j, torch::str(c10::IntArrayRef(ref.shapes[j])).c_str(), abs_max, rel_max);
      EXPECT_LE(mixed_max, 1e-9) << name << ": parameter " << j;
      at += size_t(n);
    }
  }
}

TEST(Shampoo, PreconditioningChangesEveryParameter) {
  // Without preconditioning (start after the run) only the grafted AdamW step is left: the steps
  // before the start match the reference, the last one does not, in every parameter (the 1-D, the
  // [1, n] and the merged one too), so the test above sees Shampoo everywhere.
  const ShampooReference& ref = shampoo_reference();
  for (const auto& [name, c] : ref.cases) {
    wavg::OptimizerConfig graft_only = c.config;
    graft_only.shampoo_start_step = 1000;
    const Rows graft = trajectory(graft_only, 30, shampoo_lr_at, false, ref.shapes);
    const int before = int(c.config.shampoo_start_step) - 1;
    expect_near(graft[size_t(before - 1)], c.rows[size_t(before - 1)], 1e-9, before);
    size_t at = 0;
    for (size_t j = 0; j < ref.shapes.size(); ++j) {
      double n = 1, diff = 0;
      for (int64_t d : ref.shapes[j]) n *= double(d);
      for (size_t i = at; i < at + size_t(n); ++i)
        diff += std::abs(graft.back()[i] - c.rows.back()[i]);
      EXPECT_GT(diff / n, 1e-4) << name << ": parameter " << j << " is not preconditioned";
      at += size_t(n);
    }
  }
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

// A saved state that does not fit the parameters it is loaded for (another shape, or a state of
// the Shampoo before issue 21, without factors for 1-D blocks) is refused with an error naming
// shampoo, never indexed out of range.
TEST(Shampoo, RefusesAStateThatDoesNotFitTheParameter) {
  auto state_of = [](std::vector<int64_t> shape) {
    torch::Tensor p = torch::ones(shape, torch::kDouble).set_requires_grad(true);
    wavg::Shampoo opt(
        {p}, wavg::ShampooOptions(0.01).block_size(4).start_step(1).precondition_frequency(1));
    p.mutable_grad() = torch::full(shape, 0.5, torch::kDouble);
    opt.step();
    std::ostringstream out;
    torch::save(opt, out);
    return out.str();
  };
  auto step_after_loading = [](const std::string& saved, std::vector<int64_t> shape) {
    torch::Tensor p = torch::ones(shape, torch::kDouble).set_requires_grad(true);
    wavg::Shampoo opt(
        {p}, wavg::ShampooOptions(0.01).block_size(4).start_step(1).precondition_frequency(1));
    std::istringstream in(saved);
    torch::load(opt, in);
    p.mutable_grad() = torch::full(shape, 0.5, torch::kDouble);
    try {
      opt.step();
    } catch (const c10::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(step_after_loading(state_of({6}), {6}), "");
  EXPECT_NE(
      step_after_loading(state_of({6}), {2, 3}).find("shampoo: the state's moments have shape [6]"),
      std::string::npos);
  // A 1-D parameter's state without factors, as the Shampoo before issue 21 saved it.
  torch::Tensor p = torch::ones({6}, torch::kDouble).set_requires_grad(true);
  wavg::Shampoo opt({p}, wavg::ShampooOptions(0.01).block_size(4));
  p.mutable_grad() = torch::full({6}, 0.5, torch::kDouble);
  opt.step();
  ASSERT_EQ(opt.state().size(), 1u);
  auto& s = static_cast<wavg::ShampooParamState&>(*opt.state().begin()->second);
  EXPECT_EQ(s.factors().size(), 2u);  // blocks of 4 and 2
  s.factors({});
  s.roots({});
  try {
    opt.step();
    ADD_FAILURE() << "a state without factors was used";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("holds 0 factors"), std::string::npos) << e.what();
  }
}

TEST(ExactResume, Shampoo) { check_exact_resume(shampoo_config(), 14, 7, shampoo_lr_at); }
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
