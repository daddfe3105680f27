#!/usr/bin/env python
"""Throughput benchmark of balloon-gym (GitHub issue 4): how fast the simulator steps hosts.

One command, ``python benchmarks/throughput.py [--quick] [--out DIR]``, measures in one run:

1. host-steps per second of the native ``BalloonVectorEnv`` at several batch sizes (8 guests per
   host; and 32 guests with the ``large`` scenario), random valid actions from a pre-generated
   pool, autoreset included, the observation built every step;
2. the same for ``gymnasium.vector.SyncVectorEnv`` over ``BalloonEnv``, interleaved with the
   native env repeat by repeat, and the ratio native / sync;
3. the time of each named sub-step of the core (``balloon_gym.core.step.SUBSTEPS``) at
   1024 hosts x 8 guests, by wrapping the module functions ``step.py`` calls (restored after);
4. bytes of state and params per host, and peak memory at the largest batch (in a subprocess);
5. the machine's copy bandwidth and the memory-bandwidth floor of a step;

and the single env's (``BalloonEnv.step``) microseconds per step. Items 1 and the single env are
also measured with ``backend="numba"`` (the fused kernels, ``balloon_gym.core.fused``), in
blocks alternating with the numpy ones, and reported side by side with the ratio numba / numpy;
without numba installed those rows are skipped with a note. It prints aligned tables with
PASS/MISS against the targets of issue 4 and writes ``throughput.csv`` and ``throughput.png`` to
the output directory. A benchmark reports; it never fails on a missed target.

The 8-guest scenario is ``steady-overcommit-x2``, built in code: the shipped
``steady-overcommit`` host doubled (memory, reserve, pCPUs) with every guest kind twice, so the
8 guests are 8 real guests, not 4 guests and 4 padding slots.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# Pin BLAS/OpenMP thread pools to one thread BEFORE numpy is imported (the pools read these at
# load time): the simulator is single-threaded numpy, and a pool spinning up threads on a shared
# 2-core machine only adds noise. The machine may also set OPENBLAS_CORETYPE (which kernel set
# OpenBLAS uses); we leave that alone and only print it.
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_NUMPY_WAS_LOADED = "numpy" in sys.modules
for _var in _THREAD_VARS:
    os.environ[_var] = "1"

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

from balloon_gym import core  # noqa: E402
from balloon_gym.config import ScenarioConfig, parse_scenario  # noqa: E402
from balloon_gym.core import fused  # noqa: E402  (imports numba only when asked to run)
from balloon_gym.envs.batch import build_params  # noqa: E402
from balloon_gym.envs.single import BalloonEnv  # noqa: E402
from balloon_gym.envs.vector import BalloonVectorEnv  # noqa: E402
from balloon_gym.scenarios import load_scenario  # noqa: E402

CSV_NAME = "throughput.csv"
PNG_NAME = "throughput.png"
CSV_COLUMNS = (
    "section",
    "name",
    "hosts",
    "guests",
    "value",
    "unit",
    "spread_pct",
    "target",
    "status",
)

#: Targets of issue 4, all at 1024 hosts x 8 guests (single env: one host).
TARGET_HOSTS = 1024
TARGET_HOST_STEPS_PER_S = 1_000_000.0
TARGET_SPEEDUP_VS_SYNC = 100.0
TARGET_SINGLE_US = 200.0
TARGET_NUMBA_SPEEDUP = 3.0  # issue 4: a fused backend is welcome where it is >= 3x faster

#: (sub-step of ``SUBSTEPS``, module attribute of ``balloon_gym.core.step``, function) for every
#: module-level function ``step.py`` calls. Several functions can make up one sub-step.
SUBSTEP_FUNCTIONS: tuple[tuple[str, str, str], ...] = (
    ("workload", "workload", "advance"),
    ("targets", "balloon", "targets"),
    ("availability", "balloon", "availability"),
    ("host_reclaim", "host", "reclaim"),
    ("host_reclaim", "host", "blocked_guests"),
    ("balloon", "balloon", "move"),
    ("guest", "guest", "machine_demand"),
    ("guest", "host", "machine_budget"),
    ("guest", "guest", "update"),
    ("vcpus", "balloon", "vcpu_reservation"),
    ("cpu", "cpu", "schedule"),
    ("perf", "perf", "throughput"),
    ("perf", "perf", "sla_misses"),
    ("sampling", "host", "sample_active"),
    ("reward", "reward", "compute"),
)


@dataclass(frozen=True)
class Plan:
    """How much to measure: the full run or the ``--quick`` smoke run."""

    quick: bool
    native_hosts: tuple[int, ...]  # 8-guest native sizes
    sync_hosts: tuple[int, ...]  # sizes measured side by side with SyncVectorEnv
    large_hosts: int  # hosts of the 32-guest ``large`` row
    memory_hosts: int  # batch of the peak-memory probe
    episode_steps: int  # max_episode_steps: autoreset happens during timing
    repeats: int  # timed repeats per native size (median reported)
    block_s: float  # aimed length of one native timed repeat, s
    sync_block_s: float  # aimed length of one sync timed repeat, s
    warmup_steps: int
    breakdown_steps: int
    single_episodes: int  # single env: one timed repeat per episode
    bandwidth_mib: int
    bandwidth_repeats: int


FULL = Plan(
    quick=False,
    native_hosts=(1, 64, 1024, 16384),
    sync_hosts=(1, 64, 1024),
    large_hosts=1024,
    memory_hosts=16384,
    episode_steps=50,
    repeats=9,
    block_s=0.4,
    sync_block_s=1.0,
    warmup_steps=10,
    breakdown_steps=300,
    single_episodes=40,
    bandwidth_mib=256,
    bandwidth_repeats=9,
)

QUICK = Plan(
    quick=True,
    native_hosts=(1, 64, 1024),
    sync_hosts=(1, 64, 1024),
    large_hosts=256,
    memory_hosts=1024,
    episode_steps=10,
    repeats=3,
    block_s=0.05,
    sync_block_s=0.2,
    warmup_steps=3,
    breakdown_steps=30,
    single_episodes=5,
    bandwidth_mib=64,
    bandwidth_repeats=3,
)


@dataclass
class Row:
    """One figure of the report (one CSV line)."""

    section: str
    name: str
    hosts: int
    guests: int
    value: float
    unit: str
    spread_pct: float = float("nan")
    target: str = ""
    status: str = ""


@dataclass
class Timing:
    """Repeated measurements of one configuration: host-steps/s of every repeat."""

    hosts: int
    guests: int
    rates: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Median host-steps per second."""
        return statistics.median(self.rates)

    @property
    def us_per_step(self) -> float:
        """Median microseconds per batch step (the median rate's step)."""
        return self.hosts / self.rate * 1e6

    @property
    def spread_pct(self) -> float:
        """(max - min) / median of the repeats, percent: how noisy the machine was."""
        return (max(self.rates) - min(self.rates)) / self.rate * 100.0


