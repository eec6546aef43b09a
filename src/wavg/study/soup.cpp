// Model soups: the ingredients (opened and validated once), their uniform mixes computed tile by
// tile, evaluation of a mix in the workload's model, the greedy recipe, and the output.
#include "wavg/study/soup.h"

#include <sys/stat.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>

#include "wavg/core/averager.h"
#include "wavg/core/error.h"
#include "wavg/io/checkpoint_output.h"
#include "wavg/io/checkpoint_set.h"
#include "wavg/io/safetensors.h"
#include "wavg/torch/model_averager.h"
#include "wavg/torch/scalar_types.h"
#include "wavg/workloads/workload.h"

namespace wavg {

namespace {

// Elements per tile of a mix: memory stays at a few tiles per tensor being mixed.
constexpr int64_t kTile = 1 << 20;

using Mix = std::vector<size_t>;  // ingredient indices, in argument order

// The ingredients, validated against the newest (the last argument) before anything is evaluated.
class Ingredients {
 public:
  Ingredients(const std::vector<std::string>& inputs, const std::string& out,
              const std::vector<std::string>& strip_prefixes) {
    WAVG_CHECK(!inputs.empty(), "soup: no ingredients (give one checkpoint or more)");
    CheckpointSetOptions options;
    options.strip_prefixes = strip_prefixes;
    for (const std::string& path : inputs)
      sets_.push_back(std::make_unique<CheckpointSet>(path, options));
    for (const auto& s : sets_) {
      check_output_apart(out, {s.get()}, "soup");
      s->verify_checksums();
      if (s.get() != &newest()) s->release_metadata();  // only the newest's goes to the output
      tensors_.push_back(match_checkpoint(*s, newest(), "soup"));
    }
  }
  size_t size() const { return sets_.size(); }
  const CheckpointSet& newest() const { return *sets_.back(); }
  const std::string& path(size_t i) const { return sets_[i]->path(); }

  // The first non-finite floating element of ingredient i ("tensor 'w' element 3"), or "".
  std::string non_finite(size_t i) const {
    for (size_t k = 0; k < newest().tensors().size(); ++k) {
      const TensorInfo& t = *tensors_[i][k]->info;
      if (!is_floating(t.dtype)) continue;
      int64_t bad = -1;
      dispatch_floating(t.dtype, [&](auto tag) {
        using T = decltype(tag);
        std::vector<T> x;
        for (int64_t at = 0; at < t.numel() && bad < 0; at += kTile) {
          x.resize(size_t(std::min(kTile, t.numel() - at)));
          sets_[i]->read_bytes(*tensors_[i][k], uint64_t(at) * sizeof(T), x.size() * sizeof(T),
                               x.data());
          for (size_t e = 0; e < x.size() && bad < 0; ++e)
            if (!std::isfinite(load_f64(x[e]))) bad = at + int64_t(e);
        }
      });
      if (bad >= 0)
        return "tensor '" + quote_bytes(t.name) + "' element " + std::to_string(bad) +
               " is not finite";
    }
    return "";
  }

  // Writes tensor k (the newest's k-th) of the uniform mix of `mix`, in the newest's dtype: a
  // floating tensor as Σ_j w_j x_j accumulated in fp64 in argument order with w_j the weights of
  // `wavg average --last |mix|` (checkpoint_average.cpp's accumulate_tile, operation for
  // operation), so that the two agree bit for bit; any other tensor copied from the newest.
  void write_mixed(size_t k, const Mix& mix, const ByteWriter& write) const {
    const CheckpointTensor& ref = newest().tensors()[k];
    const TensorInfo& t = *ref.info;
    if (!is_floating(t.dtype)) {
      std::vector<unsigned char> buf(size_t(t.nbytes()));
      if (!buf.empty()) newest().read_bytes(ref, 0, buf.size(), buf.data());
      write(buf.data(), buf.size());
      return;
    }
    const int64_t n = int64_t(mix.size());
    const std::vector<double> w = offline_weights(LawaOptions(n), n);
    dispatch_floating(t.dtype, [&](auto tag) {
      using T = decltype(tag);
      std::vector<double> acc;
      std::vector<T> x, y;
      for (int64_t at = 0; at < t.numel(); at += kTile) {
        const size_t tn = size_t(std::min(kTile, t.numel() - at));
        acc.resize(tn), x.resize(tn), y.resize(tn);
        for (size_t j = 0; j < mix.size(); ++j) {
          sets_[mix[j]]->read_bytes(*tensors_[mix[j]][k], uint64_t(at) * sizeof(T), tn * sizeof(T),
                                    x.data());
          for (size_t e = 0; e < tn; ++e)
            acc[e] = j == 0 ? w[j] * load_f64(x[e]) : acc[e] + w[j] * load_f64(x[e]);
        }
        for (size_t e = 0; e < tn; ++e) y[e] = store_as<T>(acc[e]);
        write(y.data(), tn * sizeof(T));
      }
    });
  }

