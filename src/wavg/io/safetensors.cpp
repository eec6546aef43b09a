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
#include <string_view>
#include <unordered_map>
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

namespace {
size_t name_hash(std::string_view name) { return std::hash<std::string_view>()(name); }

// Fills `table` with an open-addressing hash table (linear probing, load <= 1/2) of positions + 1
// (0: an empty slot) of the names name_of(0..n-1), and returns the position of the first name that
// repeats an earlier one, or n. Flat and allocation-free per name: a node-based hash set of a
// million names cost more than parsing them.
template <typename NameOf>
size_t build_name_table(size_t n, NameOf name_of, std::vector<uint32_t>* table) {
  WAVG_ASSERT(n < UINT32_MAX);  // kMaxHeaderBytes allows a few million entries
  size_t slots = 2;
  while (slots < 2 * n) slots *= 2;
  table->assign(slots, 0);
  const size_t mask = slots - 1;
  for (size_t i = 0; i < n; ++i) {
    const std::string_view name = name_of(i);
    size_t slot = name_hash(name) & mask;
    for (; (*table)[slot] != 0; slot = (slot + 1) & mask)
      if (name_of((*table)[slot] - 1) == name) return i;
    (*table)[slot] = uint32_t(i + 1);
  }
  return n;
}
}  // namespace

const TensorInfo* SafetensorsHeader::find(const std::string& name) const {
  if (indexed != tensors.size() || index.empty()) {  // built by hand, not by the reader: no index
    for (const auto& t : tensors)
      if (t.name == name) return &t;
    return nullptr;
  }
  const size_t mask = index.size() - 1;
  for (size_t slot = name_hash(name) & mask; index[slot] != 0; slot = (slot + 1) & mask) {
    const TensorInfo& t = tensors[index[slot] - 1];
    if (t.name == name) return &t;
  }
  return nullptr;
}

