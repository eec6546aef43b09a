// GoogleTests of the io pieces behind sharded checkpoints (issue 15 §1-2): byte sizes of flags,
// the prefix that explains a name mismatch, prefix stripping, re-sharded layouts, and the removal of
// temporary directories (flat, symlinks not followed). Expected values are worked out by hand.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "wavg/core/error.h"
#include "wavg/io/atomic_file.h"
#include "wavg/io/checkpoint_output.h"
#include "wavg/io/checkpoint_set.h"
#include "wavg/io/safetensors.h"

using namespace wavg;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/wavg_ckset_XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

}  // namespace

TEST(ByteSize, DecimalAndBinaryUnits) {
  EXPECT_EQ(parse_byte_size("500MB", "f"), 500000000u);
  EXPECT_EQ(parse_byte_size("5GB", "f"), 5000000000u);
  EXPECT_EQ(parse_byte_size("5gb", "f"), 5000000000u);
  EXPECT_EQ(parse_byte_size("1GiB", "f"), 1073741824u);
  EXPECT_EQ(parse_byte_size("2.5GB", "f"), 2500000000u);
  EXPECT_EQ(parse_byte_size("4096", "f"), 4096u);
  EXPECT_EQ(parse_byte_size("10KiB", "f"), 10240u);
  EXPECT_EQ(parse_byte_size("7B", "f"), 7u);
}

TEST(ByteSize, BadValuesNameTheFlag) {
  for (const char* bad : {"", "GB", "5XB", "-1GB", "0", "0.1B", "1.2.3MB", "5 GB", "1e3MB",
                          "99999999999TB"}) {
    try {
      parse_byte_size(bad, "--max-shard-size");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--max-shard-size"), std::string::npos) << e.what();
    }
  }
}

TEST(NamePrefixes, ExplainingPrefix) {
  EXPECT_EQ(explaining_prefix({"module.a", "module.b.c"}, {"a", "b.c"}), "module.");
  EXPECT_EQ(explaining_prefix({"_orig_mod.module.a"}, {"a"}), "_orig_mod.module.");
  EXPECT_EQ(explaining_prefix({"net.x", "net.y"}, {"x", "y"}), "net.");
  // Not every mismatch explained: no prefix.
  EXPECT_EQ(explaining_prefix({"module.a", "other.b"}, {"a", "b"}), std::nullopt);
  EXPECT_EQ(explaining_prefix({"module.a", "module.b"}, {"a", "c"}), std::nullopt);
  EXPECT_EQ(explaining_prefix({"module.a"}, {"a", "b"}), std::nullopt);
  EXPECT_EQ(explaining_prefix({}, {}), std::nullopt);
}

TEST(NamePrefixes, StripRepeatedlyNeverToEmpty) {
  const std::vector<std::string> p = {"module.", "_orig_mod."};
  EXPECT_EQ(strip_name_prefixes("_orig_mod.module.w", p), "w");
  EXPECT_EQ(strip_name_prefixes("module.module.w", p), "w");
  EXPECT_EQ(strip_name_prefixes("w.module.", p), "w.module.");
  EXPECT_EQ(strip_name_prefixes("module.", p), "module.");
  EXPECT_EQ(strip_name_prefixes("model.w", {}), "model.w");
}

TEST(CheckpointSet, StrippedNamesThatCollideAreRefused) {
  TempDir dir;
  const float v[2] = {1, 2};
  write_safetensors(dir / "a.safetensors",
                    {{"module.w", DType::kF32, {2}, v}, {"w", DType::kF32, {2}, v}});
  CheckpointSetOptions o;
  o.strip_prefixes = {"module."};
  EXPECT_THROW(CheckpointSet(dir / "a.safetensors", o), Error);
  EXPECT_EQ(CheckpointSet(dir / "a.safetensors").tensors().size(), 2u);
}

