// Tests of the study's scoring and analyses (pure functions of curves and the direction) and of
// the study report built from results.json alone: hand-computed examples in both directions, a
// metamorphic check (negating every value, or taking 1 − value, and flipping the direction gives
// the same steps, ratios, profile, score, grid pick and fits, and the best values transformed),
// the report's "≤"/"≥" wording, and reports of partial or older results.json files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>
#include <tuple>

#include "wavg/core/error.h"
#include "wavg/core/format.h"
#include "wavg/study/analyses.h"
#include "wavg/study/entry_analyses.h"
#include "wavg/study/intervals.h"
#include "wavg/study/report.h"
#include "wavg/study/scoring.h"

using namespace wavg;
using namespace wavg::study;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

Curve curve(std::initializer_list<std::pair<int64_t, double>> points) {
  Curve c;
  for (const auto& [s, v] : points) c.push_back({s, v});
  return c;
}

Curve transformed(const Curve& c, const std::function<double(double)>& f) {
  Curve out = c;
  for (CurvePoint& p : out) p.value = f(p.value);
  return out;
}

ModelCurves transformed(const ModelCurves& m, const std::function<double(double)>& f) {
  ModelCurves out;
  for (const auto& [name, c] : m) out[name] = transformed(c, f);
  return out;
}

WorkloadData transformed(const WorkloadData& d, const std::function<double(double)>& f) {
  WorkloadData out = d;
  out.lower_is_better = !d.lower_is_better;
  for (GridRun& g : out.grid) g.curves = transformed(g.curves, f);
  for (ModelCurves& s : out.seeds) s = transformed(s, f);
  for (Curve& c : out.target_runs) c = transformed(c, f);
  for (ScheduleRun& s : out.schedules) s.curves = transformed(s.curves, f);
  return out;
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = "/tmp/wavg_study_test_XXXXXX";
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

BankSetting setting(const std::string& name, Scheme scheme, int64_t window, double beta,
                    int64_t every, double horizon) {
  SchemeOptions o = scheme == Scheme::kLawa ? SchemeOptions(LawaOptions(window))
                                             : SchemeOptions(EmaOptions(beta));
  o.every(every).name(name);
  return {o, horizon, 10};  // the curves below are evaluated every 10 steps
}

// The hand-computed workload (error rate, lower is better): T = 20, H = 27, three seeds.
//   target-setting runs' bests: 0.5, 0.45, 0.52 -> target = median = 0.5; their values at T
//   0.5, 0.47, 0.52 -> decayed_at_T 0.5; the scoring runs' raw values at T 0.5, 0.45, 0.52 ->
//   raw_at_T 0.5: no gain, the regime check fails.
//   raw reaches 0.5 at 20, 20, 30 -> median 20; lawa_rec at 10, 20, 10 -> 10; ema_rec: miss,
//   miss, 30 -> median ∞.
WorkloadData hand_workload() {
  WorkloadData d;
  d.name = "w";
  d.metric = "error";
  d.lower_is_better = true;
  d.T = 20;
  d.H = 27;
  d.eval_every = 10;
  d.train_s_per_step = 0.5;
  // Grid: the raw bests are 0.2 (run 0) and 0.3 (run 1): lower picks run 0; higher would pick
  // run 1 (0.8 > 0.7).
  d.grid.push_back({1e-3, 0.0, 0.05,
                    {{"raw", curve({{0, 0.7}, {10, 0.4}, {20, 0.2}})},
                     {"lawa_rec", curve({{0, 0.7}, {10, 0.5}, {20, 0.25}})},
                     {"ema_rec", curve({{0, 0.7}, {10, 0.6}, {20, 0.3}})}}});
  d.grid.push_back({2e-3, 0.0, 0.05,
                    {{"raw", curve({{0, 0.8}, {10, 0.3}, {20, 0.35}})},
                     {"lawa_rec", curve({{0, 0.8}, {10, 0.45}, {20, 0.5}})},
                     {"ema_rec", curve({{0, 0.8}, {10, 0.5}, {20, 0.6}})}}});
  d.chosen = choose_grid_point(d.grid, d.lower_is_better);
  d.target_seeds = {1000, 1001, 1002};
  d.scoring_seeds = {0, 1, 2};
  d.bank_eval_every = 10;
  d.target_runs = {curve({{0, 1.0}, {10, 0.6}, {20, 0.5}}), curve({{0, 1.0}, {10, 0.45}, {20, 0.47}}),
                   curve({{0, 1.0}, {10, 0.7}, {20, 0.52}})};
  d.bank = {setting("lawa_rec", Scheme::kLawa, 20, 0, 1, 0.74),
            setting("ema_rec", Scheme::kEma, 0, 0.95, 1, 0.74),
            setting("lawa_L2_nu5", Scheme::kLawa, 2, 0, 5, 0.37)};
  d.seeds.push_back({{"raw", curve({{0, 1.0}, {10, 0.6}, {20, 0.5}, {30, 0.4}})},
                     {"lawa_rec", curve({{0, 1.0}, {10, 0.5}, {20, 0.45}, {30, 0.4}})},
                     {"ema_rec", curve({{0, 1.0}, {10, 0.8}, {20, 0.6}, {30, 0.55}})},
                     {"lawa_L2_nu5", curve({{0, 1.0}, {10, 0.7}, {20, 0.5}, {30, 0.45}})}});
  d.seeds.push_back({{"raw", curve({{0, 1.0}, {10, 0.7}, {20, 0.45}, {30, 0.42}})},
                     {"lawa_rec", curve({{0, 1.0}, {10, 0.6}, {20, 0.49}, {30, 0.4}})},
                     {"ema_rec", curve({{0, 1.0}, {10, 0.9}, {20, 0.7}, {30, 0.6}})},
                     {"lawa_L2_nu5", curve({{0, 1.0}, {10, 0.75}, {20, 0.6}, {30, 0.51}})}});
  d.seeds.push_back({{"raw", curve({{0, 1.0}, {10, 0.55}, {20, 0.52}, {30, 0.3}})},
                     {"lawa_rec", curve({{0, 1.0}, {10, 0.5}, {20, 0.51}, {30, 0.3}})},
                     {"ema_rec", curve({{0, 1.0}, {10, 0.6}, {20, 0.55}, {30, 0.5}})},
                     {"lawa_L2_nu5", curve({{0, 1.0}, {10, 0.65}, {20, 0.6}, {30, 0.7}})}});
  d.schedules.push_back({"cosine to 0 (baseline)", "runs/w/seed_0", 0.0, 1.0, d.seeds[0]});
  d.schedules.push_back({"no decay (constant)", "runs/w/sched_final1", 1.0, 1.0,
                         {{"raw", curve({{0, 1.0}, {30, 0.55}})},
                          {"lawa_rec", curve({{0, 1.0}, {30, 0.45}})},
                          {"ema_rec", curve({{0, 1.0}, {30, 0.5}})}}});
  return d;
}

}  // namespace

