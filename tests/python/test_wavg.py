"""The Python package (issue 23) against independent references: torch.optim.swa_utils
(AveragedModel, update_bn), a Python deque for LAWA, the fp64 EMA recurrence, and `wavg average`
run over per-step checkpoints of the same run. Run by CTest (python_test) after `pip install .`.
"""
import collections
import copy
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import wavg

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))  # tests/wavg_testlib.py: the shared safetensors I/O
import wavg_testlib  # noqa: E402

T = 24  # training steps per run


def make_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
                               torch.nn.Linear(16, 4))


def batches(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 8, generator=g), torch.randn(16, 4, generator=g)) for _ in range(n)]


def train(model, avg, steps, first=1, data=None, hook=None):
    """SGD steps first..steps (observing each), after observing step first-1 if first == 1."""
    data = data or batches(steps + 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    if first == 1 and avg is not None:
        avg.observe(0)
    if hook:
        hook(0)
    for step in range(first, steps + 1):
        x, y = data[step]
        model.train()
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        if avg is not None:
            avg.observe(step)
        if hook:
            hook(step)
    return opt


def floating_state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}


def ulp32(x):
    """The spacing of fp32 at |x| (elementwise), as fp64."""
    a = x.abs().float()
    return (torch.nextafter(a, torch.full_like(a, float("inf"))) - a).double()


def assert_within_ulps(got, ref, k, what):
    """|got - ref| <= k ulp of fp32 at |got|, elementwise (ref in fp64)."""
    err = (got.double() - ref.double()).abs()
    bound = k * ulp32(got)
    worst = (err / bound.clamp_min(1e-300)).max().item()
    assert bool((err <= bound).all()), f"{what}: off by {worst:.2f} x {k} ulp"


# -- §3: SWA, LAWA, EMA against independent references ---------------------------------------------

def test_swa_equals_averaged_model_with_buffers():
    model = make_model()
    # The reference: AveragedModel(use_buffers=True) over an fp64 shadow of the model, fed the
    # same fp32 weights each step (its running mean in fp64: 1 ulp of fp32 apart at most).
    shadow = copy.deepcopy(model).double()
    ref = torch.optim.swa_utils.AveragedModel(shadow, use_buffers=True)

    def feed(step):
        with torch.no_grad():
            for (n, s), v in zip(shadow.state_dict().items(), model.state_dict().values()):
                s.copy_(v)
        ref.update_parameters(shadow)

    avg = wavg.ModelAverager(model, [wavg.Swa()], buffers="average")
    train(model, avg, T, hook=feed)
    got = avg.average("swa_nu1")
    want = {k: v for k, v in ref.module.state_dict().items()}
    checked = 0
    for name, value in floating_state(model).items():
        assert_within_ulps(got[name], want[name], 1, f"swa {name}")
        checked += 1
    assert checked == 8  # 2 Linear x (weight, bias), BatchNorm weight, bias, running mean, var


def test_lawa_equals_python_deque_of_last_samples():
    model = make_model()
    window, every, start = 5, 2, 3
    ring = collections.deque(maxlen=window)

    def sample(step):
        if step >= start and step % every == 0:
            ring.append(floating_state(model))

    avg = wavg.ModelAverager(model, [wavg.Lawa(window=window, every=every, start=start)],
                             buffers="average")
    train(model, avg, T, hook=sample)
    assert avg.names == [f"lawa_L{window}_nu{every}_s{start}"]
    got = avg.average(avg.names[0])
    assert len(ring) == window and avg.samples(avg.names[0]) == len(range(4, T + 1, 2))
    for name in ring[0]:
        ref = sum(s[name].double() for s in ring) / window
        assert_within_ulps(got[name], ref, 1, f"lawa {name}")


@pytest.mark.parametrize("beta", [0.5, 0.9])
def test_ema_within_its_bound_of_the_fp64_recurrence(beta):
    # wavg's EMA state is fp32: e <- fl(fl(b e) + fl(a x)) with b, a = 1 - b rounded to fp32. Per
    # step that is three roundings (<= 0.5 ulp each of values <= s = max_t |x_t|) plus b's and a's
    # own rounding (<= 0.5 ulp(s) each): <= 2.5 ulp(s), damped by b every step after, so the error
    # stays below 2.5 ulp(s) / (1 - b). The test uses k = 3.
    model = make_model()
    ref, scale = {}, {}

    def recur(step):
        for name, x in floating_state(model).items():
            x = x.double()
            ref[name] = x if name not in ref else beta * ref[name] + (1 - beta) * x
            scale[name] = torch.maximum(scale.get(name, x.abs()), x.abs())

    avg = wavg.ModelAverager(model, [wavg.Ema(beta=beta)], buffers="average")
    train(model, avg, T, hook=recur)
    got = avg.average(avg.names[0])
    for name in ref:
        err = (got[name].double() - ref[name]).abs()
        bound = 3 * ulp32(scale[name]) / (1 - beta)
        assert bool((err <= bound).all()), f"ema {name}: {(err / bound).max().item():.2f} x bound"