TEST(OutputLayout, GreedyReshardingInOrder) {
  TempDir dir;
  const std::vector<float> v(64, 1.0f);
  // 40, 40, 100, 8 bytes (F32): bound 80 -> [a b] [c] [d]; a tensor over the bound gets its own.
  write_safetensors(dir / "m.safetensors", {{"a", DType::kF32, {10}, v.data()},
                                            {"b", DType::kF32, {10}, v.data()},
                                            {"c", DType::kF32, {25}, v.data()},
                                            {"d", DType::kF32, {2}, v.data()}});
  CheckpointSet set(dir / "m.safetensors");
  const OutputLayout l = output_layout(set, {40, 40, 100, 8}, uint64_t(80));
  ASSERT_EQ(l.shards.size(), 3u);
  EXPECT_EQ(l.form, CheckpointForm::kSharded);
  EXPECT_EQ(l.index_name, "model.safetensors.index.json");
  EXPECT_EQ(l.shards[0].file, "model-00001-of-00003.safetensors");
  EXPECT_EQ(l.shards[0].tensors, (std::vector<size_t>{0, 1}));
  EXPECT_EQ(l.shards[1].tensors, (std::vector<size_t>{2}));
  EXPECT_EQ(l.shards[2].tensors, (std::vector<size_t>{3}));
  const OutputLayout same = output_layout(set, {40, 40, 100, 8}, std::nullopt);
  EXPECT_EQ(same.form, CheckpointForm::kSingle);
  ASSERT_EQ(same.shards.size(), 1u);
  EXPECT_EQ(same.shards[0].tensors.size(), 4u);
}

TEST(TemporaryDirectories, FlatRemovalDoesNotFollowSymlinks) {
  TempDir dir;
  fs::create_directory(dir / "keep");
  std::ofstream(dir / "keep/precious") << "x";
  fs::create_directory(dir / "t");
  std::ofstream(dir / "t/shard") << "y";
  fs::create_symlink(dir / "keep", dir / "t/link");
  remove_flat_directory(dir / "t");
  EXPECT_FALSE(fs::exists(dir / "t"));
  EXPECT_TRUE(fs::exists(dir / "keep/precious"));
}

TEST(TemporaryDirectories, StaleOnesOfGoneProcessesAreRemoved) {
  TempDir dir;
  // A pid that is not running: a child that has exited and been reaped.
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  int status = 0;
  ::waitpid(child, &status, 0);
  const std::string name = fresh_temporary_name(dir / "out");
  const auto parsed = parse_temporary_name(fs::path(name).filename().string());
  ASSERT_TRUE(parsed.has_value());
  const std::string stale = dir / ("out.tmp." + parsed->host + "." + std::to_string(child) +
                                   ".0123456789abcdef");
  fs::create_directory(stale);
  std::ofstream(stale + "/model-00001-of-00002.safetensors") << "half";
  const std::string mine = name;  // this process is alive: kept
  fs::create_directory(mine);
  remove_stale_temporaries(dir.path.string());
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(mine));
}

// Issue 21 §2: a sharded checkpoint with an FP8 tensor in its second shard is read whole only by a
// reader that asks for every dtype (`wavg average`); every other one (eval, soup, resume: LibTorch
// 1.13 has no FP8) refuses it naming the shard, the tensor and the dtype.
TEST(CheckpointSetDTypes, NonClassicDTypesOnlyWhenAsked) {
  TempDir dir;
  const float one = 1.0f;
  const unsigned char fp8[2] = {0x38, 0x40};
  write_safetensors(dir / "m-1.safetensors", {{"a", DType::kF32, {1}, &one}});
  write_safetensors(dir / "m-2.safetensors", {{"b", DType::kF8E4M3, {2}, fp8}});
  {
    std::ofstream index(dir / "m.safetensors.index.json");
    index << R"({"metadata": {}, "weight_map": {"a": "m-1.safetensors", "b": "m-2.safetensors"}})";
  }
  CheckpointSetOptions all;
  all.all_dtypes = true;
  const CheckpointSet set(dir / "m.safetensors.index.json", all);
  ASSERT_NE(set.find("b"), nullptr);
  EXPECT_EQ(set.find("b")->info->dtype, DType::kF8E4M3);
  try {
    CheckpointSet classic(dir / "m.safetensors.index.json");
    ADD_FAILURE() << "read an FP8 tensor";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("m-2.safetensors: tensor 'b' has dtype F8_E4M3, which only `wavg average` reads"),
              std::string::npos)
        << m;
  }
}
