"""``BalloonSB3VecEnv``: a stable-baselines3 ``VecEnv`` over the batch runner.

SB3's contract: same-step autoreset (the observation returned for a finished env is the first
of its next episode), ``infos[i]["terminal_observation"]`` holds the last observation, and
``infos[i]["TimeLimit.truncated"]`` says the episode was cut by the time limit. This is the
pattern of EnvPool's SB3 ``VecAdapter``: ``dones = terminated | truncated`` and reset of the
finished slots. Every finished env's info also carries ``episode`` (``r``, ``l``, ``score``,
``ooms``, ``host_swap_gib``) so that SB3's logger sees episode returns without ``VecMonitor``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env.base_vec_env import (
    VecEnv,
    VecEnvIndices,
    VecEnvObs,
    VecEnvStepReturn,
)

from balloon_gym.core.step import as_action_array
from balloon_gym.envs.batch import (
    Batch,
    ScenarioLike,
    build_params,
    check_reset_options,
    check_seed,
    resolve_scenarios,
)
from balloon_gym.envs.render import render_host
from balloon_gym.envs.spaces import action_space, observation_space

_EPISODE_PARTS = ("score", "ooms", "host_swap_gib", "sla_misses")


class BalloonSB3VecEnv(VecEnv):
    """``num_envs`` hosts as one SB3 ``VecEnv``; arguments as :class:`BalloonVectorEnv`.

    Observations (and ``terminal_observation``) are arrays the caller owns.

    Arguments:
        num_envs: Hosts in the batch.
        scenario: A shipped name, a YAML path, a ``ScenarioConfig``, or a list of them.
        max_guests: Guest slots per host (default: the widest scenario's guest count).
        max_episode_steps: Truncation length (default: each scenario's ``episode_steps``).
        trace_split: Which trace VMs trace guests draw; None keeps each scenario's.
        backend: ``"numpy"`` (the reference, default) or ``"numba"``: compiled kernels with the
            same numbers and 2.4-5.5x the speed (``docs/speed.md``; needs
            ``pip install 'balloon-gym[fast]'``; the first step compiles them once per machine).
    """

    def __init__(
        self,
        num_envs: int = 1,
        scenario: ScenarioLike | Sequence[ScenarioLike] = "idle-tax",
        max_guests: int | None = None,
        max_episode_steps: int | None = None,
        trace_split: str | None = None,
        backend: str = "numpy",
    ) -> None:
        self.scenarios = resolve_scenarios(scenario, num_envs)
        num_envs = len(self.scenarios)
        self._batch = Batch(
            build_params(self.scenarios, max_guests, trace_split), max_episode_steps, backend
        )
        g = self._batch.params.max_guests
        self.render_mode = None  # read by VecEnv.__init__; text rendering: render_text()
        super().__init__(num_envs, observation_space(g), action_space(g))
        self._rng, _ = seeding.np_random(None)
        self._actions: np.ndarray | None = None
        self._ep_return = np.zeros(num_envs)
        self._ep_parts = {k: np.zeros(num_envs) for k in _EPISODE_PARTS}

    @property
    def batch(self) -> Batch:
        """The batch runner (params, state, episode clock)."""
        return self._batch

    def reset(self) -> VecEnvObs:
        """Reset every env; uses the seed given to :meth:`seed` once, if any."""
        if self._seeds[0] is not None:
            self._rng, _ = seeding.np_random(self._seeds[0])
        self._reset_seeds()
        self._reset_options()
        self._ep_return[:] = 0.0
        for v in self._ep_parts.values():
            v[:] = 0.0
        return self._batch.reset(self._rng)

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Seed the next :meth:`reset` (SB3's rule: env ``i`` gets ``seed + i``); ``seed`` is
        None or a non-negative integer."""
        return super().seed(check_seed(seed))

    def set_options(self, options: list[dict] | dict | None = None) -> None:
        """This env takes no reset options: None, ``{}`` or a list of empty dicts."""
        for item in options if isinstance(options, list) else [options]:
            check_reset_options(item)
        super().set_options(options)

    def step_async(self, actions: np.ndarray) -> None:
        """Store the actions for :meth:`step_wait`; raises ``ConfigTypeError`` at once for
        actions that are not an array of real numbers."""
        self._actions = as_action_array(actions)

    def step_wait(self) -> VecEnvStepReturn:
        """Step every env, reset the finished ones in the same call."""
        if self._actions is None:
            raise RuntimeError("call step_async() before step_wait()")
        out = self._batch.step_autoreset(self._actions, self._rng)
        self._actions = None
        self._ep_return += out.reward
        for k, acc in self._ep_parts.items():
            acc += out.info[k]
        dones = out.done
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if out.final_obs is not None:
            for i in np.flatnonzero(dones):
                infos[i] = {
                    "terminal_observation": out.final_obs[i],
                    "TimeLimit.truncated": bool(out.truncated[i] and not out.terminated[i]),
                    "episode": {
                        "r": float(self._ep_return[i]),
                        "l": int(out.info.steps[i]),
                        **{k: float(v[i]) for k, v in self._ep_parts.items()},
                    },
                }
            self._ep_return[dones] = 0.0
            for v in self._ep_parts.values():
                v[dones] = 0.0
        reward, obs = out.reward, out.obs
        return obs, reward.astype(np.float32), dones, infos

    def close(self) -> None:
        """Nothing to release."""

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The attribute of this adapter, once per selected env."""
        return [getattr(self, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute of this adapter (shared by all envs)."""
        setattr(self, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **kwargs: Any
    ) -> list[Any]:
        """Call a method of this adapter once per selected env."""
        method = getattr(self, method_name)
        return [method(*method_args, **kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        """No env is wrapped by a Gymnasium wrapper."""
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        """No image rendering; use ``render_text``."""
        return [None for _ in range(self.num_envs)]

    def render_text(self, i: int = 0) -> str:
        """The ansi table of env ``i``."""
        names = [g.name for g in self.scenarios[i].expanded_guests()]
        return render_host(self._batch.state, self._batch.params, i, names)
