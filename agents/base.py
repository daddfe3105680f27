"""The one interface of every policy, and the helpers the rule-based baselines share.

Every policy, baseline or trained, answers stable-baselines3's ``predict``::

    actions, state = policy.predict(observation, state=None, episode_start=None,
                                    deterministic=True)

over a batch of observations ``(num_envs, obs_dim)``, so that baselines and trained SB3 models
(``BaseAlgorithm.predict`` has this signature) go through one evaluation path. ``state`` is the
recurrent state of SB3's API: a policy that remembers something across steps (``static`` keeps
the allocation it chose at the start of the episode) returns it there, and the caller passes it
back on the next call. ``episode_start`` (``(num_envs,)`` bool) marks envs whose episode starts
with this observation; a policy resets what it remembers for those envs.

The observation is the flat vector of :mod:`balloon_gym.core.observe`: ``max_guests`` blocks of
:data:`~balloon_gym.core.observe.GUEST_FEATURES`, then
:data:`~balloon_gym.core.observe.HOST_FEATURES`. :func:`split_observation` turns a batch into
named arrays. Memory features are fractions of the guest's own ``mem_mib``; ``mem_size`` is the
guest's ``mem_mib`` as a fraction of host memory, so ``x * mem_size`` converts a guest fraction
into a fraction of host memory, the unit of ``host_capacity`` (memory the scheduler may hand out
without leaving the host's high state). The baselines compute allocations in that host unit.

The action (DESIGN 3.8) is ``Box(-1, 1, (2 * max_guests,))``: memory per guest slot
(``allocation`` mode: ``target = min + u * (max - min)``, ``u = (a + 1) / 2``), then vCPUs per
slot (keep ``1 + round(u * (vcpus - 1))`` active). :func:`memory_action` and :func:`vcpu_action`
encode allocations and vCPU counts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
from gymnasium import spaces

from balloon_gym.core.observe import GUEST_FEATURES, HOST_FEATURES, observation_size

PolicyState = tuple[np.ndarray, ...] | None
"""Recurrent state as in stable-baselines3: a tuple of arrays, or None."""

GUEST_NAMES: tuple[str, ...] = tuple(name for name, _ in GUEST_FEATURES)
HOST_NAMES: tuple[str, ...] = tuple(name for name, _ in HOST_FEATURES)

_EPS = 1e-12


@runtime_checkable
class Policy(Protocol):
    """Anything with stable-baselines3's ``predict``; every BalloonBench entry is one."""

    def predict(
        self,
        observation: np.ndarray,
        state: PolicyState = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, PolicyState]:
        """Actions for a batch of observations.

        Args:
            observation: ``(num_envs, obs_dim)`` float32 observations.
            state: The state this policy returned on the previous call (None at the start).
            episode_start: ``(num_envs,)`` bool, True where an episode starts.
            deterministic: Whether to act deterministically (SB3's flag).

        Returns:
            ``(num_envs, 2 * max_guests)`` actions in [-1, 1] and the state for the next call.
        """
        ...


def split_observation(observation: np.ndarray, max_guests: int) -> dict[str, np.ndarray]:
    """Named features of a flat observation batch.

    Args:
        observation: ``(num_envs, obs_dim)`` (or one ``(obs_dim,)`` observation).
        max_guests: Guest slots of the env.

    Returns:
        Each guest feature of :data:`GUEST_FEATURES` as a float64 ``(num_envs, max_guests)``
        array, and each host feature of :data:`HOST_FEATURES` as ``(num_envs, 1)`` so that it
        broadcasts against guest features.

    Raises:
        ValueError: If the width does not match ``max_guests``.
    """
    obs = np.atleast_2d(np.asarray(observation, dtype=np.float64))
    width = observation_size(max_guests)
    if obs.ndim != 2 or obs.shape[1] != width:
        raise ValueError(
            f"observation has shape {np.shape(observation)}, expected (num_envs, {width}) for "
            f"max_guests={max_guests}; build the policy from the env it acts on"
        )
    n, num = obs.shape[0], len(GUEST_NAMES)
    guest = obs[:, : max_guests * num].reshape(n, max_guests, num)
    host = obs[:, max_guests * num :]
    out = {name: guest[:, :, i] for i, name in enumerate(GUEST_NAMES)}
    out.update({name: host[:, i : i + 1] for i, name in enumerate(HOST_NAMES)})
    return out


