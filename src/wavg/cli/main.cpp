// The `wavg` command: subcommands share one error policy — bad input prints one line
// "wavg: error: ..." to stderr and exits 2.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "wavg/cli/commands.h"
#include "wavg/core/error.h"

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
    std::fprintf(stderr, "wavg: error: %s (see 'wavg --help')\n", e.what());
    return 2;
  }
  try {
    for (auto& c : commands)
      if (c.app->parsed()) return c.run();
  } catch (const wavg::Error& e) {
    std::fprintf(stderr, "wavg: error: %s\n", e.what());
    return 2;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "wavg: error: out of memory\n");
    return 3;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "wavg: error: %s\n", e.what());
    return 3;
  }
  return 0;
}
