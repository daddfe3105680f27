"""Uniform random actions: the floor of the leaderboard.

Every step, every entry of the action is drawn uniformly from [-1, 1] (memory and vCPUs) by a
``numpy.random.Generator`` seeded at construction, so a run is reproducible for a given seed.
``deterministic`` is ignored: the policy is random by definition.

Parameters: ``seed`` (int or None).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from balloon_gym.agents.base import PolicyState, split_observation


class RandomPolicy:
    """Uniform random actions from a seeded generator.

    Args:
        max_guests: Guest slots of the env.
        seed: Seed of the generator.
    """

    name: ClassVar[str] = "random"

    def __init__(self, max_guests: int, seed: int | None = 0) -> None:
        if max_guests < 1:
            raise ValueError(f"max_guests must be >= 1, got {max_guests}")
        self.max_guests = max_guests
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def predict(
        self,
        observation: np.ndarray,
        state: PolicyState = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, PolicyState]:
        """Random actions of shape ``(num_envs, 2 * max_guests)`` (or one for one observation).

        Padding slots get 0 (the env ignores them).
        """
        single = np.ndim(observation) == 1
        present = split_observation(observation, self.max_guests)["present"] > 0.5
        actions = self.rng.uniform(-1.0, 1.0, size=(present.shape[0], 2 * self.max_guests))
        actions *= np.concatenate([present, present], axis=1)
        actions = actions.astype(np.float32)
        return (actions[0] if single else actions), state

    def __repr__(self) -> str:
        return f"RandomPolicy(max_guests={self.max_guests}, seed={self.seed})"
