// Model soups (Wortsman et al. 2022, "Model soups: averaging weights of multiple fine-tuned models
// improves accuracy without increasing inference time", Recipe 1 and the uniform soup): checkpoints
// of one workload's model (ingredients: safetensors files, sharded checkpoints' indexes or
// directories, as CheckpointSet reads them) are averaged uniformly, every one (uniform soup) or
// only those that do not make the soup worse on the validation split (greedy soup: ingredients
// tried best first by their own validation metric, in the workload's direction; ties keep the
// argument order).
//
// A soup of ingredients S is Σ_{i∈S} x_i / |S| accumulated in fp64 in argument order with the
// weights of `wavg average --last |S|` (offline_weights of LAWA), so the uniform soup equals that
// average of the same files bit for bit. Names, dtypes and the output's form are the newest (last)
// ingredient's; non-floating tensors are copied from it. Every model evaluated here (an ingredient
// alone or a candidate soup) is evaluated the same way: loaded into the workload's model and, for a
// model with BatchNorm layers, its statistics recomputed from training batches first (then the
// output holds the recomputed statistics of the final soup, and its parameters are the average).
//
// An ingredient with a non-finite floating element, or whose validation metric is not finite, has
// diverged: the greedy soup leaves it out (and says why); the uniform soup refuses it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace wavg {

struct SoupOptions {
  std::string workload;
  int64_t seed = 0;     // the workload's data stream and model seed (synthetic workloads)
  bool greedy = false;  // else the uniform soup
  int64_t recompute_batches = 20;           // BatchNorm models: forward passes per recomputation
  std::vector<std::string> strip_prefixes;  // removed from names before matching (--strip-prefix)
  bool overwrite = false;                   // replace an existing output
};

struct SoupIngredient {
  std::string path;
  double value = 0;      // its own validation metric (NaN when its weights are not finite)
  std::string diverged;  // why it was left out as diverged; empty if it was not
  bool tried = false;    // greedy: a candidate soup with it was evaluated
  double candidate = 0;  // greedy: the metric of the soup with it (when tried)
  bool kept = false;
  double soup = 0;  // the soup's metric after it was considered (NaN: not known yet)
};

struct SoupResult {
  std::string workload, metric;
  bool lower_is_better = true;
  bool batchnorm = false;             // statistics recomputed for every model evaluated
  std::vector<SoupIngredient> table;  // in the order considered (greedy: best first)
  std::vector<std::string> kept;      // the soup's ingredients, in argument order
  double value = 0;                   // the soup's validation metric
  int64_t evaluations = 0;
  int64_t shards_written = 0;
};

// Validates every ingredient against the newest (same tensors, shapes and dtypes; names after
// strip_prefixes) and the output against the inputs before any evaluation; evaluates; writes `out`
// atomically in the newest's form with the record "wavg.soup" (recipe, workload, metric, direction,
// every ingredient's metric, kept or not and why) in its metadata. Bad input is a wavg::Error.
SoupResult make_soup(const std::vector<std::string>& inputs, const std::string& out,
                     const SoupOptions& options);

}  // namespace wavg