def test_post_hoc_ema_profiles_follow_edm2_power_function_emas():
    # EDM2 (Karras et al. 2024, training/phema.py): gamma is the largest real root of
    # x^3 + 7x^2 + (16 - t)x + (12 - t) with t = sigma_rel^-2, and the profile after sample t
    # (t = 1, 2, ...; here the step, nu = 1) is e <- b_t e + (1 - b_t) x with b_t = (1 - 1/t)^(gamma+1)
    # (b_0 = b_1 = 0). In fp64 here; wavg's profiles are fp32 as its EMA: the same bound, with the
    # largest b_t of the run.
    sigma_rels = (0.05, 0.1)
    gammas = [max(np.roots([1, 7, 16 - s ** -2, 12 - s ** -2]).real) for s in sigma_rels]
    model = make_model()
    ref, scale = [{}, {}], {}

    def recur(step):
        for p, g in enumerate(gammas):
            b = 0.0 if step <= 1 else (1 - 1 / step) ** (g + 1)
            for name, x in floating_state(model).items():
                x = x.double()
                ref[p][name] = x if name not in ref[p] else b * ref[p][name] + (1 - b) * x
                if p == 0:
                    scale[name] = torch.maximum(scale.get(name, x.abs()), x.abs())

    avg = wavg.ModelAverager(model, [wavg.Phema(sigma_rels=sigma_rels)], buffers="average")
    train(model, avg, T, hook=recur)
    for p, g in enumerate(gammas):
        got = avg.average(avg.names[0], profile=p)
        b_max = (1 - 1 / T) ** (g + 1)
        for name in ref[p]:
            err = (got[name].double() - ref[p][name]).abs()
            bound = 3 * ulp32(scale[name]) / (1 - b_max)
            assert bool((err <= bound).all()), f"profile {p} {name}"
    with pytest.raises(wavg.Error):
        avg.average(avg.names[0], profile=2)


def test_horizons_and_half_life():
    # LAWA: horizon = ν·L/T, so L = round(horizon · T / ν); EMA: half-life h steps, β = 0.5^(ν/h).
    lawa = wavg.Lawa(horizon=0.25, total_steps=T, every=2)
    avg = wavg.ModelAverager(make_model(), [lawa, wavg.Ema(half_life=3.0)])
    assert avg.names[0] == f"lawa_L{round(0.25 * T / 2)}_nu2"
    beta = 0.5 ** (1 / 3.0)
    assert abs(float(avg.names[1].split("_b")[1].split("_nu")[0]) - beta) < 1e-9
    with pytest.raises(wavg.Error, match="horizon"):
        wavg.ModelAverager(make_model(), [wavg.Lawa(horizon=0.25)])


# -- §3: the online bank equals `wavg average` over per-step checkpoints ---------------------------

def cli():
    exe = os.environ.get("WAVG_CLI")
    if not exe:
        pytest.skip("WAVG_CLI is not set (CTest's python_test sets it to the build's wavg)")
    return exe


