"""VMware ESX's memory allocation: proportional share and the idle memory tax.

Source: C. A. Waldspurger, "Memory Resource Management in VMware ESX Server", OSDI 2002,
sections 5.1-5.3 (min-funding revocation, the idle memory tax, active memory sampling).

ESX divides memory by *shares*: a guest with shares ``S`` holding ``P`` pages has a
shares-per-page ratio ``rho = S / P``, and min-funding revocation reclaims from the guest with
the lowest ``rho`` until all ratios are equal, within each guest's ``[min, max]``. That is
proportional share, ``P = clip(S / rho, min, max)``, with one ``rho`` per host chosen so that
the allocations fill what the host may hand out.

The **idle memory tax** charges idle pages more: ``rho = S / (P * (f + k * (1 - f)))`` with
``f`` the guest's active fraction and ``k = 1 / (1 - tau)`` for the tax rate ``tau`` (ESX's
default ``Mem.IdleTax`` is 75 %, ``k = 4``). With ``A = f * P`` active memory, the equilibrium
allocation at a given ``rho`` has the closed form

    P(rho) = min(S / rho, A) + max(0, S / rho - A) / k,

clamped to ``[min, max]``; a vectorised bisection on ``1 / rho`` (fixed iteration count) finds
the ``rho`` at which the allocations sum to the host's capacity. ``f`` is the observation's
``active_estimate``: the host's statistical sampling estimate (ESX samples 100 pages per 30 s and
takes the larger of a fast and a slow moving average), never the true working set. ``tau = 0``
gives ``k = 1``, plain proportional share.

Both act every step on the current observation. A guest whose driver is out cannot be steered:
its allocation is taken as what it has now and the others share the rest. vCPUs: all active.

Parameters: ``tax_rate`` ``tau`` in [0, 1) (``esx_idle_tax`` default 0.75; ``proportional_share``
is 0); ``iterations`` of the bisection (60).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from balloon_gym.agents.base import (
    RulePolicy,
    guest_mask,
    host_units,
    pinned_guests,
    solve_level,
)

_EPS = 1e-12


def idle_tax_allocation(
    shares: np.ndarray,
    active: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    capacity: np.ndarray,
    mask: np.ndarray,
    tax_rate: float,
    iterations: int = 60,
) -> np.ndarray:
    """ESX's allocation with the idle memory tax, vectorised over hosts.

    Args:
        shares: ``(num_envs, max_guests)`` shares ``S`` (any scale).
        active: Active memory ``A`` of each guest, in the unit of ``capacity``.
        lo: Lower clamp (``min``), same unit.
        hi: Upper clamp (``max``), same unit.
        capacity: ``(num_envs, 1)`` memory to hand out, same unit.
        mask: Real guests; padding gets 0.
        tax_rate: ``tau`` in [0, 1); 0 is plain proportional share.
        iterations: Bisection steps on ``t = 1 / rho``.

    Returns:
        Allocations ``P`` in the unit of ``capacity``, summing to it unless the clamps forbid.
    """
    if not 0.0 <= tax_rate < 1.0:
        raise ValueError(f"tax_rate must lie in [0, 1), got {tax_rate}")
    k = 1.0 / (1.0 - tax_rate)
    s = np.where(mask, np.maximum(shares, _EPS), 0.0)
    a = np.where(mask, np.maximum(active, 0.0), 0.0)
    lo, hi = np.where(mask, lo, 0.0), np.where(mask, np.maximum(hi, lo), 0.0)

    def alloc_at(t: np.ndarray) -> np.ndarray:
        funded = s * t  # S / rho
        return np.clip(np.minimum(funded, a) + np.maximum(funded - a, 0.0) / k, lo, hi)

    # P(t) >= S t / k, so every guest sits at its upper clamp once t >= k * hi / S.
    t_hi = k * np.max(np.where(mask, hi / np.maximum(s, _EPS), 0.0), axis=1, keepdims=True)
    return solve_level(alloc_at, np.maximum(t_hi, _EPS), capacity, iterations)


class EsxIdleTax(RulePolicy):
    """ESX proportional share with the idle memory tax (Waldspurger 2002, 5.3).

    Args:
        max_guests: Guest slots of the env.
        tax_rate: Idle memory tax ``tau`` in [0, 1); ESX's default 0.75.
        iterations: Bisection steps.
    """

    name: ClassVar[str] = "esx_idle_tax"

    def __init__(self, max_guests: int, tax_rate: float = 0.75, iterations: int = 60) -> None:
        super().__init__(max_guests)
        if not 0.0 <= tax_rate < 1.0:
            raise ValueError(f"tax_rate must lie in [0, 1), got {tax_rate}")
        self.tax_rate = float(tax_rate)
        self.iterations = int(iterations)

    def allocate(self, f: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
        """Allocations (fractions of mem_mib) at the equilibrium ``rho``; all vCPUs active."""
        mask = guest_mask(f)
        pinned = pinned_guests(f)
        usable = host_units(f, "usable")
        lo = np.where(pinned, usable, host_units(f, "min"))
        hi = np.where(pinned, usable, host_units(f, "max"))
        active = f["active_estimate"] * usable
        alloc = idle_tax_allocation(
            f["shares"], active, lo, hi, f["host_capacity"], mask, self.tax_rate, self.iterations
        )
        return alloc / np.maximum(f["mem_size"], _EPS), 1.0


class ProportionalShare(EsxIdleTax):
    """ESX min-funding revocation without the tax: ``P = clip(S / rho, min, max)``.

    Args:
        max_guests: Guest slots of the env.
        iterations: Bisection steps.
    """

    name: ClassVar[str] = "proportional_share"

    def __init__(self, max_guests: int, iterations: int = 60) -> None:
        super().__init__(max_guests, tax_rate=0.0, iterations=iterations)
