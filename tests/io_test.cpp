// Tests of io/: safetensors round trips and one test per malformed-file case, random corruption that
// must never crash, atomic writes, bank state files, and checkpoint averaging against fp64 loops.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "wavg/core/error.h"
#include "wavg/io/atomic_file.h"
#include "wavg/io/bank_state.h"
#include "wavg/io/checkpoint_average.h"
#include "wavg/io/safetensors.h"

using namespace wavg;

namespace {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/wavg_io_test_XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// A file made by hand from a JSON header and a data buffer, independent of the writer.
std::string make_file(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

std::string parse_error(const std::string& bytes) {
  try {
    parse_safetensors(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), "f");
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace

// ---- round trips --------------------------------------------------------------------------------

TEST(Safetensors, RoundTripsEveryDtypeAndMetadata) {
  TempDir dir;
  const std::vector<double> d = {1.5, -2.25};
  const std::vector<float> f = {1, 2, 3, 4, 5, 6};
  const std::vector<uint16_t> h = {0x3c00, 0xc000}, bf = {0x3f80, 0x4000};
  const std::vector<int64_t> i64 = {-1, 1LL << 40};
  const std::vector<int32_t> i32 = {7};
  const std::vector<uint8_t> u8 = {1, 2, 3}, b = {0, 1};
  const std::vector<TensorOut> ts = {
      {"d", DType::kF64, {2}, d.data()},        {"f", DType::kF32, {2, 3}, f.data()},
      {"h", DType::kF16, {2}, h.data()},        {"bf", DType::kBF16, {1, 2}, bf.data()},
      {"i64", DType::kI64, {2}, i64.data()},    {"i32", DType::kI32, {}, i32.data()},
      {"u8", DType::kU8, {3}, u8.data()},       {"b", DType::kBool, {2}, b.data()},
      {"empty", DType::kF32, {0, 4}, nullptr}};
  write_safetensors(dir / "a.safetensors", ts, {{"step", "12"}, {"format", "pt"}});
  SafetensorsFile file(dir / "a.safetensors");
  EXPECT_EQ(file.metadata().at("step"), "12");
  ASSERT_EQ(file.tensors().size(), ts.size());
  for (const TensorOut& t : ts) {
    const TensorInfo* info = file.find(t.name);
    ASSERT_NE(info, nullptr) << t.name;
    EXPECT_EQ(info->dtype, t.dtype);
    EXPECT_EQ(info->shape, t.shape);
    if (info->nbytes()) {
      EXPECT_EQ(std::memcmp(file.data(*info), t.data, info->nbytes()), 0);
    }
  }
  // Header padded to 8 bytes; writing twice gives identical bytes.
  uint64_t n = 0;
  const std::string bytes = read_all(dir / "a.safetensors");
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  write_safetensors(dir / "b.safetensors", ts, {{"step", "12"}, {"format", "pt"}});
  EXPECT_EQ(read_all(dir / "b.safetensors"), bytes);
}

TEST(Safetensors, ReadsAHandMadeFileWithUnpaddedHeader) {
  float v[2] = {3.5f, -1.0f};
  const std::string f = make_file(
      R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"k":"v"}})",
      std::string(reinterpret_cast<char*>(v), 8));
  const auto h =
      parse_safetensors(reinterpret_cast<const unsigned char*>(f.data()), f.size(), "hand");
  ASSERT_EQ(h.tensors.size(), 1u);
  EXPECT_EQ(h.tensors[0].shape, std::vector<int64_t>{2});
  EXPECT_EQ(h.metadata.at("k"), "v");
}

// ---- one test per malformed-file case ------------------------------------------------------------

TEST(SafetensorsMalformed, TooShort) { EXPECT_TRUE(contains(parse_error("abc"), "too short")); }

TEST(SafetensorsMalformed, HeaderLengthOverLimit) {
  std::string f(16, '\0');
  const uint64_t n = kMaxHeaderBytes + 1;
  std::memcpy(f.data(), &n, 8);
  EXPECT_TRUE(contains(parse_error(f), "exceeds the limit"));
}

TEST(SafetensorsMalformed, HeaderLengthBeyondFile) {
  std::string f = make_file("{}", "");
  f.resize(9);
  EXPECT_TRUE(contains(parse_error(f), "exceeds the file"));
}

TEST(SafetensorsMalformed, NotJson) {
  EXPECT_TRUE(contains(parse_error(make_file("{\"a\": ", "")), "not valid JSON"));
}

TEST(SafetensorsMalformed, InvalidUtf8) {
  EXPECT_TRUE(contains(parse_error(make_file("{\"\xff\xfe\":1}", "")), "not valid JSON"));
}

TEST(SafetensorsMalformed, NotAnObject) {
  EXPECT_TRUE(contains(parse_error(make_file("[1,2,3]", "")), "not a JSON object"));
}

// Issue 21: a name given twice keeps its last entry, as the reference reads the header (a JSON
// object into a map): the first entry's bytes are then a gap, unless the two entries are the same.
TEST(SafetensorsMalformed, DuplicateName) {
  const std::string e = parse_error(
      make_file(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                R"("a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                "xy"));
  EXPECT_TRUE(contains(e, "gap in the data buffer before tensor 'a' (bytes 0 to 1)")) << e;
  const std::string same = make_file(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                                     R"("b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},)"
                                     R"("a":{"dtype":"I8","shape":[1],"data_offsets":[0,1]}})",
                                     "xy");
  const SafetensorsHeader h =
      parse_safetensors(reinterpret_cast<const unsigned char*>(same.data()), same.size(), "f");
  ASSERT_EQ(h.tensors.size(), 2u);
  EXPECT_EQ(h.find("a")->dtype, DType::kI8);
  EXPECT_EQ(h.find("b")->begin, 1u);
}

