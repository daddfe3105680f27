"""The training VecEnv stack: ``VecNormalize(Residual(Timed(BalloonSB3VecEnv)))``.

* :class:`TimedVecEnv` adds up the wall time spent inside the simulator (``reset``,
  ``step_wait``), so a run can report the environment's share of its training time.
* :class:`ResidualVecEnv` (optional) makes the learned action a correction of a classic
  baseline's: ``clip(base(obs) + scale * a, -1, 1)``. A network output of 0 is the baseline,
  so training starts from a real system's policy and the policy cannot be much worse than it
  unless training moves it there (residual RL: Johannink et al. 2019, Silver et al. 2018).
* ``VecNormalize`` normalises observations (and rewards) with running statistics that are
  saved with every checkpoint and exported as plain numbers with the policy.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecNormalize
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from balloon_gym.agents import make_agent
from balloon_gym.agents.base import Policy
from balloon_gym.envs.sb3 import BalloonSB3VecEnv

TRAIN_TRACE_SPLIT = "train"
"""Trace-replay guests draw only training VMs while training."""

MAX_TRAIN_SEED = 9_000
"""Training env seeds stay below this (evaluation seeds start at 10000)."""


MAX_SEED = 1000
"""Training seeds are ``0 .. MAX_SEED - 1``."""


def env_seed(seed: int, segment: int = 0) -> int:
    """The env seed of training seed ``seed`` in its ``segment``-th (resumed) segment.

    ``1000 + (seed + 1000 * segment) % 8000``: in [1000, 9000), below the evaluation seeds;
    a resumed run re-seeds its env with a different seed so that it does not replay the
    episodes it started with.

    Raises:
        ValueError: If ``seed`` is not in ``[0, MAX_SEED)``.
    """
    if not 0 <= seed < MAX_SEED:
        raise ValueError(f"--seed must be in [0, {MAX_SEED}), got {seed}")
    return 1000 + (seed + MAX_SEED * segment) % (MAX_TRAIN_SEED - 1000)


class TimedVecEnv(VecEnvWrapper):
    """Adds up the wall time of the wrapped env's ``reset`` and ``step_wait``, s."""

    def __init__(self, venv: VecEnv) -> None:
        super().__init__(venv)
        self.env_time_s = 0.0
        self.env_steps = 0

    def reset(self) -> VecEnvObs:
        """Reset the wrapped env, timed."""
        start = time.perf_counter()
        obs = self.venv.reset()
        self.env_time_s += time.perf_counter() - start
        return obs

    def step_wait(self) -> VecEnvStepReturn:
        """Step the wrapped env, timed."""
        start = time.perf_counter()
        out = self.venv.step_wait()
        self.env_time_s += time.perf_counter() - start
        self.env_steps += self.num_envs
        return out


class SwapPenaltyVecEnv(VecEnvWrapper):
    """Subtracts ``penalty`` per GiB host-swapped from the reward (training-side shaping).

    The scenarios' own reward charges ``w_host_swap_gib`` (0.05 by default) per GiB, so
    little that a policy can learn to buy throughput with host swap; this makes host swap dear
    while training. The amount swapped per step is read from the adapter's episode
    accumulators (the batch's ``host_swap_gib`` info summed since the episode start), so it is
    exact, also on the step an episode ends.

    Args:
        venv: The stack down to (and including) a :class:`BalloonSB3VecEnv`.
        penalty: Reward units per GiB.
    """

    def __init__(self, venv: VecEnv, penalty: float) -> None:
        super().__init__(venv)
        self.penalty = float(penalty)
        sim = venv
        while not isinstance(sim, BalloonSB3VecEnv):
            sim = sim.venv  # type: ignore[attr-defined]
        self._acc = sim._ep_parts["host_swap_gib"]  # read only: the adapter's accumulator

    def reset(self) -> VecEnvObs:
        """Reset the wrapped env."""
        return self.venv.reset()

    def step_wait(self) -> VecEnvStepReturn:
        """Step; reward minus ``penalty`` x GiB host-swapped in this step."""
        before = self._acc.copy()
        obs, reward, dones, infos = self.venv.step_wait()
        after = self._acc.copy()
        for i in np.flatnonzero(dones):
            after[i] = infos[i]["episode"]["host_swap_gib"]
        swapped = np.maximum(after - before, 0.0)
        return obs, (reward - self.penalty * swapped).astype(np.float32), dones, infos


