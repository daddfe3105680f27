"""Turning a trained SB3 model into the policy export format (:mod:`balloon_gym.policy_export`).

The format itself (``policy.json`` + ``policy.pth``, its checks and the loader) lives in
:mod:`balloon_gym.policy_export`, which the trained agents use too; this module adds only what
needs stable-baselines3: the actor of a model and the spec that describes it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from balloon_gym.policy_export import (
    ACTIVATIONS,
    FORMAT,
    FORMAT_VERSION,
    SPEC_FILE,
    WEIGHTS_FILE,
    activation_class,
    build_actor,
    load_export,
    read_spec,
    save_export,
    validate_spec,
)


def actor_from_model(model: Any) -> tuple[str, Any]:
    """The deterministic actor of an SB3 model as a ``Sequential`` copy, with the algo key.

    Raises:
        ValueError: For policies this export does not cover (gSDE, custom extractors).
    """
    import copy

    import torch.nn as nn
    from stable_baselines3 import A2C, PPO, SAC, TD3

    policy = model.policy
    if getattr(policy, "use_sde", False):
        raise ValueError("gSDE policies are not exportable; train with use_sde: false")
    if isinstance(model, PPO | A2C):
        extractor = policy.pi_features_extractor
        head = [*policy.mlp_extractor.policy_net, policy.action_net]
        algo = "ppo" if isinstance(model, PPO) else "a2c"
    elif isinstance(model, SAC):
        extractor = policy.actor.features_extractor
        head = [*policy.actor.latent_pi, policy.actor.mu]
        algo = "sac"
    elif isinstance(model, TD3):
        extractor = policy.actor.features_extractor
        head = list(policy.actor.mu)
        algo = "td3"
    else:
        raise ValueError(f"cannot export a {type(model).__name__}")
    if type(extractor).__name__ != "FlattenExtractor":
        raise ValueError("only MlpPolicy with the default FlattenExtractor is exportable")
    return algo, nn.Sequential(*[copy.deepcopy(m) for m in head]).cpu()


def make_export(
    model: Any, obs_rms: Any, clip_obs: float, epsilon: float, meta: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The spec and ``state_dict`` of an SB3 model's actor (in memory; see :func:`save_export`).

    Args:
        model: The SB3 model.
        obs_rms: ``VecNormalize.obs_rms`` (``RunningMeanStd``) or None (no normalisation).
        clip_obs: ``VecNormalize.clip_obs``.
        epsilon: ``VecNormalize.epsilon``.
        meta: ``max_guests``, ``residual``, ``scenarios``, ``env_version``,
            ``package_version``.
    """
    import torch.nn as nn

    algo, actor = actor_from_model(model)
    linear = [m for m in actor if isinstance(m, nn.Linear)]
    acts = [m for m in actor if not isinstance(m, nn.Linear)]  # first: the hidden activation
    names = [n for n in ACTIVATIONS if acts and type(acts[0]) is activation_class(n)]
    if len(linear) > 1 and not names:
        raise ValueError(f"activation {type(acts[0]).__name__} is not exportable")
    obs_dim = int(model.observation_space.shape[0])
    action_dim = int(model.action_space.shape[0])
    norm = None
    if obs_rms is not None:
        norm = {
            "mean": [float(x) for x in np.asarray(obs_rms.mean, dtype=np.float64)],
            "var": [float(x) for x in np.asarray(obs_rms.var, dtype=np.float64)],
            "clip": float(clip_obs),
            "epsilon": float(epsilon),
        }
    spec = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "algo": algo,
        "net_arch": [int(m.out_features) for m in linear[:-1]],
        "activation": names[0] if names else "tanh",
        "obs_dim": obs_dim,
        "action_dim": action_dim,
        "max_guests": int(meta["max_guests"]),
        "squash": algo == "sac",
        "clip_actions": [float(model.action_space.low.min()), float(model.action_space.high.max())],
        "obs_norm": norm,
        "residual": meta.get("residual"),
        "scenarios": list(meta["scenarios"]),
        "env_version": meta["env_version"],
        "package_version": meta["package_version"],
    }
    state = {k: v.detach().cpu().clone() for k, v in actor.state_dict().items()}
    return spec, state


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "SPEC_FILE",
    "WEIGHTS_FILE",
    "actor_from_model",
    "build_actor",
    "load_export",
    "make_export",
    "read_spec",
    "save_export",
    "validate_spec",
]
