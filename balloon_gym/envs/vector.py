"""``BalloonVectorEnv``: a native ``gymnasium.vector.VectorEnv`` over the core.

One core call steps every host; there is no per-env Python object. Autoreset follows
Gymnasium 1.x: ``NEXT_STEP`` (default: the step after an episode ends resets that env and
ignores its action) or ``SAME_STEP`` (the env resets within the step that ended it; the final
observation and info are in ``info["final_obs"]`` / ``info["final_info"]``). The manual of the
environment itself is :class:`balloon_gym.envs.single.BalloonEnv`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from balloon_gym.config import ConfigError
from balloon_gym.envs.batch import (
    Batch,
    ScenarioLike,
    build_params,
    check_choice,
    check_reset_options,
    check_seed,
    resolve_scenarios,
)
from balloon_gym.envs.render import render_host
from balloon_gym.envs.spaces import action_space, observation_space


class BalloonVectorEnv(VectorEnv):
    """``num_envs`` hosts stepped as one batch; a list of scenarios is assigned round-robin.

    Observations returned by ``reset`` and ``step`` (and ``info["final_obs"]``) are arrays the
    caller owns: the env keeps no reference to them and never writes to them again.

    Args:
        num_envs: Hosts in the batch: an ``int`` (or numpy integer) in ``[1, 2**20]``; a batch
            whose estimated memory exceeds the machine's is refused.
        scenario: A shipped name, a YAML path, a ``ScenarioConfig``, or a list of them (mixed
            batch, guests padded to the widest): env ``i`` runs ``scenario[i % len(scenario)]``,
            so the list may not be longer than ``num_envs``.
        max_guests: Guest slots per host (default: the widest scenario's guest count).
        max_episode_steps: Truncation length (default: each scenario's ``episode_steps``).
        autoreset_mode: ``AutoresetMode.NEXT_STEP`` (default) or ``AutoresetMode.SAME_STEP``.
        render_mode: ``"ansi"`` or None; renders env 0.
        trace_split: Which trace VMs trace guests draw (``"heldout"`` for evaluation); None
            keeps each scenario's (training VMs by default).
        backend: ``"numpy"`` (the reference, default) or ``"numba"``: compiled kernels with the
            same numbers and 2.4-5.5x the speed (``docs/speed.md``; needs
            ``pip install 'balloon-gym[fast]'``; the first step compiles them once per machine).
    """

    metadata = {"render_modes": ["ansi"], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        scenario: ScenarioLike | Sequence[ScenarioLike] = "idle-tax",
        max_guests: int | None = None,
        max_episode_steps: int | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        render_mode: str | None = None,
        trace_split: str | None = None,
        backend: str = "numpy",
    ) -> None:
        supported = (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP)
        try:
            mode = AutoresetMode(autoreset_mode)
        except ValueError:
            mode = None
        if mode not in supported:
            raise ConfigError(
                f"autoreset_mode {autoreset_mode!r} not supported; use AutoresetMode.NEXT_STEP "
                "('NextStep') or AutoresetMode.SAME_STEP ('SameStep')"
            )
        check_choice(render_mode, "render_mode", self.metadata["render_modes"], none_ok=True)
        self.scenarios = resolve_scenarios(scenario, num_envs)
        num_envs = len(self.scenarios)
        self._batch = Batch(
            build_params(self.scenarios, max_guests, trace_split), max_episode_steps, backend
        )
        self.num_envs = num_envs
        self.max_guests = self._batch.params.max_guests
        self.metadata = {**self.metadata, "autoreset_mode": mode}
        self.autoreset_mode = mode
        self.render_mode = render_mode
        self.single_observation_space = observation_space(self.max_guests)
        self.single_action_space = action_space(self.max_guests)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._needs_reset = np.zeros(num_envs, dtype=bool)
        self._np_random, self._np_random_seed = seeding.np_random(None)

    @property
    def batch(self) -> Batch:
        """The batch runner (params, state, episode clock)."""
        return self._batch

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every host. ``seed`` (None or a non-negative integer) seeds the batch's one
        generator (Gymnasium's rules); there are no ``options`` (None or ``{}``)."""
        seed = check_seed(seed)
        check_reset_options(options)
        if seed is not None:
            self._np_random, self._np_random_seed = seeding.np_random(seed)
        obs = self._batch.reset(self._np_random)
        self._needs_reset[:] = False
        return obs, {}

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every host; see the module docstring for autoreset.

        Raises:
            RuntimeError: Before ``reset``.
            ConfigTypeError: For actions that are not an array of real numbers.
            ValueError: For a wrong shape or a NaN or infinite entry; the env is left as it was.
        """
        if self._batch.state is None:
            raise RuntimeError("call reset() before step()")
        pending = self._needs_reset if self.autoreset_mode is AutoresetMode.NEXT_STEP else None
        out = self._batch.step_autoreset(actions, self._np_random, pending)
        info = {} if out.info is None else out.info.to_dict()
        if out.final_obs is not None:
            final_info = info
            info = {**final_info, "final_obs": out.final_obs, "_final_obs": out.done}
            info.update(final_info=final_info, _final_info=out.done)
        self._needs_reset = out.done
        return out.obs, out.reward, out.terminated, out.truncated, info

    def render(self) -> str | None:
        """Table of env 0 (``render_mode="ansi"``)."""
        if self.render_mode is None or self._batch.state is None:
            return None
        names = [g.name for g in self.scenarios[0].expanded_guests()]
        return render_host(self._batch.state, self._batch.params, 0, names)