// Issue 21: what the reference refuses or accepts in a header's JSON, wavg too: a field of an
// entry given twice is refused, a NUL byte (which ended nlohmann's input early) is refused,
// "__metadata__": null is no metadata.
TEST(SafetensorsMalformed, JsonAsTheReferenceReadsIt) {
  std::string e = parse_error(
      make_file(R"({"a":{"dtype":"U8","dtype":"I8","shape":[1],"data_offsets":[0,1]}})", "x"));
  EXPECT_TRUE(contains(e, "tensor 'a': duplicate field 'dtype'")) << e;
  e = parse_error(make_file(std::string("{}\0", 3) + "junk", ""));
  EXPECT_TRUE(contains(e, "a NUL byte at byte 10")) << e;
  const std::string f =
      make_file(R"({"__metadata__":null,"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":[1]}})", "x");
  const SafetensorsHeader h =
      parse_safetensors(reinterpret_cast<const unsigned char*>(f.data()), f.size(), "f");
  EXPECT_EQ(h.tensors.size(), 1u);
  EXPECT_TRUE(h.metadata.empty());
}

TEST(SafetensorsMalformed, UnknownDtype) {
  const std::string e =
      parse_error(make_file(R"({"a":{"dtype":"F17","shape":[1],"data_offsets":[0,4]}})", "abcd"));
  EXPECT_TRUE(contains(e, "unsupported dtype 'F17'")) << e;
}

TEST(SafetensorsMalformed, NegativeDimension) {
  const std::string e =
      parse_error(make_file(R"({"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}})", ""));
  EXPECT_TRUE(contains(e, "non-negative")) << e;
}

TEST(SafetensorsMalformed, MissingShape) {
  const std::string e = parse_error(make_file(R"({"a":{"dtype":"U8","data_offsets":[0,1]}})", "x"));
  EXPECT_TRUE(contains(e, "shape")) << e;
}

TEST(SafetensorsMalformed, OffsetsNotAPair) {
  const std::string e =
      parse_error(make_file(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0]}})", "x"));
  EXPECT_TRUE(contains(e, "data_offsets")) << e;
}

TEST(SafetensorsMalformed, EndBeforeBegin) {
  const std::string e =
      parse_error(make_file(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[4,2]}})", "abcd"));
  EXPECT_TRUE(contains(e, "end 2 < begin 4")) << e;
}

TEST(SafetensorsMalformed, SizeDisagreesWithShape) {
  const std::string e =
      parse_error(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", "abcd"));
  EXPECT_TRUE(contains(e, "need 8")) << e;
}

TEST(SafetensorsMalformed, ShapeOverflow) {
  const std::string e = parse_error(make_file(
      R"({"a":{"dtype":"F64","shape":[4294967296,4294967296,16],"data_offsets":[0,0]}})", ""));
  EXPECT_TRUE(contains(e, "overflow")) << e;
}

TEST(SafetensorsMalformed, Gap) {
  const std::string e =
      parse_error(make_file(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})", "xy"));
  EXPECT_TRUE(contains(e, "gap")) << e;
}

TEST(SafetensorsMalformed, Overlap) {
  const std::string e = parse_error(
      make_file(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                R"("b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}})",
                "xyz"));
  EXPECT_TRUE(contains(e, "overlaps")) << e;
}

TEST(SafetensorsMalformed, TrailingBytes) {
  const std::string e =
      parse_error(make_file(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "xy"));
  EXPECT_TRUE(contains(e, "data buffer is 2 bytes but tensors cover 1")) << e;
}

TEST(SafetensorsMalformed, Truncated) {
  const std::string e =
      parse_error(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "abcd"));
  EXPECT_TRUE(contains(e, "truncated")) << e;
}

TEST(SafetensorsMalformed, MetadataNotStrings) {
  const std::string e = parse_error(make_file(R"({"__metadata__":{"a":1}})", ""));
  EXPECT_TRUE(contains(e, "__metadata__")) << e;
}

// Error messages never echo the file's raw bytes (issue 10 §2): names and values from a file are
// quoted with \xNN escapes, so a message stays one printable line.
bool printable_line(const std::string& s) {
  for (unsigned char c : s)
    if (c < 0x20 || c >= 0x7f) return false;
  return true;
}

