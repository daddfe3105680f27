"""Guest OS memory (DESIGN 3.2): footprint changes, page cache, guest swap, faults, OOM.

Runs after the balloon driver has moved. The guest keeps hot anonymous pages resident first,
then cold ones, then page cache; what does not fit goes to its own swap, coldest first, at the
swap rates. Growth takes free pages (touched ones first), then drops page cache, then swaps out
(a user-level balloon's pages first: to the guest they are the coldest pages it has).

A guest can only touch a page that has no machine page behind it (an *untouched* free page, a
swapped-out user-level balloon page, a host-swapped page) as far as its ``budget`` of new machine
pages allows: the host hands out no memory it does not have. Growth that cannot be met this step
waits (stall). A footprint larger than usable memory plus guest swap fires the OOM killer.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from balloon_gym.core.balloon import BalloonMove
from balloon_gym.core.ops import equation, maximum, minimum, select
from balloon_gym.core.params import PAGES_PER_MIB, Params
from balloon_gym.core.workload import Demand

_EPS_MIB = 1e-6

CACHE_REREAD_FRAC = 0.02
"""Fraction of the missing *cold* page cache the workload re-reads from disk each step (our
choice); the hot part of the cache is read every step, so all of its missing part faults."""


class GuestStep(NamedTuple):
    """Guest memory after the step and what it cost, all ``(num_envs, max_guests)``."""

    anon_res: np.ndarray
    anon_swap: np.ndarray
    cache: np.ndarray
    free: np.ndarray
    untouched: np.ndarray
    balloon: np.ndarray
    balloon_swap: np.ndarray
    host_swap: np.ndarray
    swap_in: np.ndarray  # MiB
    swap_out: np.ndarray  # MiB (for the workload and the balloon)
    fault_pages: np.ndarray  # guest major faults, pages (anon + cache)
    anon_fault_pages: np.ndarray  # of which hot anonymous pages swapped in, pages
    cache_fault_pages: np.ndarray  # of which page cache re-read from disk, pages
    host_fault_pages: np.ndarray  # host faults, pages
    host_swap_in: np.ndarray  # MiB brought back by the host
    oom: np.ndarray  # bool
    stall_s: np.ndarray  # s lost to faults, host faults and growth that had to wait


@equation
def take_free(want, free, untouched, budget):
    """Take up to ``want`` free pages, touched ones first, untouched ones within ``budget``.

    Returns:
        ``taken``, and ``free``, ``untouched``, ``budget`` after the take.
    """
    touched_free = free - untouched
    taken = minimum(want, touched_free + minimum(untouched, budget))
    used_untouched = maximum(taken - touched_free, 0.0)
    return taken, free - taken, untouched - used_untouched, budget - used_untouched


@equation
def new_pages(anon_mib, wss_mib, cache_mib, anon_res, anon_swap, cache, host_swap):
    """Upper estimate of the new machine pages a guest could touch this step, MiB."""
    grow = maximum(anon_mib - anon_res - anon_swap, 0.0)
    hot_out = maximum(minimum(wss_mib, anon_res + anon_swap) - anon_res, 0.0)
    fill = maximum(cache_mib - cache, 0.0)
    return grow + hot_out + fill + host_swap


def machine_demand(m: BalloonMove, host_swap: np.ndarray, d: Demand) -> np.ndarray:
    """Upper estimate of the new machine pages each guest could touch this step, MiB ``[G]``."""
    return new_pages(d.anon_mib, d.wss_mib, d.cache_mib, m.anon_res, m.anon_swap, m.cache,
                     host_swap)  # fmt: skip


@equation
def oom_and_shrink(
    anon_mib, wss_mib, anon_res, anon_swap, free, balloon, balloon_swap, forced_oom, mem_mib,
    kernel_mib, swap_mib, guest_mask,
):  # fmt: skip
    """OOM kill, then the footprint's shrink: freed anon leaves swap first, then becomes
    touched free memory.

    Returns ``oom``, ``anon_res``, ``anon_swap``, ``free``, the footprint and hot set wanted.
    """
    usable = mem_mib - kernel_mib - balloon
    oom = ((anon_mib > usable + swap_mib - balloon_swap + _EPS_MIB) | forced_oom) & guest_mask
    free = free + select(oom, anon_res, 0.0)
    anon_res = select(oom, 0.0, anon_res)
    anon_swap = select(oom, 0.0, anon_swap)
    anon_want = select(oom, 0.0, anon_mib)
    hot_want = select(oom, 0.0, wss_mib)
    release = maximum(anon_res + anon_swap - anon_want, 0.0)
    from_swap = minimum(release, anon_swap)
    anon_swap = anon_swap - from_swap
    anon_res = anon_res - (release - from_swap)
    free = free + (release - from_swap)
    return oom, anon_res, anon_swap, free, anon_want, hot_want


@equation
def grow(
    anon_want, anon_res, anon_swap, free, untouched, cache, balloon, balloon_swap, budget,
    cache_dropped, swap_out, cache_reclaim_mib, swap_out_mib, swap_mib, user_driver, dt_s,
):  # fmt: skip
    """Growth takes free pages, then page cache, then swaps out (a user balloon's pages first);
    what it cannot get this step waits.

    Returns ``anon_res``, ``anon_swap``, ``free``, ``untouched``, ``cache``, ``balloon``,
    ``balloon_swap``, ``budget``, the page cache it may still drop, ``swap_out`` and the stall.
    """
    cache_left = cache_reclaim_mib - cache_dropped
    swap_out_left = swap_out_mib - swap_out
    want = maximum(anon_want - anon_res - anon_swap, 0.0)
    take_f, free, untouched, budget = take_free(want, free, untouched, budget)
    take_c = minimum(want - take_f, minimum(cache, cache_left))
    cache_left = cache_left - take_c
    rem = want - take_f - take_c
    swap_room = maximum(swap_mib - anon_swap - balloon_swap, 0.0)
    out_b = minimum(minimum(rem, swap_out_left), minimum(swap_room, budget))
    out_b = select(user_driver, minimum(out_b, balloon), 0.0)
    budget = budget - out_b
    out_a = minimum(minimum(rem - out_b, anon_res), minimum(swap_out_left, swap_room) - out_b)
    unmet = rem - out_b - out_a
    stall_s = dt_s * minimum(1.0, unmet / maximum(swap_out_mib, _EPS_MIB))
    return (
        anon_res + take_f + take_c + out_b,
        anon_swap + out_a,
        free,
        untouched,
        cache - take_c,
        balloon - out_b,
        balloon_swap + out_b,
        budget,
        cache_left,
        swap_out + out_a + out_b,
        stall_s,
    )


@equation
def lru_targets(anon, hot, cache_mib, cache_hot_frac, usable, swap_room, swappiness):
    """Resident anonymous memory and page cache the guest's LRU balance keeps, MiB.

    Hot pages first (hot anon, then hot cache); the room left holds cold pages, and what does
    not fit is evicted from cold anon and cold cache in proportion to ``swappiness * cold_anon``
    and ``(200 - swappiness) * cold_cache`` (Linux scans its anon and file LRU lists with those
    weights times their sizes), anon only as far as ``swap_room`` takes it.

    Returns the anon and page-cache targets.
    """
    hot_k = cache_hot_frac * cache_mib
    hot_a_res = minimum(hot, usable)
    hot_k_res = minimum(hot_k, usable - hot_a_res)
    cold_a = anon - hot
    cold_k = cache_mib - hot_k
    evict = maximum(cold_a + cold_k - (usable - hot_a_res - hot_k_res), 0.0)
    w_a = swappiness * cold_a
    w_k = (200.0 - swappiness) * cold_k
    out_a = evict * w_a / maximum(w_a + w_k, _EPS_MIB)
    out_a = minimum(maximum(out_a, evict - cold_k), cold_a)
    out_a = minimum(out_a, maximum(swap_room - (hot - hot_a_res), 0.0))
    anon_target = anon - (hot - hot_a_res) - out_a
    return anon_target, maximum(minimum(cache_mib, usable - anon_target), 0.0)


@equation
def balance_cache(
    cache_mib, cache_target, anon_target, anon_res, anon_swap, cache, free, untouched, budget,
    balloon_swap, swap_out, swap_out_mib, swap_mib,
):  # fmt: skip
    """Page cache: drop what the workload no longer wants, fill from free pages, then take the
    frames of cold anonymous pages above their target (swapped out, within the swap-out rate
    left and swap space) while the cache is below its target.

    Returns ``anon_res``, ``anon_swap``, ``cache``, ``free``, ``untouched``, ``budget`` and
    ``swap_out``.
    """
    drop = maximum(cache - cache_mib, 0.0)
    cache, free = cache - drop, free + drop
    fill, free, untouched, budget = take_free(cache_mib - cache, free, untouched, budget)
    cache = cache + maximum(fill, 0.0)
    swap_room = maximum(swap_mib - anon_swap - balloon_swap, 0.0)
    rate_left = maximum(swap_out_mib - swap_out, 0.0)
    out = minimum(maximum(cache_target - cache, 0.0), maximum(anon_res - anon_target, 0.0))
    out = minimum(out, minimum(rate_left, swap_room))
    return anon_res - out, anon_swap + out, cache + out, free, untouched, budget, swap_out + out


@equation
def cache_faults(cache_mib, cache_hot_frac, cache):
    """Page cache re-read from disk, pages: the missing hot part (read every step) and
    ``CACHE_REREAD_FRAC`` of the missing cold part. Resident cache is the hot part first."""
    hot_k = cache_hot_frac * cache_mib
    hot_missing = maximum(hot_k - cache, 0.0)
    cold_missing = maximum(cache_mib - maximum(cache, hot_k), 0.0)
    return (hot_missing + CACHE_REREAD_FRAC * cold_missing) * PAGES_PER_MIB


@equation
def swap_in_hot(hot_want, anon_res, anon_swap, free, untouched, cache, budget, cache_left,
                swap_in_mib):  # fmt: skip
    """Hot pages not resident fault; the guest brings them back from its swap.

    Returns the hot set, ``anon_res``, ``anon_swap``, ``free``, ``untouched``, ``cache``,
    ``budget``, the swap-in (MiB) and the major faults (pages).
    """
    hot = minimum(hot_want, anon_res + anon_swap)
    hot_out = maximum(hot - anon_res, 0.0)
    want_in = minimum(hot_out, swap_in_mib)
    in_f, free, untouched, budget = take_free(want_in, free, untouched, budget)
    in_c = minimum(want_in - in_f, minimum(cache, cache_left))
    swap_in = in_f + in_c
    return (hot, anon_res + swap_in, anon_swap - swap_in, free, untouched, cache - in_c, budget,
            swap_in, hot_out * PAGES_PER_MIB)  # fmt: skip


@equation
def report_and_host_faults(
    hot, anon_res, cache, free, untouched, host_swap, budget, host_in_scale, report_frac,
):  # fmt: skip
    """Free page reporting hands touched free pages back to the host (host-swapped pages among
    them leave with them, in proportion); host-swapped pages are hit in proportion to the hot
    share of touched memory, and the host brings back what it can.

    Returns ``untouched``, ``host_swap`` (before the host's swap-in), the host's swap-in (MiB)
    and the host faults (pages).
    """
    t = anon_res + cache + free - untouched
    reported = (free - untouched) * report_frac
    untouched = untouched + reported
    kept = 1.0 - reported / maximum(t, _EPS_MIB)
    t = t - reported
    host_swap = minimum(host_swap * kept, t)
    hot_share = minimum(hot, anon_res) / maximum(t, _EPS_MIB)
    host_hot = host_swap * minimum(hot_share, 1.0)
    host_in = minimum(host_hot * host_in_scale, budget)
    return untouched, host_swap, host_in, host_hot * PAGES_PER_MIB


@equation
def update_guest(
    anon_mib, wss_mib, cache_mib, anon_res, anon_swap, cache, free, untouched, balloon,
    balloon_swap, host_swap, budget, host_in_scale, forced_oom, cache_dropped, swap_out,
    mem_mib, kernel_mib, swap_mib, cache_reclaim_mib, swap_out_mib, swap_in_mib, user_driver,
    report_frac, fault_s, host_fault_s, dt_s, guest_mask, cache_hot_frac, swappiness,
):  # fmt: skip
    """One step of a guest's memory management (:func:`update`): the ``GuestStep`` fields."""
    oom, anon_res, anon_swap, free, anon_want, hot_want = oom_and_shrink(
        anon_mib, wss_mib, anon_res, anon_swap, free, balloon, balloon_swap, forced_oom,
        mem_mib, kernel_mib, swap_mib, guest_mask,
    )  # fmt: skip
    (anon_res, anon_swap, free, untouched, cache, balloon, balloon_swap, budget, cache_left,
     swap_out, stall_s) = grow(
        anon_want, anon_res, anon_swap, free, untouched, cache, balloon, balloon_swap, budget,
        cache_dropped, swap_out, cache_reclaim_mib, swap_out_mib, swap_mib, user_driver, dt_s,
    )  # fmt: skip
    hot, anon_res, anon_swap, free, untouched, cache, budget, swap_in, anon_pages = swap_in_hot(
        hot_want, anon_res, anon_swap, free, untouched, cache, budget, cache_left, swap_in_mib
    )
    anon_target, cache_target = lru_targets(
        anon_res + anon_swap, hot, cache_mib, cache_hot_frac, mem_mib - kernel_mib - balloon,
        swap_mib - balloon_swap, swappiness,
    )  # fmt: skip
    anon_res, anon_swap, cache, free, untouched, budget, swap_out = balance_cache(
        cache_mib, cache_target, anon_target, anon_res, anon_swap, cache, free, untouched,
        budget, balloon_swap, swap_out, swap_out_mib, swap_mib,
    )  # fmt: skip
    cache_pages = cache_faults(cache_mib, cache_hot_frac, cache)
    fault_pages = anon_pages + cache_pages
    stall_s = stall_s + fault_pages * fault_s
    untouched, host_swap, host_in, host_fault_pages = report_and_host_faults(
        hot, anon_res, cache, free, untouched, host_swap, budget, host_in_scale, report_frac
    )
    stall_s = stall_s + host_fault_pages * host_fault_s
    return (anon_res, anon_swap, cache, free, untouched, balloon, balloon_swap,
            host_swap - host_in, swap_in, swap_out, fault_pages, anon_pages, cache_pages,
            host_fault_pages, host_in, oom, stall_s)  # fmt: skip


def update(
    m: BalloonMove,
    host_swap: np.ndarray,
    d: Demand,
    budget: np.ndarray,
    host_in_scale: np.ndarray,
    params: Params,
) -> GuestStep:
    """One step of guest memory management.

    Args:
        m: Memory after the balloon driver moved.
        host_swap: Host-swapped pages of each guest after the balloon moved, MiB.
        d: Workload demand this step.
        budget: New machine pages each guest may touch, MiB.
        host_in_scale: ``(num_envs, 1)`` fraction of host faults the host can serve this step.
        params: Scenario arrays.
    """
    p = params
    return GuestStep(
        *update_guest(
            d.anon_mib, d.wss_mib, d.cache_mib, m.anon_res, m.anon_swap, m.cache, m.free,
            m.untouched, m.balloon, m.balloon_swap, host_swap, budget, host_in_scale, m.oom,
            m.cache_dropped, m.swap_out, p.mem_mib, p.kernel_mib, p.swap_mib,
            p.cache_reclaim_mib, p.swap_out_mib, p.swap_in_mib, p.user_driver, p.report_frac,
            p.fault_s, p.host_fault_s, p.dt_s, p.guest_mask, p.cache_hot_frac, p.swappiness,
        )
    )  # fmt: skip
