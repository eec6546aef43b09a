// Errors of wavg, in two tiers (STYLE.md): bad input throws wavg::Error with a message that names the
// thing and the value; a broken internal invariant is WAVG_ASSERT, which aborts with file:line.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace wavg {

// Bad input: flags, configs, files, hyperparameters. `main` catches it, prints one line, exits 2.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Text from a file (a tensor name, a metadata value, a parser's excerpt), made safe to put in a
// one-line message: valid, printable UTF-8 is kept; control bytes (newlines included), DEL, C1
// controls, bidirectional-text controls, every byte of invalid UTF-8, and backslash itself are
// written as \xNN. At most `max_chars` characters are kept (an escape counts as its 4), then "..."
// marks the cut: quote_bytes("a\xff\n") == "a\\xff\\x0a".
std::string quote_bytes(std::string_view s, size_t max_chars = 64);

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
