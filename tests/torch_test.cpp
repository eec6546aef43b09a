// Tests of torch/ and workloads/: NAdamW against a double-precision implementation of the AlgoPerf
// equations, the evaluation swap (exact restore, also on exceptions), online averages against an
// offline recomputation over the same trajectory, buffer policies on a BatchNorm model, module files,
// and a few steps of every workload (loss falls, finite metrics, determinism).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <random>

#include "wavg/core/error.h"
#include "wavg/io/safetensors.h"
#include "wavg/torch/model_averager.h"
#include "wavg/torch/nadamw.h"
#include "wavg/torch/optim.h"
#include "wavg/workloads/workload.h"

using namespace wavg;

namespace {

std::string temp_dir() {
  char tmpl[] = "/tmp/wavg_torch_test_XXXXXX";
  return ::mkdtemp(tmpl);
}

// Independent reference: the AlgoPerf NAdamW equations in double precision, element by element.
struct NAdamWRef {
  double b1, b2, eps, wd;
  std::vector<double> m, v;
  int64_t t = 0;
  void step(std::vector<double>& th, const std::vector<double>& g, double lr) {
    if (m.empty()) m.assign(th.size(), 0.0), v.assign(th.size(), 0.0);
    ++t;
    for (size_t i = 0; i < th.size(); ++i) {
      th[i] *= 1.0 - lr * wd;
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      const double mbar = b1 * m[i] + (1 - b1) * g[i];
      th[i] -= lr / (1 - std::pow(b1, t)) * mbar /
               (std::sqrt(v[i]) / std::sqrt(1 - std::pow(b2, t)) + eps);
    }
  }
};

void check_nadamw(torch::Dtype dtype, double tol) {
  std::mt19937_64 rng(5);
  std::normal_distribution<double> n01(0, 1);
  const int64_t n = 257;
  std::vector<double> th(n);
  for (auto& x : th) x = n01(rng);
  torch::Tensor p = torch::tensor(th, torch::kDouble).to(dtype).requires_grad_(true);
  NAdamW opt({p}, NAdamWOptions(0.01).betas(std::make_tuple(0.8, 0.95)).eps(1e-6).weight_decay(0.3));
  NAdamWRef ref{0.8, 0.95, 1e-6, 0.3, {}, {}};
  for (auto& x : th) x = double(float(x));  // start from the same (rounded) values
  if (dtype == torch::kDouble) th = std::vector<double>(p.data_ptr<double>(), p.data_ptr<double>() + n);
  for (int step = 0; step < 30; ++step) {
    std::vector<double> g(n);
    for (auto& x : g) x = n01(rng) * (step % 3 + 1);
    if (dtype == torch::kFloat)
      for (auto& x : g) x = double(float(x));
    const double lr = 0.01 * (1.0 + std::cos(step * 0.3)) / 2 + 1e-4;  // the lr changes every step
    p.mutable_grad() = torch::tensor(g, torch::kDouble).to(dtype);
    for (auto& group : opt.param_groups()) group.options().set_lr(lr);
    opt.step();
    ref.step(th, g, lr);
  }
  const torch::Tensor got = p.detach().to(torch::kDouble);
  for (int64_t i = 0; i < n; ++i)
    ASSERT_NEAR(got[i].item<double>(), th[size_t(i)], tol * (1 + std::abs(th[size_t(i)])))
        << "element " << i;
}

}  // namespace

TEST(NAdamW, FusedFp32PathMatchesDoubleReference) { check_nadamw(torch::kFloat, 2e-5); }
TEST(NAdamW, TensorOpPathMatchesDoubleReference) { check_nadamw(torch::kDouble, 1e-12); }

TEST(NAdamW, StateSavesAndLoads) {
  torch::manual_seed(0);
  torch::Tensor a = torch::randn({10}, torch::requires_grad());
  torch::Tensor b = a.detach().clone().requires_grad_(true);
  NAdamW oa({a}, NAdamWOptions(0.1).weight_decay(0.01));
  for (int s = 0; s < 3; ++s) {
    a.mutable_grad() = torch::full({10}, 0.5 * (s + 1));
    oa.step();
  }
  std::stringstream ss;
  torch::save(oa, ss);
  NAdamW ob({b}, NAdamWOptions(0.1).weight_decay(0.01));
  torch::load(ob, ss);
  {
    torch::NoGradGuard g;
    b.copy_(a);
  }
  for (int s = 0; s < 3; ++s) {
    a.mutable_grad() = torch::full({10}, -0.25 * s);
    b.mutable_grad() = torch::full({10}, -0.25 * s);
    oa.step();
    ob.step();
  }
  EXPECT_TRUE(torch::equal(a, b));
}

