"""Trained policies as BalloonBench agents: ``ppo:DIR`` (also ``sac:``, ``a2c:``, ``td3:``).

A run directory written by ``train.py`` holds a safe export (``policy.json`` + ``policy.pth``,
see :mod:`balloon_gym.policy_export`); :func:`load_trained` rebuilds the actor from it as a
plain torch network, never unpickling code (the JSON and the tensors' names and shapes are
checked against size limits before any network is built), and :class:`TrainedPolicy` answers
:class:`~balloon_gym.agents.base.Policy`'s ``predict``: it applies the saved observation
normalisation itself, and (residual policies) adds the network's correction to its baseline.

A policy trained with more guest slots than the env has (multi-scenario training pads to the
widest scenario) acts on a narrower env: its observation is padded with empty slots (all zeros,
as the env pads) and the actions of the env's slots are returned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from balloon_gym.agents.base import PolicyState
from balloon_gym.core.observe import GUEST_FEATURES, observation_size


class TrainedPolicy:
    """A rebuilt actor with its normalisation and residual baseline.

    Args:
        spec: A checked ``policy.json`` (:func:`balloon_gym.policy_export.validate_spec`).
        actor: The network of :func:`balloon_gym.policy_export.build_actor`, loaded.
        max_guests: Guest slots of the env it acts on (<= ``spec["max_guests"]``).
        name: Label (e.g. ``ppo:runs/x``).

    Raises:
        ValueError: If the env has more guest slots than the policy was trained with.
    """

    def __init__(self, spec: dict[str, Any], actor: Any, max_guests: int, name: str = "") -> None:
        trained = int(spec["max_guests"])
        if max_guests > trained:
            raise ValueError(
                f"{name or 'policy'} was trained with {trained} guest slots; the env has "
                f"{max_guests}; train on a scenario at least as wide"
            )
        self.spec, self.actor, self.name = spec, actor, name
        self.max_guests, self.trained_guests = max_guests, trained
        norm = spec["obs_norm"]
        self._norm = None
        if norm is not None:
            mean, var = np.asarray(norm["mean"]), np.asarray(norm["var"])
            self._norm = (mean, np.sqrt(var + float(norm["epsilon"])), float(norm["clip"]))
        self._low, self._high = (float(x) for x in spec["clip_actions"])
        self.base = None
        if spec["residual"] is not None:
            from balloon_gym.agents import make_agent

            width = observation_size(max_guests)
            self.base = make_agent(spec["residual"]["base"], _spaces(width, 2 * max_guests))

    def _pad(self, obs: np.ndarray) -> np.ndarray:
        """Observation of ``max_guests`` slots -> the trained width (empty slots: zeros)."""
        if self.max_guests == self.trained_guests:
            return obs
        num = len(GUEST_FEATURES)
        guest = obs[:, : self.max_guests * num]
        pad = np.zeros((obs.shape[0], (self.trained_guests - self.max_guests) * num), obs.dtype)
        return np.concatenate([guest, pad, obs[:, self.max_guests * num :]], axis=1)

    def network_action(self, observation: np.ndarray) -> np.ndarray:
        """The network's deterministic action on raw (unnormalised) observations, clipped."""
        import torch

        obs = self._pad(np.atleast_2d(np.asarray(observation, dtype=np.float32)))
        if self._norm is not None:
            mean, std, clip = self._norm
            obs = np.clip((obs - mean) / std, -clip, clip).astype(np.float32)
        with torch.no_grad():
            out = self.actor(torch.as_tensor(obs, dtype=torch.float32)).numpy()
        out = np.clip(out, self._low, self._high)
        g, t = self.max_guests, self.trained_guests
        return np.concatenate([out[:, :g], out[:, t : t + g]], axis=1)

    def predict(
        self,
        observation: np.ndarray,
        state: PolicyState = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, PolicyState]:
        """See :class:`~balloon_gym.agents.base.Policy`; always deterministic."""
        single = np.ndim(observation) == 1
        obs = np.atleast_2d(np.asarray(observation, dtype=np.float32))
        actions = self.network_action(obs)
        if self.base is not None:
            base, _ = self.base.predict(obs, episode_start=episode_start)
            res = self.spec["residual"]
            g = self.max_guests
            scale = np.repeat([float(res["scale"]), float(res.get("vcpu_scale", res["scale"]))], g)
            actions = np.clip(np.asarray(base) + scale * actions, -1.0, 1.0)
        actions = actions.astype(np.float32)
        return (actions[0] if single else actions), state

    def __repr__(self) -> str:
        return f"TrainedPolicy({self.name!r}, algo={self.spec['algo']})"


def _spaces(obs_dim: int, action_dim: int) -> tuple[Any, Any]:
    from gymnasium import spaces

    return (
        spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
        spaces.Box(-1.0, 1.0, (action_dim,), np.float32),
    )


def check_trained_spec(kind: str, path: str) -> None:
    """Fail fast if ``path`` is not a run directory with an export of algo ``kind``.

    Raises:
        ValueError: Naming the file and the problem.
    """
    load_trained(kind, path, None)


def load_trained(kind: str, path: str | Path, max_guests: int | None) -> TrainedPolicy:
    """Load ``kind:path`` safely (see the module docstring).

    Args:
        kind: ``ppo``, ``sac``, ``a2c``, ``td3`` (must match the export) or ``sb3`` (any).
        path: Run directory (with ``policy.json`` and ``policy.pth``).
        max_guests: Guest slots of the env; None: the policy's own.

    Raises:
        ValueError: For a missing/invalid export or a kind that does not match it.
    """
    from balloon_gym.policy_export import SPEC_FILE, load_export

    spec, actor = load_export(path)
    if kind not in ("sb3", spec["algo"]):
        raise ValueError(
            f"{Path(path) / SPEC_FILE}: holds a {spec['algo']} policy, not {kind}; "
            f"name it {spec['algo']}:{path}"
        )
    width = spec["max_guests"] if max_guests is None else max_guests
    return TrainedPolicy(spec, actor, width, name=f"{kind}:{path}")
