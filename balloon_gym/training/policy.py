"""The safe export of a trained policy, and its loader (no pickle, no code from the file).

SB3's ``model.zip`` holds cloudpickled objects; loading one runs code chosen by whoever wrote it,
so it is kept only for resuming one's own runs. For evaluation a run also writes:

* ``policy.json``: plain JSON, the format below (:data:`SPEC_KEYS`);
* ``policy.pth``: the actor's ``state_dict``: a ``torch.nn.Sequential`` of
  ``Linear, activation, ..., Linear`` (the keys ``0.weight``, ``0.bias``, ``2.weight``, ...),
  read with ``torch.load(..., weights_only=True)``, which refuses any pickled object other than
  tensors and plain containers.

The actor is SB3's MlpPolicy actor: for PPO/A2C ``mlp_extractor.policy_net`` + ``action_net``
(the deterministic action is the mean, clipped to [-1, 1]); for SAC ``actor.latent_pi`` +
``actor.mu`` squashed with tanh; for TD3 ``actor.mu`` (ends in tanh). Observations are
normalised first with the saved ``VecNormalize`` statistics:
``clip((obs - mean) / sqrt(var + epsilon), -clip, clip)``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "balloon-gym-policy"
FORMAT_VERSION = 1
SPEC_FILE = "policy.json"
WEIGHTS_FILE = "policy.pth"

#: Keys of ``policy.json`` (all required; ``obs_norm`` and ``residual`` may be null).
SPEC_KEYS: dict[str, str] = {
    "format": f"{FORMAT!r}",
    "format_version": f"{FORMAT_VERSION}",
    "algo": "ppo, a2c, sac or td3",
    "net_arch": "hidden layer widths, e.g. [128, 128]",
    "activation": "activation name (tanh, relu, ...)",
    "obs_dim": "observation width the network takes",
    "action_dim": "action width (2 * max_guests)",
    "max_guests": "guest slots the policy was trained with",
    "squash": "true: tanh on the network output (SAC); TD3's net ends in tanh itself",
    "clip_actions": "[low, high] the deterministic action is clipped to",
    "obs_norm": "null or {mean: [...], var: [...], clip: float, epsilon: float}",
    "residual": "null or {base: baseline name, scale: float[, vcpu_scale: float]}",
    "scenarios": "training scenarios",
    "env_version": "environment version trained on",
    "package_version": "balloon-gym version",
}
_NORM_KEYS = {"mean", "var", "clip", "epsilon"}
_RESIDUAL_KEYS = {"base", "scale"}
_FINAL_TANH = {"td3"}  # SB3's TD3 actor ends with nn.Tanh inside ``mu``


def _problem(path: Path, text: str) -> ValueError:
    return ValueError(f"{path}: {text}")


def _check_number_list(path: Path, name: str, value: Any, size: int) -> None:
    ok = isinstance(value, list) and len(value) == size
    ok = ok and all(isinstance(x, int | float) and math.isfinite(x) for x in value)
    if not ok:
        raise _problem(path, f"{name} must be a list of {size} finite numbers")


def _check_network(spec: dict[str, Any], path: Path) -> None:
    """Algo, activation, widths and sizes."""
    from balloon_gym.core.observe import observation_size
    from balloon_gym.training.config import ACTIVATIONS, ALGOS

    if spec["algo"] not in ALGOS:
        raise _problem(path, f"algo {spec['algo']!r} unknown; known: {', '.join(ALGOS)}")
    if spec["activation"] not in ACTIVATIONS:
        raise _problem(path, f"activation {spec['activation']!r} not in {ACTIVATIONS}")
    arch = spec["net_arch"]
    if not isinstance(arch, list) or not all(isinstance(x, int) and 0 < x <= 4096 for x in arch):
        raise _problem(path, f"net_arch {arch!r}: expected a list of widths in 1..4096")
    for key in ("obs_dim", "action_dim", "max_guests"):
        if not isinstance(spec[key], int) or spec[key] < 1:
            raise _problem(path, f"{key} must be a positive integer, got {spec[key]!r}")
    if spec["action_dim"] != 2 * spec["max_guests"]:
        raise _problem(path, "action_dim must be 2 * max_guests")
    if spec["obs_dim"] != observation_size(spec["max_guests"]):
        raise _problem(path, f"obs_dim {spec['obs_dim']} does not fit max_guests")
    if not isinstance(spec["squash"], bool):
        raise _problem(path, "squash must be true or false")
    _check_number_list(path, "clip_actions", spec["clip_actions"], 2)


def _check_norm(norm: Any, obs_dim: int, path: Path) -> None:
    """``obs_norm``: null or mean/var/clip/epsilon as plain numbers."""
    if norm is None:
        return
    if not isinstance(norm, dict) or set(norm) != _NORM_KEYS:
        raise _problem(path, f"obs_norm must be null or have exactly {sorted(_NORM_KEYS)}")
    _check_number_list(path, "obs_norm.mean", norm["mean"], obs_dim)
    _check_number_list(path, "obs_norm.var", norm["var"], obs_dim)
    _check_number_list(path, "obs_norm.clip/epsilon", [norm["clip"], norm["epsilon"]], 2)
    if min(norm["var"]) < 0 or norm["epsilon"] <= 0 or norm["clip"] <= 0:
        raise _problem(path, "obs_norm: var >= 0, clip > 0 and epsilon > 0 required")


def _check_residual(res: Any, path: Path) -> None:
    """``residual``: null or a classic baseline's name and a scale."""
    from balloon_gym.agents import CLASSIC_AGENTS

    if res is None:
        return
    if not isinstance(res, dict) or set(res) - {"vcpu_scale"} != _RESIDUAL_KEYS:
        raise _problem(
            path, f"residual must be null or have {sorted(_RESIDUAL_KEYS)} (and vcpu_scale)"
        )
    if res["base"] not in CLASSIC_AGENTS:
        raise _problem(path, f"residual.base {res['base']!r} is not a classic baseline")
    scales = [res["scale"], res.get("vcpu_scale", res["scale"])]
    _check_number_list(path, "residual.scale/vcpu_scale", scales, 2)


