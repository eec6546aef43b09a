// Output layouts (same shards as the newest input, or re-sharded), the atomic shard-set writer
// (temporary directory + renameat2), and the output-is-not-an-input check.
#include "wavg/io/checkpoint_output.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>

#include "wavg/core/error.h"
#include "wavg/io/atomic_file.h"
#include "wavg/io/path_names.h"

namespace wavg {

namespace {

using json = nlohmann::json;



using detail::dir_of;
using detail::ends_with;
using detail::kShardIndexSuffix;
using detail::quoted_path;
using detail::base_name;

// A shard's metadata as an output made from `newest` carries it: the newest's, without its data
// checksum (wavg.data_crc32 covers the newest's bytes, not the output's: a reader that verifies it,
// such as load_module, would refuse the output as corrupted).
std::map<std::string, std::string> carried_metadata(const SafetensorsFile& shard) {
  std::map<std::string, std::string> m = shard.metadata();
  m.erase(kDataCrcKey);
  return m;
}

}  // namespace

OutputLayout output_layout(const CheckpointSet& newest, const std::vector<uint64_t>& out_nbytes,
                           std::optional<uint64_t> max_shard_size) {
  OutputLayout layout;
  const auto& tensors = newest.tensors();
  WAVG_ASSERT(out_nbytes.size() == tensors.size());
  if (!max_shard_size) {
    layout.form = newest.form();
    layout.index_name = base_name(newest.source());
    for (size_t s = 0; s < newest.shard_count(); ++s)
      layout.shards.push_back({newest.shard_names()[s], {}, carried_metadata(newest.shard(s))});
    for (size_t k = 0; k < tensors.size(); ++k) layout.shards[tensors[k].shard].tensors.push_back(k);
    return layout;
  }
  layout.form = CheckpointForm::kSharded;
  std::string base = "model";
  if (newest.form() == CheckpointForm::kSharded && ends_with(newest.source(), kShardIndexSuffix)) {
    const std::string name = base_name(newest.source());
    base = name.substr(0, name.size() - std::strlen(kShardIndexSuffix));
  }
  layout.index_name = base + kShardIndexSuffix;
  // Greedy, in order (as transformers' shard_checkpoint does): a tensor that would take the current
  // shard past the bound starts the next one.
  uint64_t used = 0;
  for (size_t k = 0; k < tensors.size(); ++k) {
    if (layout.shards.empty() || (used > 0 && used + out_nbytes[k] > *max_shard_size)) {
      layout.shards.push_back({"", {}, carried_metadata(newest.shard(0))});
      used = 0;
    }
    layout.shards.back().tensors.push_back(k);
    used += out_nbytes[k];
  }
  const size_t n = layout.shards.size();
  for (size_t s = 0; s < n; ++s) {
    char name[64];
    std::snprintf(name, sizeof name, "-%05zu-of-%05zu.safetensors", s + 1, n);
    layout.shards[s].file = base + name;
  }
  return layout;
}

namespace {

// What may be at an output directory that --overwrite replaces: checkpoint files only, so that a
// mistyped -o never removes anything else.
void check_replaceable_directory(const std::string& out) {
  DIR* d = ::opendir(out.c_str());
  WAVG_CHECK(d != nullptr, quoted_path(out), ": cannot list (", std::strerror(errno), ")");
  std::string bad;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    const bool file = ::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                      (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode));
    if (!file || !(ends_with(name, ".safetensors") || ends_with(name, ".json"))) {
      bad = name;
      break;
    }
  }
  ::closedir(d);
  WAVG_CHECK(bad.empty(), "output directory ", quoted_path(out), " holds ", quoted_path(bad),
             ", which is not a checkpoint file: refused to replace it");
}

// The existing output (if any) that this write will replace: nothing without overwrite.
bool check_existing_output(const std::string& out, CheckpointForm form, bool overwrite) {
  struct stat st;
  if (::lstat(out.c_str(), &st) != 0) return false;
  WAVG_CHECK(overwrite, "output ", quoted_path(out), " exists: pass --overwrite to replace it");
  if (form == CheckpointForm::kSingle) {
    WAVG_CHECK(!S_ISDIR(st.st_mode), "output ", quoted_path(out),
               " is a directory but the result is a single file (its newest input's form)");
    return true;
  }
  WAVG_CHECK(S_ISDIR(st.st_mode) || S_ISREG(st.st_mode), "output ", quoted_path(out),
             " is neither a directory nor a regular file: refused to replace it");
  if (S_ISDIR(st.st_mode)) check_replaceable_directory(out);
  return true;
}

// A temporary directory beside the output, removed with its files unless committed.
class TemporaryDirectory {
 public:
  explicit TemporaryDirectory(const std::string& out) {
    remove_stale_temporaries(dir_of(out));
    for (int attempt = 0; attempt < 100 && path_.empty(); ++attempt) {
      const std::string name = fresh_temporary_name(out);
      register_temporary_directory(name);  // first: a signal right after mkdir removes it
      if (::mkdir(name.c_str(), 0755) == 0) {
        path_ = name;
        break;
      }
      const int err = errno;
      unregister_temporary_directory(name);
      WAVG_CHECK(err == EEXIST, quoted_path(out), ": cannot create a temporary directory (",
                 std::strerror(err), ")");
    }
    WAVG_CHECK(!path_.empty(), quoted_path(out), ": cannot create a temporary directory (100 names taken)");
  }
  ~TemporaryDirectory() {
    if (path_.empty()) return;
    remove_flat_directory(path_);
    unregister_temporary_directory(path_);
  }
  const std::string& path() const { return path_; }
  // Renames into place at `out`; with `replace`, exchanges with what is there and removes it.
  void commit(const std::string& out, bool replace);

