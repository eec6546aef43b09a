// AveragerBank state <-> safetensors, including states of format 1 (LAWA rings of fp64 cumulative
// sums), whose rings are converted to rings of samples on load. Everything a state holds is checked
// before the bank changes.
#include "wavg/io/bank_state.h"

#include <cstring>

#include "wavg/core/error.h"
#include "wavg/io/safetensors.h"

namespace wavg {

namespace {

// Format 1 rings held L_max + 1 fp64 cumulative sums per element, as many as today's slots.
bool legacy_ring(int format, const StateArray& a) {
  return format == 1 && a.name.rfind("ring.", 0) == 0;
}

// The file's counters (AveragerBank::check_state_meta) and every state array's presence, dtype and
// size; errors name the file. Returns the format.
int check_file(const SafetensorsFile& file, AveragerBank& bank) {
  const std::string& path = file.path();
  int format = 0;
  try {
    format = bank.check_state_meta(file.metadata());
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
  for (const StateArray& a : bank.state_arrays()) {
    const TensorInfo* t = file.find(a.name);
    WAVG_CHECK(t != nullptr, path, ": bank state lacks tensor '", a.name, "'");
    const DType want = legacy_ring(format, a) ? DType::kF64 : a.dtype;
    WAVG_CHECK(t->dtype == want && t->numel() == a.numel, path, ": bank state tensor '", a.name,
               "' is ", dtype_name(t->dtype), " of ", t->numel(), " elements, this bank's is ",
               dtype_name(want), " of ", a.numel, format == 1 ? " (format 1)" : "");
  }
  return format;
}

}  // namespace

void save_bank_state(const std::string& path, AveragerBank& bank,
                     const std::map<std::string, std::string>& extra_metadata) {
  std::map<std::string, std::string> meta = extra_metadata;
  for (const auto& [k, v] : bank.state_meta()) meta[k] = v;
  std::vector<TensorOut> outs;
  for (const StateArray& a : bank.state_arrays())
    outs.push_back({a.name, a.dtype, {a.numel}, a.data});
  write_safetensors(path, outs, meta);
}

void check_bank_state(const std::string& path, AveragerBank& bank) {
  check_file(SafetensorsFile(path), bank);
}

std::map<std::string, std::string> load_bank_state(const std::string& path, AveragerBank& bank) {
  SafetensorsFile file(path);
  check_file(file, bank);
  const int format = bank.restore_meta(file.metadata());
  int ring = 0;
  for (const StateArray& a : bank.state_arrays()) {
    const TensorInfo* t = file.find(a.name);
    if (legacy_ring(format, a)) {
      std::vector<double> sums(size_t(a.numel));
      if (t->nbytes()) file.read_bytes(*t, 0, t->nbytes(), sums.data());
      bank.restore_ring_from_cumulative_sums(ring++, sums.data());
      continue;
    }
    if (t->nbytes()) std::memcpy(a.data, file.data(*t), t->nbytes());
  }
  return file.metadata();
}

}  // namespace wavg