TEST(Scoring, StepsToTargetAndBestValueFollowTheDirection) {
  const Curve err = curve({{0, 1.0}, {10, 0.6}, {20, 0.4}, {30, 0.5}});
  EXPECT_EQ(steps_or_miss(err, 0.5, true), 20);
  EXPECT_EQ(steps_or_miss(err, 0.3, true), kInf);
  EXPECT_EQ(best_value(err, true), 0.4);
  EXPECT_EQ(best_value(err, true, 10), 0.6);
  EXPECT_TRUE(std::isnan(best_value(Curve{}, true)));
  const Curve acc = curve({{0, 0.0}, {10, 0.4}, {20, 0.6}, {30, 0.55}});  // higher is better
  EXPECT_EQ(steps_or_miss(acc, 0.5, false), 20);
  EXPECT_EQ(steps_or_miss(acc, 0.7, false), kInf);
  EXPECT_EQ(steps_or_miss(acc, 0.5, true), 0);  // the wrong direction reaches it at once
  EXPECT_EQ(best_value(acc, false), 0.6);
  EXPECT_EQ(best_value(acc, false, 10), 0.4);
  EXPECT_EQ(best_value(acc, true), 0.0);
}

TEST(Scoring, MedianCountsAMissAsInfinite) {
  EXPECT_EQ(median({3, 1, 2}), 2);
  EXPECT_EQ(median({4, 1, 3, 2}), 2.5);
  EXPECT_EQ(median({1, kInf, 2}), 2);
  EXPECT_EQ(median({1, kInf}), kInf);
  EXPECT_EQ(median({kInf, 5, kInf}), kInf);
  EXPECT_EQ(median({}), kInf);
  const MeanStd ms = mean_std({1, 2, 3, 4});
  EXPECT_DOUBLE_EQ(ms.mean, 2.5);
  EXPECT_DOUBLE_EQ(ms.std, std::sqrt(5.0 / 3.0));  // Σ(x − 2.5)² = 5, over n − 1 = 3
  EXPECT_EQ(mean_std({7}).std, 0);
}

TEST(Scoring, BestIndexFollowsTheDirectionAndSkipsNaN) {
  const double nan = std::nan("");
  EXPECT_EQ(best_index({0.3, 0.1, 0.1, nan}, true), 1u);  // first of the ties
  EXPECT_EQ(best_index({0.3, 0.1, 0.1, nan}, false), 0u);
  EXPECT_EQ(best_index({nan, 0.2, 0.5}, false), 2u);
  EXPECT_THROW(best_index({nan, nan}, true), Error);
  EXPECT_EQ(direction_name(true), std::string("min"));
  EXPECT_EQ(direction_name(false), std::string("max"));
  EXPECT_TRUE(parse_direction("min"));
  EXPECT_FALSE(parse_direction("max"));
  EXPECT_THROW(parse_direction("up"), Error);
}

TEST(Scoring, RatiosProfileAndScoreByHand) {
  // w1: a = 100, b = 75, c misses -> ratios 4/3, 1, ∞; w2: a = 100, b = 250, c = 100 -> 1, 2.5, 1.
  const std::map<std::string, std::map<std::string, double>> times = {
      {"w1", {{"a", 100}, {"b", 75}, {"c", kInf}}}, {"w2", {{"a", 100}, {"b", 250}, {"c", 100}}}};
  const auto s = score_methods(times, {"a", "b", "c"});
  EXPECT_DOUBLE_EQ(s.at("a").ratio.at("w1"), 100.0 / 75.0);
  EXPECT_EQ(s.at("a").ratio.at("w2"), 1.0);
  EXPECT_EQ(s.at("b").ratio.at("w1"), 1.0);
  EXPECT_EQ(s.at("b").ratio.at("w2"), 2.5);
  EXPECT_EQ(s.at("c").ratio.at("w1"), kInf);
  EXPECT_EQ(s.at("c").ratio.at("w2"), 1.0);
  // ρ_a = 1/2 on [1, 4/3), 1 after: area 1/2·1/3 + 8/3 = 17/6; ρ_b = 1/2 on [1, 2.5), 1 after:
  // area 3/4 + 3/2 = 9/4; ρ_c = 1/2 throughout: area 3/2. Scores are areas over 3; the trapezoid
  // rule over 301 points is within half a step (0.01) times the jump (1/2) of each.
  EXPECT_NEAR(s.at("a").score, 17.0 / 18.0, 0.01 * 0.5 / 2 / 3 + 1e-12);
  EXPECT_NEAR(s.at("b").score, 3.0 / 4.0, 0.01 * 0.5 / 2 / 3 + 1e-12);
  EXPECT_NEAR(s.at("c").score, 0.5, 1e-12);
  ASSERT_EQ(s.at("b").profile.size(), size_t(kProfilePoints));
  EXPECT_EQ(s.at("b").profile.front(), std::make_pair(1.0, 0.5));
  EXPECT_NEAR(s.at("b").profile.back().first, 4.0, 1e-12);
  EXPECT_EQ(s.at("b").profile.back().second, 1.0);
}

