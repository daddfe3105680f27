"""CPU (DESIGN 3.4): vCPUs a guest keeps active, pCPU proportional share, SMP efficiency.

Active vCPUs ``a = vcpus - reserved``; runnable ``r = min(demand, a)``. The host divides its
pCPUs among guests in proportion to their shares, each capped at ``r`` (water-filling). A guest
with more runnable vCPUs than the pCPU time it gets runs them part-time: at overcommit
``O = r / alloc`` a lock holder is preempted and its waiters spin, an extra loss ``L(O)`` beyond
the fair share, ``smp_eff = 1 / (1 + L(O))``. ``L`` is 0 up to ``O = 1``, rises linearly to
``lhp_penalty`` at ``O = 2`` and to ``lhp_penalty_3x`` at ``O = 3``, and stays there (the
published loss saturates). Both depend on the workload's parallelism: independent single-threaded
tasks hold no shared lock (``L = 0``); a lock-heavy parallel program loses most
(docs/calibration.md section 6). Reserving vCPUs of a guest squeezed on pCPU time packs its work
onto fewer, fully-run vCPUs (``O -> 1``), which wins that loss back.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from balloon_gym.core.ops import equation, maximum, minimum, select
from balloon_gym.core.params import Params
from balloon_gym.core.rows import row_sum_keep

_EPS = 1e-9


class CpuStep(NamedTuple):
    """CPU outcome of one step, all ``(num_envs, max_guests)``."""

    alloc: np.ndarray  # pCPU time granted, pCPUs
    runnable: np.ndarray  # runnable vCPUs
    smp_eff: np.ndarray  # SMP efficiency in (0, 1]
    factor: np.ndarray  # fraction of CPU demand served, in [0, 1]


@equation
def runnable_vcpus(demand_vcpus, vcpus, reserved_vcpus, guest_mask):
    """Runnable vCPUs: the CPU demand, at most the active (unreserved) vCPUs; 0 for padding."""
    return select(guest_mask, minimum(demand_vcpus, vcpus - reserved_vcpus), 0.0)


@equation
def lhp_loss(alloc, runnable, lhp_penalty, lhp_penalty_3x):
    """Extra loss ``L(O)`` to lock-holder preemption at overcommit ``O = runnable / alloc``:
    0 for ``O <= 1``, linear to ``lhp_penalty`` at 2 and ``lhp_penalty_3x`` at 3, flat above."""
    over = runnable / maximum(alloc, _EPS)
    to_2x = minimum(maximum(over - 1.0, 0.0), 1.0)
    to_3x = minimum(maximum(over - 2.0, 0.0), 1.0)
    return lhp_penalty * to_2x + (lhp_penalty_3x - lhp_penalty) * to_3x


@equation
def served(alloc, runnable, demand_vcpus, lhp_penalty, lhp_penalty_3x):
    """SMP efficiency and the fraction of CPU demand served (1 without demand)."""
    smp_eff = 1.0 / (1.0 + lhp_loss(alloc, runnable, lhp_penalty, lhp_penalty_3x))
    factor = minimum(1.0, alloc / maximum(demand_vcpus, _EPS)) * smp_eff
    return smp_eff, select(demand_vcpus > _EPS, factor, 1.0)


def water_fill(caps: np.ndarray, weights: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Proportional share with caps: ``x_g = min(w_g * lam, cap_g)`` with ``sum x = capacity``.

    Vectorised over rows: sort by ``cap / weight``, find the water level ``lam`` from prefix
    sums, no loop. Rows whose caps sum below ``capacity`` get their caps.

    Args:
        caps: ``(N, G)`` upper bounds, >= 0.
        weights: ``(N, G)`` weights, >= 0 (0 gets nothing).
        capacity: ``(N, 1)`` amount to share.
    """
    if (row_sum_keep(caps) <= capacity).all():
        return caps.copy()  # no host is short: everyone gets its cap (same result, no sort)
    w = np.maximum(weights, _EPS)
    ratio = caps / w
    order = np.argsort(ratio, axis=1)
    r_sorted = np.take_along_axis(ratio, order, axis=1)
    c_sorted = np.take_along_axis(caps, order, axis=1)
    w_sorted = np.take_along_axis(w, order, axis=1)
    zero = np.zeros_like(capacity)
    cum_c = np.concatenate([zero, np.cumsum(c_sorted, axis=1)], axis=1)  # caps of j < k
    rest_w = row_sum_keep(w) - np.concatenate(
        [zero, np.cumsum(w_sorted, axis=1)], axis=1
    )  # weights of j >= k
    filled = cum_c[:, 1:] + r_sorted * rest_w[:, 1:]  # used when lam = ratio_k
    reached = filled >= capacity
    k = np.argmax(reached, axis=1)[:, None]
    lam = (capacity - np.take_along_axis(cum_c, k, axis=1)) / np.maximum(
        np.take_along_axis(rest_w, k, axis=1), _EPS
    )
    lam = np.where(reached.any(axis=1, keepdims=True), lam, np.inf)
    return np.minimum(w * lam, caps)


def schedule(reserved_vcpus: np.ndarray, demand_vcpus: np.ndarray, params: Params) -> CpuStep:
    """Share the host's pCPUs for one step."""
    runnable = runnable_vcpus(demand_vcpus, params.vcpus, reserved_vcpus, params.guest_mask)
    alloc = water_fill(runnable, np.where(params.guest_mask, params.shares, 0.0), params.pcpus)
    smp_eff, factor = served(
        alloc, runnable, demand_vcpus, params.lhp_penalty, params.lhp_penalty_3x
    )
    return CpuStep(alloc=alloc, runnable=runnable, smp_eff=smp_eff, factor=factor)
