"""State: the simulator's struct of arrays.

Every guest field has shape ``(num_envs, max_guests)`` (``[G]``), every host field ``(num_envs,)``
(``[N]``). Memory is in MiB of guest-physical memory unless the name says machine memory.

Per guest, always: ``kernel + anon_res + cache + free + balloon == mem``, ``untouched <= free``,
``anon_swap + balloon_swap <= swap``, ``host_swap <= anon_res + cache + free - untouched``.
Per host: ``sum(consumed) + reserved + host_free == host_mem`` with ``host_free >= 0``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from balloon_gym.core.ops import equation, select
from balloon_gym.core.params import (
    HIGH_FREE_FRAC,
    LOW_FREE_FRAC,
    SOFT_FREE_FRAC,
    STATE_MARGIN_FRAC,
    Params,
)
from balloon_gym.core.rows import row_sum


class State(NamedTuple):
    """Simulator state. Fields after ``# last step`` hold what the previous step measured."""

    t: np.ndarray  # [N] int, steps since reset
    # guest-physical memory, MiB
    anon_res: np.ndarray  # [G] resident anonymous memory
    anon_swap: np.ndarray  # [G] anonymous memory in guest swap
    cache: np.ndarray  # [G] page cache
    free: np.ndarray  # [G] guest-free memory (touched or not)
    untouched: np.ndarray  # [G] part of free never touched: no machine page behind it
    balloon: np.ndarray  # [G] pages held by the balloon (never backed)
    balloon_swap: np.ndarray  # [G] user-level balloon pages the guest swapped out
    host_swap: np.ndarray  # [G] guest pages whose machine page the host swapped out
    # scheduler's targets
    alloc_target: np.ndarray  # [G] memory the scheduler grants, MiB
    balloon_target: np.ndarray  # [G] balloon size asked of the driver, MiB
    reserved_vcpus: np.ndarray  # [G] vCPUs held by the driver
    # workload process
    burst_on: np.ndarray  # [G] bool, bursting
    phase_level: np.ndarray  # [G] demand level of the current phase
    phase_offset: np.ndarray  # [G] per-episode phase jitter, fraction of a period
    leak: np.ndarray  # [G] leaked anonymous memory, MiB
    oom_scale: np.ndarray  # [G] fraction of its hot set an OOM-killed workload re-read (1 = up)
    restart_left_s: np.ndarray  # [G] restart delay still to come after an OOM kill, s
    trace_vm: np.ndarray  # [G] int, the trace bank VM a trace guest replays this episode
    trace_pos: np.ndarray  # [G] trace position at reset, samples
    # driver availability
    outage_left: np.ndarray  # [G] int, steps of outage still to come
    # host's statistical estimate of each guest's active fraction
    active_fast: np.ndarray  # [G]
    active_slow: np.ndarray  # [G]
    # last step (what the driver and host report)
    swap_in: np.ndarray  # [G] guest swap-in, MiB
    swap_out: np.ndarray  # [G] guest swap-out, MiB
    fault_pages: np.ndarray  # [G] guest major faults, pages (anon + cache)
    anon_fault_pages: np.ndarray  # [G] of which hot anonymous pages swapped in, pages
    cache_fault_pages: np.ndarray  # [G] of which page cache re-read from disk, pages
    oom: np.ndarray  # [G] bool, the OOM killer fired
    alloc_stall_s: np.ndarray  # [G] allocation stalls caused by the balloon, s
    stall_s: np.ndarray  # [G] fault, allocation and hot-plug stalls of the time it ran, s
    lost_s: np.ndarray  # [G] time it did not run: blocked, or killed and restarting, s
    cpu_alloc: np.ndarray  # [G] pCPU time granted, pCPUs
    throughput: np.ndarray  # [G] fraction of demanded work done
    balloon_moved: np.ndarray  # [G] |balloon change|, MiB
    driver_up: np.ndarray  # [G] bool, the driver ran this step
    host_swap_out: np.ndarray  # [N] host swap-out, MiB
    host_swap_in: np.ndarray  # [N] host swap-in (host faults served), MiB

    @property
    def num_envs(self) -> int:
        """Batch size."""
        return self.t.shape[0]


@equation
def consumed(mem_mib, untouched, balloon, host_swap, guest_mask):
    """Machine memory a guest uses, MiB: every page but the untouched, ballooned and
    host-swapped ones; 0 for padding."""
    return (mem_mib - untouched - balloon - host_swap) * guest_mask


@equation
def touched(anon_res, cache, free, untouched):
    """Guest pages with a machine page behind them (host-swapped ones included), MiB."""
    return anon_res + cache + free - untouched


@equation
def memory_state(free_mib, host_mem_mib):
    """ESX free-memory state of a host: 0 high, 1 soft, 2 hard, 3 low (see
    :func:`host_memory_state`)."""
    frac = free_mib / host_mem_mib + STATE_MARGIN_FRAC
    return (
        select(frac < HIGH_FREE_FRAC, 1, 0)
        + select(frac < SOFT_FREE_FRAC, 1, 0)
        + select(frac < LOW_FREE_FRAC, 1, 0)
    )


def consumed_mib(state: State, params: Params) -> np.ndarray:
    """Machine memory each guest uses, MiB ``[G]`` (:func:`consumed`)."""
    return consumed(params.mem_mib, state.untouched, state.balloon, state.host_swap,
                    params.guest_mask)  # fmt: skip


def host_free_mib(state: State, params: Params) -> np.ndarray:
    """Free machine memory per host, MiB ``[N]``."""
    total = row_sum(consumed_mib(state, params))
    return params.host_mem_mib[:, 0] - params.host_reserved_mib[:, 0] - total


def host_memory_state(free_mib: np.ndarray, params: Params) -> np.ndarray:
    """ESX free-memory state per host ``[N]``: 0 high, 1 soft, 2 hard, 3 low.

    Thresholds: high >= 6 %, soft >= 4 %, hard >= 1 %, low < 1 % of machine memory. DESIGN
    lists hard >= 2 % and low < 1 %; the band [1 %, 2 %) is treated as hard, as in the ESX paper
    the host pages in both states and blocks guests only below the low line. A host must be
    below a line by ``STATE_MARGIN_FRAC`` to cross it (a compliant host sits exactly on 6 %).
    """
    return memory_state(free_mib, params.host_mem_mib[:, 0])