TEST(Scoring, QuadraticFitRecoversAnExactParabola) {
  std::vector<std::pair<double, double>> pts;
  for (double x : {-2.0, -1.0, 0.0, 0.5, 1.5}) pts.push_back({x, 2 - 3 * x + 0.5 * x * x});
  const auto f = quadratic_fit(pts);
  ASSERT_TRUE(f.has_value());
  EXPECT_NEAR(f->c0, 2, 1e-9);
  EXPECT_NEAR(f->c1, -3, 1e-9);
  EXPECT_NEAR(f->c2, 0.5, 1e-9);
  EXPECT_FALSE(quadratic_fit({{0, 1}, {1, 2}}).has_value());
}

TEST(Analyses, HandComputedWorkload) {
  const WorkloadData d = hand_workload();
  EXPECT_EQ(d.chosen, 0u);  // raw best 0.2 < 0.3
  const WorkloadAnalysis a = analyse_workload(d);
  const json& W = a.results;
  EXPECT_EQ(W["direction"], "min");
  EXPECT_EQ(W["target"].get<double>(), 0.5);
  EXPECT_EQ(W["target_setting"]["best_values"], json::array({0.5, 0.45, 0.52}));
  EXPECT_EQ(W["target_setting"]["seeds"], json::array({1000, 1001, 1002}));
  EXPECT_EQ(W["budget_T"], 20);
  EXPECT_EQ(W["budget_H"], 27);
  EXPECT_EQ(W["regime_check"]["decayed_at_T"].get<double>(), 0.5);
  EXPECT_EQ(W["regime_check"]["raw_at_T"].get<double>(), 0.5);
  EXPECT_FALSE(W["regime_check"]["passes"].get<bool>());
  // Steps to target: AlgoPerf's count and the interpolated one. raw: 20, 20, 30 and 20,
  // 10 + 10·0.2/0.25 = 18, 20 + 10·0.02/0.22; lawa_rec: 10, 20, 10 and 10, 10 + 10·0.1/0.11, 10.
  const json& st = W["steps_to_target"];
  EXPECT_EQ(st["nadamw"]["per_seed"], json::array({20, 20, 30}));
  EXPECT_EQ(st["nadamw"]["median"].get<double>(), 20);
  EXPECT_NEAR(st["nadamw"]["interpolated_per_seed"][1].get<double>(), 18, 1e-12);
  EXPECT_NEAR(st["nadamw"]["interpolated_per_seed"][2].get<double>(), 20 + 10 * 0.02 / 0.22, 1e-12);
  EXPECT_NEAR(st["nadamw"]["interpolated_median"].get<double>(), 20, 1e-12);
  EXPECT_NEAR(st["nadamw+lawa"]["interpolated_median"].get<double>(), 10, 1e-12);
  EXPECT_EQ(st["nadamw+ema"]["per_seed"], json::array({"inf", "inf", 30}));
  EXPECT_EQ(st["nadamw+ema"]["median"], "inf");
  EXPECT_EQ(st["selected"]["model"], "lawa_rec");  // the smallest interpolated median
  EXPECT_FALSE(st["selected"]["pre_registered"].get<bool>());
  EXPECT_TRUE(st["nadamw"]["pre_registered"].get<bool>());
  EXPECT_FALSE(W.contains("horizon_fit"));  // fitted on one grid at merge (entry_analyses.h)
  EXPECT_EQ(W["methods"]["nadamw"]["steps_to_target"], json::array({20, 20, 30}));
  EXPECT_EQ(W["methods"]["nadamw"]["median_steps_to_target"].get<double>(), 20);
  EXPECT_EQ(W["methods"]["nadamw+lawa"]["steps_to_target"], json::array({10, 20, 10}));
  EXPECT_EQ(W["methods"]["nadamw+lawa"]["relative_steps"].get<double>(), 0.5);
  EXPECT_EQ(W["methods"]["nadamw+lawa"]["steps_saved"].get<double>(), 10);
  EXPECT_EQ(W["methods"]["nadamw+lawa"]["seconds_saved"].get<double>(), 5);  // 10 × 0.5 s
  EXPECT_EQ(W["methods"]["nadamw+ema"]["steps_to_target"], json::array({nullptr, nullptr, 30}));
  EXPECT_TRUE(W["methods"]["nadamw+ema"]["median_steps_to_target"].is_null());
  EXPECT_TRUE(W["methods"]["nadamw+ema"]["relative_steps"].is_null());
  // Raw bests over the run 0.4, 0.42, 0.3: mean 0.37333, std over n − 1.
  const double mean = (0.4 + 0.42 + 0.3) / 3;
  EXPECT_NEAR(W["methods"]["nadamw"]["best_mean"].get<double>(), mean, 1e-15);
  EXPECT_NEAR(W["methods"]["nadamw"]["best_std"].get<double>(),
              std::sqrt((std::pow(0.4 - mean, 2) + std::pow(0.42 - mean, 2) +
                         std::pow(0.3 - mean, 2)) / 2), 1e-15);
  // The bank's third setting reaches 0.5 at 20, never, never: median ∞.
  EXPECT_EQ(W["settings"][2]["steps_to_target"], json::array({20, nullptr, nullptr}));
  EXPECT_EQ(W["settings"][2]["window"], 2);
  // Grid rows: run 0 is chosen; its raw curve reaches 0.5 at 10, its EMA at 20.
  EXPECT_TRUE(W["lr_sensitivity"][0]["chosen"].get<bool>());
  EXPECT_EQ(W["lr_sensitivity"][0]["raw_steps_to_target"].get<double>(), 10);
  EXPECT_EQ(W["lr_sensitivity"][0]["ema_steps_to_target"].get<double>(), 20);
  EXPECT_EQ(W["lr_sensitivity"][1]["raw_best"].get<double>(), 0.3);
  EXPECT_EQ(W["schedules"][1]["lawa_best"].get<double>(), 0.45);
  EXPECT_TRUE(W["schedules"][1]["raw_steps_to_target"].is_null());  // 0.55 never reaches 0.5
  EXPECT_EQ(W["schedules"][1]["lawa_steps_to_target"].get<double>(), 30);
  // The curves results.json keeps for the report: every seed, the three plotted models.
  EXPECT_EQ(W["curves"]["2"]["raw"][1], json::array({10, 0.55}));
  EXPECT_EQ(W["curves"].size(), 3u);
  EXPECT_FALSE(W["curves"]["0"].contains("lawa_L2_nu5"));
  // Times for scoring: 20, 10, ∞ -> ratios 2, 1, ∞; nadamw+lawa scores 1, nadamw+ema 0.
  const json sc = scoring_json({{"w", a.method_time}});
  EXPECT_EQ(sc["ratios"]["nadamw"]["w"].get<double>(), 2);
  EXPECT_EQ(sc["ratios"]["nadamw+lawa"]["w"].get<double>(), 1);
  EXPECT_TRUE(sc["ratios"]["nadamw+ema"]["w"].is_null());
  EXPECT_NEAR(sc["score"]["nadamw+lawa"].get<double>(), 1, 1e-12);
  EXPECT_EQ(sc["score"]["nadamw+ema"].get<double>(), 0);
  EXPECT_NEAR(sc["score"]["nadamw"].get<double>(), 2.0 / 3.0, 0.01 * 1 / 2 / 3 + 1e-12);
}

