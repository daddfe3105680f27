"""Throughput model (DESIGN 3.5): the fraction of demanded work each guest got done.

``throughput = cpu_factor * (1 - lost_s / dt_s) / (1 + stall_s / dt_s)``: ``lost_s`` is the time
the guest did not run at all (the whole step when blocked in the host's low state; the restart
delay and the re-reading of its hot set after an OOM kill), and it removes its fraction of the
step outright; ``stall_s`` is what slowed the time it did run: guest major faults, host faults,
growth that had to wait, allocation stalls and vCPU hot-plug. A blocked step, or a step spent
restarting, does no work. An OOM-killed workload restarts from the start of the step it was
killed in, so its throughput is 0 for ``ceil((oom_restart_s + hot / oom_reload_mib_s) / dt_s)``
steps but the last, which keeps the part of the step after its hot set is back.
"""

from __future__ import annotations

import numpy as np

from balloon_gym.core.ops import equation, select
from balloon_gym.core.params import Params
from balloon_gym.core.workload import recover


@equation
def total_stall(guest_stall_s, alloc_stall_s, vcpu_stall_s):
    """Stalls of the time a guest ran, s: faults, host faults and growth that had to wait (the
    guest's), allocation stalls and vCPU hot-plug."""
    return guest_stall_s + alloc_stall_s + vcpu_stall_s


@equation
def restart(oom, restart_left_s, oom_scale, leak, lost_s, hot_mib, oom_restart_s,
            oom_reload_mib_s, dt_s):  # fmt: skip
    """A workload the OOM killer hit restarts from the start of the step: ``oom_restart_s`` of
    delay, then its hot set ``hot_mib`` re-read (:func:`workload.recover`), its leak gone.

    Returns ``restart_left_s``, ``oom_scale``, ``leak`` and the recovery's lost time of the step
    (s), unchanged where the killer did not fire.
    """
    left, scale, lost = recover(oom_restart_s, 0.0, hot_mib, oom_reload_mib_s, dt_s)
    return (select(oom, left, restart_left_s), select(oom, scale, oom_scale),
            select(oom, 0.0, leak), select(oom, lost, lost_s))  # fmt: skip


@equation
def lost_time(blocked, restart_lost_s, dt_s):
    """Time a guest did not run this step, s: all of it if blocked, else its OOM recovery's."""
    return select(blocked, dt_s, restart_lost_s)


@equation
def guest_throughput(cpu_factor, stall_s, lost_s, dt_s, guest_mask):
    """Throughput of a guest, 0 for padding (see :func:`throughput`)."""
    run_frac = 1.0 - lost_s / dt_s
    return select(guest_mask, cpu_factor * run_frac / (1.0 + stall_s / dt_s), 0.0)


@equation
def sla_miss(tp, sla, guest_mask):
    """A guest below its SLA throughput this step."""
    return guest_mask & (tp < sla)


def throughput(
    cpu_factor: np.ndarray, stall_s: np.ndarray, lost_s: np.ndarray, params: Params
) -> np.ndarray:
    """Per-guest throughput in [0, 1], 0 for padding, ``(num_envs, max_guests)``."""
    return guest_throughput(cpu_factor, stall_s, lost_s, params.dt_s, params.guest_mask)


def sla_misses(tp: np.ndarray, params: Params) -> np.ndarray:
    """Guests whose throughput fell below their SLA this step, ``(num_envs, max_guests)`` bool."""
    return sla_miss(tp, params.sla, params.guest_mask)
