"""Host machine memory (DESIGN 3.1): reclaim by host swap, machine-page budget, sampling.

The host sees a guest only as machine pages. It backs a page the first time the guest touches
it and cannot tell when the guest frees it again; ballooned pages are never backed. When free
machine memory falls into the **hard** state (or **low**), the host swaps pages out of guests
above their allocation target, picking pages at random, at most ``host_swap_out_mib`` a step,
until free memory is back at the soft line. In **low**, guests above target are also blocked.
"""

from __future__ import annotations

import numpy as np

from balloon_gym.core.ops import equation, maximum, minimum, select
from balloon_gym.core.params import HOST_HARD, HOST_LOW, SOFT_FREE_FRAC, Params
from balloon_gym.core.rows import row_sum, row_sum_keep
from balloon_gym.core.state import (
    State,
    consumed_mib,
    host_free_mib,
    host_memory_state,
    memory_state,
    touched,
)

_EPS_MIB = 1e-6


@equation
def reclaim_amount(free_mib, host_mem_mib, host_swap_out_mib):
    """A host's memory state and what it swaps out this step, MiB: in the hard and low states,
    enough to bring free memory back to the soft line, at most its swap-out rate."""
    mem_state = memory_state(free_mib, host_mem_mib)
    need = maximum(SOFT_FREE_FRAC * host_mem_mib - free_mib, 0.0)
    return mem_state, select(mem_state >= HOST_HARD, minimum(need, host_swap_out_mib), 0.0)


@equation
def reclaim_candidates(touched_mib, host_swap, consumed_mib, alloc_target, guest_mask):
    """Pages the host may swap out of a guest, and how many of them lie above its target, MiB."""
    swappable = select(guest_mask, maximum(touched_mib - host_swap, 0.0), 0.0)
    return swappable, minimum(maximum(consumed_mib - alloc_target, 0.0), swappable)


@equation
def blocked(consumed_mib, alloc_target, mem_state, guest_mask):
    """A guest above its target on a host in the low state is blocked."""
    return (consumed_mib > alloc_target + _EPS_MIB) & (mem_state == HOST_LOW) & guest_mask


@equation
def sample(
    active_fast, active_slow, wss_mib, balloon_mib, normal, mem_mib, sample_pages,
    sample_fast_alpha, sample_slow_alpha, on,
):  # fmt: skip
    """The fast and slow active-fraction estimates after one sample (``sample_active``)."""
    true = minimum(wss_mib / maximum(mem_mib - balloon_mib, _EPS_MIB), 1.0)
    noise = np.sqrt(true * (1.0 - true) / sample_pages) * normal
    frac = minimum(maximum(true + noise, 0.0), 1.0)
    fast = active_fast + sample_fast_alpha * (frac - active_fast)
    slow = active_slow + sample_slow_alpha * (frac - active_slow)
    return select(on, fast, 0.0), select(on, slow, 0.0)


def reclaim(state: State, params: Params) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Host swap-out at the start of a step, from the host state the last step left.

    Returns:
        ``host_swap`` after reclaim (MiB ``[G]``), the swap-out per guest (MiB ``[G]``) and
        the memory state at the start of the step (``[N]``).
    """
    consumed = consumed_mib(state, params)
    free = params.host_mem_mib[:, 0] - params.host_reserved_mib[:, 0] - row_sum(consumed)
    mem_state, amount = reclaim_amount(free, params.host_mem_mib[:, 0],
                                       params.host_swap_out_mib[:, 0])  # fmt: skip
    t = touched(state.anon_res, state.cache, state.free, state.untouched)
    swappable, over = reclaim_candidates(t, state.host_swap, consumed, state.alloc_target,
                                         params.guest_mask)  # fmt: skip
    # Victims are the guests above target; if none is, any guest with swappable pages.
    any_over = row_sum_keep(over) > _EPS_MIB
    weight = np.where(any_over, over, swappable)
    share = weight / np.maximum(row_sum_keep(weight), _EPS_MIB)
    taken = np.minimum(amount[:, None] * share, swappable)
    return state.host_swap + taken, taken, mem_state


def machine_budget(
    demand_mib: np.ndarray,
    consumed: np.ndarray,
    blocked: np.ndarray,
    params: Params,
) -> np.ndarray:
    """Split the host's free machine memory among the guests' new-page demands, MiB ``[G]``.

    Args:
        demand_mib: Upper estimate of the new machine pages each guest may touch.
        consumed: Machine memory each guest uses now.
        blocked: Guests blocked this step (low state, above target): they get nothing.
        params: Scenario arrays.
    """
    free = params.host_mem_mib - params.host_reserved_mib - row_sum_keep(consumed)
    demand_mib = np.where(blocked | ~params.guest_mask, 0.0, demand_mib)
    total = row_sum_keep(demand_mib)
    scale = np.minimum(1.0, np.maximum(free, 0.0) / np.maximum(total, _EPS_MIB))
    return demand_mib * scale


def blocked_guests(state: State, mem_state: np.ndarray, params: Params) -> np.ndarray:
    """Guests above their target on a host in the low state, ``[G]`` bool."""
    used = consumed_mib(state, params)
    return blocked(used, state.alloc_target, mem_state[:, None], params.guest_mask)


def sample_active(
    state: State,
    wss_mib: np.ndarray,
    balloon_mib: np.ndarray,
    params: Params,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """ESX's statistical estimate of each guest's active fraction (Waldspurger 2002, 5.2).

    The host samples ``sample_pages`` random pages of the guest's unballooned memory a step,
    counts those touched, and keeps a fast and a slow exponential average; the estimate is the
    larger of the two. Returns the new ``(active_fast, active_slow)``.

    The touched fraction of ``n`` sampled pages is binomial(n, p) / n; we draw it from the normal
    law with the same mean and variance, clipped to [0, 1] (numpy's binomial sampler cost a fifth
    of the whole step; what matters to a scheduler is the estimate's noise, which this keeps).
    """
    p = params
    normal = rng.standard_normal(wss_mib.shape)
    return sample(state.active_fast, state.active_slow, wss_mib, balloon_mib, normal, p.mem_mib,
                  p.sample_pages, p.sample_fast_alpha, p.sample_slow_alpha,
                  p.sampling & p.guest_mask)  # fmt: skip


__all__ = [
    "blocked_guests",
    "host_free_mib",
    "host_memory_state",
    "machine_budget",
    "reclaim",
    "sample_active",
]