# --------------------------------------------------------------------------------------------
# scenarios and actions


def scenario_8_guests() -> ScenarioConfig:
    """``steady-overcommit-x2``: ``steady-overcommit`` with host and every guest kind doubled."""
    data = load_scenario("steady-overcommit").model_dump(mode="python")
    data["name"] = "steady-overcommit-x2"
    data["description"] = "steady-overcommit doubled: 8 real guests (benchmark scenario)."
    for key in ("mem_mib", "reserved_mib", "pcpus"):
        data["host"][key] *= 2
    for guest in data["guests"]:
        guest["count"] *= 2
    cfg = parse_scenario(data, source="benchmarks/throughput.py")
    assert cfg.num_guests == 8, cfg.num_guests
    return cfg


def action_pool(rng: np.random.Generator, shape: tuple[int, ...], size: int) -> list[np.ndarray]:
    """``size`` random valid action batches (uniform in [-1, 1], float32), made before timing."""
    return [rng.uniform(-1.0, 1.0, shape).astype(np.float32) for _ in range(size)]


def run_steps(env: Any, pool: Sequence[np.ndarray], steps: int, start: int = 0) -> float:
    """Step ``env`` ``steps`` times with actions from ``pool``; wall time in seconds."""
    k = len(pool)
    t0 = time.perf_counter()
    for i in range(start, start + steps):
        env.step(pool[i % k])
    return time.perf_counter() - t0


def steps_for(seconds_per_step: float, block_s: float, period: int) -> int:
    """Steps in a timed repeat: about ``block_s`` long, a whole number of autoreset periods."""
    periods = max(1, round(block_s / (seconds_per_step * period)))
    return periods * period


# --------------------------------------------------------------------------------------------
# 1 + 2: native and SyncVectorEnv


def native_env(
    cfg: ScenarioConfig, hosts: int, plan: Plan, backend: str = "numpy"
) -> BalloonVectorEnv:
    """A reset native vector env of ``hosts`` hosts of ``cfg`` on ``backend``."""
    env = BalloonVectorEnv(
        hosts, cfg, max_guests=cfg.num_guests, max_episode_steps=plan.episode_steps, backend=backend
    )
    env.reset(seed=0)
    return env


def sync_env(cfg: ScenarioConfig, hosts: int, plan: Plan) -> gym.vector.SyncVectorEnv:
    """A reset ``SyncVectorEnv`` of ``hosts`` single envs of ``cfg``."""
    env = gym.vector.SyncVectorEnv(
        [lambda: BalloonEnv(cfg, max_episode_steps=plan.episode_steps)] * hosts
    )
    env.reset(seed=0)
    return env


def warm_up(env: Any, pool: Sequence[np.ndarray], steps: int) -> float:
    """Run ``steps`` untimed-for-the-report steps; returns seconds per step (a calibration)."""
    run_steps(env, pool, 1)
    return run_steps(env, pool, max(1, steps - 1)) / max(1, steps - 1)


def numba_status() -> str | None:
    """None if the numba backend can run here, else why not (printed as a note)."""
    try:
        fused.load_kernels()
    except ImportError as err:
        return f"{err}; numba rows skipped"
    return None


@dataclass
class Measured:
    """One configuration: native numpy, and side by side SyncVectorEnv and the numba backend."""

    native: Timing
    sync: Timing | None = None
    sync_ratios: list[float] = field(default_factory=list)  # per repeat, native / sync
    numba: Timing | None = None
    numba_ratios: list[float] = field(default_factory=list)  # per repeat, numba / native
    numba_first_s: float = float("nan")  # first numba step: compile, or load from the cache


def measure_native(
    cfg: ScenarioConfig,
    hosts: int,
    plan: Plan,
    seed: int,
    with_sync: bool = False,
    with_numba: bool = False,
) -> Measured:
    """Host-steps/s of ``BalloonVectorEnv``: median over ``plan.repeats`` timed repeats.

    Each repeat times one native (numpy) block, then one numba-backend block and one
    ``SyncVectorEnv`` block if asked, so that machine load hits all of them alike; the ratios
    are per repeat. Every native block is a whole number of autoreset periods
    (``episode_steps + 1`` in Gymnasium's NEXT_STEP mode), so each holds the same share of
    reset steps.
    """
    native = native_env(cfg, hosts, plan)
    pool = action_pool(np.random.default_rng(seed), native.action_space.shape, 8)
    period = plan.episode_steps + 1
    blocks: list[tuple[Any, int, Timing]] = []
    out = Measured(Timing(hosts, cfg.num_guests))
    steps = steps_for(warm_up(native, pool, plan.warmup_steps), plan.block_s, period)
    blocks.append((native, steps, out.native))
    if with_numba:
        t0 = time.perf_counter()
        fast = native_env(cfg, hosts, plan, backend="numba")  # reset: observe kernel
        run_steps(fast, pool, 1)  # step kernel
        out.numba_first_s = time.perf_counter() - t0
        steps = steps_for(warm_up(fast, pool, plan.warmup_steps), plan.block_s, period)
        out.numba = Timing(hosts, cfg.num_guests)
        blocks.append((fast, steps, out.numba))
    if with_sync:
        sync = sync_env(cfg, hosts, plan)
        steps = max(1, round(plan.sync_block_s / warm_up(sync, pool, min(plan.warmup_steps, 3))))
        out.sync = Timing(hosts, cfg.num_guests)
        blocks.append((sync, steps, out.sync))
    for _ in range(plan.repeats):
        for env, steps, timing in blocks:
            timing.rates.append(hosts * steps / run_steps(env, pool, steps))
        if out.numba is not None:
            out.numba_ratios.append(out.numba.rates[-1] / out.native.rates[-1])
        if out.sync is not None:
            out.sync_ratios.append(out.native.rates[-1] / out.sync.rates[-1])
    for env, _, _ in blocks:
        env.close()
    return out


