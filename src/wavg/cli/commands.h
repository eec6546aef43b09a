// Subcommands of the `wavg` tool. Each registers its flags on a CLI11 subcommand and returns the
// function that runs it once parsing succeeded.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
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
std::vector<Command> register_commands(CLI::App& app);
// The light binary forwards some subcommands to wavg-torch with the original arguments.
void set_forward_argv(int argc, char** argv);

}  // namespace wavg::cli