TEST(Analyses, HigherIsBetterByHand) {
  // Accuracy = 1 − error of the hand-computed workload: the same steps, the target 1 − 0.5.
  const WorkloadData d = transformed(hand_workload(), [](double v) { return 1 - v; });
  EXPECT_EQ(choose_grid_point(d.grid, d.lower_is_better), 0u);  // best accuracy 0.8 = 1 − 0.2
  const WorkloadAnalysis a = analyse_workload(d);
  EXPECT_EQ(a.results["direction"], "max");
  EXPECT_EQ(a.results["target"].get<double>(), 0.5);
  EXPECT_EQ(a.results["methods"]["nadamw"]["steps_to_target"], json::array({20, 20, 30}));
  EXPECT_EQ(a.results["methods"]["nadamw+lawa"]["steps_to_target"], json::array({10, 20, 10}));
  // Read as lower-is-better, the same accuracies would pick the worst grid point and reach any
  // target at once: the direction matters.
  EXPECT_EQ(choose_grid_point(d.grid, true), 1u);
}

namespace {

// A workload of random curves on a dyadic grid (multiples of 1/1024, so that 1 − v is exact):
// decaying validation error with noise, each average a little better or worse than raw.
WorkloadData random_workload(uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> noise(-1, 1), offset(-0.03, 0.06);
  auto value = [&](int64_t step, double off) {
    const double v = 0.3 + 0.6 * std::exp(-double(step) / 40) + 0.03 * noise(rng) + off;
    return std::round(std::clamp(v, 0.01, 0.99) * 1024) / 1024;
  };
  auto run = [&](const std::vector<std::string>& models, int64_t last) {
    ModelCurves m;
    for (const std::string& name : models) {
      const double off = name == "raw" ? 0.0 : offset(rng);
      for (int64_t s = 0; s <= last; s += 10) m[name].push_back({s, value(s, off)});
    }
    return m;
  };
  WorkloadData d;
  d.name = "w";
  d.metric = "error";
  d.T = 100;
  d.H = 134;
  d.eval_every = 10;
  d.bank_eval_every = 10;
  d.train_s_per_step = 0.25;
  d.target_seeds = {1000, 1001, 1002};
  d.scoring_seeds = {0, 1, 2, 3, 4};
  d.bank = {setting("lawa_rec", Scheme::kLawa, 20, 0, 1, 0.149),
            setting("ema_rec", Scheme::kEma, 0, 0.95, 1, 0.149)};
  for (int64_t L : {5, 20})
    for (int64_t nu : {1, 4})
      d.bank.push_back(setting("lawa_L" + std::to_string(L) + "_nu" + std::to_string(nu),
                               Scheme::kLawa, L, 0, nu, double(L * nu) / 134));
  for (int64_t nu : {1, 4, 16})
    d.bank.push_back(setting("ema_b0.9_nu" + std::to_string(nu), Scheme::kEma, 0, 0.9, nu,
                             double(nu) / 0.1 / 134));
  std::vector<std::string> models;
  for (const BankSetting& s : d.bank) models.push_back(s.options.name());
  models.insert(models.begin(), "raw");
  for (int g = 0; g < 3; ++g)
    d.grid.push_back({1e-3 * (g + 1), 0.01, 0.05, run({"raw", "lawa_rec", "ema_rec"}, d.T)});
  d.chosen = choose_grid_point(d.grid, true);
  for (int s = 0; s < 5; ++s) d.seeds.push_back(run(models, 130));
  for (int s = 0; s < 3; ++s) d.target_runs.push_back(run({"raw"}, d.T).at("raw"));
  d.schedules.push_back({"cosine to 0 (baseline)", "runs/w/seed_0", 0.0, 1.0, d.seeds[0]});
  d.schedules.push_back({"no decay (constant)", "runs/w/sched_final1", 1.0, 1.0,
                         run({"raw", "lawa_rec", "ema_rec"}, 130)});
  return d;
}

// Keys of results.json whose values are metric values (transformed); every other number is a
// step, a ratio, a score, a hyperparameter or a fit, and must not change.
const std::set<std::string> kValueKeys = {"target", "raw_best", "lawa_best", "ema_best",
                                          "best_values", "best_mean", "final_values",
                                          "decayed_at_T", "raw_at_T"};

void expect_transformed(const json& a, const json& b, const std::function<double(double)>& f,
                        bool value, double tol, const std::string& path) {
  ASSERT_EQ(a.type() == json::value_t::null, b.type() == json::value_t::null) << path;
  if (a.is_object()) {
    ASSERT_EQ(a.size(), b.size()) << path;
    for (auto it = a.begin(); it != a.end(); ++it) {
      ASSERT_TRUE(b.contains(it.key())) << path << "." << it.key();
      if (it.key() == "direction") continue;
      if (it.key() == "curves") {  // {seed: {model: [[step, value], ...]}}
        for (auto s = it.value().begin(); s != it.value().end(); ++s)
          for (auto m = s.value().begin(); m != s.value().end(); ++m)
            for (size_t i = 0; i < m.value().size(); ++i) {
              const json& q = b["curves"][s.key()][m.key()][i];
              EXPECT_EQ(m.value()[i][0], q[0]);
              EXPECT_NEAR(f(m.value()[i][1].get<double>()), q[1].get<double>(), tol);
            }
        continue;
      }
      expect_transformed(it.value(), b[it.key()], f, value || kValueKeys.count(it.key()), tol,
                         path + "." + it.key());
    }
  } else if (a.is_array()) {
    ASSERT_EQ(a.size(), b.size()) << path;
    for (size_t i = 0; i < a.size(); ++i)
      expect_transformed(a[i], b[i], f, value, tol, path + "[" + std::to_string(i) + "]");
  } else if (a.is_number()) {
    const double x = a.get<double>(), y = b.get<double>();
    if (value)
      EXPECT_NEAR(f(x), y, tol) << path;
    else if (path.find("best_std") != std::string::npos ||
             path.find("seed_spread") != std::string::npos)
      EXPECT_NEAR(x, y, tol) << path;  // the spread of transformed values, rounded differently
    else
      EXPECT_EQ(x, y) << path;
  } else {
    EXPECT_EQ(a, b) << path;
  }
}

json study_json(const WorkloadAnalysis& a) {
  json entry = a.results;
  add_entry_analyses(&entry, /*lm=*/false);  // as the merge does
  return {{"schema", "study-v4"},
          {"protocol", {{"seeds", 5}, {"target", "median"}, {"recommended_horizon", 0.01}}},
          {"workloads", {{"w", entry}}},
          {"scoring", scoring_json({{"w", a.method_time}})}};
}

std::string write_study(const TempDir& dir, const json& results) {
  std::ofstream(dir.path() + "/results.json") << results.dump(2);
  return study_report(dir.path());
}

// The part of `html` from the heading starting with `heading` to the next heading.
std::string section(const std::string& html, const std::string& heading) {
  const size_t start = html.find("<h2>" + heading);
  if (start == std::string::npos) return "";
  return html.substr(start, html.find("<h2>", start + 4) - start);
}

// The tables of a section (its figures differ: their values are transformed).
std::string tables(const std::string& html) {
  std::string out;
  for (size_t at = html.find("<table"); at != std::string::npos; at = html.find("<table", at + 1))
    out += html.substr(at, html.find("</table>", at) - at);
  return out;
}

}  // namespace