def measure_single(
    cfg: ScenarioConfig, plan: Plan, seed: int, backend: str = "numpy"
) -> list[float]:
    """``BalloonEnv.step`` microseconds per step, one value per episode (reset not timed)."""
    env = BalloonEnv(cfg, max_episode_steps=plan.episode_steps, backend=backend)
    pool = action_pool(np.random.default_rng(seed), env.action_space.shape, 64)
    env.reset(seed=seed)
    run_steps(env, pool, plan.episode_steps)  # warm-up episode
    out = []
    for _ in range(plan.single_episodes):
        env.reset()
        out.append(run_steps(env, pool, plan.episode_steps) / plan.episode_steps * 1e6)
    env.close()
    return out


# --------------------------------------------------------------------------------------------
# 3: sub-step breakdown


@contextlib.contextmanager
def timed_substeps(acc: dict[str, float], calls: dict[str, int]) -> Iterator[list[str]]:
    """Wrap the functions of ``SUBSTEP_FUNCTIONS`` on the module objects ``step.py`` uses.

    Each call adds its wall time to ``acc[key]`` (key ``module.function``). Yields the keys of
    functions not found (renamed or removed in the core: their time lands in the glue). The
    originals are restored on exit, whatever happens.
    """
    step_module = importlib.import_module("balloon_gym.core.step")
    originals: list[tuple[Any, str, Any]] = []
    missing = []
    try:
        for _, mod_name, fn_name in SUBSTEP_FUNCTIONS:
            module = getattr(step_module, mod_name, None)
            fn = getattr(module, fn_name, None)
            key = f"{mod_name}.{fn_name}"
            if fn is None:
                missing.append(key)
                continue
            originals.append((module, fn_name, fn))
            setattr(module, fn_name, _timed(fn, key, acc, calls))
        yield missing
    finally:
        for module, fn_name, fn in reversed(originals):
            setattr(module, fn_name, fn)


def _timed(
    fn: Callable[..., Any], key: str, acc: dict[str, float], calls: dict[str, int]
) -> Callable[..., Any]:
    """``fn`` with its wall time added to ``acc[key]`` and its calls counted."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            acc[key] = acc.get(key, 0.0) + time.perf_counter() - t0
            calls[key] = calls.get(key, 0) + 1

    return wrapper


@dataclass
class Breakdown:
    """Per-step sub-step times at one batch size, seconds, one list entry per step."""

    hosts: int
    guests: int
    parts: dict[str, list[float]]  # sub-step name (and observe, glue) -> per-step seconds
    total: list[float]  # step + observe, wrapped
    notes: list[str]
    core_blocks: list[float] = field(default_factory=list)  # step + observe, unwrapped
    env_blocks: list[float] = field(default_factory=list)  # BalloonVectorEnv.step, no reset


def _core_loop(
    cfg: ScenarioConfig, hosts: int, steps: int, seed: int, on_step: Callable[[float, float], None]
) -> None:
    """``core.step`` then ``core.observe`` ``steps`` times; calls ``on_step(step_s, obs_s)``."""
    params = build_params([cfg] * hosts, cfg.num_guests)
    rng = np.random.default_rng(seed)
    pool = action_pool(rng, (hosts, 2 * cfg.num_guests), 8)
    state = core.reset(params, rng)
    for i in range(steps):
        t0 = time.perf_counter()
        state, _ = core.step(state, pool[i % len(pool)], params, rng)
        t1 = time.perf_counter()
        core.observe(state, params)
        on_step(t1 - t0, time.perf_counter() - t1)


def measure_adapter(
    cfg: ScenarioConfig, hosts: int, plan: Plan, seed: int
) -> tuple[list[float], list[float]]:
    """Seconds per step of ``core.step + core.observe`` and of ``BalloonVectorEnv.step``.

    Unwrapped, in interleaved blocks (one of each per repeat) so that machine noise hits both
    alike. The env never truncates here (``max_episode_steps=10**9``): the difference is the
    adapter's own cost (action check, truncation flags, ``info``), not resets.
    """
    env = BalloonVectorEnv(hosts, cfg, max_guests=cfg.num_guests, max_episode_steps=10**9)
    env.reset(seed=seed)
    params = env.batch.params
    rng = np.random.default_rng(seed)
    pool = action_pool(rng, env.action_space.shape, 8)
    state = core.reset(params, rng)
    steps = steps_for(warm_up(env, pool, plan.warmup_steps), plan.block_s, 1)
    core_s, env_s = [], []
    for _ in range(plan.repeats):
        t0 = time.perf_counter()
        for i in range(steps):
            state, _ = core.step(state, pool[i % len(pool)], params, rng)
            core.observe(state, params)
        core_s.append((time.perf_counter() - t0) / steps)
        env_s.append(run_steps(env, pool, steps) / steps)
    env.close()
    return core_s, env_s


def measure_breakdown(cfg: ScenarioConfig, hosts: int, plan: Plan, seed: int) -> Breakdown:
    """Time every sub-step of ``core.step`` (and ``core.observe``) per step, at the core level.

    The glue of a step is its wall time minus the wrapped functions' times: splitting the
    action, drawing the uniforms, the host-swap rescale between sub-steps and building the new
    ``State``.
    """
    names = [*core.SUBSTEPS, "observe", "glue"]
    bd = Breakdown(hosts, cfg.num_guests, {n: [] for n in names}, [], [])
    acc: dict[str, float] = {}
    calls: dict[str, int] = {}
    warm = plan.warmup_steps

    def record(step_s: float, obs_s: float) -> None:
        per = dict.fromkeys(core.SUBSTEPS, 0.0)
        for sub, mod_name, fn_name in SUBSTEP_FUNCTIONS:
            per[sub] = per.get(sub, 0.0) + acc.pop(f"{mod_name}.{fn_name}", 0.0)
        for sub, sec in per.items():
            bd.parts.setdefault(sub, []).append(sec)
        bd.parts["observe"].append(obs_s)
        bd.parts["glue"].append(step_s - sum(per.values()))
        bd.total.append(step_s + obs_s)

    with timed_substeps(acc, calls) as missing:
        _core_loop(cfg, hosts, warm + plan.breakdown_steps, seed, record)
    for values in (*bd.parts.values(), bd.total):
        del values[:warm]
    bd.core_blocks, bd.env_blocks = measure_adapter(cfg, hosts, plan, seed)
    bd.notes += [f"{key} not found in the core: its time is in the glue" for key in missing]
    mapped = {sub for sub, _, _ in SUBSTEP_FUNCTIONS}
    bd.notes += [
        f"sub-step {s!r} has no function mapped: its time is in the glue"
        for s in core.SUBSTEPS
        if s not in mapped
    ]
    bd.notes += [
        f"{key} never called by core.step: its time is in the glue"
        for _, m, f in SUBSTEP_FUNCTIONS
        if (key := f"{m}.{f}") not in calls and key not in missing
    ]
    return bd


# --------------------------------------------------------------------------------------------
# 4: memory


def nbytes_per_host(arrays: Sequence[Any], hosts: int) -> float:
    """Sum of ``nbytes`` of every array field of a ``State``/``Params``, divided by ``hosts``."""
    return sum(a.nbytes for a in arrays if isinstance(a, np.ndarray)) / hosts


def footprint(cfg: ScenarioConfig, hosts: int = 64) -> dict[str, float]:
    """Bytes per host of state, params, observation, action and reward, and of one step.

    ``step`` estimates what a step must move at the least: the state read and the new state
    written, the params and the action read, the observation and the reward written.
    """
    env = native_env(cfg, hosts, FULL)
    obs, _ = env.reset(seed=0)
    b = env.batch
    out = {
        "state": nbytes_per_host(b.state, hosts),
        "params": nbytes_per_host(b.params, hosts),
        "obs": obs.nbytes / hosts,
        "action": float(np.prod(env.single_action_space.shape) * 4),  # float32
        "reward": 8.0,
    }
    out["step"] = 2 * out["state"] + out["params"] + out["action"] + out["obs"] + out["reward"]
    env.close()
    return out


_PROC_STATUS = Path("/proc/self/status")


def _proc_status_bytes(key: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), in bytes (Linux)."""
    for line in _PROC_STATUS.read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _reset_rss_high_water() -> int:
    """Reset this process's RSS high-water mark (``VmHWM``) to its RSS; returns that RSS.

    ``ru_maxrss`` is no use here: Linux carries it over from the parent through fork and exec,
    so a probe started by a big benchmark process would inherit the parent's peak.
    """
    Path("/proc/self/clear_refs").write_text("5")
    return _proc_status_bytes("VmRSS")