TEST(SafetensorsMalformed, MessagesEscapeTheFilesBytes) {
  // A raw 0xFF byte in a tensor name: invalid UTF-8, so invalid JSON; the parser's excerpt of the
  // name is quoted.
  std::string e = parse_error(
      make_file("{\"net\xff.w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", "x"));
  EXPECT_TRUE(contains(e, "not valid JSON")) << e;
  EXPECT_TRUE(contains(e, "net\\xff")) << e;
  EXPECT_TRUE(printable_line(e)) << e;
  // Control bytes (JSON escapes \u0001, \n, ESC) decode into the name, the dtype and a metadata
  // key, and come back escaped in the messages that name them.
  e = parse_error(make_file(R"({"a\u0001b":{"dtype":"F17","shape":[1],"data_offsets":[0,1]}})", "x"));
  EXPECT_TRUE(contains(e, "tensor 'a\\x01b': unsupported dtype 'F17'")) << e;
  EXPECT_TRUE(printable_line(e)) << e;
  e = parse_error(make_file(R"({"w":{"dtype":"F\n32","shape":[1],"data_offsets":[0,4]}})", "abcd"));
  EXPECT_TRUE(contains(e, "unsupported dtype 'F\\x0a32'")) << e;
  e = parse_error(make_file(R"({"a\nb":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})", "xy"));
  EXPECT_TRUE(contains(e, "gap in the data buffer before tensor 'a\\x0ab'")) << e;
  e = parse_error(make_file(R"({"__metadata__":{"k\u001b[31m":1}})", ""));
  EXPECT_TRUE(contains(e, "'k\\x1b[31m' is not a string")) << e;
  // Long names are cut: a message stays short whatever the file holds.
  e = parse_error(make_file("{\"" + std::string(5000, 'n') +
                                R"(":{"dtype":"F17","shape":[1],"data_offsets":[0,1]}})",
                            "x"));
  EXPECT_LT(e.size(), 200u) << e;
  EXPECT_TRUE(contains(e, "nnn...': unsupported dtype")) << e;
}

TEST(SafetensorsMalformed, MissingFileAndDirectory) {
  TempDir dir;
  EXPECT_THROW(SafetensorsFile(dir / "nope"), Error);
  EXPECT_THROW(SafetensorsFile(dir.path()), Error);
}

// Random corruption of a valid file: every outcome is a clean parse or a wavg::Error.
TEST(SafetensorsMalformed, RandomCorruptionNeverCrashes) {
  std::vector<float> v(16, 1.0f);
  std::vector<TensorOut> ts = {{"layer.weight", DType::kF32, {4, 2}, v.data()},
                               {"layer.bias", DType::kF32, {8}, v.data()}};
  const std::string good = safetensors_header(ts, {{"k", "v"}}) +
                           std::string(reinterpret_cast<char*>(v.data()), 64);
  std::mt19937 rng(123);
  int errors = 0;
  for (int k = 0; k < 20000; ++k) {
    std::string f = good;
    const int edits = 1 + int(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      const size_t at = rng() % f.size();
      switch (rng() % 3) {
        case 0: f[at] = char(rng()); break;
        case 1: f.resize(at); break;
        case 2: f.insert(at, 1, char(rng())); break;
      }
      if (f.empty()) break;
    }
    const std::string e = parse_error(f);
    errors += e != "no error";
  }
  EXPECT_GT(errors, 10000);
}

// ---- atomic writes -------------------------------------------------------------------------------

// Issue 11 §4: [2^32, 2^32 - 1, 0] overflowed int64 on the way to a product of 0. Issue 21: the
// reference multiplies in uint64 (usize), so it is a valid empty tensor there, and here; a partial
// product beyond uint64 is refused.
TEST(SafetensorsMalformed, ShapeOverflowsInt64BeforeAZero) {
  const std::string f = make_file(
      R"({"a":{"dtype":"F32","shape":[4294967296,4294967295,0],"data_offsets":[0,0]}})", "");
  const SafetensorsHeader h =
      parse_safetensors(reinterpret_cast<const unsigned char*>(f.data()), f.size(), "f");
  ASSERT_EQ(h.tensors.size(), 1u);
  EXPECT_EQ(h.tensors[0].numel(), 0);
  const std::string e = parse_error(make_file(
      R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}})", ""));
  EXPECT_TRUE(contains(e, "overflow")) << e;
  int64_t n = 0;
  EXPECT_TRUE(shape_numel({4294967296, 4294967295, 0}, &n));
  EXPECT_EQ(n, 0);
  EXPECT_FALSE(shape_numel({4294967296, 4294967296, 0}, &n));  // 2^64 on the way
  EXPECT_TRUE(shape_numel({3037000499, 3037000499}, &n));  // < 2^63 (naive fp64: 9.22337e18)
  EXPECT_EQ(n, int64_t(3037000499) * 3037000499);
  EXPECT_FALSE(shape_numel({3037000500, 3037000500}, &n));  // > 2^63 - 1
}

