// synth_ctr: DLRM-small on seeded synthetic click logs — the CPU-sized stand-in for AlgoPerf's
// Criteo 1TB DLRM. Each sample has 13 log-normal dense features and 8 categorical fields with two
// Zipf-distributed ids each; its label is drawn from a fixed hidden teacher (a random factorization
// model). Training samples are an endless seeded stream; validation and test are fixed sets.
// Metric: validation log-loss.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "wavg/core/error.h"
#include "wavg/torch/device.h"
#include "wavg/workloads/registry.h"

namespace wavg {

namespace {

constexpr int64_t kDense = 13, kFields = 8, kBag = 2, kVocab = 1000, kEmbed = 16;
constexpr int64_t kEvalSamples = 20000;
constexpr uint64_t kTeacherSeed = 20250713;  // the data distribution, the same for every run seed

struct Samples {
  torch::Tensor dense;   // (N, 13) float, log1p of the raw log-normal values
  torch::Tensor ids;     // (N, 8, 2) long
  torch::Tensor labels;  // (N) float 0/1
  Samples to(c10::Device d) const { return {dense.to(d), ids.to(d), labels.to(d)}; }
};

class Generator {
 public:
  Generator() {
    std::mt19937_64 rng(kTeacherSeed);
    std::normal_distribution<double> n01(0.0, 1.0);
    // Zipf(1.1) over ids 0..kVocab-1 as a cumulative table.
    cdf_.resize(kVocab);
    double total = 0;
    for (int64_t i = 0; i < kVocab; ++i) total += 1.0 / std::pow(double(i + 1), 1.1);
    double acc = 0;
    for (int64_t i = 0; i < kVocab; ++i) cdf_[size_t(i)] = (acc += 1.0 / std::pow(double(i + 1), 1.1) / total);
    // Teacher: logit = w·dense + Σ_f a_f[id] + Σ_{f<g} <u_f[id_f], u_g[id_g]> + bias
    w_.resize(kDense);
    for (auto& v : w_) v = 0.8 * n01(rng);
    a_.resize(size_t(kFields * kVocab));
    for (auto& v : a_) v = 1.0 * n01(rng);
    u_.resize(size_t(kFields * kVocab * 4));
    for (auto& v : u_) v = 0.6 * n01(rng);
  }

  Samples draw(int64_t n, std::mt19937_64& rng) const {
    std::normal_distribution<double> n01(0.0, 1.0);
    std::uniform_real_distribution<double> unif(0.0, 1.0);
    Samples s{torch::empty({n, kDense}), torch::empty({n, kFields, kBag}, torch::kLong),
              torch::empty({n})};
    float* d = s.dense.data_ptr<float>();
    int64_t* ids = s.ids.data_ptr<int64_t>();
    float* y = s.labels.data_ptr<float>();
    for (int64_t i = 0; i < n; ++i) {
      double logit = -1.2;
      for (int64_t j = 0; j < kDense; ++j) {
        const double x = std::log1p(std::exp(n01(rng)));  // log1p of a log-normal value
        d[i * kDense + j] = float(x);
        logit += w_[size_t(j)] * (x - 1.0);
      }
      double u[kFields][4] = {};
      for (int64_t f = 0; f < kFields; ++f)
        for (int64_t b = 0; b < kBag; ++b) {
          const double r = unif(rng);
          const int64_t id =
              std::min<int64_t>(kVocab - 1, std::lower_bound(cdf_.begin(), cdf_.end(), r) - cdf_.begin());
          ids[(i * kFields + f) * kBag + b] = id;
          logit += a_[size_t(f * kVocab + id)] / kBag;
          for (int k = 0; k < 4; ++k) u[f][k] += u_[size_t((f * kVocab + id) * 4 + k)] / kBag;
        }
      for (int64_t f = 0; f < kFields; ++f)
        for (int64_t g = f + 1; g < kFields; ++g)
          for (int k = 0; k < 4; ++k) logit += u[f][k] * u[g][k];
      y[i] = unif(rng) < 1.0 / (1.0 + std::exp(-logit)) ? 1.0f : 0.0f;
    }
    return s;
  }

