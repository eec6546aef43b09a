// Issue 25 item 6: the LM protocol's bank (the paper's Figs. 9, 13, 14 and its Table 4), from the
// runs of the addition "lm_bank" (scripts/study_extra_runs.py): the protocol's five scoring seeds
// run again at the chosen grid point with LAWA L×ν and EMA β×ν riding, every setting and the raw
// model evaluated on one coarse grid. The pre-registered pair keeps the part's curves (every 1 % of
// H). The rows have the form of a workload's "settings" (analyses.h bank_rows), so that the one-grid
// comparison, the horizon fit and the leave-one-seed-out tuned row are computed as for a workload.
#pragma once

#include <nlohmann/json.hpp>

#include "wavg/study/json_view.h"

namespace wavg::study {

using json = nlohmann::ordered_json;

struct LmBank {
  json settings;      // bank_rows over the scoring seeds, in the addition's bank order
  json reproduction;  // the addition's raw model against the part's on their shared steps
  int64_t eval_every = 0;  // the bank's grid
};

// `entry`: the LM protocol's entry (direction, target, budget_H, scoring_seeds, curves of raw,
// lawa_rec, ema_rec). Throws wavg::Error naming the run or key if the addition lacks a scoring
// seed, has another budget, or a setting without curves.
LmBank lm_bank(const report::JsonView& entry, const report::JsonView& addition);

}  // namespace wavg::study
