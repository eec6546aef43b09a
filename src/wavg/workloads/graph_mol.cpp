// graph_mol: a message-passing GNN on seeded synthetic molecule-like graphs — the CPU-sized stand-in
// for AlgoPerf's OGBG (ogbg-molpcba: multi-task binary property prediction, mean average
// precision, higher is better).
//
// Data. A molecule is a random tree of 8-24 typed atoms (C, N, O, S, F, Cl with their valences)
// joined by typed bonds (single, double, triple within the valences), closed into 0-2 rings of five
// or six atoms. Each of its 12 binary labels comes from a fixed hidden rule on substructure counts
// (atoms of a type, branching atoms, typed bonds between typed atoms, rings by size): a standardised
// weighted sum of three such counts plus Gaussian label noise, thresholded at a per-task positive
// rate of 5-35 %; 10 % of the labels are missing (NaN), as molpcba's labels are sparse. Molecule
// i of a split, or of a training step, is a pure function of a 64-bit key derived from (seed,
// step, i); the rule and the validation and test sets (4000 molecules each) are the same for every
// run seed.
//
// Model. GIN with edge features (Hu et al. 2020, "Strategies for Pre-training Graph Neural
// Networks"; OGB's GINConv): h_v <- LayerNorm(MLP((1 + eps) h_v + sum_{u -> v} relu(h_u + e_uv))),
// three layers of width 64 (ReLU between them), sum pooling over each molecule's atoms and one
// linear layer to the 12 logits. LayerNorm rather than OGB's BatchNorm, as AlgoPerf's OGBG model
// does: no batch statistics, so a data-parallel run follows the one-process trajectory.
//
// Loss: binary cross-entropy over the labels that are present (OGB's `is_labeled` mask). Metric:
// mean average precision as OGB's Evaluator computes it (metrics.h); under data parallel every
// rank's scores and labels are gathered and the metric computed over the whole split.
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <random>

#include "wavg/core/error.h"
#include "wavg/torch/device.h"
#include "wavg/workloads/metrics.h"
#include "wavg/workloads/registry.h"

namespace wavg {

namespace {

constexpr int kAtomTypes = 6, kBondTypes = 3, kTasks = 12;
constexpr int kMinAtoms = 8, kMaxAtoms = 24;
constexpr int64_t kHidden = 64, kLayers = 3;
constexpr int64_t kEvalMolecules = 4000, kEvalChunk = 500;  // molecules per evaluation batch
static_assert(kEvalMolecules % kEvalChunk == 0, "evaluation sets are whole batches");
constexpr int kRuleMolecules = 4000;                          // molecules that calibrate the rule
constexpr double kMissing = 0.10;     // fraction of labels missing
constexpr double kLabelNoise = 0.5;   // std of the noise on the standardised rule
constexpr uint64_t kTeacherSeed = 20250801;  // the data distribution, the same for every run seed

constexpr std::array<int, kAtomTypes> kValence = {4, 3, 2, 2, 1, 1};  // C N O S F Cl
constexpr std::array<double, kAtomTypes> kAtomFreq = {0.60, 0.13, 0.14, 0.05, 0.05, 0.03};

// Streams of molecule keys: training batches, BatchNorm-style recomputation batches (unused by
// this model but kept apart), a training-split evaluation set, and the fixed evaluation sets.
enum Stream : uint64_t { kTrainStream = 0, kForwardStream = 1, kTrainEvalStream = 2, kValidation = 3,
                         kTest = 4, kRule = 5 };

// splitmix64 (Steele et al. 2014): a bijective 64-bit mix, to derive independent keys.
uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
uint64_t molecule_key(uint64_t seed, uint64_t stream, uint64_t step, uint64_t index) {
  return mix(mix(mix(mix(seed) ^ stream) ^ step) ^ index);
}

// Whether label `task` of the molecule with this key is missing: a function of the key alone, so
// that every data-parallel rank can count the labels of the whole batch without building it.
bool label_missing(uint64_t key, int task) {
  return double(mix(key ^ (uint64_t(task + 1) << 56)) >> 11) * 0x1.0p-53 < kMissing;
}

struct Molecule {
  std::vector<int> atoms;                 // type of each atom
  std::vector<std::array<int, 3>> bonds;  // (atom a, atom b, bond type: 0 single, 1 double, 2 triple)
  std::vector<int> rings;                 // size of each ring closure (5 or 6)
};

// Atoms between a and b along the bonds (breadth-first), or -1 when further than `most`.
int distance(const std::vector<std::vector<int>>& adj, int a, int b, int most) {
  std::vector<int> d(adj.size(), -1);
  std::vector<int> queue = {a};
  d[size_t(a)] = 0;
  for (size_t q = 0; q < queue.size(); ++q) {
    const int v = queue[q];
    if (v == b) return d[size_t(v)];
    if (d[size_t(v)] == most) continue;
    for (int u : adj[size_t(v)])
      if (d[size_t(u)] < 0) d[size_t(u)] = d[size_t(v)] + 1, queue.push_back(u);
  }
  return -1;
}

// A random tree of typed atoms within their valences, then ring closures of five or six atoms.
class MoleculeBuilder {
 public:
  explicit MoleculeBuilder(uint64_t key) : rng_(key) {}

