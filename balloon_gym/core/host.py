"""Host machine memory (DESIGN 3.1): reclaim by host swap, machine-page budget, sampling.

The host sees a guest only as machine pages. It backs a page the first time the guest touches
it and cannot tell when the guest frees it again; ballooned pages are never backed. When free
machine memory falls into the **hard** state (or **low**), the host swaps pages out of guests
above their allocation target, picking pages at random, at most ``host_swap_out_mib`` a step,
until free memory is back at the soft line. In **low**, guests above target are also blocked.
"""

from __future__ import annotations

import numpy as np

from balloon_gym.core.params import HOST_HARD, HOST_LOW, SOFT_FREE_FRAC, Params
from balloon_gym.core.rows import row_sum, row_sum_keep
from balloon_gym.core.state import State, consumed_mib, host_free_mib, host_memory_state

_EPS_MIB = 1e-6


def reclaim(state: State, params: Params) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Host swap-out at the start of a step, from the host state the last step left.

    Returns:
        ``host_swap`` after reclaim (MiB ``[G]``), the swap-out per guest (MiB ``[G]``) and
        the memory state at the start of the step (``[N]``).
    """
    consumed = consumed_mib(state, params)
    free = params.host_mem_mib[:, 0] - params.host_reserved_mib[:, 0] - row_sum(consumed)
    mem_state = host_memory_state(free, params)
    need = np.maximum(SOFT_FREE_FRAC * params.host_mem_mib[:, 0] - free, 0.0)
    amount = np.where(mem_state >= HOST_HARD, np.minimum(need, params.host_swap_out_mib[:, 0]), 0.0)
    touched = state.anon_res + state.cache + state.free - state.untouched
    swappable = np.where(params.guest_mask, np.maximum(touched - state.host_swap, 0.0), 0.0)
    over = np.minimum(np.maximum(consumed - state.alloc_target, 0.0), swappable)
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
    above = consumed_mib(state, params) > state.alloc_target + _EPS_MIB
    return above & (mem_state[:, None] == HOST_LOW) & params.guest_mask


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
    true = np.minimum(wss_mib / np.maximum(params.mem_mib - balloon_mib, _EPS_MIB), 1.0)
    noise = np.sqrt(true * (1.0 - true) / params.sample_pages) * rng.standard_normal(true.shape)
    sample = np.minimum(np.maximum(true + noise, 0.0), 1.0)
    fast = state.active_fast + params.sample_fast_alpha * (sample - state.active_fast)
    slow = state.active_slow + params.sample_slow_alpha * (sample - state.active_slow)
    on = params.sampling & params.guest_mask
    return np.where(on, fast, 0.0), np.where(on, slow, 0.0)


__all__ = [
    "blocked_guests",
    "host_free_mib",
    "host_memory_state",
    "machine_budget",
    "reclaim",
    "sample_active",
]
