// Checked read-only JSON access for the report (see json_view.h).
#include "wavg/study/json_view.h"

#include <cmath>
#include <fstream>

#include "wavg/core/error.h"

namespace wavg::report {

namespace {

// A value as JSON text for messages: ASCII only (non-ASCII escaped, invalid UTF-8 replaced), at
// most 60 characters.
std::string shown(const json& j) {
  std::string s = j.dump(-1, ' ', /*ensure_ascii=*/true, json::error_handler_t::replace);
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

}  // namespace

void JsonView::fail(const std::string& what) const {
  throw Error("report: " + file_ + ": " + (path_.empty() ? "the document" : "'" + path_ + "'") +
              " " + what);
}

void JsonView::invalid(const std::string& expected) const {
  fail("must be " + expected + ", got " + shown(*j_));
}

bool JsonView::has(const std::string& key) const {
  return j_->is_object() && j_->find(key) != j_->end();
}

std::vector<std::string> JsonView::missing(std::initializer_list<const char*> keys) const {
  std::vector<std::string> out;
  for (const char* k : keys)
    if (!has(k)) out.push_back(k);
  return out;
}

JsonView JsonView::operator[](const std::string& key) const {
  const std::string path = path_.empty() ? key : path_ + "." + key;
  if (!j_->is_object()) fail("must be an object (looking for '" + key + "')");
  const auto it = j_->find(key);
  if (it == j_->end()) JsonView(j_, file_, path).fail("is missing");
  return JsonView(&*it, file_, path);
}

JsonView JsonView::operator[](size_t index) const {
  if (!j_->is_array()) fail("must be an array");
  if (index >= j_->size())
    fail("has " + std::to_string(j_->size()) + " elements, element " + std::to_string(index) +
         " is missing");
  return JsonView(&(*j_)[index], file_, path_ + "[" + std::to_string(index) + "]");
}

std::vector<std::string> JsonView::keys() const {
  if (!j_->is_object()) fail("must be an object");
  std::vector<std::string> out;
  for (auto it = j_->begin(); it != j_->end(); ++it) out.push_back(it.key());
  return out;
}

std::vector<JsonView> JsonView::elements() const {
  if (!j_->is_array()) fail("must be an array");
  std::vector<JsonView> out;
  for (size_t i = 0; i < j_->size(); ++i)
    out.push_back(JsonView(&(*j_)[i], file_, path_ + "[" + std::to_string(i) + "]"));
  return out;
}

size_t JsonView::size() const { return j_->is_array() || j_->is_object() ? j_->size() : 0; }

double JsonView::number() const {
  if (j_->is_null()) return std::nan("");
  if (!j_->is_number()) fail("must be a number, got " + shown(*j_));
  return j_->get<double>();
}

int64_t JsonView::integer() const {
  if (j_->is_number_integer() || j_->is_number_unsigned()) return j_->get<int64_t>();
  if (j_->is_number_float()) {
    const double v = j_->get<double>();
    if (std::isfinite(v) && v == std::floor(v) && std::abs(v) < 9e15) return int64_t(v);
  }
  fail("must be an integer, got " + shown(*j_));
}

std::string JsonView::text() const {
  if (!j_->is_string()) fail("must be a string, got " + shown(*j_));
  return j_->get<std::string>();
}

bool JsonView::boolean() const {
  if (!j_->is_boolean()) fail("must be true or false, got " + shown(*j_));
  return j_->get<bool>();
}

json read_json_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  WAVG_CHECK(f.good(), "report: cannot read ", path);
  try {
    return json::parse(f);
  } catch (const json::exception&) {
    throw Error("report: " + path + " is not valid JSON");
  }
}

}  // namespace wavg::report