  Molecule build() {
    const int n = std::uniform_int_distribution<int>(kMinAtoms, kMaxAtoms)(rng_);
    add_atom(0);  // a carbon to grow from
    for (int i = 1; i < n; ++i)
      if (!grow()) break;
    const double r = unif_(rng_);
    close_rings(/*closures=*/r < 0.35 ? 0 : r < 0.8 ? 1 : 2);
    return std::move(m_);
  }

 private:
  void add_atom(int type) {
    m_.atoms.push_back(type);
    spare_.push_back(kValence[size_t(type)]);
    adj_.emplace_back();
  }
  void add_bond(int a, int b, int order) {
    m_.bonds.push_back({a, b, order - 1});
    spare_[size_t(a)] -= order;
    spare_[size_t(b)] -= order;
    adj_[size_t(a)].push_back(b);
    adj_[size_t(b)].push_back(a);
  }
  int bond_order(int most) {  // 1-3, at most `most`
    const double r = unif_(rng_);
    return std::min(most, r < 0.05 ? 3 : r < 0.25 ? 2 : 1);
  }
  // A new atom bonded to a random atom with a free valence; false when there is none.
  bool grow() {
    std::vector<int> open;
    for (int j = 0; j < int(m_.atoms.size()); ++j)
      if (spare_[size_t(j)] > 0) open.push_back(j);
    if (open.empty()) return false;
    const int t = atom_type_(rng_);
    const int j = open[std::uniform_int_distribution<size_t>(0, open.size() - 1)(rng_)];
    add_atom(t);
    add_bond(j, int(m_.atoms.size()) - 1, bond_order(std::min(spare_[size_t(j)], kValence[size_t(t)])));
    return true;
  }
  // Bonds between random pairs of atoms with free valences 4 or 5 bonds apart (30 tries at most).
  void close_rings(int closures) {
    const int atoms = int(m_.atoms.size());
    for (int c = 0, tries = 0; c < closures && tries < 30; ++tries) {
      const int a = std::uniform_int_distribution<int>(0, atoms - 1)(rng_);
      const int b = std::uniform_int_distribution<int>(0, atoms - 1)(rng_);
      if (spare_[size_t(a)] < 1 || spare_[size_t(b)] < 1) continue;
      const int d = a == b ? 0 : distance(adj_, a, b, /*most=*/5);
      if (d != 4 && d != 5) continue;  // a ring of d + 1 atoms
      add_bond(a, b, bond_order(std::min(spare_[size_t(a)], spare_[size_t(b)])));
      m_.rings.push_back(d + 1);
      ++c;
    }
  }

