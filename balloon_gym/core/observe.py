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

from balloon_gym.core.ops import equation, maximum, per, select
from balloon_gym.core.params import Params
from balloon_gym.core.rows import row_sum
from balloon_gym.core.state import State, host_free_mib, memory_state

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

_GUEST_INDEX = {name: i for i, (name, _) in enumerate(GUEST_FEATURES)}
#: Guest features that are the guest's own (the rest, from ``mem_size`` on, come from
#: ``params.obs_static``).
NUM_DYNAMIC = _GUEST_INDEX["mem_size"]
FAULT_FEATURE = _GUEST_INDEX["major_faults"]
#: The features :func:`guest_observation` returns, in order: the dynamic ones but
#: ``major_faults`` (:func:`fault_feature`, which stays numpy's: its SIMD ``log10``).
GUEST_OBSERVATION = tuple(i for i in range(NUM_DYNAMIC) if i != FAULT_FEATURE)


@equation
def guest_observation(
    mem_mib, balloon, balloon_target, free, cache, swap_in, swap_in_mib, swap_out, swap_out_mib,
    oom, alloc_stall_s, dt_s, cpu_alloc, reserved_vcpus, vcpus, driver_up, active_fast,
    active_slow,
):  # fmt: skip
    """A guest's features of ``GUEST_OBSERVATION``, in order, before the mask and the clip."""
    active = vcpus - reserved_vcpus
    return (
        1.0,
        per(balloon, mem_mib),
        per(balloon_target, mem_mib),
        per(mem_mib - balloon, mem_mib),
        per(free, mem_mib),
        per(free + cache, mem_mib),
        per(cache, mem_mib),
        swap_in / swap_in_mib,
        swap_out / swap_out_mib,
        select(oom, 1.0, 0.0),
        alloc_stall_s / dt_s,
        cpu_alloc / active,
        active / vcpus,
        select(driver_up, 1.0, 0.0),
        maximum(active_fast, active_slow),
    )


def fault_feature(fault_pages: np.ndarray) -> np.ndarray:
    """The ``major_faults`` feature before the mask and the clip (numpy on both backends)."""
    return np.log10(1.0 + fault_pages) * (1.0 / _FAULT_LOG_SCALE)


@equation
def host_observation(
    free_mib, host_mem_mib, host_swap_out, host_swap_out_mib, host_swap_in, host_swap_in_mib,
    cpu_alloc_sum, pcpus, host_target_mib,
):  # fmt: skip
    """A host's ``HOST_FEATURES``, in order, before the clip."""
    return (
        free_mib / host_mem_mib,
        memory_state(free_mib, host_mem_mib) * (1.0 / 3.0),
        host_swap_out / host_swap_out_mib,
        host_swap_in / host_swap_in_mib,
        cpu_alloc_sum / pcpus,
        host_target_mib / host_mem_mib,
    )


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
    s, p = state, params
    columns = guest_observation(
        p.mem_mib, s.balloon, s.balloon_target, s.free, s.cache, s.swap_in, p.swap_in_mib,
        s.swap_out, p.swap_out_mib, s.oom, s.alloc_stall_s, p.dt_s, s.cpu_alloc,
        s.reserved_vcpus, p.vcpus, s.driver_up, s.active_fast, s.active_slow,
    )  # fmt: skip
    for k, column in zip(GUEST_OBSERVATION, columns, strict=True):
        guest[:, :, k] = column
    guest[:, :, FAULT_FEATURE] = fault_feature(s.fault_pages)
    guest[:, :, :NUM_DYNAMIC] *= p.guest_mask[..., None]
    guest[:, :, NUM_DYNAMIC:] = p.obs_static  # mem_size, min, floor, max, shares, vcpus
    host = out[:, g * nf :]
    columns = host_observation(
        host_free_mib(s, p), p.host_mem_mib[:, 0], s.host_swap_out, p.host_swap_out_mib[:, 0],
        s.host_swap_in, p.host_swap_in_mib[:, 0], row_sum(s.cpu_alloc), p.pcpus[:, 0],
        p.host_target_mib[:, 0],
    )  # fmt: skip
    for k, column in enumerate(columns):
        host[:, k] = column
    np.minimum(np.maximum(out, 0.0, out=out), 1.0, out=out)
    return out
