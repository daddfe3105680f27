"""balloon-gym: reinforcement learning for memory and CPU overcommitment.

``import balloon_gym`` registers every shipped scenario with Gymnasium as
``BalloonGym/<CamelCase>-v1`` (e.g. ``gymnasium.make("BalloonGym/IdleTax-v1")``). Importing the
simulator core alone (``balloon_gym.core``) loads neither Gymnasium nor the adapters: the
environment classes are imported when first used, and the ids are registered once Gymnasium is
imported (:mod:`balloon_gym.registration`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from balloon_gym.config import ConfigError, ScenarioConfig
from balloon_gym.registration import register_envs, register_when_gymnasium_loads, shipped_env_ids
from balloon_gym.scenarios import BALLOONBENCH_V1, env_id, list_scenarios, load_scenario

if TYPE_CHECKING:
    from balloon_gym.envs import BalloonEnv, BalloonVectorEnv

__version__ = "0.1.0"

ENV_IDS: list[str] = shipped_env_ids()
"""The Gymnasium id of every shipped scenario."""

register_when_gymnasium_loads()

_LAZY = {"BalloonEnv": "balloon_gym.envs.single", "BalloonVectorEnv": "balloon_gym.envs.vector"}


def __getattr__(name: str) -> Any:
    """The adapters, imported on first use (they load Gymnasium)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'balloon_gym' has no attribute {name!r}")


__all__ = [
    "BALLOONBENCH_V1",
    "ENV_IDS",
    "BalloonEnv",
    "BalloonVectorEnv",
    "ConfigError",
    "ScenarioConfig",
    "__version__",
    "env_id",
    "list_scenarios",
    "load_scenario",
    "register_envs",
]
