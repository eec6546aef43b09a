#!/usr/bin/env python3
"""The same training step as wavg's fmnist_cnn and text_lm (same model, batch, AlgoPerf NAdamW,
threads and BLAS) in Debian's python3-torch. Usage: torch_step.py THREADS ROUNDS STEPS. Prints
"NAME MS_PER_STEP" per workload (median of rounds, after one warm-up round)."""
import math
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else os.cpu_count() or 1)
torch.manual_seed(0)


class NAdamW(torch.optim.Optimizer):
    """AlgoPerf's pytorch_nadamw_full_budget.py, single-tensor form."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            b1, b2 = g["betas"]
            for p in g["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["step"] = 0
                    st["m"] = torch.zeros_like(p)
                    st["v"] = torch.zeros_like(p)
                st["step"] += 1
                t, m, v, grad = st["step"], st["m"], st["v"], p.grad
                p.mul_(1 - g["lr"] * g["weight_decay"])
                m.lerp_(grad, 1 - b1)
                v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
                mbar = m.mul(b1).add_(grad, alpha=1 - b1)
                denom = (v.sqrt() / math.sqrt(1 - b2**t)).add_(g["eps"])
                p.addcdiv_(mbar, denom, value=-g["lr"] / (1 - b1**t))


class Cnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.fc1 = nn.Linear(32 * 7 * 7, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


D, H, L, HID, T = 128, 4, 2, 344, 64


def rms_norm(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w


def rope(x, cos, sin):
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1 = nn.Parameter(torch.ones(D))
        self.norm2 = nn.Parameter(torch.ones(D))
        self.qkv = nn.Linear(D, 3 * D, bias=False)
        self.proj = nn.Linear(D, D, bias=False)
        self.gate = nn.Linear(D, 2 * HID, bias=False)
        self.down = nn.Linear(HID, D, bias=False)

    def forward(self, x, cos, sin, mask):
        B, Tn, _ = x.shape
        q, k, v = self.qkv(rms_norm(x, self.norm1)).view(B, Tn, 3, H, D // H).permute(2, 0, 3, 1, 4)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(D // H) + mask, -1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(B, Tn, D))
        a, b = self.gate(rms_norm(x, self.norm2)).chunk(2, -1)
        return x + self.down(F.silu(a) * b)


class Gpt(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(256, D)
        self.blocks = nn.ModuleList([Block() for _ in range(L)])
        self.norm = nn.Parameter(torch.ones(D))
        self.head = nn.Linear(D, 256, bias=False)
        inv = torch.pow(10000.0, -torch.arange(0, D // H, 2).float() / (D // H))
        ang = torch.outer(torch.arange(T).float(), inv)
        self.cos, self.sin = ang.cos(), ang.sin()
        self.mask = torch.full((T, T), float("-inf")).triu(1)

    def forward(self, idx):
        x = self.embed(idx)
        for b in self.blocks:
            x = b(x, self.cos, self.sin, self.mask)
        return self.head(rms_norm(x, self.norm))


ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
STEPS = int(sys.argv[3]) if len(sys.argv) > 3 else 20


def time_steps(model, batch, loss_fn, steps=STEPS, rounds=ROUNDS):
    opt = NAdamW(model.parameters(), lr=1e-3)
    times = []
    for r in range(rounds + 1):
        t0 = time.perf_counter()
        for _ in range(steps):
            x, y = batch()
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
        if r:
            times.append((time.perf_counter() - t0) / steps * 1e3)
    return sorted(times)[len(times) // 2]


cnn_ms = time_steps(Cnn(), lambda: (torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))),
                    F.cross_entropy)
lm_ms = time_steps(Gpt(), lambda: (torch.randint(0, 256, (32, T)), torch.randint(0, 256, (32, T))),
                   lambda logits, y: F.cross_entropy(logits.reshape(-1, 256), y.reshape(-1)))
print(f"fmnist_cnn {cnn_ms:.2f} text_lm {lm_ms:.2f}")
