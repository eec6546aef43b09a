// The `wavg` command: subcommands share one error policy. Bad input (a wavg::Error, thrown where the
// input is read, naming the thing and the value) prints one line "wavg: error: ..." to stderr and
// exits 2; anything else is an internal error: one line, exit 3. Messages never echo raw bytes:
// control characters and invalid UTF-8 are escaped.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>

#include "wavg/cli/commands.h"
#include "wavg/core/error.h"

namespace {

// Length of the valid UTF-8 sequence at s[i] (0: invalid).
size_t utf8_length(const std::string& s, size_t i) {
  const auto b = [&](size_t k) { return (unsigned char)s[k]; };
  const unsigned char c = b(i);
  size_t n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
  if (n == 0 || c >= 0xf5 || i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k)
    if ((b(i + k) & 0xc0) != 0x80) return 0;
  if (n == 3 && ((c == 0xe0 && b(i + 1) < 0xa0) || (c == 0xed && b(i + 1) >= 0xa0))) return 0;
  if (n == 4 && ((c == 0xf0 && b(i + 1) < 0x90) || (c == 0xf4 && b(i + 1) >= 0x90))) return 0;
  return n;
}

// One printable line: "\n", "\t" and "\\xNN" for control bytes and bytes of invalid UTF-8.
std::string printable(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c < 0x7f) {
      out += char(c);
      ++i;
    } else if (c >= 0x80 && utf8_length(s, i) > 0) {
      const size_t n = utf8_length(s, i);
      out += s.substr(i, n);
      i += n;
    } else {
      char buf[8];
      if (c == '\n') std::snprintf(buf, sizeof buf, "\\n");
      else if (c == '\t') std::snprintf(buf, sizeof buf, "\\t");
      else std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
      ++i;
    }
  }
  return out;
}

int fail(int code, const std::string& message) {
  std::fprintf(stderr, "wavg: error: %s\n", printable(message).c_str());
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"wavg: weight averaging (LAWA, EMA, SWA) for neural-network training"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "wavg 0.1.0");
  wavg::cli::set_forward_argv(argc, argv);
  std::vector<wavg::cli::Command> commands = wavg::cli::register_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return fail(2, std::string(e.what()) + " (see 'wavg --help')");
  }
  try {
    for (auto& c : commands)
      if (c.app->parsed()) return c.run();
  } catch (const wavg::Error& e) {
    return fail(2, e.what());
  } catch (const std::filesystem::filesystem_error& e) {
    // A file system refusal (permissions, a full disk) names the path.
    return fail(2, e.code().message() + ": " + e.path1().string());
  } catch (const std::bad_alloc&) {
    return fail(3, "out of memory");
  } catch (const std::exception& e) {
    // Not bad input (that is a wavg::Error): an internal error. Its first line only (LibTorch's
    // messages carry a backtrace).
    const std::string what = e.what();
    return fail(3, "internal: " + what.substr(0, what.find('\n')));
  }
  return 0;
}
