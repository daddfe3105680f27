"""One test per finding of the v1 plan: each failed on the model before its fix.

Finding 3: the host reclaims only when it needs to. Targets bind on machine memory actually
consumed: while the guests' consumed memory fits what the host may hand out, a policy asking
the maximum for every guest keeps every balloon at zero; and the idle-tax scenario's shortage
is real (both guests touched their memory), so plain proportional share leaves no idle host
memory while the busy guest thrashes.
"""

from __future__ import annotations

import numpy as np

from balloon_gym.config import parse_scenario
from balloon_gym.core import params_from_scenario, reset, step


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
