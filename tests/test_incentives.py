"""One test per finding of BalloonBench v1's model review: each failed on the v0 model and
passes on v1. A benchmark is only worth its leaderboard if no policy can score well by doing what
would hurt a real host; each test pins one incentive of the model to a real host's.
"""

from __future__ import annotations

import numpy as np
import pytest

from balloon_gym.agents import EsxIdleTax
from balloon_gym.config import parse_scenario
from balloon_gym.core import params_from_scenario, reset, step
from balloon_gym.envs.vector import BalloonVectorEnv
from balloon_gym.evaluation import evaluation_seeds, run_batch, true_demand
from balloon_gym.scenarios import load_scenario

# --- finding 2: guest reclaim by recency over anonymous and file pages ------------------------


def _cold_anon_hot_cache_guest():
    """One 4096 MiB guest (kernel 256: 3840 usable) whose cold anonymous memory crowds out a
    hot page cache: anon 3400 MiB of which 30 % hot (1020), cache 1000 MiB of which half hot
    (the default ``cache_hot_frac``); guest swap 1024 MiB, swap-out 100 MiB a step."""
    return parse_scenario(
        {
            "name": "cold-anon",
            "dt_s": 10.0,
            "host": {"mem_mib": 10000.0, "reserved_mib": 0.0, "pcpus": 4.0, "sampling": False},
            "guests": [
                {
                    "name": "g",
                    "mem_mib": 4096.0,
                    "min_mib": 1024.0,
                    "kernel_mib": 256.0,
                    "swap_mib": 1024.0,
                    "swap_out_mib_s": 10.0,
                    "swap_in_mib_s": 10.0,
                    "fault_s": 1e-4,
                    "workload": {
                        "anon_mib": 3400.0,
                        "wss_frac": 0.3,
                        "cache_mib": 1000.0,
                        "cpu_vcpus": 0.0,
                    },
                }
            ],
        }
    )


def test_finding_2_cold_anon_goes_to_guest_swap_to_keep_hot_cache():
    params = params_from_scenario(_cold_anon_hot_cache_guest())
    rng = np.random.default_rng(0)
    s = reset(params, rng)  # anon all resident (3400), cache 440, nothing free
    assert s.anon_swap[0, 0] == 0.0 and s.cache[0, 0] == 440.0
    action = np.array([[1.0, 1.0]])  # full allocation, no balloon
    for _ in range(10):
        s, _ = step(s, action, params, rng)
    # Cold pages that do not fit (2380 anon + 500 cache in 2320 MiB of room) are evicted in the
    # ratio 60 * 2380 : 140 * 500: 375.8 MiB of cold anon goes to guest swap.
    assert s.anon_swap[0, 0] > 300.0, "cold anonymous pages stayed resident"
    assert s.cache[0, 0] >= 500.0 - 1e-9, "the hot half of the page cache is not resident"
    # The old model re-read 2 % of the missing 560 MiB a step: 2867 pages. Now only the cold
    # cache is missing (184 MiB, 2 %: 943 pages) and no hot page faults.
    assert s.fault_pages[0, 0] < 0.5 * 560.0 * 0.02 * 256.0
    assert s.anon_swap[0, 0] + s.anon_res[0, 0] == pytest.approx(3400.0)


