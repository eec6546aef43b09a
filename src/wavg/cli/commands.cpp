// The list of subcommands.
#include "wavg/cli/commands.h"

namespace wavg::cli {

void set_forward_argv(int, char**) {}

std::vector<Command> register_commands(CLI::App& app) {
  return {register_average(app), register_train(app), register_sweep(app), register_eval(app),
          register_report(app), register_study(app), register_phema(app), register_soup(app)};
}

}  // namespace wavg::cli