 private:
  std::vector<std::unique_ptr<CheckpointSet>> sets_;
  std::vector<std::vector<const CheckpointTensor*>> tensors_;  // per ingredient, newest's order
};

// The workload's model, into which mixes are loaded and evaluated on the validation split.
class Tasting {
 public:
  Tasting(const SoupOptions& o, const Ingredients& ingredients)
      : ingredients_(ingredients), batches_(o.recompute_batches) {
    WorkloadOptions wo;
    wo.seed = o.seed;
    workload_ = make_workload(o.workload, wo);
    module_ = workload_->model();
    batchnorm_ = has_batchnorm(*module_);
    // Every parameter and buffer of the model, by the newest's index (as load_module matches them).
    const CheckpointSet& ref = ingredients.newest();
    auto add = [&](const std::string& name, const torch::Tensor& target) {
      const CheckpointTensor* c = ref.find(name);
      WAVG_CHECK(c != nullptr, ref.path(), ": tensor '", name, "' of the ", o.workload,
                 " model is missing", strip_prefix_hint(ref, *module_));
      WAVG_CHECK(c->info->shape == target.sizes().vec(), ref.path(), ": tensor '", name,
                 "' has a different shape than the ", o.workload, " model's");
      targets_.push_back({size_t(c - ref.tensors().data()), target});
    };
    for (const auto& item : module_->named_parameters()) add(item.key(), item.value());
    for (const auto& item : module_->named_buffers()) {
      add(item.key(), item.value());
      buffer_of_.emplace(targets_.back().first, item.value());
    }
  }
  Workload& workload() { return *workload_; }
  bool batchnorm() const { return batchnorm_; }
  int64_t evaluations() const { return evaluations_; }

  // Puts the mix into the model; BatchNorm statistics recomputed from training batches.
  void load(const Mix& mix) {
    torch::NoGradGuard no_grad;
    const CheckpointSet& ref = ingredients_.newest();
    std::vector<unsigned char> buf;
    for (auto& [k, target] : targets_) {
      const TensorInfo& t = *ref.tensors()[k].info;
      buf.clear();
      ingredients_.write_mixed(k, mix, [&](const void* p, size_t n) {
        buf.insert(buf.end(), static_cast<const unsigned char*>(p),
                   static_cast<const unsigned char*>(p) + n);
      });
      target.copy_(torch::from_blob(buf.data(), t.shape,
                                    torch::TensorOptions().dtype(detail::to_scalar_type(t.dtype))));
    }
    if (batchnorm_)
      recompute_batchnorm(*module_, batches_,
                          [&](int64_t i) { workload_->forward_train_batch(i); });
  }

  double evaluate(const Mix& mix) {
    load(mix);
    ++evaluations_;
    return workload_->evaluate(Split::kValidation).value;
  }

  // The model's buffer for the newest's tensor k, or nullptr (not a buffer).
  const torch::Tensor* buffer(size_t k) const {
    const auto it = buffer_of_.find(k);
    return it == buffer_of_.end() ? nullptr : &it->second;
  }

