// Checked integer flags (int_flag.h).
#include "wavg/cli/int_flag.h"

#include <cerrno>
#include <cstdlib>

namespace wavg::cli {

CLI::Validator int64_in_range() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        errno = 0;
        char* end = nullptr;
        std::strtoll(s.c_str(), &end, 10);
        if (errno == ERANGE) return s + " is out of the range of a 64-bit integer";
        return "";
      },
      "INT64");
}

CLI::Option* add_int64_option(CLI::App* app, const std::string& name, int64_t& value,
                              const std::string& help) {
  return app->add_option(name, value, help)->check(int64_in_range());
}

}  // namespace wavg::cli