TEST(Analyses, NegatingValuesAndFlippingTheDirectionChangesNoStep) {
  for (uint32_t seed : {1u, 2u, 3u, 4u}) {
    const WorkloadData d = random_workload(seed);
    const WorkloadAnalysis a = analyse_workload(d);
    // Not vacuous: some settings reach the target, some miss it.
    int reached = 0, missed = 0;
    for (const json& s : a.results["settings"])
      for (const json& steps : s["steps_to_target"]) (steps.is_null() ? missed : reached)++;
    EXPECT_GT(reached, 0);
    EXPECT_GT(missed, 0);
    for (const auto& [name, f, tol] :
         {std::tuple<std::string, std::function<double(double)>, double>{
              "negated", [](double v) { return -v; }, 0.0},
          {"1 - value", [](double v) { return 1 - v; }, 1e-12}}) {
      SCOPED_TRACE(name + ", seed " + std::to_string(seed));
      const WorkloadData t = transformed(d, f);
      EXPECT_EQ(choose_grid_point(t.grid, t.lower_is_better), d.chosen);
      const WorkloadAnalysis b = analyse_workload(t);
      EXPECT_EQ(b.results["direction"], "max");
      expect_transformed(a.results, b.results, f, false, tol, "w");
      EXPECT_EQ(a.method_time, b.method_time);
      EXPECT_EQ(scoring_json({{"w", a.method_time}}), scoring_json({{"w", b.method_time}}));
    }
  }
}

