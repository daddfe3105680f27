"""Hyper-V Dynamic Memory: each guest's memory demand plus a buffer; weights settle shortage.

Source: Microsoft, "Hyper-V Dynamic Memory Overview" and "Hyper-V Dynamic Memory Configuration
Guide" (Windows Server 2008 R2 SP1 and later): a VM's *memory demand* is its committed memory
as the guest reports it; Hyper-V assigns ``demand * (1 + buffer)`` (memory buffer, default
20 %) within the VM's startup/minimum and maximum memory, adding memory through hot-add and
taking it back through its balloon driver. When the host cannot satisfy every VM, *memory
weight* (priority) decides which VMs get memory.

Here: demand is the guest's committed resident memory, kernel plus anonymous memory, which the
observation carries as ``usable - available`` (page cache and free memory are not committed).
The wanted allocation ``clip(demand * (1 + buffer), min, max)`` is granted where the host's
capacity holds all of them, and unused memory stays with the host. Otherwise memory is shared
by weight (shares): ``clip(S * t, min, wanted)`` filling the capacity. A guest whose driver is
out keeps what it has. vCPUs: all active.

Parameters: ``buffer`` 0.20 (Hyper-V's default memory buffer).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from balloon_gym.agents.base import RulePolicy, guest_mask, pinned_guests, share_fill

_EPS = 1e-12


class HyperV(RulePolicy):
    """Demand plus a buffer, shortage resolved by memory weight (shares).

    Args:
        max_guests: Guest slots of the env.
        buffer: Memory buffer as a fraction of demand.
    """

    name: ClassVar[str] = "hyperv"

    def __init__(self, max_guests: int, buffer: float = 0.20) -> None:
        super().__init__(max_guests)
        if buffer < 0:
            raise ValueError(f"buffer must be >= 0, got {buffer}")
        self.buffer = float(buffer)

    def allocate(self, f: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
        """Demand plus buffer where it fits; by weight under shortage."""
        mask = guest_mask(f)
        pinned = pinned_guests(f)
        demand = np.maximum(f["usable"] - f["available"], 0.0)
        wanted = np.clip(demand * (1.0 + self.buffer), f["min"], f["max"])
        wanted = np.where(pinned, f["usable"], wanted)
        size = f["mem_size"]
        lo = np.where(pinned, f["usable"], f["min"]) * size
        # share_fill gives every guest its cap (wanted) when the caps fit the capacity.
        alloc = share_fill(f["shares"], lo, wanted * size, f["host_capacity"], mask)
        return alloc / np.maximum(size, _EPS), 1.0
