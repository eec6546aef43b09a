// AtomicFile: unnamed (O_TMPFILE) or exclusively created temporary file + fsync + link/rename.
#include "wavg/io/atomic_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdlib>
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

// This host's name, reduced to [A-Za-z0-9-] so that it holds no '.' of the name's syntax.
std::string host_tag() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  std::string h = buf;
  for (char& c : h)
    if (!std::isalnum((unsigned char)c) && c != '-') c = '-';
  return h;
}

std::string random_hex() {
  uint64_t r = 0;
  if (::getrandom(&r, sizeof r, 0) != ssize_t(sizeof r)) {  // no entropy source: time and address
    r = uint64_t(::getpid()) * 0x9e3779b97f4a7c15ull ^ uint64_t(reinterpret_cast<uintptr_t>(&r)) ^
        uint64_t(std::rand());
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", (unsigned long long)r);
  return buf;
}

}  // namespace

std::string fresh_temporary_name(const std::string& path) {
  return path + ".tmp." + host_tag() + "." + std::to_string(::getpid()) + "." + random_hex();
}

namespace {

// Named temporaries to remove on SIGINT/SIGTERM: fixed slots (a signal handler may not allocate).
// A slot is free (0), claimed by a thread writing its path (1), or ready (2): the handler reads only
// ready slots, and threads claim slots with a compare-and-swap.
constexpr int kSlots = 64;
char g_slot_path[kSlots][4096];
std::atomic<int> g_slot_state[kSlots];

void register_temporary(const std::string& path) {
  if (path.size() >= sizeof g_slot_path[0]) return;
  for (int i = 0; i < kSlots; ++i) {
    int expected = 0;
    if (!g_slot_state[i].compare_exchange_strong(expected, 1)) continue;
    std::memcpy(g_slot_path[i], path.c_str(), path.size() + 1);
    g_slot_state[i].store(2);
    return;
  }
}

void unregister_temporary(const std::string& path) {
  for (int i = 0; i < kSlots; ++i)
    if (g_slot_state[i].load() == 2 && path == g_slot_path[i]) {
      g_slot_state[i].store(0);
      return;
    }
}

// Temporary directories (flat: files only) to remove with their entries on SIGINT/SIGTERM, in
// slots of their own (same protocol).
char g_dir_path[8][4096];
std::atomic<int> g_dir_state[8];

// Removes the files in directory `dirfd` opened at `at`/`name` and then the directory, with system
// calls only (getdents64, unlinkat: async-signal-safe). Never follows a symlink, never descends.
// Tries a few times: another thread may link a file in while the entries are removed.
void remove_flat_directory_at(int at, const char* name) {
  static char buf[8192];  // only one signal handler or one caller at a time uses it
  for (int attempt = 0; attempt < 8; ++attempt) {
    const int fd = ::openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return;
    for (;;) {
      const long n = ::syscall(SYS_getdents64, fd, buf, sizeof buf);
      if (n <= 0) break;
      for (long off = 0; off < n;) {
        // struct linux_dirent64: d_ino (8), d_off (8), d_reclen (2), d_type (1), d_name.
        unsigned short reclen;
        std::memcpy(&reclen, buf + off + 16, sizeof reclen);
        const char* entry = buf + off + 19;
        if (std::strcmp(entry, ".") != 0 && std::strcmp(entry, "..") != 0)
          ::unlinkat(fd, entry, 0);
        off += reclen;
      }
    }
    ::close(fd);
    if (::unlinkat(at, name, AT_REMOVEDIR) == 0 || errno != ENOTEMPTY) return;
  }
}

extern "C" void remove_temporaries_and_exit(int sig) {
  for (int i = 0; i < kSlots; ++i)
    if (g_slot_state[i].load() == 2) ::unlink(g_slot_path[i]);
  for (int i = 0; i < 8; ++i)
    if (g_dir_state[i].load() == 2) remove_flat_directory_at(AT_FDCWD, g_dir_path[i]);
  ::_exit(128 + sig);
}
}  // namespace

void register_temporary_directory(const std::string& path) {
  if (path.size() >= sizeof g_dir_path[0]) return;
  for (int i = 0; i < 8; ++i) {
    int expected = 0;
    if (!g_dir_state[i].compare_exchange_strong(expected, 1)) continue;
    std::memcpy(g_dir_path[i], path.c_str(), path.size() + 1);
    g_dir_state[i].store(2);
    return;
  }
}

void unregister_temporary_directory(const std::string& path) {
  for (int i = 0; i < 8; ++i)
    if (g_dir_state[i].load() == 2 && path == g_dir_path[i]) {
      g_dir_state[i].store(0);
      return;
    }
}

void remove_flat_directory(const std::string& path) {
  remove_flat_directory_at(AT_FDCWD, path.c_str());
}