TEST(StudyReport, WordsTheTargetInTheWorkloadsDirection) {
  const WorkloadData d = random_workload(7);
  const WorkloadAnalysis a = analyse_workload(d);
  const WorkloadAnalysis b = analyse_workload(transformed(d, [](double v) { return -v; }));
  TempDir da, db;
  const std::string ha = write_study(da, study_json(a)), hb = write_study(db, study_json(b));
  const std::string target_a = "target error &le; " + format_number(a.results["target"].get<double>(), 4);
  const std::string target_b = "target error &ge; " + format_number(b.results["target"].get<double>(), 4);
  EXPECT_NE(section(ha, "Findings").find(target_a), std::string::npos) << section(ha, "Findings");
  EXPECT_NE(section(hb, "Findings").find(target_b), std::string::npos) << section(hb, "Findings");
  EXPECT_EQ(section(hb, "Findings").find("&le;"), std::string::npos);
  EXPECT_NE(ha.find("lower is better"), std::string::npos);
  EXPECT_NE(hb.find("higher is better"), std::string::npos);
  // Steps, ratios and scores read the same in both reports; best values differ in sign only.
  for (const char* h : {"1. Speed-up", "2. Horizon", "3. ", "Scoring"})
    EXPECT_EQ(tables(section(ha, h)), tables(section(hb, h))) << h;
  for (const char* h : {"1. Speed-up", "2. Horizon", "3. ", "4. Learning", "5. Best", "6. ",
                        "Scoring"}) {
    EXPECT_EQ(section(ha, h).find("<svg") != std::string::npos,
              section(hb, h).find("<svg") != std::string::npos) << h;
  }
}

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(StudyReport, PartialResultsGiveTheReportOfWhatExists) {
  const json full = study_json(analyse_workload(hand_workload()));
  TempDir dir;
  const std::string all = write_study(dir, full);
  // Written after the first workload, before the scoring.
  json partial = full;
  partial.erase("scoring");
  std::string html = write_study(dir, partial);
  EXPECT_NE(html.find("the study: no scoring ('scoring' not in results.json"), std::string::npos);
  EXPECT_EQ(section(html, "Scoring").find("<svg"), std::string::npos);
  EXPECT_EQ(section(html, "1. Speed-up"), section(all, "1. Speed-up"));
  // A workload without its methods, and one without curves.
  partial = full;
  partial["workloads"]["w"].erase("methods");
  html = write_study(dir, partial);
  EXPECT_NE(html.find("w: no speed-up table (analysis 1) ('methods' not in"), std::string::npos);
  EXPECT_NE(html.find("w: no best-value table (analysis 5)"), std::string::npos);
  EXPECT_EQ(tables(section(html, "3. ")), tables(section(all, "3. ")));  // heat maps: steps, not %
  partial = full;
  partial["workloads"]["w"].erase("curves");
  html = write_study(dir, partial);
  EXPECT_NE(html.find("w: no validation curves ('curves' not in"), std::string::npos);
  // A workload without a target is left out, with a note; the others are reported.
  partial = full;
  partial["workloads"]["v"] = {{"metric", "error"}, {"direction", "min"}};
  html = write_study(dir, partial);
  EXPECT_NE(html.find("v: no sections ('target' not in"), std::string::npos);
  EXPECT_EQ(section(html, "2. Horizon"), section(all, "2. Horizon"));
}

TEST(StudyReport, MalformedResultsAreOneLineErrorsNamingTheKey) {
  const json full = study_json(analyse_workload(hand_workload()));
  TempDir dir;
  auto error_with = [&](const json& j) { return error_of([&] { write_study(dir, j); }); };
  EXPECT_NE(error_with({{"schema", "study-v4"}}).find("results.json: 'workloads' is missing"),
            std::string::npos);
  EXPECT_NE(error_with(json::object()).find("has schema 'none'"), std::string::npos);
  json bad = full;
  bad["workloads"]["w"]["target"] = "low";
  EXPECT_NE(error_with(bad).find("'workloads.w.target' must be a number, got \"low\""),
            std::string::npos);
  bad = full;
  bad["workloads"]["w"]["direction"] = "up";
  EXPECT_NE(error_with(bad).find("'workloads.w.direction' must be \"min\" or \"max\""),
            std::string::npos);
  bad = full;
  bad["workloads"]["w"]["methods"]["nadamw"].erase("median_steps_to_target");
  EXPECT_NE(error_with(bad).find("'workloads.w.methods.nadamw.median_steps_to_target' is missing"),
            std::string::npos);
  std::ofstream(dir.path() + "/results.json") << "{\"workloads\": ";
  const std::string e = error_of([&] { study_report(dir.path()); });
  EXPECT_NE(e.find("results.json is not valid JSON"), std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos);
}

TEST(StudyReport, AnOlderSchemaIsRefusedInOneLine) {
  // A study-v2 results.json (results/study-protocol1) was made under the
  // older protocol (target from the scoring runs, 5 % resolution): refused, naming the schema.
  TempDir dir;
  json old = study_json(analyse_workload(hand_workload()));
  old["schema"] = "study-v2";
  std::ofstream(dir.path() + "/results.json") << old.dump(2);
  const std::string e = error_of([&] { study_report(dir.path()); });
  EXPECT_NE(e.find("has schema 'study-v2'"), std::string::npos) << e;
  EXPECT_NE(e.find("study-v4"), std::string::npos) << e;
  old["schema"] = "study-v3";  // issue 25's analyses missing: merge the parts again
  std::ofstream(dir.path() + "/results.json") << old.dump(2);
  EXPECT_NE(error_of([&] { study_report(dir.path()); }).find("--merge-only"), std::string::npos);
  EXPECT_EQ(e.find('\n'), std::string::npos);
}

// ---- issue 25: exact bootstrap intervals, one grid, leave-one-seed-out, fixed budget ------------

namespace {

// The reference: every one of the n^n index sequences (a base-n counter), the statistic of each,
// sorted, and the values at positions ⌊N/40⌋ and N − 1 − ⌊N/40⌋ (the code enumerates multisets).
Interval brute_force(size_t n, const std::function<double(const std::vector<double>&,
                                                          const std::vector<double>&)>& stat,
                     const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<size_t> idx(n, 0);
  std::vector<double> values;
  while (true) {
    std::vector<double> ra, rb;
    for (size_t i : idx) ra.push_back(a[i]), rb.push_back(b[i]);
    values.push_back(stat(ra, rb));
    size_t k = 0;
    while (k < n && ++idx[k] == n) idx[k++] = 0;
    if (k == n) break;
  }
  std::sort(values.begin(), values.end());
  const size_t cut = values.size() / 40;
  return {values[cut], values[values.size() - 1 - cut]};
}

}  // namespace

