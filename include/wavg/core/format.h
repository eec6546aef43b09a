// The one number formatter of wavg's tables, progress lines, reports and messages.
#pragma once

#include <string>

namespace wavg {

// printf's %.<digits>g: format_number(0.08743, 3) == "0.0874"; "nan", "inf", "-inf" as printf.
std::string format_number(double v, int significant_digits = 4);
// printf's %.<decimals>f: format_fixed(85.71, 1) == "85.7".
std::string format_fixed(double v, int decimals);
// Shortest text that reads back as the same double ("%.17g" when needed): 0.1 -> "0.1".
std::string format_exact(double v);
// A duration for people: "42s", "3m07s", "2h05m".
std::string format_duration(double seconds);

}  // namespace wavg
