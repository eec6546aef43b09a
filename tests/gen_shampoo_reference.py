#!/usr/bin/env python3
"""Writes tests/data/shampoo_reference.json: trajectories of Meta's Distributed Shampoo
(facebookresearch/optimizers, DistributedShampoo) on a small problem, which optim_breadth_test
compares wavg's Shampoo with (as LibTorch's optimizer tests compare with torch.optim through
committed values). `make test` needs neither torch 2.x nor this source; rerun this generator only
to move the pin.

Needs: torch >= 2.8 (the venv of `make build-libtorch2`, or any venv with a torch 2.x wheel) with
numpy, and the optimizers source at the pinned commit:
  git clone https://github.com/facebookresearch/optimizers /tmp/optimizers
  git -C /tmp/optimizers checkout f60660661194de26d3ee78bae6d15820ff8e583d
  ~/.cache/wavg/venv-libtorch2/bin/python tests/gen_shampoo_reference.py /tmp/optimizers
(its commit is checked: another is refused).

The option mapping (wavg -> DistributedShampoo), one parameter group:
  lr                      -> lr (set in the group before each step; DistributedShampoo keeps it in
                             an fp32 tensor, so the problem's learning rates are dyadic)
  betas (beta1, beta2)    -> betas=(beta1, beta2), beta3=-1 (= beta1): the first moment and the
                             factors' decay
  eps (AdamW grafting)    -> grafting_config=AdamPreconditionerConfig(beta2=beta2, epsilon=eps)
  shampoo_eps             -> epsilon, with RootInvShampooPreconditionerConfig(amortized_computation_
                             config=EigenConfig(rank_deficient_stability_config=PerturbationConfig(
                             perturb_before_computation=False))): eigenvalues shifted by
                             -min(lambda_min, 0), then + epsilon (the default, True, adds epsilon*I
                             before the eigendecomposition: the same for PSD factors up to rounding)
  weight_decay            -> weight_decay, weight_decay_type=WeightDecayType.DECOUPLED
  block_size              -> max_preconditioner_dim (target_parameter_dimensionality 1, the default)
  precondition_frequency  -> precondition_frequency
  start_step              -> start_preconditioning_step
  bias correction (always)-> use_bias_correction=True
  (factor dtype)          -> factor_matrix_dtype = inv_factor_matrix_dtype = torch.float64 (the
                             problem is in float64; wavg keeps factors in the parameter's dtype)
The problem: parameters of shapes SHAPES (a matrix cut into blocks, a 4-D tensor merged, a 1-D
vector, a [1, n] row, a small matrix merged to one dimension), element i (counted over all
parameters) starting at cos(0.1 i); at step t (0-based) its gradient is
  scale_t * sin(0.37 (t+1) (i+1)) + 0.3 theta_i,   scale_t = 3 on even t, 0.1 on odd t,
and the learning rate is 2^-7 (1 + t mod 3). Usage: gen_shampoo_reference.py OPTIMIZERS_SOURCE [OUT]"""
import json
import math
import os
import subprocess
import sys

PIN = "f60660661194de26d3ee78bae6d15820ff8e583d"
REPO = "facebookresearch/optimizers"
SHAPES = [(6, 5), (3, 2, 2, 2), (5,), (1, 7), (2, 2)]
STEPS = 30
# wavg's option -> DistributedShampoo's (written into the reference file too).
MAPPING = {
    "lr": "lr (fp32 tensor inside: dyadic learning rates)",
    "beta1, beta2": "betas=(beta1, beta2), beta3=-1.0 (= beta1)",
    "eps": "grafting_config=AdamPreconditionerConfig(beta2=beta2, epsilon=eps)",
    "shampoo_eps": "epsilon; RootInvShampooPreconditionerConfig(amortized_computation_config=EigenConfig("
                   "rank_deficient_stability_config=PerturbationConfig(perturb_before_computation=False)))",
    "weight_decay": "weight_decay, weight_decay_type=WeightDecayType.DECOUPLED",
    "block_size": "max_preconditioner_dim (SingleDeviceDistributedConfig: target_parameter_dimensionality=1)",
    "precondition_frequency": "precondition_frequency",
    "start_step": "start_preconditioning_step",
    "bias correction": "use_bias_correction=True",
    "factor dtype": "factor_matrix_dtype=inv_factor_matrix_dtype=torch.float64 (parameters in float64)",
}
# Each case: wavg's options (optim_breadth_test builds ShampooOptions from these keys).
CASES = {
    "blocked": dict(beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, block_size=4,
                    precondition_frequency=3, start_step=5, shampoo_eps=1e-6),
    "merged": dict(beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.05, block_size=1024,
                   precondition_frequency=4, start_step=4, shampoo_eps=1e-6),
}