  std::mt19937_64 rng_;
  std::uniform_real_distribution<double> unif_{0.0, 1.0};
  std::discrete_distribution<int> atom_type_{kAtomFreq.begin(), kAtomFreq.end()};
  Molecule m_;
  std::vector<int> spare_;               // free valence of each atom
  std::vector<std::vector<int>> adj_;    // bonded atoms of each atom
};

Molecule make_molecule(uint64_t key) { return MoleculeBuilder(key).build(); }

// Substructure counts the hidden rule reads: atoms by type, branching atoms (degree >= 3) by type,
// bonds by (type of one end <= type of the other, bond type), rings of five and of six atoms.
constexpr int kPairs = kAtomTypes * (kAtomTypes + 1) / 2;
constexpr int kFeatures = 2 * kAtomTypes + kPairs * kBondTypes + 2;

std::array<double, kFeatures> motif_counts(const Molecule& m) {
  std::array<double, kFeatures> f{};
  std::vector<int> degree(m.atoms.size(), 0);
  for (const auto& [a, b, type] : m.bonds) {
    ++degree[size_t(a)], ++degree[size_t(b)];
    const int lo = std::min(m.atoms[size_t(a)], m.atoms[size_t(b)]);
    const int hi = std::max(m.atoms[size_t(a)], m.atoms[size_t(b)]);
    const int pair = lo * kAtomTypes - lo * (lo - 1) / 2 + (hi - lo);  // index of (lo, hi), lo <= hi
    f[size_t(2 * kAtomTypes + pair * kBondTypes + type)] += 1;
  }
  for (size_t i = 0; i < m.atoms.size(); ++i) {
    f[size_t(m.atoms[i])] += 1;
    if (degree[i] >= 3) f[size_t(kAtomTypes + m.atoms[i])] += 1;
  }
  for (int size : m.rings) f[size_t(kFeatures - 2 + (size == 6))] += 1;
  return f;
}

// The hidden rule: per task, three substructure counts (standardised), weights of either sign; the
// label is 1 when their weighted sum, standardised, plus N(0, kLabelNoise^2) noise exceeds the
// task's threshold. Calibrated once on kRuleMolecules molecules of the teacher's stream.
class LabelRule {
 public:
  LabelRule() {
    std::vector<std::array<double, kFeatures>> counts;
    for (int i = 0; i < kRuleMolecules; ++i)
      counts.push_back(motif_counts(make_molecule(molecule_key(kTeacherSeed, kRule, 0, uint64_t(i)))));
    std::array<double, kFeatures> mean{}, sq{};
    for (const auto& c : counts)
      for (int j = 0; j < kFeatures; ++j) mean[size_t(j)] += c[size_t(j)] / kRuleMolecules;
    for (const auto& c : counts)
      for (int j = 0; j < kFeatures; ++j)
        sq[size_t(j)] += std::pow(c[size_t(j)] - mean[size_t(j)], 2) / kRuleMolecules;
    std::vector<int> usable;  // counts that vary enough to carry a rule
    for (int j = 0; j < kFeatures; ++j)
      if (sq[size_t(j)] > 0.05) usable.push_back(j);
    std::mt19937_64 rng(kTeacherSeed);
    std::uniform_real_distribution<double> unif(0.0, 1.0);
    for (int t = 0; t < kTasks; ++t) {
      Task& task = tasks_[size_t(t)];
      std::shuffle(usable.begin(), usable.end(), rng);
      double bias = 0;
      for (int k = 0; k < 3; ++k) {
        const int j = usable[size_t(k)];
        const double w = (unif(rng) < 0.5 ? -1 : 1) * (0.5 + unif(rng)) / std::sqrt(sq[size_t(j)]);
        task.terms[size_t(k)] = {j, w};
        bias -= w * mean[size_t(j)];
      }
      task.bias = bias;
      std::vector<double> z;
      for (const auto& c : counts) z.push_back(task.score(c));
      double var = 0;
      for (double v : z) var += v * v / double(z.size());
      task.scale = 1.0 / std::sqrt(var);
      // Threshold at the quantile that gives the task's positive rate (noise-free: the noise is
      // symmetric and changes the rate only a little).
      for (double& v : z) v *= task.scale;
      std::sort(z.begin(), z.end());
      const double rate = 0.05 + 0.30 * unif(rng);
      task.threshold = z[size_t(double(z.size()) * (1.0 - rate))];
    }
  }

  // Labels of molecule `m` with key `key`: 0, 1, or NaN where missing.
  std::array<float, kTasks> labels(const Molecule& m, uint64_t key) const {
    const std::array<double, kFeatures> c = motif_counts(m);
    std::mt19937_64 rng(mix(key ^ 0x5A5A5A5A5A5A5A5Aull));
    std::normal_distribution<double> noise(0.0, kLabelNoise);
    std::array<float, kTasks> y{};
    for (int t = 0; t < kTasks; ++t) {
      const Task& task = tasks_[size_t(t)];
      const double z = task.scale * task.score(c) + noise(rng);
      y[size_t(t)] = label_missing(key, t) ? std::numeric_limits<float>::quiet_NaN()
                                            : float(z > task.threshold);
    }
    return y;
  }