TEST(Optimizers, SelectableByNameWithDecoupledDecay) {
  for (const char* name : {"nadamw", "adamw", "sgd"}) {
    torch::Tensor p = torch::ones({4}, torch::requires_grad());
    OptimizerConfig c;
    c.name = name;
    c.lr = 0.1;
    c.weight_decay = 0.5;
    TrainOptimizer opt(c, {p});
    p.mutable_grad() = torch::zeros({4});
    opt.step(0.1);
    // With a zero gradient only the decay acts: θ·(1 − η·λ) = 0.95.
    EXPECT_NEAR(p[0].item<double>(), 0.95, 1e-6) << name;
  }
  OptimizerConfig bad;
  bad.name = "adam";
  EXPECT_THROW(validate(bad), Error);
}

// ---- model averaging --------------------------------------------------------------------------

namespace {

struct TinyImpl : torch::nn::Module {
  TinyImpl() : bn(4), fc(4, 3) {
    register_module("bn", bn);
    register_module("fc", fc);
  }
  torch::Tensor forward(const torch::Tensor& x) { return fc(bn(x)); }
  torch::nn::BatchNorm1d bn;
  torch::nn::Linear fc;
};
TORCH_MODULE(Tiny);

std::vector<torch::Tensor> snapshot(torch::nn::Module& m) {
  std::vector<torch::Tensor> out;
  for (const auto& p : m.parameters()) out.push_back(p.detach().clone());
  for (const auto& b : m.buffers()) out.push_back(b.detach().clone());
  return out;
}

bool same(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!torch::equal(a[i], b[i])) return false;
  return true;
}

// Trains Tiny for `steps` steps, recording the trajectory (parameters and buffers after each step).
struct Trajectory {
  Tiny model;
  std::vector<std::vector<torch::Tensor>> states;  // states[t] after t steps
};

}  // namespace

TEST(ModelAverager, OnlineAveragesEqualOfflineRecomputationAndSwapRestoresExactly) {
  torch::manual_seed(1);
  Tiny model;
  ModelAverager avg(model.ptr(), {AveragerSpec(LawaOptions(3).every(2), BufferPolicy::kAverage),
                                  AveragerSpec(EmaOptions(0.7), BufferPolicy::kAverage),
                                  AveragerSpec(SwaOptions().start(4), BufferPolicy::kCopy)});
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(0.1));
  std::vector<std::vector<torch::Tensor>> states = {snapshot(*model)};
  avg.observe(0);
  for (int64_t t = 1; t <= 11; ++t) {
    opt.zero_grad();
    model->train();
    model->forward(torch::randn({8, 4})).pow(2).mean().backward();
    opt.step();
    avg.observe(t);
    states.push_back(snapshot(*model));
  }
  const auto before = snapshot(*model);
  const size_t nparams = model->parameters().size();
  // Offline recomputation in double over the recorded trajectory.
  auto offline = [&](const SchemeOptions& o, size_t k) {
    const auto w = offline_weights(o, int64_t(states.size()));
    torch::Tensor acc = torch::zeros_like(states[0][k], torch::kDouble);
    for (size_t t = 0; t < states.size(); ++t) acc += w[t] * states[t][k].to(torch::kDouble);
    return acc;
  };
  for (int i = 0; i < 3; ++i) {
    {
      EvalSwap swap = avg.swap_in(i);
      const auto inside = snapshot(*model);
      for (size_t k = 0; k < inside.size(); ++k) {
        const bool is_buffer = k >= nparams;
        const bool averaged = !is_buffer || avg.spec(i).buffers == BufferPolicy::kAverage;
        if (!inside[k].is_floating_point()) {
          EXPECT_TRUE(torch::equal(inside[k], before[k]));
          continue;
        }
        const torch::Tensor want = averaged ? offline(avg.spec(i).averager, k)
                                            : before[k].to(torch::kDouble);
        EXPECT_TRUE(torch::allclose(inside[k].to(torch::kDouble), want, 1e-6, 1e-6))
            << avg.name(i) << " tensor " << k;
      }
    }
    EXPECT_TRUE(same(snapshot(*model), before)) << "restored bit-exactly after " << avg.name(i);
  }
  // Restored also when evaluation throws.
  try {
    EvalSwap swap = avg.swap_in("ema_b0.7_nu1");
    throw std::runtime_error("evaluation failed");
  } catch (const std::runtime_error&) {
  }
  EXPECT_TRUE(same(snapshot(*model), before));
  EXPECT_THROW(avg.swap_in("nope"), Error);
}

