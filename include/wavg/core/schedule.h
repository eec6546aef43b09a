// Learning-rate schedules as pure functions of the step (DESIGN.md §3), in the manner of nanoGPT's
// get_lr(it): the torch adapter only writes lr_at(...) into the optimizer's param groups.
#pragma once

#include <cstdint>
#include <string>

namespace wavg {

enum class ScheduleKind {
  kConstant,  // η after warmup
  kCosine,    // warmup, then cosine from η to final_fraction·η at total_steps
  kLinear,    // warmup, then linear from η to final_fraction·η at total_steps
  kWsd,       // warmup-stable-decay: η until (1 - decay_fraction)·T, then linear to final·η
};

struct Schedule {
  ScheduleKind kind = ScheduleKind::kCosine;
  double lr = 1e-3;               // peak learning rate η
  int64_t warmup_steps = 0;       // steps; linear from η/warmup at step 0... to η at warmup
  int64_t total_steps = 1;        // T: where the decay ends
  double final_fraction = 0.0;    // fraction of η at T (0: decay to zero, 1: constant)
  double decay_fraction = 0.2;    // WSD only: fraction of T spent decaying
};

ScheduleKind parse_schedule_kind(const std::string& s);  // "cosine", "linear", "constant", "wsd"
const char* schedule_kind_name(ScheduleKind k);
// Throws wavg::Error naming a bad field and its value.
void validate(const Schedule& s);
// Learning rate for the update that produces step+1 (step counts updates already done). Warmup is
// linear: lr·(step+1)/warmup for step < warmup. Past total_steps the final value holds.
double lr_at(const Schedule& s, int64_t step);

}  // namespace wavg
