// Post-hoc EMA (Karras et al. 2024, "Analyzing and Improving the Training Dynamics of Diffusion
// Models", EDM2, §3 and App. C): power-function EMA profiles and the least-squares reconstruction of
// an EMA of any σ_rel from snapshots of a few tracked profiles (DESIGN.md §2 and §9).
//
// A power-function EMA with exponent γ weighs the parameters of step τ ≤ t by ∝ τ^γ: tracked online
// with β_t = (1 − ν/t)^(γ+1) (EDM2 Eq. 127, t_delta = ν steps between updates). σ_rel is the
// profile's standard deviation relative to its length t: σ_rel = ((γ+1) / ((γ+2)²(γ+3)))^½
// (Eq. 123). Written after EDM2's training/phema.py (exp_to_std, std_to_exp,
// power_function_correlation, solve_posthoc_coefficients); no code is shared.
#pragma once

#include <cstdint>
#include <vector>

namespace wavg {

// Largest σ_rel a power-function profile has (at γ = (√5 − 3)/2): about 0.3003.
double phema_max_sigma_rel();
// γ for σ_rel: the largest real root of γ³ + 7γ² + (16 − σ⁻²)γ + (12 − σ⁻²) (EDM2 Eq. 126,
// Algorithm 2). Throws wavg::Error naming the value unless 0 < σ_rel <= phema_max_sigma_rel().
double phema_gamma(double sigma_rel);
// σ_rel for γ > −1 (Eq. 123).
double phema_sigma_rel(double gamma);
// β of the update at step t (t ≥ 1) with ν steps between updates: (1 − ν/t)^(γ+1), 0 once t <= ν
// (the first updates copy the sample, as EDM2's β at t = t_delta).
double phema_beta(double gamma, int64_t step, int64_t every);

// One stored snapshot (or the requested output): the EMA of profile σ_rel at step t.
struct PhemaProfile {
  int64_t step = 0;   // t >= 1
  double sigma_rel = 0;
};

// Inner product of two power-function responses (EDM2 Eq. 151, Algorithm 3):
//   ((γa+1)(γb+1) (ta/tb)^(ta < tb ? γb : −γa)) / ((γa + γb + 1) · max(ta, tb)).
double phema_correlation(const PhemaProfile& a, const PhemaProfile& b);

// Coefficients c_i with Σ c_i·snapshot_i the least-squares fit of the output profile's response
// (EDM2's solve_posthoc_coefficients: solve A c = b with A_ij = corr(in_i, in_j), b_i =
// corr(in_i, out), then normalise to Σ c_i = 1). Throws wavg::Error when no input is given or the
// system is singular (two identical inputs).
std::vector<double> phema_coefficients(const std::vector<PhemaProfile>& inputs,
                                       const PhemaProfile& output);

}  // namespace wavg
