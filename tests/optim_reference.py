#!/usr/bin/env python3
"""Reference trajectory for optim_adamw_test: torch.optim.AdamW (decoupled weight decay scaled by the
learning rate), with torch.nn.utils.clip_grad_norm_ before each step, on fixed parameters and
gradients, in float64. Prints one line per step: every parameter element after that step.
Usage: optim_reference.py CLIP_NORM (0: no clipping)"""
import math
import sys

import torch

clip = float(sys.argv[1])
params = [torch.tensor([math.cos(0.1 * i) for i in range(12)], dtype=torch.float64).reshape(3, 4),
          torch.tensor([math.cos(0.1 * i + 2.0) for i in range(5)], dtype=torch.float64)]
for p in params:
    p.requires_grad_(True)
opt = torch.optim.AdamW(params, lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
offset = 0
for t in range(12):
    scale = 3.0 if t % 2 == 0 else 0.1  # large gradients are clipped, small ones not
    k = 0
    for p in params:
        g = torch.tensor([scale * math.sin(0.37 * (t + 1) * (k + i + 1)) for i in range(p.numel())],
                         dtype=torch.float64).reshape(p.shape)
        p.grad = g
        k += p.numel()
    for group in opt.param_groups:
        group["lr"] = 0.01 * (1 + t % 3)  # a schedule: the learning rate changes every step
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    print(" ".join(repr(float(x)) for p in params for x in p.detach().reshape(-1)))
