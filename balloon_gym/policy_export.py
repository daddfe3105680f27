"""The policy export format: what ``train.py`` writes and ``evaluate.py`` loads (no pickle).

This module is the one place both sides share: training (:mod:`balloon_gym.training.policy`
turns an SB3 model into this format) and the trained agents (:mod:`balloon_gym.agents.trained`
rebuild the actor from it) import it, and neither imports the other.

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

import itertools
import json
import math
from pathlib import Path
from typing import Any

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

#: Limits of what a ``policy.json`` may ask for (checked before any network is built).
ALGOS: tuple[str, ...] = ("ppo", "sac", "a2c", "td3")
"""Algorithms whose actors the format describes."""

ACTIVATIONS: tuple[str, ...] = ("tanh", "relu", "elu", "leaky_relu", "gelu", "silu")
"""Hidden-layer activations the format names (``torch.nn`` classes: :func:`activation_class`)."""

MAX_SPEC_BYTES = 8 * 1024 * 1024
MAX_HIDDEN_LAYERS = 16
MAX_WIDTH = 4096
MAX_GUESTS = 1024
MAX_PARAMETERS = 20_000_000
MAX_SCENARIOS = 64
MAX_TEXT = 1024  # scenario names may be paths to YAML files
#: ``policy.pth`` may hold at most 8 bytes per parameter (float64) plus this much overhead.
WEIGHTS_OVERHEAD_BYTES = 1024 * 1024


def known_env_versions() -> tuple[str, ...]:
    """Environment versions a policy may have been trained on (this package's only)."""
    from balloon_gym.scenarios import ENV_VERSION

    return (f"v{ENV_VERSION}",)


def _problem(path: Path, text: str) -> ValueError:
    return ValueError(f"{path}: {text}")


def _show(value: Any) -> str:
    """A short rendering of a (possibly huge or odd) JSON value for error messages."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):  # e.g. ints beyond the digit limit
        return f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _check_int(path: Path, name: str, value: Any, low: int, high: int) -> int:
    if not _is_int(value) or not low <= value <= high:
        raise _problem(path, f"{name} must be an integer in {low}..{high}, got {_show(value)}")
    return value


def _check_number_list(path: Path, name: str, value: Any, size: int) -> None:
    ok = isinstance(value, list) and len(value) == size
    if not ok or not all(_is_number(x) for x in value):
        raise _problem(path, f"{name} must be a list of {size} finite numbers")


def _check_text(path: Path, name: str, value: Any) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_TEXT:
        raise _problem(path, f"{name} must be a string of 1..{MAX_TEXT} characters")


def parameter_count(spec: dict[str, Any]) -> int:
    """Weights and biases of the actor a (checked) spec describes."""
    widths = [spec["obs_dim"], *spec["net_arch"], spec["action_dim"]]
    return sum(a * b + b for a, b in itertools.pairwise(widths))


def expected_shapes(spec: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """``state_dict`` key -> tensor shape of the actor a (checked) spec describes."""
    widths = [spec["obs_dim"], *spec["net_arch"], spec["action_dim"]]
    out: dict[str, tuple[int, ...]] = {}
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        out[f"{2 * i}.weight"], out[f"{2 * i}.bias"] = (b, a), (b,)
    return out


def _check_network(spec: dict[str, Any], path: Path) -> None:
    """Algo, activation, widths, sizes and the parameter count."""
    from balloon_gym.core.observe import observation_size

    if not isinstance(spec["algo"], str) or spec["algo"] not in ALGOS:
        raise _problem(path, f"algo {_show(spec['algo'])} unknown; known: {', '.join(ALGOS)}")
    if not isinstance(spec["activation"], str) or spec["activation"] not in ACTIVATIONS:
        raise _problem(
            path, f"activation {_show(spec['activation'])} not in {', '.join(ACTIVATIONS)}"
        )
    arch = spec["net_arch"]
    ok = isinstance(arch, list) and len(arch) <= MAX_HIDDEN_LAYERS
    if not ok or not all(_is_int(x) and 0 < x <= MAX_WIDTH for x in arch):
        raise _problem(
            path,
            f"net_arch {_show(arch)}: expected a list of at most {MAX_HIDDEN_LAYERS} "
            f"integer widths in 1..{MAX_WIDTH}",
        )
    guests = _check_int(path, "max_guests", spec["max_guests"], 1, MAX_GUESTS)
    _check_int(path, "obs_dim", spec["obs_dim"], 1, observation_size(MAX_GUESTS))
    _check_int(path, "action_dim", spec["action_dim"], 2, 2 * MAX_GUESTS)
    if spec["action_dim"] != 2 * guests:
        raise _problem(path, "action_dim must be 2 * max_guests")
    if spec["obs_dim"] != observation_size(guests):
        raise _problem(path, f"obs_dim {spec['obs_dim']} does not fit max_guests {guests}")
    if parameter_count(spec) > MAX_PARAMETERS:
        raise _problem(
            path,
            f"the network has {parameter_count(spec):,} parameters; at most "
            f"{MAX_PARAMETERS:,} are loaded",
        )
    if not isinstance(spec["squash"], bool):
        raise _problem(path, "squash must be true or false")
    clip = spec["clip_actions"]
    _check_number_list(path, "clip_actions", clip, 2)
    if not -1.0 <= clip[0] < clip[1] <= 1.0:
        raise _problem(path, f"clip_actions {_show(clip)}: need -1 <= low < high <= 1")


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
    if not isinstance(res["base"], str) or res["base"] not in CLASSIC_AGENTS:
        raise _problem(path, f"residual.base {_show(res['base'])} is not a classic baseline")
    scales = [res["scale"], res.get("vcpu_scale", res["scale"])]
    _check_number_list(path, "residual.scale/vcpu_scale", scales, 2)
    if not all(0 < x <= 100 for x in scales):
        raise _problem(path, "residual.scale and vcpu_scale must be in (0, 100]")


def _check_meta(spec: dict[str, Any], path: Path) -> None:
    """``scenarios``, ``env_version`` and ``package_version``."""
    scenarios = spec["scenarios"]
    if not isinstance(scenarios, list) or not 0 < len(scenarios) <= MAX_SCENARIOS:
        raise _problem(path, f"scenarios must be a list of 1..{MAX_SCENARIOS} names")
    for name in scenarios:
        _check_text(path, "each of scenarios", name)
    known = known_env_versions()
    if not isinstance(spec["env_version"], str) or spec["env_version"] not in known:
        raise _problem(
            path,
            f"env_version {_show(spec['env_version'])} unknown; this balloon-gym runs "
            f"{', '.join(known)}: retrain the policy on it",
        )
    _check_text(path, "package_version", spec["package_version"])


def validate_spec(spec: Any, path: Path) -> dict[str, Any]:
    """Check a parsed ``policy.json``: keys, types (integers are never booleans), ranges.

    Raises:
        ValueError: Naming the file and the problem (unknown or missing key, bad value, a
            network beyond :data:`MAX_HIDDEN_LAYERS`, :data:`MAX_WIDTH`,
            :data:`MAX_PARAMETERS` or :data:`MAX_GUESTS`, an unknown env version).
    """
    if not isinstance(spec, dict):
        raise _problem(path, "expected a JSON object")
    unknown, missing = sorted(set(spec) - set(SPEC_KEYS)), sorted(set(SPEC_KEYS) - set(spec))
    if unknown:
        raise _problem(path, f"unknown key(s) {unknown[:10]}; known: {', '.join(SPEC_KEYS)}")
    if missing:
        raise _problem(path, f"missing key(s) {missing}")
    if spec["format"] != FORMAT or not (
        _is_int(spec["format_version"]) and spec["format_version"] == FORMAT_VERSION
    ):
        raise _problem(path, f"not a {FORMAT} v{FORMAT_VERSION} file")
    _check_network(spec, path)
    _check_norm(spec["obs_norm"], spec["obs_dim"], path)
    _check_residual(spec["residual"], path)
    _check_meta(spec, path)
    return spec


def read_spec(spec_path: Path) -> dict[str, Any]:
    """Read and check ``policy.json`` (size-capped; deep nesting is refused, not a crash).

    Raises:
        ValueError: Naming the file and the problem.
    """
    try:
        with spec_path.open("rb") as fh:
            raw = fh.read(MAX_SPEC_BYTES + 1)  # bounded even if the file grows meanwhile
    except OSError as err:
        raise _problem(spec_path, f"cannot read it ({err.strerror or err})") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise _problem(
            spec_path, f"larger than {MAX_SPEC_BYTES:,} bytes, the most a policy.json may be"
        )
    try:
        spec = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise _problem(spec_path, "not valid JSON: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as err:  # also integers beyond the digit limit
        raise _problem(spec_path, f"not valid JSON: {str(err)[:200]}") from None
    return validate_spec(spec, spec_path)


def _check_weights(weights: Any, spec: dict[str, Any], path: Path) -> None:
    """Parameter names, shapes, float dtypes and finite values, before any network is built."""
    import torch

    if not isinstance(weights, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()
    ):
        raise _problem(path, "expected a dict of parameter name -> tensor")
    want = expected_shapes(spec)
    if set(weights) != set(want):
        extra, lost = sorted(set(weights) - set(want)), sorted(set(want) - set(weights))
        raise _problem(
            path,
            f"weights do not match {SPEC_FILE}: unexpected {extra[:6]}, missing {lost[:6]}",
        )
    for key, shape in want.items():
        tensor = weights[key]
        if tuple(tensor.shape) != shape:
            raise _problem(
                path,
                f"weights do not match {SPEC_FILE}: {key} has shape {tuple(tensor.shape)}, "
                f"expected {shape}",
            )
        if not tensor.dtype.is_floating_point or not bool(torch.isfinite(tensor).all()):
            raise _problem(path, f"{key}: expected finite floating-point values")


def build_actor(spec: dict[str, Any]) -> Any:
    """The actor as a plain ``torch.nn.Sequential`` (weights uninitialised)."""
    import torch.nn as nn

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

    Everything is checked before a network is built: the JSON (:func:`read_spec`), the size
    of ``policy.pth`` against the network it describes, and every tensor's name and shape.

    Returns:
        The spec and the actor network (eval mode, weights loaded).

    Raises:
        ValueError: Naming the file and the problem: missing file, bad JSON, unknown key,
            a value out of range, a pickle with anything but tensors, missing/unexpected
            weights, shape mismatch.
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
    spec = read_spec(spec_path)
    size, cap = weights_path.stat().st_size, 8 * parameter_count(spec) + WEIGHTS_OVERHEAD_BYTES
    if size > cap:
        raise _problem(weights_path, f"{size:,} bytes, more than {SPEC_FILE}'s network needs")
    try:
        weights = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError, EOFError, ...: all refusals
        raise _problem(
            weights_path,
            f"refused: not a plain tensor state_dict loadable with weights_only=True "
            f"({str(err).splitlines()[0][:200] if str(err) else type(err).__name__})",
        ) from None
    _check_weights(weights, spec, weights_path)
    actor = build_actor(spec)
    try:
        actor.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise _problem(weights_path, f"weights do not match {SPEC_FILE}: {err}") from None
    actor.eval()
    return spec, actor


def save_export(directory: str | Path, spec: dict[str, Any], state: dict[str, Any]) -> None:
    """Write ``policy.json`` and ``policy.pth`` into ``directory``."""
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(state, directory / WEIGHTS_FILE)
    (directory / SPEC_FILE).write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")


def activation_class(name: str) -> type:
    """``torch.nn`` activation class of a name in :data:`ACTIVATIONS`.

    Raises:
        ValueError: For any other name.
    """
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
        raise ValueError(f"activation {name!r} unknown; choose from {', '.join(table)}")
    return table[name]
