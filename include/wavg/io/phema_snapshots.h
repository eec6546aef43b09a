// Post-hoc EMA after training (Karras et al. 2024, EDM2; DESIGN.md §9): the snapshots that a run's
// phema averagers wrote (RUN_DIR/phema/NAME/NAME-STEP-SIGMA.safetensors, step and σ_rel in the
// metadata), and the reconstruction of an EMA of any σ_rel at a snapshot step S as the
// least-squares combination of the snapshots at or before S (EDM2's reconstruct_phema).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace wavg {

struct PhemaSnapshot {
  std::string path;
  std::string averager;  // the phema averager that wrote it
  int64_t step = 0;
  double sigma_rel = 0;
};

// The snapshots under RUN_DIR/phema, sorted by (averager, step, σ_rel). A snapshot file without the
// metadata keys (step, wavg.phema.sigma_rel, wavg.phema.averager) is an error naming the file.
std::vector<PhemaSnapshot> list_phema_snapshots(const std::string& run_dir);

struct PhemaRequest {
  double sigma_rel = 0;
  std::optional<int64_t> step;  // a snapshot step; default the newest
  std::string averager;         // empty: the run's only phema averager
  bool overwrite = false;       // replace an existing output
};

struct PhemaReconstruction {
  std::string averager;
  int64_t step = 0;
  std::vector<PhemaSnapshot> inputs;  // the snapshots used (step <= S)
  std::vector<double> coefficients;   // one per input, Σ = 1
};

// Chooses the snapshots, solves the coefficients (phema_coefficients) and writes
// out = Σ c_i·snapshot_i atomically: floating tensors accumulated in fp64 and stored in their own
// dtype, tensor by tensor; other tensors copied from the newest snapshot. The snapshots must hold
// the same tensors (names, shapes, dtypes). The output's metadata records the σ_rel, the step and
// every input with its coefficient. Throws wavg::Error naming the problem.
PhemaReconstruction reconstruct_phema(const std::string& run_dir, const PhemaRequest& request,
                                      const std::string& out);

}  // namespace wavg