namespace {

// Deepest nesting a header may have: a valid one nests 3 levels (header, entry, shape).
constexpr int kMaxJsonDepth = 64;

// A JSON number as an error message shows it, bounded.
template <typename T>
std::string shown_number(T v) {
  return quote_bytes(json(v).dump());
}

// A tensor entry {dtype, shape, data_offsets} as read, before validation: what each member was.
struct RawEntry {
  enum class Kind { kAbsent, kString, kArray, kOther };
  Kind dtype = Kind::kAbsent, shape = Kind::kAbsent, offsets = Kind::kAbsent;
  std::string dtype_text;
  std::vector<int64_t> dims;
  std::string shape_problem;    // the first bad shape element's message ("" when none)
  uint64_t offset_values[2] = {0, 0};
  size_t offset_count = 0;      // elements of data_offsets
  std::string offsets_problem;  // the first bad offset, as shown ("" when none)
  unsigned seen = 0;            // bits of the fields met (1 dtype, 2 shape, 4 data_offsets)
};

// Validates one entry (known dtype, shape without overflow, offsets that span exactly the bytes the
// dtype and shape need) into `info`; returns the first problem ("" when none), checked in this order.
std::string entry_problem(RawEntry& e, TensorInfo* info) {
  using Kind = RawEntry::Kind;
  if (e.dtype != Kind::kString) return "missing string 'dtype'";
  if (e.shape != Kind::kArray) return "missing array 'shape'";
  if (e.offsets != Kind::kArray || e.offset_count != 2)
    return "'data_offsets' must be an array [begin, end]";
  bool upper = !e.dtype_text.empty();
  for (char c : e.dtype_text) upper &= !(c >= 'a' && c <= 'z');
  if (!upper || !try_parse_dtype(e.dtype_text, &info->dtype))
    return "unsupported dtype '" + quote_bytes(e.dtype_text) + "'";
  if (!e.shape_problem.empty()) return e.shape_problem;
  info->shape = std::move(e.dims);
  int64_t numel = 0;
  uint64_t bits = 0;
  if (!shape_numel(info->shape, &numel) ||
      __builtin_mul_overflow(uint64_t(numel), dtype_bits(info->dtype), &bits))
    return "element count or size overflows 64 bits";
  if (bits % 8 != 0)  // a sub-byte dtype (F4, F6_*) must fill whole bytes
    return std::to_string(numel) + " elements of " + e.dtype_text + " (" +
           std::to_string(dtype_bits(info->dtype)) + " bits each) do not fill whole bytes";
  const uint64_t nbytes = bits / 8;
  if (!e.offsets_problem.empty())
    return "data_offsets must be non-negative integers, got " + e.offsets_problem;
  info->begin = e.offset_values[0];
  info->end = e.offset_values[1];
  if (info->end < info->begin)
    return "data_offsets end " + std::to_string(info->end) + " < begin " +
           std::to_string(info->begin);
  if (info->end - info->begin != nbytes)
    return "data_offsets span " + std::to_string(info->end - info->begin) + " bytes, but dtype " +
           e.dtype_text + " and shape need " + std::to_string(nbytes);
  return "";
}

// Reads the header straight into TensorInfos and metadata through nlohmann's SAX interface (an
// iterative parser): no DOM, no recursion, one pass linear in the header's size (the DOM of a
// million entries cost seconds to build and free). Nesting deeper than kMaxJsonDepth stops the
// parse. The first problem is kept and reported after the parse, so that a JSON syntax error
// anywhere is reported first, as when the whole header was parsed before it was checked.
// A value's parent depth: 1 the header, 2 an entry (or __metadata__), 3 shape or data_offsets.
class HeaderSax {
 public:
  explicit HeaderSax(SafetensorsHeader* out) : out_(*out) {}
  // "__metadata__": null is no metadata (the reference reads it as an absent Option).
  bool null() { return (depth_ == 1 && in_metadata_) || scalar("null", nullptr, nullptr); }
  bool boolean(bool v) { return scalar(v ? "true" : "false", nullptr, nullptr); }
  bool number_integer(json::number_integer_t v) {
    if (v >= 0) return number_unsigned(json::number_unsigned_t(v));
    return skipping() || scalar(shown_number(v), nullptr, nullptr);  // quoted only when read
  }
  bool number_unsigned(json::number_unsigned_t v) {
    return scalar("", &v, nullptr);
  }
  bool number_float(json::number_float_t v, const std::string&) {
    return skipping() || scalar(shown_number(v), nullptr, nullptr);
  }
  bool string(std::string& v) { return skipping() || scalar("", nullptr, &v); }
  bool binary(json::binary_t&) { return scalar("binary", nullptr, nullptr); }
  bool start_object(std::size_t) { return start(/*array=*/false); }
  bool start_array(std::size_t) { return start(/*array=*/true); }
  bool end_object() { return end(); }
  bool end_array() { return end(); }
  bool key(std::string& k);
  template <class Exception>
  bool parse_error(std::size_t, const std::string&, const Exception& e) {
    throw e;
  }
  bool too_deep() const { return too_deep_; }
  const std::string& problem() const { return problem_; }
  int metadata_count() const { return metadata_count_; }

 private:
  enum class Field { kNone, kDtype, kShape, kOffsets };
  bool skipping() const { return skip_ > 0 && depth_ >= skip_; }
  void note(const std::string& p) {
    if (problem_.empty()) problem_ = p;
  }
  std::string entry_prefix() const { return "tensor '" + quote_bytes(name_) + "': "; }
  bool start(bool array);
  bool end();
  bool scalar(const std::string& shown, const uint64_t* unsigned_value, std::string* text);
  void element(const std::string& shown, const uint64_t* value);
  void finish_entry();