 private:
  const Ingredients& ingredients_;
  int64_t batches_;
  std::unique_ptr<Workload> workload_;
  std::shared_ptr<torch::nn::Module> module_;
  bool batchnorm_ = false;
  std::vector<std::pair<size_t, torch::Tensor>> targets_;
  std::map<size_t, torch::Tensor> buffer_of_;
  int64_t evaluations_ = 0;
};

bool better_or_equal(double a, double b, bool lower_is_better) {
  return lower_is_better ? a <= b : a >= b;  // false when either is NaN
}

// Every ingredient alone; those with non-finite weights are not evaluated (value NaN).
std::vector<SoupIngredient> taste_each(const Ingredients& ing, Tasting& tasting) {
  std::vector<SoupIngredient> rows(ing.size());
  for (size_t i = 0; i < ing.size(); ++i) {
    SoupIngredient& r = rows[i];
    r.path = ing.path(i);
    r.soup = std::nan("");
    r.diverged = ing.non_finite(i);
    r.value = r.diverged.empty() ? tasting.evaluate({i}) : std::nan("");
    if (r.diverged.empty() && !std::isfinite(r.value))
      r.diverged = "its validation " + tasting.workload().metric() + " is not finite";
  }
  return rows;
}

// Wortsman et al. 2022, Recipe 1: ingredients sorted by their own metric, best first; each is added
// if the soup with it is at least as good as the soup without it. Diverged ones are never tried.
Mix greedy(std::vector<SoupIngredient>& rows, Tasting& tasting, bool lower_is_better,
           std::vector<size_t>* order, double* value) {
  for (size_t i = 0; i < rows.size(); ++i)
    if (rows[i].diverged.empty()) order->push_back(i);
  WAVG_CHECK(!order->empty(), "soup: every ingredient has diverged (non-finite weights or metric)");
  std::stable_sort(order->begin(), order->end(), [&](size_t a, size_t b) {
    return lower_is_better ? rows[a].value < rows[b].value : rows[a].value > rows[b].value;
  });
  Mix soup = {order->front()};
  *value = rows[order->front()].value;  // the soup of one is that ingredient
  rows[order->front()].kept = true;
  rows[order->front()].soup = *value;
  for (size_t n = 1; n < order->size(); ++n) {
    SoupIngredient& r = rows[(*order)[n]];
    Mix candidate = soup;
    candidate.insert(std::upper_bound(candidate.begin(), candidate.end(), (*order)[n]),
                     (*order)[n]);
    r.tried = true;
    r.candidate = tasting.evaluate(candidate);
    r.kept = better_or_equal(r.candidate, *value, lower_is_better);
    if (r.kept) soup = std::move(candidate), *value = r.candidate;
    r.soup = *value;
  }
  for (size_t i = 0; i < rows.size(); ++i)
    if (!rows[i].diverged.empty()) order->push_back(i);  // listed last, never tried
  return soup;
}

nlohmann::ordered_json soup_record(const SoupOptions& o, const SoupResult& r) {
  nlohmann::ordered_json rec;
  rec["recipe"] = o.greedy ? "greedy" : "uniform";
  rec["workload"] = r.workload;
  rec["seed"] = o.seed;
  rec["split"] = "validation";
  rec["metric"] = r.metric;
  rec["direction"] = r.lower_is_better ? "lower is better" : "higher is better";
  rec["batchnorm"] = r.batchnorm ? "statistics recomputed from " +
                                       std::to_string(o.recompute_batches) + " training batches"
                                 : "none";
  if (!o.strip_prefixes.empty()) rec["strip_prefixes"] = o.strip_prefixes;
  rec["value"] = r.value;  // NaN is written as null
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const SoupIngredient& i : r.table) {
    nlohmann::ordered_json e;
    e["path"] = i.path;
    e["value"] = i.value;
    e["kept"] = i.kept;
    if (i.tried) e["soup_with_it"] = i.candidate;
    if (!i.diverged.empty()) e["diverged"] = i.diverged;
    list.push_back(e);
  }
  rec["ingredients"] = list;
  return rec;
}

std::string dump(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

// The soup in the newest's form: parameters (and tensors the model does not have) mixed; with
// BatchNorm, the model's buffers (the final soup's recomputed statistics).
int64_t write_soup(const Ingredients& ing, const Mix& soup, Tasting& tasting,
                   const std::string& out, bool overwrite, const nlohmann::ordered_json& rec) {
  const CheckpointSet& ref = ing.newest();
  if (tasting.batchnorm()) tasting.load(soup);
  std::vector<TensorOut> outs;
  std::vector<uint64_t> nbytes;
  for (const CheckpointTensor& ct : ref.tensors()) {
    outs.push_back({ct.info->name, ct.info->dtype, ct.info->shape, nullptr});
    nbytes.push_back(ct.info->nbytes());
  }
  OutputLayout layout = output_layout(ref, nbytes, std::nullopt);
  for (OutputShard& s : layout.shards) s.metadata["wavg.soup"] = dump(rec);
  CheckpointWriteOptions wo;
  wo.overwrite = overwrite;
  nlohmann::ordered_json meta = nlohmann::ordered_json::parse(ref.index_metadata());
  meta["wavg.soup"] = rec;
  wo.index_metadata = dump(meta);
  write_checkpoint(
      out, layout, outs,
      [&](size_t k, const ByteWriter& write) {
        const torch::Tensor* b = tasting.batchnorm() ? tasting.buffer(k) : nullptr;
        if (!b) return ing.write_mixed(k, soup, write);
        const auto dtype = detail::to_scalar_type(ref.tensors()[k].info->dtype);
        const torch::Tensor c = b->detach().to(torch::kCPU, dtype).contiguous();
        write(c.data_ptr(), size_t(c.nbytes()));
      },
      wo);
  return int64_t(layout.shards.size());
}

}  // namespace

SoupResult make_soup(const std::vector<std::string>& inputs, const std::string& out_arg,
                     const SoupOptions& o) {
  std::string out = out_arg;  // "out/" names the directory out
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  WAVG_CHECK(o.recompute_batches >= 1, "soup: --recompute-batches must be >= 1, got ",
             o.recompute_batches);
  struct stat st;
  // Refused before the evaluations, not after (write_checkpoint checks again when it writes).
  WAVG_CHECK(o.overwrite || ::lstat(out.c_str(), &st) != 0, "soup: output '", quote_bytes(out, 200),
             "' exists: pass --overwrite to replace it");
  const Ingredients ing(inputs, out, o.strip_prefixes);
  if (!o.greedy)
    for (size_t i = 0; i < ing.size(); ++i) {
      const std::string bad = ing.non_finite(i);
      WAVG_CHECK(bad.empty(), "soup: ingredient '", quote_bytes(ing.path(i), 200), "': ", bad,
                 " (the uniform soup would be poisoned; --greedy leaves diverged ingredients out)");
    }
  Tasting tasting(o, ing);
  SoupResult r;
  r.workload = o.workload;
  r.metric = tasting.workload().metric();
  r.lower_is_better = tasting.workload().lower_is_better();
  r.batchnorm = tasting.batchnorm();
  std::vector<SoupIngredient> rows = taste_each(ing, tasting);
  std::vector<size_t> order;
  Mix soup;
  if (o.greedy) {
    soup = greedy(rows, tasting, r.lower_is_better, &order, &r.value);
  } else {
    order.resize(ing.size());
    std::iota(order.begin(), order.end(), size_t(0));
    soup = order;
    r.value = ing.size() == 1 ? rows[0].value : tasting.evaluate(soup);
    for (SoupIngredient& row : rows) row.kept = true;
    rows.back().soup = r.value;
  }
  for (size_t i : order) r.table.push_back(rows[i]);
  for (size_t i : soup) r.kept.push_back(ing.path(i));
  r.evaluations = tasting.evaluations();
  r.shards_written = write_soup(ing, soup, tasting, out, o.overwrite, soup_record(o, r));
  return r;
}

}  // namespace wavg
