// Atomic file writes: data goes to a temporary file beside the target, is fsync'ed, and is renamed
// over the target only on commit(), so a crash leaves either the old file or the new one, never a
// torn one. Without commit() the temporary file is removed.
//
// The temporary is unnamed where the file system allows it (open(dir, O_TMPFILE)): nothing can be
// planted at its name and nothing is left behind, even on SIGKILL. On commit it is linked to a fresh
// random name and renamed over the target (linkat cannot replace a file). Where O_TMPFILE is refused
// (or WAVG_TMPFILE=named is set in the environment, to exercise this path), the temporary is
// `<target>.tmp.<host>.<pid>.<16 hex digits>`, created with O_CREAT | O_EXCL | O_NOFOLLOW (a planted
// file or symlink is never followed or reused), removed on SIGINT/SIGTERM once
// install_temporary_cleanup() ran, and such names of this host whose process is gone are removed
// when the next one is created in the same directory.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace wavg {

enum class TempKind {
  kAuto,   // O_TMPFILE, falling back to a named temporary where it is refused
  kNamed,  // always a named temporary
};

class AtomicFile {
 public:
  explicit AtomicFile(std::string path, TempKind kind = TempKind::kAuto);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t size);
  void write(const std::string& s) { write(s.data(), s.size()); }
  uint64_t written() const { return written_; }
  // Whether the temporary is unnamed (O_TMPFILE).
  bool unnamed() const { return tmp_.empty(); }
  // Flushes, fsyncs, renames over the target and fsyncs the directory.
  void commit();

 private:
  void flush();
  void open_named();
  std::string path_, dir_, tmp_;  // tmp_: the named temporary (empty while unnamed)
  int fd_ = -1;
  std::vector<char> buffer_;
  size_t used_ = 0;
  uint64_t written_ = 0;
};

// The parts of a name of wavg's temporaries (`<target>.tmp.<host>.<pid>.<random>`, a file name
// without directory), or nullopt for any other name.
struct TemporaryName {
  std::string target, host;
  long pid = 0;
};
std::optional<TemporaryName> parse_temporary_name(const std::string& name);

// Installs SIGINT/SIGTERM handlers that remove the named temporaries of open AtomicFiles and exit
// with 128 + the signal number (130, 143). For commands that write files but have no signal
// handling of their own (`wavg average`).
void install_temporary_cleanup();

// A fresh temporary name beside `path`: `<path>.tmp.<host>.<pid>.<16 hex digits>`.
std::string fresh_temporary_name(const std::string& path);

// Temporary directories (holding files only, such as a shard set being written): removed with their
// files on SIGINT/SIGTERM once install_temporary_cleanup() ran (at most 8 at a time).
void register_temporary_directory(const std::string& path);
void unregister_temporary_directory(const std::string& path);
// Removes the files of a directory, then the directory; never follows symlinks or descends.
void remove_flat_directory(const std::string& path);
// Removes the temporaries (files and directories) in `dir` of this host whose process is gone.
void remove_stale_temporaries(const std::string& dir);

// Writes a whole file atomically.
void write_file_atomic(const std::string& path, const std::string& contents);

// Flushes a directory's entries (a rename or a creation in it) to disk; best effort: a directory
// that cannot be opened is passed over.
void fsync_directory(const std::string& dir);

// Whether a file or directory exists at `path`.
bool file_exists(const std::string& path);

}  // namespace wavg
