// Integer flags of every subcommand, parsed one way: CLI11 alone clamps an out-of-range integer to
// the type's limit (--last 99999999999999999999 became INT64_MAX), so each integer flag checks its
// text first and such a value is an error naming the flag and the value (exit 2).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

namespace wavg::cli {

// Refuses a decimal integer outside [INT64_MIN, INT64_MAX] ("... is out of the range of a 64-bit
// integer"; CLI11 prefixes the flag's name).
CLI::Validator int64_in_range();

// add_option(name, value, help) with int64_in_range() attached: the one way to add an integer flag.
CLI::Option* add_int64_option(CLI::App* app, const std::string& name, int64_t& value,
                              const std::string& help);

}  // namespace wavg::cli
