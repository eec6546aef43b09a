// A run's state checked before use (issue 21 §1.4): one test per checked field of the manifest, the
// model file, LibTorch's optimizer.pt, the bank file's steps and the generator. Each case writes a
// valid state of a small model (Linear 3->2, AdamW, a LAWA and an EMA averager, 3 steps), changes one
// field (refreshing the manifest's size and CRC-32 of a changed file, so that only that field is
// wrong) and expects find_state to skip the state, or check_state to throw, with a message naming
// the file and the field; the untouched state passes. The bank state's own counters are checked in
// bank_state_test.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "wavg/core/error.h"
#include "wavg/io/safetensors.h"
#include "wavg/torch/model_averager.h"
#include "wavg/train/checkpoint.h"

using namespace wavg;
namespace fs = std::filesystem;

namespace {

struct TinyRun {
  std::shared_ptr<torch::nn::LinearImpl> model;
  std::unique_ptr<torch::optim::AdamW> optimizer;
  std::unique_ptr<ModelAverager> averager;
};

TinyRun make_run(int64_t in = 3, bool bias = true) {
  torch::manual_seed(0);
  TinyRun r;
  r.model = std::make_shared<torch::nn::LinearImpl>(torch::nn::LinearOptions(in, 2).bias(bias));
  r.optimizer = std::make_unique<torch::optim::AdamW>(r.model->parameters(),
                                                      torch::optim::AdamWOptions(0.01));
  r.averager = std::make_unique<ModelAverager>(
      r.model, std::vector<AveragerSpec>{LawaOptions(2), EmaOptions(0.9)});
  return r;
}

void train(TinyRun& r, int64_t steps) {
  r.averager->observe(0);
  for (int64_t s = 1; s <= steps; ++s) {
    r.optimizer->zero_grad();
    r.model->forward(torch::ones({4, r.model->options.in_features()})).pow(2).sum().backward();
    r.optimizer->step();
    r.averager->observe(s);
  }
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

class StateCheck : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() / ("wavg_state_check_" + std::to_string(::getpid()))).string();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    spit(dir_ + "/metrics.jsonl", "{\"a\":1}\n{\"b\":2}\n");  // 16 bytes
    run_ = make_run();
    train(run_, 3);
    write_state(run_, 3);
    state_ = dir_ + "/state/step_00000003";
  }
  void TearDown() override { fs::remove_all(dir_); }

  void write_state(TinyRun& r, int64_t step, const std::string& dir = "") {
    StateCounters c;
    c.step = step;
    c.metrics_bytes = 8;
    c.config_hash = "0123456789abcdef";
    fs::create_directories(dir.empty() ? dir_ : dir);
    save_state(dir.empty() ? dir_ : dir, c, *r.model, *r.optimizer, *r.averager);
  }

  nlohmann::json manifest() { return nlohmann::json::parse(slurp(state_ + "/manifest.json")); }
  void set_manifest(const nlohmann::json& m) { spit(state_ + "/manifest.json", m.dump()); }
  // The manifest's size and CRC-32 of `name` made to match the file again.
  void refresh(const std::string& name) {
    nlohmann::json m = manifest();
    const std::string bytes = slurp(state_ + "/" + name);
    m["files"][name] = {{"bytes", bytes.size()}, {"crc32", crc32_of(bytes)}};
    set_manifest(m);
  }
  // find_state skips the state, warning with every needle.
  void expect_skipped(const std::vector<std::string>& needles) {
    std::string warned;
    EXPECT_FALSE(find_state(dir_, [&](const std::string& w) { warned += w; }).has_value());
    for (const std::string& n : needles) EXPECT_NE(warned.find(n), std::string::npos) << warned;
  }
  // find_state accepts the manifest; check_state throws naming every needle.
  void expect_unfit(const std::vector<std::string>& needles) {
    const auto s = find_state(dir_, [](const std::string& w) { ADD_FAILURE() << w; });
    ASSERT_TRUE(s.has_value());
    TinyRun fresh = make_run();
    try {
      check_state(*s, *fresh.model, *fresh.optimizer, *fresh.averager);
      ADD_FAILURE() << "expected an error";
    } catch (const Error& e) {
      for (const std::string& n : needles)
        EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
    }
  }
  // Rewrites a safetensors file of the state with one metadata value changed.
  void set_metadata(const std::string& name, const std::string& key, const std::string& value) {
    const std::string path = state_ + "/" + name;
    std::map<std::string, std::string> meta;
    std::vector<std::vector<unsigned char>> data;
    std::vector<TensorOut> outs;
    {
      const SafetensorsFile f(path);
      meta = f.metadata();
      for (const TensorInfo& t : f.tensors()) {
        data.emplace_back(t.nbytes());
        if (t.nbytes()) f.read_bytes(t, 0, t.nbytes(), data.back().data());
      }
      size_t i = 0;
      for (const TensorInfo& t : f.tensors()) outs.push_back({t.name, t.dtype, t.shape, data[i++].data()});
    }
    meta[key] = value;
    write_safetensors(path + ".new", outs, meta);
    fs::rename(path + ".new", path);
    refresh(name);
  }

  std::string dir_, state_;
  TinyRun run_;
};

}  // namespace

TEST_F(StateCheck, AnUntouchedStatePasses) {
  const auto s = find_state(dir_, [](const std::string& w) { ADD_FAILURE() << w; });
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->counters.step, 3);
  TinyRun fresh = make_run();
  check_state(*s, *fresh.model, *fresh.optimizer, *fresh.averager);
  load_state(*s, *fresh.model, *fresh.optimizer, *fresh.averager);
  EXPECT_TRUE(torch::equal(fresh.model->weight, run_.model->weight));
}

