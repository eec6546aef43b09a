// Constructors of the built-in workloads (one file each), used by make_workload().
#pragma once

#include "wavg/workloads/workload.h"

namespace wavg {

std::unique_ptr<Workload> make_fmnist_cnn(const WorkloadOptions& o);
std::unique_ptr<Workload> make_text_lm(const WorkloadOptions& o);
std::unique_ptr<Workload> make_synth_ctr(const WorkloadOptions& o);
std::unique_ptr<Workload> make_graph_mol(const WorkloadOptions& o);
std::unique_ptr<Workload> make_mri_recon(const WorkloadOptions& o);

// Their memory estimates (defaults.h), next to the shapes they are derived from.
WorkloadFootprint fmnist_cnn_footprint();
WorkloadFootprint text_lm_footprint();
WorkloadFootprint synth_ctr_footprint();
WorkloadFootprint graph_mol_footprint();
WorkloadFootprint mri_recon_footprint();

}  // namespace wavg
