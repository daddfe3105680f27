"""Property tests of the scenario loader on generated bad input: wrong types, out-of-range and
non-finite numbers, unknown keys, nested garbage, damaged YAML text and random bytes.

Whatever the input, loading either gives a valid ``ScenarioConfig`` or raises ``ConfigError``
(never another exception type) with a short message whose lines name the field they are about.
"""

from __future__ import annotations

import copy
import math
import re
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from balloon_gym.config import (
    MAX_ERROR_LINES,
    ConfigError,
    DriverConfig,
    GuestConfig,
    HostConfig,
    RewardConfig,
    ScenarioConfig,
    WorkloadConfig,
    load_scenario_file,
    load_yaml,
    parse_scenario,
)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

MAX_LINE = 300
"""Longest message line allowed: a field path, what is wrong and the fix, no dumped input."""

_SEGMENT = r"""(?:\[-?\d+\]|\['.*?'\]|\[".*?"\])"""  # [0], or a quoted odd key: [':']
FIELD_LINE = re.compile(
    rf"^  (<root>|(?:[A-Za-z_]\w*|{_SEGMENT})(?:\.[A-Za-z_]\w*|{_SEGMENT})*): \S"
)
"""A field error line: two spaces, the field path (or <root>), a colon, the message."""

SECTIONS = {
    (): ScenarioConfig,
    ("host",): HostConfig,
    ("reward",): RewardConfig,
    ("guests", 0): GuestConfig,
    ("guests", 1): GuestConfig,
    ("guests", 0, "driver"): DriverConfig,
    ("guests", 1, "workload"): WorkloadConfig,
}


def valid():
    return {
        "name": "prop",
        "dt_s": 10.0,
        "host": {"mem_mib": 32768.0, "reserved_mib": 1024.0},
        "reward": {"w_oom": 1.0},
        "guests": [
            {"name": "a", "mem_mib": 8192.0, "min_mib": 1024.0, "driver": {"kind": "kernel"}},
            {"name": "b", "mem_mib": 8192.0, "min_mib": 2048.0, "workload": {"kind": "idle"}},
        ],
    }


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.just(10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 5e-324, 1e-300, 1e300, -1.0, 2.0**63, 2.0**64]),
    st.text(max_size=30),
    st.sampled_from(["1e5", "1.0e5", "nan", ".inf", "0x10", "1_000", "yes", "", " ", "~"]),
)
garbage = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=10), st.integers()), inner, max_size=4),
    ),
    max_leaves=12,
)


@st.composite
def bad_documents(draw):
    """A valid scenario with a few fields, sections or unknown keys replaced by garbage."""
    data = valid()
    for _ in range(draw(st.integers(1, 4))):
        path, model = draw(st.sampled_from(sorted(SECTIONS.items(), key=lambda kv: str(kv[0]))))
        section = data
        for part in path:
            if isinstance(section, dict) and isinstance(part, str):
                section = section.setdefault(part, {})
            elif isinstance(section, list) and isinstance(part, int) and part < len(section):
                section = section[part]
            else:
                break
        if not isinstance(section, dict):
            continue
        key = draw(st.one_of(st.sampled_from(sorted(model.model_fields)), st.text(max_size=12)))
        section[key] = draw(garbage)
    if draw(st.booleans()):  # sometimes garbage in place of a whole section or the guest list
        where = draw(st.sampled_from(["host", "reward", "guests"]))
        data[where] = draw(garbage)
    return data


def assert_clear_config_error(err: ConfigError) -> None:
    """A short message; every line after the first names a field (or says how many more)."""
    lines = str(err).splitlines()
    assert lines, "empty message"
    assert len(lines) <= MAX_ERROR_LINES + 2, str(err)
    assert all(len(line) <= MAX_LINE for line in lines), str(err)
    for line in lines[1:]:
        assert FIELD_LINE.match(line) or line.startswith("  ... and "), line
    assert "Traceback" not in str(err)


