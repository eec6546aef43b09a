// safetensors files (https://github.com/huggingface/safetensors, "Format"): an 8-byte little-endian
// header length N, N bytes of UTF-8 JSON {name: {dtype, shape, data_offsets: [begin, end]}, ...,
// "__metadata__": {str: str}}, then the raw little-endian row-major data buffer.
//
// The reader validates everything before handing out a byte: header length bound, JSON (no NUL,
// whitespace allowed around it), UTF-8, no field of an entry given twice (a tensor name given twice
// keeps its last entry, as the reference reads it), known dtypes (every dtype of safetensors 0.8.0), shapes, size overflow, whole
// bytes for sub-byte dtypes, offsets that tile the buffer exactly, and the file length. The
// reference implementation (huggingface/safetensors) is the arbiter of what is valid
// (tests/safetensors_reference_test.py runs both on its own test cases). Each failure is one wavg::Error naming the file and the problem. The writer is
// deterministic (tensors in the order given, header padded with spaces to 8 bytes) and atomic.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "wavg/core/dtype.h"

namespace wavg {

// The bound of the reference implementation (MAX_HEADER_SIZE).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // bytes, relative to the data buffer
  int64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
};

struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;  // in data order (by offset)
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // 8 + N
  uint64_t data_size = 0;
  // name -> position in `tensors`, built by the reader: an open-addressing hash table (linear
  // probing) of positions + 1, 0 marking an empty slot, over the first `indexed` tensors. A header
  // built or changed by hand (indexed != tensors.size()) is searched linearly.
  std::vector<uint32_t> index;
  size_t indexed = 0;
  const TensorInfo* find(const std::string& name) const;
};

// Validates a header: `head` holds the first min(file_size, 8 + N) bytes of a file of `file_size`
// bytes (`what` names it in errors).
SafetensorsHeader parse_safetensors_header(const unsigned char* head, uint64_t head_size,
                                           uint64_t file_size, const std::string& what);
// Validates a whole file image held in memory.
inline SafetensorsHeader parse_safetensors(const unsigned char* file, uint64_t size,
                                           const std::string& what) {
  return parse_safetensors_header(file, size, size, what);
}

// A validated safetensors file: the header is read and checked on open; data is read with
// read_bytes() (pread, no page faults) or through data() (memory-mapped on first use).
class SafetensorsFile {
 public:
  // `all_dtypes`: accept every dtype of the format; otherwise a tensor of a non-classic dtype
  // (is_classic: FP8, C64, U16-U64, F4/F6/F8_E8M0) is refused naming it.
  explicit SafetensorsFile(const std::string& path, bool all_dtypes = false);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  SafetensorsFile(SafetensorsFile&& other) noexcept;

  const std::string& path() const { return path_; }
  const SafetensorsHeader& header() const { return header_; }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  const TensorInfo* find(const std::string& name) const { return header_.find(name); }
  // Start of a tensor's bytes (not necessarily aligned to its element size); maps the file on the
  // first call, which must not race with another call.
  const unsigned char* data(const TensorInfo& t) const;
  // Copies `size` bytes of tensor t starting `offset` bytes into it.
  void read_bytes(const TensorInfo& t, uint64_t offset, size_t size, void* dst) const;
  uint64_t file_size() const { return size_; }
  // If the metadata holds kDataCrcKey (written with `checksum = true`), recomputes the CRC-32 of the
  // data buffer and throws wavg::Error on a mismatch (a torn or corrupted file).
  void verify_checksum() const;
  // Frees the metadata (a value may be ~100 MB): for inputs whose metadata is validated but not
  // needed, so memory does not grow with the number of open files.
  void release_metadata() { std::map<std::string, std::string>().swap(header_.metadata); }

 private:
  std::string path_;
  int fd_ = -1;
  mutable const unsigned char* base_ = nullptr;
  uint64_t size_ = 0;
  SafetensorsHeader header_;
};

// One tensor to write. `data` holds nbytes (numel × dtype size) bytes; it may be null when the
// streaming writer produces the bytes.
struct TensorOut {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
};

// Builds the header bytes (length prefix included) for tensors laid out in the given order.
std::string safetensors_header(const std::vector<TensorOut>& tensors,
                               const std::map<std::string, std::string>& metadata);

// __metadata__ key of the data buffer's CRC-32 (decimal), written when `checksum` is set.
constexpr const char* kDataCrcKey = "wavg.data_crc32";

void write_safetensors(const std::string& path, const std::vector<TensorOut>& tensors,
                       const std::map<std::string, std::string>& metadata = {},
                       bool checksum = false);

// Streaming writer: produce(i, write) must call write(bytes, size) with exactly tensor i's bytes,
// in one or more pieces. The writer keeps no tensor in memory itself: memory is what produce() holds,
// whatever the file size.
using ByteWriter = std::function<void(const void*, size_t)>;
void write_safetensors_streamed(const std::string& path, const std::vector<TensorOut>& tensors,
                                const std::map<std::string, std::string>& metadata,
                                const std::function<void(size_t, const ByteWriter&)>& produce);

}  // namespace wavg
