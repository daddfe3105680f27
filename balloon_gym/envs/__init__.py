"""Gymnasium and stable-baselines3 adapters over the core, and the registration of every
shipped scenario as ``BalloonGym/<CamelCase>-v1``."""

from __future__ import annotations

from balloon_gym.envs.single import BalloonEnv
from balloon_gym.envs.vector import BalloonVectorEnv
from balloon_gym.registration import register_envs

__all__ = ["BalloonEnv", "BalloonVectorEnv", "register_envs"]
