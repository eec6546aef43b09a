// text_lm: a byte-level decoder-only transformer on WordNet glosses (Debian's wordnet-base) — the
// CPU-sized stand-in for AlgoPerf's WMT / the paper's 124M GPT. Each synset becomes one line
// "lemma: gloss"; lines with index ≡ 0 (mod 20) are held out for validation, ≡ 1 for test.
// Model: RoPE, RMSNorm, SwiGLU, no biases, causal attention written by hand (LibTorch 1.13 has no
// fused attention). Metric: validation cross-entropy in nats per byte.
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <random>

#include "wavg/core/error.h"
#include "wavg/torch/device.h"
#include "wavg/workloads/registry.h"

namespace wavg {

namespace {

constexpr int64_t kContext = 64;  // bytes per sequence
constexpr int64_t kDim = 128, kHeads = 4, kLayers = 2, kHidden = 344, kVocab = 256;
constexpr int64_t kEvalSequences = 256;  // per evaluation: 16 384 predicted bytes

std::string data_dir() {
  const char* env = std::getenv("WAVG_WORDNET_DIR");
  return env ? env : "/usr/share/wordnet";
}

// Splits WordNet's data.* files into train / validation / test byte streams.
void load_glosses(std::string* train, std::string* val, std::string* test) {
  int64_t index = 0;
  for (const char* part : {"noun", "verb", "adj", "adv"}) {
    const std::string path = data_dir() + "/data." + part;
    std::ifstream f(path);
    WAVG_CHECK(f.good(), "text_lm: cannot open ", path,
               " (install the data with 'apt-get install wordnet-base' or 'scripts/setup.sh')");
    std::string line;
    while (std::getline(f, line)) {
      if (line.size() < 20 || line[0] == ' ') continue;  // license header lines start with spaces
      const auto bar = line.find(" | ");
      if (bar == std::string::npos) continue;
      // fields: offset lex_filenum ss_type w_cnt word ...
      size_t p = 0;
      for (int field = 0; field < 4 && p != std::string::npos; ++field) p = line.find(' ', p + 1);
      if (p == std::string::npos) continue;
      const size_t q = line.find(' ', p + 1);
      std::string lemma = line.substr(p + 1, q - p - 1);
      for (char& c : lemma)
        if (c == '_') c = ' ';
      std::string gloss = line.substr(bar + 3);
      while (!gloss.empty() && gloss.back() == ' ') gloss.pop_back();
      const std::string text = lemma + ": " + gloss + "\n";
      std::string* dst = index % 20 == 0 ? val : index % 20 == 1 ? test : train;
      *dst += text;
      ++index;
    }
  }
  WAVG_CHECK(train->size() > 100000, "text_lm: too little text in ", data_dir());
}

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight) {
  return x * torch::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + 1e-6) * weight;
}

// Rotary position embedding on (B, H, T, hd) with cos/sin of shape (T, hd/2).
torch::Tensor rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  const torch::Tensor x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  return torch::cat({x1 * cos - x2 * sin, x1 * sin + x2 * cos}, -1);
}

struct BlockImpl : torch::nn::Module {
  BlockImpl()
      : qkv(torch::nn::LinearOptions(kDim, 3 * kDim).bias(false)),
        proj(torch::nn::LinearOptions(kDim, kDim).bias(false)),
        gate(torch::nn::LinearOptions(kDim, 2 * kHidden).bias(false)),
        down(torch::nn::LinearOptions(kHidden, kDim).bias(false)) {
    norm1 = register_parameter("norm1", torch::ones({kDim}));
    norm2 = register_parameter("norm2", torch::ones({kDim}));
    register_module("qkv", qkv);
    register_module("proj", proj);
    register_module("gate", gate);
    register_module("down", down);
  }
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& mask) {
    const int64_t B = x.size(0), T = x.size(1), hd = kDim / kHeads;
    // Attention: (B, T, C) -> q, k, v (B, H, T, hd)
    auto parts = qkv(rms_norm(x, norm1)).view({B, T, 3, kHeads, hd}).permute({2, 0, 3, 1, 4});
    const torch::Tensor q = rope(parts[0], cos, sin), k = rope(parts[1], cos, sin), v = parts[2];
    torch::Tensor att = torch::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(double(hd)));
    att = torch::softmax(att + mask, -1);                                     // (B, H, T, T)
    const torch::Tensor y = torch::matmul(att, v).transpose(1, 2).reshape({B, T, kDim});
    x = x + proj(y);
    // SwiGLU MLP
    auto gu = gate(rms_norm(x, norm2)).chunk(2, -1);
    return x + down(torch::silu(gu[0]) * gu[1]);
  }
  torch::Tensor norm1, norm2;
  torch::nn::Linear qkv, proj, gate, down;
};
TORCH_MODULE(Block);