def test_online_bank_equals_wavg_average_over_checkpoints(tmp_path):
    exe = cli()
    model = make_model()
    paths = []

    def checkpoint(step):
        p = tmp_path / f"step{step:03d}.safetensors"
        wavg_testlib.write_safetensors(str(p), {k: v.numpy() for k, v in
                                                floating_state(model).items()})
        paths.append(str(p))

    avg = wavg.ModelAverager(model, [wavg.Lawa(window=6), wavg.Ema(beta=0.8), wavg.Swa()],
                             buffers="average")
    train(model, avg, T, hook=checkpoint)
    for name, flags, k in [("lawa_L6_nu1", ["--last", "6"], 1),
                           ("ema_b0.8_nu1", ["--ema", "0.8"], 3 / (1 - 0.8)),
                           ("swa_nu1", ["--swa"], 1)]:
        out = tmp_path / f"{name}.safetensors"
        r = subprocess.run([exe, "average", *flags, "-o", str(out), *paths], capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
        offline, _ = wavg_testlib.read_safetensors(str(out))
        online = avg.average(name)
        for t, v in offline.items():
            # Both in fp64 from the same fp32 samples; LAWA/SWA differ by the order of the sum
            # and the division (1 ulp), EMA by wavg's fp32 state (the bound above, at the scale
            # of the weights: max |x| over the run).
            scale = torch.stack([torch.from_numpy(wavg_testlib.read_safetensors(p)[0][t].copy())
                                 .abs() for p in paths]).amax(0)
            err = (online[t].double() - torch.from_numpy(v.copy()).double()).abs()
            bound = k * ulp32(scale) if name.startswith("ema") else k * ulp32(online[t])
            assert bool((err <= bound).all()), f"{name} {t}"


def test_average_checkpoints_function_equals_numpy_mean(tmp_path):
    rng = np.random.default_rng(3)
    files = []
    for i in range(4):
        p = str(tmp_path / f"c{i}.safetensors")
        wavg_testlib.write_safetensors(p, {"w": rng.standard_normal((3, 5)).astype(np.float32),
                                           "n": np.array([i], np.int64)})
        files.append(p)
    out = str(tmp_path / "avg.safetensors")
    report = wavg.average_checkpoints(files, out, wavg.Lawa(window=3))
    assert report["files_read"] == 3
    got, _ = wavg_testlib.read_safetensors(out)
    ref = np.mean([wavg_testlib.read_safetensors(p)[0]["w"].astype(np.float64)
                   for p in files[1:]], axis=0)
    assert np.all(np.abs(got["w"] - ref) <= np.spacing(np.abs(got["w"])))
    assert got["n"][0] == 3  # non-floating: copied from the newest
    with pytest.raises(ValueError, match="exists"):
        wavg.average_checkpoints(files, out, wavg.Lawa(window=3))


# -- §3: swaps, state, staging ------------------------------------------------------------------

def test_swap_restores_bit_exactly_also_when_the_body_raises():
    model = make_model()
    avg = wavg.ModelAverager(model, [wavg.Ema(beta=0.9), wavg.Lawa(window=4)], buffers="average")
    opt = train(model, avg, T)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ptrs = [p.data_ptr() for p in model.parameters()]
    lawa = avg.average("lawa_L4_nu1")
    with avg.swap("lawa_L4_nu1") as m:
        assert m is model
        for k, v in model.state_dict().items():
            assert torch.equal(v, lawa[k]), k  # the model holds the average
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    with pytest.raises(RuntimeError, match="inside"):
        with avg.swap("ema_b0.9_nu1"):
            raise RuntimeError("inside the swap")
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    # The user's own Parameters keep their storage, and the optimizer still trains them.
    assert [p.data_ptr() for p in model.parameters()] == ptrs
    assert all(p is q for p, q in zip(opt.param_groups[0]["params"], model.parameters()))


def test_misuse_is_an_exception_never_a_crash(tmp_path):
    model = make_model()
    avg = wavg.ModelAverager(model, [wavg.Swa(), wavg.Ema(beta=0.5)])
    with pytest.raises(ValueError, match="is empty"):
        avg.average("swa_nu1")
    train(model, avg, 4)
    with avg.swap("swa_nu1"):
        with pytest.raises(wavg.Error, match="averager 'swa_nu1' is swapped into the model and "
                                              "swaps do not nest"):
            with avg.swap("ema_b0.5_nu1"):
                pass
        with pytest.raises(wavg.Error, match=r"observe\(step 5\): averager 'swa_nu1' is swapped"):
            avg.observe(5)
        with pytest.raises(wavg.Error, match=r"save\(averager 'ema_b0.5_nu1'\)"):
            avg.save("ema_b0.5_nu1", str(tmp_path / "never.safetensors"))
        # A second ModelAverager on the same model is refused too (issue 21 §1.3).
        other = wavg.ModelAverager(model, [wavg.Ema(beta=0.5)])
        with pytest.raises(wavg.Error, match="of another ModelAverager is swapped"):
            other.observe(0)
    assert not (tmp_path / "never.safetensors").exists()
    with pytest.raises(wavg.Error, match=r"unknown averager 'nope' \(known: swa_nu1, ema_b0.5_nu1\)"):
        avg.swap("nope").__enter__()
    with pytest.raises(wavg.Error, match="steps must increase"):
        avg.observe(2)
    with pytest.raises(wavg.Error, match="ema: beta must be in"):
        wavg.Ema(beta=1.5)._spec("copy")
    with pytest.raises(wavg.Error, match="unknown buffer policy"):
        wavg.ModelAverager(model, [wavg.Swa()], buffers="mean")
    with pytest.raises(wavg.Error, match="not an averager"):
        wavg.ModelAverager(model, ["swa"])
    with pytest.raises(wavg.Error, match="recompute needs a function"):
        with wavg.ModelAverager(model, [wavg.Swa(buffers="recompute")]).swap("swa_nu1"):
            pass
    with torch.no_grad():  # a parameter that changed shape
        model[0].weight.data = torch.zeros(32, 8)
    with pytest.raises(wavg.Error, match="tensor '0.weight' has 256 elements, 128 when"):
        avg.observe(5)
    with pytest.raises(wavg.Error, match="has 256 elements"):
        with avg.swap("swa_nu1"):
            pass


def test_state_dict_round_trips_bit_identically_over_a_split_run(tmp_path):
    specs = [wavg.Lawa(window=5), wavg.Lawa(window=3, every=2), wavg.Ema(beta=0.9), wavg.Swa(start=4),
             wavg.LawaExp(window=4, alpha=0.3), wavg.Phema(sigma_rels=(0.05, 0.1))]
    data = batches(T + 1)
    whole = make_model()
    a = wavg.ModelAverager(whole, specs, buffers="average")
    train(whole, a, T, data=data)

    half = make_model()
    b = wavg.ModelAverager(half, specs, buffers="average")
    opt = train(half, b, T // 2, data=data)
    torch.save({"model": half.state_dict(), "opt": opt.state_dict(), "avg": b.state_dict()},
               tmp_path / "resume.pt")
    resumed = make_model(seed=99)  # other weights: the resume must bring everything back
    c = wavg.ModelAverager(resumed, specs, buffers="average")
    saved = torch.load(tmp_path / "resume.pt")
    resumed.load_state_dict(saved["model"])
    c.load_state_dict(saved["avg"])
    opt2 = torch.optim.SGD(resumed.parameters(), lr=0.05, momentum=0.9)
    opt2.load_state_dict(saved["opt"])
    for step in range(T // 2 + 1, T + 1):
        x, y = data[step]
        resumed.train()
        opt2.zero_grad()
        torch.nn.functional.mse_loss(resumed(x), y).backward()
        opt2.step()
        c.observe(step)
    for name in a.names:
        for profile in range(2 if name.startswith("phema") else 1):
            wa, wc = a.average(name, profile), c.average(name, profile)
            for k in wa:
                assert torch.equal(wa[k], wc[k]), f"{name}/{profile} {k}"
    sa, sc = a.state_dict(), c.state_dict()
    assert sa["meta"] == sc["meta"]
    assert all(torch.equal(sa["arrays"][k], sc["arrays"][k]) for k in sa["arrays"])
    # A state of other averagers is refused and leaves the bank as it was.
    d = wavg.ModelAverager(make_model(), [wavg.Ema(beta=0.5)])
    with pytest.raises(wavg.Error, match="bank state"):
        d.load_state_dict(sa)
    with pytest.raises(wavg.Error, match="not a wavg.ModelAverager state_dict"):
        d.load_state_dict({"meta": {}})


def test_observe_stages_one_copy_for_the_whole_bank():
    model = make_model()
    bank = [wavg.Lawa(window=L, every=2) for L in range(2, 12)] + \
           [wavg.Ema(beta=0.5 + 0.04 * i, every=2) for i in range(10)]
    avg = wavg.ModelAverager(model, bank, buffers="average")
    train(model, avg, T)
    numel = sum(v.numel() for v in floating_state(model).values())
    observed = len(range(0, T + 1, 2))  # every = 2: the odd steps stage nothing
    assert avg.staged_samples == observed
    assert avg.staged_bytes == observed * numel * 4


def test_async_equals_sync_bit_exactly():
    specs = [wavg.Lawa(window=4), wavg.Ema(beta=0.7), wavg.Swa()]
    data = batches(T + 1)
    m1, m2 = make_model(), make_model()
    sync = wavg.ModelAverager(m1, specs, asynchronous=False)
    asyn = wavg.ModelAverager(m2, specs, asynchronous=True)
    assert asyn.asynchronous and not sync.asynchronous
    train(m1, sync, T, data=data)
    train(m2, asyn, T, data=data)
    asyn.wait()
    for name in sync.names:
        s, a = sync.average(name), asyn.average(name)
        assert all(torch.equal(s[k], a[k]) for k in s), name


def test_recompute_calls_back_into_python_like_update_bn():
    model = make_model()
    loader = [x for x, _ in batches(6, seed=5)]
    calls = []

    def recompute(m):
        calls.append(1)
        torch.optim.swa_utils.update_bn(loader, m)

    avg = wavg.ModelAverager(model, [wavg.Lawa(window=4)], buffers="recompute", recompute=recompute)
    train(model, avg, T)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # The reference: a copy of the model holding the LAWA parameters, update_bn over the loader.
    ref = copy.deepcopy(model)
    lawa = avg.average("lawa_L4_nu1")  # (calls recompute once)
    with torch.no_grad():
        for n, p in ref.named_parameters():
            p.copy_(lawa[n])
    torch.optim.swa_utils.update_bn(loader, ref)
    with avg.swap("lawa_L4_nu1"):
        got = {k: v.clone() for k, v in model.state_dict().items()}
    for k, v in ref.state_dict().items():
        assert torch.equal(got[k], v), k
    assert len(calls) == 2
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # buffers restored too


def test_save_writes_the_average_with_state_dict_names(tmp_path):
    model = make_model()
    avg = wavg.ModelAverager(model, [wavg.Ema(beta=0.9), wavg.Phema()], buffers="average")
    train(model, avg, 8)
    avg.save("ema_b0.9_nu1", str(tmp_path / "ema.safetensors"), metadata={"run": "test"})
    got, meta = wavg_testlib.read_safetensors(str(tmp_path / "ema.safetensors"))
    want = avg.average("ema_b0.9_nu1")
    assert set(got) == set(model.state_dict())  # the state_dict names
    for k, v in want.items():
        assert np.array_equal(got[k], v.numpy()), k
    assert meta["run"] == "test" and meta["wavg.samples"] == "9"
    p0, p1 = avg.average(avg.names[1], 0), avg.average(avg.names[1], 1)
    assert not torch.equal(p0["0.weight"], p1["0.weight"])  # two post-hoc EMA profiles
    with pytest.raises(wavg.Error):
        avg.average(avg.names[1], 2)


def test_public_api_is_documented():
    for obj in [wavg.ModelAverager, wavg.ModelAverager.swap, wavg.ModelAverager.observe,
                wavg.ModelAverager.state_dict, wavg.Lawa, wavg.Ema, wavg.average_checkpoints]:
        assert obj.__doc__ and len(obj.__doc__) > 40, obj
    assert wavg.ModelAverager.observe.__annotations__["step"] in (int, "int")
    assert wavg.ModelAverager.average.__annotations__["return"] == "Dict[str, torch.Tensor]"
    assert issubclass(wavg.Error, ValueError)
    wavg.set_threads(1)
    assert wavg.threads() == 1
    wavg.set_threads(0)  # the default: min(2, cores)
    assert wavg.threads() == min(max(os.cpu_count() or 1, 1), 2)


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="no CUDA device here (Debian's torch is CPU-only): the GPU path "
                           "(pinned side-stream staging) runs where one exists")
def test_bank_on_a_cuda_model():
    model = make_model().cuda()
    avg = wavg.ModelAverager(model, [wavg.Lawa(window=3), wavg.Ema(beta=0.9)])
    ring = collections.deque(maxlen=3)
    avg.observe(0)
    ring.append({k: v.cpu() for k, v in floating_state(model).items() if "running" not in k})
    for step in range(1, 6):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01 * step)
        avg.observe(step)
        ring.append({k: v.cpu() for k, v in floating_state(model).items() if "running" not in k})
    got = avg.average("lawa_L3_nu1")
    for k in ring[0]:
        assert_within_ulps(got[k].cpu(), sum(s[k].double() for s in ring) / 3, 1, k)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with avg.swap("ema_b0.9_nu1"):
        pass
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_example_runs(tmp_path):
    example = os.path.join(HERE, "..", "..", "examples", "python", "train_with_averaging.py")
    r = subprocess.run([sys.executable, example, "--steps", "120", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "lawa" in r.stdout and (tmp_path / "ema.safetensors").exists()
