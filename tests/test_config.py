"""Scenario configs: bad input gets a ConfigError naming the field and the fix; shipped files
are valid and documented; configs are frozen; workload kinds fill their defaults."""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path

import numpy as np
import pydantic
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import balloon_gym
from balloon_gym import ConfigError, core
from balloon_gym.config import (
    WORKLOAD_KIND_DEFAULTS,
    WorkloadConfig,
    load_scenario_file,
    parse_scenario,
)
from balloon_gym.core.params import params_from_scenario
from balloon_gym.core.state import host_free_mib
from balloon_gym.scenarios import list_scenarios, load_scenario

SCENARIO_DIR = Path(str(resources.files("balloon_gym.configs") / "scenarios"))


def valid():
    """A small valid scenario, fresh each call (tests mutate it)."""
    return {
        "name": "test-scenario",
        "host": {"mem_mib": 32768, "reserved_mib": 1024},
        "guests": [
            {"name": "a", "mem_mib": 8192, "min_mib": 1024},
            {"name": "b", "mem_mib": 8192, "min_mib": 2048, "workload": {"kind": "idle"}},
        ],
    }


def with_change(change):
    data = valid()
    change(data)
    return data


def guest0(**fields):
    return lambda d: d["guests"][0].update(fields)


def error_line(message, path):
    """The message line reporting ``path`` (``  <path>: <what and fix>``)."""
    lines = [ln for ln in message.splitlines() if ln.startswith(f"  {path}: ")]
    assert lines, f"no line for {path!r} in:\n{message}"
    return lines[0].lower()


# (change to the valid dict, field path in the message, word of the fix)
BAD_FIELDS = {
    "unknown-top-level-key": (lambda d: d.update(bogus=1), "bogus", "remove"),
    "unknown-nested-key": (guest0(driver={"speed": 2.0}), "guests[0].driver.speed", "remove"),
    "unknown-host-key": (lambda d: d["host"].update(memory=1), "host.memory", "remove"),
    "wrong-type": (guest0(mem_mib="lots"), "guests[0].mem_mib", "valid number"),
    "negative-size": (guest0(swap_mib=-5.0), "guests[0].swap_mib", "greater than or equal to 0"),
    "negative-host-size": (
        lambda d: d["host"].update(mem_mib=-1.0),
        "host.mem_mib",
        "greater than 0",
    ),
    "min-above-mem": (
        guest0(min_mib=9000.0),
        "guests[0].min_mib",
        "lower min_mib or raise mem_mib",
    ),
    "max-above-mem": (guest0(max_mib=9000.0), "guests[0].max_mib", "[min_mib, mem_mib]"),
    "max-below-min": (guest0(max_mib=512.0), "guests[0].max_mib", "[min_mib, mem_mib]"),
    "kernel-not-below-min": (guest0(kernel_mib=1024.0), "guests[0].kernel_mib", "below min_mib"),
    "balloon-cap-too-small": (
        guest0(max_mib=2048.0),
        "guests[0]",
        "raise max_balloon_frac",
    ),
    "host-too-small": (
        lambda d: d["host"].update(mem_mib=3000.0),
        "<root>",
        "raise host.mem_mib, lower min_mib",
    ),
    "empty-guests": (lambda d: d.update(guests=[]), "guests", "at least 1"),
    "bad-driver-kind": (guest0(driver={"kind": "firmware"}), "guests[0].driver.kind", "'user'"),
    "bad-workload-kind": (
        guest0(workload={"kind": "spiky"}),
        "guests[0].workload.kind",
        "'idle'",
    ),
    "phase-low-above-high": (
        guest0(workload={"phase_low": 2.0, "phase_high": 1.0}),
        "guests[0].workload.phase_high",
        "swap",
    ),
    "name-uppercase": (lambda d: d.update(name="IdleTax"), "name", "pattern"),
    "name-spaces": (lambda d: d.update(name="idle tax"), "name", "pattern"),
    "second-guest": (
        lambda d: d["guests"][1].update(vcpus=0),
        "guests[1].vcpus",
        "greater than or equal to 1",
    ),
}