TEST_F(StateCheck, ManifestStepOtherThanTheDirectorys) {
  auto m = manifest();
  m["step"] = 4;
  set_manifest(m);
  expect_skipped({"manifest.json", "'step'"});
}

TEST_F(StateCheck, ManifestWorldSize) {
  auto m = manifest();
  m["world_size"] = 0;
  set_manifest(m);
  expect_skipped({"manifest.json", "'world_size'"});
}

TEST_F(StateCheck, ManifestListsAFileOutsideTheState) {
  auto m = manifest();
  m["files"]["../../metrics.jsonl"] = {{"bytes", 16}, {"crc32", 0}};
  set_manifest(m);
  expect_skipped({"manifest.json", "'files'", "../../metrics.jsonl"});
}

TEST_F(StateCheck, ManifestLacksAFile) {
  auto m = manifest();
  m["files"].erase("rng.bin");
  set_manifest(m);
  expect_skipped({"manifest.json", "lacks 'rng.bin'"});
}

TEST_F(StateCheck, ManifestFileSize) {
  auto m = manifest();
  m["files"]["optimizer.pt"]["bytes"] = -5;
  set_manifest(m);
  expect_skipped({"files['optimizer.pt']", "'bytes'"});
}

TEST_F(StateCheck, ManifestWallTime) {
  auto m = manifest();
  m["train_wall_s"] = -1.0;
  set_manifest(m);
  expect_skipped({"manifest.json", "'train_wall_s'"});
}

TEST_F(StateCheck, ManifestMetricsBytesPastTheEnd) {
  auto m = manifest();
  m["metrics_bytes"] = 17;
  set_manifest(m);
  expect_skipped({"manifest.json", "'metrics_bytes' is 17, past the end"});
}

TEST_F(StateCheck, ManifestMetricsBytesInsideALine) {
  auto m = manifest();
  m["metrics_bytes"] = 5;
  set_manifest(m);
  expect_skipped({"manifest.json", "'metrics_bytes' is 5, not the end of a line"});
}

TEST_F(StateCheck, ManifestConfigHash) {
  auto m = manifest();
  m["config_hash"] = 5;
  set_manifest(m);
  expect_skipped({"manifest.json", "'config_hash'"});
}

TEST_F(StateCheck, ManifestStopReason) {
  auto m = manifest();
  m["stop_reason"] = "maybe";
  set_manifest(m);
  expect_skipped({"manifest.json", "'stop_reason'"});
}

TEST_F(StateCheck, ModelStep) {
  set_metadata("model.safetensors", "step", "2");
  expect_unfit({"model.safetensors", "'step'"});
}

TEST_F(StateCheck, ModelTensorShape) {
  TinyRun other = make_run(4);  // weight [2, 4]
  train(other, 3);
  const std::string tmp = dir_ + "/other";
  write_state(other, 3, tmp);
  fs::copy_file(tmp + "/state/step_00000003/model.safetensors", state_ + "/model.safetensors",
                fs::copy_options::overwrite_existing);
  refresh("model.safetensors");
  expect_unfit({"model.safetensors", "tensor 'weight'", "shape"});
}

TEST_F(StateCheck, OptimizerMomentShape) {
  TinyRun other = make_run(4);
  train(other, 3);
  const std::string tmp = dir_ + "/other";
  write_state(other, 3, tmp);
  fs::copy_file(tmp + "/state/step_00000003/optimizer.pt", state_ + "/optimizer.pt",
                fs::copy_options::overwrite_existing);
  refresh("optimizer.pt");
  expect_unfit({"optimizer.pt", "'exp_avg'", "shape"});
}

TEST_F(StateCheck, OptimizerParameterCount) {
  TinyRun other = make_run(3, false);  // no bias: one parameter
  train(other, 3);
  const std::string tmp = dir_ + "/other";
  write_state(other, 3, tmp);
  fs::copy_file(tmp + "/state/step_00000003/optimizer.pt", state_ + "/optimizer.pt",
                fs::copy_options::overwrite_existing);
  refresh("optimizer.pt");
  expect_unfit({"optimizer.pt", "parameter group 0 has 1 parameters"});
}

TEST_F(StateCheck, OptimizerStepOfAnotherState) {
  TinyRun other = make_run();
  train(other, 2);
  const std::string tmp = dir_ + "/other";
  write_state(other, 2, tmp);
  fs::copy_file(tmp + "/state/step_00000002/optimizer.pt", state_ + "/optimizer.pt",
                fs::copy_options::overwrite_existing);
  refresh("optimizer.pt");
  expect_unfit({"optimizer.pt", "largest step count is 2", "step is 3"});
}

TEST_F(StateCheck, OptimizerNotAnArchive) {
  spit(state_ + "/optimizer.pt", "not a zip archive");
  refresh("optimizer.pt");
  expect_unfit({"optimizer.pt", "not an optimizer state"});
}

TEST_F(StateCheck, BankStep) {
  set_metadata("bank.safetensors", "step", "2");
  expect_unfit({"bank.safetensors", "'step'"});
}

TEST_F(StateCheck, BankLastStepAfterTheManifestsStep) {
  set_metadata("bank.safetensors", "bank.last_step", "7");
  expect_unfit({"bank.safetensors", "'bank.last_step' is 7"});
}

TEST_F(StateCheck, BankRingCount) {
  set_metadata("bank.safetensors", "ring.0.count", "-1");
  expect_unfit({"bank.safetensors", "'ring.0.count' is -1"});
}

TEST_F(StateCheck, GeneratorSize) {
  std::string rng = slurp(state_ + "/rng.bin");
  rng.resize(rng.size() / 2);
  spit(state_ + "/rng.bin", rng);
  refresh("rng.bin");
  expect_unfit({"rng.bin", "bytes, a CPU generator state has"});
}
