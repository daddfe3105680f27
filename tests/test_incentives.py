"""One test per finding of the v1 issue: each fails on the model before v1 and passes after.

Every test runs the public API (``parse_scenario``, ``BalloonVectorEnv``) on a small scenario
that isolates the finding's mechanism.
"""

from __future__ import annotations

import numpy as np

from balloon_gym import BalloonVectorEnv, load_scenario
from balloon_gym.config import parse_scenario

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
