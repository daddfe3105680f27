"""The simulator core: pure functions over arrays, no Gymnasium import.

``reset(params, rng) -> State`` and ``step(state, action, params, rng) -> (State, StepOutput)``
advance a batch of hosts; ``observe(state, params)`` is what a scheduler sees.
"""

from balloon_gym.core.observe import GUEST_FEATURES, HOST_FEATURES, observation_size, observe
from balloon_gym.core.params import Params, params_from_scenario, repeat_params, stack_params
from balloon_gym.core.state import State, consumed_mib, host_free_mib, host_memory_state
from balloon_gym.core.step import SUBSTEPS, StepOutput, reset, step

__all__ = [
    "GUEST_FEATURES",
    "HOST_FEATURES",
    "SUBSTEPS",
    "Params",
    "State",
    "StepOutput",
    "consumed_mib",
    "host_free_mib",
    "host_memory_state",
    "observation_size",
    "observe",
    "params_from_scenario",
    "repeat_params",
    "reset",
    "stack_params",
    "step",
]
