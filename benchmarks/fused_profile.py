#!/usr/bin/env python
"""Where a step of the numba backend spends its time: a per-sub-step profile of the fused kernel.

``python benchmarks/fused_profile.py [--hosts 1024] [--steps 300] [--scenario NAME]``

The numba kernel is one compiled function, so Python's profilers see it as a single call and a
sampling profiler sees one symbol. The kernel times itself instead: ``step_kernel`` reads the
CPU's cycle counter (``llvm.readcyclecounter``) after each of its sub-steps (the list
``balloon_gym.core.step.SUBSTEPS``, then the observation: ``kernels.PROFILE_SECTIONS``) when its
``ticks`` argument is not empty, and adds the cycles to that sub-step's slot (the normal call
passes an empty array, and the check costs nothing measurable). This script runs real rollouts
(a fresh state every step, random actions, the observation built every step) through
:func:`balloon_gym.core.fused.step_observe` with a ``ticks`` array, and converts cycles to
microseconds with the counter's rate, measured against ``time.perf_counter``. The parts outside
the kernel (drawing the step's random numbers, Python glue, allocations) are the rest of the
step's wall time; the random draws are also timed on their own. "Kernel call overhead" is the
kernel call's wall time seen from Python minus its sections: the dispatcher turning ~150 arrays
into native structs and back, and freeing the step's temporaries.

Counter reads cost ~10-40 cycles each and fence nothing, so sections are accurate to a few
microseconds per step; shares are what matters. The default batch is the throughput benchmark's
(``steady-overcommit-x2``, 1024 hosts x 8 guests). BLAS threads are pinned to 1 as there.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections.abc import Sequence
from types import ModuleType

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402

from balloon_gym import core  # noqa: E402
from balloon_gym.core import fused, workload  # noqa: E402
from balloon_gym.core.params import repeat_params  # noqa: E402
from balloon_gym.envs.batch import build_params  # noqa: E402
from balloon_gym.scenarios import load_scenario  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import scenario_8_guests  # noqa: E402


def counter_hz(module: ModuleType, seconds: float = 0.2) -> float:
    """Rate of the cycle counter, ticks per second of ``time.perf_counter``."""
    import numba

    cycles = module._cycles
    read = numba.njit(lambda: cycles())
    read()
    c0, t0 = read(), time.perf_counter()
    time.sleep(seconds)
    return (read() - c0) / (time.perf_counter() - t0)


def profile(hosts: int, steps: int, scenario: str) -> str:
    """Run the profile; returns the report."""
    fused.load_kernels()  # numba present, the package's kernels valid
    cfg = scenario_8_guests() if scenario == "steady-overcommit-x2" else load_scenario(scenario)
    params = repeat_params(build_params([cfg]), hosts)
    n, g = params.guest_mask.shape
    t0 = time.perf_counter()
    kernels = fused.load_kernels()
    module = importlib.import_module("balloon_gym.core.fused.kernels")
    names = list(module.PROFILE_SECTIONS)
    ticks = np.zeros(len(names) + 1, dtype=np.int64)
    call_s = [0.0]  # wall time of the kernel calls, seen from Python
    step_kernel = kernels.step_kernel

    def timed_kernel(*args: object) -> None:
        t = time.perf_counter()
        step_kernel(*args[:-1], ticks)  # the last argument: the (empty) ticks of a normal call
        call_s[0] += time.perf_counter() - t

    kernels.step_kernel = timed_kernel
    try:
        actions = np.random.default_rng(1).uniform(-1.0, 1.0, (8, n, 2 * g))
        rng = np.random.default_rng(0)
        state = core.reset(params, rng)
        for i in range(10):  # compiles (or loads) the kernel, then warms up
            state, *_ = fused.step_observe(state, actions[i % 8], params, rng)
        compile_s = time.perf_counter() - t0
        ticks[:] = 0
        call_s[0] = 0.0
        start = time.perf_counter()
        for i in range(steps):
            state, *_ = fused.step_observe(state, actions[i % 8], params, rng)
        wall = (time.perf_counter() - start) / steps
    finally:
        kernels.step_kernel = step_kernel
    hz = counter_hz(module)
    ticks = ticks[:-1]
    draws = _time_draws(n, g)
    sections = ticks / hz / steps
    call = call_s[0] / steps
    return _report(names, sections, call, wall, draws, hosts, g, cfg.name, steps, compile_s, hz)


def _time_draws(n: int, g: int, repeats: int = 200) -> float:
    """Seconds to draw one step's random numbers, as ``fused.step`` draws them (median)."""
    rng = np.random.default_rng(0)
    times = []
    for _ in range(9):
        t0 = time.perf_counter()
        for _ in range(repeats // 9 + 1):
            rng.random((workload.NUM_UNIFORMS + 1, n, g))
            rng.standard_normal((n, g))
        times.append((time.perf_counter() - t0) / (repeats // 9 + 1))
    return float(np.median(times))


def _report(
    names: Sequence[str],
    section_s: np.ndarray,
    call_s: float,
    wall_s: float,
    draws_s: float,
    hosts: int,
    guests: int,
    scenario: str,
    steps: int,
    compile_s: float,
    hz: float,
) -> str:
    kernel_s = float(section_s.sum())
    rows = [(name, s) for name, s in zip(names, section_s, strict=True)]
    rows += [
        ("kernel, all sections", kernel_s),
        ("kernel call overhead", call_s - kernel_s),
        ("random draws (timed alone)", draws_s),
        ("rest of fused.step_observe", wall_s - call_s - draws_s),
        ("fused.step_observe, wall", wall_s),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [
        f"numba kernel profile: {scenario}, {hosts} hosts x {guests} guests, {steps} steps "
        f"(kernel ready and warm in {compile_s:.1f} s; counter {hz / 1e9:.2f} GHz)",
        f"{'section':{width}s}  {'us/step':>8s}  {'share':>6s}  {'ns/guest':>8s}",
    ]
    for name, s in rows:
        share = f"{100 * s / wall_s:5.1f}%"
        per_guest = s / (hosts * guests) * 1e9
        lines.append(f"{name:{width}s}  {s * 1e6:8.1f}  {share:>6s}  {per_guest:8.1f}")
    lines.append(f"host-steps/s at this wall time: {hosts / wall_s:,.0f} (the core only, no env)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=1024, help="batch size (default 1024)")
    ap.add_argument("--steps", type=int, default=300, help="timed steps (default 300)")
    ap.add_argument(
        "--scenario",
        default="steady-overcommit-x2",
        help="shipped scenario, or steady-overcommit-x2 (the throughput benchmark's, default)",
    )
    args = ap.parse_args(argv)
    if args.hosts < 1 or args.steps < 1:
        ap.error("--hosts and --steps must be >= 1")
    try:
        print(profile(args.hosts, args.steps, args.scenario))
    except ImportError as err:
        print(f"fused_profile: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
