"""What the scheduler sees (DESIGN 3.7): only what a balloon driver and the host can report.

Per guest, modelled on virtio-balloon's statistics: balloon actual and target, usable ("total")
memory, free, available, page cache, swap in and out, major faults, OOM kills, allocation stalls,
CPU utilisation, active vCPUs, whether the driver answers; the static config normalised; and,
where the host samples (``host.sampling``), ESX's estimate of the active fraction. Per host: free
fraction, memory state, host swap in and out, pCPU load. Never the true working set.

Every feature lies in [0, 1] by construction; padded guests are all zeros. The observation is
``float32`` and flat: ``max_guests * len(GUEST_FEATURES)`` guest features, guest-major, then
``len(HOST_FEATURES)`` host features.
"""

from __future__ import annotations

import numpy as np

from balloon_gym.core.params import Params
from balloon_gym.core.rows import row_sum
from balloon_gym.core.state import State, host_free_mib, host_memory_state

#: (name, unit or normalisation) of each per-guest feature, in order.
GUEST_FEATURES: tuple[tuple[str, str], ...] = (
    ("present", "1 for a real guest, 0 for padding"),
    ("balloon", "balloon size / mem_mib"),
    ("balloon_target", "balloon target / mem_mib"),
    ("usable", "(mem_mib - balloon) / mem_mib"),
    ("free", "guest-free memory / mem_mib"),
    ("available", "(free + page cache) / mem_mib"),
    ("cache", "page cache / mem_mib"),
    ("swap_in", "guest swap-in this step / max per step"),
    ("swap_out", "guest swap-out this step / max per step"),
    ("major_faults", "log10(1 + faults) / 8"),
    ("oom", "1 if the OOM killer fired this step"),
    ("alloc_stall", "allocation stall / dt_s"),
    ("cpu_util", "pCPU time granted / active vCPUs"),
    ("active_vcpus", "active vCPUs / vcpus"),
    ("driver_up", "1 if the driver answered this step"),
    ("active_estimate", "host's sampled active fraction (0 if not sampling)"),
    ("mem_size", "mem_mib / host mem_mib"),
    ("min", "min_mib / mem_mib"),
    ("floor", "least memory ballooning can leave: max(min_mib, mem_mib - balloon cap) / mem_mib"),
    ("max", "max_mib / mem_mib"),
    ("shares", "shares / sum of the host's shares"),
    ("vcpus", "vcpus / max(vcpus, pcpus)"),
)

#: (name, unit or normalisation) of each per-host feature, in order.
HOST_FEATURES: tuple[tuple[str, str], ...] = (
    ("host_free", "free machine memory / host mem_mib"),
    ("host_state", "memory state / 3 (0 high, 1/3 soft, 2/3 hard, 1 low)"),
    ("host_swap_out", "host swap-out this step / max per step"),
    ("host_swap_in", "host swap-in this step / max per step"),
    ("pcpu_load", "pCPU time granted / pcpus"),
    ("host_capacity", "memory the scheduler may hand out / host mem_mib"),
)

_FAULT_LOG_SCALE = 8.0


def observation_size(max_guests: int) -> int:
    """Length of the flat observation vector."""
    return max_guests * len(GUEST_FEATURES) + len(HOST_FEATURES)


def observe(state: State, params: Params) -> np.ndarray:
    """Observation of every host, ``(num_envs, observation_size(max_guests))`` float32.

    Features are written straight into one float32 buffer (no stacking of temporaries), then
    clipped to [0, 1] and zeroed for padding in place.
    """
    n, g = params.guest_mask.shape
    nf = len(GUEST_FEATURES)
    out = np.empty((n, g * nf + len(HOST_FEATURES)), dtype=np.float32)
    guest = out[:, : g * nf].reshape(n, g, nf)
    mem = params.mem_mib
    active = params.vcpus - state.reserved_vcpus
    columns = (
        1.0,
        state.balloon / mem,
        state.balloon_target / mem,
        (mem - state.balloon) / mem,
        state.free / mem,
        (state.free + state.cache) / mem,
        state.cache / mem,
        state.swap_in / params.swap_in_mib,
        state.swap_out / params.swap_out_mib,
        np.log10(1.0 + state.fault_pages) * (1.0 / _FAULT_LOG_SCALE),
        state.oom,
        state.alloc_stall_s / params.dt_s,
        state.cpu_alloc / active,
        active / params.vcpus,
        state.driver_up,
        np.maximum(state.active_fast, state.active_slow),
    )
    for k, column in enumerate(columns):
        guest[:, :, k] = column
    guest[:, :, : len(columns)] *= params.guest_mask[..., None]
    guest[:, :, len(columns) :] = params.obs_static  # mem_size, min, floor, max, shares, vcpus
    host = out[:, g * nf :]
    host_mem = params.host_mem_mib[:, 0]
    free = host_free_mib(state, params)
    host[:, 0] = free / host_mem
    host[:, 1] = host_memory_state(free, params) * (1.0 / 3.0)
    host[:, 2] = state.host_swap_out / params.host_swap_out_mib[:, 0]
    host[:, 3] = state.host_swap_in / params.host_swap_in_mib[:, 0]
    host[:, 4] = row_sum(state.cpu_alloc) / params.pcpus[:, 0]
    host[:, 5] = params.host_target_mib[:, 0] / host_mem
    np.minimum(np.maximum(out, 0.0, out=out), 1.0, out=out)
    return out
