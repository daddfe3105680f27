"""Xen's XAPI ``squeezed``: every guest at the same fraction of its dynamic range.

Source: xapi-project/squeezed, "Squeezed: architecture" and "design" documents, and its
``squeeze.ml``: each domain has a dynamic range ``[dynamic_min, dynamic_max]``; squeezed sets
every balloonable domain's target to ``dynamic_min + gamma * (dynamic_max - dynamic_min)`` with
one ``gamma`` in [0, 1] per host, the largest that leaves the host's free-memory reserve, so
all guests are squeezed by the same proportion of their range. Domains that do not make
progress (squeezed declares them inactive after 5 s) are left at what they hold and the others
share the rest.

Here: ``dynamic_min``/``dynamic_max`` are the guest's ``min_mib``/``max_mib``, the reserve is
what ``host_capacity`` leaves out (the 6 % high-state margin and the hypervisor's own memory),
and a guest whose driver is out is the inactive domain. ``gamma`` has a closed form per host:
``(capacity - sum(min)) / sum(max - min)`` over the steerable guests, clipped to [0, 1].
vCPUs: all active (squeezed manages memory only). No parameters.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from balloon_gym.agents.base import RulePolicy, guest_mask, host_units, pinned_guests

_EPS = 1e-12


class Squeezed(RulePolicy):
    """Same fraction ``gamma`` of the dynamic range for every guest.

    Args:
        max_guests: Guest slots of the env.
    """

    name: ClassVar[str] = "squeezed"

    def allocate(self, f: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
        """``min + gamma * (max - min)`` with ``gamma`` filling the capacity."""
        mask = guest_mask(f)
        pinned = pinned_guests(f)
        steer = mask & ~pinned
        lo, hi = host_units(f, "min"), host_units(f, "max")
        fixed = np.where(pinned, host_units(f, "usable"), 0.0).sum(axis=1, keepdims=True)
        room = f["host_capacity"] - fixed - np.where(steer, lo, 0.0).sum(axis=1, keepdims=True)
        span = np.where(steer, hi - lo, 0.0).sum(axis=1, keepdims=True)
        gamma = np.clip(room / np.maximum(span, _EPS), 0.0, 1.0)
        alloc = np.where(pinned, f["usable"], f["min"] + gamma * (f["max"] - f["min"]))
        return alloc, 1.0