 private:
  std::vector<double> cdf_, w_, a_, u_;
};

torch::nn::Sequential mlp(std::vector<int64_t> sizes, bool last_relu) {
  torch::nn::Sequential s;
  for (size_t i = 0; i + 1 < sizes.size(); ++i) {
    s->push_back(torch::nn::Linear(sizes[i], sizes[i + 1]));
    if (i + 2 < sizes.size() || last_relu) s->push_back(torch::nn::ReLU());
  }
  return s;
}

struct DlrmImpl : torch::nn::Module {
  DlrmImpl() {
    bottom = register_module("bottom", mlp({kDense, 64, kEmbed}, /*last_relu=*/true));
    for (int64_t f = 0; f < kFields; ++f)
      tables.push_back(register_module(
          "emb" + std::to_string(f),
          torch::nn::EmbeddingBag(torch::nn::EmbeddingBagOptions(kVocab, kEmbed).mode(torch::kSum))));
    const int64_t pairs = (kFields + 1) * kFields / 2;  // dot products among 9 vectors
    top = register_module("top", mlp({kEmbed + pairs, 64, 1}, /*last_relu=*/false));
  }
  torch::Tensor forward(const torch::Tensor& dense, const torch::Tensor& ids) {  // -> (N) logits
    const torch::Tensor z = bottom->forward(dense);                                 // (N, 16)
    std::vector<torch::Tensor> vecs = {z};
    for (int64_t f = 0; f < kFields; ++f)
      vecs.push_back(tables[size_t(f)]->forward(ids.select(1, f).contiguous()));  // (N, 16)
    const torch::Tensor t = torch::stack(vecs, 1);                                // (N, 9, 16)
    const torch::Tensor dots = torch::bmm(t, t.transpose(1, 2));                  // (N, 9, 9)
    const auto tri = torch::triu_indices(kFields + 1, kFields + 1, /*offset=*/1);
    const torch::Tensor inter = dots.index({torch::indexing::Slice(), tri[0], tri[1]});  // (N, 36)
    return top->forward(torch::cat({z, inter}, 1)).squeeze(1);
  }
  torch::nn::Sequential bottom{nullptr}, top{nullptr};
  std::vector<torch::nn::EmbeddingBag> tables;
};
TORCH_MODULE(Dlrm);

class SynthCtr : public Workload {
 public:
  explicit SynthCtr(const WorkloadOptions& o)
      : seed_(o.seed),
        batch_(o.batch_size > 0 ? o.batch_size : workload_defaults("synth_ctr").batch_size),
        rank_(o.rank), world_(o.world) {
    std::mt19937_64 vrng(kTeacherSeed + 1), trng(kTeacherSeed + 2);
    val_ = gen_.draw(kEvalSamples, vrng);
    test_ = gen_.draw(kEvalSamples, trng);
    torch::manual_seed(uint64_t(seed_));
    model_ = Dlrm();
  }
  std::string name() const override { return "synth_ctr"; }
  std::string metric() const override { return "logloss"; }
  std::shared_ptr<torch::nn::Module> model() override { return model_.ptr(); }

  torch::Tensor train_loss(int64_t step) override {
    model_->train();
    const Samples s = mine(batch(step, 0));
    return torch::binary_cross_entropy_with_logits(model_->forward(s.dense, s.ids), s.labels);
  }
  void forward_train_batch(int64_t index) override {
    torch::NoGradGuard no_grad;
    const Samples s = batch(index, 1);
    model_->forward(s.dense, s.ids);
  }
  Evaluation evaluate(Split split) override {
    c10::InferenceMode inference;  // the splits are drawn once, at construction
    const bool was_training = model_->is_training();
    model_->eval();
    Samples s = split == Split::kTest ? test_ : val_;
    if (split == Split::kTrain) s = batch(0, 2);  // a batch of the training stream
    s = mine(s);
    double loss = 0;
    const int64_t n = s.labels.size(0);
    for (int64_t b = 0; b < n; b += 5000) {
      const int64_t m = std::min<int64_t>(5000, n - b);
      const Samples part = Samples{s.dense.narrow(0, b, m), s.ids.narrow(0, b, m),
                                   s.labels.narrow(0, b, m)}.to(module_device(*model_));
      const torch::Tensor logits = model_->forward(part.dense, part.ids);
      loss += torch::binary_cross_entropy_with_logits(logits, part.labels, {}, {},
                                                       at::Reduction::Sum)
                  .item<double>();
    }
    model_->train(was_training);
    return {loss / double(n), loss / double(n), loss, loss, double(n), {}};
  }

 private:
  // This rank's rows (data parallel).
  Samples mine(const Samples& s) const {
    if (world_ == 1) return s;
    const auto [first, count] = shard_rows(s.labels.size(0), rank_, world_);
    return {s.dense.narrow(0, first, count), s.ids.narrow(0, first, count),
            s.labels.narrow(0, first, count)};
  }
  Samples batch(int64_t index, int stream) const {
    std::mt19937_64 rng(uint64_t(seed_) * 0x9E3779B97F4A7C15ull ^
                        (uint64_t(index) * 3 + uint64_t(stream)) * 0xBF58476D1CE4E5B9ull);
    return gen_.draw(batch_, rng).to(module_device(*model_));  // made on the CPU, moved
  }
  int64_t seed_, batch_;
  int rank_, world_;
  Generator gen_;
  Samples val_, test_;
  Dlrm model_{nullptr};
};

}  // namespace

// Memory of a run, from DlrmImpl's shapes and Samples (per example, fp32 unless said).
WorkloadFootprint synth_ctr_footprint() {
  constexpr int64_t pairs = (kFields + 1) * kFields / 2, sample = kDense + 2 * kFields * kBag + 1;
  WorkloadFootprint f;
  f.averaged_elements = (kDense * 64 + 64) + (64 * kEmbed + kEmbed) + kFields * kVocab * kEmbed +
                        ((kEmbed + pairs) * 64 + 64) + (64 + 1);
  // Kept for backward: the sample (int64 ids as 2 floats), bottom MLP outputs and relus, the bags
  // (with their int64 offsets), the stacked vectors, their products, the pairs, the concatenation,
  // top MLP outputs and relu, the logit.
  const int64_t kept = sample + 2 * (64 + kEmbed) + kFields * (kEmbed + 4) + (kFields + 1) * kEmbed +
                       (kFields + 1) * (kFields + 1) + pairs + (kEmbed + pairs) + 2 * 64 + 2;
  f.example_bytes = 2 * 4 * kept;  // and a gradient of each
  f.data_bytes = 2 * kEvalSamples * 4 * sample;  // the validation and test sets
  f.train_examples = 0;                          // an endless seeded stream
  return f;
}

std::unique_ptr<Workload> make_synth_ctr(const WorkloadOptions& o) {
  return std::make_unique<SynthCtr>(o);
}

}  // namespace wavg