 private:
  std::string path_;
};

void TemporaryDirectory::commit(const std::string& out, bool replace) {
  fsync_directory(path_);
  const std::string tmp = path_;
  unsigned flags = replace ? RENAME_EXCHANGE : RENAME_NOREPLACE;
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, out.c_str(), flags) != 0) {
    const int err = errno;
    WAVG_CHECK(!(err == EEXIST && !replace), "output ", quoted_path(out),
               " appeared while it was written: pass --overwrite to replace it");
    WAVG_CHECK(err == EINVAL || err == ENOSYS, quoted_path(out), ": cannot rename into place (",
               std::strerror(err), ")");
    // A file system without renameat2's flags: the old output goes aside first (not atomic).
    const std::string aside = fresh_temporary_name(out);
    WAVG_CHECK(!replace || ::rename(out.c_str(), aside.c_str()) == 0, quoted_path(out),
               ": cannot move the old output aside (", std::strerror(errno), ")");
    WAVG_CHECK(::rename(tmp.c_str(), out.c_str()) == 0, quoted_path(out), ": cannot rename into place (",
               std::strerror(errno), ")");
    path_.clear();
    unregister_temporary_directory(tmp);
    if (replace && ::unlink(aside.c_str()) != 0) remove_flat_directory(aside);
    fsync_directory(dir_of(out));
    return;
  }
  // The old output (if any) now has the temporary's name: still registered, it is removed below
  // or on a signal.
  if (replace && ::unlink(tmp.c_str()) != 0) remove_flat_directory(tmp);
  path_.clear();
  unregister_temporary_directory(tmp);
  fsync_directory(dir_of(out));
}

// The index: {"metadata": {..., "total_size": N}, "weight_map": {tensor: shard}}.
std::string index_text(const OutputLayout& layout, const std::vector<TensorOut>& outs,
                       const std::string& metadata, uint64_t total) {
  json index;
  index["metadata"] = json::parse(metadata);
  index["metadata"]["total_size"] = total;
  json& map = index["weight_map"] = json::object();
  for (const OutputShard& s : layout.shards)
    for (size_t k : s.tensors) map[outs[k].name] = s.file;
  return index.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace

void write_checkpoint(const std::string& out, const OutputLayout& layout,
                      const std::vector<TensorOut>& outs,
                      const std::function<void(size_t, const ByteWriter&)>& produce,
                      const CheckpointWriteOptions& options) {
  const bool replace = check_existing_output(out, layout.form, options.overwrite);
  const auto write_shard = [&](const std::string& path, const OutputShard& shard) {
    std::vector<TensorOut> part;
    for (size_t k : shard.tensors) part.push_back(outs[k]);
    write_safetensors_streamed(path, part, shard.metadata, [&](size_t i, const ByteWriter& write) {
      produce(shard.tensors[i], write);
    });
  };
  if (layout.form == CheckpointForm::kSingle) {
    WAVG_ASSERT(layout.shards.size() == 1);
    write_shard(out, layout.shards[0]);
    return;
  }
  TemporaryDirectory tmp(out);
  uint64_t total = 0;
  for (const OutputShard& shard : layout.shards) {
    write_shard(tmp.path() + "/" + shard.file, shard);
    for (size_t k : shard.tensors) {
      uint64_t n = 0;
      WAVG_ASSERT(shape_nbytes(outs[k].shape, outs[k].dtype, &n));
      total += n;
    }
  }
  write_file_atomic(tmp.path() + "/" + layout.index_name,
                    index_text(layout, outs, options.index_metadata, total));
  tmp.commit(out, replace);
}

namespace {

bool same_file(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

}  // namespace

void check_output_apart(const std::string& out, const std::vector<const CheckpointSet*>& inputs,
                        const std::string& command) {
  struct stat so;
  if (::stat(out.c_str(), &so) != 0) return;  // nothing there yet
  for (const CheckpointSet* set : inputs)
    for (const std::string& p : set->paths()) {
      struct stat si;
      if (::stat(p.c_str(), &si) == 0 && same_file(si, so))
        throw Error(command + ": output " + quoted_path(out) + " is the input " + quoted_path(p) +
                    " (the same file): refused, it would be replaced");
      if (!S_ISDIR(so.st_mode)) continue;
      // Every directory above the input (symlinks resolved): is the output one of them?
      char* real = ::realpath(p.c_str(), nullptr);
      if (!real) continue;
      std::string dir = real;
      std::free(real);
      while (dir.size() > 1) {
        dir = dir_of(dir);
        if (::stat(dir.c_str(), &si) == 0 && same_file(si, so))
          throw Error(command + ": output directory " + quoted_path(out) + " holds the input " + quoted_path(p) +
                      ": refused, it would be replaced");
      }
    }
}

}  // namespace wavg
