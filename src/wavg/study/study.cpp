// The study protocol: runs, targets, scoring, analyses 1–7, results.json.
#include "wavg/study/study.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <toml++/toml.h>

#include "wavg/core/error.h"
#include "wavg/io/atomic_file.h"
#include "wavg/train/config.h"
#include "wavg/train/runner.h"
#include "wavg/workloads/defaults.h"

namespace wavg {

namespace {

using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;
constexpr double kInf = std::numeric_limits<double>::infinity();


std::string num(double v) {
  std::ostringstream os;
  os.precision(10);
  os << v;
  return os.str();
}

// ---- configuration --------------------------------------------------------------------------------

template <typename T>
void read_list(const toml::table& t, const char* key, std::vector<T>* out) {
  const toml::node* n = t.get(key);
  if (!n) return;
  WAVG_CHECK(n->is_array(), "study config: '", key, "' must be an array");
  out->clear();
  for (const auto& e : *n->as_array()) {
    if constexpr (std::is_same_v<T, std::string>) {
      WAVG_CHECK(e.is_string(), "study config: '", key, "' must hold strings");
      out->push_back(std::string(e.as_string()->get()));
    } else if constexpr (std::is_same_v<T, int64_t>) {
      WAVG_CHECK(e.is_integer(), "study config: '", key, "' must hold integers");
      out->push_back(e.as_integer()->get());
    } else {
      const auto v = e.value<double>();
      WAVG_CHECK(v.has_value(), "study config: '", key, "' must hold numbers");
      out->push_back(*v);
    }
  }
}

void apply_table(const toml::table& t, StudyConfig* c, const std::string& where) {
  static const char* kKeys[] = {"workloads", "steps", "steps_scale", "seeds", "eval_points",
                                "lr_scale", "weight_decay", "warmup", "lawa_window", "lawa_every",
                                "ema_beta", "ema_every", "recommended_horizon", "schedule_final",
                                "short_schedule", "threads", "quick"};
  for (auto&& [k, v] : t) {
    const std::string key(k.str());
    WAVG_CHECK(std::find(std::begin(kKeys), std::end(kKeys), key) != std::end(kKeys),
               "study config: unknown key '", where, key, "'");
  }
  read_list(t, "workloads", &c->workloads);
  read_list(t, "steps", &c->steps);
  read_list(t, "lr_scale", &c->lr_scale);
  read_list(t, "weight_decay", &c->weight_decay);
  read_list(t, "warmup", &c->warmup);
  read_list(t, "lawa_window", &c->lawa_window);
  read_list(t, "lawa_every", &c->lawa_every);
  read_list(t, "ema_beta", &c->ema_beta);
  read_list(t, "ema_every", &c->ema_every);
  read_list(t, "schedule_final", &c->schedule_final);
  if (auto v = t["steps_scale"].value<double>()) c->steps_scale = *v;
  if (auto v = t["seeds"].value<int64_t>()) c->seeds = *v;
  if (auto v = t["eval_points"].value<int64_t>()) c->eval_points = *v;
  if (auto v = t["recommended_horizon"].value<double>()) c->recommended_horizon = *v;
  if (auto v = t["short_schedule"].value<double>()) c->short_schedule = *v;
  if (auto v = t["threads"].value<int64_t>()) c->threads = int(*v);
}

void validate(const StudyConfig& c) {
  WAVG_CHECK(!c.workloads.empty(), "study config: 'workloads' is empty");
  for (const auto& w : c.workloads) workload_defaults(w);
  WAVG_CHECK(c.steps.empty() || c.steps.size() == c.workloads.size(),
             "study config: 'steps' needs one budget per workload (", c.workloads.size(), ")");
  WAVG_CHECK(c.seeds >= 1, "study config: 'seeds' must be >= 1, got ", c.seeds);
  WAVG_CHECK(c.eval_points >= 2, "study config: 'eval_points' must be >= 2, got ", c.eval_points);
  WAVG_CHECK(c.steps_scale > 0 && c.steps_scale <= 10, "study config: 'steps_scale' must be in ",
             "(0, 10], got ", c.steps_scale);
  WAVG_CHECK(!c.lr_scale.empty() && !c.warmup.empty(), "study config: empty grid");
  for (double s : c.lr_scale) WAVG_CHECK(s > 0, "study config: lr_scale must be > 0, got ", s);
  for (int64_t w : c.lawa_window) WAVG_CHECK(w >= 1, "study config: lawa_window must be >= 1, got ", w);
  for (int64_t e : c.lawa_every) WAVG_CHECK(e >= 1, "study config: lawa_every must be >= 1, got ", e);
  for (int64_t e : c.ema_every) WAVG_CHECK(e >= 1, "study config: ema_every must be >= 1, got ", e);
  for (double b : c.ema_beta)
    WAVG_CHECK(b >= 0 && b < 1, "study config: ema_beta must be in [0, 1), got ", b);
  WAVG_CHECK(c.recommended_horizon > 0 && c.recommended_horizon <= 1,
             "study config: recommended_horizon must be in (0, 1], got ", c.recommended_horizon);
  WAVG_CHECK(c.short_schedule > 0 && c.short_schedule <= 1,
             "study config: short_schedule must be in (0, 1], got ", c.short_schedule);
}

}  // namespace

StudyConfig load_study_config(const std::string& path, bool quick) {
  StudyConfig c;
  toml::table root;
  if (!path.empty()) {
    try {
      root = toml::parse_file(path);
    } catch (const toml::parse_error& e) {
      throw Error("study config: " + path + ":" + std::to_string(e.source().begin.line) + ": " +
                  std::string(e.description()));
    }
    apply_table(root, &c, "");
  }
  if (quick) {
    if (const toml::table* q = root["quick"].as_table()) {
      apply_table(*q, &c, "quick.");
    } else {  // built-in quick profile: every stage, small budgets
      c.steps_scale = 0.12;
      c.seeds = 2;
      c.eval_points = 8;
      c.lr_scale = {0.5, 1.0};
      c.lawa_window = {5, 20};
      c.lawa_every = {1, 4};
      c.ema_beta = {0.9};
      c.ema_every = {1, 4};
      c.schedule_final = {0.0, 1.0};
    }
  }
  validate(c);
  return c;
}

namespace {

// ---- runs ---------------------------------------------------------------------------------------

struct Curve {
  std::vector<std::pair<int64_t, double>> points;  // (step, value), in step order
};
using Curves = std::map<std::string, Curve>;  // by model name

Curves read_curves(const std::string& run_dir) {
  Curves c;
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    c[j.at("model").get<std::string>()].points.push_back(
        {j.at("step").get<int64_t>(), j.at("value").get<double>()});
  }
  return c;
}

bool better(double a, double b, bool lower) { return lower ? a < b : a > b; }

// First evaluated step at which the curve reaches the target; ∞ if never.
double steps_to_target(const Curve& c, double target, bool lower) {
  for (const auto& [s, v] : c.points)
    if (lower ? v <= target : v >= target) return double(s);
  return kInf;
}

double best_value(const Curve& c, bool lower, int64_t max_step = -1) {
  double best = lower ? kInf : -kInf;
  for (const auto& [s, v] : c.points)
    if ((max_step < 0 || s <= max_step) && better(v, best, lower)) best = v;
  return best;
}

double median(std::vector<double> v) {
  if (v.empty()) return kInf;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  if (n % 2) return v[n / 2];
  if (std::isinf(v[n / 2])) return kInf;
  return 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

json jnum(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

struct RunPlan {
  std::string workload, label, dir;
  int64_t steps = 0;
  std::vector<std::string> sets;
};

class Runner {
 public:
  explicit Runner(bool quiet) : quiet_(quiet) {}

  // Runs the plan unless already finished; resumes an interrupted one.
  void ensure(const RunPlan& p) {
    ++index_;
    const RunConfig c = load_run_config("", p.sets);
    if (file_exists(run_config_path(p.dir))) {
      // A run left by an earlier invocation is reused only if it was planned identically.
      std::string diffs;
      for (const auto& d : config_differences(load_run_config(run_config_path(p.dir), {}), c))
        diffs += (diffs.empty() ? "" : ", ") + d;
      WAVG_CHECK(diffs.empty(), "study: ", p.dir, " was made with another configuration (", diffs,
                 "); use a new --out or remove that run");
    }
    const bool done = file_exists(p.dir + "/summary.json") && finished(p);
    if (!done) {
      const auto t0 = Clock::now();
      RunOptions o;
      o.quiet = true;
      o.resume = file_exists(p.dir + "/state");
      o.overwrite = !o.resume;
      const RunSummary s = run_training(c, o);
      WAVG_CHECK(!s.interrupted_by, "study: interrupted; run the same command again to continue");
      const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
      sec_per_step_[p.workload] = secs / double(p.steps);
    }
    if (!quiet_) {
      double eta = 0;
      for (const auto& r : remaining_) {
        const auto it = sec_per_step_.find(r.first);
        eta += double(r.second) * (it == sec_per_step_.end() ? 0.05 : it->second);
      }
      std::printf("[%3d] %-10s %-28s %s   ETA %.0f min\n", index_, p.workload.c_str(),
                  p.label.c_str(), done ? "(done before)" : "done", eta / 60.0);
      std::fflush(stdout);
    }
  }
  void plan_remaining(const std::string& workload, int64_t steps) { remaining_[workload] += steps; }
  void finished_planned(const std::string& workload, int64_t steps) {
    remaining_[workload] -= steps;
  }

 private:
  static bool finished(const RunPlan& p) {
    try {
      std::ifstream f(p.dir + "/summary.json");
      const auto j = nlohmann::json::parse(f);
      return j.at("steps_done").get<int64_t>() == p.steps;
    } catch (const std::exception&) {
      return false;
    }
  }
  bool quiet_;
  int index_ = 0;
  std::map<std::string, double> sec_per_step_;
  std::map<std::string, int64_t> remaining_;
};

struct Averagers {
  std::vector<std::string> toml_lawa, toml_ema;  // inline tables
  std::vector<json> settings;                    // name, scheme, window/beta, every, horizon
};

std::string lawa_entry(const std::string& name, int64_t window, int64_t every) {
  return "{name = \"" + name + "\", window = " + std::to_string(window) +
         ", every = " + std::to_string(every) + ", buffers = \"average\"}";
}
std::string ema_entry(const std::string& name, double beta, int64_t every) {
  return "{name = \"" + name + "\", beta = " + num(beta) + ", every = " + std::to_string(every) +
         ", buffers = \"average\"}";
}

// The paper's recommendation: LAWA with L = 20 at horizon h; EMA with the same ν and ν/(1−β) = h·T.
void add_recommended(Averagers* a, double h, int64_t budget) {
  const int64_t every = std::max<int64_t>(1, std::llround(h * double(budget) / 20.0));
  const double beta = std::max(0.0, 1.0 - double(every) / (h * double(budget)));
  a->toml_lawa.push_back(lawa_entry("lawa_rec", 20, every));
  a->toml_ema.push_back(ema_entry("ema_rec", beta, every));
  a->settings.push_back({{"name", "lawa_rec"}, {"scheme", "lawa"}, {"window", 20}, {"every", every},
                         {"horizon", lawa_horizon(20, every, budget)}});
  a->settings.push_back({{"name", "ema_rec"}, {"scheme", "ema"}, {"beta", beta}, {"every", every},
                         {"horizon", ema_horizon(beta, every, budget)}});
}

std::vector<std::string> run_sets(const std::string& workload, const std::string& dir,
                                  int64_t steps, int64_t eval_every, int64_t seed, double lr,
                                  double wd, double warmup, const Averagers& a, int threads,
                                  double final_fraction = 0.0, int64_t schedule_steps = 0) {
  std::vector<std::string> s = {
      "workload=\"" + workload + "\"",
      "out=\"" + dir + "\"",
      "steps=" + std::to_string(steps),
      "eval_every=" + std::to_string(eval_every),
      "seed=" + std::to_string(seed),
      "ckpt_every=0",
      "state_every=" + std::to_string(std::max<int64_t>(eval_every, steps / 4)),
      "threads=" + std::to_string(threads),
      "optimizer.name=\"nadamw\"",
      "optimizer.lr=" + num(lr),
      "optimizer.weight_decay=" + num(wd),
      "schedule.kind=\"cosine\"",
      "schedule.warmup=" + num(warmup),
      "schedule.final_fraction=" + num(final_fraction)};
  if (schedule_steps > 0) s.push_back("schedule.total_steps=" + std::to_string(schedule_steps));
  auto join = [](const std::vector<std::string>& v) {
    std::string out = "[";
    for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + v[i];
    return out + "]";
  };
  if (!a.toml_lawa.empty()) s.push_back("lawa=" + join(a.toml_lawa));
  if (!a.toml_ema.empty()) s.push_back("ema=" + join(a.toml_ema));
  return s;
}

// Least-squares quadratic y = c0 + c1 x + c2 x² (3×3 normal equations, Cramer's rule).
bool quadratic_fit(const std::vector<std::pair<double, double>>& pts, double c[3]) {
  if (pts.size() < 3) return false;
  double s[5] = {0, 0, 0, 0, 0}, t[3] = {0, 0, 0};
  for (const auto& [x, y] : pts) {
    double p = 1;
    for (int k = 0; k < 5; ++k) {
      s[k] += p;
      if (k < 3) t[k] += p * y;
      p *= x;
    }
  }
  const double m[3][3] = {{s[0], s[1], s[2]}, {s[1], s[2], s[3]}, {s[2], s[3], s[4]}};
  auto det = [](const double a[3][3]) {
    return a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) -
           a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0]) +
           a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);
  };
  const double d = det(m);
  if (std::abs(d) < 1e-12) return false;
  for (int k = 0; k < 3; ++k) {
    double mk[3][3];
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) mk[i][j] = j == k ? t[i] : m[i][j];
    c[k] = det(mk) / d;
  }
  return true;
}

}  // namespace

