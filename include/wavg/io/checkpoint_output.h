// Writing a checkpoint made from others (an average) in the form of its newest input (DESIGN.md §9):
// a single safetensors file, or a directory of shards and their index — the same shard layout as
// the newest input, or re-sharded at a size bound. Atomic as a whole: a single file through
// AtomicFile; a directory is written as `<out>.tmp.<host>.<pid>.<random>` in the same parent (removed
// on SIGINT/SIGTERM once install_temporary_cleanup() ran, and by a later writer once its process is
// gone), fsync'ed, and renamed into place: renameat2(RENAME_NOREPLACE), or, replacing an existing
// output, renameat2(RENAME_EXCHANGE) and then the old one removed. Never a half-written shard set.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "wavg/io/checkpoint_set.h"
#include "wavg/io/safetensors.h"

namespace wavg {

struct OutputShard {
  std::string file;             // file name in the output directory (or the output path, single)
  std::vector<size_t> tensors;  // indices into the tensor list, in the order written
  std::map<std::string, std::string> metadata;  // the shard's __metadata__
};

struct OutputLayout {
  CheckpointForm form = CheckpointForm::kSingle;
  std::string index_name;  // sharded: "model.safetensors.index.json"
  std::vector<OutputShard> shards;
};

// The layout of an output written in the order of `newest`'s tensors (tensor k is
// newest.tensors()[k], taking out_nbytes[k] bytes): newest's own form, shards, file names and
// per-shard metadata (less its data checksum, which the output's bytes would fail); with
// max_shard_size, a sharded layout whose shards hold at most that many data bytes (a larger tensor
// gets a shard of its own), named `<base>-00001-of-0000N.safetensors` after the newest's index (base
// "model" when the newest is a single file).
OutputLayout output_layout(const CheckpointSet& newest, const std::vector<uint64_t>& out_nbytes,
                           std::optional<uint64_t> max_shard_size);

struct CheckpointWriteOptions {
  bool overwrite = false;          // replace an existing output (else an error naming it)
  std::string index_metadata = "{}";  // JSON object: the index's "metadata" (total_size is set)
};

// Writes tensors `outs` (produce(k, write) writes tensor k's bytes, once, in layout order) to `out`
// in `layout`. An existing output is replaced only with overwrite, and an existing directory only
// if it holds nothing but files named *.safetensors or *.json.
void write_checkpoint(const std::string& out, const OutputLayout& layout,
                      const std::vector<TensorOut>& outs,
                      const std::function<void(size_t, const ByteWriter&)>& produce,
                      const CheckpointWriteOptions& options);

// Refuses (naming both) an output that is, by device and inode with symlinks resolved, one of the
// inputs' files or directories, or a directory that holds one of them at any depth.
void check_output_apart(const std::string& out, const std::vector<const CheckpointSet*>& inputs,
                        const std::string& command);

}  // namespace wavg
