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
    GUEST_SWAP_DEVICES,
    HOST_SWAP_DEVICES,
    WORKLOAD_KIND_DEFAULTS,
    GuestConfig,
    HostConfig,
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
        "greater than or equal to 64",
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
    assert len(set(balloon_gym.BALLOONBENCH_V1)) == len(balloon_gym.BALLOONBENCH_V1)
    assert set(balloon_gym.BALLOONBENCH_V1) <= set(list_scenarios())


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
    min_mib = max(2.0, mem * draw(st.floats(0.01, 1.0)))
    kernel = 1.0 + (min_mib - 1.0) * draw(st.floats(0.0, 0.99))
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
        "host": {"mem_mib": max(64.0, need * draw(st.floats(1.0, 3.0))), "reserved_mib": reserved},
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


# --- every numeric field at its bounds: the simulator stays finite -----------------------------

_SECTIONS = {
    (): "ScenarioConfig",
    ("host",): "HostConfig",
    ("reward",): "RewardConfig",
    ("guests", 0): "GuestConfig",
    ("guests", 0, "driver"): "DriverConfig",
    ("guests", 0, "workload"): "WorkloadConfig",
}


def _bound_values(info):
    """The smallest and largest value a field accepts (every numeric field has both)."""
    from annotated_types import Ge, Le

    lo = [m.ge for m in info.metadata if isinstance(m, Ge)]
    hi = [m.le for m in info.metadata if isinstance(m, Le)]
    return lo[0], hi[0]


def _numeric_fields():
    import balloon_gym.config as config

    for path, model_name in _SECTIONS.items():
        for name, info in getattr(config, model_name).model_fields.items():
            if info.annotation in (float, int, float | None):
                yield path, name, _bound_values(info)


def _bounds_base():
    return {
        "name": "bounds",
        "episode_steps": 1000,
        "host": {"mem_mib": 32768, "reserved_mib": 1024},
        "reward": {},
        "guests": [
            {
                "name": "a",
                "mem_mib": 8192,
                "min_mib": 1024,
                "driver": {},
                "workload": {"kind": "bursty", "diurnal_amp": 0.5, "phase_mean_s": 600.0},
            },
            {"name": "b", "mem_mib": 8192, "min_mib": 2048, "workload": {"kind": "idle"}},
        ],
    }


def _with_bound(path, name, value):
    """The base scenario with one field at ``value``, other fields moved so it stays valid."""
    d = _bounds_base()
    section = d
    for part in path:
        section = section[part]
    section[name] = value
    g, big = d["guests"][0], 2**24
    if path == ("guests", 0):
        if name == "mem_mib":
            g.update(min_mib=value, kernel_mib=min(max(1, value / 2), 2**20))
            d["host"]["mem_mib"] = big
        elif name in ("min_mib", "max_mib") and value >= 8192:
            g.update(mem_mib=value, min_mib=value if name == "min_mib" else 1024)
            d["host"]["mem_mib"] = big
        elif name == "min_mib":
            g.update(kernel_mib=max(1, value / 2))
        elif name == "max_mib":
            g.update(min_mib=value, kernel_mib=max(1, value / 2), mem_mib=value)
        elif name == "kernel_mib" and value > 1000:
            g.update(mem_mib=2 * value, min_mib=2 * value)
            d["host"]["mem_mib"] = big
        elif name == "count":
            d["host"]["mem_mib"] = big
    if path == ("host",) and name == "reserved_mib":
        d["host"]["mem_mib"] = big
    if path == ("host",) and name == "mem_mib" and value < 32768:
        for guest in d["guests"]:
            guest.update(mem_mib=value / 4, min_mib=value / 8, kernel_mib=value / 16)
        d["host"]["reserved_mib"] = 0
    if path == ("guests", 0, "workload") and name == "phase_low":
        g["workload"]["phase_high"] = max(value, 1.5)
    if path == ("guests", 0, "workload") and name == "phase_high":
        g["workload"]["phase_low"] = min(value, 0.5)
    return d


def test_every_numeric_field_has_both_bounds():
    fields = list(_numeric_fields())
    assert len(fields) > 50
    for _, _, (lo, hi) in fields:
        assert lo < hi


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("dt_s", [0.1, 10.0, 3600.0])
def test_every_numeric_field_at_its_bounds_keeps_the_simulator_finite(dt_s, backend):
    """One mixed batch: for each numeric field, a host with it at its min and one at its max;
    50 steps of random actions give finite observations, rewards and info, with no numpy
    warning (an overflow or a division by zero)."""
    import warnings

    from balloon_gym.envs import BalloonVectorEnv

    if backend == "numba":
        pytest.importorskip("numba")
    configs, labels = [], []
    for path, name, bounds in _numeric_fields():
        for value in bounds:
            data = _with_bound(path, name, value)
            if (path, name) != ((), "dt_s"):
                data["dt_s"] = dt_s
            configs.append(parse_scenario(data, source=f"{path}.{name}={value}"))
            labels.append(f"{'.'.join(map(str, path))}.{name}={value}")
    env = BalloonVectorEnv(len(configs), configs, backend=backend)
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        obs, _ = env.reset(seed=0)
        for _ in range(50):
            obs, reward, _, _, info = env.step(rng.uniform(-1, 1, env.action_space.shape))
            bad = ~np.isfinite(obs).all(axis=1) | ~np.isfinite(reward)
            for value in map(np.asarray, info.values()):
                if value.dtype.kind == "f":
                    bad |= ~np.isfinite(value.reshape(len(configs), -1)).all(axis=1)
            assert not bad.any(), [labels[i] for i in np.flatnonzero(bad)]


