// safetensors reader (validating, memory-mapped) and writer (deterministic, atomic).
#include "wavg/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <unordered_set>
#include <zlib.h>

#include "wavg/core/error.h"
#include "wavg/io/atomic_file.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian");

namespace wavg {

namespace {

using json = nlohmann::json;

[[noreturn]] void fail(const std::string& what, const std::string& msg) {
  throw Error(what + ": " + msg);
}

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 0;
  WAVG_ASSERT(shape_numel(shape, &n));  // validated when read
  return n;
}

const TensorInfo* SafetensorsHeader::find(const std::string& name) const {
  if (index.size() != tensors.size()) {  // built by hand, not by the reader: no index
    for (const auto& t : tensors)
      if (t.name == name) return &t;
    return nullptr;
  }
  const auto it = index.find(name);
  return it == index.end() ? nullptr : &tensors[it->second];
}

namespace {

// Deepest nesting a header may have: a valid one nests 3 levels (header, entry, shape).
constexpr int kMaxJsonDepth = 64;

// Builds the DOM through nlohmann's SAX interface (its parser is iterative, not recursive), stops
// at nesting deeper than kMaxJsonDepth, and counts the top-level keys: fewer members than keys
// means a duplicate (nlohmann keeps the last silently), which a second pass with `find_duplicate`
// names (a hash set, only then). The callback parser used before rescanned the parent object after
// every member (quadratic in the tensor count).
class HeaderSax {
 public:
  HeaderSax(json* root, bool find_duplicate) : dom_(*root), find_duplicate_(find_duplicate) {}
  bool null() { return dom_.null(); }
  bool boolean(bool v) { return dom_.boolean(v); }
  bool number_integer(json::number_integer_t v) { return dom_.number_integer(v); }
  bool number_unsigned(json::number_unsigned_t v) { return dom_.number_unsigned(v); }
  bool number_float(json::number_float_t v, const std::string& s) {
    return dom_.number_float(v, s);
  }
  bool string(std::string& v) { return dom_.string(v); }
  bool binary(json::binary_t& v) { return dom_.binary(v); }
  bool start_object(std::size_t n) { return enter() && dom_.start_object(n); }
  bool start_array(std::size_t n) { return enter() && dom_.start_array(n); }
  bool end_object() { return --depth_, dom_.end_object(); }
  bool end_array() { return --depth_, dom_.end_array(); }
  bool key(std::string& k) {
    if (depth_ == 1) {
      ++keys_;
      if (find_duplicate_ && !seen_.insert(k).second) {
        duplicate_ = k;
        return false;
      }
    }
    return dom_.key(k);
  }
  template <class Exception>
  bool parse_error(std::size_t pos, const std::string& token, const Exception& e) {
    return dom_.parse_error(pos, token, e);  // throws e
  }
  bool too_deep() const { return too_deep_; }
  const std::optional<std::string>& duplicate() const { return duplicate_; }
  size_t keys() const { return keys_; }

