"""Side-by-side speed of the simulator core in two checkouts: host-steps/s at 1024 x 8.

Times ``core.step`` + ``core.observe`` (numpy) and ``fused.step_observe`` (numba) of each tree in
its own subprocess, alternating the trees round by round so that both see the same machine
load; prints the medians and the ratio new / old. Use it to check a change against the commit
before it::

    git worktree add /tmp/old <commit>
    python benchmarks/ab_core.py /tmp/old .            # old tree, new tree
    python benchmarks/ab_core.py /tmp/old . --rounds 3 --steps 200 --backends numba

Each tree must be importable with the current interpreter's packages (numpy, numba).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

_CHILD = r"""
import os, sys, time
import numpy as np
root = os.environ["AB_TREE"]
sys.path.insert(0, root)
sys.path.insert(0, os.path.join(root, "benchmarks"))
import balloon_gym
assert balloon_gym.__file__.startswith(root), balloon_gym.__file__
from balloon_gym import core
from balloon_gym.core.params import repeat_params
from balloon_gym.envs.batch import build_params
from throughput import scenario_8_guests
backend, steps, hosts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
params = repeat_params(build_params([scenario_8_guests()]), hosts)
n, g = params.guest_mask.shape
acts = np.random.default_rng(1).uniform(-1, 1, (8, n, 2 * g))
rng = np.random.default_rng(0)
state = core.reset(params, rng)
if backend == "numba":
    from balloon_gym.core import fused
def run(k):
    global state
    for i in range(k):
        if backend == "numba":
            state, *_ = fused.step_observe(state, acts[i % 8], params, rng)
        else:
            state, _ = core.step(state, acts[i % 8], params, rng)
            core.observe(state, params)
run(5)
t = time.perf_counter()
run(steps)
print(n * steps / (time.perf_counter() - t))
"""


def _measure(tree: Path, backend: str, steps: int, hosts: int) -> float:
    env = {**os.environ, "AB_TREE": str(tree.resolve())}
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, backend, str(steps), str(hosts)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Print host-steps/s of each tree and backend, medians over rounds, and new / old."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path, help="checkout of the baseline")
    ap.add_argument("new", type=Path, help="checkout of the change")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    ap.add_argument("--steps", type=int, default=200, help="timed steps per round (default 200)")
    ap.add_argument("--hosts", type=int, default=1024, help="hosts of 8 guests (default 1024)")
    ap.add_argument("--backends", default="numba,numpy", help="comma-separated")
    args = ap.parse_args(argv)
    for backend in args.backends.split(","):
        runs: dict[str, list[float]] = {"old": [], "new": []}
        for _ in range(args.rounds):
            for name in ("old", "new"):
                tree = getattr(args, name)
                runs[name].append(_measure(tree, backend, args.steps, args.hosts))
        old, new = statistics.median(runs["old"]), statistics.median(runs["new"])
        print(
            f"{backend:6} {args.hosts} x 8: old {old:,.0f} host-steps/s, new {new:,.0f} "
            f"host-steps/s, new / old {new / old:.2f} (rounds: old "
            f"{', '.join(f'{x:,.0f}' for x in runs['old'])}; new "
            f"{', '.join(f'{x:,.0f}' for x in runs['new'])})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
