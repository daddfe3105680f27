"""Gymnasium and stable-baselines3 adapters over the core, and the registration of every
shipped scenario as ``BalloonGym/<CamelCase>-v0``."""

from __future__ import annotations

import gymnasium

from balloon_gym.envs.single import BalloonEnv
from balloon_gym.envs.vector import BalloonVectorEnv
from balloon_gym.scenarios import env_id, list_scenarios


def register_envs() -> list[str]:
    """Register every shipped scenario (idempotent); returns the ids."""
    ids = []
    for name in list_scenarios():
        eid = env_id(name)
        if eid not in gymnasium.registry:
            gymnasium.register(
                id=eid,
                entry_point="balloon_gym.envs.single:BalloonEnv",
                vector_entry_point="balloon_gym.envs.vector:BalloonVectorEnv",
                kwargs={"scenario": name},
            )
        ids.append(eid)
    return ids


__all__ = ["BalloonEnv", "BalloonVectorEnv", "register_envs"]