class ResidualVecEnv(VecEnvWrapper):
    """Actions are corrections of a baseline's: ``clip(base(obs) + scale * a, -1, 1)``.

    Args:
        venv: The env (raw observations: it must sit below ``VecNormalize``).
        base: Name of a classic baseline (:data:`balloon_gym.agents.CLASSIC_AGENTS`).
        scale: Multiplier of the policy's action (memory half).
        vcpu_scale: Multiplier of the vCPU half (None: ``scale``). The baselines keep every
            vCPU active (+1), so reaching fewer active vCPUs needs a scale up to 2.
    """

    def __init__(
        self, venv: VecEnv, base: str, scale: float, vcpu_scale: float | None = None
    ) -> None:
        super().__init__(venv)
        g = int(venv.action_space.shape[0]) // 2
        vcpu = float(scale if vcpu_scale is None else vcpu_scale)
        self.base_name = base
        self.scale = np.concatenate([np.full(g, float(scale)), np.full(g, vcpu)]).astype(np.float32)
        self.base: Policy = make_agent(base, (venv.observation_space, venv.action_space))
        self._obs: np.ndarray | None = None
        self._starts = np.ones(venv.num_envs, dtype=bool)
        self._state = None
        self.base_time_s = 0.0

    def _base_action(self) -> np.ndarray:
        start = time.perf_counter()
        assert self._obs is not None
        act, self._state = self.base.predict(
            self._obs, state=self._state, episode_start=self._starts, deterministic=True
        )
        self.base_time_s += time.perf_counter() - start
        return np.asarray(act, dtype=np.float32)

    def reset(self) -> VecEnvObs:
        """Reset the wrapped env and remember the observation the baseline acts on."""
        self._obs = np.asarray(self.venv.reset())
        self._starts[:] = True
        self._state = None
        return self._obs

    def step_async(self, actions: np.ndarray) -> None:
        """Send ``clip(base + scale * actions, -1, 1)``."""
        final = np.clip(self._base_action() + self.scale * actions, -1.0, 1.0)
        self._starts[:] = False
        self.venv.step_async(final.astype(np.float32))

    def step_wait(self) -> VecEnvStepReturn:
        """Step; finished envs start a new episode (the baseline is told)."""
        obs, reward, dones, infos = self.venv.step_wait()
        self._obs = np.asarray(obs)
        self._starts = np.asarray(dones, dtype=bool).copy()
        return obs, reward, dones, infos


def make_train_env(
    scenarios: Sequence[str],
    cfg: dict,
    seed: int,
    segment: int = 0,
    trace_split: str | None = TRAIN_TRACE_SPLIT,
) -> tuple[VecNormalize | VecEnv, TimedVecEnv]:
    """The training env of a resolved config, unnormalised stats (see :mod:`.config`).

    Envs are assigned to ``scenarios`` round-robin and padded to the widest guest count
    (``BalloonSB3VecEnv`` with a list of scenarios).

    Returns:
        The env the algorithm sees (``VecNormalize`` on top if asked for) and the timer.
    """
    scen: str | list[str] = scenarios[0] if len(scenarios) == 1 else list(scenarios)
    base = BalloonSB3VecEnv(
        num_envs=int(cfg["n_envs"]),
        scenario=scen,
        max_episode_steps=cfg.get("max_episode_steps"),
        trace_split=trace_split,
    )
    base.seed(env_seed(seed, segment))
    timed = TimedVecEnv(base)
    venv: VecEnv = timed
    if cfg.get("host_swap_penalty_gib", 0.0):
        venv = SwapPenaltyVecEnv(venv, cfg["host_swap_penalty_gib"])
    if cfg.get("residual"):
        venv = ResidualVecEnv(
            venv, cfg["residual"], cfg.get("residual_scale", 0.5), cfg.get("residual_vcpu_scale")
        )
    norm = dict(cfg.get("normalize") or {})
    if norm.get("norm_obs", False) or norm.get("norm_reward", False):
        venv = VecNormalize(venv, gamma=float(cfg.get("gamma", 0.99)), **norm)
    return venv, timed


def find_wrapper(venv: VecEnv, cls: type) -> VecEnv | None:
    """The first wrapper of type ``cls`` in a VecEnv stack, or None."""
    while True:
        if isinstance(venv, cls):
            return venv
        if not hasattr(venv, "venv"):
            return None
        venv = venv.venv
