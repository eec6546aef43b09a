// CheckpointSet: a single safetensors file, or a sharded checkpoint read through its index; name
// matching across checkpoints (with the wrapper-prefix diagnosis) and byte sizes of flags.
#include "wavg/io/checkpoint_set.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_set>

#include "wavg/core/error.h"
#include "wavg/io/path_names.h"

namespace wavg {

namespace {

using json = nlohmann::json;

// Deepest nesting an index may have: a valid one nests 2 levels (index, metadata/weight_map).
constexpr int kMaxIndexDepth = 64;

using detail::dir_of;
using detail::ends_with;
using detail::kShardIndexSuffix;
using detail::quoted_path;


// The file a directory argument stands for: its one index, else its one .safetensors file.
std::string resolve_directory(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  WAVG_CHECK(d != nullptr, quoted_path(dir), ": cannot list (", std::strerror(errno), ")");
  std::vector<std::string> indexes, files;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (ends_with(name, kShardIndexSuffix)) indexes.push_back(name);
    else if (ends_with(name, ".safetensors")) files.push_back(name);
  }
  ::closedir(d);
  std::sort(indexes.begin(), indexes.end());
  WAVG_CHECK(indexes.size() <= 1, quoted_path(dir), ": holds ", indexes.size(), " index files (",
             quoted_path(indexes[0]), ", ", quoted_path(indexes[1]), "): name one");
  if (indexes.size() == 1) return dir + "/" + indexes[0];
  WAVG_CHECK(!files.empty(), quoted_path(dir), ": holds no .safetensors file and no ", kShardIndexSuffix);
  std::sort(files.begin(), files.end());
  WAVG_CHECK(files.size() == 1, quoted_path(dir), ": holds ", files.size(), " .safetensors files (",
             quoted_path(files[0]), ", ", quoted_path(files[1]), ", ...) and no index: name one");
  return dir + "/" + files[0];
}

// The index's bytes: a regular file (a FIFO is refused without blocking) of at most
// kMaxHeaderBytes.
std::string read_index_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  WAVG_CHECK(fd >= 0, quoted_path(path), ": cannot open (", std::strerror(errno), ")");
  struct stat st;
  std::string text;
  const bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  const bool small = regular && uint64_t(st.st_size) <= kMaxHeaderBytes;
  if (small) {
    text.resize(size_t(st.st_size));
    for (size_t done = 0; done < text.size();) {
      const ssize_t n = ::pread(fd, text.data() + done, text.size() - done, off_t(done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        text.resize(done);
        break;
      }
      done += size_t(n);
    }
  }
  ::close(fd);
  WAVG_CHECK(regular, quoted_path(path), ": not a regular file");
  WAVG_CHECK(small, quoted_path(path), ": index of ", st.st_size, " bytes exceeds the limit of ",
             kMaxHeaderBytes, " bytes");
  return text;
}

// Builds the DOM through nlohmann's SAX interface, stopping at nesting deeper than kMaxIndexDepth
// and at a key of weight_map seen twice (nlohmann would keep the last one silently).
class IndexSax {
 public:
  explicit IndexSax(json* root) : dom_(*root) {}
  bool null() { return dom_.null(); }
  bool boolean(bool v) { return dom_.boolean(v); }
  bool number_integer(json::number_integer_t v) { return dom_.number_integer(v); }
  bool number_unsigned(json::number_unsigned_t v) { return dom_.number_unsigned(v); }
  bool number_float(json::number_float_t v, const std::string& s) { return dom_.number_float(v, s); }
  bool string(std::string& v) { return dom_.string(v); }
  bool binary(json::binary_t& v) { return dom_.binary(v); }
  bool start_object(std::size_t n) { return enter() && dom_.start_object(n); }
  bool start_array(std::size_t n) { return enter() && dom_.start_array(n); }
  bool end_object() { return --depth_, dom_.end_object(); }
  bool end_array() { return --depth_, dom_.end_array(); }
  bool key(std::string& k) {
    if (depth_ == 1) top_ = k;
    if (depth_ == 2 && top_ == "weight_map" && !seen_.insert(k).second) {
      duplicate_ = k;
      return false;
    }
    return dom_.key(k);
  }
  template <class Exception>
  bool parse_error(std::size_t pos, const std::string& token, const Exception& e) {
    return dom_.parse_error(pos, token, e);  // throws e
  }
  bool too_deep() const { return too_deep_; }
  const std::optional<std::string>& duplicate() const { return duplicate_; }

