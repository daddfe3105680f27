"""Algorithm hyperparameters: ``configs/algos/<algo>.yaml``, rl-baselines3-zoo style.

A file maps scenario names to hyperparameters; ``default`` applies to every scenario and a
scenario's own entry is merged over it (``policy_kwargs`` and ``normalize`` one level deep).
A multi-scenario run (``--scenario idle-tax,diurnal``) uses the entry named exactly
``idle-tax,diurnal`` if there is one, else ``default`` only. Command-line overrides
(``--hp learning_rate=3e-4 n_steps=256``) are merged last; their values are parsed with
``yaml.safe_load``. Files are read with ``yaml.safe_load`` and nothing is ever evaluated:
``policy_kwargs.activation_fn`` is a name from :data:`ACTIVATIONS`.

Keys: the SB3 algorithm's constructor keywords that take plain data (:func:`param_schema`;
``policy``, ``env``, ``seed``, ``verbose``, ``tensorboard_log`` and ``device`` are set by this
package, and :data:`UNSUPPORTED` options are refused), plus :data:`OWN_KEYS`. Every value is
checked for type and range (:class:`Param`) in every entry of the file and in the overrides,
before anything is written; errors name the source, the key, the value and what is expected.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from balloon_gym.policy_export import ACTIVATIONS, ALGOS
from balloon_gym.policy_export import activation_class as export_activation_class

#: Supported algorithms (the SB3 class names by key).


#: Keys of ``policy_kwargs`` that may be given (plain data only), per algorithm.
POLICY_KWARGS_BY_ALGO: dict[str, tuple[str, ...]] = {
    "ppo": ("net_arch", "activation_fn", "log_std_init", "ortho_init", "share_features_extractor"),
    "a2c": ("net_arch", "activation_fn", "log_std_init", "ortho_init", "share_features_extractor"),
    "sac": ("net_arch", "activation_fn", "log_std_init", "share_features_extractor"),
    "td3": ("net_arch", "activation_fn", "share_features_extractor"),
}

#: Every ``policy_kwargs`` key some algorithm takes.
POLICY_KWARGS: tuple[str, ...] = tuple(
    dict.fromkeys(k for v in POLICY_KWARGS_BY_ALGO.values() for k in v)
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

#: SB3 keywords this package does not support: the one value accepted, and why.
UNSUPPORTED: dict[str, tuple[Any, str]] = {
    "use_sde": (False, "gSDE policies cannot be exported to policy.json"),
    "use_sde_at_warmup": (False, "needs use_sde, which is not supported"),
    "sde_sample_freq": (-1, "needs use_sde, which is not supported"),
    "optimize_memory_usage": (False, "conflicts with the replay buffer's time-limit handling"),
    "rollout_buffer_class": (None, "takes a Python class, which a config cannot name"),
    "rollout_buffer_kwargs": (None, "goes with rollout_buffer_class"),
    "replay_buffer_class": (None, "takes a Python class, which a config cannot name"),
    "replay_buffer_kwargs": (None, "goes with replay_buffer_class"),
    "action_noise": (None, "takes a Python object, which a config cannot name"),
}

#: Largest values of a few counts (sanity limits against typos such as n_envs=1e9).
MAX_N_ENVS = 4096
MAX_LAYERS = 16
MAX_WIDTH = 4096


class TrainConfigError(ValueError):
    """A bad algorithm config or override; the message names the key and the fix."""


@dataclass(frozen=True)
class Param:
    """Type and range of one hyperparameter.

    Attributes:
        kind: ``float`` (a finite number), ``int`` (an integer; ``1e4`` is accepted), ``bool``,
            ``choice`` (one of ``choices``), ``net_arch`` (a list of layer widths),
            ``train_freq`` (an integer or ``[n, step|episode]``), ``float_or_auto`` (a number
            or ``auto``/``auto_<number>``, SAC's ``ent_coef``/``target_entropy``).
        low, high: Bounds (inclusive unless ``low_open``/``high_open``); None: unbounded.
        nullable: ``null`` is allowed.
        choices: The allowed values of a ``choice``.
        must: For ``bool``: the only supported value (None: both).
    """

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    nullable: bool = False
    choices: tuple[str, ...] = ()
    must: bool | None = None

    def describe(self) -> str:
        """What a valid value looks like, for error messages."""
        if self.kind == "bool":
            text = "true or false" if self.must is None else str(self.must).lower()
        elif self.kind == "choice":
            text = "one of " + ", ".join(self.choices)
        elif self.kind == "net_arch":
            text = f"a list of at most {MAX_LAYERS} layer widths in 1..{MAX_WIDTH}"
        elif self.kind == "train_freq":
            text = "a positive integer or [n, step|episode]"
        else:
            name = {"int": "an integer", "float": "a number"}.get(self.kind, "a number or auto")
            lo = "" if self.low is None else f"{self.low:g} {'<' if self.low_open else '<='} "
            hi = "" if self.high is None else f" {'<' if self.high_open else '<='} {self.high:g}"
            text = f"{name} {lo}x{hi}" if lo or hi else name
        return text + (" or null" if self.nullable else "")

    def _in_range(self, x: float) -> bool:
        if self.low is not None and (x <= self.low if self.low_open else x < self.low):
            return False
        return self.high is None or (x < self.high if self.high_open else x <= self.high)

    def coerce(self, value: Any) -> Any:
        """The checked value (integral floats -> int for ``int``); raises ValueError."""
        if value is None and self.nullable:
            return None
        kind = self.kind
        if kind == "bool":
            if not isinstance(value, bool) or (self.must is not None and value is not self.must):
                raise ValueError
            return value
        if kind == "choice":
            if not isinstance(value, str) or value not in self.choices:
                raise ValueError
            return value
        if kind == "net_arch":
            ok = isinstance(value, list) and 0 < len(value) <= MAX_LAYERS
            if not ok or not all(_is_int(x) and 1 <= x <= MAX_WIDTH for x in value):
                raise ValueError
            return list(value)
        if kind == "train_freq":
            return _train_freq(value)
        if kind == "float_or_auto" and isinstance(value, str):
            if value == "auto" or (value.startswith("auto_") and _finite_positive(value[5:])):
                return value
            raise ValueError
        return self._number(value)

    def _number(self, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError
        if not math.isfinite(value) or not self._in_range(value):
            raise ValueError
        if self.kind == "int":
            if value != int(value):
                raise ValueError
            return int(value)
        return float(value)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _finite_positive(text: str) -> bool:
    try:
        x = float(text)
    except ValueError:
        return False
    return math.isfinite(x) and x > 0


def _train_freq(value: Any) -> Any:
    if _is_int(value) and 1 <= value <= 1_000_000:
        return value
    if (
        isinstance(value, list)
        and len(value) == 2
        and _is_int(value[0])
        and 1 <= value[0] <= 1_000_000
        and value[1] in ("step", "episode")
    ):
        return list(value)
    raise ValueError


_RATE = Param("float", 0.0, 1.0, low_open=True)
_UNIT = Param("float", 0.0, 1.0)
_NONNEG = Param("float", 0.0, 1e6)
_POSITIVE = Param("float", 0.0, 1e6, low_open=True)
_COUNT = Param("int", 1, 1_000_000)
_BOOL = Param("bool")

#: Type and range of every SB3 keyword a config may set (the others are rejected).
SB3_PARAMS: dict[str, Param] = {
    "learning_rate": _RATE,
    "n_steps": _COUNT,
    "batch_size": _COUNT,
    "n_epochs": Param("int", 1, 10_000),
    "gamma": _UNIT,
    "gae_lambda": _UNIT,
    "clip_range": _POSITIVE,
    "clip_range_vf": Param("float", 0.0, 1e6, low_open=True, nullable=True),
    "normalize_advantage": _BOOL,
    "ent_coef": _NONNEG,
    "vf_coef": _NONNEG,
    "max_grad_norm": _POSITIVE,
    "target_kl": Param("float", 0.0, 1e6, low_open=True, nullable=True),
    "stats_window_size": _COUNT,
    "rms_prop_eps": Param("float", 0.0, 1.0, low_open=True),
    "use_rms_prop": _BOOL,
    "buffer_size": Param("int", 1, 10_000_000),
    "learning_starts": Param("int", 0, 100_000_000),
    "tau": _RATE,
    "train_freq": Param("train_freq"),
    "gradient_steps": Param("int", -1, 1_000_000),
    "target_update_interval": _COUNT,
    "policy_delay": _COUNT,
    "target_policy_noise": _NONNEG,
    "target_noise_clip": _NONNEG,
    "policy_kwargs": Param("dict", nullable=True),  # checked key by key (POLICY_PARAMS)
}

#: Per algorithm, keys whose schema differs from :data:`SB3_PARAMS`.
SB3_PARAMS_BY_ALGO: dict[str, dict[str, Param]] = {
    "sac": {
        "ent_coef": Param("float_or_auto", 0.0, 1e6),
        "target_entropy": Param("float_or_auto", -1e6, 1e6),
    },
    "ppo": {"batch_size": Param("int", 2, 1_000_000)},  # SB3 asserts batch_size > 1
}

#: ``policy_kwargs`` entries.
POLICY_PARAMS: dict[str, Param] = {
    "net_arch": Param("net_arch", nullable=True),
    "activation_fn": Param("choice", choices=ACTIVATIONS),
    "log_std_init": Param("float", -20.0, 5.0),
    "ortho_init": _BOOL,
    "share_features_extractor": _BOOL,
}

#: ``normalize`` entries.
NORMALIZE_PARAMS: dict[str, Param] = {
    "norm_obs": _BOOL,
    "norm_reward": _BOOL,
    "clip_obs": Param("float", 0.0, 1e6, low_open=True),
    "clip_reward": Param("float", 0.0, 1e6, low_open=True),
}


def _own_params() -> dict[str, Param]:
    from balloon_gym.agents import CLASSIC_AGENTS

    return {
        "n_envs": Param("int", 1, MAX_N_ENVS),
        "normalize": Param("dict", nullable=True),  # checked key by key (NORMALIZE_PARAMS)
        "residual": Param("choice", choices=tuple(CLASSIC_AGENTS), nullable=True),
        "residual_scale": Param("float", 0.0, 100.0, low_open=True),
        "residual_vcpu_scale": Param("float", 0.0, 100.0, low_open=True, nullable=True),
        "host_swap_penalty_gib": Param("float", 0.0, 1e6),
        "eval_freq": Param("int", 0, 10**12),
        "eval_seeds": Param("int", 1, 1000),
        "checkpoint_freq": Param("int", 0, 10**12),
        "max_episode_steps": Param("int", 1, 10_000_000, nullable=True),
    }


def param_schema(algo: str) -> dict[str, Param]:
    """Every top-level key an ``algo`` config may set, with its type and range."""
    algo_class(algo)
    keys = set(sb3_keys(algo))
    table = {k: v for k, v in SB3_PARAMS.items() if k in keys}
    table.update({k: v for k, v in SB3_PARAMS_BY_ALGO.get(algo, {}).items() if k in keys})
    table.update(_own_params())
    return dict(sorted(table.items()))


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
        TrainConfigError: For an item without ``=``, a key with more than two parts or an
            empty part, a value YAML cannot parse, or a key given both as a value and a group.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(p.strip() for p in parts):
            raise TrainConfigError(f"--hp {item!r}: expected key=value, e.g. learning_rate=3e-4")
        if len(parts) > 2:
            raise TrainConfigError(
                f"--hp {item!r}: keys have at most two parts (group.key, e.g. "
                "policy_kwargs.net_arch=[64,64] or normalize.clip_obs=5)"
            )
        try:
            value = yaml.safe_load(text)
        except (yaml.YAMLError, RecursionError) as err:
            msg = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise TrainConfigError(f"--hp {item!r}: cannot parse the value: {msg}") from None
        if isinstance(value, str):  # yaml reads 3e-4 (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if (parts[0] in out and len(parts) == 1) or (
            len(parts) == 2 and isinstance(out.get(parts[0]), dict) and parts[1] in out[parts[0]]
        ):
            raise TrainConfigError(f"--hp {item!r}: {key.strip()} is given twice; give it once")
        if len(parts) == 2:
            node = out.setdefault(parts[0], {})
            if not isinstance(node, dict):
                raise TrainConfigError(
                    f"--hp {item!r}: {parts[0]} was given a value; it cannot also have keys"
                )
            node[parts[1]] = value
        elif isinstance(out.get(parts[0]), dict) and not isinstance(value, dict):
            raise TrainConfigError(f"--hp {item!r}: {parts[0]} was already given keys")
        else:
            out[parts[0]] = value
    return out


def _show(value: Any) -> str:
    """A value as it would be written in YAML, shortened."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bad(where: str, key: str, value: Any, param: Param) -> TrainConfigError:
    text = _show(value)
    return TrainConfigError(f"{where}{key}={text}: expected {param.describe()}")


def _check_group(
    where: str, group: str, value: Any, table: dict[str, Param], keys: tuple[str, ...]
) -> dict[str, Any] | None:
    """``policy_kwargs`` or ``normalize``: null or a mapping of known keys, each checked."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TrainConfigError(
            f"{where}{group}: expected a mapping with keys from {', '.join(keys)}, got {value!r}"
        )
    unknown = sorted(str(k) for k in value if k not in keys)
    if unknown:
        raise TrainConfigError(
            f"{where}{group}: unknown key(s) {unknown}; valid keys: {', '.join(keys)}"
        )
    out = {}
    for k, v in value.items():
        try:
            out[k] = table[k].coerce(v)
        except ValueError:
            raise _bad(where, f"{group}.{k}", v, table[k]) from None
    return out


def check_config(algo: str, cfg: Any, where: str = "") -> dict[str, Any]:
    """Check the keys, types and ranges of a (partial) config; returns the checked values.

    Args:
        algo: Key of :data:`ALGOS`.
        cfg: A mapping of hyperparameters (a file's entry, the overrides, or a merged config).
        where: Prefix of error messages naming the source (e.g. ``"--hp "``).

    Raises:
        TrainConfigError: Naming the key, the bad value and what is expected; for unknown keys
            the valid ones; for unsupported SB3 options the reason.
    """
    if not isinstance(cfg, dict):
        raise TrainConfigError(f"{where.strip() or 'config'}: expected a mapping, got {cfg!r}")
    schema = param_schema(algo)
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        if key in UNSUPPORTED:
            allowed, why = UNSUPPORTED[key]
            if value != allowed or type(value) is not type(allowed):
                raise TrainConfigError(
                    f"{where}{key}={_show(value)} is not supported ({why}); leave it "
                    f"{yaml.safe_dump(allowed).splitlines()[0]} or drop it"
                )
            continue
        if key not in schema:
            raise TrainConfigError(
                f"{where}unknown {algo} hyperparameter(s) [{key!r}]; valid keys: "
                f"{', '.join(schema)}"
            )
        if key == "policy_kwargs":
            keys = POLICY_KWARGS_BY_ALGO[algo]
            out[key] = _check_group(where, key, value, POLICY_PARAMS, keys)
        elif key == "normalize":
            out[key] = _check_group(where, key, value, NORMALIZE_PARAMS, NORMALIZE_KEYS)
        else:
            try:
                out[key] = schema[key].coerce(value)
            except ValueError:
                raise _bad(where, key, value, schema[key]) from None
    return out


def _check_merged(algo: str, cfg: dict[str, Any]) -> None:
    """Constraints between keys of a merged config."""
    if algo in ("ppo", "a2c") and cfg.get("n_steps", 2) * cfg["n_envs"] < 2:
        raise TrainConfigError(
            f"n_steps * n_envs must be at least 2, got n_steps={cfg.get('n_steps')} "
            f"and n_envs={cfg['n_envs']}"
        )


def check_resolved(algo: str, cfg: Any, where: str = "") -> dict[str, Any]:
    """Check a resolved config (a run's ``config.yaml`` hyperparameters): every key of
    :data:`OWN_KEYS` present, every value typed and in range.

    Raises:
        TrainConfigError: Naming the problem.
    """
    out = check_config(algo, cfg, where)
    missing = sorted(k for k in OWN_KEYS if k not in out)
    if missing:
        raise TrainConfigError(f"{where}missing key(s) {missing}")
    _check_merged(algo, out)
    return out


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
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, RecursionError, yaml.YAMLError) as err:
        msg = " ".join(str(err).split())[:200] or type(err).__name__
        raise TrainConfigError(f"{path}: cannot read it as YAML ({msg})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict | None) for v in data.values()):
        raise TrainConfigError(f"{path}: expected a mapping of scenario name -> hyperparameters")
    entries = {str(k): check_config(algo, v or {}, f"{path}: {k}.") for k, v in data.items()}
    cfg = {k: copy.deepcopy(v) for k, (v, _) in OWN_KEYS.items()}
    cfg = _merge(cfg, entries.get("default") or {})
    key = ",".join(scenarios)
    if key in entries:
        cfg = _merge(cfg, entries[key])
    cfg = _merge(cfg, check_config(algo, overrides or {}, "--hp "))
    cfg = check_config(algo, cfg)
    _check_merged(algo, cfg)
    return cfg


def activation_class(name: str) -> type:
    """``torch.nn`` activation class for a whitelisted name.

    Raises:
        TrainConfigError: For a name not in :data:`ACTIVATIONS`.
    """
    try:
        return export_activation_class(name)
    except ValueError as err:
        raise TrainConfigError(str(err)) from None


def sb3_kwargs(cfg: dict[str, Any]) -> dict[str, Any]:
    """The SB3 constructor keywords of a resolved config (activation names -> classes)."""
    out = {k: copy.deepcopy(v) for k, v in cfg.items() if k not in OWN_KEYS}
    pk = dict(out.get("policy_kwargs") or {})
    if "activation_fn" in pk:
        pk["activation_fn"] = activation_class(pk["activation_fn"])
    if pk:
        out["policy_kwargs"] = pk
    if isinstance(out.get("train_freq"), list):  # YAML [4, step] -> SB3's (4, "step")
        out["train_freq"] = tuple(out["train_freq"])
    return out
