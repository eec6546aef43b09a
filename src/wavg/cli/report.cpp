// `wavg report`: the HTML report of a run or study directory (no LibTorch needed).
#include <cstdio>
#include <memory>

#include "wavg/cli/commands.h"
#include "wavg/study/report.h"

namespace wavg::cli {

Command register_report(CLI::App& app) {
  auto dir = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  CLI::App* sub = app.add_subcommand(
      "report", "Write a self-contained HTML report of a run or study directory");
  sub->add_option("dir", *dir, "Run directory (or study directory)")->required();
  sub->add_option("-o,--output", *out, "Output HTML file (default: DIR/report.html)");
  return {sub, [dir, out] {
            const std::string path = out->empty() ? *dir + "/report.html" : *out;
            write_report(*dir, path);
            std::printf("wrote %s\n", path.c_str());
            return 0;
          }};
}

}  // namespace wavg::cli