def load_text(text: str):
    """Parse YAML text as a scenario file is parsed."""
    return parse_scenario(load_yaml(text, source="prop.yaml"), source="prop.yaml")


@SETTINGS
@given(bad_documents())
def test_bad_dicts_raise_only_config_error_naming_fields(data):
    try:
        cfg = parse_scenario(copy.deepcopy(data), source="prop.yaml")
    except ConfigError as err:
        assert str(err).startswith("invalid scenario prop.yaml")
        assert_clear_config_error(err)
    else:
        assert isinstance(cfg, ScenarioConfig)


@SETTINGS
@given(bad_documents(), st.data())
def test_bad_yaml_documents_raise_only_config_error(data, draw):
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=draw.draw(st.booleans()))
    lines = text.splitlines(keepends=True)
    damage = draw.draw(st.sampled_from(["none", "duplicate", "truncate", "insert", "indent"]))
    if damage == "duplicate" and lines:
        i = draw.draw(st.integers(0, len(lines) - 1))
        lines.insert(i, lines[i])
    elif damage == "truncate":
        lines = lines[: draw.draw(st.integers(0, len(lines)))]
    elif damage == "insert":
        i = draw.draw(st.integers(0, len(lines)))
        lines.insert(i, draw.draw(st.text(max_size=20)) + "\n")
    elif damage == "indent" and lines:
        i = draw.draw(st.integers(0, len(lines) - 1))
        lines[i] = " " * draw.draw(st.integers(1, 5)) + lines[i]
    try:
        cfg = load_text("".join(lines))
    except ConfigError as err:
        assert_clear_config_error(err)
    else:
        assert isinstance(cfg, ScenarioConfig)


@SETTINGS
@given(
    st.sampled_from(["host.mem_mib", "dt_s", "guests[0].mem_mib", "guests[0].workload.leak_mib_s"]),
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([".nan", ".inf", "-.inf", "1e999", "-1e999", "1e5", "1.0e-400"]),
    ),
)
def test_any_number_in_a_float_field_parses_or_names_that_field(field, number):
    text = (
        "name: prop\nhost: {mem_mib: 32768}\ndt_s: 10\n"
        "guests:\n  - {mem_mib: 8192, min_mib: 1024, workload: {leak_mib_s: 1}}\n"
    )
    literal = number if isinstance(number, str) else yaml.safe_dump(number).split("\n")[0]
    key = field.rsplit(".", 1)[-1]
    scoped = {
        "host.mem_mib": ("host: {mem_mib: 32768}", f"host: {{mem_mib: {literal}}}"),
        "dt_s": ("dt_s: 10", f"dt_s: {literal}"),
        "guests[0].mem_mib": ("{mem_mib: 8192,", f"{{mem_mib: {literal},"),
        "guests[0].workload.leak_mib_s": ("leak_mib_s: 1}", f"leak_mib_s: {literal}}}"),
    }[field]
    text = text.replace(*scoped)
    try:
        cfg = load_text(text)
    except ConfigError as err:
        assert_clear_config_error(err)
        assert f"  {field}: " in str(err) or "guests[0]" in str(err) or "<root>" in str(err)
        value = float(literal.replace(".nan", "nan").replace(".inf", "inf"))
        if not math.isfinite(value):
            assert f"  {field}: must be a finite number" in str(err)
    else:
        value = cfg
        for part in re.split(r"\.|\[|\]", field):
            if part:
                value = value[int(part)] if part.isdigit() else getattr(value, part)
        assert math.isfinite(value), key


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_in_a_file_raise_only_config_error(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "random.yaml"
        path.write_bytes(content)
        try:
            cfg = load_scenario_file(path)
        except ConfigError as err:
            assert_clear_config_error(err)
            assert str(path) in str(err).splitlines()[0]
        else:
            assert isinstance(cfg, ScenarioConfig)


@SETTINGS
@given(garbage)
def test_garbage_at_the_top_level_raises_only_config_error(value):
    try:
        parse_scenario(value, source="prop.yaml")
    except ConfigError as err:
        assert_clear_config_error(err)