// Issue 21 §2: FP8 rounding at the top of each format. Beyond the largest finite value is an
// overflow (Inf for E5M2, NaN for the formats without Inf), which `wavg average` refuses or, with
// --saturate, clamps; the tie just above the largest value rounds to it when its code is even
// (E4M3FN: 464 = 448 + half an ulp, 448 = S.1111.110 even: 448; E5M2: 61440 = 57344 + half an
// ulp, 57344 = S.11110.11 odd: Inf; E4M3FNUZ: 248 = 240 + half an ulp, 240 = S.1111.111 odd: overflow). Values from the formats' definitions (OCP FP8 spec;
// ml_dtypes 0.5.4 casts the same: 464 -> 448, 464.01 -> NaN, 61440 -> Inf, 248 -> NaN).
TEST(Float8, OverflowAndTheTopTie) {
  struct Case {
    DType t;
    double x;
    int bits;  // -1: overflow
  };
  const Case cases[] = {
      {DType::kF8E4M3, 448, 0x7e},   {DType::kF8E4M3, 464, 0x7e},  {DType::kF8E4M3, 464.001, -1},
      {DType::kF8E4M3, -480, -1},    {DType::kF8E5M2, 57344, 0x7b}, {DType::kF8E5M2, 61439.9, 0x7b},
      {DType::kF8E5M2, 61440, -1},   {DType::kF8E4M3FNUZ, 240, 0x7f}, {DType::kF8E4M3FNUZ, 247.9, 0x7f},
      {DType::kF8E4M3FNUZ, 248, -1}, {DType::kF8E5M2FNUZ, -57344, 0xff},
  };
  for (const Case& c : cases) {
    bool over = false;
    const uint8_t b = to_float8(c.t, c.x, &over);
    if (c.bits < 0) {
      EXPECT_TRUE(over) << dtype_name(c.t) << " " << c.x;
      EXPECT_TRUE(std::isnan(float8_table(c.t)[b]) || std::isinf(float8_table(c.t)[b]));
    } else {
      EXPECT_FALSE(over) << dtype_name(c.t) << " " << c.x;
      EXPECT_EQ(b, c.bits) << dtype_name(c.t) << " " << c.x;
    }
  }
  EXPECT_EQ(float8_max(DType::kF8E4M3), 448);
  EXPECT_EQ(float8_max(DType::kF8E5M2), 57344);
  EXPECT_EQ(float8_max(DType::kF8E4M3FNUZ), 240);
  EXPECT_EQ(float8_max(DType::kF8E5M2FNUZ), 57344);
  bool over = false;  // no -0 in the FNUZ formats (0x80 is their NaN)
  EXPECT_EQ(to_float8(DType::kF8E4M3FNUZ, -0.0, &over), 0x00);
  EXPECT_EQ(to_float8(DType::kF8E4M3, -0.0, &over), 0x80);
  EXPECT_TRUE(std::isnan(float8_table(DType::kF8E4M3FNUZ)[0x80]));
  EXPECT_FALSE(over);
}

// Issue 21 §2: a reader that did not ask for every dtype (everything but `wavg average`) refuses a
// non-classic one by name; the header itself is valid.
TEST(SafetensorsDTypes, NewDTypesOnlyWhenAsked) {
  TempDir dir;
  const std::string f =
      make_file(R"({"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", "ab");
  const std::string path = dir / "fp8.safetensors";
  {
    std::ofstream out(path, std::ios::binary);
    out << f;
  }
  EXPECT_EQ(SafetensorsFile(path, /*all_dtypes=*/true).find("w")->dtype, DType::kF8E4M3);
  try {
    SafetensorsFile file(path);
    ADD_FAILURE() << "opened";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "tensor 'w' has dtype F8_E4M3, which only `wavg average` reads"))
        << e.what();
  }
}

// Issue 11 §1: 70 000 nested '[' overflowed the stack (exit 139); now refused by depth.
TEST(SafetensorsMalformed, DeepNestingIsRefusedNotACrash) {
  const std::string deep = std::string(70000, '[') + std::string(70000, ']');
  for (const std::string key : {"shape", "data_offsets"}) {
    std::string h = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
    const std::string old = key == "shape" ? "[1]" : "[0,4]";
    h.replace(h.find(old), old.size(), deep);
    const std::string e = parse_error(make_file(h, std::string(4, '\0')));
    EXPECT_TRUE(contains(e, "nests deeper than 64")) << e.substr(0, 200);
  }
  // 64 levels are fine as JSON (then refused as a shape, with a bounded message).
  const std::string ok = std::string(62, '[') + std::string(62, ']');
  const std::string e = parse_error(make_file(
      R"({"a":{"dtype":"F32","shape":)" + ok + R"(,"data_offsets":[0,4]}})", std::string(4, '\0')));
  EXPECT_TRUE(contains(e, "non-negative integers, got an array")) << e;
}

// Issue 11 §3: the index answers like a linear search (naive reference) on a read header.
TEST(Safetensors, FindByIndexMatchesALinearSearch) {
  TempDir dir;
  std::vector<float> v(300, 1.0f);
  std::vector<TensorOut> outs;
  for (int i = 0; i < 300; ++i) outs.push_back({"t" + std::to_string(299 - i), DType::kF32, {1}, &v[i]});
  write_safetensors(dir / "f", outs);
  SafetensorsFile f(dir / "f");
  for (int i = 0; i < 300; ++i) {
    const std::string name = "t" + std::to_string(i);
    const TensorInfo* linear = nullptr;
    for (const auto& t : f.tensors())
      if (t.name == name) linear = &t;
    EXPECT_EQ(f.find(name), linear);
  }
  EXPECT_EQ(f.find("t300"), nullptr);
}

// Issue 11 §2: nothing at a planted name is followed or reused, in either temporary mode.
TEST(AtomicFile, PlantedSymlinksAreNotFollowed) {
  TempDir dir;
  write_file_atomic(dir / "victim", "precious");
  for (TempKind kind : {TempKind::kAuto, TempKind::kNamed}) {
    // The old predictable name.
    const std::string planted = (dir / "out") + ".tmp." + std::to_string(::getpid());
    ASSERT_EQ(::symlink((dir / "victim").c_str(), planted.c_str()), 0);
    {
      AtomicFile f(dir / "out", kind);
      EXPECT_EQ(f.unnamed(), kind == TempKind::kAuto);  // /tmp supports O_TMPFILE
      f.write("new");
      f.commit();
    }
    EXPECT_EQ(read_all(dir / "victim"), "precious");
    EXPECT_EQ(read_all(dir / "out"), "new");
    ::unlink(planted.c_str());
  }
}

