"""Algorithm hyperparameters: ``configs/algos/<algo>.yaml``, rl-baselines3-zoo style.

A file maps scenario names to hyperparameters; ``default`` applies to every scenario and a
scenario's own entry is merged over it (``policy_kwargs`` and ``normalize`` one level deep).
A multi-scenario run (``--scenario idle-tax,diurnal``) uses the entry named exactly
``idle-tax,diurnal`` if there is one, else ``default`` only. Command-line overrides
(``--hp learning_rate=3e-4 n_steps=256``) are merged last; their values are parsed with
``yaml.safe_load``. Files are read with ``yaml.safe_load`` and nothing is ever evaluated:
``policy_kwargs.activation_fn`` is a name from :data:`ACTIVATIONS`.

Keys: any keyword of the SB3 algorithm's constructor (checked against its signature, except
the ones this package sets: ``policy``, ``env``, ``seed``, ``verbose``, ``tensorboard_log``,
``device``), plus :data:`OWN_KEYS`.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

#: Supported algorithms (the SB3 class names by key).
ALGOS: tuple[str, ...] = ("ppo", "sac", "a2c", "td3")

#: Activation names allowed in ``policy_kwargs.activation_fn`` (mapped to ``torch.nn``).
ACTIVATIONS: tuple[str, ...] = ("tanh", "relu", "elu", "leaky_relu", "gelu", "silu")

#: Keys of ``policy_kwargs`` that may be given (plain data only).
POLICY_KWARGS: tuple[str, ...] = (
    "net_arch",
    "activation_fn",
    "log_std_init",
    "ortho_init",
    "share_features_extractor",
)

#: ``normalize`` keys (VecNormalize arguments).
NORMALIZE_KEYS: tuple[str, ...] = ("norm_obs", "norm_reward", "clip_obs", "clip_reward")

#: Keys of this package, not of SB3, with their defaults and meaning.
OWN_KEYS: dict[str, tuple[Any, str]] = {
    "n_envs": (32, "hosts in the training batch (BalloonSB3VecEnv num_envs)"),
    "normalize": ({}, "VecNormalize arguments (norm_obs, norm_reward, clip_obs, clip_reward)"),
    "residual": (None, "baseline whose action the policy corrects (null: plain policy)"),
    "residual_scale": (0.5, "policy output is multiplied by this before it is added"),
    "residual_vcpu_scale": (None, "the same for the vCPU half of the action (null: as memory)"),
    "host_swap_penalty_gib": (0.0, "extra training reward penalty per GiB host-swapped"),
    "eval_freq": (20_000, "timesteps between evaluations (0: never)"),
    "eval_seeds": (3, "evaluation seeds 10000.. per periodic evaluation"),
    "checkpoint_freq": (20_000, "timesteps between checkpoints (0: only at the end)"),
    "max_episode_steps": (None, "episode length (null: the scenario's)"),
}

#: SB3 constructor keywords this package sets itself.
_RESERVED = ("policy", "env", "seed", "verbose", "tensorboard_log", "device", "_init_setup_model")


class TrainConfigError(ValueError):
    """A bad algorithm config or override; the message names the key and the fix."""


def algo_class(algo: str) -> type:
    """The stable-baselines3 class of an algorithm key.

    Raises:
        TrainConfigError: For an unknown algorithm.
    """
    import stable_baselines3 as sb3

    if algo not in ALGOS:
        raise TrainConfigError(f"unknown algo {algo!r}; choose from {', '.join(ALGOS)}")
    return getattr(sb3, algo.upper())


def sb3_keys(algo: str) -> list[str]:
    """Constructor keywords of the SB3 algorithm that a config may set."""
    params = inspect.signature(algo_class(algo).__init__).parameters
    return [k for k in params if k not in ("self", *_RESERVED)]


def algo_file(algo: str, config_dir: str | Path | None = None) -> Path:
    """Path of ``<algo>.yaml`` in ``config_dir`` (default: the shipped ``configs/algos``)."""
    if config_dir is None:
        config_dir = Path(str(resources.files("balloon_gym.configs") / "algos"))
    return Path(config_dir) / f"{algo}.yaml"


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``extra``; dict values (policy_kwargs, normalize) one level deep."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["learning_rate=3e-4", "policy_kwargs.net_arch=[64,64]"]`` -> a nested dict.

    Values are parsed with ``yaml.safe_load`` (numbers, lists, dicts, null, booleans).

    Raises:
        TrainConfigError: For an item without ``=`` or a value YAML cannot parse.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise TrainConfigError(f"--hp {item!r}: expected key=value, e.g. learning_rate=3e-4")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise TrainConfigError(f"--hp {item!r}: cannot parse the value: {err}") from None
        if isinstance(value, str):  # yaml reads 3e-4 (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        *parents, leaf = key.strip().split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _check(algo: str, cfg: dict[str, Any]) -> None:
    """Reject unknown keys and bad values of a merged config."""
    allowed = set(sb3_keys(algo)) | set(OWN_KEYS)
    unknown = sorted(k for k in cfg if k not in allowed)
    if unknown:
        raise TrainConfigError(
            f"unknown {algo} hyperparameter(s) {unknown}; allowed: {', '.join(sorted(allowed))}"
        )
    pk = cfg.get("policy_kwargs") or {}
    if not isinstance(pk, dict) or set(pk) - set(POLICY_KWARGS):
        raise TrainConfigError(
            f"policy_kwargs {pk!r}: allowed keys are {', '.join(POLICY_KWARGS)} (plain data)"
        )
    act = pk.get("activation_fn", "tanh")
    if act not in ACTIVATIONS:
        raise TrainConfigError(
            f"policy_kwargs.activation_fn {act!r} unknown; choose from {', '.join(ACTIVATIONS)}"
        )
    arch = pk.get("net_arch")
    if arch is not None and not (
        isinstance(arch, list) and all(isinstance(x, int) and x > 0 for x in arch)
    ):
        raise TrainConfigError(f"policy_kwargs.net_arch {arch!r}: give a list of layer widths")
    norm = cfg.get("normalize") or {}
    if not isinstance(norm, dict) or set(norm) - set(NORMALIZE_KEYS):
        raise TrainConfigError(f"normalize {norm!r}: allowed keys are {', '.join(NORMALIZE_KEYS)}")
    if not isinstance(cfg.get("n_envs"), int) or cfg["n_envs"] < 1:
        raise TrainConfigError(f"n_envs must be a positive integer, got {cfg.get('n_envs')!r}")
    if cfg.get("residual") is not None:
        from balloon_gym.agents import CLASSIC_AGENTS

        if cfg["residual"] not in CLASSIC_AGENTS:
            raise TrainConfigError(
                f"residual {cfg['residual']!r}: choose a classic baseline "
                f"({', '.join(CLASSIC_AGENTS)}) or null"
            )


def load_algo_config(
    algo: str,
    scenarios: list[str],
    overrides: dict[str, Any] | None = None,
    config_dir: str | Path | None = None,
) -> dict[str, Any]:
    """The resolved hyperparameters of a run.

    Args:
        algo: Key of :data:`ALGOS`.
        scenarios: Training scenarios (names as given on the command line).
        overrides: Nested overrides (:func:`parse_overrides`), merged last.
        config_dir: Directory with ``<algo>.yaml`` (default: the shipped one).

    Returns:
        A plain dict: :data:`OWN_KEYS` with their defaults filled in and SB3 keywords.

    Raises:
        TrainConfigError: For an unknown algo, a missing or malformed file, unknown keys.
    """
    path = algo_file(algo, config_dir)
    algo_class(algo)
    if not path.is_file():
        raise TrainConfigError(f"no hyperparameter file {path} for algo {algo!r}")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not all(isinstance(v, dict | None) for v in data.values()):
        raise TrainConfigError(f"{path}: expected a mapping of scenario name -> hyperparameters")
    cfg = {k: copy.deepcopy(v) for k, (v, _) in OWN_KEYS.items()}
    cfg = _merge(cfg, data.get("default") or {})
    key = ",".join(scenarios)
    if key in data:
        cfg = _merge(cfg, data[key] or {})
    cfg = _merge(cfg, overrides or {})
    _check(algo, cfg)
    return cfg


def activation_class(name: str) -> type:
    """``torch.nn`` activation class for a whitelisted name."""
    import torch.nn as nn

    table = {
        "tanh": nn.Tanh,
        "relu": nn.ReLU,
        "elu": nn.ELU,
        "leaky_relu": nn.LeakyReLU,
        "gelu": nn.GELU,
        "silu": nn.SiLU,
    }
    if name not in table:
        raise TrainConfigError(f"activation {name!r} unknown; choose from {', '.join(table)}")
    return table[name]


def sb3_kwargs(cfg: dict[str, Any]) -> dict[str, Any]:
    """The SB3 constructor keywords of a resolved config (activation names -> classes)."""
    out = {k: copy.deepcopy(v) for k, v in cfg.items() if k not in OWN_KEYS}
    pk = dict(out.get("policy_kwargs") or {})
    if "activation_fn" in pk:
        pk["activation_fn"] = activation_class(pk["activation_fn"])
    if pk:
        out["policy_kwargs"] = pk
    return out