def validate_spec(spec: Any, path: Path) -> dict[str, Any]:
    """Check a parsed ``policy.json``.

    Raises:
        ValueError: Naming the file and the problem (unknown or missing key, bad value).
    """
    if not isinstance(spec, dict):
        raise _problem(path, "expected a JSON object")
    unknown, missing = sorted(set(spec) - set(SPEC_KEYS)), sorted(set(SPEC_KEYS) - set(spec))
    if unknown:
        raise _problem(path, f"unknown key(s) {unknown}; known: {', '.join(SPEC_KEYS)}")
    if missing:
        raise _problem(path, f"missing key(s) {missing}")
    if spec["format"] != FORMAT or spec["format_version"] != FORMAT_VERSION:
        raise _problem(path, f"not a {FORMAT} v{FORMAT_VERSION} file")
    _check_network(spec, path)
    _check_norm(spec["obs_norm"], spec["obs_dim"], path)
    _check_residual(spec["residual"], path)
    return spec


def build_actor(spec: dict[str, Any]) -> Any:
    """The actor as a plain ``torch.nn.Sequential`` (weights uninitialised)."""
    import torch.nn as nn

    from balloon_gym.training.config import activation_class

    act = activation_class(spec["activation"])
    layers: list[nn.Module] = []
    width = spec["obs_dim"]
    for hidden in spec["net_arch"]:
        layers += [nn.Linear(width, hidden), act()]
        width = hidden
    layers.append(nn.Linear(width, spec["action_dim"]))
    if spec["algo"] in _FINAL_TANH or spec["squash"]:
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def load_export(directory: str | Path) -> tuple[dict[str, Any], Any]:
    """Read and check ``policy.json`` and ``policy.pth`` of a run directory.

    Returns:
        The spec and the actor network (eval mode, weights loaded).

    Raises:
        ValueError: Naming the file and the problem: missing file, bad JSON, unknown key,
            a pickle with anything but tensors, missing/unexpected weights, shape mismatch.
    """
    import torch

    directory = Path(directory)
    spec_path, weights_path = directory / SPEC_FILE, directory / WEIGHTS_FILE
    for p in (spec_path, weights_path):
        if not p.is_file():
            raise ValueError(
                f"{p}: missing; a trained run directory has {SPEC_FILE} and "
                f"{WEIGHTS_FILE} (written by train.py)"
            )
    try:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise _problem(spec_path, f"not valid JSON: {err}") from None
    validate_spec(spec, spec_path)
    try:
        weights = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError, EOFError, ...: all refusals
        raise _problem(
            weights_path,
            f"refused: not a plain tensor state_dict loadable with weights_only=True ({err})",
        ) from None
    if not isinstance(weights, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()
    ):
        raise _problem(weights_path, "expected a dict of parameter name -> tensor")
    actor = build_actor(spec)
    try:
        actor.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise _problem(weights_path, f"weights do not match {SPEC_FILE}: {err}") from None
    actor.eval()
    return spec, actor


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

    from balloon_gym.training.config import ACTIVATIONS, activation_class

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


def save_export(directory: str | Path, spec: dict[str, Any], state: dict[str, Any]) -> None:
    """Write ``policy.json`` and ``policy.pth`` into ``directory``."""
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(state, directory / WEIGHTS_FILE)
    (directory / SPEC_FILE).write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
