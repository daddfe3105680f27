"""Scenarios: the YAML files shipped in ``configs/scenarios/`` and the BalloonBench suite.

A scenario is named by its file name (``idle-tax``) and registered with Gymnasium as
``BalloonGym/<CamelCase>-v1`` (``BalloonGym/IdleTax-v1``). Users can also pass a path to their own
YAML file, or a :class:`~balloon_gym.config.ScenarioConfig`.
"""

from __future__ import annotations

import os
from functools import cache
from importlib import resources
from pathlib import Path

from balloon_gym.config import ConfigError, ConfigTypeError, ScenarioConfig, load_scenario_file

#: The BalloonBench v1 suite, in leaderboard order.
BALLOONBENCH_V1: tuple[str, ...] = (
    "idle-tax",
    "steady-overcommit",
    "diurnal",
    "bursty",
    "slow-reclaim",
    "cpu-contention",
    "driver-outage",
    "trace-replay",
    "large",
)

ENV_VERSION = 1
"""Version suffix of every registered id; bumped whenever the model's numbers change."""


def _scenario_dir() -> Path:
    return Path(str(resources.files("balloon_gym.configs") / "scenarios"))


def list_scenarios() -> list[str]:
    """Names of the shipped scenarios, sorted."""
    return sorted(p.stem for p in _scenario_dir().glob("*.yaml"))


def env_id(name: str) -> str:
    """Gymnasium id of a scenario name: ``idle-tax`` -> ``BalloonGym/IdleTax-v1``."""
    camel = "".join(part.capitalize() for part in name.split("-"))
    return f"BalloonGym/{camel}-v{ENV_VERSION}"


def _resolve_trace_sources(cfg: ScenarioConfig, folder: Path) -> ScenarioConfig:
    """Make each trace guest's relative ``trace_source`` relative to ``folder``, not the cwd.

    ``"sample"`` and absolute paths are kept; ``~`` is expanded.
    """
    guests = []
    for g in cfg.guests:
        source = g.workload.trace_source
        if g.workload.kind != "trace" or source == "sample":
            guests.append(g)
            continue
        path = Path(source).expanduser()
        resolved = str(path if path.is_absolute() else folder / path)
        workload = g.workload.model_copy(update={"trace_source": resolved})
        guests.append(g.model_copy(update={"workload": workload}))
    return cfg.model_copy(update={"guests": tuple(guests)})


def _load_file(path: str | Path) -> ScenarioConfig:
    """A scenario YAML file, its relative trace sources resolved against its folder."""
    return _resolve_trace_sources(load_scenario_file(path), Path(path).resolve().parent)


@cache
def _load_shipped(name: str) -> ScenarioConfig:
    cfg = _load_file(_scenario_dir() / f"{name}.yaml")
    if cfg.name != name:
        raise ConfigError(f"scenario file {name}.yaml declares name {cfg.name!r}; make them equal")
    return cfg


def load_scenario(scenario: str | Path | ScenarioConfig) -> ScenarioConfig:
    """A scenario by shipped name, by path to a YAML file, or as given.

    A relative ``trace_source`` in a YAML file is relative to the file's folder.

    Raises:
        ConfigTypeError: For any other type (``None``, bytes, a dict, ...).
        ConfigError: For an unknown name (the message lists the known ones), a missing file, a
            directory or an invalid config.
    """
    if isinstance(scenario, ScenarioConfig):
        return scenario
    if not isinstance(scenario, str | os.PathLike):
        hint = {
            bytes: "; decode it to str first",
            dict: "; turn a dict into a ScenarioConfig with balloon_gym.config.parse_scenario",
        }.get(type(scenario), "")
        raise ConfigTypeError(
            "scenario must be a shipped scenario name (str), a path to a .yaml file or a "
            f"ScenarioConfig; got {type(scenario).__name__} {repr(scenario)[:40]}{hint}"
        )
    text = os.fspath(scenario)
    if not isinstance(text, str):
        raise ConfigTypeError(f"scenario path must be text, got {text!r}; decode it to str first")
    if not text.strip():
        raise ConfigError(
            f"scenario name is empty; known scenarios: {', '.join(list_scenarios())} "
            "(or give a path to a .yaml file)"
        )
    if text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text:
        return _load_file(text)
    if text not in list_scenarios():
        raise ConfigError(
            f"unknown scenario {text!r}; known scenarios: {', '.join(list_scenarios())} "
            "(or give a path to a .yaml file)"
        )
    return _load_shipped(text)
