"""Render the scenario reference (``docs/scenarios.md``) from the config models themselves.

``python -m balloon_gym.config_docs > docs/scenarios.md`` regenerates it; a test checks that the
committed file is current, so field units, defaults and bounds in the docs cannot drift from the
code.
"""

from __future__ import annotations

from typing import Any, Literal, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import BaseModel

from balloon_gym.config import (
    GUEST_SWAP_DEVICES,
    HOST_SWAP_DEVICES,
    LHP_PENALTIES,
    WORKLOAD_KIND_DEFAULTS,
    DriverConfig,
    GuestConfig,
    HostConfig,
    RewardConfig,
    ScenarioConfig,
    WorkloadConfig,
)

_SECTIONS: tuple[tuple[str, type[BaseModel]], ...] = (
    ("top level", ScenarioConfig),
    ("host", HostConfig),
    ("reward", RewardConfig),
    ("guests[i]", GuestConfig),
    ("guests[i].driver", DriverConfig),
    ("guests[i].workload", WorkloadConfig),
)

_NESTED = {"host", "reward", "guests", "driver", "workload"}


_BOUND_ATTRS = (
    (Gt, "gt", ">"),
    (Ge, "ge", ">="),
    (Lt, "lt", "<"),
    (Le, "le", "<="),
    (MinLen, "min_length", "length >="),
    (MaxLen, "max_length", "length <="),
)


def _bounds(metadata: list[Any]) -> str:
    parts = []
    for m in metadata:
        for cls, attr, sym in _BOUND_ATTRS:
            if isinstance(m, cls):
                parts.append(f"{sym} {getattr(m, attr):g}")
    return ", ".join(parts)


def _type_name(annotation: Any) -> str:
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in get_args(annotation))
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "").replace("|", "or")


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.default
    return f"`{value!r}`" if not isinstance(value, BaseModel) else "(section)"


def render() -> str:
    """The whole reference as Markdown."""
    lines = [
        "# Scenario reference",
        "",
        "Generated from `balloon_gym/config.py` by `python -m balloon_gym.config_docs`; do not",
        "edit by hand. A scenario is a YAML file (see `configs/scenarios/`); unknown keys, wrong",
        "types and values out of bounds are rejected with the field's path and the fix.",
        "Memory is in MiB, time in seconds, CPU in vCPUs/pCPUs.",
        "",
    ]
    for title, model in _SECTIONS:
        lines += [f"## `{title}`", "", (model.__doc__ or "").strip().splitlines()[0], ""]
        lines += ["| field | type | default | bounds | meaning |", "|---|---|---|---|---|"]
        for name, field in model.model_fields.items():
            if name in _NESTED:
                continue
            meaning = (field.description or "").replace("|", "/")
            lines.append(
                f"| `{name}` | {_type_name(field.annotation)} | {_default(field)} "
                f"| {_bounds(field.metadata)} | {meaning} |"
            )
        lines.append("")
    lines += ["## Workload kinds", "", "Each kind sets defaults for the fields it is about; a"]
    lines += ["file's own values win.", "", "| kind | defaults |", "|---|---|"]
    for kind, defaults in WORKLOAD_KIND_DEFAULTS.items():
        text = ", ".join(f"`{k}: {v:g}`" for k, v in defaults.items()) or "none"
        lines.append(f"| `{kind}` | {text} |")
    named = (
        ("guests[i].swap_device", GUEST_SWAP_DEVICES),
        ("host.swap_device", HOST_SWAP_DEVICES),
        ("guests[i].workload.parallelism", LHP_PENALTIES),
    )
    for field, choices in named:
        lines += ["", f"## `{field}`", "", "Each choice sets defaults (sources: docs/model.md);"]
        lines += ["the file's own values win.", "", "| choice | defaults |", "|---|---|"]
        for name, defaults in choices.items():
            text = ", ".join(f"`{k}: {v:g}`" for k, v in defaults.items())
            lines.append(f"| `{name}` | {text} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