def memory_probe(hosts: int, mode: str, episode_steps: int, steps: int) -> dict[str, Any]:
    """Peak memory of creating a native env of ``hosts`` hosts, resetting it and stepping it.

    Run in a fresh subprocess (``--memory-probe``) so that nothing measured before counts.
    ``tracemalloc``: peak of the memory traced by Python's allocator hooks, which numpy reports
    its array buffers to (exact bytes asked for; excludes the interpreter and the imported
    modules). ``rss``: the process's RSS high-water mark (``VmHWM``, reset after the imports)
    minus its RSS after the imports: what the OS had to provide, allocator slack included
    (Linux only; NaN elsewhere). The action pool is made before either baseline.
    """
    cfg = scenario_8_guests()
    pool = action_pool(np.random.default_rng(0), (hosts, 2 * cfg.num_guests), 8)
    nan = float("nan")
    base, live = nan, nan
    if mode == "tracemalloc":
        tracemalloc.start()
    else:
        try:
            base = _reset_rss_high_water()
        except OSError:  # no /proc (not Linux) or not writable
            mode = "rss-unavailable"
    env = BalloonVectorEnv(hosts, cfg, max_guests=cfg.num_guests, max_episode_steps=episode_steps)
    env.reset(seed=0)
    run_steps(env, pool, steps)
    if mode == "tracemalloc":
        live, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    elif mode == "rss":
        peak = _proc_status_bytes("VmHWM") - base
        live = _proc_status_bytes("VmRSS") - base
    else:
        peak = nan
    return {
        "mode": mode.split("-")[0],
        "hosts": hosts,
        "steps": steps,
        "peak_bytes": peak,
        "live_bytes": live,
        "rss_after_imports_bytes": base,
    }


def run_memory_probe(hosts: int, mode: str, plan: Plan) -> dict[str, Any]:
    """:func:`memory_probe` in a fresh Python process."""
    steps = plan.episode_steps + 2  # one autoreset and a step after it
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--memory-probe",
        str(hosts),
        "--probe-mode",
        mode,
        "--probe-steps",
        str(steps),
        "--probe-episode-steps",
        str(plan.episode_steps),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# 5: bandwidth


