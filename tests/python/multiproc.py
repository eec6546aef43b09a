"""Launches the ranks of a 2-process test on 127.0.0.1 (gloo), as torchrun would (RANK, LOCAL_RANK,
WORLD_SIZE, MASTER_ADDR, MASTER_PORT in the environment), bounded in time: every rank is killed
when one outlives the deadline."""
import os
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LAUNCH_TIMEOUT_S = 120  # the 2-core test machine is shared; a healthy launch takes seconds


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(scenario, out, world=2, argv=None):
    """Runs `world` ranks of dist_worker.py (or of `argv`, given torchrun's environment); returns
    [(rc, stderr)] by rank, or [(rc, stdout + stderr)] with argv. Kills them all when one outlives
    the deadline."""
    port = free_port()
    procs = []
    for r in range(world):
        env = dict(os.environ, OMP_NUM_THREADS="1", RANK=str(r), LOCAL_RANK=str(r),
                   WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        cmd = argv or [sys.executable, os.path.join(HERE, "dist_worker.py"), scenario, str(r),
                       str(world), str(port), str(out)]
        procs.append(subprocess.Popen(cmd, cwd=str(out), env=env, text=True, stderr=subprocess.PIPE,
                                      stdout=subprocess.PIPE if argv else subprocess.DEVNULL))
    deadline = time.monotonic() + LAUNCH_TIMEOUT_S
    results = []
    try:
        for p in procs:
            out_text, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append((p.returncode, (out_text or "") + err))
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{scenario}: the ranks did not finish within {LAUNCH_TIMEOUT_S} s (a hang)")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return results