def guest_mask(f: dict[str, np.ndarray]) -> np.ndarray:
    """Real guest slots ``(num_envs, max_guests)`` bool (padding is all zeros)."""
    return f["present"] > 0.5


def memory_action(alloc_frac: np.ndarray, f: dict[str, np.ndarray]) -> np.ndarray:
    """Memory actions giving allocations ``alloc_frac`` (fractions of each guest's mem_mib).

    Inverts ``target = min + u * (max - min)``, ``a = 2u - 1``; clipped to [-1, 1] (targets
    outside [min, max] go to the nearest end). A guest with ``min == max`` gets +1; padding 0.
    """
    span = f["max"] - f["min"]
    u = np.where(span > _EPS, (alloc_frac - f["min"]) / np.maximum(span, _EPS), 1.0)
    return np.where(guest_mask(f), np.clip(2.0 * u - 1.0, -1.0, 1.0), 0.0)


def vcpu_action(active_frac: np.ndarray | float, f: dict[str, np.ndarray]) -> np.ndarray:
    """vCPU actions keeping ``active_frac`` of each guest's vCPUs active (1.0 = all: +1).

    The env keeps ``1 + round(u * (vcpus - 1))`` active with ``u = (a + 1) / 2``; pass the
    exact fraction ``(active - 1) / (vcpus - 1)`` for an exact count.
    """
    a = 2.0 * np.clip(np.broadcast_to(active_frac, f["present"].shape), 0.0, 1.0) - 1.0
    return np.where(guest_mask(f), a, 0.0)


def host_units(f: dict[str, np.ndarray], name: str) -> np.ndarray:
    """A per-guest memory feature (fraction of mem_mib) in fractions of host memory."""
    return f[name] * f["mem_size"]


def solve_level(
    alloc_at: Callable[[np.ndarray], np.ndarray],
    level_hi: np.ndarray,
    capacity: np.ndarray,
    iterations: int = 60,
) -> np.ndarray:
    """Vectorised bisection for the level at which allocations fill each host's capacity.

    ``alloc_at(level)`` maps a ``(num_envs, 1)`` level to ``(num_envs, max_guests)``
    allocations, non-decreasing in the level; the result is the allocation at the largest level
    in ``[0, level_hi]`` (found to ``level_hi * 2**-iterations``) whose sum does not exceed
    ``capacity``. Rows whose allocations at 0 already exceed capacity get ``alloc_at(0)``; rows
    whose allocations at ``level_hi`` stay below it get ``alloc_at(level_hi)``. A fixed
    iteration count, no Python loop over hosts or guests.

    Args:
        alloc_at: Allocation as a function of the level (e.g. ``clip(shares * t, lo, hi)``).
        level_hi: ``(num_envs, 1)`` upper end of the bracket.
        capacity: ``(num_envs, 1)`` amount to fill.
        iterations: Bisection steps.
    """
    lo = np.zeros_like(level_hi)
    hi = level_hi.copy()
    fits_hi = alloc_at(hi).sum(axis=1, keepdims=True) <= capacity
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        fits = alloc_at(mid).sum(axis=1, keepdims=True) <= capacity
        lo = np.where(fits, mid, lo)
        hi = np.where(fits, hi, mid)
    return alloc_at(np.where(fits_hi, level_hi, lo))


