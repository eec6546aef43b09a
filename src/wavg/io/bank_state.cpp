// AveragerBank state <-> safetensors.
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
  bank.restore_meta(file.metadata());
  for (const StateArray& a : bank.state_arrays()) {
    const TensorInfo* t = file.find(a.name);
    WAVG_CHECK(t != nullptr, path, ": bank state lacks tensor '", a.name, "'");
    WAVG_CHECK(t->dtype == a.dtype && t->numel() == a.numel, path, ": bank state tensor '", a.name,
               "' has the wrong dtype or size");
    std::memcpy(a.data, file.data(*t), t->nbytes());
  }
  return file.metadata();
}

}  // namespace wavg