@pytest.mark.parametrize("case", BAD_FIELDS, ids=list(BAD_FIELDS))
def test_bad_field_raises_config_error_with_path_and_fix(case):
    change, path, hint = BAD_FIELDS[case]
    with pytest.raises(ConfigError) as err:
        parse_scenario(with_change(change), source="bad.yaml")
    message = str(err.value)
    assert message.startswith("invalid scenario bad.yaml:")
    assert hint.lower() in error_line(message, path)


def test_host_too_small_names_the_host_field_and_the_totals():
    with pytest.raises(ConfigError) as err:
        parse_scenario(with_change(lambda d: d["host"].update(mem_mib=3000.0)))
    line = error_line(str(err.value), "<root>")
    # floors: max(min 1024, 8192 * 0.35) = 2867.2 per guest for the fixture's guests + reserve
    assert "host.mem_mib (3000)" in line and "floors" in line and "mib)" in line


def test_every_bad_field_is_reported_at_once():
    data = with_change(guest0(mem_mib="lots", swap_mib=-1.0))
    data["bogus"] = True
    with pytest.raises(ConfigError) as err:
        parse_scenario(data)
    for path in ("guests[0].mem_mib", "guests[0].swap_mib", "bogus"):
        error_line(str(err.value), path)


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (guest0(min_mib=9000.0), "guests[0].min_mib"),
        (guest0(max_mib=9000.0), "guests[0].max_mib"),
        (guest0(kernel_mib=1024.0), "guests[0].kernel_mib"),
        (guest0(workload={"phase_low": 2.0, "phase_high": 1.0}), "guests[0].workload.phase_high"),
    ],
    ids=["min", "max", "kernel", "phase"],
)
def test_cross_field_error_names_the_field_path(change, path):
    with pytest.raises(ConfigError) as err:
        parse_scenario(with_change(change))
    error_line(str(err.value), path)


def test_invalid_only_guest_does_not_claim_the_guest_list_is_empty():
    data = with_change(lambda d: d.update(guests=d["guests"][:1]))
    data["guests"][0]["min_mib"] = 9000.0
    with pytest.raises(ConfigError) as err:
        parse_scenario(data)
    assert "at least 1 item" not in str(err.value)


@pytest.mark.parametrize("kind", [["idle"], {"idle": 1}], ids=["list", "mapping"])
def test_unhashable_workload_kind_raises_config_error(kind):
    with pytest.raises(ConfigError, match=r"guests\[0\]\.workload\.kind"):
        parse_scenario(with_change(guest0(workload={"kind": kind})))


@pytest.mark.parametrize("top", [[1, 2], "idle-tax", None, 3])
def test_top_level_that_is_not_a_mapping_raises(top):
    with pytest.raises(ConfigError, match="top level must be a mapping") as err:
        parse_scenario(top, source="x.yaml")
    assert "x.yaml" in str(err.value) and type(top).__name__ in str(err.value)