// Removes wavg temporaries in `dir` from this host whose process is gone (kill(pid, 0): ESRCH):
// files, and temporary directories with the files in them.
void remove_stale_temporaries(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  const std::string host = host_tag();
  while (const dirent* e = ::readdir(d)) {
    const auto t = parse_temporary_name(e->d_name);
    if (t && t->host == host && t->pid != ::getpid() && ::kill(pid_t(t->pid), 0) != 0 &&
        errno == ESRCH && ::unlinkat(::dirfd(d), e->d_name, 0) != 0 && errno == EISDIR)
      remove_flat_directory_at(::dirfd(d), e->d_name);
  }
  ::closedir(d);
}

std::optional<TemporaryName> parse_temporary_name(const std::string& name) {
  const auto t = name.rfind(".tmp.");
  if (t == std::string::npos || t == 0) return std::nullopt;
  const std::string rest = name.substr(t + 5);  // host.pid.random
  const auto a = rest.find('.'), b = rest.rfind('.');
  if (a == std::string::npos || a == b || a == 0) return std::nullopt;
  const std::string host = rest.substr(0, a), pid = rest.substr(a + 1, b - a - 1),
                    rnd = rest.substr(b + 1);
  const auto all = [](const std::string& s, int (*pred)(int)) {
    for (unsigned char c : s)
      if (!pred(c)) return false;
    return !s.empty();
  };
  if (pid.size() > 9 || !all(pid, ::isdigit) || rnd.size() != 16 || !all(rnd, ::isxdigit))
    return std::nullopt;
  for (unsigned char c : host)
    if (!std::isalnum(c) && c != '-') return std::nullopt;
  return TemporaryName{name.substr(0, t), host, std::atol(pid.c_str())};
}

void install_temporary_cleanup() {
  struct sigaction sa = {};
  sa.sa_handler = remove_temporaries_and_exit;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGINT);
  sigaddset(&sa.sa_mask, SIGTERM);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

AtomicFile::AtomicFile(std::string path, TempKind kind)
    : path_(std::move(path)), dir_(dir_of(path_)) {
  const char* env = std::getenv("WAVG_TMPFILE");
  if (kind == TempKind::kAuto && !(env && std::strcmp(env, "named") == 0)) {
    fd_ = ::open(dir_.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
    // Refused by the kernel or the file system: fall back to a named temporary.
    if (fd_ < 0 && errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
      throw Error(path_ + ": cannot create (" + std::strerror(errno) + ")");
  }
  if (fd_ < 0) open_named();
  buffer_.resize(kBufferSize);
}

void AtomicFile::open_named() {
  remove_stale_temporaries(dir_);
  for (int attempt = 0; attempt < 100 && fd_ < 0; ++attempt) {
    tmp_ = fresh_temporary_name(path_);
    // Registered first: a signal between open and registration must not leave the file.
    register_temporary(tmp_);
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd_ >= 0) break;
    const int err = errno;
    unregister_temporary(tmp_);
    if (err != EEXIST) throw Error(path_ + ": cannot create (" + std::strerror(err) + ")");
  }
  WAVG_CHECK(fd_ >= 0, path_, ": cannot create a temporary file (100 names taken)");
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!tmp_.empty()) {
    ::unlink(tmp_.c_str());
    unregister_temporary(tmp_);
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

namespace {
// Gives the unnamed file `fd` a fresh random name beside `path` (linkat never follows or replaces
// what is at the new name: EEXIST, then another name); returns it.
std::string link_unnamed(int fd, const std::string& path) {
  const std::string proc = "/proc/self/fd/" + std::to_string(fd);
  for (int attempt = 0; attempt < 100; ++attempt) {
    std::string name = fresh_temporary_name(path);
    register_temporary(name);
    int rc = ::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, name.c_str(), AT_SYMLINK_FOLLOW);
    if (rc != 0 && errno == ENOENT)  // no /proc: AT_EMPTY_PATH (needs CAP_DAC_READ_SEARCH)
      rc = ::linkat(fd, "", AT_FDCWD, name.c_str(), AT_EMPTY_PATH);
    if (rc == 0) return name;
    const int err = errno;
    unregister_temporary(name);
    if (err != EEXIST) throw Error(path + ": cannot link into place (" + std::strerror(err) + ")");
  }
  throw Error(path + ": cannot link into place (100 names taken)");
}
}  // namespace

void AtomicFile::commit() {
  WAVG_ASSERT(fd_ >= 0);
  flush();
  WAVG_CHECK(::fsync(fd_) == 0, path_, ": fsync failed (", std::strerror(errno), ")");
  if (tmp_.empty()) tmp_ = link_unnamed(fd_, path_);
  ::close(fd_);
  fd_ = -1;
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp_.c_str());
    unregister_temporary(tmp_);
    tmp_.clear();
    throw Error(path_ + ": cannot rename into place (" + std::strerror(err) + ")");
  }
  unregister_temporary(tmp_);
  tmp_.clear();
  fsync_directory(dir_);
}

void fsync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

bool file_exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

void write_file_atomic(const std::string& path, const std::string& contents) {
  AtomicFile f(path);
  f.write(contents);
  f.commit();
}

}  // namespace wavg
