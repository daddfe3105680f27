"""balloon-gym: reinforcement learning for memory and CPU overcommitment.

``import balloon_gym`` registers every shipped scenario with Gymnasium as
``BalloonGym/<CamelCase>-v0`` (e.g. ``gymnasium.make("BalloonGym/IdleTax-v0")``).
"""

from balloon_gym.config import ConfigError, ScenarioConfig
from balloon_gym.envs import BalloonEnv, BalloonVectorEnv, register_envs
from balloon_gym.scenarios import BALLOONBENCH_V0, env_id, list_scenarios, load_scenario

__version__ = "0.1.0"

ENV_IDS = register_envs()

__all__ = [
    "BALLOONBENCH_V0",
    "ENV_IDS",
    "BalloonEnv",
    "BalloonVectorEnv",
    "ConfigError",
    "ScenarioConfig",
    "__version__",
    "env_id",
    "list_scenarios",
    "load_scenario",
]
