// The report's figures: gnuplot scripts with inline data blocks, rendered to SVG by running
// gnuplot (svg terminal, output on its stdout) in a temporary directory that std::filesystem
// removes. Failures say what failed: gnuplot missing, a figure without data, or gnuplot's own first
// error line.
#pragma once

#include <string>
#include <vector>

namespace wavg::report {

// One row of a data block: numbers in full precision (NaN as gnuplot's NaN, which it skips) and an
// optional text label as the last column (plotted `with labels`).
struct DataRow {
  std::vector<double> values;
  std::string label;  // empty: no label column
};

// The one writer of gnuplot's inline data: "$name << EOD\n" + rows + "EOD\n".
std::string data_block(const std::string& name, const std::vector<DataRow>& rows);
std::string data_block(const std::string& name, const std::vector<std::vector<double>>& rows);

// Renders `script` (data blocks, settings and plot commands; no terminal or output lines) to an
// SVG string. `figure` names the figure in errors. Throws wavg::Error if gnuplot is not installed,
// if a data block of the script is empty ("no data"), or if gnuplot fails (its first error line).
std::string gnuplot_svg(const std::string& figure, const std::string& script, int width = 760,
                        int height = 420);

// A text label of a plot in gnuplot's single quotes ('' escapes a quote).
std::string gnuplot_quote(const std::string& text);

}  // namespace wavg::report
