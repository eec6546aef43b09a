// The training loop: one optimizer update per step, then the callbacks, then a stop decision that
// every data-parallel rank agrees on; the run's summary from its curves.
#include <torch/torch.h>

#include <cmath>
#include <csignal>

#include "wavg/core/error.h"
#include "wavg/train/run_loop.h"

namespace wavg::detail {

namespace {

// One optimizer update (step -> step + 1) and the bank's sample of its result.
void train_step(RunContext& run) {
  const auto t0 = Clock::now();
  run.lr = lr_at(run.config.schedule, run.step);
  run.optimizer.zero_grad();
  torch::Tensor loss = run.workload.train_loss(run.step);
  loss.backward();
  // Data parallel: the loss is all-reduced, so every rank refuses the same update.
  const double l =
      run.dist ? average_gradients(*run.dist, run.model->parameters(), loss) : loss.item<double>();
  WAVG_CHECK(std::isfinite(l), "training diverged: loss is ", l, " at step ", run.step + 1,
             " (lower the learning rate?)");
  run.optimizer.step(run.lr);
  if (run.dist) broadcast_buffers(*run.dist, run.model->buffers());
  ++run.step;
  run.averager.observe(run.step);
  run.train_s += since(t0);
  run.loss_avg = std::isnan(run.loss_avg) ? l : 0.95 * run.loss_avg + 0.05 * l;
}

}  // namespace

const char* stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::kNone: return "";
    case StopReason::kBudget: return "budget";
    case StopReason::kEarlyStop: return "early_stop";
    case StopReason::kSignal: return "signal";
  }
  return "";
}

StopReason parse_stop_reason(const std::string& s) {
  for (StopReason r : {StopReason::kBudget, StopReason::kEarlyStop, StopReason::kSignal})
    if (s == stop_reason_name(r)) return r;
  return StopReason::kNone;
}

std::optional<EvalSwap> swap_in_eval_point(RunContext& run) {
  if (!run.optimizer.has_eval_point()) return std::nullopt;
  return run.averager.swap_in_params(run.optimizer.eval_params(), run.forward,
                                     run.config.optimizer.schedule_free_bn_batches);
}

StateGroup RunContext::state_group() const {
  StateGroup g;
  if (dist == nullptr) return g;
  g.rank = dist->rank();
  g.world = dist->world();
  g.barrier = [d = dist] { d->barrier(); };
  return g;
}

// Data parallel: every rank stops after the same step for the same reason, decided in one
// all-reduce: a signal any rank got, else rank 0's reason (early stop, from its curves), so that no
// rank trains on into collectives the others have left. A rank that got no signal (yet) takes the
// one the others got (SIGTERM if they differ): a launcher's SIGINT reaches the ranks a little apart.
StopReason agree_stop(RunContext& run, StopReason mine) {
  if (run.dist == nullptr) return mine;
  std::vector<double> v = {run.signal != 0 ? 1.0 : 0.0, double(run.signal),
                           run.writer() ? double(int(mine)) : 0.0};
  run.dist->all_reduce(v);
  if (v[0] == 0) return StopReason(int(v[2]));
  if (run.signal == 0) {
    const double each = v[1] / v[0];
    run.signal = each == std::floor(each) && each > 0 && each < 65 ? int(each) : SIGTERM;
  }
  return StopReason::kSignal;
}

void train_loop(RunContext& run, const std::vector<TrainCallback*>& callbacks) {
  for (TrainCallback* cb : callbacks) cb->on_begin(run);
  while (run.stop == StopReason::kNone && run.step < run.config.steps) {
    train_step(run);
    for (TrainCallback* cb : callbacks) cb->on_step(run);
    StopReason mine = StopReason::kNone;  // every callback is asked; the first reason counts
    for (TrainCallback* cb : callbacks)
      if (const StopReason r = cb->wants_stop(run); mine == StopReason::kNone) mine = r;
    run.stop = agree_stop(run, mine);
  }
  if (run.stop == StopReason::kNone) run.stop = StopReason::kBudget;
  run.averager.wait();
  for (TrainCallback* cb : callbacks) cb->on_end(run);
}

void summarize(RunContext& run) {
  const bool lower = run.summary.lower_is_better;
  for (size_t m = 0; m < run.summary.models.size(); ++m) {
    ModelSummary& ms = run.summary.models[m];
    ms.steps_to_target = steps_to_target(run.curves[m], run.config.target, lower);
    const auto best = best_point(run.curves[m], lower);
    ms.best_value = best ? best->value : 0;
    ms.best_step = best ? best->step : -1;
  }
  run.summary.steps_done = run.step;
  run.summary.train_wall_s = run.train_s;
  run.summary.eval_wall_s = run.eval_s;
  run.summary.stop_reason = run.stop == StopReason::kSignal ? "" : stop_reason_name(run.stop);
  run.summary.interrupted_by = run.stop == StopReason::kSignal ? run.signal : 0;
}

}  // namespace wavg::detail
