// Subcommands of the `wavg` tool. Each registers its flags on a CLI11 subcommand and returns the
// function that runs it once parsing succeeded.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace wavg::cli {

struct Command {
  CLI::App* app;
  std::function<int()> run;
};

Command register_average(CLI::App& app);
Command register_train(CLI::App& app);
Command register_sweep(CLI::App& app);
Command register_eval(CLI::App& app);
Command register_report(CLI::App& app);
Command register_study(CLI::App& app);
Command register_phema(CLI::App& app);
Command register_soup(CLI::App& app);
std::vector<Command> register_commands(CLI::App& app);
// `wavg phema --eval`: reconstructs the EMA of each σ_rel at one snapshot step and evaluates it on the
// run's workload (validation split). It needs LibTorch: wavg-torch runs it (phema_eval.cpp); the
// light wavg hands the whole command to wavg-torch (forward.cpp).
struct PhemaEval {
  std::string run_dir, averager, out;  // out: also keep the (single) reconstruction
  std::vector<double> sigma_rels;
  std::optional<int64_t> step;
  bool overwrite = false, force = false;
};
int run_phema_eval(const PhemaEval& e);
// The light binary forwards some subcommands to wavg-torch with the original arguments.
void set_forward_argv(int argc, char** argv);

}  // namespace wavg::cli