struct GptImpl : torch::nn::Module {
  GptImpl() : embed(kVocab, kDim), head(torch::nn::LinearOptions(kDim, kVocab).bias(false)) {
    register_module("embed", embed);
    for (int64_t l = 0; l < kLayers; ++l)
      blocks.push_back(register_module("block" + std::to_string(l), Block()));
    norm = register_parameter("norm", torch::ones({kDim}));
    register_module("head", head);
    // Fixed tables, not state: rotary angles and the causal mask.
    const int64_t hd = kDim / kHeads;
    const torch::Tensor inv = torch::pow(10000.0, -torch::arange(0, hd, 2, torch::kFloat) / hd);
    const torch::Tensor ang = torch::outer(torch::arange(kContext, torch::kFloat), inv);
    cos = ang.cos();
    sin = ang.sin();
    mask = torch::full({kContext, kContext}, -INFINITY).triu(1);
  }
  torch::Tensor forward(const torch::Tensor& idx) {  // (B, T) bytes -> (B, T, 256) logits
    const int64_t T = idx.size(1);
    if (cos.device() != idx.device()) {  // the tables follow the model to its device, once
      cos = cos.to(idx.device());
      sin = sin.to(idx.device());
      mask = mask.to(idx.device());
    }
    torch::Tensor x = embed(idx);
    const torch::Tensor c = cos.narrow(0, 0, T), s = sin.narrow(0, 0, T);
    const torch::Tensor m = mask.narrow(0, 0, T).narrow(1, 0, T);
    for (auto& b : blocks) x = b->forward(x, c, s, m);
    return head(rms_norm(x, norm));
  }
  torch::nn::Embedding embed;
  std::vector<Block> blocks;
  torch::Tensor norm;
  torch::nn::Linear head;
  torch::Tensor cos, sin, mask;
};
TORCH_MODULE(Gpt);

class TextLm : public Workload {
 public:
  explicit TextLm(const WorkloadOptions& o)
      : seed_(o.seed),
        batch_(o.batch_size > 0 ? o.batch_size : workload_defaults("text_lm").batch_size),
        rank_(o.rank), world_(o.world) {
    load_glosses(&train_, &val_, &test_);
    torch::manual_seed(uint64_t(seed_));
    model_ = Gpt();
  }
  std::string name() const override { return "text_lm"; }
  std::string metric() const override { return "ce_nats_per_byte"; }
  std::shared_ptr<torch::nn::Module> model() override { return model_.ptr(); }