 private:
  struct Task {
    std::array<std::pair<int, double>, 3> terms;  // (count index, weight)
    double bias = 0, scale = 1, threshold = 0;
    double score(const std::array<double, kFeatures>& c) const {
      double s = bias;
      for (const auto& [j, w] : terms) s += w * c[size_t(j)];
      return s;
    }
  };
  std::array<Task, kTasks> tasks_;
};

// Molecules as one disjoint graph; every bond is two directed edges.
struct GraphBatch {
  torch::Tensor atoms;     // (N) long: atom types
  torch::Tensor src, dst;  // (2E) long: edge u -> v
  torch::Tensor bonds;     // (2E) long: bond types
  torch::Tensor graph;     // (N) long: molecule of each atom
  torch::Tensor labels;    // (B, kTasks) float: 0, 1, NaN missing
  int64_t graphs = 0;
  GraphBatch to(c10::Device d) const {
    return {atoms.to(d), src.to(d), dst.to(d), bonds.to(d), graph.to(d), labels.to(d), graphs};
  }
};

GraphBatch make_batch(const LabelRule& rule, const std::vector<uint64_t>& keys) {
  std::vector<int64_t> atoms, src, dst, bonds, graph;
  std::vector<float> labels;
  for (size_t g = 0; g < keys.size(); ++g) {
    const Molecule m = make_molecule(keys[g]);
    const int64_t base = int64_t(atoms.size());
    for (int t : m.atoms) atoms.push_back(t), graph.push_back(int64_t(g));
    for (const auto& [a, b, type] : m.bonds) {
      src.push_back(base + a), dst.push_back(base + b), bonds.push_back(type);
      src.push_back(base + b), dst.push_back(base + a), bonds.push_back(type);
    }
    const std::array<float, kTasks> y = rule.labels(m, keys[g]);
    labels.insert(labels.end(), y.begin(), y.end());
  }
  auto longs = [](const std::vector<int64_t>& v) {
    return torch::tensor(torch::ArrayRef<int64_t>(v), torch::kLong);
  };
  const int64_t b = int64_t(keys.size());
  return {longs(atoms), longs(src), longs(dst), longs(bonds), longs(graph),
          torch::tensor(torch::ArrayRef<float>(labels)).view({b, kTasks}), b};
}

// One GIN layer with edge features (OGB's GINConv): MLP((1 + eps) h_v + sum_{u->v} relu(h_u + e_uv)).
struct GinLayerImpl : torch::nn::Module {
  GinLayerImpl()
      : bond(kBondTypes, kHidden), fc1(kHidden, 2 * kHidden), fc2(2 * kHidden, kHidden),
        norm(torch::nn::LayerNormOptions({kHidden})) {
    register_module("bond", bond);
    eps = register_parameter("eps", torch::zeros({1}));
    register_module("fc1", fc1);
    register_module("fc2", fc2);
    register_module("norm", norm);
  }
  torch::Tensor forward(const torch::Tensor& h, const GraphBatch& g) {  // (N, H) -> (N, H)
    const torch::Tensor msg = torch::relu(h.index_select(0, g.src) + bond(g.bonds));  // (2E, H)
    const torch::Tensor agg = torch::zeros_like(h).index_add_(0, g.dst, msg);         // (N, H)
    return norm(fc2(torch::relu(fc1((1 + eps) * h + agg))));
  }
  torch::nn::Embedding bond;
  torch::Tensor eps;
  torch::nn::Linear fc1, fc2;
  torch::nn::LayerNorm norm;
};
TORCH_MODULE(GinLayer);

struct GinImpl : torch::nn::Module {
  GinImpl() : atom(kAtomTypes, kHidden), head(kHidden, kTasks) {
    register_module("atom", atom);
    for (int64_t l = 0; l < kLayers; ++l)
      layers.push_back(register_module("layer" + std::to_string(l), GinLayer()));
    register_module("head", head);
    // Sums over ~16 atoms are large: a head at a tenth of its default scale starts the logits near
    // unit size instead of ~10 (the loss starts at ~0.8 instead of ~3).
    torch::NoGradGuard no_grad;
    head->weight.mul_(0.1);
  }
  torch::Tensor forward(const GraphBatch& g) {  // -> (B, kTasks) logits
    torch::Tensor h = atom(g.atoms);             // (N, H)
    for (size_t l = 0; l < layers.size(); ++l) {
      h = layers[l]->forward(h, g);
      if (l + 1 < layers.size()) h = torch::relu(h);
    }
    const torch::Tensor pooled =
        torch::zeros({g.graphs, kHidden}, h.options()).index_add_(0, g.graph, h);  // (B, H)
    return head(pooled);
  }
  torch::nn::Embedding atom;
  std::vector<GinLayer> layers;
  torch::nn::Linear head;
};
TORCH_MODULE(Gin);

// Sum of binary cross-entropies over the labels present, and their number.
std::pair<torch::Tensor, int64_t> masked_bce_sum(const torch::Tensor& logits,
                                                 const torch::Tensor& labels) {
  const torch::Tensor present = labels == labels;  // not NaN
  return {torch::binary_cross_entropy_with_logits(logits.masked_select(present),
                                                  labels.masked_select(present), {}, {},
                                                  at::Reduction::Sum),
          present.sum().item<int64_t>()};
}

class GraphMol : public Workload {
 public:
  explicit GraphMol(const WorkloadOptions& o)
      : seed_(o.seed),
        batch_(o.batch_size > 0 ? o.batch_size : workload_defaults("graph_mol").batch_size),
        rank_(o.rank), world_(o.world) {
    torch::manual_seed(uint64_t(seed_));
    model_ = Gin();
  }
  std::string name() const override { return "graph_mol"; }
  std::string metric() const override { return "mean_average_precision"; }
  bool lower_is_better() const override { return false; }
  bool metric_needs_all_rows() const override { return true; }
  std::shared_ptr<torch::nn::Module> model() override { return model_.ptr(); }

