// The study's configuration: a TOML file with the keys of StudyConfig and a [quick] table for
// `--quick` (see study.h).
#include <algorithm>
#include <toml++/toml.h>

#include "wavg/core/error.h"
#include "wavg/core/schedule.h"
#include "wavg/study/study.h"
#include "wavg/train/config.h"
#include "wavg/workloads/defaults.h"

namespace wavg {

namespace {

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

// `[[arm]]`: one table per optimizer arm (ArmConfig).
ArmConfig read_arm(const toml::table& t, const std::string& where) {
  static const char* kKeys[] = {"name",        "optimizer",       "lr_scale",
                                "decay",       "lookahead_k",     "lookahead_alpha",
                                "workloads",   "shampoo_precondition_frequency"};
  for (auto&& [k, v] : t)
    WAVG_CHECK(std::find(std::begin(kKeys), std::end(kKeys), std::string(k.str())) !=
                   std::end(kKeys),
               "study config: unknown key '", where, "arm.", std::string(k.str()), "'");
  ArmConfig a;
  const auto name = t["name"].value<std::string>();
  WAVG_CHECK(name.has_value(), "study config: every [[arm]] needs a string 'name'");
  a.name = *name;
  if (const toml::node* n = t.get("optimizer")) {
    WAVG_CHECK(n->is_string(), "study config: arm ", a.name, ": 'optimizer' must be a string");
    a.optimizer = n->as_string()->get();
  }
  read_list(t, "lr_scale", &a.lr_scale);
  read_list(t, "workloads", &a.workloads);
  if (const toml::node* n = t.get("decay")) {
    WAVG_CHECK(n->is_boolean(), "study config: arm ", a.name, ": 'decay' must be true or false");
    a.decay = n->as_boolean()->get();
  }
  for (const auto& [key, field] : {std::pair{"lookahead_k", &a.lookahead_k},
                                    std::pair{"shampoo_precondition_frequency",
                                              &a.shampoo_precondition_frequency}}) {
    const toml::node* n = t.get(key);
    if (!n) continue;
    WAVG_CHECK(n->is_integer(), "study config: arm ", a.name, ": '", key, "' must be an integer");
    *field = n->as_integer()->get();
  }
  if (const toml::node* n = t.get("lookahead_alpha")) {
    const auto v = n->value<double>();
    WAVG_CHECK(v.has_value(), "study config: arm ", a.name, ": 'lookahead_alpha' must be a number");
    a.lookahead_alpha = *v;
  }
  return a;
}

void read_arms(const toml::node& n, const std::string& where, std::vector<ArmConfig>* out) {
  WAVG_CHECK(n.is_array_of_tables(), "study config: '", where, "arm' must be [[arm]] tables");
  out->clear();
  for (const auto& e : *n.as_array()) out->push_back(read_arm(*e.as_table(), where));
}

void apply_table(const toml::table& t, StudyConfig* c, const std::string& where) {
  static const char* kKeys[] = {
      "workloads", "steps", "batch_size", "steps_scale", "seeds", "target_seeds", "eval_fraction",
      "bank_points", "lr_scale", "weight_decay", "warmup", "lawa_window", "lawa_every", "ema_beta",
      "ema_every", "recommended_horizon", "schedule_final", "short_schedule", "lm_workload",
      "lm_steps", "lm_batch_size", "lm_lr_scale", "lm_final_fraction", "lm_warmup",
      "lm_weight_decay", "lm_clip", "threads", "quick", "arm", "lawa_exp_alpha"};
  for (auto&& [k, v] : t) {
    const std::string key(k.str());
    WAVG_CHECK(std::find(std::begin(kKeys), std::end(kKeys), key) != std::end(kKeys),
               "study config: unknown key '", where, key, "'");
  }
  read_list(t, "workloads", &c->workloads);
  read_list(t, "steps", &c->steps);
  read_list(t, "batch_size", &c->batch_size);
  read_list(t, "lr_scale", &c->lr_scale);
  read_list(t, "weight_decay", &c->weight_decay);
  read_list(t, "warmup", &c->warmup);
  read_list(t, "lawa_window", &c->lawa_window);
  read_list(t, "lawa_every", &c->lawa_every);
  read_list(t, "ema_beta", &c->ema_beta);
  read_list(t, "ema_every", &c->ema_every);
  read_list(t, "schedule_final", &c->schedule_final);
  read_list(t, "lm_lr_scale", &c->lm_lr_scale);
  read_list(t, "lm_final_fraction", &c->lm_final_fraction);
  read_list(t, "lm_warmup", &c->lm_warmup);
  read_list(t, "lm_weight_decay", &c->lm_weight_decay);
  read_list(t, "lm_clip", &c->lm_clip);
  read_list(t, "lawa_exp_alpha", &c->lawa_exp_alpha);
  if (const toml::node* arms = t.get("arm")) read_arms(*arms, where, &c->arms);
  if (auto v = t["steps_scale"].value<double>()) c->steps_scale = *v;
  if (auto v = t["seeds"].value<int64_t>()) c->seeds = *v;
  if (auto v = t["target_seeds"].value<int64_t>()) c->target_seeds = *v;
  if (auto v = t["eval_fraction"].value<double>()) c->eval_fraction = *v;
  if (auto v = t["bank_points"].value<int64_t>()) c->bank_points = *v;
  if (auto v = t["recommended_horizon"].value<double>()) c->recommended_horizon = *v;
  if (auto v = t["short_schedule"].value<double>()) c->short_schedule = *v;
  if (auto v = t["lm_workload"].value<std::string>()) c->lm_workload = *v;
  if (auto v = t["lm_steps"].value<int64_t>()) c->lm_steps = *v;
  if (auto v = t["lm_batch_size"].value<int64_t>()) c->lm_batch_size = *v;
  if (auto v = t["threads"].value<int64_t>()) c->threads = int(*v);
}

void validate_lists(const StudyConfig& c) {
  for (double s : c.lr_scale) WAVG_CHECK(s > 0, "study config: lr_scale must be > 0, got ", s);
  for (double s : c.lm_lr_scale) WAVG_CHECK(s > 0, "study config: lm_lr_scale must be > 0, got ", s);
  for (int64_t w : c.lawa_window) WAVG_CHECK(w >= 1, "study config: lawa_window must be >= 1, got ", w);
  for (int64_t e : c.lawa_every) WAVG_CHECK(e >= 1, "study config: lawa_every must be >= 1, got ", e);
  for (int64_t e : c.ema_every) WAVG_CHECK(e >= 1, "study config: ema_every must be >= 1, got ", e);
  for (double b : c.ema_beta)
    WAVG_CHECK(b >= 0 && b < 1, "study config: ema_beta must be in [0, 1), got ", b);
  for (double f : c.lm_final_fraction)
    WAVG_CHECK(f >= 0 && f <= 1, "study config: lm_final_fraction must be in [0, 1], got ", f);
  for (double w : c.lm_warmup)
    WAVG_CHECK(w >= 0 && w < 1, "study config: lm_warmup must be in [0, 1), got ", w);
  for (double x : c.lm_clip) WAVG_CHECK(x >= 0, "study config: lm_clip must be >= 0, got ", x);
  for (int64_t b : c.batch_size) WAVG_CHECK(b >= 0, "study config: batch_size must be >= 0, got ", b);
}

// The arm's optimizer and schedule by `wavg train`'s own rules (train/config.cpp: names, Lookahead,
// Schedule-Free without decay, ...), its message prefixed with the arm.
void check_arm_optimizer(const StudyConfig& c, const ArmConfig& a) {
  RunConfig r = default_run_config(c.workloads.front());
  r.optimizer.name = a.optimizer;
  r.optimizer.lookahead_k = a.lookahead_k;
  r.optimizer.lookahead_alpha = a.lookahead_alpha;
  if (a.shampoo_precondition_frequency > 0)
    r.optimizer.shampoo_precondition_frequency = a.shampoo_precondition_frequency;
  if (!a.decay) r.schedule.kind = ScheduleKind::kConstant;
  try {
    validate(r);
  } catch (const Error& e) {
    std::string what = e.what();
    if (what.rfind("config: ", 0) == 0) what.erase(0, 8);
    throw Error("study config: arm " + a.name + ": " + what);
  }
}

void validate_arm(const StudyConfig& c, const ArmConfig& a) {
  WAVG_CHECK(!a.name.empty() && a.name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") ==
                                    std::string::npos,
             "study config: arm name '", a.name, "' must be lower-case letters, digits and _");
  WAVG_CHECK(a.name != "nadamw", "study config: arm name 'nadamw' is the baseline's");
  WAVG_CHECK(!a.lr_scale.empty(), "study config: arm ", a.name, ": empty 'lr_scale'");
  for (double s : a.lr_scale)
    WAVG_CHECK(s > 0, "study config: arm ", a.name, ": lr_scale must be > 0, got ", s);
  WAVG_CHECK(a.shampoo_precondition_frequency >= 0, "study config: arm ", a.name,
             ": shampoo_precondition_frequency must be >= 0 (0: the optimizer's default), got ",
             a.shampoo_precondition_frequency);
  for (const std::string& w : a.workloads)
    WAVG_CHECK(std::find(c.workloads.begin(), c.workloads.end(), w) != c.workloads.end(),
               "study config: arm ", a.name, ": workload '", w, "' is not in 'workloads'");
  check_arm_optimizer(c, a);
}

void validate(const StudyConfig& c) {
  WAVG_CHECK(!c.workloads.empty(), "study config: 'workloads' is empty");
  for (const auto& w : c.workloads) {
    workload_defaults(w);
    WAVG_CHECK(w != "lm_protocol", "study config: 'lm_protocol' names a part, not a workload");
  }
  if (!c.lm_workload.empty()) workload_defaults(c.lm_workload);
  WAVG_CHECK(c.steps.empty() || c.steps.size() == c.workloads.size(),
             "study config: 'steps' needs one budget per workload (", c.workloads.size(), ")");
  WAVG_CHECK(c.batch_size.empty() || c.batch_size.size() == c.workloads.size(),
             "study config: 'batch_size' needs one value per workload (", c.workloads.size(), ")");
  WAVG_CHECK(c.seeds >= 1, "study config: 'seeds' must be >= 1, got ", c.seeds);
  WAVG_CHECK(c.target_seeds >= 1 && c.target_seeds <= 1000, "study config: 'target_seeds' must be ",
             "in [1, 1000], got ", c.target_seeds);
  WAVG_CHECK(c.seeds <= 1000, "study config: 'seeds' must be <= 1000 (target seeds start at 1000)",
             ", got ", c.seeds);
  WAVG_CHECK(c.eval_fraction > 0 && c.eval_fraction <= 0.5, "study config: 'eval_fraction' must ",
             "be in (0, 0.5], got ", c.eval_fraction);
  WAVG_CHECK(c.bank_points >= 2, "study config: 'bank_points' must be >= 2, got ", c.bank_points);
  WAVG_CHECK(c.steps_scale > 0 && c.steps_scale <= 10, "study config: 'steps_scale' must be in ",
             "(0, 10], got ", c.steps_scale);
  WAVG_CHECK(!c.lr_scale.empty() && !c.warmup.empty(), "study config: empty grid");
  WAVG_CHECK(c.lm_workload.empty() || (!c.lm_lr_scale.empty() && !c.lm_final_fraction.empty() &&
                                       !c.lm_warmup.empty() && !c.lm_clip.empty()),
             "study config: empty LM grid");
  WAVG_CHECK(c.lm_steps >= 0, "study config: 'lm_steps' must be >= 0, got ", c.lm_steps);
  validate_lists(c);
  for (size_t i = 0; i < c.arms.size(); ++i) {
    validate_arm(c, c.arms[i]);
    for (size_t j = 0; j < i; ++j)
      WAVG_CHECK(c.arms[j].name != c.arms[i].name, "study config: two arms named ", c.arms[i].name);
  }
  for (double a : c.lawa_exp_alpha)
    WAVG_CHECK(a > 0 && a < 1, "study config: lawa_exp_alpha must be in (0, 1), got ", a);
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
    } else {  // built-in quick profile: every stage, small budgets, 5 % resolution
      c.steps_scale = 0.12;
      c.seeds = 2;
      c.target_seeds = 1;
      c.eval_fraction = 0.05;
      c.bank_points = 8;
      c.lr_scale = {0.5, 1.0};
      c.lawa_window = {5, 20};
      c.lawa_every = {1, 4};
      c.ema_beta = {0.9};
      c.ema_every = {1, 4};
      c.schedule_final = {0.0, 1.0};
      c.lm_lr_scale = {1.0};
      c.lm_final_fraction = {0.0, 0.1};
      c.lm_warmup = {0.1};
      c.lm_clip = {1.0};
    }
  }
  validate(c);
  return c;
}

std::vector<std::string> study_parts(const StudyConfig& c) {
  std::vector<std::string> parts = c.workloads;
  if (!c.lm_workload.empty()) parts.push_back("lm_protocol");
  return parts;
}

}  // namespace wavg
