// Learning-rate schedules.
#include "wavg/core/schedule.h"

#include <algorithm>
#include <cmath>

#include "wavg/core/error.h"

namespace wavg {

ScheduleKind parse_schedule_kind(const std::string& s) {
  if (s == "cosine") return ScheduleKind::kCosine;
  if (s == "linear") return ScheduleKind::kLinear;
  if (s == "constant") return ScheduleKind::kConstant;
  if (s == "wsd") return ScheduleKind::kWsd;
  throw Error("schedule: unknown kind '" + s + "' (expected cosine, linear, constant or wsd)");
}

const char* schedule_kind_name(ScheduleKind k) {
  switch (k) {
    case ScheduleKind::kConstant: return "constant";
    case ScheduleKind::kCosine: return "cosine";
    case ScheduleKind::kLinear: return "linear";
    case ScheduleKind::kWsd: return "wsd";
  }
  return "?";
}

void validate(const Schedule& s) {
  WAVG_CHECK(std::isfinite(s.lr) && s.lr > 0, "schedule: lr must be > 0, got ", s.lr);
  WAVG_CHECK(s.total_steps >= 1, "schedule: total steps must be >= 1, got ", s.total_steps);
  WAVG_CHECK(s.warmup_steps >= 0 && s.warmup_steps <= s.total_steps,
             "schedule: warmup must be in [0, steps], got ", s.warmup_steps);
  WAVG_CHECK(s.final_fraction >= 0 && s.final_fraction <= 1,
             "schedule: final_fraction must be in [0, 1], got ", s.final_fraction);
  WAVG_CHECK(s.decay_fraction > 0 && s.decay_fraction <= 1,
             "schedule: decay_fraction must be in (0, 1], got ", s.decay_fraction);
}

double lr_at(const Schedule& s, int64_t step) {
  if (step < s.warmup_steps) return s.lr * double(step + 1) / double(s.warmup_steps);
  const double lo = s.final_fraction * s.lr;
  if (step >= s.total_steps) return s.kind == ScheduleKind::kConstant ? s.lr : lo;
  switch (s.kind) {
    case ScheduleKind::kConstant: return s.lr;
    case ScheduleKind::kCosine: {
      const double span = double(std::max<int64_t>(1, s.total_steps - s.warmup_steps));
      const double p = double(step - s.warmup_steps) / span;
      return lo + (s.lr - lo) * 0.5 * (1.0 + std::cos(M_PI * p));
    }
    case ScheduleKind::kLinear: {
      const double span = double(std::max<int64_t>(1, s.total_steps - s.warmup_steps));
      const double p = double(step - s.warmup_steps) / span;
      return s.lr + (lo - s.lr) * p;
    }
    case ScheduleKind::kWsd: {
      const int64_t decay_start =
          std::max(s.warmup_steps, s.total_steps - int64_t(std::llround(s.decay_fraction *
                                                                        double(s.total_steps))));
      if (step < decay_start) return s.lr;
      const double span = double(std::max<int64_t>(1, s.total_steps - decay_start));
      return s.lr + (lo - s.lr) * double(step - decay_start) / span;
    }
  }
  return s.lr;
}

}  // namespace wavg