# --- YAML loading: duplicate keys, 1e5, non-finite numbers, odd files --------------------------

GOOD_YAML = "name: mine\nhost:\n  mem_mib: 32768\nguests:\n  - {name: a}\n"


def _file(tmp_path, text, name="mine.yaml"):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "key", "line", "first"),
    [
        ("name: mine\nname: other\nguests: [{}]\n", "'name'", 2, 1),
        ("name: mine\nhost:\n  mem_mib: 1\n  mem_mib: 32768\nguests: [{}]\n", "'mem_mib'", 4, 3),
        ("name: mine\nguests:\n  - {name: a, vcpus: 2, vcpus: 4}\n", "'vcpus'", 3, 3),
    ],
)
def test_duplicate_yaml_keys_are_rejected_naming_the_key_and_lines(
    tmp_path, text, key, line, first
):
    with pytest.raises(ConfigError) as err:
        load_scenario_file(_file(tmp_path, text))
    message = str(err.value)
    assert f"duplicate key {key}" in message and f"line {line}," in message
    assert f"first at line {first}" in message and "remove one" in message


def test_merge_keys_may_still_be_overridden(tmp_path):
    text = (
        "name: mine\nhost: {mem_mib: 32768}\n"
        "guests:\n  - &base {name: a, vcpus: 2}\n  - {<<: *base, name: b, vcpus: 4}\n"
    )
    cfg = load_scenario_file(_file(tmp_path, text))
    assert [g.vcpus for g in cfg.guests] == [2, 4]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1e5", 1e5),
        ("1.0e5", 1e5),
        ("1E+4", 1e4),
        ("2.5e-1", 0.25),
        ("-1e0", -1.0),
        ("1.0e+5", 1e5),
    ],
)
def test_exponent_floats_read_as_floats(tmp_path, text, value):
    path = _file(tmp_path, f"name: mine\nguests:\n  - {{workload: {{leak_mib_s: {text}}}}}\n")
    if value < 0:
        with pytest.raises(ConfigError, match="greater than or equal to 0"):
            load_scenario_file(path)
        return
    if value > 1e4:
        with pytest.raises(ConfigError, match="less than or equal to 10000"):
            load_scenario_file(path)
        return
    assert load_scenario_file(path).guests[0].workload.leak_mib_s == value


def test_exponent_floats_fill_a_float_field(tmp_path):
    path = _file(
        tmp_path, "name: mine\nhost: {swap_out_mib_s: 1e4, mem_mib: 3.2e4}\nguests: [{}]\n"
    )
    cfg = load_scenario_file(path)
    assert cfg.host.swap_out_mib_s == 1e4 and cfg.host.mem_mib == 32000.0


def test_a_quoted_number_gets_a_hint_to_drop_the_quotes():
    with pytest.raises(ConfigError, match="without quotes") as err:
        parse_scenario(with_change(lambda d: d["host"].update(mem_mib="32768")))
    assert "host.mem_mib" in str(err.value)


