// Post-hoc EMA snapshots of a run directory and their least-squares reconstruction (EDM2).
#include "wavg/io/phema_snapshots.h"

#include <algorithm>
#include <filesystem>
#include <memory>
#include <tuple>

#include "wavg/core/error.h"
#include "wavg/core/format.h"
#include "wavg/core/phema.h"
#include "wavg/io/atomic_file.h"
#include "wavg/io/safetensors.h"

namespace wavg {

namespace {

namespace fs = std::filesystem;

std::string meta_at(const SafetensorsFile& f, const char* key) {
  auto it = f.metadata().find(key);
  WAVG_CHECK(it != f.metadata().end(), f.path(), ": not a phema snapshot (no '", key,
             "' in its metadata)");
  return it->second;
}

PhemaSnapshot read_snapshot(const std::string& path) {
  SafetensorsFile f(path);
  PhemaSnapshot s;
  s.path = path;
  s.averager = meta_at(f, "wavg.phema.averager");
  const std::string step = meta_at(f, "step"), sigma = meta_at(f, "wavg.phema.sigma_rel");
  try {
    size_t pos = 0;
    s.step = std::stoll(step, &pos);
    WAVG_CHECK(pos == step.size(), "");
    s.sigma_rel = std::stod(sigma, &pos);
    WAVG_CHECK(pos == sigma.size(), "");
  } catch (const std::exception&) {
    throw Error(path + ": phema snapshot with a bad step '" + quote_bytes(step) +
                "' or sigma_rel '" + quote_bytes(sigma) + "'");
  }
  return s;
}

// The snapshots of `averager` (or of the only phema averager) at or before `step` (default: the
// newest), which must be a snapshot step.
std::vector<PhemaSnapshot> choose(const std::vector<PhemaSnapshot>& all, const std::string& run_dir,
                                  const PhemaRequest& r, std::string* averager, int64_t* step) {
  std::vector<std::string> names;
  for (const PhemaSnapshot& s : all)
    if (std::find(names.begin(), names.end(), s.averager) == names.end())
      names.push_back(s.averager);
  WAVG_CHECK(!names.empty(), "phema: ", run_dir, " holds no phema snapshot (train with a [[phema]] ",
             "averager)");
  std::string known;
  for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
  if (r.averager.empty()) {
    WAVG_CHECK(names.size() == 1, "phema: ", run_dir, " has several phema averagers (", known,
               "): choose one with --averager");
    *averager = names[0];
  } else {
    WAVG_CHECK(std::find(names.begin(), names.end(), r.averager) != names.end(),
               "phema: no snapshots of averager '", quote_bytes(r.averager), "' (known: ", known,
               ")");
    *averager = r.averager;
  }
  std::vector<PhemaSnapshot> mine;
  for (const PhemaSnapshot& s : all)
    if (s.averager == *averager && s.step > 0) mine.push_back(s);
  WAVG_CHECK(!mine.empty(), "phema: averager '", *averager, "' has no snapshot after step 0");
  *step = r.step ? *r.step : mine.back().step;
  const bool saved = std::any_of(mine.begin(), mine.end(),
                                 [&](const PhemaSnapshot& s) { return s.step == *step; });
  WAVG_CHECK(saved, "phema: --step ", *step, " is not a snapshot step of '", *averager,
             "' (snapshots from step ", mine.front().step, " to ", mine.back().step, ")");
  std::vector<PhemaSnapshot> used;
  for (const PhemaSnapshot& s : mine)
    if (s.step <= *step) used.push_back(s);
  return used;
}

// Σ c_i x_i of one floating tensor over the inputs, in fp64, stored as the tensor's dtype.
void combine(const std::vector<std::unique_ptr<SafetensorsFile>>& files,
             const std::vector<double>& c, const std::string& name, const ByteWriter& write) {
  const TensorInfo& t0 = *files.back()->find(name);
  const int64_t n = t0.numel();
  std::vector<double> acc(size_t(n), 0.0);
  std::vector<unsigned char> buf(t0.nbytes());
  dispatch_floating(t0.dtype, [&](auto tag) {
    using T = decltype(tag);
    for (size_t i = 0; i < files.size(); ++i) {
      if (n) files[i]->read_bytes(*files[i]->find(name), 0, buf.size(), buf.data());
      const T* x = reinterpret_cast<const T*>(buf.data());
      for (int64_t k = 0; k < n; ++k) acc[size_t(k)] += c[i] * load_f64(x[k]);
    }
    T* y = reinterpret_cast<T*>(buf.data());
    for (int64_t k = 0; k < n; ++k) y[k] = store_as<T>(acc[size_t(k)]);
  });
  write(buf.data(), buf.size());
}

}  // namespace

std::vector<PhemaSnapshot> list_phema_snapshots(const std::string& run_dir) {
  std::vector<PhemaSnapshot> out;
  const fs::path root = fs::path(run_dir) / "phema";
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return out;
  for (const auto& dir : fs::directory_iterator(root)) {
    if (!dir.is_directory()) continue;
    for (const auto& f : fs::directory_iterator(dir.path())) {
      const std::string name = f.path().filename().string();
      if (!f.is_regular_file() || name.size() < 12 ||
          name.compare(name.size() - 12, 12, ".safetensors") != 0 ||
          parse_temporary_name(name))
        continue;
      out.push_back(read_snapshot(f.path().string()));
    }
  }
  std::sort(out.begin(), out.end(), [](const PhemaSnapshot& a, const PhemaSnapshot& b) {
    return std::tie(a.averager, a.step, a.sigma_rel) < std::tie(b.averager, b.step, b.sigma_rel);
  });
  return out;
}

PhemaReconstruction reconstruct_phema(const std::string& run_dir, const PhemaRequest& request,
                                      const std::string& out) {
  phema_gamma(request.sigma_rel);  // validates σ_rel, naming it
  WAVG_CHECK(request.overwrite || !file_exists(out), "phema: output ", out,
             " exists (use --overwrite to replace it)");
  PhemaReconstruction r;
  r.inputs = choose(list_phema_snapshots(run_dir), run_dir, request, &r.averager, &r.step);
  std::vector<PhemaProfile> profiles;
  for (const PhemaSnapshot& s : r.inputs) {
    std::error_code ec;
    WAVG_CHECK(!fs::equivalent(s.path, out, ec), "phema: output ", out, " is one of the inputs");
    profiles.push_back({s.step, s.sigma_rel});
  }
  r.coefficients = phema_coefficients(profiles, {r.step, request.sigma_rel});
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  for (const PhemaSnapshot& s : r.inputs) files.push_back(std::make_unique<SafetensorsFile>(s.path));
  const SafetensorsFile& newest = *files.back();
  std::vector<TensorOut> tensors;
  for (const TensorInfo& t : newest.tensors()) tensors.push_back({t.name, t.dtype, t.shape, nullptr});
  for (const auto& f : files) {
    WAVG_CHECK(f->tensors().size() == tensors.size(), f->path(), ": has ", f->tensors().size(),
               " tensors, ", newest.path(), " has ", tensors.size());
    for (const TensorOut& t : tensors) {
      const TensorInfo* u = f->find(t.name);
      WAVG_CHECK(u && u->dtype == t.dtype && u->shape == t.shape, f->path(), ": tensor '", t.name,
                 "' is missing or differs in dtype or shape from ", newest.path());
    }
  }
  std::map<std::string, std::string> meta = {
      {"wavg.phema.averager", r.averager},
      {"wavg.phema.sigma_rel", format_exact(request.sigma_rel)},
      {"step", std::to_string(r.step)}};
  std::string inputs = "[";
  for (size_t i = 0; i < r.inputs.size(); ++i)
    inputs += std::string(i ? ", " : "") + "{\"step\": " + std::to_string(r.inputs[i].step) +
              ", \"sigma_rel\": " + format_exact(r.inputs[i].sigma_rel) +
              ", \"coefficient\": " + format_exact(r.coefficients[i]) + "}";
  meta["wavg.phema.inputs"] = inputs + "]";
  write_safetensors_streamed(out, tensors, meta, [&](size_t i, const ByteWriter& write) {
    const TensorInfo& t = newest.tensors()[i];
    if (is_floating(t.dtype)) return combine(files, r.coefficients, t.name, write);
    std::vector<unsigned char> bytes(t.nbytes());
    if (!bytes.empty()) newest.read_bytes(t, 0, bytes.size(), bytes.data());
    write(bytes.data(), bytes.size());
  });
  return r;
}

}  // namespace wavg
