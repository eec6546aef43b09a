// The study: plan → run cache → analyses → scoring → results.json (see study.h). The runs of a
// workload come in three stages: the baseline grid at budget T, the chosen point with every seed
// at the hard budget H, and (first workload) the schedule variants of analysis 6.
#include "wavg/study/study.h"

#include <cstdio>
#include <filesystem>
#include <map>

#include "wavg/core/error.h"
#include "wavg/core/format.h"
#include "wavg/io/atomic_file.h"
#include "wavg/study/analyses.h"
#include "wavg/study/plan.h"
#include "wavg/study/run_cache.h"

namespace wavg {

namespace {

using study::json;

// The direction of a workload: every run must report the same one.
void take_direction(const study::RunRecord& r, const std::string& dir, study::WorkloadData* d,
                    bool first) {
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

// Stage 1: the baseline grid at budget T, seed 0, the recommended averagers riding along.
void run_grid(const study::WorkloadPlan& p, const StudyConfig& cfg, const std::string& wdir,
              study::RunCache* cache, study::WorkloadData* d) {
  for (const study::GridPoint& g : p.grid) {
    const std::string dir = wdir + "/" + study::grid_dir_name(g);
    const study::RunRecord r = cache->ensure(
        "grid lr=" + format_number(g.lr, 10) + " wd=" + format_number(g.weight_decay, 10),
        study::study_run_config(p, dir, p.T, /*seed=*/0, g, p.grid_bank, cfg.threads));
    take_direction(r, dir, d, d->grid.empty());
    d->grid.push_back({g.lr, g.weight_decay, g.warmup, r.curves});
  }
  d->chosen = study::choose_grid_point(d->grid, d->lower_is_better);
}

// Stage 2: the chosen point with every seed at the hard budget, the whole bank riding along.
void run_seeds(const study::WorkloadPlan& p, const StudyConfig& cfg, const std::string& wdir,
               study::RunCache* cache, study::WorkloadData* d) {
  const study::GridPoint best = p.grid[d->chosen];
  double seconds_per_step = 0;
  for (int64_t s = 0; s < cfg.seeds; ++s) {
    const std::string dir = wdir + "/seed_" + std::to_string(s);
    const study::RunRecord r =
        cache->ensure("seed " + std::to_string(s) + " (hard budget)",
                      study::study_run_config(p, dir, p.H, s, best, p.bank, cfg.threads));
    take_direction(r, dir, d, false);
    d->seeds.push_back(r.curves);
    seconds_per_step += r.train_wall_s / double(p.H) / double(cfg.seeds);
  }
  d->train_s_per_step = seconds_per_step;
}

// Stage 3 (analysis 6): the schedule variants at the chosen point, seed 0, hard budget. The
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
                                                p.bank, cfg.threads, &v));
      take_direction(r, dir, d, false);
    }
    d->schedules.push_back({v.label, "runs/" + p.name + "/" + v.dir_name, v.final_fraction,
                            v.decay_fraction, r.curves});
  }
}

json protocol_json(const StudyConfig& cfg) {
  return {{"seeds", cfg.seeds},
          {"eval_points", cfg.eval_points},
          {"steps_scale", cfg.steps_scale},
          {"lr_scale", cfg.lr_scale},
          {"warmup", cfg.warmup},
          {"recommended_horizon", cfg.recommended_horizon},
          {"target", "median over seeds of the best raw validation value within the first T "
                     "steps of the hard-budget runs"},
          {"hard_budget", "ceil(4/3 T)"}};
}

}  // namespace

void run_study(const StudyConfig& cfg, const std::string& study_dir, bool quiet) {
  std::error_code ec;
  std::filesystem::create_directories(study_dir, ec);
  WAVG_CHECK(!ec && std::filesystem::is_directory(study_dir), "study: cannot create the study ",
             "directory ", study_dir, (ec ? " (" + ec.message() + ")" : std::string()));
  const std::vector<study::WorkloadPlan> plans = study::plan_study(cfg);
  study::RunCache cache(quiet);
  int64_t total = 0;
  for (const study::WorkloadPlan& p : plans) {
    cache.plan(p.name, study::planned_steps(p, cfg.seeds));
    total += study::planned_steps(p, cfg.seeds);
  }
  if (!quiet)
    std::printf("wavg study: %zu workloads, %lld seeds, %lld training steps planned in %s\n",
                plans.size(), (long long)cfg.seeds, (long long)total, study_dir.c_str());

  json results = {{"schema", "study-v2"}, {"protocol", protocol_json(cfg)},
                  {"workloads", json::object()}};
  std::map<std::string, std::map<std::string, double>> times;  // workload -> method -> steps
  const std::string results_path = study_dir + "/results.json";
  for (const study::WorkloadPlan& p : plans) {
    study::WorkloadData d;
    d.name = p.name;
    d.T = p.T;
    d.H = p.H;
    d.eval_every = p.eval_every;
    d.bank = p.bank;
    const std::string wdir = study::workload_dir(study_dir, p);
    run_grid(p, cfg, wdir, &cache, &d);
    run_seeds(p, cfg, wdir, &cache, &d);
    run_schedules(p, cfg, study_dir, &cache, &d);
    study::WorkloadAnalysis a = study::analyse_workload(d);
    results["workloads"][p.name] = std::move(a.results);
    times[p.name] = a.method_time;
    write_file_atomic(results_path, results.dump(2) + "\n");  // partial: no scoring yet
  }
  results["scoring"] = study::scoring_json(times);
  write_file_atomic(results_path, results.dump(2) + "\n");
  if (!quiet) std::printf("wrote %s\n", results_path.c_str());
}

}  // namespace wavg