@pytest.mark.parametrize("text", [".nan", ".NaN", ".inf", "-.inf", ".Inf"])
def test_non_finite_yaml_numbers_are_reported_as_not_finite(tmp_path, text):
    path = _file(tmp_path, f"name: mine\ndt_s: {text}\nguests: [{{}}]\n")
    with pytest.raises(ConfigError) as err:
        load_scenario_file(path)
    assert "dt_s: must be a finite number" in str(err.value)
    assert "less than" not in str(err.value) and "greater than" not in str(err.value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_numbers_in_a_dict_are_reported_as_not_finite(value):
    with pytest.raises(ConfigError, match=r"guests\[0\]\.mem_mib: must be a finite number"):
        parse_scenario(with_change(guest0(mem_mib=value)))


def test_an_integer_too_large_for_a_float_is_named():
    with pytest.raises(ConfigError, match=r"host\.mem_mib: .*too large for a float"):
        parse_scenario(with_change(lambda d: d["host"].update(mem_mib=10**400)))


def test_a_directory_is_not_a_scenario_file(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        load_scenario_file(tmp_path)
    with pytest.raises(ConfigError, match="is a directory"):
        load_scenario(str(tmp_path) + "/")


def test_a_fifo_is_not_read(tmp_path):
    import os

    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    path = tmp_path / "pipe.yaml"
    os.mkfifo(path)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_scenario_file(path)  # reading it would block forever


def test_a_huge_file_is_refused_before_it_is_read(tmp_path):
    from balloon_gym.config import MAX_SCENARIO_BYTES

    path = _file(tmp_path, GOOD_YAML + "#" * MAX_SCENARIO_BYTES + "\n")
    with pytest.raises(ConfigError, match="more than the 1048576"):
        load_scenario_file(path)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("", "top level must be a mapping.*got NoneType"),
        ("# only a comment\n", "top level must be a mapping.*got NoneType"),
        ("- a\n- b\n", "top level must be a mapping.*got list"),
        ("just text\n", "top level must be a mapping.*got str"),
        (bytes(range(256)), "not UTF-8"),
        (b"name: mine\x00\n", "not valid YAML.*#x0000"),
        (b"\xff\xfename: mine\n", "not UTF-8"),
        ("name: !!python/object:os.system x\nguests: [{}]\n", "not valid YAML.*line 1"),
        ("name: mine\nguests: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ],
)
def test_odd_files_raise_one_config_error(tmp_path, content, match):
    with pytest.raises(ConfigError, match=match) as err:
        load_scenario_file(_file(tmp_path, content))
    assert "Traceback" not in str(err.value) and "\n  in " not in str(err.value)


def test_a_utf8_bom_is_accepted(tmp_path):
    assert load_scenario_file(_file(tmp_path, b"\xef\xbb\xbf" + GOOD_YAML.encode())).name == "mine"


def test_a_flood_of_errors_is_cut_to_a_readable_message():
    from balloon_gym.config import MAX_ERROR_LINES

    data = {"name": "mine", "guests": [{"mem_mib": "x"}] * 100, **{f"k{i}": 1 for i in range(50)}}
    with pytest.raises(ConfigError) as err:
        parse_scenario(data)
    lines = str(err.value).splitlines()
    assert len(lines) == MAX_ERROR_LINES + 2
    assert lines[-1].startswith("  ... and ") and "more" in lines[-1]


def test_more_guests_than_a_host_may_have_are_rejected():
    data = with_change(lambda d: d.update(guests=[{"count": 256}] * 5))
    with pytest.raises(ConfigError, match=r"guests: 1280 guests .* at most 1024"):
        parse_scenario(data)


def test_an_overlong_description_is_rejected():
    with pytest.raises(ConfigError, match="description: String should have at most 500"):
        parse_scenario(with_change(lambda d: d.update(description="x" * 501)))


# --- named choices: swap devices and workload parallelism fill defaults ------------------------


def _one_guest(host=None, **guest):
    return parse_scenario({"name": "x", "host": host or {}, "guests": [guest]})


@pytest.mark.parametrize("device", ["zram", "nvme", "ssd", "hdd"])
def test_a_swap_device_fills_the_fields_left_out_and_explicit_values_win(device):
    cfg = _one_guest(host={"swap_device": device}, swap_device=device)
    for field, value in GUEST_SWAP_DEVICES[device].items():
        assert getattr(cfg.guests[0], field) == value
    for field, value in HOST_SWAP_DEVICES[device].items():
        assert getattr(cfg.host, field) == value
    own = _one_guest(host={"swap_device": device, "fault_s": 0.5}, swap_device=device, fault_s=0.5)
    assert own.guests[0].fault_s == 0.5 and own.host.fault_s == 0.5
    # The field defaults are the default device's (ssd), so the docs' defaults are the truth.
    assert GuestConfig().fault_s == GUEST_SWAP_DEVICES["ssd"]["fault_s"]
    assert HostConfig().swap_in_mib_s == HOST_SWAP_DEVICES["ssd"]["swap_in_mib_s"]


def test_parallelism_fills_the_lhp_losses_without_contradicting_a_given_one():
    assert (GuestConfig().lhp_penalty, GuestConfig().lhp_penalty_3x) == (0.4, 1.0)
    serial = _one_guest(workload={"parallelism": "serial"}).guests[0]
    assert (serial.lhp_penalty, serial.lhp_penalty_3x) == (0.0, 0.0)
    # One given: the other is the kind's value, moved so that L(3x) >= L(2x).
    assert _one_guest(lhp_penalty=4.0).guests[0].lhp_penalty_3x == 4.0
    assert _one_guest(lhp_penalty_3x=0.2).guests[0].lhp_penalty == 0.2
    lock = _one_guest(lhp_penalty=0.1, workload={"parallelism": "lock_heavy"}).guests[0]
    assert lock.lhp_penalty_3x == 1.5
    with pytest.raises(ConfigError, match=r"guests\[0\]\.lhp_penalty_3x: .*raise lhp_penalty_3x"):
        _one_guest(lhp_penalty=2.0, lhp_penalty_3x=1.0)
    with pytest.raises(ConfigError, match=r"guests\[0\]\.workload\.parallelism"):
        _one_guest(workload={"parallelism": "threads"})