def test_file_with_a_list_at_the_top_raises(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- name: a\n- name: b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping") as err:
        load_scenario_file(path)
    assert str(path) in str(err.value) and "got list" in str(err.value)


def test_invalid_yaml_syntax_raises_with_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nguests: [ {name: a\n")
    with pytest.raises(ConfigError, match="is not valid YAML") as err:
        load_scenario_file(path)
    assert str(path) in str(err.value) and "line" in str(err.value)


def test_missing_file_raises(tmp_path):
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError, match="does not exist") as err:
        load_scenario_file(path)
    assert str(path) in str(err.value)


def test_file_errors_name_the_file_and_the_field(tmp_path):
    data = with_change(guest0(kernel_mib=4096.0))
    path = tmp_path / "kernel.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_scenario_file(path)
    assert str(err.value).startswith(f"invalid scenario {path}:")
    assert "kernel_mib (4096) must be below min_mib (1024)" in error_line(
        str(err.value), "guests[0].kernel_mib"
    )


def test_non_utf8_file_raises_config_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin1\.yaml"):
        load_scenario_file(path)


def test_load_scenario_accepts_a_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(valid()))
    cfg = load_scenario(str(path))
    assert cfg.name == "test-scenario" and cfg.num_guests == 2


# --- shipped scenarios -------------------------------------------------------------------------


@pytest.mark.parametrize("name", list_scenarios())
def test_shipped_scenario_loads_and_documents_what_it_tests(name):
    path = SCENARIO_DIR / f"{name}.yaml"
    cfg = load_scenario_file(path)
    assert cfg.name == name == path.stem
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith(f"# {name}: ") and len(first) > len(f"# {name}: ") + 10
    assert load_scenario(name) == cfg


def test_shipped_scenarios_are_found():
    assert len(list_scenarios()) >= 8
    assert list_scenarios() == sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def test_balloonbench_names_only_shipped_scenarios():
    assert len(set(balloon_gym.BALLOONBENCH_V0)) == len(balloon_gym.BALLOONBENCH_V0)
    assert set(balloon_gym.BALLOONBENCH_V0) <= set(list_scenarios())


# --- frozen configs and kind defaults ----------------------------------------------------------


@pytest.mark.parametrize(
    "assign",
    [
        lambda c: setattr(c, "name", "other"),
        lambda c: setattr(c.host, "mem_mib", 1.0),
        lambda c: setattr(c.guests[0], "min_mib", 1.0),
        lambda c: setattr(c.guests[0].driver, "kind", "user"),
        lambda c: setattr(c.guests[0].workload, "anon_mib", 1.0),
    ],
    ids=["scenario", "host", "guest", "driver", "workload"],
)
def test_configs_are_frozen(assign):
    cfg = parse_scenario(valid())
    before = cfg.model_dump()
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        assign(cfg)
    assert cfg.model_dump() == before


def test_guest_list_is_an_immutable_tuple():
    cfg = parse_scenario(valid())
    assert isinstance(cfg.guests, tuple)
    with pytest.raises(TypeError):
        cfg.guests[0] = cfg.guests[1]


def test_idle_kind_defaults_its_working_set_fraction():
    guest = parse_scenario(valid()).guests[1]
    assert guest.workload.kind == "idle"
    assert guest.workload.wss_frac == 0.03
    assert guest.workload.cpu_vcpus == 0.05


@pytest.mark.parametrize("kind", WORKLOAD_KIND_DEFAULTS)
def test_workload_kind_fills_its_defaults(kind):
    workload = parse_scenario(with_change(guest0(workload={"kind": kind}))).guests[0].workload
    for field, value in WORKLOAD_KIND_DEFAULTS[kind].items():
        assert getattr(workload, field) == value
        assert value != WorkloadConfig.model_fields[field].default  # the kind changes something
    untouched = set(WorkloadConfig.model_fields) - set(WORKLOAD_KIND_DEFAULTS[kind]) - {"kind"}
    for field in untouched:
        assert getattr(workload, field) == WorkloadConfig.model_fields[field].default


@pytest.mark.parametrize("kind", [k for k, v in WORKLOAD_KIND_DEFAULTS.items() if v])
def test_explicit_values_win_over_kind_defaults(kind):
    explicit = {field: value / 2 + 0.01 for field, value in WORKLOAD_KIND_DEFAULTS[kind].items()}
    workload = (
        parse_scenario(with_change(guest0(workload={"kind": kind, **explicit}))).guests[0].workload
    )
    for field, value in explicit.items():
        assert getattr(workload, field) == value


def test_kind_defaults_do_not_leak_between_guests():
    cfg = parse_scenario(valid())
    assert cfg.guests[0].workload.wss_frac == WorkloadConfig.model_fields["wss_frac"].default


def test_count_expands_guests_with_indexed_names():
    cfg = parse_scenario(with_change(guest0(count=3)))
    assert cfg.num_guests == 4
    assert [g.name for g in cfg.expanded_guests()] == ["a-0", "a-1", "a-2", "b"]
    assert all(g.count == 1 for g in cfg.expanded_guests())


# --- host capacity at reset --------------------------------------------------------------------


def test_a_host_that_cannot_hold_the_guests_floors_is_rejected():
    data = {
        "name": "tight",
        "host": {"mem_mib": 3072, "reserved_mib": 1024},
        "guests": [{"name": "g", "count": 2, "mem_mib": 8192, "min_mib": 1024}],
    }
    # 2 * 1024 + 1024 <= 3072, but the 65 % balloon cap leaves each guest 2867.2 MiB
    with pytest.raises(ConfigError, match="floors"):
        parse_scenario(data)


@settings(max_examples=60, deadline=None)
@given(slack=st.floats(0.0, 0.3), frac=st.floats(0.3, 0.95), footprint=st.floats(0.0, 1.5))
def test_an_accepted_config_resets_with_non_negative_host_free_memory(slack, frac, footprint):
    floor = max(1024.0, 8192.0 * (1.0 - frac))
    data = {
        "name": "tight",
        "host": {"mem_mib": (2 * floor + 1024) * (1 + slack), "reserved_mib": 1024},
        "guests": [
            {
                "name": "g",
                "count": 2,
                "mem_mib": 8192,
                "min_mib": 1024,
                "driver": {"max_balloon_frac": frac},
                "workload": {"anon_mib": 8192 * footprint},
            }
        ],
    }
    params = params_from_scenario(parse_scenario(data))
    state = core.reset(params, np.random.default_rng(0))
    assert (host_free_mib(state, params) >= -1e-6).all()


# --- property: valid sizes always parse into finite params -------------------------------------


@st.composite
def guest_sizes(draw, index):
    mem = draw(st.floats(16.0, 65536.0))
    min_mib = mem * draw(st.floats(0.01, 1.0))
    kernel = min_mib * draw(st.floats(0.01, 0.99))
    frac = draw(st.floats(0.0, 0.95))
    # the balloon can take at most frac * mem, so max_mib cannot lie below mem * (1 - frac)
    low = max(min_mib, mem * (1.0 - frac))
    max_mib = min(mem, low + draw(st.floats(0.0, 1.0)) * (mem - low))
    return {
        "name": f"g{index}",
        "count": draw(st.integers(1, 3)),
        "mem_mib": mem,
        "min_mib": min_mib,
        "max_mib": max_mib,
        "kernel_mib": kernel,
        "driver": {"max_balloon_frac": frac},
    }


@st.composite
def scenarios(draw):
    guests = [draw(guest_sizes(i)) for i in range(draw(st.integers(1, 4)))]
    reserved = draw(st.floats(0.0, 4096.0))
    floors = [
        max(g["min_mib"], g["mem_mib"] * (1 - g["driver"]["max_balloon_frac"])) for g in guests
    ]
    need = sum(f * g["count"] for f, g in zip(floors, guests, strict=True)) + reserved
    return {
        "name": "random",
        "dt_s": draw(st.sampled_from([1.0, 10.0, 60.0])),
        "host": {"mem_mib": need * draw(st.floats(1.0, 3.0)), "reserved_mib": reserved},
        "guests": guests,
    }


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_valid_sizes_always_parse_into_finite_params(data):
    cfg = parse_scenario(copy.deepcopy(data))
    assert cfg.num_guests == sum(g["count"] for g in data["guests"])
    params = params_from_scenario(cfg, max_guests=cfg.num_guests + 1)
    for name, array in zip(params._fields, params, strict=True):
        assert np.isfinite(array).all(), name
    mask = params.guest_mask
    assert mask.sum() == cfg.num_guests and not mask[0, -1]
    assert (params.balloon_max_mib <= params.mem_mib - params.min_mib).all()
    assert (params.balloon_max_mib >= 0).all()
    assert (params.min_mib[mask] <= params.max_mib[mask]).all()
    assert (params.max_mib <= params.mem_mib).all()


def test_the_scenario_reference_in_docs_is_current():
    from pathlib import Path

    from balloon_gym.config_docs import render

    path = Path(__file__).resolve().parents[1] / "docs" / "scenarios.md"
    assert path.read_text(encoding="utf-8") == render(), (
        "docs/scenarios.md is stale: run python -m balloon_gym.config_docs > docs/scenarios.md"
    )