  // Data parallel: the rank's molecules of the global batch; its loss is its sum over the labels
  // present divided by the global batch's number of present labels (counted from the keys alone),
  // times the world size, so that the runner's mean of the ranks' gradients is the gradient of the
  // global batch's mean loss, as one process computes it.
  torch::Tensor train_loss(int64_t step) override {
    model_->train();
    const auto [first, count] = shard_rows(batch_, rank_, world_);
    int64_t present = 0;
    for (int64_t i = 0; i < batch_; ++i)
      for (int t = 0; t < kTasks; ++t) present += !label_missing(key(kTrainStream, step, i), t);
    const GraphBatch g = batch(kTrainStream, step, first, count);
    return masked_bce_sum(model_->forward(g), g.labels).first * double(world_) /
           double(std::max<int64_t>(present, 1));
  }

  void forward_train_batch(int64_t index) override {
    torch::NoGradGuard no_grad;
    model_->forward(batch(kForwardStream, index, 0, batch_));
  }

  // This process's molecules of the split: the mean loss over their present labels, their scores
  // and labels as rows (kTasks scores, then kTasks labels) and the metric over them (data
  // parallel: the runner gathers every rank's rows and calls metric_of_rows).
  Evaluation evaluate(Split split) override {
    c10::InferenceMode inference;
    const bool was_training = model_->is_training();
    model_->eval();
    Evaluation ev;
    for (const GraphBatch& g : eval_batches(split)) {
      const torch::Tensor logits = model_->forward(g).to(torch::kCPU).contiguous();
      const auto [loss, present] = masked_bce_sum(logits, g.labels.to(torch::kCPU));
      ev.loss_sum += loss.item<double>();
      ev.count += double(present);
      const torch::Tensor rows = torch::cat({logits, g.labels.to(torch::kCPU)}, 1).contiguous();
      ev.rows.insert(ev.rows.end(), rows.data_ptr<float>(), rows.data_ptr<float>() + rows.numel());
    }
    model_->train(was_training);
    ev.loss = ev.loss_sum / std::max(ev.count, 1.0);
    ev.value = metric_of_rows(ev.rows);
    ev.metric_sum = ev.value * ev.count;
    return ev;
  }

