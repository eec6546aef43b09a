// Read-only access to a JSON document the report reads (results.json, summary.json): a missing
// key or a value of the wrong type is a wavg::Error naming the file and the path
// ("results.json: 'workloads.synth_ctr.target' is missing"), never undefined behaviour and never a
// raw nlohmann message. has() and missing() let a report section skip what a partial file lacks.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace wavg::report {

using json = nlohmann::ordered_json;

class JsonView {
 public:
  // `file` names the document in messages; the view must not outlive `j`.
  JsonView(const json& j, std::string file) : j_(&j), file_(std::move(file)) {}

  // An object holding `key` (with any value, null included).
  bool has(const std::string& key) const;
  // The keys among `keys` that this object lacks (all of them if it is not an object).
  std::vector<std::string> missing(std::initializer_list<const char*> keys) const;
  JsonView operator[](const std::string& key) const;  // throws if missing
  JsonView operator[](size_t index) const;            // throws if out of range

  std::vector<std::string> keys() const;    // an object's keys in order; throws otherwise
  std::vector<JsonView> elements() const;   // an array's elements; throws otherwise
  size_t size() const;                      // elements or keys; 0 for a scalar

  bool is_null() const { return j_->is_null(); }
  bool is_string() const { return j_->is_string(); }
  double number() const;     // a number; null reads as NaN (results.json writes ±∞ and NaN so)
  int64_t integer() const;   // an integral number
  std::string text() const;  // a string
  bool boolean() const;

  // "workloads.synth_ctr.target", as in messages.
  const std::string& path() const { return path_; }
  // Throws wavg::Error: "report: FILE: 'PATH' must be EXPECTED, got VALUE".
  [[noreturn]] void invalid(const std::string& expected) const;
  // The document's name, as given to the constructor.
  const std::string& file() const { return file_; }

 private:
  JsonView(const json* j, std::string file, std::string path)
      : j_(j), file_(std::move(file)), path_(std::move(path)) {}
  [[noreturn]] void fail(const std::string& what) const;

  const json* j_;
  std::string file_;
  std::string path_;
};

// Parses `path` as JSON; wavg::Error naming the file if it cannot be read or parsed.
json read_json_file(const std::string& path);

}  // namespace wavg::report