// Issue 11 §2: stale named temporaries of this host whose process is gone are removed; others kept.
TEST(AtomicFile, RemovesOnlyStaleTemporariesOfThisHost) {
  TempDir dir;
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  std::string h = host;
  for (char& c : h)
    if (!std::isalnum((unsigned char)c) && c != '-') c = '-';
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);  // a pid whose process is gone
  const std::string stale = "m.safetensors.tmp." + h + "." + std::to_string(child) + ".0123456789abcdef";
  const std::string alive = "m.safetensors.tmp." + h + "." + std::to_string(::getppid()) + ".0123456789abcdef";
  const std::string other = "m.safetensors.tmp.otherhost." + std::to_string(child) + ".0123456789abcdef";
  const std::string foreign = "m.safetensors.tmp." + std::to_string(child);
  for (const auto& n : {stale, alive, other, foreign}) write_file_atomic(dir / n, "x");
  ASSERT_TRUE(parse_temporary_name(stale).has_value());
  EXPECT_EQ(parse_temporary_name(stale)->target, "m.safetensors");
  EXPECT_FALSE(parse_temporary_name(foreign).has_value());
  {
    AtomicFile f(dir / "y", TempKind::kNamed);
    f.write("y");
    f.commit();
  }
  EXPECT_FALSE(file_exists(dir / stale));
  EXPECT_TRUE(file_exists(dir / alive));
  EXPECT_TRUE(file_exists(dir / other));
  EXPECT_TRUE(file_exists(dir / foreign));
}

TEST(AtomicFile, LeavesNothingWhenNotCommitted) {
  TempDir dir;
  write_file_atomic(dir / "x", "old");
  {
    AtomicFile f(dir / "x");
    f.write("new contents");
  }
  {
    AtomicFile f(dir / "x", TempKind::kNamed);
    f.write("new contents");
  }
  EXPECT_EQ(read_all(dir / "x"), "old");
  for (const auto& entry : std::filesystem::directory_iterator(dir.path()))
    EXPECT_FALSE(contains(entry.path().filename().string(), "tmp")) << entry.path();
  EXPECT_THROW(write_file_atomic(dir / "no/such/dir/x", "y"), Error);
}

TEST(AtomicFile, FailedStreamedWriteKeepsTheOldFile) {
  TempDir dir;
  write_file_atomic(dir / "m.safetensors", "previous");
  std::vector<TensorOut> ts = {{"a", DType::kF32, {2}, nullptr}};
  EXPECT_THROW(write_safetensors_streamed(dir / "m.safetensors", ts, {},
                                          [](size_t, const ByteWriter&) {
                                            throw Error("producer failed");
                                          }),
               Error);
  EXPECT_EQ(read_all(dir / "m.safetensors"), "previous");
}

// ---- bank state ----------------------------------------------------------------------------------

TEST(BankState, SaveLoadContinuesBitIdentically) {
  TempDir dir;
  const int64_t n = 5000;
  auto make = [&] {
    auto b = std::make_unique<AveragerBank>(n, DType::kBF16);
    b->add(LawaOptions(4));
    b->add(EmaOptions(0.9).every(2));
    b->add(SwaOptions().every(3).start(3));
    return b;
  };
  auto straight = make(), first = make(), resumed = make();
  std::mt19937 rng(1);
  std::vector<std::vector<BFloat16>> xs(40, std::vector<BFloat16>(n));
  for (auto& x : xs)
    for (auto& v : x) v = to_bf16(float(int(rng() % 2001) - 1000) / 100.0f);
  for (int s = 0; s < 40; ++s) straight->observe(s, xs[s].data());
  for (int s = 0; s < 17; ++s) first->observe(s, xs[s].data());
  save_bank_state(dir / "bank.safetensors", *first, {{"run", "abc"}});
  const auto meta = load_bank_state(dir / "bank.safetensors", *resumed);
  EXPECT_EQ(meta.at("run"), "abc");
  EXPECT_EQ(resumed->last_step(), 16);
  for (int s = 17; s < 40; ++s) resumed->observe(s, xs[s].data());
  for (int a = 0; a < 3; ++a) {
    std::vector<float> p(n), q(n);
    straight->average(a, DType::kF32, p.data());
    resumed->average(a, DType::kF32, q.data());
    EXPECT_EQ(p, q);
  }
  AveragerBank wrong(n, DType::kBF16);
  wrong.add(LawaOptions(5));
  EXPECT_THROW(load_bank_state(dir / "bank.safetensors", wrong), Error);
}

// Resume mid-ring: a state saved after every number of samples from 0 to 2·(L_max + 1) (so at every
// position of the ring, before and after it wraps) continues bit-identically, through a file.
TEST(BankState, ResumesBitExactlyAtEveryRingPosition) {
  TempDir dir;
  const int64_t n = 300, steps = 20;
  auto make = [&] {
    auto b = std::make_unique<AveragerBank>(n, DType::kF16);
    b->add(LawaOptions(5));
    b->add(LawaOptions(2));
    b->add(LawaOptions(3).every(2).start(3));
    return b;
  };
  std::mt19937 rng(4);
  std::vector<std::vector<Half>> xs(steps, std::vector<Half>(n));
  for (auto& x : xs)
    for (auto& v : x) v = to_half(float(int(rng() % 2001) - 1000) / 64.0f);
  auto straight = make();
  for (int s = 0; s < steps; ++s) straight->observe(s, xs[s].data());
  for (int cut = 0; cut <= 13; ++cut) {
    auto first = make(), resumed = make();
    for (int s = 0; s < cut; ++s) first->observe(s, xs[s].data());
    save_bank_state(dir / "bank.safetensors", *first);
    load_bank_state(dir / "bank.safetensors", *resumed);
    for (int s = cut; s < steps; ++s) resumed->observe(s, xs[s].data());
    for (int a = 0; a < 3; ++a) {
      std::vector<double> p(n), q(n);
      straight->average(a, DType::kF64, p.data());
      resumed->average(a, DType::kF64, q.data());
      ASSERT_EQ(p, q) << "averager " << a << " resumed after " << cut << " samples";
    }
  }
}