namespace {

// Trains `model` for `steps` SGD steps on random batches, observing after each (step 0 first).
void train_and_observe(Tiny& model, ModelAverager& avg, int64_t steps) {
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(0.1));
  avg.observe(0);
  for (int64_t t = 1; t <= steps; ++t) {
    opt.zero_grad();
    model->train();
    model->forward(torch::randn({8, 4})).pow(2).mean().backward();
    opt.step();
    avg.observe(t);
  }
}

std::string error_text(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

// Issue 10 §1.1: all swaps share one buffer and each recorded the module's current data as the
// original, so a SWA swap, then an EMA swap, ending the SWA swap first, left the EMA average in the
// model for good. A second swap is now refused, and the model comes back bit-exactly.
TEST(ModelAverager, SecondSwapIsRefusedAndTheModelIsRestoredBitExactly) {
  torch::manual_seed(6);
  Tiny model;
  ModelAverager avg(model.ptr(), {AveragerSpec(SwaOptions(), BufferPolicy::kAverage),
                                  AveragerSpec(EmaOptions(0.5), BufferPolicy::kAverage)});
  avg.set_async(false);
  train_and_observe(model, avg, 6);
  const auto before = snapshot(*model);  // deep copies
  std::optional<EvalSwap> swa, ema;
  swa.emplace(avg.swap_in("swa_nu1"));
  const auto holding_swa = snapshot(*model);
  EXPECT_FALSE(same(holding_swa, before));
  const std::string msg = error_text([&] { ema.emplace(avg.swap_in("ema_b0.5_nu1")); });
  EXPECT_NE(msg.find("swap_in(averager 'ema_b0.5_nu1'): averager 'swa_nu1' is swapped into the "
                     "model and swaps do not nest"),
            std::string::npos)
      << msg;
  EXPECT_TRUE(same(snapshot(*model), holding_swa)) << "the refused swap changed the model";
  EXPECT_THROW(avg.swap_in("swa_nu1"), Error);  // the same averager twice is refused too
  swa.reset();  // end the SWA swap first, as in the issue
  ema.reset();
  EXPECT_TRUE(same(snapshot(*model), before));
  // Once the swap has ended, another may start, and it restores exactly too.
  { EvalSwap s = avg.swap_in("ema_b0.5_nu1"); }
  EXPECT_TRUE(same(snapshot(*model), before));
  EXPECT_THROW(avg.swap_in(2), Error);  // no averager 2
}

// observe() during a swap would sample the average instead of the trained weights: it is refused,
// leaves the bank as it was, and the same step is observed after the swap.
TEST(ModelAverager, ObserveDuringASwapIsRefused) {
  torch::manual_seed(7);
  Tiny model;
  // β = 0: the EMA is the last sample, so it shows what was sampled.
  ModelAverager avg(model.ptr(), {SwaOptions(), EmaOptions(0.0)});
  avg.set_async(false);
  train_and_observe(model, avg, 3);
  {
    torch::NoGradGuard g;
    for (auto& p : model->parameters()) p.add_(1.0);  // the weights after a fourth "step"
  }
  const auto trained = snapshot(*model);
  {
    EvalSwap swap = avg.swap_in("swa_nu1");
    const std::string msg = error_text([&] { avg.observe(4); });
    EXPECT_NE(msg.find("observe(step 4): averager 'swa_nu1' is swapped into the model, so the "
                       "sample would be that average"),
              std::string::npos)
        << msg;
  }
  EXPECT_EQ(avg.bank().samples(1), 4);  // steps 0..3; the refused step left no trace
  EXPECT_TRUE(same(snapshot(*model), trained));
  avg.observe(4);  // accepted now: step 4 was not recorded by the refused call
  {
    EvalSwap swap = avg.swap_in("ema_b0_nu1");
    const auto sampled = snapshot(*model);
    const size_t nparams = model->parameters().size();
    for (size_t k = 0; k < nparams; ++k)
      EXPECT_TRUE(torch::equal(sampled[k], trained[k])) << "parameter " << k;
  }
}

// save() of the swapped-in averager writes what save() writes outside a swap; save() of another
// averager during a swap is refused.
TEST(ModelAverager, SaveDuringASwap) {
  torch::manual_seed(8);
  const std::string dir = temp_dir();
  Tiny model;
  ModelAverager avg(model.ptr(), {LawaOptions(3), EmaOptions(0.9)});
  avg.set_async(false);
  train_and_observe(model, avg, 5);
  const auto before = snapshot(*model);
  avg.save("lawa_L3_nu1", dir + "/outside.safetensors");
  {
    EvalSwap swap = avg.swap_in("lawa_L3_nu1");
    avg.save("lawa_L3_nu1", dir + "/inside.safetensors");
    const std::string msg = error_text([&] { avg.save(1, dir + "/never.safetensors"); });
    EXPECT_NE(msg.find("save(averager 'ema_b0.9_nu1'): averager 'lawa_L3_nu1' is swapped into the "
                       "model"),
              std::string::npos)
        << msg;
  }
  auto bytes = [](const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  EXPECT_FALSE(bytes(dir + "/outside.safetensors").empty());
  EXPECT_EQ(bytes(dir + "/inside.safetensors"), bytes(dir + "/outside.safetensors"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/never.safetensors"));
  EXPECT_TRUE(same(snapshot(*model), before));
  std::filesystem::remove_all(dir);
}

// Issue 21 §1.3: the swap guard belonged to each ModelAverager, so two averagers on one module
// nested swaps (swap A, swap B, end A first: the module kept an average for good), A observed B's
// average as a sample, and A saved during B's swap. The guard is now keyed by the tensors,
// process-wide: each of these is refused and the module comes back bit-exactly.
TEST(ModelAverager, TwoAveragersOnOneModuleDoNotNestSwaps) {
  torch::manual_seed(9);
  const std::string dir = temp_dir();
  Tiny model;
  ModelAverager a(model.ptr(), {AveragerSpec(SwaOptions(), BufferPolicy::kAverage)});
  ModelAverager b(model.ptr(), {AveragerSpec(EmaOptions(0.5), BufferPolicy::kAverage)});
  a.set_async(false);
  b.set_async(false);
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(0.1));
  for (int64_t t = 0; t <= 4; ++t) {
    if (t > 0) {
      opt.zero_grad();
      model->forward(torch::randn({8, 4})).pow(2).mean().backward();
      opt.step();
    }
    a.observe(t);
    b.observe(t);
  }
  const auto before = snapshot(*model);
  std::optional<EvalSwap> swap_a, swap_b;
  swap_a.emplace(a.swap_in("swa_nu1"));
  const auto holding_a = snapshot(*model);
  const std::string nest = error_text([&] { swap_b.emplace(b.swap_in("ema_b0.5_nu1")); });
  EXPECT_NE(nest.find("swap_in(averager 'ema_b0.5_nu1'): averager 'swa_nu1' of another "
                      "ModelAverager is swapped into the model and swaps do not nest"),
            std::string::npos)
      << nest;
  const std::string obs = error_text([&] { b.observe(5); });
  EXPECT_NE(obs.find("observe(step 5): averager 'swa_nu1' of another ModelAverager is swapped "
                     "into the model"),
            std::string::npos)
      << obs;
  // b's averager 0 has a's index and a's policy: still another averager's swap.
  const std::string save = error_text([&] { b.save(0, dir + "/never.safetensors"); });
  EXPECT_NE(save.find("save(averager 'ema_b0.5_nu1'): averager 'swa_nu1' of another "
                      "ModelAverager is swapped into the model"),
            std::string::npos)
      << save;
  EXPECT_THROW(b.average(0), Error);
  EXPECT_TRUE(same(snapshot(*model), holding_a)) << "a refused call changed the model";
  swap_a.reset();  // end A first, as in the issue
  swap_b.reset();
  EXPECT_TRUE(same(snapshot(*model), before));
  EXPECT_FALSE(std::filesystem::exists(dir + "/never.safetensors"));
  EXPECT_EQ(b.bank().samples(0), 5);  // steps 0..4; the refused observe left no trace
  // After A's swap, B swaps, and then A is the one refused.
  {
    EvalSwap s = b.swap_in("ema_b0.5_nu1");
    EXPECT_THROW(a.swap_in("swa_nu1"), Error);
    EXPECT_THROW(a.observe(5), Error);
  }
  EXPECT_TRUE(same(snapshot(*model), before));
  std::filesystem::remove_all(dir);
}

// The background-thread mode (the default on accelerators) stages each sample in one of two buffers
// while the previous update runs: the averages must be bit-identical to the synchronous mode's.
TEST(ModelAverager, AsyncUpdatesEqualSynchronousBitExactly) {
  torch::manual_seed(4);
  Tiny model;
  const std::vector<AveragerSpec> specs = {AveragerSpec(LawaOptions(4)),
                                           AveragerSpec(EmaOptions(0.9).every(2)),
                                           AveragerSpec(SwaOptions().start(3))};
  ModelAverager sync(model.ptr(), specs), async(model.ptr(), specs);
  sync.set_async(false);
  async.set_async(true);
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(0.05));
  for (int64_t t = 0; t <= 40; ++t) {
    if (t > 0) {
      opt.zero_grad();
      model->train();
      model->forward(torch::randn({8, 4})).pow(2).mean().backward();
      opt.step();
    }
    sync.observe(t);
    async.observe(t);
  }
  for (int i = 0; i < 3; ++i) {
    std::vector<torch::Tensor> a, b;
    {
      EvalSwap s = sync.swap_in(i);
      a = snapshot(*model);
    }
    {
      EvalSwap s = async.swap_in(i);
      b = snapshot(*model);
    }
    EXPECT_TRUE(same(a, b)) << sync.name(i);
  }
}

TEST(ModelAverager, RecomputePolicyRebuildsBatchNormStatistics) {
  torch::manual_seed(2);
  Tiny model;
  ModelAverager avg(model.ptr(), {AveragerSpec(LawaOptions(2), BufferPolicy::kRecompute,
                                               /*batches=*/4)});
  avg.observe(0);
  std::vector<torch::Tensor> batches;
  for (int k = 0; k < 4; ++k) batches.push_back(torch::randn({16, 4}) * (k + 1) + k);
  const ForwardBatch forward = [&](int64_t k) {
    torch::NoGradGuard g;
    model->forward(batches[size_t(k)]);
  };
  EXPECT_THROW(avg.swap_in(0), Error);  // recompute needs batches
  model->eval();
  const auto before = snapshot(*model);
  {
    EvalSwap swap = avg.swap_in(0, forward);
    // Cumulative statistics: mean of batch means, mean of unbiased batch variances.
    torch::Tensor mean = torch::zeros({4}), var = torch::zeros({4});
    for (const auto& b : batches) mean += b.mean(0) / 4, var += b.var(0, /*unbiased=*/true) / 4;
    EXPECT_TRUE(torch::allclose(model->bn->running_mean, mean, 1e-5, 1e-5));
    EXPECT_TRUE(torch::allclose(model->bn->running_var, var, 1e-5, 1e-5));
    EXPECT_FALSE(model->is_training());
  }
  EXPECT_TRUE(same(snapshot(*model), before));
  EXPECT_EQ(model->bn->options.momentum(), 0.1);
}

TEST(ModelAverager, RefusesNonFiniteSamplesAndEmptyAverages) {
  Tiny model;
  ModelAverager avg(model.ptr(), {LawaOptions(2).start(5)});
  avg.observe(0);
  EXPECT_THROW(avg.swap_in(0), Error);  // empty until step 5
  {
    torch::NoGradGuard g;
    model->fc->weight[1][2] = NAN;
  }
  try {
    avg.observe(5);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "non-finite value in tensor 'fc.weight' element 6 at step 5: sample refused "
              "(training has diverged?)");
  }
  EXPECT_TRUE(avg.empty(0));  // the refused sample did not reach the bank
  // The first non-finite element in flat order is named, also in a buffer (staged after the
  // parameters) and in a non-contiguous tensor (staged by a torch copy, then checked).
  {
    torch::NoGradGuard g;
    model->fc->weight[1][2] = 0.5;
    model->bn->running_var[3] = INFINITY;
  }
  try {
    avg.observe(6);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "non-finite value in tensor 'bn.running_var' element 3 at step 6: sample refused "
              "(training has diverged?)");
  }
  {
    torch::NoGradGuard g;
    model->bn->running_var[3] = 1.0;
    model->fc->weight.set_data(model->fc->weight.t().contiguous().t());  // column-major view
    model->fc->weight[2][1] = -INFINITY;
    model->fc->bias[0] = NAN;  // later in flat order: not the one named
  }
  ASSERT_FALSE(model->fc->weight.is_contiguous());
  try {
    avg.observe(7);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "non-finite value in tensor 'fc.weight' element 9 at step 7: sample refused "
              "(training has diverged?)");
  }
  EXPECT_TRUE(avg.empty(0));
}

