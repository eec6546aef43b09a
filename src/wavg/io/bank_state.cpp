// AveragerBank state <-> safetensors, including states of format 1 (LAWA rings of fp64 cumulative
// sums), whose rings are converted to rings of samples on load.
#include "wavg/io/bank_state.h"

#include <cstring>

#include "wavg/core/error.h"
#include "wavg/io/safetensors.h"

namespace wavg {

void save_bank_state(const std::string& path, AveragerBank& bank,
                     const std::map<std::string, std::string>& extra_metadata) {
  std::map<std::string, std::string> meta = extra_metadata;
  for (const auto& [k, v] : bank.state_meta()) meta[k] = v;
  std::vector<TensorOut> outs;
  for (const StateArray& a : bank.state_arrays())
    outs.push_back({a.name, a.dtype, {a.numel}, a.data});
  write_safetensors(path, outs, meta);
}

std::map<std::string, std::string> load_bank_state(const std::string& path, AveragerBank& bank) {
  SafetensorsFile file(path);
  const int format = bank.restore_meta(file.metadata());
  int ring = 0;
  for (const StateArray& a : bank.state_arrays()) {
    const TensorInfo* t = file.find(a.name);
    WAVG_CHECK(t != nullptr, path, ": bank state lacks tensor '", a.name, "'");
    const bool legacy_ring = format == 1 && a.name.rfind("ring.", 0) == 0;
    if (legacy_ring) {
      // Format 1: the ring held L_max + 1 fp64 cumulative sums per element, as many as today's
      // slots of samples.
      WAVG_CHECK(t->dtype == DType::kF64 && t->numel() == a.numel, path,
                 ": bank state tensor '", a.name, "' (format 1: fp64 cumulative sums) has the ",
                 "wrong dtype or size");
      std::vector<double> sums(size_t(a.numel));
      if (t->nbytes()) file.read_bytes(*t, 0, t->nbytes(), sums.data());
      bank.restore_ring_from_cumulative_sums(ring++, sums.data());
      continue;
    }
    WAVG_CHECK(t->dtype == a.dtype && t->numel() == a.numel, path, ": bank state tensor '", a.name,
               "' has the wrong dtype or size");
    std::memcpy(a.data, file.data(*t), t->nbytes());
  }
  return file.metadata();
}

}  // namespace wavg