def _lru_run(scenario: str, num_seeds: int = 3) -> dict[str, float]:
    """An episode of ``esx_idle_tax`` per seed: the share of guest-steps whose hot page cache
    (half the cache wanted) is missing while cold anonymous pages are resident, guest swap has
    room and the swap-out rate was not used up (the defect of finding 2); the cache re-reads'
    share of all guest faults; and the anon + cache split of the faults over their total."""
    env = BalloonVectorEnv(num_envs=num_seeds, scenario=scenario)
    obs, _ = env.reset(seed=int(evaluation_seeds(num_seeds)[0]))
    agent = EsxIdleTax(env.batch.params.max_guests)
    p = env.batch.params
    mask = p.guest_mask
    total = cache = anon = 0.0
    starved = steps = 0
    for _ in range(int(env.batch.max_steps.max())):
        action, _ = agent.predict(obs, deterministic=True)
        obs, _, _, _, info = env.step(np.asarray(action))
        s = env.batch.state
        d = true_demand(s, p)
        lack = (s.cache < 0.5 * d.cache_mib - 1.0) & (s.anon_res > d.wss_mib + 1.0)
        lack &= (p.swap_mib - s.anon_swap - s.balloon_swap > 1.0) & (
            s.swap_out < p.swap_out_mib - 1.0
        )
        starved += int(lack[mask].sum())
        steps += int(mask.sum())
        if "cache_fault_pages" in info:  # the split is new (its assertion comes last)
            total += info["fault_pages"][mask].sum()
            cache += info["cache_fault_pages"][mask].sum()
            anon += info["anon_fault_pages"][mask].sum()
    return {
        "starved": starved / steps,
        "cache_share": cache / max(total, 1.0),
        "split": (cache + anon) / max(total, 1.0),
    }


@pytest.mark.parametrize("scenario", ["slow-reclaim", "steady-overcommit"])
def test_finding_2_no_hot_cache_is_lost_to_cold_anon_the_guest_could_swap(scenario):
    # Before: 4.9 % (slow-reclaim) and 35.7 % (steady-overcommit) of guest-steps lacked hot cache
    # while cold anon stayed resident with guest swap and swap-out rate to spare.
    run = _lru_run(scenario)
    assert run["starved"] < 0.01, f"{run['starved']:.1%} of guest-steps starve their hot cache"
    assert run["split"] == pytest.approx(1.0)  # info: fault_pages = anon + cache faults


def _fitting_scenario():
    """Two 8 GiB guests on a 16 GiB host whose footprints (about 3 GiB each) fit it easily."""
    guest = {
        "mem_mib": 8192.0,
        "min_mib": 1024.0,
        "vcpus": 2,
        "workload": {"kind": "diurnal", "anon_mib": 2048.0, "cache_mib": 512.0, "cpu_vcpus": 1.0},
    }
    return parse_scenario(
        {
            "name": "fits",
            "dt_s": 10,
            "episode_steps": 120,
            "host": {"mem_mib": 16384.0, "reserved_mib": 512.0, "pcpus": 4.0},
            "guests": [{**guest, "name": "a"}, {**guest, "name": "b"}],
        }
    )


def test_finding_3_no_ballooning_while_consumed_memory_fits_the_host():
    params = params_from_scenario(_fitting_scenario())
    rng = np.random.default_rng(0)
    s = reset(params, rng)
    action = np.ones((1, 4))  # every guest at max_mib: "no balloon", all vCPUs
    balloons, host_swap = [s.balloon.copy()], []
    for _ in range(120):
        s, _ = step(s, action, params, rng)
        balloons.append(s.balloon.copy())
        host_swap.append(s.host_swap_out.copy())
    balloons = np.stack(balloons)
    assert balloons.max() == 0.0, f"balloon up to {balloons.max():.0f} MiB on a host with room"
    assert np.sum(host_swap) == 0.0


def test_finding_3_idle_tax_without_tax_leaves_no_idle_host_memory():
    # Plain proportional share (ESX without the idle tax) on idle-tax: both guests touched their
    # memory, so the host's shortage is real. Before: 23 % of host memory free at every step
    # while the busy guest faulted; now the host sits on its 6 % line.
    result = run_batch(
        EsxIdleTax(2, tax_rate=0.0),
        "idle-tax",
        evaluation_seeds(3),
        record=("host_free_frac", "fault_pages"),
    )
    busy = result.guest_names.index("busy")
    free = result.trace["host_free_frac"]  # (steps, N)
    faulting = result.trace["fault_pages"][:, :, busy] > 0.0
    print(
        f"host free: min {free.min():.3f} mean {free.mean():.3f}; "
        f"busy guest faults in {faulting.mean():.0%} of steps"
    )
    assert faulting.any(), "the busy guest should be short of memory without the tax"
    idle_while_faulting = faulting & (free > 0.10)
    half = free.shape[0] // 2
    assert not idle_while_faulting[half:].any()
    assert not (free > 0.10).all(axis=0).any()