def lr_at(t):
    return 2.0 ** -7 * (1 + t % 3)


def initial(torch):
    out, k = [], 0
    for s in SHAPES:
        n = math.prod(s)
        out.append(torch.tensor([math.cos(0.1 * (k + i)) for i in range(n)]).reshape(s))
        k += n
    return out


def set_gradients(torch, params, t):
    scale = 3.0 if t % 2 == 0 else 0.1
    k = 0
    for p in params:
        n = p.numel()
        g = torch.tensor([scale * math.sin(0.37 * (t + 1) * (k + i + 1)) for i in range(n)])
        p.grad = g.reshape(p.shape) + 0.3 * p.detach()
        k += n


def optimizer(torch, ds, params, c):
    from distributed_shampoo.preconditioner.matrix_functions_types import EigenConfig, PerturbationConfig
    root_inv = ds.RootInvShampooPreconditionerConfig(
        amortized_computation_config=EigenConfig(
            rank_deficient_stability_config=PerturbationConfig(perturb_before_computation=False)),
        factor_matrix_dtype=torch.float64, inv_factor_matrix_dtype=torch.float64)
    return ds.DistributedShampoo(
        params, lr=lr_at(0), betas=(c["beta1"], c["beta2"]), beta3=-1.0, epsilon=c["shampoo_eps"],
        weight_decay=c["weight_decay"], weight_decay_type=ds.WeightDecayType.DECOUPLED,
        max_preconditioner_dim=c["block_size"], precondition_frequency=c["precondition_frequency"],
        start_preconditioning_step=c["start_step"], use_bias_correction=True,
        grafting_config=ds.AdamPreconditionerConfig(beta2=c["beta2"], epsilon=c["eps"]),
        preconditioner_config=root_inv)


def trajectory(torch, ds, c):
    params = [p.requires_grad_(True) for p in initial(torch)]
    opt = optimizer(torch, ds, params, c)
    rows = []
    for t in range(STEPS):
        set_gradients(torch, params, t)
        for g in opt.param_groups:
            g["lr"] = lr_at(t)
        opt.step()
        rows.append([float(x) for p in params for x in p.detach().reshape(-1)])
    return rows


def dumps(doc):
    """JSON with one line per step of a trajectory (floats as Python's repr: they read back exactly)."""
    cases = []
    for name, c in doc["cases"].items():
        rows = ",\n".join("    " + json.dumps(r) for r in c["trajectory"])
        cases.append(f'  {json.dumps(name)}: {{"options": {json.dumps(c["options"])}, "trajectory": [\n{rows}]}}')
    head = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in doc.items() if k != "cases"]
    return "{\n" + ",\n".join(head) + ',\n "cases": {\n' + ",\n".join(cases) + "}\n}"


def main():
    source = os.path.abspath(sys.argv[1])
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                             "data", "shampoo_reference.json")
    head = subprocess.run(["git", "-C", source, "rev-parse", "HEAD"], capture_output=True, text=True)
    commit = head.stdout.strip() if head.returncode == 0 else open(os.path.join(source, ".commit")).read().strip()
    if commit != PIN:
        sys.exit(f"gen_shampoo_reference: {source} is at {commit}, the pin is {PIN}")
    sys.path.insert(0, source)
    import torch
    torch.set_default_dtype(torch.float64)  # DistributedShampoo's bias corrections are default-dtype tensors
    torch.set_num_threads(1)
    import distributed_shampoo as ds
    doc = {
        "generator": "tests/gen_shampoo_reference.py",
        "reference": f"{REPO} distributed_shampoo.DistributedShampoo at {PIN}",
        "torch": torch.__version__,
        "mapping": MAPPING,
        "shapes": [list(s) for s in SHAPES],
        "steps": STEPS,
        "cases": {name: {"options": c, "trajectory": trajectory(torch, ds, c)} for name, c in CASES.items()},
    }
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write(dumps(doc) + "\n")
    os.replace(tmp, out)
    print(f"gen_shampoo_reference: {out}: {len(CASES)} cases x {STEPS} steps, torch {torch.__version__}")


if __name__ == "__main__":
    main()