  torch::Tensor train_loss(int64_t step) override {
    model_->train();
    auto [x, y] = batch(step, 0);
    if (world_ > 1) {  // this rank's rows of the global batch
      const auto [first, count] = shard_rows(batch_, rank_, world_);
      x = x.narrow(0, first, count);
      y = y.narrow(0, first, count);
    }
    return torch::nn::functional::cross_entropy(model_->forward(x).reshape({-1, kVocab}),
                                                y.reshape(-1));
  }
  void forward_train_batch(int64_t index) override {
    torch::NoGradGuard no_grad;
    model_->forward(batch(index, 1).first);
  }
  // Inference mode; the windows of each split are built once and reused by every evaluation, in
  // the same 64-sequence batches as before (bit-identical values).
  Evaluation evaluate(Split split) override {
    c10::InferenceMode inference;
    const bool was_training = model_->is_training();
    model_->eval();
    const torch::Tensor& seq = eval_windows(split);
    const int64_t n = seq.size(0);
    double loss = 0;
    const auto [first, count] = shard_rows(n, rank_, world_);  // this rank's windows
    for (int64_t b = first; b < first + count; b += 64) {
      const torch::Tensor s = seq.narrow(0, b, std::min<int64_t>(64, first + count - b));
      const torch::Tensor logits = model_->forward(s.narrow(1, 0, kContext));
      loss += torch::nn::functional::cross_entropy(
                  logits.reshape({-1, kVocab}), s.narrow(1, 1, kContext).reshape(-1),
                  torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                  .item<double>();
    }
    model_->train(was_training);
    const double bytes = double(count * kContext), ce = loss / bytes;
    return {ce, ce, loss, loss, bytes, {}};
  }

 private:
  // Fixed, evenly spaced windows over a split (kEvalSequences of kContext + 1 bytes), built once.
  const torch::Tensor& eval_windows(Split split) {
    torch::Tensor& seq = windows_[int(split)];
    if (seq.defined()) return seq;
    const std::string& text = split == Split::kTrain ? train_ : split == Split::kTest ? test_ : val_;
    const int64_t n = kEvalSequences;
    const int64_t stride = (int64_t(text.size()) - kContext - 1) / n;
    seq = torch::empty({n, kContext + 1}, torch::kLong);
    int64_t* p = seq.data_ptr<int64_t>();
    for (int64_t i = 0; i < n; ++i)
      for (int64_t t = 0; t <= kContext; ++t)
        p[i * (kContext + 1) + t] = uint8_t(text[size_t(i * stride + t)]);
    seq = seq.to(module_device(*model_));
    return seq;
  }

  // Random windows of the training stream; batch `index` of stream s is seeded by (seed, s, index).
  std::pair<torch::Tensor, torch::Tensor> batch(int64_t index, int stream) {
    std::mt19937_64 rng(uint64_t(seed_) * 0x9E3779B97F4A7C15ull ^
                        (uint64_t(index) * 2 + uint64_t(stream)) * 0xBF58476D1CE4E5B9ull);
    std::uniform_int_distribution<int64_t> pos(0, int64_t(train_.size()) - kContext - 2);
    torch::Tensor seq = torch::empty({batch_, kContext + 1}, torch::kLong);
    int64_t* p = seq.data_ptr<int64_t>();
    for (int64_t i = 0; i < batch_; ++i) {
      const int64_t start = pos(rng);
      for (int64_t t = 0; t <= kContext; ++t)
        p[i * (kContext + 1) + t] = uint8_t(train_[size_t(start + t)]);
    }
    seq = seq.to(module_device(*model_));  // made on the CPU, moved to the model
    return {seq.narrow(1, 0, kContext), seq.narrow(1, 1, kContext).contiguous()};
  }

  int64_t seed_, batch_;
  int rank_, world_;
  std::string train_, val_, test_;
  Gpt model_{nullptr};
  torch::Tensor windows_[3];  // by Split: eval_windows()
};

}  // namespace

// Memory of a run, from GptImpl's shapes (per sequence of kContext bytes, fp32 unless said).
WorkloadFootprint text_lm_footprint() {
  constexpr int64_t T = kContext, TC = kContext * kDim;
  WorkloadFootprint f;
  const int64_t block = 2 * kDim + 4 * kDim * kDim + 3 * kDim * kHidden;  // norms, qkv+proj, gate+down
  f.averaged_elements = kVocab * kDim + kLayers * block + kDim + kDim * kVocab;
  // Kept per block: 23 (T, C) tensors (two RMSNorms of 3 each, qkv 3, rotary q and k 4 each,
  // attention output, its copy, projection, residuals, down), 4 (T, hidden) ones (gate's two halves,
  // silu, product) and 4 (H, T, T) attention maps (scores, scaled, masked, softmax).
  const int64_t per_block = 23 * TC + 4 * kHidden * T + 4 * kHeads * T * T;
  // Around the blocks: the embedding, the final RMSNorm, logits and log-softmax.
  const int64_t kept = kLayers * per_block + TC + 3 * TC + 2 * T * kVocab;
  f.example_bytes = 2 * 4 * kept + 2 * 8 * (kContext + 1);  // and a gradient of each; int64 bytes
  f.data_bytes = 32 << 20;  // WordNet's glosses: about 14 MB of text, once as three split strings
  f.train_examples = 0;     // windows drawn at random, with replacement
  return f;
}

std::unique_ptr<Workload> make_text_lm(const WorkloadOptions& o) {
  return std::make_unique<TextLm>(o);
}

}  // namespace wavg
