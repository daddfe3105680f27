"""Throughput model (DESIGN 3.5): the fraction of demanded work each guest got done.

``throughput = cpu_factor * mem_factor * work_frac`` with ``mem_factor = 1 / (1 + stall_s /
dt_s)``, where the stall sums guest major faults, host faults, allocation stalls, growth that had
to wait, vCPU hot-plug, blocking in the host's low state and an OOM restart (a whole step), and
``work_frac`` is how far a workload restarted by the OOM killer has recovered (its ``oom_scale``):
a restarting workload does only that fraction of its normal work, so killing a guest never pays.
"""

from __future__ import annotations

import numpy as np

from balloon_gym.core.params import Params


def throughput(
    cpu_factor: np.ndarray, stall_s: np.ndarray, work_frac: np.ndarray, params: Params
) -> np.ndarray:
    """Per-guest throughput in [0, 1], 0 for padding, ``(num_envs, max_guests)``."""
    mem_factor = 1.0 / (1.0 + stall_s / params.dt_s)
    return np.where(params.guest_mask, cpu_factor * mem_factor * work_frac, 0.0)


def sla_misses(tp: np.ndarray, params: Params) -> np.ndarray:
    """Guests whose throughput fell below their SLA this step, ``(num_envs, max_guests)`` bool."""
    return params.guest_mask & (tp < params.sla)
