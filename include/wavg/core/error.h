// Errors of wavg, in two tiers (STYLE.md): bad input throws wavg::Error with a message that names the
// thing and the value; a broken internal invariant is WAVG_ASSERT, which aborts with file:line.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <string>

namespace wavg {

// Bad input: flags, configs, files, hyperparameters. `main` catches it, prints one line, exits 2.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  os.precision(17);
  (os << ... << args);
  return os.str();
}
}  // namespace detail

// Throws wavg::Error with the arguments streamed together: WAVG_CHECK(beta < 1, "ema: beta ", beta).
#define WAVG_CHECK(cond, ...) \
  do {                        \
    if (!(cond)) throw ::wavg::Error(::wavg::detail::concat(__VA_ARGS__)); \
  } while (0)

#define WAVG_ASSERT(cond)                                                              \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::fprintf(stderr, "%s:%d: internal error: assertion '%s' failed\n", __FILE__, \
                   __LINE__, #cond);                                                   \
      std::abort();                                                                    \
    }                                                                                  \
  } while (0)

}  // namespace wavg