def share_fill(
    weights: np.ndarray, lo: np.ndarray, hi: np.ndarray, capacity: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """``x = clip(w * t, lo, hi)`` with ``sum x = capacity`` (proportional share with clamps).

    All arrays ``(num_envs, max_guests)`` except ``capacity`` ``(num_envs, 1)``; padding
    (``~mask``) gets 0. Unit of ``lo``, ``hi``, ``capacity`` and the result: any, the same.
    """
    w = np.where(mask, np.maximum(weights, _EPS), 0.0)
    lo, hi = np.where(mask, lo, 0.0), np.where(mask, np.maximum(hi, lo), 0.0)
    t_hi = np.max(np.where(mask, hi / np.maximum(w, _EPS), 0.0), axis=1, keepdims=True)
    return solve_level(lambda t: np.clip(w * t, lo, hi), t_hi, capacity)


def pinned_guests(f: dict[str, np.ndarray]) -> np.ndarray:
    """Guests whose balloon cannot move (driver out): their allocation is what they have."""
    return guest_mask(f) & (f["driver_up"] < 0.5)


class RulePolicy:
    """Base of the rule-based baselines: parse the observation, allocate, encode.

    Subclasses implement :meth:`allocate`, returning each guest's memory allocation as a
    fraction of its ``mem_mib`` and the fraction of its vCPUs to keep active, from the named
    features of :func:`split_observation`. Stateless unless a subclass overrides
    :meth:`predict`.

    Args:
        max_guests: Guest slots of the env (the action has ``2 * max_guests`` entries).
    """

    name: ClassVar[str] = "rule"

    def __init__(self, max_guests: int) -> None:
        if max_guests < 1:
            raise ValueError(f"max_guests must be >= 1, got {max_guests}")
        self.max_guests = max_guests

    def allocate(self, f: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | float]:
        """Memory allocation (fraction of mem_mib) and active vCPU fraction per guest."""
        raise NotImplementedError

    def act(self, f: dict[str, np.ndarray]) -> np.ndarray:
        """Actions ``(num_envs, 2 * max_guests)`` for parsed observations."""
        alloc, active = self.allocate(f)
        return np.concatenate([memory_action(alloc, f), vcpu_action(active, f)], axis=1)

    def predict(
        self,
        observation: np.ndarray,
        state: PolicyState = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, PolicyState]:
        """See :class:`Policy`; a single ``(obs_dim,)`` observation gives one action."""
        single = np.ndim(observation) == 1
        actions = self.act(split_observation(observation, self.max_guests))
        return (actions[0] if single else actions).astype(np.float32), state

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"


def spaces_of(env_or_spaces: Any) -> tuple[spaces.Box, spaces.Box]:
    """Single-env observation and action spaces of an env, vector env, SB3 VecEnv or a pair.

    Raises:
        TypeError: If no spaces can be found.
    """
    if isinstance(env_or_spaces, tuple) and len(env_or_spaces) == 2:
        return env_or_spaces
    for obs_name, act_name in (
        ("single_observation_space", "single_action_space"),  # gymnasium VectorEnv
        ("observation_space", "action_space"),  # gymnasium Env, SB3 VecEnv
    ):
        obs_space = getattr(env_or_spaces, obs_name, None)
        act_space = getattr(env_or_spaces, act_name, None)
        if obs_space is not None and act_space is not None:
            return obs_space, act_space
    raise TypeError(
        f"cannot find observation and action spaces on {type(env_or_spaces).__name__}; pass "
        "a balloon-gym env, vector env, SB3 VecEnv or (observation_space, action_space)"
    )


def max_guests_of(env_or_spaces: Any) -> int:
    """Guest slots of an env (from its action space), checked against its observation space.

    Raises:
        ValueError: If the spaces are not balloon-gym's.
    """
    obs_space, act_space = spaces_of(env_or_spaces)
    width = int(np.prod(act_space.shape))
    max_guests = width // 2
    if width % 2 or max_guests < 1 or obs_space.shape != (observation_size(max_guests),):
        raise ValueError(
            f"spaces {obs_space} / {act_space} are not balloon-gym's (action 2 * max_guests, "
            f"observation {observation_size(max(max_guests, 1))} wide)"
        )
    return max_guests
