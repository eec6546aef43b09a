// One logical checkpoint over one or many safetensors files (DESIGN.md §9). A checkpoint argument
// is a single `.safetensors` file, a sharded checkpoint's index `*.safetensors.index.json`
// (Hugging Face's convention: {"metadata": {"total_size": N}, "weight_map": {tensor: shard file}},
// shards `model-00001-of-00003.safetensors` beside it), or a directory: read through its index if it
// holds one, else through its single `.safetensors` file.
//
// Every shard is a SafetensorsFile (all of its checks apply); an index is read with the same rules
// (a regular file, at most kMaxHeaderBytes, JSON nesting bounded, duplicate keys refused, quoted
// excerpts bounded) and must describe its shards exactly: entries are plain file names (no '/', not
// "." or ".."), every tensor is in exactly one shard and in the one the map names, every tensor of a
// shard is in the map. Named files may be symlinks (the Hugging Face cache links into
// ../../blobs/): they are followed to regular files. A `total_size` that differs from the tensors'
// data bytes is a warning, not an error (real indexes disagree).
//
// Names: with strip_prefixes, a tensor's key is its name with any of the prefixes removed from its
// start (repeatedly: "_orig_mod.module.w" -> "w"); checkpoints are matched by keys, and each keeps
// its own names (an average writes the newest checkpoint's).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "wavg/io/safetensors.h"

namespace wavg {

enum class CheckpointForm { kSingle, kSharded };

// One tensor of a checkpoint: where its bytes are.
struct CheckpointTensor {
  std::string key;                   // the name after strip_prefixes (the name without them)
  const TensorInfo* info = nullptr;  // in its shard's header; info->name is the name in the file
  size_t shard = 0;                  // index into CheckpointSet::shard()
};

struct CheckpointSetOptions {
  std::vector<std::string> strip_prefixes;
  // Accept every dtype of the format (`wavg average`); otherwise only the classic ones
  // (SafetensorsFile's all_dtypes).
  bool all_dtypes = false;
  // Receives warnings (a total_size mismatch); default: one line "wavg: warning: ..." on stderr.
  std::function<void(const std::string&)> warn;
};

class CheckpointSet {
 public:
  explicit CheckpointSet(const std::string& path, const CheckpointSetOptions& options = {});
  CheckpointSet(const CheckpointSet&) = delete;
  CheckpointSet& operator=(const CheckpointSet&) = delete;

  const std::string& path() const { return path_; }  // as given
  CheckpointForm form() const { return form_; }
  // The index file (sharded) or the single file that was read.
  const std::string& source() const { return source_; }
  // Shards in the order of their file names (one for a single file).
  size_t shard_count() const { return shards_.size(); }
  const SafetensorsFile& shard(size_t i) const { return *shards_[i]; }
  const std::vector<std::string>& shard_names() const { return shard_names_; }
  // Tensors shard by shard, each shard's in data order.
  const std::vector<CheckpointTensor>& tensors() const { return tensors_; }
  const CheckpointTensor* find(const std::string& key) const;
  // Copies `size` bytes of tensor t starting `offset` bytes into it (pread).
  void read_bytes(const CheckpointTensor& t, uint64_t offset, size_t size, void* dst) const;
  uint64_t data_bytes() const { return data_bytes_; }
  // The index's "metadata" object as compact JSON ("{}" for a single file or none).
  const std::string& index_metadata() const { return index_metadata_; }
  // The files and directories this checkpoint is made of (the argument, the index, the shards, a
  // sharded checkpoint's directory): what an output must not be or contain.
  std::vector<std::string> paths() const;
  // Frees the shards' __metadata__ (see SafetensorsFile::release_metadata).
  void release_metadata();
  // SafetensorsFile::verify_checksum of every shard.
  void verify_checksums() const;

 private:
  void open_single(const std::string& file, const CheckpointSetOptions& options);
  void open_index(const std::string& index, const CheckpointSetOptions& options);
  void index_tensors(const CheckpointSetOptions& options);

  std::string path_, source_, index_metadata_ = "{}";
  CheckpointForm form_ = CheckpointForm::kSingle;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::vector<std::string> shard_names_;
  std::vector<CheckpointTensor> tensors_;
  std::unordered_map<std::string, size_t> by_key_;
  uint64_t data_bytes_ = 0;
};

// `name` with any of `prefixes` removed from its start, repeatedly.
std::string strip_name_prefixes(const std::string& name, const std::vector<std::string>& prefixes);

// The tensors of `f` in the order of ref's: every key of `f` is in `ref` with the same dtype and
// shape, and every key of `ref` in `f`. When the names differ the error (prefixed by `command`)
// lists a few mismatches each way and, if one prefix on one side's names explains all of them,
// names it and suggests `--strip-prefix P`.
std::vector<const CheckpointTensor*> match_checkpoint(const CheckpointSet& f,
                                                      const CheckpointSet& ref,
                                                      const std::string& command);

// The prefix P such that the names `extra` are exactly the names `missing` with P in front (the
// same number of each, every one explained), or nullopt.
std::optional<std::string> explaining_prefix(const std::vector<std::string>& extra,
                                             const std::vector<std::string>& missing);

// Bytes of a size such as "500MB", "5GB", "1GiB", "2.5GB", "4096" (bytes): decimal units B, KB, MB,
// GB, TB (10^3 steps) and binary KiB, MiB, GiB, TiB (2^10 steps), case-insensitive, > 0. `what`
// names the flag in the error.
uint64_t parse_byte_size(const std::string& text, const std::string& what);

}  // namespace wavg
