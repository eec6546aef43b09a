// Tests of the report's figures and run report: the one gnuplot data-block writer, SVG rendering,
// errors that say what failed (gnuplot missing, a figure without data, gnuplot's own error line),
// the temporary directory removed in every case, and one-line errors for a malformed summary.json.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>

#include "wavg/core/error.h"
#include "wavg/io/metrics_log.h"
#include "wavg/study/gnuplot.h"
#include "wavg/study/report.h"

using namespace wavg;
using namespace wavg::report;
namespace fs = std::filesystem;

namespace {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "wavg_report_test_XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Sets an environment variable for the scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (had_) ::setenv(name_, old_.c_str(), 1);
    else ::unsetenv(name_);
  }

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Gnuplot, DataBlockWritesRowsInFullPrecision) {
  EXPECT_EQ(data_block("d", std::vector<std::vector<double>>{{1, 0.1}, {2.5, std::nan("")}}),
            "$d << EOD\n1 0.1\n2.5 NaN\nEOD\n");
  EXPECT_EQ(data_block("g", std::vector<DataRow>{{{0, 1, 1.0 / 3}, "33%"}, {{1, 1}, "a\"b"}}),
            "$g << EOD\n0 1 0.3333333333333333 \"33%\"\n1 1 \"a'b\"\nEOD\n");
  EXPECT_EQ(gnuplot_quote("it's"), "'it''s'");
}

TEST(Gnuplot, RendersSvgAndRemovesItsTemporaryDirectory) {
  TempDir tmp;
  ScopedEnv env("TMPDIR", tmp.path());
  const std::string svg = gnuplot_svg(
      "line", data_block("d", std::vector<std::vector<double>>{{0, 1}, {1, 2}}) +
                  "plot $d using 1:2 with lines title 'it''s'");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_TRUE(fs::is_empty(tmp.path()));
}

TEST(Gnuplot, ErrorsSayWhatFailed) {
  TempDir tmp;
  ScopedEnv env("TMPDIR", tmp.path());
  const std::string data = data_block("d", std::vector<std::vector<double>>{{0, 1}, {1, 2}});
  // A plot error: gnuplot's own first error line, naming the figure.
  std::string e = error_of([&] { gnuplot_svg("bad plot", data + "plot $d using 1:2, foo"); });
  EXPECT_NE(e.find("gnuplot failed on the figure 'bad plot'"), std::string::npos) << e;
  EXPECT_NE(e.find("undefined variable: foo"), std::string::npos) << e;
  EXPECT_EQ(e.find("install"), std::string::npos) << e;
  // Data that gnuplot cannot plot (every value undefined): its error, past its warning.
  e = error_of([&] {
    gnuplot_svg("undefined", data_block("u", std::vector<std::vector<double>>{{0, std::nan("")}}) +
                                 "plot $u using 1:2 with lines");
  });
  EXPECT_NE(e.find("gnuplot failed on the figure 'undefined'"), std::string::npos) << e;
  EXPECT_NE(e.find("undefined"), std::string::npos) << e;
  // An empty data block is refused before gnuplot runs.
  e = error_of([&] {
    gnuplot_svg("empty", data_block("z", std::vector<std::vector<double>>{}) + "plot $z u 1:2");
  });
  EXPECT_NE(e.find("figure 'empty' has no data to plot ($z is empty)"), std::string::npos) << e;
  EXPECT_TRUE(fs::is_empty(tmp.path()));
  // gnuplot not on the PATH.
  {
    ScopedEnv path("PATH", tmp.path());
    e = error_of([&] { gnuplot_svg("any", data + "plot $d using 1:2"); });
  }
  EXPECT_NE(e.find("gnuplot is not installed"), std::string::npos) << e;
  EXPECT_TRUE(fs::is_empty(tmp.path()));
}

TEST(RunReport, RendersARunWithAHigherIsBetterMetric) {
  TempDir dir;
  std::ofstream(dir.path() + "/summary.json") << R"({"workload": "toy", "metric": "accuracy",
    "lower_is_better": false, "target": 0.8, "steps": 20, "steps_done": 20, "train_wall_s": 1.5,
    "models": [{"model": "raw", "description": "the model", "steps_to_target": 20,
                "best_value": 0.85, "best_step": 20},
               {"model": "ema", "description": "an EMA", "steps_to_target": 10,
                "best_value": 0.9, "best_step": 20}]})";
  std::ofstream m(dir.path() + "/metrics.jsonl");
  for (int64_t s : {0, 10, 20})
    for (const char* model : {"raw", "ema"})
      m << metrics_line({s, model, "accuracy", 0.5 + 0.02 * double(s), 1.0, 1e-3, 0.1}) << "\n";
  m.close();
  write_report(dir.path(), dir.path() + "/report.html");
  std::ifstream f(dir.path() + "/report.html");
  const std::string html((std::istreambuf_iterator<char>(f)), {});
  EXPECT_NE(html.find("validation accuracy &ge; 0.8"), std::string::npos);
  EXPECT_NE(html.find("reached the target in 50.0% of the raw model's steps"), std::string::npos);
  EXPECT_EQ(html.find("&le;"), std::string::npos);
}

TEST(RunReport, MalformedSummaryIsAnErrorNamingTheKey) {
  TempDir dir;
  std::ofstream(dir.path() + "/summary.json") << R"({"workload": "toy", "metric": "error",
    "lower_is_better": true, "target": 0.8, "steps": 20, "steps_done": 20, "train_wall_s": 1})";
  std::ofstream(dir.path() + "/metrics.jsonl")
      << metrics_line({0, "raw", "error", 0.5, 1.0, 1e-3, 0.0}) << "\n";
  const std::string e = error_of([&] { write_report(dir.path(), dir.path() + "/r.html"); });
  EXPECT_NE(e.find("summary.json: 'models' is missing"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(dir.path() + "/r.html"));
}