def copy_bandwidth(mib: int, repeats: int) -> list[float]:
    """Bytes per second of ``np.copyto`` on ``mib`` MiB of float64, read + written counted.

    One value per repeat (after one untimed copy that faults the destination pages in). Like
    STREAM's ``copy``, the write-allocate read of the destination is not counted.
    """
    src = np.random.default_rng(0).random(mib * 2**20 // 8)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        out.append(2 * src.nbytes / (time.perf_counter() - t0))
    return out


# --------------------------------------------------------------------------------------------
# the run


@dataclass
class Results:
    """Everything one run measured."""

    plan: Plan
    scenario: str
    native: list[Timing]  # 8 guests, by size
    large: Timing  # 32 guests
    sync: list[Timing]
    ratios: dict[int, list[float]]  # hosts -> per-repeat native / sync
    single_us: list[float]
    breakdown: Breakdown
    footprints: dict[int, dict[str, float]]  # guests -> bytes per host
    bandwidth: list[float]
    memory: list[dict[str, Any]]
    numba_note: str | None = None  # why the numba rows are missing; None if measured
    numba: list[Timing] = field(default_factory=list)  # numba backend: 8 guests by size, large
    numba_ratios: dict[tuple[int, int], list[float]] = field(default_factory=dict)  # numba/numpy
    single_numba_us: list[float] = field(default_factory=list)
    numba_first_s: float = float("nan")  # the run's first numba step: compile or cache load
    wall_s: float = float("nan")

    @property
    def bandwidth_median(self) -> float:
        """Median copy bandwidth, bytes/s."""
        return statistics.median(self.bandwidth)

    def floor_fraction(self, t: Timing) -> float:
        """Memory-bandwidth floor time of a step over its measured median time."""
        floor_s = self.footprints[t.guests]["step"] * t.hosts / self.bandwidth_median
        return floor_s / (t.us_per_step * 1e-6)

    def native_at(self, hosts: int) -> Timing | None:
        """The 8-guest native timing at ``hosts``, if measured."""
        return next((t for t in self.native if t.hosts == hosts), None)


def _progress(msg: str) -> None:
    print(f"[throughput] {msg}", file=sys.stderr, flush=True)


def run_all(plan: Plan) -> Results:
    """Measure everything of :class:`Results` (progress on stderr)."""
    cfg8, large = scenario_8_guests(), load_scenario("large")
    note = numba_status()
    with_numba = note is None
    native, sync, ratios, groups = [], [], {}, []
    for i, hosts in enumerate(plan.native_hosts):
        with_sync = hosts in plan.sync_hosts
        what = " + SyncVectorEnv" if with_sync else ""
        _progress(f"native{' + numba' if with_numba else ''}{what}, {hosts} hosts x 8 guests")
        m = measure_native(cfg8, hosts, plan, seed=i, with_sync=with_sync, with_numba=with_numba)
        native.append(m.native)
        if m.sync is not None:
            sync.append(m.sync)
            ratios[hosts] = m.sync_ratios
        groups.append(m)
    _progress(f"native, {plan.large_hosts} hosts x {large.num_guests} guests (large)")
    big = measure_native(large, plan.large_hosts, plan, seed=100, with_numba=with_numba)
    groups.append(big)
    _progress("single env")
    single = measure_single(cfg8, plan, seed=200)
    single_numba = measure_single(cfg8, plan, seed=200, backend="numba") if with_numba else []
    _progress(f"sub-step breakdown, {TARGET_HOSTS} hosts x 8 guests")
    breakdown = measure_breakdown(cfg8, TARGET_HOSTS, plan, seed=300)
    _progress(f"memory probes (subprocesses), {plan.memory_hosts} hosts")
    memory = [run_memory_probe(plan.memory_hosts, m, plan) for m in ("tracemalloc", "rss")]
    _progress(f"copy bandwidth, {plan.bandwidth_mib} MiB")
    bandwidth = copy_bandwidth(plan.bandwidth_mib, plan.bandwidth_repeats)
    footprints = {cfg8.num_guests: footprint(cfg8), large.num_guests: footprint(large)}
    res = Results(
        plan,
        cfg8.name,
        native,
        big.native,
        sync,
        ratios,
        single,
        breakdown,
        footprints,
        bandwidth,
        memory,
        numba_note=note,
        single_numba_us=single_numba,
    )
    for m in groups:
        if m.numba is not None:
            res.numba.append(m.numba)
            res.numba_ratios[(m.numba.hosts, m.numba.guests)] = m.numba_ratios
    res.numba_first_s = groups[0].numba_first_s
    return res


# --------------------------------------------------------------------------------------------
# report

NAN = float("nan")

#: name -> (label, target as printed) of the targets of issue 4.
TARGET_LABELS = {
    "native_host_steps_per_s": (
        f"native host-steps/s, {TARGET_HOSTS} hosts x 8 guests",
        f">= {TARGET_HOST_STEPS_PER_S:,.0f}",
    ),
    "native_vs_sync": (
        f"native / SyncVectorEnv, {TARGET_HOSTS} hosts x 8 guests",
        f">= {TARGET_SPEEDUP_VS_SYNC:.0f}x",
    ),
    "single_env_step": ("single env, BalloonEnv.step", f"< {TARGET_SINGLE_US:.0f} us"),
}


def _med(values: Sequence[float] | None) -> float:
    """Median, NaN for no values."""
    return statistics.median(values) if values else NAN


def _spread(values: Sequence[float] | None) -> float:
    """(max - min) / median of ``values``, percent; NaN for no values."""
    if not values or statistics.median(values) == 0.0:
        return NAN  # no samples, or a sub-step too short to time
    return (max(values) - min(values)) / statistics.median(values) * 100.0


def _status(value: float, ok: bool) -> str:
    """PASS/MISS, or n/a when the figure was not measured."""
    return "n/a" if value != value else ("PASS" if ok else "MISS")


def target_rows(res: Results) -> list[Row]:
    """The three targets of issue 4 with PASS/MISS (n/a if the figure was not measured)."""
    t = res.native_at(TARGET_HOSTS)
    rate = t.rate if t else NAN
    ratio = res.ratios.get(TARGET_HOSTS)
    speedup = _med(ratio)
    single = _med(res.single_us)
    return [
        Row(
            "target",
            "native_host_steps_per_s",
            TARGET_HOSTS,
            8,
            rate,
            "host-steps/s",
            t.spread_pct if t else NAN,
            f">= {TARGET_HOST_STEPS_PER_S:.0f}",
            _status(rate, rate >= TARGET_HOST_STEPS_PER_S),
        ),
        Row(
            "target",
            "native_vs_sync",
            TARGET_HOSTS,
            8,
            speedup,
            "x",
            _spread(ratio),
            f">= {TARGET_SPEEDUP_VS_SYNC:.0f}",
            _status(speedup, speedup >= TARGET_SPEEDUP_VS_SYNC),
        ),
        Row(
            "target",
            "single_env_step",
            1,
            8,
            single,
            "us",
            _spread(res.single_us),
            f"< {TARGET_SINGLE_US:.0f}",
            _status(single, single < TARGET_SINGLE_US),
        ),
    ]


def throughput_rows(res: Results) -> list[Row]:
    """Host-steps/s, step time, floor fraction and native/sync ratio of every configuration."""
    rows = []
    for impl, timings in (("native", [*res.native, res.large]), ("sync", res.sync)):
        for t in timings:
            rows.append(
                Row("throughput", impl, t.hosts, t.guests, t.rate, "host-steps/s", t.spread_pct)
            )
            rows.append(
                Row("step_time", impl, t.hosts, t.guests, t.us_per_step, "us", t.spread_pct)
            )
            if impl == "native":
                rows.append(
                    Row(
                        "floor_fraction", impl, t.hosts, t.guests, res.floor_fraction(t), "fraction"
                    )
                )
    for hosts, ratio in res.ratios.items():
        rows.append(Row("speedup", "native_vs_sync", hosts, 8, _med(ratio), "x", _spread(ratio)))
    single, spread = _med(res.single_us), _spread(res.single_us)
    rows.append(Row("throughput", "single", 1, 8, 1e6 / single, "host-steps/s", spread))
    rows.append(Row("step_time", "single", 1, 8, single, "us", spread))
    for t in res.numba:
        rows.append(
            Row("throughput", "numba", t.hosts, t.guests, t.rate, "host-steps/s", t.spread_pct)
        )
        rows.append(Row("step_time", "numba", t.hosts, t.guests, t.us_per_step, "us", t.spread_pct))
        rows.append(
            Row("floor_fraction", "numba", t.hosts, t.guests, res.floor_fraction(t), "fraction")
        )
    for (hosts, guests), ratio in res.numba_ratios.items():
        rows.append(
            Row("speedup", "numba_vs_numpy", hosts, guests, _med(ratio), "x", _spread(ratio))
        )
    if res.single_numba_us:
        single, spread = _med(res.single_numba_us), _spread(res.single_numba_us)
        rows.append(Row("throughput", "single_numba", 1, 8, 1e6 / single, "host-steps/s", spread))
        rows.append(Row("step_time", "single_numba", 1, 8, single, "us", spread))
    return rows


#: name -> (label, target as printed) of the targets of issue 4, met with the numba backend.
NUMBA_TARGET_LABELS = {
    "numba_host_steps_per_s": (
        f"numba host-steps/s, {TARGET_HOSTS} hosts x 8 guests",
        f">= {TARGET_HOST_STEPS_PER_S:,.0f}",
    ),
    "numba_vs_numpy": (
        f"numba / numpy, {TARGET_HOSTS} hosts x 8 guests",
        f">= {TARGET_NUMBA_SPEEDUP:.0f}x",
    ),
    "single_env_step_numba": (
        "single env, BalloonEnv.step (numba)",
        f"< {TARGET_SINGLE_US:.0f} us",
    ),
}


def numba_target_rows(res: Results) -> list[Row]:
    """The targets with the numba backend (section ``target_numba``); none without numba."""
    if res.numba_note is not None:
        return []
    t = next((t for t in res.numba if (t.hosts, t.guests) == (TARGET_HOSTS, 8)), None)
    rate = t.rate if t else NAN
    ratio = res.numba_ratios.get((TARGET_HOSTS, 8))
    speedup = _med(ratio)
    single = _med(res.single_numba_us)
    return [
        Row(
            "target_numba",
            "numba_host_steps_per_s",
            TARGET_HOSTS,
            8,
            rate,
            "host-steps/s",
            t.spread_pct if t else NAN,
            f">= {TARGET_HOST_STEPS_PER_S:.0f}",
            _status(rate, rate >= TARGET_HOST_STEPS_PER_S),
        ),
        Row(
            "target_numba",
            "numba_vs_numpy",
            TARGET_HOSTS,
            8,
            speedup,
            "x",
            _spread(ratio),
            f">= {TARGET_NUMBA_SPEEDUP:.0f}",
            _status(speedup, speedup >= TARGET_NUMBA_SPEEDUP),
        ),
        Row(
            "target_numba",
            "single_env_step_numba",
            1,
            8,
            single,
            "us",
            _spread(res.single_numba_us),
            f"< {TARGET_SINGLE_US:.0f}",
            _status(single, single < TARGET_SINGLE_US),
        ),
        Row("meta", "numba_first_step", 0, 0, res.numba_first_s, "s"),
    ]


def breakdown_rows(res: Results) -> list[Row]:
    """Median microseconds per step of every sub-step, observe, glue, totals and the adapter."""
    bd = res.breakdown
    series = {
        **bd.parts,
        "total": bd.total,
        "total_unwrapped": bd.core_blocks,
        "env_step_no_reset": bd.env_blocks,
    }
    rows = [
        Row("substep", name, bd.hosts, bd.guests, _med(v) * 1e6, "us", _spread(v))
        for name, v in series.items()
    ]
    adapter = (_med(bd.env_blocks) - _med(bd.core_blocks)) * 1e6
    rows.append(Row("substep", "env_adapter", bd.hosts, bd.guests, adapter, "us"))
    return rows


def memory_rows(res: Results) -> list[Row]:
    """Bytes per host (State, Params, obs, step estimate), peak memory, bandwidth, wall time."""
    rows = []
    for guests, fp in res.footprints.items():
        for key in ("state", "params", "obs", "step"):
            rows.append(Row("memory", f"{key}_bytes_per_host", 1, guests, fp[key], "B"))
    hosts = res.plan.memory_hosts
    for probe in res.memory:
        peak, mode = probe["peak_bytes"], probe["mode"]
        rows.append(Row("memory", f"peak_{mode}", hosts, 8, peak, "B"))
        rows.append(Row("memory", f"peak_{mode}_per_host", hosts, 8, peak / hosts, "B"))
    bw = res.bandwidth
    rows.append(Row("bandwidth", "copy", 0, 0, _med(bw) / 1e9, "GB/s", _spread(bw)))
    rows.append(Row("meta", "wall_time", 0, 0, res.wall_s, "s"))
    return rows


def build_rows(res: Results) -> list[Row]:
    """Every figure of the run, in CSV order."""
    return [
        *target_rows(res),
        *numba_target_rows(res),
        *throughput_rows(res),
        *breakdown_rows(res),
        *memory_rows(res),
    ]


def _fmt(value: float) -> str:
    """A figure for the printed table: thousands separators, one decimal below 1000."""
    if value != value:  # NaN
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.1f}"


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{value:.0f}%"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Plain-text table: the first column left-aligned, the others right-aligned."""
    cells = [[str(c) for c in r] for r in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        out = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    return "\n".join([line(cells[0]), line(["-" * w for w in widths]), *map(line, cells[1:])])


def throughput_table(res: Results) -> str:
    """The main table: every configuration's host-steps/s, step time, ratio and floor fraction."""
    rows = []
    for t in [*res.native, res.large]:
        ratio = res.ratios.get(t.hosts) if t is not res.large else None
        rows.append(
            [
                "native",
                res.scenario if t is not res.large else "large",
                t.hosts,
                t.guests,
                _fmt(t.rate),
                _fmt(t.us_per_step),
                _pct(t.spread_pct),
                f"{_fmt(_med(ratio))}x" if ratio else "",
                f"{res.floor_fraction(t):.3f}",
            ]
        )
    for t in res.sync:
        rows.append(
            [
                "sync",
                res.scenario,
                t.hosts,
                t.guests,
                _fmt(t.rate),
                _fmt(t.us_per_step),
                _pct(t.spread_pct),
                "",
                "",
            ]
        )
    single = _med(res.single_us)
    rows.append(
        [
            "single",
            "BalloonEnv.step",
            1,
            8,
            _fmt(1e6 / single),
            _fmt(single),
            _pct(_spread(res.single_us)),
            "",
            "",
        ]
    )
    headers = [
        "impl",
        "scenario",
        "hosts",
        "guests",
        "host-steps/s",
        "us/step",
        "spread",
        "native/sync",
        "floor frac",
    ]
    return format_table(headers, rows)


def numba_table(res: Results) -> str:
    """The numba backend side by side with numpy (blocks alternated within each repeat)."""
    if res.numba_note is not None:
        return f"note: {res.numba_note}"
    numpy_of = {(t.hosts, t.guests): t for t in [*res.native, res.large]}
    rows = []
    for t in res.numba:
        ref, ratio = numpy_of[(t.hosts, t.guests)], res.numba_ratios[(t.hosts, t.guests)]
        rows.append(
            [
                res.scenario if t.guests == 8 else "large",
                t.hosts,
                t.guests,
                _fmt(ref.rate),
                _fmt(t.rate),
                _fmt(t.us_per_step),
                _pct(t.spread_pct),
                f"{_med(ratio):.2f}x",
                _pct(_spread(ratio)),
                f"{res.floor_fraction(t):.3f}",
            ]
        )
    single, fast = _med(res.single_us), _med(res.single_numba_us)
    rows.append(
        [
            "BalloonEnv.step",
            1,
            8,
            _fmt(1e6 / single),
            _fmt(1e6 / fast),
            _fmt(fast),
            _pct(_spread(res.single_numba_us)),
            f"{single / fast:.2f}x",
            "",
            "",
        ]
    )
    headers = [
        "scenario",
        "hosts",
        "guests",
        "numpy host-steps/s",
        "numba host-steps/s",
        "numba us/step",
        "spread",
        "numba/numpy",
        "spread",
        "floor frac",
    ]
    table = format_table(headers, rows)
    rows = [
        [
            NUMBA_TARGET_LABELS[r.name][0],
            _fmt(r.value) + {"host-steps/s": "", "x": "x", "us": " us"}[r.unit],
            _pct(r.spread_pct),
            NUMBA_TARGET_LABELS[r.name][1],
            r.status,
        ]
        for r in numba_target_rows(res)
        if r.section == "target_numba"
    ]
    targets = format_table(
        ["target, numba backend", "measured", "spread", "target", "status"], rows
    )
    return "\n".join(
        [
            table,
            "numba/numpy: median of the per-repeat ratios (numpy and numba blocks alternate in "
            "each repeat); single env: ratio of the medians.",
            "first numba env of the run, created, reset and stepped once (compiles the kernels, "
            f"or loads them from numba's on-disk cache): {res.numba_first_s:.2f} s",
            "",
            targets,
        ]
    )


def targets_table(res: Results) -> str:
    """Each target of issue 4 next to the measured figure, PASS or MISS."""
    suffix = {"host-steps/s": "", "x": "x", "us": " us"}
    rows = [
        [
            TARGET_LABELS[r.name][0],
            _fmt(r.value) + suffix[r.unit],
            _pct(r.spread_pct),
            TARGET_LABELS[r.name][1],
            r.status,
        ]
        for r in target_rows(res)
    ]
    return format_table(["target (issue 4)", "measured", "spread", "target", "status"], rows)


def breakdown_table(res: Results) -> str:
    """Median time per step of each sub-step, observe and glue, with its share of the total."""
    bd = res.breakdown
    funcs: dict[str, list[str]] = {}
    for sub, mod_name, fn_name in SUBSTEP_FUNCTIONS:
        funcs.setdefault(sub, []).append(f"{mod_name}.{fn_name}")
    funcs["observe"] = ["core.observe"]
    funcs["glue"] = ["step total - its sub-steps"]
    total = _med(bd.total)
    rows = [
        [
            name,
            ", ".join(funcs.get(name, [])),
            _fmt(_med(v) * 1e6),
            _pct(_spread(v)),
            f"{_med(v) / total * 100:.1f}%",
        ]
        for name, v in bd.parts.items()
    ]
    rows.append(
        [
            "total",
            "core.step + core.observe, wrapped",
            _fmt(total * 1e6),
            _pct(_spread(bd.total)),
            "100.0%",
        ]
    )
    core_us, env_us = _med(bd.core_blocks) * 1e6, _med(bd.env_blocks) * 1e6
    rows += [
        [
            "",
            "core.step + core.observe, unwrapped",
            _fmt(core_us),
            _pct(_spread(bd.core_blocks)),
            "",
        ],
        ["", "BalloonVectorEnv.step, no reset", _fmt(env_us), _pct(_spread(bd.env_blocks)), ""],
        ["", "env adapter = env.step - core (unwrapped)", _fmt(env_us - core_us), "", ""],
    ]
    return format_table(["sub-step", "functions", "us/step", "spread", "share"], rows)


def memory_table(res: Results) -> str:
    """Bytes per host, and peak memory by both methods."""
    rows = [
        [f"{g} guests", _fmt(fp["state"]), _fmt(fp["params"]), _fmt(fp["obs"]), _fmt(fp["step"])]
        for g, fp in res.footprints.items()
    ]
    per_host = format_table(["bytes per host", "State", "Params", "obs", "step (est.)"], rows)
    hosts, mib = res.plan.memory_hosts, 2.0**20
    how = {
        "tracemalloc": "tracemalloc (numpy buffers + Python objects)",
        "rss": "RSS: VmHWM - RSS after imports",
    }
    peaks = [
        [
            how[p["mode"]],
            f"{p['peak_bytes'] / mib:,.1f}",
            _fmt(p["peak_bytes"] / hosts),
            f"{p['live_bytes'] / mib:,.1f}",
        ]
        for p in res.memory
    ]
    title = f"{hosts} hosts x 8 guests: create + reset + {res.plan.episode_steps + 2} steps"
    table = format_table([title, "peak MiB", "peak B/host", "held after, MiB"], peaks)
    return f"{per_host}\n\n{table}\n(each method in its own fresh subprocess)"


def bandwidth_text(res: Results) -> str:
    """Copy bandwidth, the per-host-step byte estimate, and what the floor means."""
    bw, fp = res.bandwidth_median, res.footprints[8]
    return "\n".join(
        [
            f"copy bandwidth: {bw / 1e9:.2f} GB/s (np.copyto of {res.plan.bandwidth_mib} MiB "
            f"float64, bytes read + written, median of {len(res.bandwidth)}, spread "
            f"{_spread(res.bandwidth):.0f}%)",
            f"bytes per host-step, 8 guests: {fp['step']:,.0f} = 2 x State {fp['state']:,.0f} "
            f"(read + written) + Params {fp['params']:,.0f} + action {fp['action']:,.0f} + "
            f"obs {fp['obs']:,.0f} + reward {fp['reward']:,.0f}",
            "floor time = hosts x bytes per host-step / bandwidth; floor frac = floor time / "
            "measured step time (1.0 would be memory-bound at that minimum traffic)",
            f"bandwidth ceiling, 8 guests: {bw / fp['step']:,.0f} host-steps/s",
        ]
    )


def _numba_line() -> str:
    """Which numba ran the fused backend (single-threaded kernels), or that none did."""
    numba = sys.modules.get("numba")
    if numba is None:
        return "numba: not installed (pip install 'balloon-gym[fast]'); numba rows skipped"
    return f"numba {numba.__version__}: backend='numba' kernels, single-threaded, cached on disk"


def header_text(plan: Plan, argv: Sequence[str]) -> str:
    """Date, command, machine and method notes."""
    threads = " ".join(f"{v}={os.environ.get(v)}" for v in _THREAD_VARS)
    coretype = os.environ.get("OPENBLAS_CORETYPE", "(unset)")
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"balloon-gym throughput benchmark, {when}, {'quick' if plan.quick else 'full'} run",
        f"command: python benchmarks/throughput.py {' '.join(argv)}".rstrip(),
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, numpy {np.__version__}, gymnasium {gym.__version__}",
        f"threads: {threads}; OPENBLAS_CORETYPE={coretype} (left alone)",
        _numba_line(),
        f"Figures are medians of {plan.repeats} timed repeats after warm-up (time.perf_counter);"
        " spread = (max - min) / median of the repeats.",
        "The machine may be shared and noisy: read the spreads before trusting small differences.",
        f"Random valid actions from a pre-generated pool; autoreset after {plan.episode_steps} "
        "steps (NEXT_STEP) inside the timing; the observation is built every step.",
    ]
    if _NUMPY_WAS_LOADED:
        lines.append("WARNING: numpy was imported before the thread pinning; it may not hold.")
    return "\n".join(lines)


