// The study: plan → run cache → analyses → parts → merged results.json (see study.h). A workload's
// runs come in four stages: the baseline grid at budget T, the target-setting runs at T, the
// scoring runs at the hard budget H, and (first workload) the schedule variants of analysis 6. The
// LM protocol is a part of its own: an AdamW grid at H, target runs and scoring runs.
#include "wavg/study/study.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>

#include "wavg/core/error.h"
#include "wavg/core/format.h"
#include "wavg/io/atomic_file.h"
#include "wavg/study/analyses.h"
#include "wavg/study/conclusions.h"
#include "wavg/study/entry_analyses.h"
#include "wavg/study/json_view.h"
#include "wavg/study/part_definitions.h"
#include "wavg/study/plan.h"
#include "wavg/study/run_cache.h"

namespace wavg {

namespace {

using study::json;

// The direction of a workload: every run must report the same one.
template <typename Data>
void take_direction(const study::RunRecord& r, const std::string& dir, Data* d, bool first) {
  if (first) {
    d->metric = r.metric;
    d->lower_is_better = r.lower_is_better;
    return;
  }
  WAVG_CHECK(r.metric == d->metric && r.lower_is_better == d->lower_is_better, "study: ", dir,
             " reports the metric ", r.metric, " (", study::direction_name(r.lower_is_better),
             "), other runs of ", d->name, " report ", d->metric, " (",
             study::direction_name(d->lower_is_better), ")");
}

// The fields a workload's data and the LM protocol's data take from their plans.
template <typename Plan, typename Data>
void start_data(const Plan& p, Data* d) {
  d->name = p.name;
  d->H = p.H;
  d->eval_every = p.eval_every;
  d->bank = p.bank;
  d->target_seeds = p.target_seeds;
  d->scoring_seeds = p.scoring_seeds;
}

// Seconds of training and evaluation of a finished run (summary.json).
void add_time(const study::RunRecord& r, study::WorkloadData* d) {
  d->train_s += r.train_wall_s;
  d->eval_s += r.eval_wall_s;
}

// Stage 1: the baseline grid at budget T, seed 0, the pre-registered averagers riding along.
void run_grid(const study::WorkloadPlan& p, const StudyConfig& cfg, const std::string& wdir,
              study::RunCache* cache, study::WorkloadData* d) {
  for (const study::GridPoint& g : p.grid) {
    const std::string dir = wdir + "/" + study::grid_dir_name(g);
    const study::RunRecord r = cache->ensure(
        "grid lr=" + format_number(g.lr, 10) + " wd=" + format_number(g.weight_decay, 10),
        study::study_run_config(p, dir, p.T, /*seed=*/0, g, p.grid_bank, p.bank_eval_every,
                                cfg.threads));
    take_direction(r, dir, d, d->grid.empty());
    add_time(r, d);
    d->grid.push_back({g.lr, g.weight_decay, g.warmup, r.curves});
  }
  d->chosen = study::choose_grid_point(d->grid, d->lower_is_better);
}

// Stage 2: target-setting runs, the chosen point at budget T (decaying at T), seeds apart from the
// scoring seeds, the raw model only, evaluated every eval_every steps.
void run_targets(const study::WorkloadPlan& p, const StudyConfig& cfg, const std::string& wdir,
                 study::RunCache* cache, study::WorkloadData* d) {
  for (int64_t s : p.target_seeds) {
    const std::string dir = wdir + "/target_" + std::to_string(s);
    const study::RunRecord r = cache->ensure(
        "target seed " + std::to_string(s) + " (budget T)",
        study::study_run_config(p, dir, p.T, s, p.grid[d->chosen], {}, p.eval_every, cfg.threads));
    take_direction(r, dir, d, false);
    add_time(r, d);
    d->target_runs.push_back(study::model_curve(r.curves, "raw"));
  }
}

// Stage 3: scoring runs, the chosen point with every scoring seed at H, the whole bank riding.
void run_seeds(const study::WorkloadPlan& p, const StudyConfig& cfg, const std::string& wdir,
               study::RunCache* cache, study::WorkloadData* d) {
  const study::GridPoint best = p.grid[d->chosen];
  double seconds_per_step = 0;
  for (int64_t s : p.scoring_seeds) {
    const std::string dir = wdir + "/seed_" + std::to_string(s);
    const study::RunRecord r = cache->ensure(
        "seed " + std::to_string(s) + " (hard budget)",
        study::study_run_config(p, dir, p.H, s, best, p.bank, p.eval_every, cfg.threads));
    take_direction(r, dir, d, false);
    add_time(r, d);
    d->seeds.push_back(r.curves);
    seconds_per_step += r.train_wall_s / double(p.H) / double(p.scoring_seeds.size());
  }
  d->train_s_per_step = seconds_per_step;
}

// Stage 4 (analysis 6): the schedule variants at the chosen point, seed 0, hard budget. The
// baseline (cosine to 0 over H) is seed 0's run itself.
void run_schedules(const study::WorkloadPlan& p, const StudyConfig& cfg,
                   const std::string& study_dir, study::RunCache* cache, study::WorkloadData* d) {
  const std::string wdir = study::workload_dir(study_dir, p);
  for (const study::ScheduleVariant& v : p.schedules) {
    const std::string dir = wdir + "/" + v.dir_name;
    study::RunRecord r;
    if (v.dir_name == "seed_0") {
      r.curves = d->seeds.at(0);
    } else {
      r = cache->ensure("schedule: " + v.label,
                        study::study_run_config(p, dir, p.H, /*seed=*/0, p.grid[d->chosen],
                                                p.bank, p.eval_every, cfg.threads, &v));
      take_direction(r, dir, d, false);
      add_time(r, d);
    }
    d->schedules.push_back({v.label, "runs/" + p.name + "/" + v.dir_name, v.final_fraction,
                            v.decay_fraction, r.curves});
  }
}

// Stage 5 (issue 13): each optimizer arm's grid at T (seed 0, the pre-registered averagers riding
// coarsely), its point chosen by the raw model's best value, then every scoring seed at H with the
// pre-registered averagers evaluated as finely as the baseline's.
void run_arms(const study::WorkloadPlan& p, const StudyConfig& cfg, const std::string& wdir,
              study::RunCache* cache, study::WorkloadData* d) {
  for (const study::ArmPlan& arm : p.arms) {
    study::ArmRuns a{arm.name, arm.optimizer, arm.decay, arm.lookahead_k, arm.lookahead_alpha,
                     {}, 0, {}};
    for (const study::GridPoint& g : arm.grid) {
      const std::string dir = study::arm_dir(wdir, arm, study::grid_dir_name(g));
      const study::RunRecord r = cache->ensure(
          arm.name + " grid lr=" + format_number(g.lr, 10),
          study::study_run_config(p, dir, p.T, /*seed=*/0, g, p.grid_bank, p.bank_eval_every,
                                  cfg.threads, nullptr, &arm));
      take_direction(r, dir, d, false);
      add_time(r, d);
      a.grid.push_back({g.lr, g.weight_decay, g.warmup, r.curves});
    }
    a.chosen = study::choose_grid_point(a.grid, d->lower_is_better);
    for (int64_t s : p.scoring_seeds) {
      const std::string dir = study::arm_dir(wdir, arm, "seed_" + std::to_string(s));
      const study::RunRecord r = cache->ensure(
          arm.name + " seed " + std::to_string(s) + " (hard budget)",
          study::study_run_config(p, dir, p.H, s, arm.grid[a.chosen], p.arm_bank, p.eval_every,
                                  cfg.threads, nullptr, &arm));
      take_direction(r, dir, d, false);
      add_time(r, d);
      a.seeds.push_back(r.curves);
    }
    d->arms.push_back(std::move(a));
  }
}

json run_workload(const study::WorkloadPlan& p, const StudyConfig& cfg,
                  const std::string& study_dir, study::RunCache* cache) {
  study::WorkloadData d;
  start_data(p, &d);
  d.T = p.T;
  d.bank_eval_every = p.bank_eval_every;
  const std::string wdir = study::workload_dir(study_dir, p);
  run_grid(p, cfg, wdir, cache, &d);
  run_targets(p, cfg, wdir, cache, &d);
  run_seeds(p, cfg, wdir, cache, &d);
  run_schedules(p, cfg, study_dir, cache, &d);
  run_arms(p, cfg, wdir, cache, &d);
  json entry = study::analyse_workload(d).results;
  if (!cfg.batch_size.empty() && p.batch_size > 0) entry["batch_size"] = p.batch_size;
  return entry;
}

// The LM protocol (paper §7): AdamW grid at H (raw only, no average looked at), the best point's
// value at ⌊H/3⌋ over the target seeds, then the scoring seeds with the pre-registered averages.
json run_lm(const study::LmPlan& p, const StudyConfig& cfg, const std::string& study_dir,
            study::RunCache* cache) {
  study::LmData d;
  start_data(p, &d);
  d.target_step = p.target_step;
  const std::string wdir = study_dir + "/runs/lm_protocol";
  for (const study::LmGridPoint& g : p.grid) {
    const std::string dir = wdir + "/" + study::lm_grid_dir_name(g);
    const study::RunRecord r = cache->ensure(
        "lm grid lr=" + format_number(g.lr, 4) + " ff=" + format_number(g.final_fraction, 3) +
            " clip=" + format_number(g.clip_norm, 3),
        study::lm_run_config(p, dir, 0, g, {}, p.grid_eval_every, cfg.threads));
    take_direction(r, dir, &d, d.grid.empty());
    d.grid.push_back({g.lr, g.final_fraction, g.warmup, g.weight_decay, g.clip_norm,
                      study::model_curve(r.curves, "raw")});
  }
  d.chosen = study::choose_lm_point(d.grid, d.lower_is_better);
  const study::LmGridPoint best = p.grid[d.chosen];
  for (int64_t s : p.target_seeds) {
    const std::string dir = wdir + "/target_" + std::to_string(s);
    const study::RunRecord r = cache->ensure(
        "lm target seed " + std::to_string(s),
        study::lm_run_config(p, dir, s, best, {}, p.eval_every, cfg.threads));
    take_direction(r, dir, &d, false);
    d.target_runs.push_back(study::model_curve(r.curves, "raw"));
  }
  for (int64_t s : p.scoring_seeds) {
    const std::string dir = wdir + "/seed_" + std::to_string(s);
    const study::RunRecord r = cache->ensure(
        "lm seed " + std::to_string(s),
        study::lm_run_config(p, dir, s, best, p.bank, p.eval_every, cfg.threads));
    take_direction(r, dir, &d, false);
    d.seeds.push_back(r.curves);
  }
  return study::analyse_lm(d).results;
}

json protocol_json(const StudyConfig& cfg) {
  json p = {{"seeds", cfg.seeds},
          {"target_seeds", cfg.target_seeds},
          {"eval_fraction", cfg.eval_fraction},
          {"bank_points", cfg.bank_points},
          {"steps_scale", cfg.steps_scale},
          {"lr_scale", cfg.lr_scale},
          {"warmup", cfg.warmup},
          {"recommended_horizon", cfg.recommended_horizon},
          {"pre_registered", "LAWA L = 20 and EMA beta = 19/21 at nu = max(1, round(h*H/20))"},
          {"target", "median over the target-setting runs (budget T, schedule decaying at T, "
                     "seeds apart from the scoring seeds) of their best validation value"},
          {"budget_H", "ceil(4/3 T)"},
          {"lm_target", "median over the LM target seeds of the tuned AdamW baseline's value at "
                        "step floor(H/3)"}};
  // Keys of the breadth study only, so that the default study's committed parts stay valid.
  if (!cfg.lawa_exp_alpha.empty()) p["lawa_exp_alpha"] = cfg.lawa_exp_alpha;
  for (const ArmConfig& a : cfg.arms)
    p["arms"][a.name] = {{"optimizer", a.optimizer}, {"lr_scale", a.lr_scale},
                         {"decay", a.decay}, {"lookahead_k", a.lookahead_k},
                         {"lookahead_alpha", a.lookahead_alpha}, {"workloads", a.workloads},
                         {"shampoo_precondition_frequency", a.shampoo_precondition_frequency}};
  return p;
}

std::string part_path(const std::string& study_dir, const std::string& part) {
  return study_dir + "/parts/" + part + ".json";
}

// The runs added to `part` (STUDY_DIR/additions/*.json, schema study-v4-addition, in file-name
// order): a job "lm_*" belongs to lm_protocol, any other to its workload's part.
std::vector<json> additions_of(const std::string& study_dir, const std::string& part) {
  std::vector<std::string> paths;
  std::error_code ec;
  for (const auto& f : std::filesystem::directory_iterator(study_dir + "/additions", ec))
    if (f.path().extension() == ".json") paths.push_back(f.path().string());
  std::sort(paths.begin(), paths.end());
  std::vector<json> out;
  for (const std::string& path : paths) {
    json doc = report::read_json_file(path);
    WAVG_CHECK(doc.value("schema", "") == "study-v4-addition" && doc.contains("job") &&
                   doc["job"].is_string() && doc.contains("workload") && doc["workload"].is_string(),
               "study: ", path, " is not an addition (schema study-v4-addition with a job and a ",
               "workload)");
    const std::string job = doc["job"].get<std::string>();
    const std::string owner = job.rfind("lm_", 0) == 0 ? "lm_protocol" : doc["workload"].get<std::string>();
    if (owner == part) out.push_back(std::move(doc));
  }
  return out;
}

// The protocol as it bears on `part`: an arm restricted to other workloads is left out, so that
// adding such an arm invalidates only the parts it runs on.
json protocol_of_part(json protocol, const std::string& part) {
  if (!protocol.is_object() || !protocol.contains("arms") || !protocol["arms"].is_object())
    return protocol;  // compared as it stands (a malformed one then differs)
  json arms = json::object();
  for (const auto& [name, a] : protocol["arms"].items()) {
    const bool listed = a.is_object() && a.contains("workloads") && a["workloads"].is_array();
    const json w = listed ? a["workloads"] : json::array();
    if (w.empty() || std::find(w.begin(), w.end(), json(part)) != w.end()) arms[name] = a;
  }
  protocol["arms"] = arms;
  return protocol;
}

// Every part present, checked against today's protocol and workload definitions (another accepted
// with a warning if `accept_other`), merged with the AlgoPerf scoring over the workloads present.
void merge_parts(const StudyConfig& cfg, const std::string& study_dir, bool quiet,
                 bool accept_other) {
  const json protocol = protocol_json(cfg);
  json results = {{"schema", "study-v4"}, {"protocol", protocol},
                  {"workload_definitions", json::object()}, {"workloads", json::object()}};
  std::map<std::string, std::map<std::string, double>> times;  // workload -> method -> steps
  json missing = json::array();
  for (const std::string& part : study_parts(cfg)) {
    const std::string path = part_path(study_dir, part);
    if (!file_exists(path)) {
      missing.push_back(part);
      continue;
    }
    const json doc = report::read_json_file(path);
    WAVG_CHECK(doc.contains("protocol") && doc.contains("entry") &&
                   protocol_of_part(doc["protocol"], part) == protocol_of_part(protocol, part),
               "study: ", path, " was written under another protocol (or is not a part); rerun ",
               "that part with this configuration or remove the file");
    study::merge_part_definitions(doc, path, part == "lm_protocol" ? cfg.lm_workload : part,
                                  accept_other, &results["workload_definitions"]);
    // Issue 25's intervals, one-grid comparisons, tuned rows and fixed-budget values come from
    // the part's entry alone, so that committed parts rebuild results.json without run directories.
    json entry = doc["entry"];
    study::add_entry_analyses(&entry, part == "lm_protocol", additions_of(study_dir, part));
    if (part == "lm_protocol") {
      results["lm_protocol"] = entry;
      continue;
    }
    results["workloads"][part] = entry;
    for (const auto& [method, e] : doc["entry"].at("steps_to_target").items()) {
      if (method == "selected") continue;
      const json& m = e.at("median");
      times[part][method] = m.is_string() ? study::kMiss : m.get<double>();
    }
  }
  if (!missing.empty()) results["missing_parts"] = missing;
  if (!times.empty()) results["scoring"] = study::scoring_json(times);
  results["conclusions"] = study::conclusions_json(results);
  write_file_atomic(study_dir + "/results.json", results.dump(2) + "\n");
  if (!quiet)
    std::printf("wrote %s/results.json (%zu of %zu parts)\n", study_dir.c_str(),
                study_parts(cfg).size() - missing.size(), study_parts(cfg).size());
}

}  // namespace

void merge_study(const StudyConfig& cfg, const std::string& study_dir, bool quiet,
                 bool accept_other_definitions) {
  WAVG_CHECK(std::filesystem::is_directory(study_dir + "/parts"), "study: ", study_dir,
             " has no parts/ directory to merge");
  merge_parts(cfg, study_dir, quiet, accept_other_definitions);
}

void run_study(const StudyConfig& cfg, const std::string& study_dir, bool quiet,
               const std::vector<std::string>& only, bool accept_other_definitions) {
  const std::vector<std::string> all = study_parts(cfg);
  for (const std::string& p : only)
    WAVG_CHECK(std::find(all.begin(), all.end(), p) != all.end(), "study: --workload ", p,
               " is not a part of this study (its parts: ", [&] {
                 std::string s;
                 for (const std::string& a : all) s += (s.empty() ? "" : ", ") + a;
                 return s;
               }(), ")");
  std::error_code ec;
  std::filesystem::create_directories(study_dir + "/parts", ec);
  WAVG_CHECK(!ec && std::filesystem::is_directory(study_dir), "study: cannot create the study ",
             "directory ", study_dir, (ec ? " (" + ec.message() + ")" : std::string()));
  const auto wanted = [&](const std::string& p) {
    return only.empty() || std::find(only.begin(), only.end(), p) != only.end();
  };
  const std::vector<study::WorkloadPlan> plans = study::plan_study(cfg);
  study::RunCache cache(quiet);
  int64_t total = 0;
  for (const study::WorkloadPlan& p : plans)
    if (wanted(p.name)) cache.plan(p.name, study::planned_steps(p)), total += study::planned_steps(p);
  std::optional<study::LmPlan> lm;
  if (!cfg.lm_workload.empty() && wanted("lm_protocol")) {
    lm = study::plan_lm(cfg);
    cache.plan(lm->name, study::planned_steps(*lm));
    total += study::planned_steps(*lm);
  }
  if (!quiet)
    std::printf("wavg study: %lld scoring and %lld target seeds, %lld training steps planned in %s\n",
                (long long)cfg.seeds, (long long)cfg.target_seeds, (long long)total,
                study_dir.c_str());
  const json protocol = protocol_json(cfg);
  for (const study::WorkloadPlan& p : plans) {
    if (!wanted(p.name)) continue;
    const json part = {{"schema", "study-v3-part"}, {"protocol", protocol}, {"part", p.name},
                       {"workload_definitions", study::part_definitions_json(p.name)},
                       {"entry", run_workload(p, cfg, study_dir, &cache)}};
    write_file_atomic(part_path(study_dir, p.name), part.dump(2) + "\n");
  }
  if (lm) {
    const json part = {{"schema", "study-v3-part"}, {"protocol", protocol}, {"part", "lm_protocol"},
                       {"workload_definitions", study::part_definitions_json(lm->name)},
                       {"entry", run_lm(*lm, cfg, study_dir, &cache)}};
    write_file_atomic(part_path(study_dir, "lm_protocol"), part.dump(2) + "\n");
  }
  merge_parts(cfg, study_dir, quiet, accept_other_definitions);
}

}  // namespace wavg