  double metric_of_rows(const std::vector<float>& rows) const override {
    WAVG_CHECK(rows.size() % (2 * kTasks) == 0, "graph_mol: ", rows.size(),
               " gathered values do not form rows of ", 2 * kTasks);
    std::vector<float> scores, labels;
    for (size_t r = 0; r < rows.size(); r += 2 * kTasks) {
      scores.insert(scores.end(), rows.begin() + long(r), rows.begin() + long(r + kTasks));
      labels.insert(labels.end(), rows.begin() + long(r + kTasks), rows.begin() + long(r + 2 * kTasks));
    }
    return detail::ogb_mean_average_precision(labels, scores, kTasks);
  }

 private:
  uint64_t key(uint64_t stream, int64_t step, int64_t index) const {
    const bool fixed = stream == kValidation || stream == kTest;  // the same for every run seed
    return molecule_key(fixed ? kTeacherSeed : uint64_t(seed_), stream, uint64_t(step),
                        uint64_t(index));
  }

  // Molecules [first, first + count) of batch `step` of a stream, on the model's device.
  GraphBatch batch(uint64_t stream, int64_t step, int64_t first, int64_t count) const {
    std::vector<uint64_t> keys;
    for (int64_t i = first; i < first + count; ++i) keys.push_back(key(stream, step, i));
    return make_batch(rule_, keys).to(module_device(*model_));
  }

  // This rank's batches of a split, built on first use and kept. The split is cut into fixed
  // batches of kEvalChunk molecules and ranks take whole batches, so that every molecule is scored
  // in the same batch whatever the world size: the scores, and the average precision, are the
  // one-process ones bit for bit.
  const std::vector<GraphBatch>& eval_batches(Split split) {
    std::vector<GraphBatch>& cache = cached_[int(split)];
    if (!cache.empty()) return cache;
    const uint64_t stream = split == Split::kValidation ? kValidation :
                            split == Split::kTest       ? kTest : kTrainEvalStream;
    const auto [first, count] = shard_rows(kEvalMolecules / kEvalChunk, rank_, world_);
    for (int64_t b = first; b < first + count; ++b)
      cache.push_back(batch(stream, 0, b * kEvalChunk, kEvalChunk));
    return cache;
  }

  int64_t seed_, batch_;
  int rank_, world_;
  LabelRule rule_;
  Gin model_{nullptr};
  std::vector<GraphBatch> cached_[3];  // by Split
};

}  // namespace

// Memory of a run, from GinImpl's shapes (per molecule, fp32 unless said; a molecule of the mean
// size, 16 atoms and 17 bonds (a tree and a ring), each bond two directed edges: a batch of 128
// averages out the sizes).
WorkloadFootprint graph_mol_footprint() {
  constexpr int64_t atoms = (kMinAtoms + kMaxAtoms) / 2, edges = 2 * (atoms + 1);
  const int64_t layer = kBondTypes * kHidden + 1 + (kHidden * 2 * kHidden + 2 * kHidden) +
                        (2 * kHidden * kHidden + kHidden) + 2 * kHidden;
  WorkloadFootprint f;
  f.averaged_elements = kAtomTypes * kHidden + kLayers * layer + (kHidden * kTasks + kTasks);
  // Kept for backward, per layer: the gathered messages and their relu (per edge); the MLP input,
  // fc1's relu (2H), fc2's input (2H), LayerNorm's input and statistics, the relu (per atom); the
  // embedded atoms, the pooled vector, the logits; int64 indices as 2 floats each.
  const int64_t per_layer = 2 * edges * kHidden + atoms * (7 * kHidden + 2);
  const int64_t kept = atoms * kHidden + kLayers * per_layer + kHidden + 3 * kTasks +
                       2 * (2 * atoms + 3 * edges);
  f.example_bytes = 2 * 4 * kept;  // and a gradient of each
  // The cached evaluation sets: per molecule its int64 atoms and graph ids, edges and bond types,
  // and labels.
  f.data_bytes = 3 * kEvalMolecules * (atoms * 8 * 2 + edges * 8 * 3 + kTasks * 4);
  f.train_examples = 0;  // an endless seeded stream
  return f;
}

std::unique_ptr<Workload> make_graph_mol(const WorkloadOptions& o) {
  return std::make_unique<GraphMol>(o);
}

}  // namespace wavg