// States of format 1 (before rings held samples) stored each LAWA ring as L_max + 1 fp64 cumulative
// sums C_k = x_0 + … + x_{k−1} in slot k mod (L_max + 1). Such a file, built here by hand from the
// samples, is converted on load and continues exactly like the samples' naive means; a state of an
// unknown format is refused naming the format.
TEST(BankState, ConvertsFormat1CumulativeSumRingsAndRefusesUnknownFormats) {
  TempDir dir;
  const int64_t n = 50, window = 4, slots = window + 1, cut = 11, steps = 17;
  std::mt19937 rng(8);
  std::vector<std::vector<float>> xs(steps, std::vector<float>(n));
  for (auto& x : xs)
    for (auto& v : x) v = float(int(rng() % 2001) - 1000) / 8.0f;
  std::vector<double> ring(size_t(slots * n), 0.0), c(n, 0.0);  // C_0 = 0
  for (int64_t k = 0; k <= cut; ++k) {
    for (int64_t i = 0; i < n; ++i) ring[size_t((k % slots) * n + i)] = c[i];
    if (k < cut)
      for (int64_t i = 0; i < n; ++i) c[i] += xs[k][i];
  }
  const std::map<std::string, std::string> meta = {
      {"bank.numel", "50"}, {"bank.dtype", "F32"}, {"bank.shard_offset", "0"},
      {"bank.shard_length", "50"}, {"bank.last_step", std::to_string(cut - 1)},
      {"bank.averagers", "2"}, {"averager.0.spec", "lawa_L4_nu1|lawa|4|0|1|0"},
      {"averager.0.samples", std::to_string(cut)}, {"averager.1.spec", "lawa_L2_nu1|lawa|2|0|1|0"},
      {"averager.1.samples", std::to_string(cut)}, {"ring.0.count", std::to_string(cut)}};
  write_safetensors(dir / "old.safetensors", {{"ring.0", DType::kF64, {slots * n}, ring.data()}},
                    meta);
  AveragerBank bank(n, DType::kF32);
  bank.add(LawaOptions(4));
  bank.add(LawaOptions(2));
  load_bank_state(dir / "old.safetensors", bank);
  for (int64_t last = cut - 1; last < steps; ++last) {  // the newest sample's step
    if (last >= cut) bank.observe(last, xs[last].data());
    for (auto [a, w] : {std::pair{0, int64_t(4)}, std::pair{1, int64_t(2)}}) {
      std::vector<double> want(n, 0.0), got(n);
      for (int64_t k = last - w + 1; k <= last; ++k)
        for (int64_t i = 0; i < n; ++i) want[i] += xs[k][i];
      for (double& v : want) v /= double(w);
      bank.average(a, DType::kF64, got.data());
      ASSERT_EQ(got, want) << "averager " << a << " at step " << last;
    }
  }
  auto future = meta;
  future["bank.format"] = "3";
  write_safetensors(dir / "future.safetensors", {{"ring.0", DType::kF64, {slots * n}, ring.data()}},
                    future);
  AveragerBank other(n, DType::kF32);
  other.add(LawaOptions(4));
  other.add(LawaOptions(2));
  try {
    load_bank_state(dir / "future.safetensors", other);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    // One line naming the file, then the field and its value.
    EXPECT_EQ(std::string(e.what()),
              (dir / "future.safetensors") +
                  ": bank state: format 3 is unknown to this wavg, which reads formats 1 and 2 "
                  "(written by a newer wavg?)");
  }
}