  SafetensorsHeader& out_;
  int depth_ = 0;             // open containers
  int skip_ = 0;              // > 0: the depth of a container whose contents are not read
  bool too_deep_ = false;
  bool in_metadata_ = false;  // the header member being read is __metadata__
  bool in_entry_ = false;     // ... is a tensor entry object
  int metadata_count_ = 0;
  std::string name_;          // the header member's key
  std::string meta_key_;      // a key inside __metadata__
  Field field_ = Field::kNone;
  RawEntry entry_;
  std::string problem_;       // the first problem (the message after "what: ")
};

bool HeaderSax::key(std::string& k) {
  if (skipping()) return true;
  if (depth_ == 1) {
    name_ = std::move(k);
    in_metadata_ = name_ == "__metadata__";
    metadata_count_ += in_metadata_;
    in_entry_ = false;
  } else if (depth_ == 2 && in_metadata_) {
    meta_key_ = std::move(k);
  } else if (depth_ == 2) {
    field_ = k == "dtype" ? Field::kDtype
             : k == "shape" ? Field::kShape
             : k == "data_offsets" ? Field::kOffsets
                                   : Field::kNone;
    // A field given twice is an error (the reference's serde derive refuses it; unknown fields
    // are ignored, repeated or not).
    const unsigned bit = field_ == Field::kNone ? 0u : 1u << (int(field_) - 1);
    if (in_entry_ && (entry_.seen & bit)) note(entry_prefix() + "duplicate field '" + k + "'");
    entry_.seen |= bit;
  }
  return true;
}

// A container opens at depth_ + 1: read its contents, or skip them (skip_).
bool HeaderSax::start(bool array) {
  if (++depth_ > kMaxJsonDepth) {
    too_deep_ = true;
    return false;
  }
  if (skipping() && depth_ > skip_) return true;
  const int parent = depth_ - 1;
  bool read = parent == 0;
  if (parent == 1 && in_metadata_) {
    read = !array;
    if (array) note("__metadata__ is not an object of strings");
  } else if (parent == 1) {
    read = in_entry_ = !array;
    if (array) note(entry_prefix() + "entry is not an object");
    if (!array) entry_ = RawEntry(), field_ = Field::kNone;
  } else if (parent == 2 && in_metadata_) {
    note("__metadata__ value for '" + quote_bytes(meta_key_) + "' is not a string");
  } else if (parent == 2 && field_ != Field::kNone) {
    const bool list = array && field_ != Field::kDtype;
    RawEntry::Kind& kind = field_ == Field::kDtype ? entry_.dtype
                           : field_ == Field::kShape ? entry_.shape
                                                     : entry_.offsets;
    kind = list ? RawEntry::Kind::kArray : RawEntry::Kind::kOther;
    if (list && field_ == Field::kShape) entry_.dims.clear(), entry_.shape_problem.clear();
    if (list && field_ == Field::kOffsets) entry_.offset_count = 0, entry_.offsets_problem.clear();
    read = list;
  } else if (parent == 3) {
    element(array ? "an array" : "an object", nullptr);
  }
  if (!read) skip_ = depth_;
  return true;
}

bool HeaderSax::end() {
  if (skip_ == depth_) skip_ = 0;
  if (skip_ == 0 && depth_ == 2 && in_entry_) finish_entry();
  --depth_;
  return true;
}

// A scalar value at depth_ (its parent container's depth): `shown` as a message quotes it,
// `unsigned_value` for a non-negative integer, `text` for a string.
bool HeaderSax::scalar(const std::string& shown, const uint64_t* unsigned_value, std::string* text) {
  if (skipping()) return true;
  if (depth_ == 1 && in_metadata_) {
    note("__metadata__ is not an object of strings");
  } else if (depth_ == 1) {
    note(entry_prefix() + "entry is not an object");
  } else if (depth_ == 2 && in_metadata_) {
    if (text && problem_.empty()) out_.metadata[meta_key_] = std::move(*text);
    if (!text) note("__metadata__ value for '" + quote_bytes(meta_key_) + "' is not a string");
  } else if (depth_ == 2 && field_ == Field::kDtype) {
    entry_.dtype = text ? RawEntry::Kind::kString : RawEntry::Kind::kOther;
    if (text) entry_.dtype_text = std::move(*text);
  } else if (depth_ == 2 && field_ != Field::kNone) {
    (field_ == Field::kShape ? entry_.shape : entry_.offsets) = RawEntry::Kind::kOther;
  } else if (depth_ == 3) {
    element(text ? "\"" + quote_bytes(*text) + "\"" : shown, unsigned_value);
  }
  return true;
}

// An element of shape or data_offsets: `value` when it is a non-negative integer.
void HeaderSax::element(const std::string& shown, const uint64_t* value) {
  if (field_ == Field::kShape && entry_.shape_problem.empty()) {
    if (!value)
      entry_.shape_problem = "shape entries must be non-negative integers, got " + shown;
    else if (*value > uint64_t(INT64_MAX))
      entry_.shape_problem = "dimension " + std::to_string(*value) + " is too large";
    else
      entry_.dims.push_back(int64_t(*value));
  } else if (field_ == Field::kOffsets) {
    if (value && entry_.offset_count < 2) entry_.offset_values[entry_.offset_count] = *value;
    if (!value && entry_.offsets_problem.empty()) entry_.offsets_problem = shown;
    ++entry_.offset_count;
  }
}

void HeaderSax::finish_entry() {
  in_entry_ = false;
  if (!problem_.empty()) return;
  TensorInfo info;
  const std::string problem = entry_problem(entry_, &info);
  if (!problem.empty()) return note(entry_prefix() + problem);
  info.name = std::move(name_);
  out_.tensors.push_back(std::move(info));
}

// Reads the header's JSON into `out`. Messages quote the file's bytes (quote_bytes): the parser's
// excerpt may hold any.
void read_header_json(const unsigned char* begin, uint64_t n, const std::string& what,
                      SafetensorsHeader* out) {
  HeaderSax sax(out);
  try {
    json::sax_parse(begin, begin + n, &sax);
  } catch (const json::exception& e) {
    const std::string msg = e.what();
    fail(what, "header is not valid JSON (" + quote_bytes(msg.substr(msg.find(']') + 2), 200) + ")");
  }
  if (sax.too_deep())
    fail(what, "header nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  if (sax.metadata_count() > 1) fail(what, "duplicate tensor name '__metadata__' in header");
  if (!sax.problem().empty()) fail(what, sax.problem());
}

// A name given twice: the last entry stands, as in the reference (a JSON object read into a map);
// the earlier one's bytes must then be some other tensor's, or the tiling check refuses the file.
void keep_last_of_repeated_names(std::vector<TensorInfo>* tensors) {
  std::unordered_map<std::string, size_t> last;
  for (size_t i = 0; i < tensors->size(); ++i) last[(*tensors)[i].name] = i;
  std::vector<TensorInfo> kept;
  for (size_t i = 0; i < tensors->size(); ++i)
    if (last[(*tensors)[i].name] == i) kept.push_back(std::move((*tensors)[i]));
  tensors->swap(kept);
}

// Indexes the tensors by name (header order: a repeated name keeps its last entry, the rare case
// rebuilt once), then sorts them by offset (names break ties: empty tensors share offsets) through
// a permutation that also renumbers the index: one hash table for the whole header.
void sort_and_index(SafetensorsHeader* out) {
  const auto name_of = [out](size_t i) -> std::string_view { return out->tensors[i].name; };
  if (build_name_table(out->tensors.size(), name_of, &out->index) < out->tensors.size()) {
    keep_last_of_repeated_names(&out->tensors);
    const size_t repeated = build_name_table(out->tensors.size(), name_of, &out->index);
    WAVG_ASSERT(repeated == out->tensors.size());
  }
  std::vector<TensorInfo>& t = out->tensors;
  std::vector<uint32_t> order(t.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = uint32_t(i);
  std::sort(order.begin(), order.end(), [&t](uint32_t x, uint32_t y) {
    const TensorInfo &a = t[x], &b = t[y];
    if (a.begin != b.begin) return a.begin < b.begin;
    return a.end != b.end ? a.end < b.end : a.name < b.name;
  });
  std::vector<uint32_t> position(t.size());
  std::vector<TensorInfo> sorted;
  sorted.reserve(t.size());
  for (size_t k = 0; k < order.size(); ++k) {
    position[order[k]] = uint32_t(k);
    sorted.push_back(std::move(t[order[k]]));
  }
  t.swap(sorted);
  for (uint32_t& slot : out->index)
    if (slot != 0) slot = position[slot - 1] + 1;
  out->indexed = t.size();
}

// Checks that the sorted tensors tile [0, data_size) exactly: no gap, no overlap, nothing left
// over.
void check_tiling(SafetensorsHeader* out, const std::string& what) {
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
  // JSON whitespace may pad the header on either side (the reference accepts both: writers pad to
  // align the data).
  const auto space = [](unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  uint64_t first = 0;
  while (first < n && space(file[8 + first])) ++first;
  if (first == n || file[8 + first] != '{') fail(what, "header is not a JSON object");
  // nlohmann's lexer ends the input at a NUL byte ("{}\0junk" would pass); JSON has none.
  if (const void* nul = std::memchr(file + 8, 0, n))
    fail(what, "header is not valid JSON (a NUL byte at byte " +
                   std::to_string(static_cast<const unsigned char*>(nul) - file) + ")");
  SafetensorsHeader out;
  out.data_start = 8 + n;
  out.data_size = size - out.data_start;
  read_header_json(file + 8, n, what, &out);
  sort_and_index(&out);
  check_tiling(&out, what);
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
// A reader that did not ask for them sees only the classic dtypes: the others (FP8, C64, U16-U64,
// microscaling) are valid in a file but meaningless to it (LibTorch 1.13 has none of them).
void refuse_new_dtypes(const SafetensorsHeader& h, const std::string& path) {
  for (const TensorInfo& t : h.tensors)
    if (!is_classic(t.dtype))
      fail(path, "tensor '" + quote_bytes(t.name) + "' has dtype " + dtype_name(t.dtype) +
                     ", which only `wavg average` reads");
}
}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path, bool all_dtypes) : path_(path) {
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
    if (!all_dtypes) refuse_new_dtypes(header_, path);
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
// Appends `s` as a JSON string literal: as it is when it is printable ASCII without quotes or
// backslashes (names usually are), else escaped by nlohmann, which throws json::type_error 316 on
// invalid UTF-8.
void append_json_string(std::string& out, const std::string& s) {
  bool plain = true;
  for (unsigned char c : s) plain &= c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
  if (!plain) {
    out += nlohmann::json(s).dump();
    return;
  }
  out += '"';
  out += s;
  out += '"';
}

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
    for (const auto& [k, v] : metadata) {
      if (text.back() != '{') text += ',';
      append_json_string(text, k);
      text += ':';
      append_json_string(text, v);
    }
    text += "}";
  }
  std::vector<uint32_t> table;
  const size_t repeated = build_name_table(
      tensors.size(), [&](size_t i) -> std::string_view { return tensors[i].name; }, &table);
  WAVG_CHECK(repeated == tensors.size(), "safetensors: duplicate tensor name '",
             quote_bytes(tensors[std::min(repeated, tensors.size() - 1)].name), "'");
  uint64_t offset = 0;
  for (const TensorOut& t : tensors) {
    WAVG_CHECK(t.name != "__metadata__", "safetensors: '__metadata__' is not a tensor name");
    const uint64_t nbytes = out_nbytes(t);
    if (text.size() > 1) text += ',';
    append_json_string(text, t.name);
    text += ":{\"dtype\":\"";
    text += dtype_name(t.dtype);
    text += "\",\"shape\":[";
    for (size_t i = 0; i < t.shape.size(); ++i) {
      if (i) text += ',';
      text += std::to_string(t.shape[i]);
    }
    text += "],\"data_offsets\":[";
    text += std::to_string(offset);
    text += ',';
    text += std::to_string(offset + nbytes);
    text += "]}";
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
