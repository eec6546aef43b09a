// The light `wavg` binary links only core/ and io/ (so `wavg average` starts in milliseconds and
// never maps LibTorch's ~170 MB); subcommands that train or evaluate models are forwarded, with
// their arguments untouched, to `wavg-torch` next to it.
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "wavg/cli/commands.h"
#include "wavg/core/error.h"

namespace wavg::cli {

namespace {

std::string self_dir() {
  std::vector<char> buf(4096);
  const ssize_t n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  WAVG_CHECK(n > 0, "cannot locate the wavg executable (", std::strerror(errno), ")");
  std::string path(buf.data(), size_t(n));
  return path.substr(0, path.find_last_of('/'));
}

int g_argc = 0;
char** g_argv = nullptr;

// Replaces this process by wavg-torch with the original arguments.
[[noreturn]] void exec_wavg_torch() {
  const std::string exe = self_dir() + "/wavg-torch";
  std::vector<char*> args(g_argv, g_argv + g_argc);
  args[0] = const_cast<char*>(exe.c_str());
  args.push_back(nullptr);
  ::execv(exe.c_str(), args.data());
  throw Error("cannot run " + exe + " (" + std::strerror(errno) + ")");
}

Command forwarded(CLI::App& app, const char* name, const char* description) {
  CLI::App* sub = app.add_subcommand(name, description);
  sub->prefix_command();  // everything after the name goes to wavg-torch as it is
  sub->set_help_flag();   // so does --help
  return {sub, []() -> int { exec_wavg_torch(); }};
}

}  // namespace

// `wavg phema --eval` evaluates models: wavg-torch runs the whole command.
int run_phema_eval(const PhemaEval&) { exec_wavg_torch(); }

void set_forward_argv(int argc, char** argv) {
  g_argc = argc;
  g_argv = argv;
}

std::vector<Command> register_commands(CLI::App& app) {
  return {register_average(app),
          forwarded(app, "train", "Train a workload with a bank of averagers"),
          forwarded(app, "sweep",
                    "Replay a run's checkpoints through a grid of averagers and evaluate each"),
          forwarded(app, "eval", "Evaluate a safetensors checkpoint of a workload"),
          forwarded(app, "study",
                    "Run the AlgoPerf-style study (resumable) and write results.json and report.html"),
          forwarded(app, "soup",
                    "Model soup (uniform or greedy) of a workload's checkpoints, evaluated on its "
                    "validation split"),
          register_report(app), register_phema(app)};
}

}  // namespace wavg::cli
