"""The balloon driver (DESIGN 3.3): targets, availability, inflate/deflate, vCPU reservation.

Inflation takes pages through the guest's allocator in order: free pages (touched ones first, as
the allocator hands out recently freed pages first), page cache the guest drops, then anonymous
pages the guest swaps out, coldest first. The sum of what each stage can give in one step, capped
by the driver's own allocation rate, is the guest's **maximum reservation change rate**. A
``rate_adaptive`` driver never asks for more (claim 8); a naive one asks ``request_mib`` a step
regardless and the excess becomes allocation stalls, and an OOM kill once guest swap is full.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from balloon_gym.core.params import Params
from balloon_gym.core.rows import row_sum_keep
from balloon_gym.core.state import State

_EPS_MIB = 1e-6


def project_allocation(alloc: np.ndarray, params: Params) -> np.ndarray:
    """Scale allocations above ``min_mib`` down until the host can hold them, MiB ``[G]``.

    Every guest keeps its ``min_mib``; what lies above it shrinks by one factor per host so that
    the sum fits ``host_target_mib`` (machine memory less the reserve and the high-state margin).
    """
    above = np.where(params.guest_mask, alloc - params.min_mib, 0.0)
    mins = row_sum_keep(np.where(params.guest_mask, params.min_mib, 0.0))
    room = np.maximum(params.host_target_mib - mins, 0.0)
    total = row_sum_keep(above)
    scale = np.minimum(1.0, room / np.maximum(total, _EPS_MIB))
    return params.min_mib + above * scale


def targets(
    state: State, mem_action: np.ndarray, vcpu_action: np.ndarray, params: Params
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turn a normalised action into allocation, balloon and active-vCPU targets.

    Args:
        state: State before the step (its targets are the base of delta mode).
        mem_action: ``[G]`` memory action in [-1, 1].
        vcpu_action: ``[G]`` vCPU action in [-1, 1].
        params: Scenario arrays.

    Returns:
        ``alloc_target`` (MiB), ``balloon_target`` (MiB), ``reserved_target`` (vCPUs), ``[G]``.
    """
    span = params.max_mib - params.min_mib
    u = 0.5 * (mem_action + 1.0)
    absolute = params.min_mib + u * span
    delta = state.alloc_target + mem_action * params.delta_frac * span
    alloc = np.where(params.delta_mode, delta, absolute)
    alloc = project_allocation(
        np.minimum(np.maximum(alloc, params.min_mib), params.max_mib), params
    )
    balloon_target = np.minimum(np.maximum(params.mem_mib - alloc, 0.0), params.balloon_max_mib)
    active = 1.0 + np.rint(0.5 * (vcpu_action + 1.0) * (params.vcpus - 1.0))
    return alloc, balloon_target, params.vcpus - active


def availability(
    state: State, params: Params, u_outage: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Driver up mask and outage countdown after this step, ``[G]``.

    A scheduled outage starts at ``outage_start_step``; random ones start with probability
    ``outage_p`` a step while the driver is up. Each lasts ``outage_steps`` steps.
    """
    left = np.where(
        state.t[:, None] == params.outage_start_step, params.outage_steps, state.outage_left
    )
    left = np.where((left == 0) & (u_outage < params.outage_p), params.outage_steps, left)
    up = params.driver_present & (left == 0) & params.guest_mask
    return up, np.maximum(left - 1, 0)


class BalloonMove(NamedTuple):
    """Result of one driver step, all ``[G]``."""

    anon_res: np.ndarray
    anon_swap: np.ndarray
    cache: np.ndarray
    free: np.ndarray
    untouched: np.ndarray
    balloon: np.ndarray
    balloon_swap: np.ndarray
    swap_out: np.ndarray  # MiB the guest swapped out for the balloon
    cache_dropped: np.ndarray  # MiB of page cache dropped for the balloon
    alloc_stall_s: np.ndarray  # s lost to a naive driver's failed requests
    oom: np.ndarray  # bool: a naive driver pushed a guest with full swap
    moved: np.ndarray  # |balloon change|, MiB


def max_reservation_rate(state: State, params: Params) -> np.ndarray:
    """The guest's maximum reservation change rate right now, MiB per step ``[G]``."""
    swap_left = np.maximum(params.swap_mib - state.anon_swap - state.balloon_swap, 0.0)
    cache_cap = np.minimum(state.cache, params.cache_reclaim_mib)
    anon_cap = np.minimum(np.minimum(state.anon_res, params.swap_out_mib), swap_left)
    return np.minimum(params.alloc_mib, state.free + cache_cap + anon_cap)


def move(state: State, balloon_target: np.ndarray, up: np.ndarray, params: Params) -> BalloonMove:
    """Inflate or deflate each balloon towards its target at the rates the guest allows."""
    want = np.where(up, balloon_target - state.balloon, 0.0)
    inflate = np.maximum(want, 0.0)
    # --- inflate: free -> cache -> swap out anon ---
    rate = max_reservation_rate(state, params)
    request = np.minimum(inflate, np.where(params.rate_adaptive, rate, params.request_mib))
    got = np.minimum(request, rate)
    cache_cap = np.minimum(state.cache, params.cache_reclaim_mib)
    from_free = np.minimum(got, state.free)
    from_cache = np.minimum(got - from_free, cache_cap)
    from_anon = got - from_free - from_cache
    excess = request - got
    # A naive driver that needs anon pages from a guest whose swap is full drives it into OOM.
    swap_left = params.swap_mib - state.anon_swap - state.balloon_swap - from_anon
    needs_anon = request > state.free + cache_cap + _EPS_MIB
    oom = (excess > _EPS_MIB) & needs_anon & (swap_left <= _EPS_MIB)
    # --- deflate: a user-level driver first drops the pages the guest swapped out ---
    release = np.minimum(np.maximum(-want, 0.0), params.free_mib)
    from_bswap = np.minimum(release, state.balloon_swap)
    to_guest = np.minimum(release - from_bswap, state.balloon)
    free = state.free - from_free + to_guest
    untouched = np.minimum(state.untouched, state.free - from_free) + to_guest
    return BalloonMove(
        anon_res=state.anon_res - from_anon,
        anon_swap=state.anon_swap + from_anon,
        cache=state.cache - from_cache,
        free=free,
        untouched=untouched,
        balloon=state.balloon + got - to_guest,
        balloon_swap=state.balloon_swap - from_bswap,
        swap_out=from_anon,
        cache_dropped=from_cache,
        alloc_stall_s=excess * params.stall_s_per_mib,
        oom=oom,
        moved=got + to_guest,
    )


def vcpu_reservation(
    state: State, reserved_target: np.ndarray, up: np.ndarray, params: Params
) -> tuple[np.ndarray, np.ndarray]:
    """Reserved vCPUs after this step and the stall of hot-(un)plugging them, s ``[G]``."""
    limit = np.where(up, params.vcpu_change, 0)
    change = np.minimum(np.maximum(reserved_target - state.reserved_vcpus, -limit), limit)
    return state.reserved_vcpus + change, np.abs(change) * params.vcpu_change_cost_s
