"""oVirt MOM's balloon policy (Memory Overcommitment Manager, ``balloon.rules``).

Source: oVirt MOM, ``doc/balloon.rules`` (github.com/oVirt/mom) and the ``mom-balloon.policy``
oVirt's vdsm installs (ovirt-site, "mom-balloon.policy"). MOM runs its policy every 10 s (our
``dt_s``). Per host, with ``host_free`` the free fraction of host memory:

* **pressure** (``host_free < pressure_threshold``, 20 %): shrink every guest. Its wanted free
  fraction is ``min_guest_free_percent * host_free / pressure_threshold`` (20 % of its memory
  scaled by the pressure), or ``host_free - 0.05`` when ``host_free <= pressure_critical``
  (5 %: negative, "force the guest to swap"). New size: ``max(cur * (1 - 0.05),
  used + free_wanted * cur)``, applied only if it does not grow the guest.
* otherwise: grow every guest that is ballooned: ``min(cur * (1 + 0.05), max)``, at least
  ``used + 0.20 * cur``.
* A change smaller than ``min_balloon_change_percent`` (0.25 %) of ``cur`` is not made (the old
  target stays).

``cur`` is the guest's current memory (libvirt's balloon "actual", our ``usable``), ``used`` is
``cur - mem_unused`` (MemFree: our ``free``; page cache counts as used, as in MOM). MOM reads
averages of its samples (``StatAvg``); this acts on the latest observation. MOM does not know
the host's capacity: the env projects its targets once the memory the guests claim exceeds what
the host may hand out (scaling the part above each ``min_mib``; ``docs/model.md``, step 2).
vCPUs: all active (MOM's balloon rules leave them alone).

Parameters: ``pressure_threshold`` 0.20, ``pressure_critical`` 0.05, ``min_guest_free``
0.20, ``max_change`` 0.05, ``min_change`` 0.0025 (MOM's defaults).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from balloon_gym.agents.base import RulePolicy


class Mom(RulePolicy):
    """oVirt MOM's auto-balloon rules.

    Args:
        max_guests: Guest slots of the env.
        pressure_threshold: Host free fraction below which guests shrink.
        pressure_critical: Host free fraction at or below which guests are pushed to swap.
        min_guest_free: Free fraction an unconstrained guest keeps.
        max_change: Largest relative change of a guest's memory per step.
        min_change: Smallest relative change worth a balloon operation.
    """

    name: ClassVar[str] = "mom"

    def __init__(
        self,
        max_guests: int,
        pressure_threshold: float = 0.20,
        pressure_critical: float = 0.05,
        min_guest_free: float = 0.20,
        max_change: float = 0.05,
        min_change: float = 0.0025,
    ) -> None:
        super().__init__(max_guests)
        self.pressure_threshold = pressure_threshold
        self.pressure_critical = pressure_critical
        self.min_guest_free = min_guest_free
        self.max_change = max_change
        self.min_change = min_change

    def allocate(self, f: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
        """MOM's new targets (fractions of mem_mib); unchanged targets are resent."""
        host_free = f["host_free"]
        cur = f["usable"]
        used = cur - f["free"]
        previous = 1.0 - f["balloon_target"]
        # --- shrink under pressure
        guest_free = np.where(
            host_free <= self.pressure_critical,
            host_free - 0.05,
            self.min_guest_free * host_free / self.pressure_threshold,
        )
        shrink = np.maximum(cur * (1.0 - self.max_change), used + guest_free * cur)
        shrink_ok = shrink <= cur
        # --- grow without pressure, only guests that are ballooned
        grow = np.minimum(cur * (1.0 + self.max_change), f["max"])
        grow = np.maximum(grow, used + self.min_guest_free * cur)
        grow_ok = cur < f["max"]
        pressure = host_free < self.pressure_threshold
        new = np.where(pressure, shrink, grow)
        ok = np.where(pressure, shrink_ok, grow_ok)
        ok &= np.abs(new - cur) > self.min_change * cur
        return np.where(ok, new, previous), 1.0