 private:
  bool enter() {
    too_deep_ = ++depth_ > kMaxJsonDepth;
    return !too_deep_;
  }
  nlohmann::detail::json_sax_dom_parser<json> dom_;
  bool find_duplicate_;
  size_t keys_ = 0;
  std::unordered_set<std::string> seen_;
  std::optional<std::string> duplicate_;
  int depth_ = 0;
  bool too_deep_ = false;
};

// The header's JSON. Messages quote the file's bytes (quote_bytes): the parser's excerpt may hold
// any.
json parse_header_json(const unsigned char* begin, uint64_t n, const std::string& what) {
  json header;
  HeaderSax sax(&header, false);
  try {
    json::sax_parse(begin, begin + n, &sax);
  } catch (const json::exception& e) {
    const std::string msg = e.what();
    fail(what, "header is not valid JSON (" + quote_bytes(msg.substr(msg.find(']') + 2), 200) + ")");
  }
  if (sax.too_deep())
    fail(what, "header nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  if (!header.is_object()) fail(what, "header is not a JSON object");
  if (sax.keys() != header.size()) {
    json again;
    HeaderSax names(&again, true);
    json::sax_parse(begin, begin + n, &names);
    WAVG_ASSERT(names.duplicate().has_value());
    fail(what, "duplicate tensor name '" + quote_bytes(*names.duplicate()) + "' in header");
  }
  return header;
}

// A bounded description of an untrusted JSON value for a message: never the whole value (dump()
// of a large or deep value is as large, and recursive).
std::string describe_value(const json& v) {
  if (v.is_string()) return "\"" + quote_bytes(v.get_ref<const std::string&>()) + "\"";
  if (v.is_structured()) return std::string(v.is_array() ? "an array" : "an object");
  return quote_bytes(v.dump());
}

// Keeps the values by moving them out of the parsed header (a metadata value may be ~100 MB).
void parse_metadata(json& v, const std::string& what, SafetensorsHeader* out) {
  if (!v.is_object()) fail(what, "__metadata__ is not an object of strings");
  for (auto m = v.begin(); m != v.end(); ++m) {
    if (!m.value().is_string())
      fail(what, "__metadata__ value for '" + quote_bytes(m.key()) + "' is not a string");
    out->metadata[m.key()] = std::move(m.value().get_ref<std::string&>());
  }
}

bool non_negative_integer(const json& d) {
  return d.is_number_unsigned() || (d.is_number_integer() && d.get<int64_t>() >= 0);
}

// One tensor entry {dtype, shape, data_offsets}: known dtype, shape without overflow, and offsets
// that span exactly the bytes the dtype and shape need.
TensorInfo parse_tensor_entry(const std::string& name, const json& v, const std::string& what) {
  // The prefix is built only on failure (quoting every name cost more than the checks).
  const auto bad = [&](const std::string& msg) {
    fail(what, "tensor '" + quote_bytes(name) + "': " + msg);
  };
  if (!v.is_object()) bad("entry is not an object");
  // Each key looked up once (a header may hold a million entries).
  const auto member = [&v](const char* key) -> const json* {
    const auto it = v.find(key);
    return it == v.end() ? nullptr : &*it;
  };
  const json *dtype_v = member("dtype"), *shape = member("shape"), *offsets = member("data_offsets");
  if (!dtype_v || !dtype_v->is_string()) bad("missing string 'dtype'");
  if (!shape || !shape->is_array()) bad("missing array 'shape'");
  if (!offsets || !offsets->is_array() || offsets->size() != 2)
    bad("'data_offsets' must be an array [begin, end]");
  TensorInfo info;
  info.name = name;
  const std::string& dtype = dtype_v->get_ref<const std::string&>();
  bool upper = !dtype.empty();
  for (char c : dtype) upper &= !(c >= 'a' && c <= 'z');
  if (!upper || !try_parse_dtype(dtype, &info.dtype))
    bad("unsupported dtype '" + quote_bytes(dtype) + "'");
  info.shape.reserve(shape->size());
  for (const json& d : *shape) {
    if (!non_negative_integer(d))
      bad("shape entries must be non-negative integers, got " + describe_value(d));
    const uint64_t dim = d.get<uint64_t>();
    if (dim > uint64_t(INT64_MAX)) bad("dimension " + d.dump() + " is too large");
    info.shape.push_back(int64_t(dim));
  }
  uint64_t nbytes = 0;
  if (!shape_nbytes(info.shape, info.dtype, &nbytes))
    bad("element count or size overflows 64 bits");
  for (const json& o : *offsets)
    if (!non_negative_integer(o))
      bad("data_offsets must be non-negative integers, got " + describe_value(o));
  info.begin = (*offsets)[0].get<uint64_t>();
  info.end = (*offsets)[1].get<uint64_t>();
  if (info.end < info.begin)
    bad("data_offsets end " + std::to_string(info.end) + " < begin " +
                   std::to_string(info.begin));
  if (info.end - info.begin != nbytes)
    bad("data_offsets span " + std::to_string(info.end - info.begin) +
                   " bytes, but dtype " + dtype + " and shape need " + std::to_string(nbytes));
  return info;
}

// Sorts the tensors by offset and checks that they tile [0, data_size) exactly: no gap, no
// overlap, nothing left over.
void check_tiling(SafetensorsHeader* out, const std::string& what) {
  std::sort(out->tensors.begin(), out->tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  for (const TensorInfo& t : out->tensors) {
    if (t.begin > cursor)
      fail(what, "gap in the data buffer before tensor '" + quote_bytes(t.name) + "' (bytes " +
                     std::to_string(cursor) + " to " + std::to_string(t.begin) + ")");
    if (t.begin < cursor)
      fail(what, "tensor '" + quote_bytes(t.name) + "' overlaps the previous tensor (begins at " +
                     "byte " + std::to_string(t.begin) + ", previous ends at " +
                     std::to_string(cursor) + ")");
    cursor = t.end;
  }
  if (cursor != out->data_size)
    fail(what, "data buffer is " + std::to_string(out->data_size) + " bytes but tensors cover " +
                   std::to_string(cursor) + (cursor > out->data_size ? " (file truncated)" : ""));
}

}  // namespace

SafetensorsHeader parse_safetensors_header(const unsigned char* file, uint64_t head_size,
                                           uint64_t size, const std::string& what) {
  if (size < 8)
    fail(what, "file too short for a safetensors header (" + std::to_string(size) + " bytes)");
  uint64_t n = 0;
  std::memcpy(&n, file, 8);
  if (n > kMaxHeaderBytes)
    fail(what, "header length " + std::to_string(n) + " exceeds the limit of " +
                   std::to_string(kMaxHeaderBytes) + " bytes");
  if (n > size - 8)
    fail(what, "header length " + std::to_string(n) + " exceeds the file (" +
                   std::to_string(size) + " bytes)");
  WAVG_ASSERT(head_size >= 8 + n);
  if (n < 2 || file[8] != '{') fail(what, "header is not a JSON object");
  json header = parse_header_json(file + 8, n, what);

  SafetensorsHeader out;
  out.data_start = 8 + n;
  out.data_size = size - out.data_start;
  out.tensors.reserve(header.size());
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__")
      parse_metadata(it.value(), what, &out);
    else
      out.tensors.push_back(parse_tensor_entry(it.key(), it.value(), what));
  }
  check_tiling(&out, what);
  out.index.reserve(out.tensors.size());
  for (size_t i = 0; i < out.tensors.size(); ++i) out.index.emplace(out.tensors[i].name, i);
  return out;
}

namespace {
void pread_all(int fd, void* dst, size_t size, uint64_t offset, const std::string& path) {
  char* p = static_cast<char*>(dst);
  while (size > 0) {
    const ssize_t n = ::pread(fd, p, size, off_t(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(path, std::string("read failed (") + std::strerror(errno) + ")");
    if (n == 0) fail(path, "file shrank while being read");
    p += n;
    size -= size_t(n);
    offset += uint64_t(n);
  }
}
}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise block until a writer appears; the type
  // is checked on the descriptor, then reads block again as usual.
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd_ < 0) fail(path, std::string("cannot open (") + std::strerror(errno) + ")");
  try {
    struct stat st;
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) fail(path, "not a regular file");
    ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) & ~O_NONBLOCK);
    size_ = uint64_t(st.st_size);
    // Read the length prefix, then exactly the header (bounded by kMaxHeaderBytes).
    std::vector<unsigned char> head(size_t(std::min<uint64_t>(size_, 8)));
    pread_all(fd_, head.data(), head.size(), 0, path);
    if (size_ >= 8) {
      uint64_t n = 0;
      std::memcpy(&n, head.data(), 8);
      if (n <= kMaxHeaderBytes && n <= size_ - 8) {
        head.resize(size_t(8 + n));
        pread_all(fd_, head.data() + 8, size_t(n), 8, path);
      }
    }
    header_ = parse_safetensors_header(head.data(), head.size(), size_, path);
    ::posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept
    : path_(std::move(o.path_)),
      fd_(o.fd_),
      base_(o.base_),
      size_(o.size_),
      header_(std::move(o.header_)) {
  o.fd_ = -1;
  o.base_ = nullptr;
  o.size_ = 0;
}

SafetensorsFile::~SafetensorsFile() {
  if (base_) ::munmap(const_cast<unsigned char*>(base_), size_);
  if (fd_ >= 0) ::close(fd_);
}

const unsigned char* SafetensorsFile::data(const TensorInfo& t) const {
  if (!base_ && size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
    if (p == MAP_FAILED) fail(path_, std::string("cannot map (") + std::strerror(errno) + ")");
    base_ = static_cast<const unsigned char*>(p);
  }
  return base_ + header_.data_start + t.begin;
}

void SafetensorsFile::verify_checksum() const {
  const auto it = header_.metadata.find(kDataCrcKey);
  if (it == header_.metadata.end()) return;
  std::vector<unsigned char> buf(1 << 20);
  uLong crc = ::crc32(0L, Z_NULL, 0);
  for (uint64_t off = 0; off < header_.data_size; off += buf.size()) {
    const size_t n = size_t(std::min<uint64_t>(buf.size(), header_.data_size - off));
    pread_all(fd_, buf.data(), n, header_.data_start + off, path_);
    crc = ::crc32(crc, buf.data(), uInt(n));
  }
  if (std::to_string(crc) != it->second)
    fail(path_, "data fails its checksum (torn or corrupted file)");
}

void SafetensorsFile::read_bytes(const TensorInfo& t, uint64_t offset, size_t size,
                                 void* dst) const {
  WAVG_ASSERT(offset + size <= t.nbytes());
  pread_all(fd_, dst, size, header_.data_start + t.begin + offset, path_);
}

namespace {
// A JSON string literal (escaped); throws json::type_error 316 on invalid UTF-8.
std::string json_string(const std::string& s) { return nlohmann::json(s).dump(); }

// Bytes of a tensor to write, checked once here (the writers below rely on it).
uint64_t out_nbytes(const TensorOut& t) {
  uint64_t n = 0;
  WAVG_CHECK(shape_nbytes(t.shape, t.dtype, &n), "safetensors: tensor '", quote_bytes(t.name),
             "' has a negative dimension or a size that overflows");
  return n;
}

// The header text, built by appending in one pass (linear in the tensor count; ordered_json's
// operator[] searches its members on every insertion): the compact form of
// {"__metadata__": {...}, name: {"dtype", "shape", "data_offsets"}, ...}.
std::string header_text(const std::vector<TensorOut>& tensors,
                        const std::map<std::string, std::string>& metadata) {
  std::string text = "{";
  if (!metadata.empty()) {
    text += "\"__metadata__\":{";
    for (const auto& [k, v] : metadata)
      text += (text.back() == '{' ? "" : ",") + json_string(k) + ":" + json_string(v);
    text += "}";
  }
  uint64_t offset = 0;
  std::unordered_set<std::string> names;
  for (const TensorOut& t : tensors) {
    WAVG_CHECK(t.name != "__metadata__", "safetensors: '__metadata__' is not a tensor name");
    WAVG_CHECK(names.insert(t.name).second, "safetensors: duplicate tensor name '",
               quote_bytes(t.name), "'");
    const uint64_t nbytes = out_nbytes(t);
    text += (text.size() > 1 ? "," : "") + json_string(t.name) + ":{\"dtype\":\"" +
            dtype_name(t.dtype) + "\",\"shape\":[";
    for (size_t i = 0; i < t.shape.size(); ++i)
      text += (i ? "," : "") + std::to_string(t.shape[i]);
    text += "],\"data_offsets\":[" + std::to_string(offset) + "," +
            std::to_string(offset + nbytes) + "]}";
    offset += nbytes;
  }
  return text + "}";
}
}  // namespace

std::string safetensors_header(const std::vector<TensorOut>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  std::string text;
  try {
    text = header_text(tensors, metadata);
  } catch (const nlohmann::json::type_error&) {  // 316: a string that is not UTF-8
    throw Error("safetensors: a tensor name or metadata entry is not valid UTF-8");
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t n = text.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &n, 8);
  return out + text;
}

void write_safetensors_streamed(const std::string& path, const std::vector<TensorOut>& tensors,
                                const std::map<std::string, std::string>& metadata,
                                const std::function<void(size_t, const ByteWriter&)>& produce) {
  const std::string header = safetensors_header(tensors, metadata);
  AtomicFile f(path);
  f.write(header);
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorOut& t = tensors[i];
    const uint64_t expected = out_nbytes(t);
    const uint64_t before = f.written();
    produce(i, [&](const void* p, size_t n) { f.write(p, n); });
    WAVG_ASSERT(f.written() - before == expected);
  }
  f.commit();
}

void write_safetensors(const std::string& path, const std::vector<TensorOut>& tensors,
                       const std::map<std::string, std::string>& metadata, bool checksum) {
  std::map<std::string, std::string> meta = metadata;
  if (checksum) {
    uLong crc = ::crc32(0L, Z_NULL, 0);
    for (const TensorOut& t : tensors) {
      const auto* p = static_cast<const Bytef*>(t.data);
      for (uint64_t left = out_nbytes(t); left > 0;) {
        const uInt n = uInt(std::min<uint64_t>(left, 1u << 30));
        crc = ::crc32(crc, p, n);
        p += n;
        left -= n;
      }
    }
    meta[kDataCrcKey] = std::to_string(crc);
  }
  write_safetensors_streamed(path, tensors, meta, [&](size_t i, const ByteWriter& write) {
    const TensorOut& t = tensors[i];
    const size_t nbytes = size_t(out_nbytes(t));
    WAVG_ASSERT(nbytes == 0 || t.data != nullptr);
    if (nbytes) write(t.data, nbytes);
  });
}

}  // namespace wavg
