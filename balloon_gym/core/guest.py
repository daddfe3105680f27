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
from balloon_gym.core.params import PAGES_PER_MIB, Params
from balloon_gym.core.workload import Demand

_EPS_MIB = 1e-6

CACHE_REREAD_FRAC = 0.02
"""Fraction of the missing page cache the workload re-reads from disk each step (our choice)."""


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
    fault_pages: np.ndarray  # guest major faults, pages
    host_fault_pages: np.ndarray  # host faults, pages
    host_swap_in: np.ndarray  # MiB brought back by the host
    oom: np.ndarray  # bool
    stall_s: np.ndarray  # s lost to faults, host faults and growth that had to wait


def _take_free(
    want: np.ndarray, free: np.ndarray, untouched: np.ndarray, budget: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Take up to ``want`` free pages, touched ones first, untouched ones within ``budget``.

    Returns:
        ``taken``, and ``free``, ``untouched``, ``budget`` after the take.
    """
    touched = free - untouched
    taken = np.minimum(want, touched + np.minimum(untouched, budget))
    used_untouched = np.maximum(taken - touched, 0.0)
    return taken, free - taken, untouched - used_untouched, budget - used_untouched


def machine_demand(m: BalloonMove, host_swap: np.ndarray, d: Demand) -> np.ndarray:
    """Upper estimate of the new machine pages each guest could touch this step, MiB ``[G]``."""
    grow = np.maximum(d.anon_mib - m.anon_res - m.anon_swap, 0.0)
    hot_out = np.maximum(np.minimum(d.wss_mib, m.anon_res + m.anon_swap) - m.anon_res, 0.0)
    fill = np.maximum(d.cache_mib - m.cache, 0.0)
    return grow + hot_out + fill + host_swap


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
    # --- OOM: the footprint cannot fit in usable memory plus swap, or a naive driver forced it
    usable = params.mem_mib - params.kernel_mib - m.balloon
    oom = (d.anon_mib > usable + params.swap_mib - m.balloon_swap + _EPS_MIB) | m.oom
    oom &= params.guest_mask
    free = m.free + np.where(oom, m.anon_res, 0.0)
    anon_res = np.where(oom, 0.0, m.anon_res)
    anon_swap = np.where(oom, 0.0, m.anon_swap)
    anon_want = np.where(oom, 0.0, d.anon_mib)
    hot_want = np.where(oom, 0.0, d.wss_mib)

    # --- shrink: freed anon leaves swap first, then becomes touched free memory
    release = np.maximum(anon_res + anon_swap - anon_want, 0.0)
    from_swap = np.minimum(release, anon_swap)
    anon_swap = anon_swap - from_swap
    anon_res = anon_res - (release - from_swap)
    free = free + (release - from_swap)

    # --- grow: free pages, then page cache, then swap out (user balloon pages first)
    cache_left = params.cache_reclaim_mib - m.cache_dropped
    swap_out_left = params.swap_out_mib - m.swap_out
    grow = np.maximum(anon_want - anon_res - anon_swap, 0.0)
    take_f, free, untouched, budget = _take_free(grow, free, m.untouched, budget)
    take_c = np.minimum(grow - take_f, np.minimum(m.cache, cache_left))
    cache_left = cache_left - take_c
    rem = grow - take_f - take_c
    swap_room = np.maximum(params.swap_mib - anon_swap - m.balloon_swap, 0.0)
    out_b = np.minimum(np.minimum(rem, swap_out_left), np.minimum(swap_room, budget))
    out_b = np.where(params.user_driver, np.minimum(out_b, m.balloon), 0.0)
    budget = budget - out_b
    out_a = np.minimum(
        np.minimum(rem - out_b, anon_res), np.minimum(swap_out_left, swap_room) - out_b
    )
    unmet = rem - out_b - out_a
    anon_res = anon_res + take_f + take_c + out_b
    anon_swap = anon_swap + out_a
    cache = m.cache - take_c
    balloon = m.balloon - out_b
    balloon_swap = m.balloon_swap + out_b
    swap_out = m.swap_out + out_a + out_b
    stall_s = params.dt_s * np.minimum(1.0, unmet / np.maximum(params.swap_out_mib, _EPS_MIB))

    # --- page cache: drop what the workload no longer wants, fill from free pages
    drop = np.maximum(cache - d.cache_mib, 0.0)
    cache, free = cache - drop, free + drop
    fill, free, untouched, budget = _take_free(d.cache_mib - cache, free, untouched, budget)
    cache = cache + np.maximum(fill, 0.0)
    miss_pages = np.maximum(d.cache_mib - cache, 0.0) * CACHE_REREAD_FRAC * PAGES_PER_MIB

    # --- hot pages not resident fault; bring them back from guest swap
    hot = np.minimum(hot_want, anon_res + anon_swap)
    hot_out = np.maximum(hot - anon_res, 0.0)
    want_in = np.minimum(hot_out, params.swap_in_mib)
    in_f, free, untouched, budget = _take_free(want_in, free, untouched, budget)
    in_c = np.minimum(want_in - in_f, np.minimum(cache, cache_left))
    swap_in = in_f + in_c
    cache = cache - in_c
    anon_res, anon_swap = anon_res + swap_in, anon_swap - swap_in
    fault_pages = hot_out * PAGES_PER_MIB + miss_pages
    stall_s = stall_s + fault_pages * params.fault_s

    # --- free page reporting hands touched free pages back to the host; host-swapped pages
    # among them leave with them, in proportion
    touched = anon_res + cache + free - untouched
    reported = (free - untouched) * params.report_frac
    untouched = untouched + reported
    kept = 1.0 - reported / np.maximum(touched, _EPS_MIB)
    touched = touched - reported
    host_swap = np.minimum(host_swap * kept, touched)

    # --- host faults: host-swapped pages are hit in proportion to the hot share of touched memory
    hot_share = np.minimum(hot, anon_res) / np.maximum(touched, _EPS_MIB)
    host_hot = host_swap * np.minimum(hot_share, 1.0)
    host_in = np.minimum(host_hot * host_in_scale, budget)
    host_fault_pages = host_hot * PAGES_PER_MIB
    stall_s = stall_s + host_fault_pages * params.host_fault_s

    return GuestStep(
        anon_res=anon_res,
        anon_swap=anon_swap,
        cache=cache,
        free=free,
        untouched=untouched,
        balloon=balloon,
        balloon_swap=balloon_swap,
        host_swap=host_swap - host_in,
        swap_in=swap_in,
        swap_out=swap_out,
        fault_pages=fault_pages,
        host_fault_pages=host_fault_pages,
        host_swap_in=host_in,
        oom=oom,
        stall_s=stall_s,
    )
