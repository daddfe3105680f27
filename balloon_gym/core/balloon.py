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

from balloon_gym.core.ops import equation, maximum, minimum, select
from balloon_gym.core.params import Params
from balloon_gym.core.rows import row_sum_keep
from balloon_gym.core.state import State

_EPS_MIB = 1e-6


@equation
def alloc_request(action, alloc_target, delta_mode, delta_frac, min_mib, max_mib):
    """The allocation a memory action in [-1, 1] asks for, before the host's projection, MiB."""
    span = max_mib - min_mib
    absolute = min_mib + 0.5 * (action + 1.0) * span
    delta = alloc_target + action * delta_frac * span
    return minimum(maximum(select(delta_mode, delta, absolute), min_mib), max_mib)


@equation
def balloon_size(mem_mib, alloc, balloon_max_mib):
    """The balloon that leaves a guest ``alloc`` MiB of its memory, within the balloon cap."""
    return minimum(maximum(mem_mib - alloc, 0.0), balloon_max_mib)


@equation
def reserved_request(vcpu_action, vcpus):
    """vCPUs a vCPU action in [-1, 1] asks the driver to reserve (at least one stays active)."""
    return vcpus - (1.0 + np.rint(0.5 * (vcpu_action + 1.0) * (vcpus - 1.0)))


@equation
def outage(t, outage_left, u_outage, outage_start_step, outage_steps, outage_p, driver_present,
           guest_mask):  # fmt: skip
    """Driver up after this step, and the outage countdown (``availability``)."""
    left = select(t == outage_start_step, outage_steps, outage_left)
    left = select((left == 0) & (u_outage < outage_p), outage_steps, left)
    return driver_present & (left == 0) & guest_mask, maximum(left - 1, 0)


@equation
def reservation_rate(free, cache, anon_res, anon_swap, balloon_swap, swap_mib, cache_reclaim_mib,
                     swap_out_mib, alloc_mib):  # fmt: skip
    """The guest's maximum reservation change rate and the page cache it may drop, MiB."""
    swap_left = maximum(swap_mib - anon_swap - balloon_swap, 0.0)
    cache_cap = minimum(cache, cache_reclaim_mib)
    anon_cap = minimum(minimum(anon_res, swap_out_mib), swap_left)
    return minimum(alloc_mib, free + cache_cap + anon_cap), cache_cap


@equation
def move_guest(
    up, balloon_target, anon_res, anon_swap, cache, free, untouched, balloon, balloon_swap,
    swap_mib, cache_reclaim_mib, swap_out_mib, alloc_mib, rate_adaptive, request_mib, free_mib,
    stall_s_per_mib,
):  # fmt: skip
    """One driver step of a guest towards ``balloon_target`` if its driver is ``up`` (``move``).

    Returns the ``BalloonMove`` fields in order.
    """
    want = select(up, balloon_target - balloon, 0.0)
    # --- inflate: free -> cache -> swap out anon ---
    rate, cache_cap = reservation_rate(free, cache, anon_res, anon_swap, balloon_swap, swap_mib,
                                       cache_reclaim_mib, swap_out_mib, alloc_mib)  # fmt: skip
    request = minimum(maximum(want, 0.0), select(rate_adaptive, rate, request_mib))
    got = minimum(request, rate)
    from_free = minimum(got, free)
    from_cache = minimum(got - from_free, cache_cap)
    from_anon = got - from_free - from_cache
    excess = request - got
    # A naive driver that needs anon pages from a guest whose swap is full drives it into OOM.
    swap_left = swap_mib - anon_swap - balloon_swap - from_anon
    needs_anon = request > free + cache_cap + _EPS_MIB
    oom = (excess > _EPS_MIB) & needs_anon & (swap_left <= _EPS_MIB)
    # --- deflate: a user-level driver first drops the pages the guest swapped out ---
    release = minimum(maximum(-want, 0.0), free_mib)
    from_bswap = minimum(release, balloon_swap)
    to_guest = minimum(release - from_bswap, balloon)
    return (
        anon_res - from_anon,
        anon_swap + from_anon,
        cache - from_cache,
        free - from_free + to_guest,
        minimum(untouched, free - from_free) + to_guest,
        balloon + got - to_guest,
        balloon_swap - from_bswap,
        from_anon,
        from_cache,
        excess * stall_s_per_mib,
        oom,
        got + to_guest,
    )


@equation
def vcpu_step(reserved_target, reserved_vcpus, up, vcpu_change, vcpu_change_cost_s):
    """Reserved vCPUs after a rate-limited step towards the target, and its hot-plug stall, s."""
    limit = select(up, vcpu_change, 0.0)
    change = minimum(maximum(reserved_target - reserved_vcpus, -limit), limit)
    return reserved_vcpus + change, np.abs(change) * vcpu_change_cost_s


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
    p = params
    want = alloc_request(mem_action, state.alloc_target, p.delta_mode, p.delta_frac, p.min_mib,
                         p.max_mib)  # fmt: skip
    alloc = project_allocation(want, p)
    balloon_target = balloon_size(p.mem_mib, alloc, p.balloon_max_mib)
    return alloc, balloon_target, reserved_request(vcpu_action, p.vcpus)


def availability(
    state: State, params: Params, u_outage: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Driver up mask and outage countdown after this step, ``[G]``.

    A scheduled outage starts at ``outage_start_step``; random ones start with probability
    ``outage_p`` a step while the driver is up. Each lasts ``outage_steps`` steps.
    """
    p = params
    return outage(state.t[:, None], state.outage_left, u_outage, p.outage_start_step,
                  p.outage_steps, p.outage_p, p.driver_present, p.guest_mask)  # fmt: skip


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
    s, p = state, params
    rate, _ = reservation_rate(
        s.free, s.cache, s.anon_res, s.anon_swap, s.balloon_swap, p.swap_mib,
        p.cache_reclaim_mib, p.swap_out_mib, p.alloc_mib,
    )  # fmt: skip
    return rate


def move(state: State, balloon_target: np.ndarray, up: np.ndarray, params: Params) -> BalloonMove:
    """Inflate or deflate each balloon towards its target at the rates the guest allows."""
    s, p = state, params
    return BalloonMove(
        *move_guest(
            up, balloon_target, s.anon_res, s.anon_swap, s.cache, s.free, s.untouched, s.balloon,
            s.balloon_swap, p.swap_mib, p.cache_reclaim_mib, p.swap_out_mib, p.alloc_mib,
            p.rate_adaptive, p.request_mib, p.free_mib, p.stall_s_per_mib,
        )
    )  # fmt: skip


def vcpu_reservation(
    state: State, reserved_target: np.ndarray, up: np.ndarray, params: Params
) -> tuple[np.ndarray, np.ndarray]:
    """Reserved vCPUs after this step and the stall of hot-(un)plugging them, s ``[G]``."""
    p = params
    return vcpu_step(reserved_target, state.reserved_vcpus, up, p.vcpu_change,
                     p.vcpu_change_cost_s)  # fmt: skip