TEST(Intervals, TimeRatioCountsAMissAsInfinite) {
  EXPECT_EQ(time_ratio(10, 20), 0.5);
  EXPECT_EQ(time_ratio(kInf, 20), kInf);
  EXPECT_EQ(time_ratio(10, kInf), 0.0);
  EXPECT_EQ(time_ratio(kInf, kInf), 1.0);
}

TEST(Intervals, TwoSeedsByHand) {
  // t = {10, miss}, base = {20, 20}: resamples (0,0) 0.5, (0,1) and (1,0) median ∞ -> ∞, (1,1) ∞.
  // N = 4: lo = v_0 = 0.5, hi = v_3 = ∞ (open above); the point ratio median(t)/median(base) = ∞.
  const RatioEstimate r = ratio_estimate({10, kInf}, {20, 20});
  EXPECT_EQ(r.ci.lo, 0.5);
  EXPECT_EQ(r.ci.hi, kInf);
  EXPECT_EQ(r.ratio, kInf);
  EXPECT_EQ(r.per_seed[0], 0.5);
  EXPECT_EQ(r.per_seed[1], kInf);
  EXPECT_EQ(r.verdict, "within noise");
  EXPECT_EQ(ratio_estimate({10, 12}, {20, 20}).verdict, "faster");  // every resample below 1
  EXPECT_EQ(ratio_estimate({30, 25}, {20, 20}).verdict, "slower");
  EXPECT_TRUE(std::isnan(ratio_estimate({kInf}, {kInf}).per_seed[0]));  // both miss
  EXPECT_EQ(ratio_estimate({10}, {20}).verdict, "one seed: not resolved");  // no interval
  EXPECT_EQ(gain_estimate({0.1}, {0.2}, true).verdict, "one seed: not resolved");
}

TEST(Intervals, ExactBootstrapEqualsEveryResampleSequence) {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> steps(10, 30), miss(0, 4);
  auto ratio = [](const std::vector<double>& a, const std::vector<double>& b) {
    return time_ratio(median(a), median(b));
  };
  auto mean_diff = [](const std::vector<double>& a, const std::vector<double>& b) {
    std::vector<double> d;
    for (size_t i = 0; i < a.size(); ++i) d.push_back(b[i] - a[i]);
    return mean_std(d).mean;
  };
  for (size_t n : {1u, 2u, 4u, 5u, 6u}) {
    for (int trial = 0; trial < 4; ++trial) {
      std::vector<double> t, base;
      for (size_t i = 0; i < n; ++i) {
        t.push_back(miss(rng) == 0 ? kInf : 10.0 * steps(rng));  // ties are likely: 21 values
        base.push_back(miss(rng) == 0 ? kInf : 10.0 * steps(rng));
      }
      SCOPED_TRACE("n " + std::to_string(n) + ", trial " + std::to_string(trial));
      const Interval want = brute_force(n, ratio, t, base);
      const RatioEstimate got = ratio_estimate(t, base);
      EXPECT_EQ(got.ci.lo, want.lo);
      EXPECT_EQ(got.ci.hi, want.hi);
      std::vector<double> v, b;
      for (size_t i = 0; i < n; ++i) v.push_back(0.1 * steps(rng)), b.push_back(0.1 * steps(rng));
      const Interval want_gain = brute_force(n, mean_diff, v, b);
      const GainEstimate g = gain_estimate(v, b, /*lower_is_better=*/true);
      EXPECT_NEAR(g.ci.lo, want_gain.lo, 1e-12);
      EXPECT_NEAR(g.ci.hi, want_gain.hi, 1e-12);
    }
  }
  EXPECT_THROW(bootstrap_interval(kMaxBootstrapItems + 1, [](const Counts&) { return 0.0; }), Error);
}

TEST(Intervals, TwoSampleBootstrapEqualsEveryPairOfSequences) {
  const std::vector<double> a = {0.5, 0.47, 0.52}, b = {0.5, 0.45, 0.52, 0.49};
  std::vector<double> values;
  std::vector<size_t> i(3, 0);
  for (size_t x = 0; x < 27; ++x) {
    std::vector<double> ra = {a[x % 3], a[x / 3 % 3], a[x / 9]};
    for (size_t y = 0; y < 256; ++y) {
      std::vector<double> rb = {b[y % 4], b[y / 4 % 4], b[y / 16 % 4], b[y / 64]};
      values.push_back(median(rb) - median(ra));
    }
  }
  std::sort(values.begin(), values.end());
  const size_t cut = values.size() / 40;
  const Interval got = bootstrap_interval2(3, 4, [&](const Counts& ca, const Counts& cb) {
    return median(resampled(b, cb)) - median(resampled(a, ca));
  });
  EXPECT_EQ(got.lo, values[cut]);
  EXPECT_EQ(got.hi, values[values.size() - 1 - cut]);
}