 private:
  bool enter() {
    too_deep_ = ++depth_ > kMaxIndexDepth;
    return !too_deep_;
  }
  nlohmann::detail::json_sax_dom_parser<json> dom_;
  std::string top_;
  std::unordered_set<std::string> seen_;
  std::optional<std::string> duplicate_;
  int depth_ = 0;
  bool too_deep_ = false;
};

json parse_index_json(const std::string& text, const std::string& path) {
  json root;
  IndexSax sax(&root);
  try {
    json::sax_parse(text, &sax);
  } catch (const json::exception& e) {
    const std::string msg = e.what();
    throw Error(quoted_path(path) + ": index is not valid JSON (" +
                quote_bytes(msg.substr(msg.find(']') + 2), 200) + ")");
  }
  WAVG_CHECK(!sax.too_deep(), quoted_path(path), ": index nests deeper than ", kMaxIndexDepth, " levels");
  WAVG_CHECK(!sax.duplicate(), quoted_path(path), ": tensor ", quoted_path(sax.duplicate().value_or("")),
             " appears twice in weight_map");
  WAVG_CHECK(root.is_object(), quoted_path(path), ": index is not a JSON object");
  return root;
}

// An index entry names a file beside the index: a plain name, nothing that leaves the directory.
void check_shard_name(const std::string& shard, const std::string& tensor, const std::string& path) {
  const bool plain = !shard.empty() && shard != "." && shard != ".." &&
                     shard.find('/') == std::string::npos && shard.find('\0') == std::string::npos;
  WAVG_CHECK(plain, quoted_path(path), ": weight_map entry of tensor ", quoted_path(tensor), " names ", quoted_path(shard),
             ", not a plain file name beside the index (no '/', not '.' or '..'): refused");
}

// total_size, where present, is the tensors' data bytes: a mismatch is a warning.
void check_total_size(const json& metadata, uint64_t data_bytes, const std::string& path,
                      const CheckpointSetOptions& options) {
  const auto it = metadata.find("total_size");
  if (it == metadata.end()) return;
  std::string message;
  if (!it->is_number_unsigned() && !(it->is_number_integer() && it->get<int64_t>() >= 0))
    message = "metadata.total_size is not a non-negative integer (" +
              quote_bytes(it->is_string() ? it->get<std::string>() : it->dump(), 64) + ")";
  else if (it->get<uint64_t>() != data_bytes)
    message = "metadata.total_size is " + std::to_string(it->get<uint64_t>()) +
              " but the tensors hold " + std::to_string(data_bytes) + " bytes";
  if (message.empty()) return;
  message = quote_bytes(path, 200) + ": " + message + " (ignored)";
  if (options.warn) options.warn(message);
  else std::fprintf(stderr, "wavg: warning: %s\n", message.c_str());
}

}  // namespace

CheckpointSet::CheckpointSet(const std::string& path, const CheckpointSetOptions& options)
    : path_(path) {
  struct stat st;
  WAVG_CHECK(::stat(path.c_str(), &st) == 0, quoted_path(path), ": cannot open (", std::strerror(errno), ")");
  std::string file = S_ISDIR(st.st_mode) ? resolve_directory(path) : path;
  if (ends_with(file, ".json")) open_index(file, options);
  else open_single(file, options);
}

void CheckpointSet::open_single(const std::string& file, const CheckpointSetOptions& options) {
  source_ = file;
  form_ = CheckpointForm::kSingle;
  shards_.push_back(std::make_unique<SafetensorsFile>(file, options.all_dtypes));
  const auto slash = file.find_last_of('/');
  shard_names_.push_back(slash == std::string::npos ? file : file.substr(slash + 1));
  index_tensors(options);
}