// A state file is a file from disk: values quoted in messages; specs compared as values, so a beta
// written with 17 significant digits (older files) is still the same averager.
TEST(BankState, ComparesSpecsAsValuesAndQuotesTheFilesValues) {
  TempDir dir;
  const int64_t n = 10;
  AveragerBank saved(n, DType::kF32);
  saved.add(EmaOptions(0.9));
  saved.add(LawaOptions(2).every(3));
  std::vector<float> x(n, 1.5f);
  for (int s = 0; s < 7; ++s) saved.observe(s, x.data());
  std::vector<TensorOut> arrays;
  for (const StateArray& a : saved.state_arrays()) arrays.push_back({a.name, a.dtype, {a.numel}, a.data});
  auto load = [&](const std::map<std::string, std::string>& meta) {
    write_safetensors(dir / "state.safetensors", arrays, meta);
    AveragerBank bank(n, DType::kF32);
    bank.add(EmaOptions(0.9));
    bank.add(LawaOptions(2).every(3));
    try {
      load_bank_state(dir / "state.safetensors", bank);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("loaded, ") + std::to_string(bank.samples(0)) + " samples";
  };
  const auto good = saved.state_meta();
  EXPECT_EQ(good.at("averager.0.spec"), "ema_b0.9_nu1|ema|0|0.9|1|0");
  EXPECT_EQ(load(good), "loaded, 7 samples");
  auto meta = good;
  meta["averager.0.spec"] = "ema_b0.9_nu1|ema|0|0.90000000000000002|1|0";
  EXPECT_EQ(load(meta), "loaded, 7 samples");
  meta["averager.0.spec"] = "ema_b0.9_nu1|ema|0|0.91|1|0";
  EXPECT_TRUE(contains(load(meta), "averager 0 is 'ema_b0.9_nu1|ema|0|0.91|1|0'")) << load(meta);
  meta["averager.0.spec"] = "ema\n\x1b[31m|ema|0|0.9|1|0";
  EXPECT_TRUE(contains(load(meta), "averager 0 is 'ema\\x0a\\x1b[31m|ema|0|0.9|1|0'"))
      << load(meta);
  meta = good;
  meta["bank.numel"] = "10\x1b[2J";
  EXPECT_TRUE(contains(load(meta), "key 'bank.numel' is not an integer: '10\\x1b[2J'"))
      << load(meta);
}

// ---- checkpoint averaging ------------------------------------------------------------------------

class CheckpointAverage : public ::testing::TestWithParam<DType> {};

TEST_P(CheckpointAverage, MatchesFp64LoopForEveryScheme) {
  const DType dt = GetParam();
  TempDir dir;
  std::mt19937_64 rng(77);
  std::normal_distribution<double> dist(0, 2);
  const int files = 9;
  const int64_t n1 = 300, n2 = 7;
  std::vector<std::vector<double>> w1(files), w2(files);  // values as stored
  std::vector<std::string> paths;
  for (int f = 0; f < files; ++f) {
    std::vector<unsigned char> b1(n1 * dtype_size(dt)), b2(n2 * dtype_size(dt));
    dispatch_floating(dt, [&](auto tag) {
      using T = decltype(tag);
      for (int64_t i = 0; i < n1; ++i) {
        reinterpret_cast<T*>(b1.data())[i] = store_as<T>(dist(rng));
        w1[f].push_back(load_f64(reinterpret_cast<T*>(b1.data())[i]));
      }
      for (int64_t i = 0; i < n2; ++i) {
        reinterpret_cast<T*>(b2.data())[i] = store_as<T>(dist(rng));
        w2[f].push_back(load_f64(reinterpret_cast<T*>(b2.data())[i]));
      }
    });
    const int64_t step = f * 100;
    paths.push_back(dir / ("ckpt" + std::to_string(f) + ".safetensors"));
    write_safetensors(paths.back(),
                      {{"w1", dt, {n1 / 3, 3}, b1.data()},
                       {"w2", dt, {n2}, b2.data()},
                       {"step", DType::kI64, {}, &step}},
                      {{"epoch", std::to_string(f)}});
  }
  for (const SchemeOptions& o : std::vector<SchemeOptions>{
           LawaOptions(3), LawaOptions(2).every(2).start(1), EmaOptions(0.6),
           EmaOptions(0.3).every(3).start(2), SwaOptions().start(4)}) {
    // Independent reference: run the recurrences of DESIGN.md §2 over the sampled files.
    std::vector<int> sampled;
    for (int f = 0; f < files; ++f)
      if (f >= o.start() && f % o.every() == 0) sampled.push_back(f);
    auto reference = [&](const std::vector<std::vector<double>>& w, int64_t i) {
      if (const auto* ema = o.as<EmaOptions>()) {
        const double beta = ema->beta();
        double e = w[sampled[0]][i];
        for (size_t k = 1; k < sampled.size(); ++k) e = beta * e + (1 - beta) * w[sampled[k]][i];
        return e;
      }
      const auto* lawa = o.as<LawaOptions>();
      const size_t first =
          lawa ? sampled.size() - std::min<size_t>(size_t(lawa->window()), sampled.size()) : 0;
      double s = 0;
      for (size_t k = first; k < sampled.size(); ++k) s += w[sampled[k]][i];
      return s / double(sampled.size() - first);
    };
    CheckpointAverageOptions opts;
    opts.averager = o;
    opts.out_dtype = DType::kF64;
    opts.overwrite = true;  // one output for every averager
    average_checkpoints(paths, dir / "avg.safetensors", opts);
    SafetensorsFile out(dir / "avg.safetensors");
    const double* a1 = reinterpret_cast<const double*>(out.data(*out.find("w1")));
    for (int64_t i = 0; i < n1; ++i) ASSERT_NEAR(a1[i], reference(w1, i), 1e-12) << describe(o);
    const double* a2 = reinterpret_cast<const double*>(out.data(*out.find("w2")));
    for (int64_t i = 0; i < n2; ++i) ASSERT_NEAR(a2[i], reference(w2, i), 1e-12);
    // Non-floating tensors come from the newest file, with its metadata and a record.
    int64_t step;
    std::memcpy(&step, out.data(*out.find("step")), 8);
    EXPECT_EQ(step, 800);
    EXPECT_EQ(out.metadata().at("epoch"), "8");
    EXPECT_TRUE(contains(out.metadata().at("wavg.average"), scheme_name(o.scheme())));
  }
  // Default output dtype: the input's.
  CheckpointAverageOptions last;
  last.averager = LawaOptions(2);
  average_checkpoints(paths, dir / "same.safetensors", last);
  EXPECT_EQ(SafetensorsFile(dir / "same.safetensors").find("w1")->dtype, dt);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CheckpointAverage,
                         ::testing::Values(DType::kF32, DType::kF64, DType::kF16, DType::kBF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(CheckpointAverageErrors, MismatchNamesFileAndTensorAndLeavesNoOutput) {
  TempDir dir;
  const std::vector<float> v(6, 1.0f);
  write_safetensors(dir / "a", {{"w", DType::kF32, {6}, v.data()}});
  write_safetensors(dir / "b", {{"w", DType::kF32, {2, 3}, v.data()}});
  write_safetensors(dir / "c", {{"v", DType::kF32, {6}, v.data()}});
  write_safetensors(dir / "d", {{"w", DType::kF16, {6}, v.data()}});
  const std::vector<float> bad = {1, 2, NAN, 4, 5, 6};
  write_safetensors(dir / "nan", {{"w", DType::kF32, {6}, bad.data()}});
  CheckpointAverageOptions o;
  o.averager = SwaOptions();
  auto err = [&](std::vector<std::string> in) {
    try {
      average_checkpoints(in, dir / "out", o);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_TRUE(contains(err({dir / "b", dir / "a"}), "tensor 'w' has a different shape")) << err({dir / "b", dir / "a"});
  EXPECT_TRUE(contains(err({dir / "c", dir / "a"}), dir / "c"));
  EXPECT_TRUE(contains(err({dir / "d", dir / "a"}), "dtype F16"));
  EXPECT_TRUE(contains(err({dir / "nan", dir / "a"}), "element 2 is not finite"));
  EXPECT_TRUE(contains(err({dir / "missing", dir / "a"}), "cannot open"));
  // A name from a file is quoted in the message.
  write_safetensors(dir / "ctl", {{"w\x1b[2J", DType::kF32, {6}, v.data()}});
  EXPECT_TRUE(contains(err({dir / "ctl", dir / "a"}), "only in the first ('w\\x1b[2J')"))
      << err({dir / "ctl", dir / "a"});
  EXPECT_FALSE(exists(dir / "out"));
}

TEST(Safetensors, ChecksumDetectsCorruptedData) {
  TempDir dir;
  std::vector<float> v(100, 1.5f);
  write_safetensors(dir / "c.safetensors", {{"w", DType::kF32, {100}, v.data()}}, {}, true);
  SafetensorsFile(dir / "c.safetensors").verify_checksum();  // intact: no error
  std::string bytes = read_all(dir / "c.safetensors");
  bytes[bytes.size() - 5] ^= 0x10;  // one flipped bit in the data: still a valid file
  std::ofstream(dir / "c.safetensors", std::ios::binary) << bytes;
  SafetensorsFile f(dir / "c.safetensors");
  try {
    f.verify_checksum();
    FAIL() << "expected a checksum error";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "fails its checksum")) << e.what();
  }
}

// The header is read by SAX straight into tensor entries (no DOM): a repeated metadata key keeps
// its last value (as the reference's map does; a repeated field of an entry is refused, as there:
// JsonAsTheReferenceReadsIt), members the format does not know are skipped whatever they hold, and
// tensors that share an offset (empty ones) come in name order.
TEST(Safetensors, HeaderMembersAsJsonDefinesThem) {
  const std::string data(8, '\0');
  const std::string header =
      R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8],"x":{"y":[[[1]]]}},)"
      R"("z":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"__metadata__":{"k":"1","k":"2"},)"
      R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"e":{"dtype":"F64","shape":[0,3],)"
      R"("data_offsets":[0,0],"notes":["any",{"thing":null},1.5]}})";
  const std::string bytes = make_file(header, data);
  const SafetensorsHeader h =
      parse_safetensors(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), "f");
  ASSERT_EQ(h.tensors.size(), 4u);
  const std::vector<std::string> order = {"e", "z", "a", "b"};  // by offset, then name
  for (size_t i = 0; i < order.size(); ++i) {
    EXPECT_EQ(h.tensors[i].name, order[i]);
    EXPECT_EQ(h.find(order[i]), &h.tensors[i]);
  }
  EXPECT_EQ(h.tensors[3].shape, std::vector<int64_t>{1});
  EXPECT_EQ(h.metadata.at("k"), "2");
  // A header changed by hand is searched linearly.
  SafetensorsHeader changed = h;
  changed.tensors.push_back(changed.tensors[0]);
  changed.tensors.back().name = "added";
  EXPECT_EQ(changed.find("added"), &changed.tensors.back());
  EXPECT_EQ(changed.find("missing"), nullptr);
}

// A problem in an entry is reported only once the whole header is known to be JSON: a syntax error
// later in the header is the error.
TEST(SafetensorsMalformed, SyntaxErrorAfterABadEntryIsTheError) {
  const std::string bad = R"({"a":{"dtype":"Q8","shape":[1],"data_offsets":[0,4]},"b":[})";
  EXPECT_TRUE(contains(parse_error(make_file(bad, std::string(4, '\0'))), "not valid JSON"));
  const std::string good_json = R"({"a":{"dtype":"Q8","shape":[1],"data_offsets":[0,4]}})";
  EXPECT_TRUE(contains(parse_error(make_file(good_json, std::string(4, '\0'))), "dtype 'Q8'"));
}