TEST(Intervals, GridAndTrailingMeanByHand) {
  const Curve c = curve({{5, 0.9}, {10, 0.6}, {15, 0.3}, {20, 0.6}, {23, 0.4}});
  const Curve g = on_grid(c, 10, 23);  // multiples of 10 and the last step
  ASSERT_EQ(g.size(), 3u);
  EXPECT_EQ(g[0].step, 10);
  EXPECT_EQ(g[2].step, 23);
  const Curve m = trailing_mean(c, 3);  // from the third evaluation on
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[0].step, 15);
  EXPECT_NEAR(m[0].value, 0.6, 1e-15);
  EXPECT_NEAR(m[2].value, (0.3 + 0.6 + 0.4) / 3, 1e-15);
  // A single dip to 0.3 reaches a target of 0.35; the trailing mean never does.
  EXPECT_EQ(steps_or_miss(c, 0.35, true), 15);
  EXPECT_EQ(steps_or_miss(m, 0.35, true), kMiss);
}

TEST(EntryAnalyses, HandComputedWorkload) {
  json W = analyse_workload(hand_workload()).results;
  add_entry_analyses(&W, /*lm=*/false);
  // Leave one seed out over lawa_rec, ema_rec, lawa_L2_nu5 (every 10 steps). Interpolated steps:
  // lawa_rec 10, 19.09, 10; ema_rec ∞, ∞, 30; lawa_L2_nu5 20, ∞, ∞. Without seed 0: medians 14.5,
  // ∞, ∞; without seed 1: 10, ∞, ∞ (20 and ∞: ∞); without seed 2: 14.5, ∞, ∞ -> lawa_rec each
  // time, scored 10, 20, 10 against raw 20, 20, 30: ratio 10/20, interval over 27 resamples from
  // all-seed-2 (10/30) to all-seed-1 (20/20): within noise.
  const json& t = W["tuned"];
  for (const json& r : t["rotations"]) EXPECT_EQ(r["chosen"], "lawa_rec");
  EXPECT_EQ(t["steps"], json::array({10, 20, 10}));
  EXPECT_EQ(t["ratio"].get<double>(), 0.5);
  EXPECT_NEAR(t["ci95"][0].get<double>(), 1.0 / 3, 1e-15);
  EXPECT_EQ(t["ci95"][1].get<double>(), 1.0);
  EXPECT_EQ(t["verdict"], "within noise");
  // Pre-registered against raw: LAWA 10, 20, 10 vs 20, 20, 30 (the same numbers); EMA misses.
  EXPECT_EQ(W["intervals"]["nadamw+lawa"]["ratio"].get<double>(), 0.5);
  EXPECT_EQ(W["intervals"]["nadamw+ema"]["ratio"], "inf");
  EXPECT_TRUE(W["intervals"]["nadamw+ema"]["open_above"].get<bool>());
  // Fixed budget: best raw 0.4, 0.42, 0.3 and LAWA 0.4, 0.4, 0.3: gains 0, 0.02, 0.
  const json& g = W["fixed_budget"]["nadamw+lawa"]["best_gain"];
  EXPECT_NEAR(g["mean"].get<double>(), 0.02 / 3, 1e-15);
  EXPECT_NEAR(g["ci95"][0].get<double>(), 0, 1e-15);
  EXPECT_NEAR(g["ci95"][1].get<double>(), 0.02, 1e-15);
  EXPECT_EQ(g["verdict"], "within noise");
  EXPECT_FALSE(W["fixed_budget"]["nadamw"].contains("best_gain"));
  // The bank's rows: relative to raw on their grid; no mixed-grid fit.
  EXPECT_FALSE(W.contains("horizon_fit"));
  EXPECT_TRUE(W["settings"][2]["relative_steps"].is_null());  // lawa_L2_nu5's median misses
  EXPECT_EQ(W["settings"][0]["relative_steps"].get<double>(), 0.5);
  EXPECT_EQ(W["one_grid"]["settings"].size(), 3u);
  EXPECT_EQ(W["one_grid"]["best_after_the_fact"], "lawa_rec");
  EXPECT_FALSE(W["horizon_fit_one_grid"]["resolvable"].get<bool>());  // one median reaches
}

TEST(EntryAnalyses, APreRegisteredSettingTheBankHoldsCountsOnce) {
  WorkloadData d = random_workload(3);
  // The bank's lawa_L20_nu1 is lawa_rec's averager (L = 20, ν = 1): the grid holds it once.
  for (ModelCurves& s : d.seeds) s["lawa_L20_nu1"] = s.at("lawa_rec");
  json W = analyse_workload(d).results;
  add_entry_analyses(&W, false);
  std::vector<std::string> names;
  for (const json& s : W["one_grid"]["settings"]) names.push_back(s["name"]);
  EXPECT_EQ(std::count(names.begin(), names.end(), "lawa_rec"), 0);
  EXPECT_EQ(std::count(names.begin(), names.end(), "lawa_L20_nu1"), 1);
  EXPECT_EQ(W["one_grid"]["notes"][0], "lawa_rec is lawa_L20_nu1 on this grid: counted once");
}

TEST(EntryAnalyses, NegatingValuesAndFlippingTheDirectionChangesNoRatioOrGain) {
  for (uint32_t seed : {1u, 2u}) {
    const WorkloadData d = random_workload(seed);
    json a = analyse_workload(d).results, b =
        analyse_workload(transformed(d, [](double v) { return -v; })).results;
    add_entry_analyses(&a, false);
    add_entry_analyses(&b, false);
    for (const char* key : {"intervals", "one_grid", "tuned"}) EXPECT_EQ(a[key], b[key]) << key;
    EXPECT_EQ(a["horizon_fit_one_grid"]["range"], b["horizon_fit_one_grid"]["range"]);
    EXPECT_EQ(a["regime_interval"]["ci95"], b["regime_interval"]["ci95"]);
    const json& ga = a["fixed_budget"]["nadamw+ema"]["best_gain"];
    const json& gb = b["fixed_budget"]["nadamw+ema"]["best_gain"];
    EXPECT_NEAR(ga["mean"].get<double>(), gb["mean"].get<double>(), 1e-12);
    EXPECT_EQ(ga["verdict"], gb["verdict"]);
  }
}