void run_study(const StudyConfig& cfg, const std::string& study_dir, bool quiet) {
  ::mkdir(study_dir.c_str(), 0755);
  struct WorkloadPlan {
    std::string name;
    int64_t T, H, eval_every_T, eval_every_H;
    WorkloadDefaults d;
  };
  std::vector<WorkloadPlan> plans;
  for (size_t i = 0; i < cfg.workloads.size(); ++i) {
    WorkloadPlan p;
    p.name = cfg.workloads[i];
    p.d = workload_defaults(p.name);
    const int64_t base = cfg.steps.empty() || cfg.steps[i] <= 0 ? p.d.steps : cfg.steps[i];
    p.T = std::max<int64_t>(20, std::llround(double(base) * cfg.steps_scale));
    p.H = (4 * p.T + 2) / 3;  // ⌈4/3·T⌉
    p.eval_every_T = std::max<int64_t>(1, p.T / cfg.eval_points);
    p.eval_every_H = p.eval_every_T;  // the same grid of evaluation steps in both budgets
    plans.push_back(p);
  }
  int64_t total = 0;
  Runner runner(quiet);
  for (size_t i = 0; i < plans.size(); ++i) {
    const auto& p = plans[i];
    const size_t nwd = cfg.weight_decay.empty() ? 1 : cfg.weight_decay.size();
    const int64_t grid = int64_t(cfg.lr_scale.size() * nwd * cfg.warmup.size()) * p.T;
    const int64_t seeds = cfg.seeds * p.H;
    int64_t sched = 0;  // analysis 6 runs (the decay-to-0 variant is seed 0's run)
    if (i == 0) {
      for (double f : cfg.schedule_final) sched += f == 0.0 ? 0 : p.H;
      sched += p.H;  // the shorter schedule
    }
    runner.plan_remaining(p.name, grid + seeds + sched);
    total += grid + seeds + sched;
  }
  if (!quiet)
    std::printf("wavg study: %zu workloads, %lld seeds, %lld training steps planned in %s\n",
                plans.size(), (long long)cfg.seeds, (long long)total, study_dir.c_str());

  json results;
  results["protocol"] = {
      {"seeds", cfg.seeds},
      {"eval_points", cfg.eval_points},
      {"steps_scale", cfg.steps_scale},
      {"lr_scale", cfg.lr_scale},
      {"warmup", cfg.warmup},
      {"recommended_horizon", cfg.recommended_horizon},
      {"target", "median over seeds of the best raw validation value within the first T steps of "
                 "the hard-budget runs"},
      {"hard_budget", "ceil(4/3 T)"}};
  results["workloads"] = json::object();
  std::map<std::string, std::map<std::string, double>> method_median;  // workload → method → t

  for (size_t wi = 0; wi < plans.size(); ++wi) {
    const WorkloadPlan& p = plans[wi];
    const std::string wdir = study_dir + "/runs/" + p.name;
    const bool lower = true;  // every built-in metric is lower-is-better
    // 1. Baseline grid at budget T, seed 0, with the recommended averagers riding along.
    Averagers rec;
    add_recommended(&rec, cfg.recommended_horizon, p.T);
    const std::vector<double> wds = cfg.weight_decay.empty()
                                        ? std::vector<double>{p.d.weight_decay}
                                        : cfg.weight_decay;
    struct GridPoint {
      double lr, wd, warmup;
      std::string dir;
      double best;
    };
    std::vector<GridPoint> grid;
    for (double ls : cfg.lr_scale)
      for (double wd : wds)
        for (double wu : cfg.warmup) {
          GridPoint g{p.d.lr * ls, wd, wu, "", 0};
          g.dir = wdir + "/grid_lr" + num(g.lr) + "_wd" + num(wd) + "_wu" + num(wu);
          RunPlan rp{p.name, "grid lr=" + num(g.lr) + " wd=" + num(wd), g.dir, p.T,
                     run_sets(p.name, g.dir, p.T, p.eval_every_T, 0, g.lr, wd, wu, rec,
                              cfg.threads)};
          runner.ensure(rp);
          runner.finished_planned(p.name, p.T);
          g.best = best_value(read_curves(g.dir)["raw"], lower);
          grid.push_back(g);
        }
    const GridPoint& best = *std::min_element(
        grid.begin(), grid.end(), [](const GridPoint& a, const GridPoint& b) { return a.best < b.best; });

    // 2. The best point with several seeds at the hard budget, with the whole bank.
    Averagers bank;
    add_recommended(&bank, cfg.recommended_horizon, p.H);
    for (int64_t L : cfg.lawa_window)
      for (int64_t nu : cfg.lawa_every) {
        const std::string name = "lawa_L" + std::to_string(L) + "_nu" + std::to_string(nu);
        bank.toml_lawa.push_back(lawa_entry(name, L, nu));
        bank.settings.push_back({{"name", name}, {"scheme", "lawa"}, {"window", L}, {"every", nu},
                                 {"horizon", lawa_horizon(L, nu, p.H)}});
      }
    for (double b : cfg.ema_beta)
      for (int64_t nu : cfg.ema_every) {
        const std::string name = "ema_b" + num(b) + "_nu" + std::to_string(nu);
        bank.toml_ema.push_back(ema_entry(name, b, nu));
        bank.settings.push_back({{"name", name}, {"scheme", "ema"}, {"beta", b}, {"every", nu},
                                 {"horizon", ema_horizon(b, nu, p.H)}});
      }
    std::vector<Curves> seed_curves;
    double sec_per_step = 0;
    for (int64_t s = 0; s < cfg.seeds; ++s) {
      const std::string dir = wdir + "/seed_" + std::to_string(s);
      runner.ensure({p.name, "seed " + std::to_string(s) + " (hard budget)", dir, p.H,
                     run_sets(p.name, dir, p.H, p.eval_every_H, s, best.lr, best.wd, best.warmup,
                              bank, cfg.threads)});
      runner.finished_planned(p.name, p.H);
      seed_curves.push_back(read_curves(dir));
      std::ifstream f(dir + "/summary.json");
      const auto j = nlohmann::json::parse(f);
      sec_per_step += j.at("train_wall_s").get<double>() / double(p.H) / double(cfg.seeds);
    }
    // Target: median over seeds of the best raw value within the first T steps.
    std::vector<double> bests_T;
    for (auto& c : seed_curves) bests_T.push_back(best_value(c["raw"], lower, p.T));
    const double target = median(bests_T);

    json W;
    W["T"] = p.T;
    W["hard_budget"] = p.H;
    W["eval_every"] = p.eval_every_H;
    {
      std::ifstream f(wdir + "/seed_0/summary.json");
      W["metric"] = nlohmann::json::parse(f).at("metric");
    }
    W["lower_is_better"] = lower;
    W["best_config"] = {{"lr", best.lr}, {"weight_decay", best.wd}, {"warmup", best.warmup}};
    W["target"] = target;
    W["seed_best_within_T"] = bests_T;
    W["train_s_per_step"] = sec_per_step;

    // Analysis 4: learning-rate sensitivity (grid runs, steps to the study target).
    json lr_rows = json::array();
    for (const auto& g : grid) {
      Curves c = read_curves(g.dir);
      const double r = steps_to_target(c["raw"], target, lower);
      const double l = steps_to_target(c["lawa_rec"], target, lower);
      const double e = steps_to_target(c["ema_rec"], target, lower);
      lr_rows.push_back({{"lr", g.lr}, {"weight_decay", g.wd}, {"warmup", g.warmup},
                         {"raw_best", g.best}, {"lawa_best", best_value(c["lawa_rec"], lower)},
                         {"ema_best", best_value(c["ema_rec"], lower)},
                         {"raw_steps_to_target", jnum(r)}, {"lawa_steps_to_target", jnum(l)},
                         {"ema_steps_to_target", jnum(e)},
                         {"chosen", &g == &best}});
    }
    W["lr_sensitivity"] = lr_rows;

    // Methods (analyses 1, 5, 7): per seed steps to target and best value over the hard budget.
    json methods = json::object();
    const std::vector<std::pair<std::string, std::string>> method_models = {
        {"nadamw", "raw"}, {"nadamw+lawa", "lawa_rec"}, {"nadamw+ema", "ema_rec"}};
    for (const auto& [method, model] : method_models) {
      std::vector<double> stt, bv;
      for (auto& c : seed_curves) {
        stt.push_back(steps_to_target(c[model], target, lower));
        bv.push_back(best_value(c[model], lower));
      }
      double mean = 0, var = 0;
      for (double v : bv) mean += v / double(bv.size());
      for (double v : bv) var += (v - mean) * (v - mean) / double(std::max<size_t>(1, bv.size() - 1));
      json st = json::array();
      for (double v : stt) st.push_back(jnum(v));
      methods[method] = {{"model", model}, {"steps_to_target", st},
                         {"median_steps_to_target", jnum(median(stt))},
                         {"best_values", bv}, {"best_mean", mean}, {"best_std", std::sqrt(var)}};
      method_median[p.name][method] = median(stt);
    }
    const double raw_t = method_median[p.name]["nadamw"];
    for (auto& [method, m] : methods.items()) {
      const double t = method_median[p.name][method];
      m["relative_steps"] = std::isfinite(t) && std::isfinite(raw_t) ? json(t / raw_t) : json(nullptr);
      // Analysis 7: compute saved.
      m["steps_saved"] = std::isfinite(t) && std::isfinite(raw_t) ? json(raw_t - t) : json(nullptr);
      m["seconds_saved"] =
          std::isfinite(t) && std::isfinite(raw_t) ? json((raw_t - t) * sec_per_step) : json(nullptr);
    }
    W["methods"] = methods;

    // Analyses 2 and 3: every setting of the bank, per seed.
    json settings = json::array();
    std::vector<std::pair<double, double>> fit_lawa, fit_all;
    for (const auto& st : bank.settings) {
      std::vector<double> stt, bv;
      for (auto& c : seed_curves) {
        stt.push_back(steps_to_target(c[st["name"].get<std::string>()], target, lower));
        bv.push_back(best_value(c[st["name"].get<std::string>()], lower));
      }
      json row = st;
      json s1 = json::array();
      for (double v : stt) s1.push_back(jnum(v));
      row["steps_to_target"] = s1;
      const double med = median(stt);
      row["median_steps_to_target"] = jnum(med);
      row["relative_steps"] = std::isfinite(med) && std::isfinite(raw_t) ? json(med / raw_t) : json(nullptr);
      double mean = 0;
      for (double v : bv) mean += v / double(bv.size());
      row["best_mean"] = mean;
      settings.push_back(row);
      if (std::isfinite(med)) {
        const double x = std::log10(st["horizon"].get<double>());
        fit_all.push_back({x, med});
        if (st["scheme"] == "lawa") fit_lawa.push_back({x, med});
      }
    }
    W["settings"] = settings;
    json fits = json::object();
    for (auto [name, pts] : {std::pair{"lawa", &fit_lawa}, std::pair{"all", &fit_all}}) {
      double c[3];
      if (quadratic_fit(*pts, c)) {
        json f = {{"c0", c[0]}, {"c1", c[1]}, {"c2", c[2]}, {"x", "log10(horizon)"},
                  {"points", pts->size()}};
        if (c[2] > 0) f["best_horizon"] = std::pow(10.0, -c[1] / (2 * c[2]));
        fits[name] = f;
      }
    }
    W["horizon_fit"] = fits;

    // Analysis 6 (first workload): decay to 0 / 0.5η / none, and a shorter schedule.
    if (wi == 0) {
      json rows = json::array();
      struct Variant {
        std::string label, dir;
        double final_fraction;     // of the peak learning rate, at the end of the decay
        double decay_fraction;     // of the hard budget over which the schedule runs
      };
      std::vector<Variant> variants;
      for (double f : cfg.schedule_final) {
        const std::string label = f == 0.0   ? "cosine to 0 (baseline)"
                                  : f == 1.0 ? "no decay (constant)"
                                             : "cosine to " + num(f) + "·lr";
        variants.push_back({label, f == 0.0 ? wdir + "/seed_0" : wdir + "/sched_final" + num(f), f, 1.0});
      }
      variants.push_back({"shorter: cosine to 0 at " + num(cfg.short_schedule) + "·budget",
                          wdir + "/sched_short", 0.0, cfg.short_schedule});
      for (const Variant& v : variants) {
        const std::string& dir = v.dir;
        if (dir != wdir + "/seed_0") {  // the baseline is seed 0's run itself
          const int64_t sched_steps =
              v.decay_fraction < 1.0 ? std::max<int64_t>(1, std::llround(v.decay_fraction * double(p.H))) : 0;
          runner.ensure({p.name, "schedule: " + v.label, dir, p.H,
                         run_sets(p.name, dir, p.H, p.eval_every_H, 0, best.lr, best.wd,
                                  best.warmup, bank, cfg.threads, v.final_fraction, sched_steps)});
          runner.finished_planned(p.name, p.H);
        }
        Curves c = read_curves(dir);
        rows.push_back({{"schedule", v.label}, {"dir", dir.substr(study_dir.size() + 1)},
                        {"final_fraction", v.final_fraction}, {"decay_fraction", v.decay_fraction},
                        {"raw_best", best_value(c["raw"], lower)},
                        {"lawa_best", best_value(c["lawa_rec"], lower)},
                        {"ema_best", best_value(c["ema_rec"], lower)},
                        {"raw_steps_to_target", jnum(steps_to_target(c["raw"], target, lower))},
                        {"lawa_steps_to_target", jnum(steps_to_target(c["lawa_rec"], target, lower))},
                        {"ema_steps_to_target", jnum(steps_to_target(c["ema_rec"], target, lower))}});
      }
      W["schedules"] = rows;
    }
    results["workloads"][p.name] = W;
    write_file_atomic(study_dir + "/results.json", results.dump(2) + "\n");  // partial results
  }

  // Scoring (AlgoPerf): ratios to the best method per workload, profile over τ ∈ [1, 4], score.
  json scoring;
  const std::vector<std::string> methods = {"nadamw", "nadamw+lawa", "nadamw+ema"};
  json ratios = json::object(), profile = json::object(), score = json::object();
  const int kTau = 301;
  for (const auto& m : methods) {
    json r = json::object();
    std::vector<double> rs;
    for (const auto& [w, mm] : method_median) {
      double best_t = kInf;
      for (const auto& [_, t] : mm) best_t = std::min(best_t, t);
      const double ratio = std::isfinite(mm.at(m)) && std::isfinite(best_t) ? mm.at(m) / best_t : kInf;
      r[w] = jnum(ratio);
      rs.push_back(ratio);
    }
    ratios[m] = r;
    json prof = json::array();
    double area = 0, prev = 0;
    for (int k = 0; k < kTau; ++k) {
      const double tau = 1.0 + 3.0 * k / (kTau - 1);
      double rho = 0;
      for (double x : rs) rho += x <= tau ? 1.0 / double(rs.size()) : 0.0;
      if (k > 0) area += 0.5 * (rho + prev) * (3.0 / (kTau - 1));
      prev = rho;
      if (k % 10 == 0) prof.push_back({tau, rho});
    }
    profile[m] = prof;
    score[m] = area / 3.0;
  }
  scoring["ratios"] = ratios;
  scoring["profile"] = profile;
  scoring["score"] = score;
  scoring["note"] = "score = area under the performance profile over tau in [1, 4], divided by 3";
  results["scoring"] = scoring;
  write_file_atomic(study_dir + "/results.json", results.dump(2) + "\n");
  if (!quiet) std::printf("wrote %s/results.json\n", study_dir.c_str());
}

}  // namespace wavg
