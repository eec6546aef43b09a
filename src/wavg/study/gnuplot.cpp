// gnuplot figures as SVG (see gnuplot.h).
#include "wavg/study/gnuplot.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "wavg/core/error.h"
#include "wavg/core/format.h"

extern char** environ;

namespace wavg::report {

namespace fs = std::filesystem;

std::string data_block(const std::string& name, const std::vector<DataRow>& rows) {
  std::string s = "$" + name + " << EOD\n";
  for (const DataRow& r : rows) {
    for (size_t i = 0; i < r.values.size(); ++i)
      s += (i ? " " : "") + (std::isnan(r.values[i]) ? std::string("NaN") : format_exact(r.values[i]));
    if (!r.label.empty()) {
      std::string label = r.label;
      for (char& c : label)
        if (c == '"' || c == '\n') c = '\'';
      s += " \"" + label + "\"";
    }
    s += "\n";
  }
  return s + "EOD\n";
}

std::string data_block(const std::string& name, const std::vector<std::vector<double>>& rows) {
  std::vector<DataRow> labelled;
  for (const auto& r : rows) labelled.push_back({r, ""});
  return data_block(name, labelled);
}

std::string gnuplot_quote(const std::string& text) {
  std::string s = "'";
  for (char c : text) s += c == '\'' ? std::string("''") : std::string(1, c == '\n' ? ' ' : c);
  return s + "'";
}

namespace {

// A temporary directory, removed with everything in it when the object goes.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "wavg_plot_XXXXXX").string();
    WAVG_CHECK(::mkdtemp(tmpl.data()) != nullptr, "report: cannot create a temporary directory ",
               "for gnuplot in ", fs::temp_directory_path().string(), ": ", std::strerror(errno));
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const char* name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// The name of the first data block of `script` that has no rows, or "".
std::string empty_data_block(const std::string& script) {
  const std::string marker = " << EOD\nEOD\n";
  const size_t at = script.find(marker);
  if (at == std::string::npos) return "";
  const size_t start = script.rfind('$', at);
  return start == std::string::npos ? "?" : script.substr(start, at - start);
}

// gnuplot's first error line ("line 7: undefined variable: foo"), past its warnings; the first
// line of the log if there is no such line.
std::string first_error(const std::string& log) {
  std::istringstream in(log);
  std::string line, first, warning;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t^") == std::string::npos) continue;
    const size_t at = line.find("\" line ");
    if (at != std::string::npos && line[0] == '"') {
      const std::string msg = line.substr(at + 2);
      if (msg.find(": warning:") == std::string::npos) return msg;
      if (warning.empty()) warning = msg;
    }
    if (first.empty()) first = line;
  }
  return !warning.empty() ? warning : first.empty() ? "no message" : first;
}

// Runs `gnuplot script` with stdout and stderr to files; returns its exit status, or -1 (with
// errno) if it could not be started.
int run_gnuplot(const std::string& script, const std::string& out, const std::string& log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::string prog = "gnuplot", arg = script;
  char* argv[] = {prog.data(), arg.data(), nullptr};
  pid_t pid = 0;
  const int rc = ::posix_spawnp(&pid, "gnuplot", &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    errno = rc;
    return -1;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

std::string gnuplot_svg(const std::string& figure, const std::string& script, int width,
                        int height) {
  const std::string empty = empty_data_block(script);
  WAVG_CHECK(empty.empty(), "report: figure '", figure, "' has no data to plot (", empty,
             " is empty)");
  TempDir dir;
  const std::string gp = dir.file("plot.gp"), svg = dir.file("plot.svg"), log = dir.file("plot.log");
  {
    std::ofstream f(gp);
    f << "set terminal svg size " << width << "," << height
      << " dynamic noenhanced font 'Helvetica,12' background rgb 'white'\n"
      << "set grid lc rgb '#dddddd'\nset key outside right top\nset border lc rgb '#555555'\n"
      << script << "\n";
    WAVG_CHECK(f.good(), "report: cannot write the gnuplot script ", gp);
  }
  const int rc = run_gnuplot(gp, svg, log);
  if (rc < 0 && (errno == ENOENT || errno == EACCES))
    throw Error("report: gnuplot is not installed (it draws the report's figures): install it "
                "with 'apt-get install gnuplot-nox' or scripts/setup.sh");
  WAVG_CHECK(rc >= 0, "report: cannot run gnuplot: ", std::strerror(errno));
  const std::string out = slurp(svg);
  WAVG_CHECK(rc == 0, "report: gnuplot failed on the figure '", figure, "': ",
             first_error(slurp(log)));
  const size_t start = out.find("<svg");
  WAVG_CHECK(start != std::string::npos, "report: gnuplot wrote no SVG for the figure '", figure,
             "': ", first_error(slurp(log)));
  return out.substr(start);
}

}  // namespace wavg::report
