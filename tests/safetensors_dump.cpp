// Test tool: reads one safetensors file with wavg's reader (every dtype accepted) and prints what it
// found as one JSON line, {"ok": true, "tensors": [{name, dtype, shape, data (hex)}], "metadata": {}}
// or {"ok": false, "error": message}; exit status 0 either way. safetensors_reference_test.py runs it
// beside the reference implementation on the same bytes.
#include <cstdio>
#include <exception>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "wavg/core/error.h"
#include "wavg/io/safetensors.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: safetensors_dump FILE\n");
    return 2;
  }
  nlohmann::json out;
  try {
    const wavg::SafetensorsFile f(argv[1], /*all_dtypes=*/true);
    out["ok"] = true;
    out["tensors"] = nlohmann::json::array();
    for (const wavg::TensorInfo& t : f.tensors()) {
      std::vector<unsigned char> bytes(t.nbytes());
      if (!bytes.empty()) f.read_bytes(t, 0, bytes.size(), bytes.data());
      std::string hex;
      for (unsigned char b : bytes) hex += "0123456789abcdef"[b >> 4], hex += "0123456789abcdef"[b & 15];
      out["tensors"].push_back(
          {{"name", t.name}, {"dtype", wavg::dtype_name(t.dtype)}, {"shape", t.shape}, {"data", hex}});
    }
    out["metadata"] = f.metadata();
  } catch (const wavg::Error& e) {
    out = {{"ok", false}, {"error", e.what()}};
  }
  std::printf("%s\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  return 0;
}
