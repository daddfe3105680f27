"""Static allocation: memory divided by shares once, at the start of the episode.

The policy of a host without a memory manager, or of reservations fixed at boot: each guest
gets ``clip(S * t, min, max)`` with one ``t`` per host so that the allocations fill the memory
the host may hand out (``host_capacity``), computed from the first observation of the episode.
The balloon never moves afterwards: the same targets are sent every step, whatever happens.
vCPUs: all active.

State: the actions chosen at the episode start, returned as SB3's recurrent ``state`` (a
1-tuple of a ``(num_envs, 2 * max_guests)`` array); pass it back on the next call. Rows with
``episode_start`` True, or all rows when ``state`` is None, are recomputed.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from balloon_gym.agents.base import (
    PolicyState,
    RulePolicy,
    guest_mask,
    host_units,
    share_fill,
    split_observation,
)

_EPS = 1e-12


class Static(RulePolicy):
    """Fixed allocation by shares at the episode start.

    Args:
        max_guests: Guest slots of the env.
    """

    name: ClassVar[str] = "static"

    def allocate(self, f: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
        """Shares-proportional allocation within [min, max] that fills the host's capacity."""
        alloc = share_fill(
            f["shares"],
            host_units(f, "min"),
            host_units(f, "max"),
            f["host_capacity"],
            guest_mask(f),
        )
        return alloc / np.maximum(f["mem_size"], _EPS), 1.0

    def predict(
        self,
        observation: np.ndarray,
        state: PolicyState = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, PolicyState]:
        """The actions fixed at the episode start (see the module docstring for ``state``)."""
        single = np.ndim(observation) == 1
        obs = np.atleast_2d(observation)
        shape = (obs.shape[0], 2 * self.max_guests)
        if state is None or state[0].shape != shape:
            start = np.ones(shape[0], dtype=bool)
        elif episode_start is None:
            start = np.zeros(shape[0], dtype=bool)
        else:
            start = np.asarray(episode_start, dtype=bool).reshape(-1)
        if start.any():
            fresh = self.act(split_observation(obs, self.max_guests)).astype(np.float32)
            fixed = fresh if start.all() else np.where(start[:, None], fresh, state[0])
        else:
            fixed = state[0]
        return (fixed[0] if single else fixed), (fixed,)
