// quote_bytes: untrusted text made printable for error messages (see error.h).
#include "wavg/core/error.h"

#include <cstdint>

namespace wavg {

namespace {

// Length of the valid UTF-8 sequence starting at s[i] (RFC 3629, §4: no overlong forms, no
// surrogates, nothing above U+10FFFF), or 0 if the bytes there are not one. Stores its code point.
size_t utf8_length(std::string_view s, size_t i, uint32_t* code) {
  const auto byte = [&](size_t k) { return k < s.size() ? static_cast<unsigned char>(s[k]) : 0u; };
  const unsigned b0 = byte(i);
  const auto cont = [&](size_t k, unsigned lo = 0x80, unsigned hi = 0xBF) {
    return byte(k) >= lo && byte(k) <= hi;
  };
  if (b0 < 0x80) {
    *code = b0;
    return 1;
  }
  if (b0 >= 0xC2 && b0 <= 0xDF && cont(i + 1)) {
    *code = (b0 & 0x1Fu) << 6 | (byte(i + 1) & 0x3Fu);
    return 2;
  }
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    const unsigned lo = b0 == 0xE0 ? 0xA0 : 0x80, hi = b0 == 0xED ? 0x9F : 0xBF;
    if (!cont(i + 1, lo, hi) || !cont(i + 2)) return 0;
    *code = (b0 & 0x0Fu) << 12 | (byte(i + 1) & 0x3Fu) << 6 | (byte(i + 2) & 0x3Fu);
    return 3;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    const unsigned lo = b0 == 0xF0 ? 0x90 : 0x80, hi = b0 == 0xF4 ? 0x8F : 0xBF;
    if (!cont(i + 1, lo, hi) || !cont(i + 2) || !cont(i + 3)) return 0;
    *code = (b0 & 0x07u) << 18 | (byte(i + 1) & 0x3Fu) << 12 | (byte(i + 2) & 0x3Fu) << 6 |
            (byte(i + 3) & 0x3Fu);
    return 4;
  }
  return 0;
}

// Code points that must not reach a terminal as they are: C0 and C1 controls, DEL, the line and
// paragraph separators, and the bidirectional-text controls (the "Trojan Source" characters).
bool unprintable(uint32_t c) {
  return c < 0x20 || (c >= 0x7F && c <= 0x9F) || c == 0x200E || c == 0x200F ||
         (c >= 0x2028 && c <= 0x202E) || (c >= 0x2066 && c <= 0x2069) || c == '\\';
}

}  // namespace

std::string quote_bytes(std::string_view s, size_t max_chars) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  size_t chars = 0;  // characters of `out` so far
  for (size_t i = 0; i < s.size();) {
    uint32_t code = 0;
    size_t len = utf8_length(s, i, &code);
    const bool escape = len == 0 || unprintable(code);
    if (escape) len = (len == 0 ? 1 : len);
    const size_t width = escape ? 4 * len : 1;
    if (chars + width > max_chars) return out + "...";
    for (size_t k = i; k < i + len; ++k) {
      if (!escape) {
        out += s[k];
        continue;
      }
      const auto b = static_cast<unsigned char>(s[k]);
      out += "\\x";
      out += kHex[b >> 4];
      out += kHex[b & 15];
    }
    chars += width;
    i += len;
  }
  return out;
}

}  // namespace wavg
