// Atomic file writes: data goes to a temporary file beside the target, is fsync'ed, and is renamed
// over the target only on commit(), so a crash leaves either the old file or the new one, never a
// torn one. Without commit() the temporary file is removed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace wavg {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t size);
  void write(const std::string& s) { write(s.data(), s.size()); }
  uint64_t written() const { return written_; }
  // Flushes, fsyncs, renames over the target and fsyncs the directory.
  void commit();

 private:
  void flush();
  std::string path_, tmp_;
  int fd_ = -1;
  std::vector<char> buffer_;
  size_t used_ = 0;
  uint64_t written_ = 0;
};

// Writes a whole file atomically.
void write_file_atomic(const std::string& path, const std::string& contents);

// Whether a file or directory exists at `path`.
bool file_exists(const std::string& path);

}  // namespace wavg
