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
from balloon_gym.core.params import GROWTH_HEADROOM_FRAC, Params
from balloon_gym.core.rows import row_sum_keep, water_level
from balloon_gym.core.state import State, consumed_mib

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


@equation
def projection_parts(alloc, min_mib, mem_mib, consumed, host_swap, guest_mask):
    """A guest's terms in the host's projection, MiB.

    Its *claim* on machine memory is what it consumes plus what the host swapped out of it
    (those pages come back as soon as they are touched), plus a growth head room of
    ``GROWTH_HEADROOM_FRAC`` of its memory. Returns the claim up to ``min_mib`` (``base``), the
    target above ``min_mib`` (``span``, what the projection scales) and the claim above
    ``min_mib`` that the target bounds (``cap``, at most ``span``): at scale ``s`` the guest
    may hold ``min(min + s * span, claim) == base + min(s * span, cap)``.
    """
    claim = consumed + host_swap + GROWTH_HEADROOM_FRAC * mem_mib
    base = select(guest_mask, minimum(min_mib, claim), 0.0)
    span = select(guest_mask, maximum(alloc - min_mib, 0.0), 0.0)
    return base, span, minimum(maximum(claim - min_mib, 0.0), span)


@equation
def projection_scale(room, cap_sum, level):
    """The host's scale of the targets above ``min_mib``: 1 while the bounded consumed memory
    fits ``room`` (no reclaim), else the level at which it does (0 if even ``min_mib`` does
    not fit)."""
    short = select(room > 0.0, minimum(maximum(level, 0.0), 1.0), 0.0)
    return select(cap_sum <= room, 1.0, short)


def project_allocation(
    alloc: np.ndarray, consumed: np.ndarray, host_swap: np.ndarray, params: Params
) -> np.ndarray:
    """Scale allocations above ``min_mib`` down as far as the host needs, MiB ``[G]``.

    The scheduler's allocation is a ceiling on what a guest may hold. The host reclaims only
    when the machine memory its guests consume, each bounded by its target, exceeds
    ``host_target_mib`` (machine memory less the reserve and the high-state margin: ESX starts
    ballooning below the high line). It then scales every target's part above ``min_mib`` by
    one factor per host, the largest at which ``sum(min(target, consumed))`` fits: targets
    above what their guest consumes bind on nobody, so only the guests that hold their
    targets give memory. While consumed memory fits, the targets stay as asked (a policy can
    leave every balloon at zero); once every guest holds its target this is the plain
    projection of ``sum(target)`` onto ``host_target_mib``.
    """
    base, span, cap = projection_parts(alloc, params.min_mib, params.mem_mib, consumed, host_swap,
                                       params.guest_mask)  # fmt: skip
    room = params.host_target_mib - row_sum_keep(base)
    cap_sum = row_sum_keep(cap)
    if (cap_sum <= room).all():  # no host is short (the common case): no sort
        return params.min_mib + span
    level = water_level(cap, span, room)
    return params.min_mib + span * projection_scale(room, cap_sum, level)


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
    alloc = project_allocation(want, consumed_mib(state, p), state.host_swap, p)
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