# --- finding 6: the vCPU-ballooning gain depends on the workload kind -------------------------


def _cpu_contention(parallelism: str):
    """Two identical 8-vCPU guests on 6 pCPUs, each wanting 6 vCPUs (2x overcommit: 3 pCPUs
    each); memory is ample. Guest ``x`` runs a workload of kind ``parallelism``."""
    guest = {
        "mem_mib": 8192.0,
        "min_mib": 1024.0,
        "vcpus": 8,
        "vcpu_change_per_step": 2,
        "workload": {"anon_mib": 2048.0, "cache_mib": 256.0, "cpu_vcpus": 6.0},
    }
    x = {**guest, "name": "x", "workload": {**guest["workload"], "parallelism": parallelism}}
    return parse_scenario(
        {
            "name": "contention",
            "host": {"mem_mib": 65536.0, "reserved_mib": 1024.0, "pcpus": 6.0},
            "guests": [x, {**guest, "name": "y"}],
        }
    )


def _steady_throughput(cfg, active_vcpus: int, steps: int = 12) -> np.ndarray:
    """Mean throughput per guest over the second half of ``steps`` steps, all memory granted
    and ``active_vcpus`` of each guest's 8 kept active (the rest reserved by the driver)."""
    env = BalloonVectorEnv(num_envs=1, scenario=cfg)
    env.reset(seed=0)
    g = env.max_guests
    u = (active_vcpus - 1) / (8 - 1)
    action = np.concatenate([np.ones(g), np.full(g, 2 * u - 1)])[None, :]
    tp = []
    for _ in range(steps):
        _, _, _, _, info = env.step(action)
        tp.append(info["throughput"][0])
    return np.mean(tp[steps // 2 :], axis=0)


def test_finding_6_vcpu_ballooning_helps_a_lock_heavy_guest_not_a_serial_one():
    # Same contention for both kinds: 6 runnable vCPUs on 3 pCPUs each. Reserving 5 vCPUs of
    # each guest (3 active, exactly its pCPU share) removes lock-holder preemption. A lock-heavy
    # parallel workload gains (1 + L(2)); independent single-threaded tasks have no lock
    # to lose (L = 0) and their throughput does not change (docs/calibration.md section 6).
    lock_heavy = _cpu_contention("lock_heavy")
    serial = _cpu_contention("serial")
    gain_lock = _steady_throughput(lock_heavy, 3)[0] / _steady_throughput(lock_heavy, 8)[0]
    gain_serial = _steady_throughput(serial, 3)[0] / _steady_throughput(serial, 8)[0]
    assert gain_lock > 1.3, gain_lock
    assert abs(gain_serial - 1.0) < 1e-9, gain_serial
    # The shipped cpu-contention scenario: 4 guests of 8 vCPUs wanting 4.2-7.8 on 12 pCPUs (3
    # each). Keeping 3 vCPUs active raises the lock-heavy guests' throughput and leaves the
    # serial batch guests' as it was.
    shipped = load_scenario("cpu-contention")
    kinds = [g.workload.parallelism for g in shipped.expanded_guests()]
    gain = _steady_throughput(shipped, 3, steps=30) / _steady_throughput(shipped, 8, steps=30)
    assert kinds == ["lock_heavy", "lock_heavy", "serial", "serial"]
    assert (gain[:2] > 1.2).all(), gain
    np.testing.assert_allclose(gain[2:], 1.0, rtol=1e-9)
