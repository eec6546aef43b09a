// AtomicFile: temporary file + fsync + rename.
#include "wavg/io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "wavg/core/error.h"

namespace wavg {

namespace {
constexpr size_t kBufferSize = 1 << 20;

std::string dir_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}
}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  tmp_ = path_ + ".tmp." + std::to_string(::getpid());
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  WAVG_CHECK(fd_ >= 0, path_, ": cannot create (", std::strerror(errno), ")");
  buffer_.resize(kBufferSize);
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

void AtomicFile::flush() {
  size_t done = 0;
  while (done < used_) {
    const ssize_t n = ::write(fd_, buffer_.data() + done, used_ - done);
    if (n < 0 && errno == EINTR) continue;
    WAVG_CHECK(n > 0, path_, ": write failed (", std::strerror(errno), ")");
    done += size_t(n);
  }
  used_ = 0;
}

void AtomicFile::write(const void* data, size_t size) {
  WAVG_ASSERT(fd_ >= 0);
  const char* p = static_cast<const char*>(data);
  written_ += size;
  if (used_ + size <= buffer_.size()) {
    std::memcpy(buffer_.data() + used_, p, size);
    used_ += size;
    return;
  }
  flush();
  if (size >= buffer_.size()) {  // large block: write it directly
    while (size > 0) {
      const ssize_t n = ::write(fd_, p, size);
      if (n < 0 && errno == EINTR) continue;
      WAVG_CHECK(n > 0, path_, ": write failed (", std::strerror(errno), ")");
      p += n;
      size -= size_t(n);
    }
    return;
  }
  std::memcpy(buffer_.data(), p, size);
  used_ = size;
}

void AtomicFile::commit() {
  WAVG_ASSERT(fd_ >= 0);
  flush();
  WAVG_CHECK(::fsync(fd_) == 0, path_, ": fsync failed (", std::strerror(errno), ")");
  ::close(fd_);
  fd_ = -1;
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp_.c_str());
    throw Error(path_ + ": cannot rename into place (" + std::strerror(err) + ")");
  }
  const int dfd = ::open(dir_of(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

bool file_exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

void write_file_atomic(const std::string& path, const std::string& contents) {
  AtomicFile f(path);
  f.write(contents);
  f.commit();
}

}  // namespace wavg
