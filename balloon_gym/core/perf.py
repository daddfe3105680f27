"""Throughput model (DESIGN 3.5): the fraction of demanded work each guest got done.

``throughput = cpu_factor * mem_factor * work_frac`` with ``mem_factor = 1 / (1 + stall_s /
dt_s)``, where the stall sums guest major faults, host faults, allocation stalls, growth that had
to wait, vCPU hot-plug, blocking in the host's low state and an OOM restart (a whole step), and
``work_frac`` is how far a workload restarted by the OOM killer has recovered (its ``oom_scale``):
a restarting workload does only that fraction of its normal work, so killing a guest never pays.
"""

from __future__ import annotations

import numpy as np

from balloon_gym.core.ops import equation, select
from balloon_gym.core.params import Params


@equation
def total_stall(guest_stall_s, alloc_stall_s, vcpu_stall_s, lost, dt_s):
    """All guest time lost in a step, s: faults, host faults and growth that had to wait (the
    guest's), allocation stalls, vCPU hot-plug, and a whole step when ``lost`` (blocked in the
    host's low state, or an OOM restart)."""
    return guest_stall_s + alloc_stall_s + vcpu_stall_s + dt_s * lost


@equation
def restart(oom, oom_scale, leak, oom_restart_frac):
    """A workload the OOM killer hit restarts at ``oom_restart_frac`` of its footprint, leak
    gone: its ``oom_scale`` and ``leak`` after the step."""
    return select(oom, oom_restart_frac, oom_scale), select(oom, 0.0, leak)


@equation
def guest_throughput(cpu_factor, stall_s, work_frac, dt_s, guest_mask):
    """Throughput of a guest, 0 for padding (see :func:`throughput`)."""
    mem_factor = 1.0 / (1.0 + stall_s / dt_s)
    return select(guest_mask, cpu_factor * mem_factor * work_frac, 0.0)


@equation
def sla_miss(tp, sla, guest_mask):
    """A guest below its SLA throughput this step."""
    return guest_mask & (tp < sla)


def throughput(
    cpu_factor: np.ndarray, stall_s: np.ndarray, work_frac: np.ndarray, params: Params
) -> np.ndarray:
    """Per-guest throughput in [0, 1], 0 for padding, ``(num_envs, max_guests)``."""
    return guest_throughput(cpu_factor, stall_s, work_frac, params.dt_s, params.guest_mask)


def sla_misses(tp: np.ndarray, params: Params) -> np.ndarray:
    """Guests whose throughput fell below their SLA this step, ``(num_envs, max_guests)`` bool."""
    return sla_miss(tp, params.sla, params.guest_mask)