def report_text(res: Results, argv: Sequence[str]) -> str:
    """The whole printed report."""
    bd = res.breakdown
    notes = "".join(f"\nnote: {n}" for n in bd.notes)
    return "\n\n".join(
        [
            header_text(res.plan, argv),
            "== Throughput ==\n" + throughput_table(res),
            "== Targets ==\n" + targets_table(res),
            "== numba backend (balloon_gym.core.fused), side by side with numpy ==\n"
            + numba_table(res),
            f"== Sub-steps of core.step + core.observe, {bd.hosts} hosts x {bd.guests} guests, "
            f"median of {len(bd.total)} steps ==\n" + breakdown_table(res) + notes,
            "== Memory ==\n" + memory_table(res),
            "== Memory-bandwidth floor ==\n" + bandwidth_text(res),
            f"wall time of the run: {res.wall_s:.1f} s",
        ]
    )


def write_csv(rows: Sequence[Row], path: Path) -> None:
    """One line per figure, columns :data:`CSV_COLUMNS`."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for r in rows:
            spread = "" if r.spread_pct != r.spread_pct else f"{r.spread_pct:.1f}"
            writer.writerow(
                [
                    r.section,
                    r.name,
                    r.hosts,
                    r.guests,
                    f"{r.value:.6g}",
                    r.unit,
                    spread,
                    r.target,
                    r.status,
                ]
            )


def plot(res: Results, path: Path) -> None:
    """Log-log host-steps/s against hosts: native, SyncVectorEnv, single env, target, ceiling."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    ax.loglog(
        [t.hosts for t in res.native],
        [t.rate for t in res.native],
        "o-",
        label="BalloonVectorEnv, 8 guests",
    )
    ax.loglog([res.large.hosts], [res.large.rate], "s", label="BalloonVectorEnv, 32 guests")
    ax.loglog(
        [t.hosts for t in res.sync],
        [t.rate for t in res.sync],
        "o-",
        label="SyncVectorEnv(BalloonEnv), 8 guests",
    )
    ax.loglog([1], [1e6 / _med(res.single_us)], "D", label="BalloonEnv.step")
    fast8 = [t for t in res.numba if t.guests == 8]
    if fast8:
        ax.loglog(
            [t.hosts for t in fast8],
            [t.rate for t in fast8],
            "o--",
            label="BalloonVectorEnv backend='numba', 8 guests",
        )
        ax.loglog(
            [t.hosts for t in res.numba if t.guests != 8],
            [t.rate for t in res.numba if t.guests != 8],
            "s",
            label="backend='numba', 32 guests",
        )
        ax.loglog([1], [1e6 / _med(res.single_numba_us)], "D", label="BalloonEnv.step, numba")
    ax.loglog(
        [TARGET_HOSTS],
        [TARGET_HOST_STEPS_PER_S],
        "*",
        markersize=14,
        color="k",
        label=f"target at {TARGET_HOSTS} hosts",
    )
    ax.axhline(
        res.bandwidth_median / res.footprints[8]["step"],
        ls="--",
        color="grey",
        label="copy-bandwidth ceiling, 8 guests",
    )
    ax.set_xlabel("hosts (batch size)")
    ax.set_ylabel("host-steps per second")
    run = "quick" if res.plan.quick else "full"
    ax.set_title(f"balloon-gym throughput ({run} run, medians)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options (the ``--probe*`` ones are internal: the memory subprocess)."""
    ap = argparse.ArgumentParser(description="balloon-gym throughput benchmark (issue 4).")
    ap.add_argument("--quick", action="store_true", help="small sizes, few steps (~30 s)")
    ap.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results",
        help="directory for throughput.csv and throughput.png",
    )
    ap.add_argument("--memory-probe", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument(
        "--probe-mode",
        default="tracemalloc",
        choices=("tracemalloc", "rss"),
        help=argparse.SUPPRESS,
    )
    ap.add_argument("--probe-steps", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--probe-episode-steps", type=int, default=50, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the report, write the CSV and PNG. Returns 0 (never fails)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.memory_probe:
        probe = memory_probe(
            args.memory_probe, args.probe_mode, args.probe_episode_steps, args.probe_steps
        )
        print(json.dumps(probe))
        return 0
    plan = QUICK if args.quick else FULL
    t0 = time.perf_counter()
    res = run_all(plan)
    res.wall_s = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    plot(res, args.out / PNG_NAME)
    write_csv(build_rows(res), args.out / CSV_NAME)
    print(report_text(res, argv))
    print(f"\nwrote {args.out / CSV_NAME} and {args.out / PNG_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