void CheckpointSet::open_index(const std::string& index, const CheckpointSetOptions& options) {
  source_ = index;
  form_ = CheckpointForm::kSharded;
  json root = parse_index_json(read_index_file(index), index);
  const auto wm = root.find("weight_map");
  WAVG_CHECK(wm != root.end() && wm->is_object() && !wm->empty(), quoted_path(index),
             ": index has no weight_map object of tensor names to shard files");
  std::map<std::string, std::string> named;  // tensor -> shard, as the index says
  std::set<std::string> files;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    WAVG_CHECK(it.value().is_string(), quoted_path(index), ": weight_map entry of tensor ", quoted_path(it.key()),
               " is not a file name string");
    const std::string& shard = it.value().get_ref<const std::string&>();
    check_shard_name(shard, it.key(), index);
    named[it.key()] = shard;
    files.insert(shard);
  }
  const std::string dir = dir_of(index);
  for (const std::string& f : files) {
    shards_.push_back(std::make_unique<SafetensorsFile>(dir + "/" + f, options.all_dtypes));
    shard_names_.push_back(f);
  }
  // Every tensor of every shard is in the map, in this shard, and in no other shard.
  std::unordered_map<std::string, size_t> where;
  for (size_t s = 0; s < shards_.size(); ++s)
    for (const TensorInfo& t : shards_[s]->tensors()) {
      const auto [it, fresh] = where.emplace(t.name, s);
      WAVG_CHECK(fresh, quoted_path(index), ": tensor ", quoted_path(t.name), " is in two shards, ",
                 quoted_path(shard_names_[it->second]), " and ", quoted_path(shard_names_[s]));
    }
  for (size_t s = 0; s < shards_.size(); ++s)
    for (const TensorInfo& t : shards_[s]->tensors()) {
      const auto m = named.find(t.name);
      WAVG_CHECK(m != named.end(), quoted_path(index), ": tensor ", quoted_path(t.name), " of shard ",
                 quoted_path(shard_names_[s]), " is not in the index's weight_map");
      WAVG_CHECK(m->second == shard_names_[s], quoted_path(index), ": tensor ", quoted_path(t.name), " is in shard ",
                 quoted_path(shard_names_[s]), " but the index names ", quoted_path(m->second));
    }
  for (const auto& [tensor, shard] : named)
    WAVG_CHECK(where.count(tensor), quoted_path(index), ": tensor ", quoted_path(tensor), " is not in shard ",
               quoted_path(shard), " (the index names it)");
  index_tensors(options);
  const auto meta = root.find("metadata");
  if (meta != root.end() && meta->is_object()) {
    check_total_size(*meta, data_bytes_, index, options);
    index_metadata_ = meta->dump(-1, ' ', false, json::error_handler_t::replace);
  }
}

void CheckpointSet::index_tensors(const CheckpointSetOptions& options) {
  for (size_t s = 0; s < shards_.size(); ++s)
    for (const TensorInfo& t : shards_[s]->tensors()) {
      tensors_.push_back({strip_name_prefixes(t.name, options.strip_prefixes), &t, s});
      data_bytes_ += t.nbytes();
    }
  by_key_.reserve(tensors_.size());
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const auto [it, fresh] = by_key_.emplace(tensors_[i].key, i);
    WAVG_CHECK(fresh, quoted_path(source_), ": tensors ", quoted_path(tensors_[it->second].info->name), " and ",
               quoted_path(tensors_[i].info->name), " both become ", quoted_path(tensors_[i].key),
               " with --strip-prefix");
  }
}

const CheckpointTensor* CheckpointSet::find(const std::string& key) const {
  const auto it = by_key_.find(key);
  return it == by_key_.end() ? nullptr : &tensors_[it->second];
}

void CheckpointSet::read_bytes(const CheckpointTensor& t, uint64_t offset, size_t size,
                               void* dst) const {
  shards_[t.shard]->read_bytes(*t.info, offset, size, dst);
}

std::vector<std::string> CheckpointSet::paths() const {
  std::vector<std::string> out = {path_, source_};
  if (form_ == CheckpointForm::kSharded) out.push_back(dir_of(source_));
  for (const auto& s : shards_) out.push_back(s->path());
  return out;
}

void CheckpointSet::release_metadata() {
  for (auto& s : shards_) s->release_metadata();
}

void CheckpointSet::verify_checksums() const {
  for (const auto& s : shards_) s->verify_checksum();
}

std::string strip_name_prefixes(const std::string& name, const std::vector<std::string>& prefixes) {
  size_t at = 0;
  for (bool again = true; again;) {
    again = false;
    for (const std::string& p : prefixes)
      if (!p.empty() && name.compare(at, p.size(), p) == 0 && name.size() > at + p.size()) {
        at += p.size();
        again = true;
      }
  }
  return name.substr(at);
}

std::optional<std::string> explaining_prefix(const std::vector<std::string>& extra,
                                             const std::vector<std::string>& missing) {
  if (extra.empty() || extra.size() != missing.size()) return std::nullopt;
  const std::unordered_set<std::string> want(missing.begin(), missing.end());
  const std::string& first = *std::min_element(extra.begin(), extra.end());
  // Candidates: the prefixes of one extra name whose rest is a missing name.
  for (size_t k = 1; k < first.size(); ++k) {
    if (!want.count(first.substr(k))) continue;
    const std::string p = first.substr(0, k);
    std::unordered_set<std::string> got;
    bool all = true;
    for (const std::string& x : extra) {
      all = x.size() > k && x.compare(0, k, p) == 0 && want.count(x.substr(k)) &&
            got.insert(x.substr(k)).second;
      if (!all) break;
    }
    if (all) return p;
  }
  return std::nullopt;
}