TEST(ModelAverager, SavesAverageWithStateDictNamesAndLoadsBack) {
  torch::manual_seed(3);
  const std::string dir = temp_dir();
  Tiny model;
  ModelAverager avg(model.ptr(), {EmaOptions(0.0)});  // β = 0: the last sample
  avg.set_async(false);
  avg.observe(0);
  avg.save(0, dir + "/ema.safetensors");
  SafetensorsFile f(dir + "/ema.safetensors");
  for (const char* name : {"bn.weight", "bn.bias", "fc.weight", "fc.bias", "bn.running_mean",
                           "bn.running_var", "bn.num_batches_tracked"})
    EXPECT_NE(f.find(name), nullptr) << name;
  Tiny other;
  load_module(*other, dir + "/ema.safetensors");
  EXPECT_TRUE(same(snapshot(*other), snapshot(*model)));
  std::filesystem::remove_all(dir);
}

// ---- workloads ------------------------------------------------------------------------------------

class WorkloadSmoke : public ::testing::TestWithParam<std::string> {};

TEST_P(WorkloadSmoke, LossFallsMetricsFiniteDeterministic) {
  torch::set_num_threads(1);
  auto run = [&](std::vector<double>* losses) {
    WorkloadOptions o;
    o.seed = 7;
    o.batch_size = 32;
    auto w = make_workload(GetParam(), o);
    OptimizerConfig c;
    c.lr = 3e-3;
    TrainOptimizer opt(c, w->model()->parameters());
    for (int64_t step = 0; step < 40; ++step) {
      opt.zero_grad();
      torch::Tensor loss = w->train_loss(step);
      loss.backward();
      opt.step(c.lr);
      losses->push_back(loss.item<double>());
    }
    return w->evaluate(Split::kValidation);
  };
  std::vector<double> a, b;
  const Evaluation ea = run(&a), eb = run(&b);
  EXPECT_EQ(a, b) << "same seed, same losses";
  EXPECT_EQ(ea.value, eb.value);
  EXPECT_TRUE(std::isfinite(ea.value) && std::isfinite(ea.loss));
  double first = 0, last = 0;
  for (int i = 0; i < 8; ++i) first += a[size_t(i)], last += a[a.size() - 1 - size_t(i)];
  EXPECT_LT(last, first) << "training loss falls over 40 steps";
}

INSTANTIATE_TEST_SUITE_P(All, WorkloadSmoke,
                         ::testing::Values("fmnist_cnn", "text_lm", "synth_ctr"));

TEST(Workloads, MissingDataNamesThePackage) {
  ::setenv("WAVG_FMNIST_DIR", "/nonexistent", 1);
  try {
    make_workload("fmnist_cnn", {});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("apt-get install dataset-fashion-mnist"),
              std::string::npos);
  }
  ::unsetenv("WAVG_FMNIST_DIR");
  EXPECT_THROW(make_workload("mnist", {}), Error);
}
