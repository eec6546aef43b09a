#!/usr/bin/env python3
"""Independent references for optim_breadth_test, in float64 (Shampoo's is Distributed Shampoo's
own, committed by tests/gen_shampoo_reference.py to tests/data/shampoo_reference.json): prints one
line per step with every parameter element after that step (schedule_free: then every element of x,
its evaluation point).
  lookahead      Lookahead (Zhang et al. 2019, Alg. 1) around AdamW, both written here in numpy
  schedule_free  the `schedulefree` package's AdamWScheduleFree on python3-torch when it can be
                 imported (scripts/setup.sh installs it into .venv), else a numpy transcription
                 of its reference update (schedulefree/adamw_schedulefree_reference.py)
The problem: parameters of shapes (6, 5), (3, 2, 2, 2), (5,), (1, 7) with fixed initial values;
at step t (0-based) the gradient of element i (counted over all parameters) is
  scale_t·sin(0.37·(t+1)·(i+1)) + 0.3·θ_i,   scale_t = 3 on even t, 0.1 on odd t,
and the learning rate is lr_t = 0.01·(1 + t mod 3) (schedule_free: lr·(t+1)/4 for t < 4, then lr).
Usage: optim_breadth_reference.py MODE"""
import math
import sys

import numpy as np

SHAPES = [(6, 5), (3, 2, 2, 2), (5,), (1, 7)]


def initial():
    out, k = [], 0
    for s in SHAPES:
        n = int(np.prod(s))
        out.append(np.array([math.cos(0.1 * (k + i)) for i in range(n)]).reshape(s))
        k += n
    return out


def gradients(params, t):
    scale = 3.0 if t % 2 == 0 else 0.1
    out, k = [], 0
    for p in params:
        n = p.size
        g = np.array([scale * math.sin(0.37 * (t + 1) * (k + i + 1)) for i in range(n)])
        out.append(g.reshape(p.shape) + 0.3 * p)
        k += n
    return out


def lr_at(t):
    return 0.01 * (1 + t % 3)


def emit(params):
    print(" ".join(repr(float(x)) for p in params for x in p.reshape(-1)))


# ---- Lookahead around AdamW ----------------------------------------------------------------------
def lookahead(k=3, alpha=0.5, b1=0.9, b2=0.95, eps=1e-8, wd=0.1):
    params = initial()
    slow = [p.copy() for p in params]
    m = [np.zeros(p.shape) for p in params]
    v = [np.zeros(p.shape) for p in params]
    for t in range(20):
        step = t + 1
        grads = gradients(params, t)
        lr = lr_at(t)
        for j, g in enumerate(grads):  # AdamW (Loshchilov & Hutter; torch.optim.AdamW's form)
            params[j] = params[j] * (1 - lr * wd)
            m[j] = b1 * m[j] + (1 - b1) * g
            v[j] = b2 * v[j] + (1 - b2) * g * g
            denom = np.sqrt(v[j]) / math.sqrt(1 - b2 ** step) + eps
            params[j] = params[j] - lr / (1 - b1 ** step) * m[j] / denom
        if step % k == 0:
            for j in range(len(params)):
                slow[j] = slow[j] + alpha * (params[j] - slow[j])
                params[j] = slow[j].copy()
        emit(params)


# ---- Schedule-Free AdamW -------------------------------------------------------------------------
SF_LR, SF_WARMUP, SF_B1, SF_B2, SF_EPS, SF_WD, SF_STEPS = 0.05, 4, 0.9, 0.95, 1e-8, 0.1, 20


def schedule_free_package():
    import torch
    import schedulefree
    ys = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in initial()]
    opt = schedulefree.AdamWScheduleFree(ys, lr=SF_LR, betas=(SF_B1, SF_B2), eps=SF_EPS,
                                         weight_decay=SF_WD, warmup_steps=SF_WARMUP, foreach=False)
    opt.train()
    for t in range(SF_STEPS):
        grads = gradients([y.detach().numpy() for y in ys], t)
        for y, g in zip(ys, grads):
            y.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        y_now = [y.detach().numpy().copy() for y in ys]
        opt.eval()  # the parameters become x
        x_now = [y.detach().numpy().copy() for y in ys]
        opt.train()
        print(" ".join(repr(float(e)) for p in y_now + x_now for e in p.reshape(-1)))


def schedule_free_numpy():
    y = initial()
    z = [p.copy() for p in y]
    x = [p.copy() for p in y]
    v = [np.zeros(p.shape) for p in y]
    lr_max, weight_sum = -1.0, 0.0
    for k in range(SF_STEPS):
        grads = gradients(y, k)
        lr = SF_LR * ((k + 1) / SF_WARMUP if k < SF_WARMUP else 1.0)
        lr_max = max(lr, lr_max)
        weight = lr_max ** 2
        weight_sum += weight
        c = weight / weight_sum
        bc2 = 1 - SF_B2 ** (k + 1)
        for j, g in enumerate(grads):
            z[j] = z[j] - lr * SF_WD * y[j]
            v[j] = SF_B2 * v[j] + (1 - SF_B2) * g * g
            z[j] = z[j] - lr * g / (np.sqrt(v[j] / bc2) + SF_EPS)
            x[j] = (1 - c) * x[j] + c * z[j]
            y[j] = SF_B1 * x[j] + (1 - SF_B1) * z[j]
        emit(y + x)


def schedule_free():
    try:
        import schedulefree  # noqa: F401
    except ImportError:
        print("optim_breadth_reference: schedulefree not importable; numpy transcription",
              file=sys.stderr)
        return schedule_free_numpy()
    print("optim_breadth_reference: schedulefree package", file=sys.stderr)
    return schedule_free_package()


if __name__ == "__main__":
    {"lookahead": lookahead, "schedule_free": schedule_free,
     "schedule_free_numpy": schedule_free_numpy}[sys.argv[1]]()