namespace {

// "'a', 'b', 'c' and 4 more" (names quoted and bounded).
std::string some_names(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < 3; ++i)
    out += (i ? ", '" : "'") + quote_bytes(names[i], 60) + "'";
  if (names.size() > 3) out += " and " + std::to_string(names.size() - 3) + " more";
  return out;
}

[[noreturn]] void names_differ(const CheckpointSet& f, const CheckpointSet& ref,
                               const std::string& command) {
  std::vector<std::string> extra, missing;  // keys only in f, only in ref
  for (const CheckpointTensor& t : f.tensors())
    if (!ref.find(t.key)) extra.push_back(t.key);
  for (const CheckpointTensor& t : ref.tensors())
    if (!f.find(t.key)) missing.push_back(t.key);
  std::sort(extra.begin(), extra.end());
  std::sort(missing.begin(), missing.end());
  std::string msg = command + ": tensor names of " + quoted_path(f.path()) + " differ from those of " +
                    quoted_path(ref.path()) + ":";
  if (!extra.empty()) msg += " " + std::to_string(extra.size()) + " only in the first (" +
                             some_names(extra) + ")";
  if (!missing.empty()) msg += std::string(extra.empty() ? "" : ",") + " " +
                               std::to_string(missing.size()) + " only in the second (" +
                               some_names(missing) + ")";
  std::optional<std::string> p = explaining_prefix(extra, missing);
  const bool on_first = p.has_value();
  if (!p) p = explaining_prefix(missing, extra);
  if (p)
    msg += "; the prefix '" + quote_bytes(*p, 60) + "' on the names of the " +
           (on_first ? "first" : "second") + " explains every difference: pass --strip-prefix " +
           quote_bytes(*p, 60);
  throw Error(msg);
}

}  // namespace

std::vector<const CheckpointTensor*> match_checkpoint(const CheckpointSet& f,
                                                      const CheckpointSet& ref,
                                                      const std::string& command) {
  std::vector<const CheckpointTensor*> matched(ref.tensors().size());
  bool same_names = f.tensors().size() == ref.tensors().size();
  for (const CheckpointTensor& t : f.tensors()) {
    const CheckpointTensor* r = ref.find(t.key);
    if (!r) {
      same_names = false;
      break;
    }
    matched[size_t(r - ref.tensors().data())] = &t;
  }
  if (!same_names) names_differ(f, ref, command);
  for (size_t k = 0; k < matched.size(); ++k) {
    const TensorInfo &a = *matched[k]->info, &b = *ref.tensors()[k].info;
    WAVG_CHECK(a.dtype == b.dtype, quoted_path(f.path()), ": tensor '", quote_bytes(a.name), "' has dtype ",
               dtype_name(a.dtype), " but ", dtype_name(b.dtype), " in ", quoted_path(ref.path()));
    WAVG_CHECK(a.shape == b.shape, quoted_path(f.path()), ": tensor '", quote_bytes(a.name),
               "' has a different shape than in ", quoted_path(ref.path()));
  }
  return matched;
}

uint64_t parse_byte_size(const std::string& text, const std::string& what) {
  const auto bad = [&]() -> Error {
    return Error(what + ": expected a size such as 500MB, 5GB or 1GiB, got '" +
                 quote_bytes(text, 64) + "'");
  };
  size_t i = 0;
  while (i < text.size() && (std::isdigit((unsigned char)text[i]) || text[i] == '.')) ++i;
  const std::string number = text.substr(0, i);
  std::string unit = text.substr(i);
  for (char& c : unit) c = char(std::tolower((unsigned char)c));
  if (number.empty() || number == "." || std::count(number.begin(), number.end(), '.') > 1)
    throw bad();
  static const std::map<std::string, double> kUnits = {
      {"", 1},        {"b", 1},        {"kb", 1e3},          {"mb", 1e6},
      {"gb", 1e9},    {"tb", 1e12},    {"kib", 1024.0},      {"mib", 1048576.0},
      {"gib", 1073741824.0}, {"tib", 1099511627776.0}};
  const auto u = kUnits.find(unit);
  if (u == kUnits.end()) throw bad();
  const double bytes = std::floor(std::strtod(number.c_str(), nullptr) * u->second);
  if (!(bytes >= 1)) throw Error(what + ": must be at least 1 byte, got '" + quote_bytes(text) + "'");
  if (bytes >= 18446744073709551615.0) throw bad();
  return uint64_t(bytes);
}

}  // namespace wavg
