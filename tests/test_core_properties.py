"""Property tests: random scenarios and random actions, thousands of steps, every invariant.

For every step of every host: exact guest and host accounting, nothing negative, every rate limit
respected, observations finite and inside their space.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from balloon_gym.config import parse_scenario
from balloon_gym.core import observe, params_from_scenario, repeat_params, reset, step
from balloon_gym.core.state import consumed_mib, host_free_mib

TOL = 1e-6  # MiB

NON_NEGATIVE = (
    "anon_res",
    "anon_swap",
    "cache",
    "free",
    "untouched",
    "balloon",
    "balloon_swap",
    "host_swap",
    "reserved_vcpus",
    "stall_s",
    "lost_s",
    "restart_left_s",
    "swap_in",
    "swap_out",
    "fault_pages",
    "cpu_alloc",
    "throughput",
    "alloc_stall_s",
)

KINDS = ["constant", "diurnal", "bursty", "phases", "leak", "idle"]


@st.composite
def guests(draw):
    mem = draw(st.floats(1024, 16384))
    kernel = draw(st.floats(64, 512))
    min_mib = draw(st.floats(kernel + 64, mem))
    frac = draw(st.floats(0.5, 0.9))
    max_mib = draw(st.floats(max(min_mib, mem * (1 - frac)), mem))
    return {
        "name": "g",
        "mem_mib": mem,
        "min_mib": min_mib,
        "max_mib": max_mib,
        "kernel_mib": kernel,
        "shares": draw(st.floats(100, 4000)),
        "vcpus": draw(st.integers(1, 8)),
        "vcpu_change_per_step": draw(st.integers(0, 3)),
        "swap_mib": draw(st.floats(0, 4096)),
        "swap_out_mib_s": draw(st.floats(1, 500)),
        "swap_in_mib_s": draw(st.floats(1, 500)),
        "cache_reclaim_mib_s": draw(st.floats(1, 2000)),
        "free_page_reporting": draw(st.booleans()),
        "sla": draw(st.floats(0, 1)),
        "driver": {
            "kind": draw(st.sampled_from(["kernel", "user"])),
            "rate_adaptive": draw(st.booleans()),
            "alloc_mib_s": draw(st.floats(1, 2000)),
            "free_mib_s": draw(st.floats(1, 2000)),
            "max_request_mib_s": draw(st.floats(1, 2000)),
            "max_balloon_frac": frac,
            "present": draw(st.booleans()),
            "outage_start_s": draw(st.sampled_from([-1.0, 0.0, 50.0])),
            "outage_duration_s": draw(st.floats(0, 200)),
            "outage_rate_per_h": draw(st.floats(0, 20)),
        },
        "workload": {
            "kind": draw(st.sampled_from(KINDS)),
            "anon_mib": draw(st.floats(0, mem * 1.5)),
            "wss_frac": draw(st.floats(0, 1)),
            "cache_mib": draw(st.floats(0, mem / 2)),
            "cpu_vcpus": draw(st.floats(0, 8)),
            "diurnal_amp": draw(st.floats(0, 0.9)),
            "diurnal_period_s": draw(st.floats(60, 3600)),
            "burst_mult": draw(st.floats(1, 4)),
            "burst_on_s": draw(st.floats(10, 300)),
            "burst_off_s": draw(st.floats(10, 600)),
            "leak_mib_s": draw(st.floats(0, 20)),
            "touch_mib_s": draw(st.floats(0, 10)),
            "oom_restart_s": draw(st.sampled_from([0.0, 0.1, 10.0, 45.0])),
            "oom_reload_mib_s": draw(st.floats(1, 2000)),
        },
    }


@st.composite
def scenarios(draw):
    gs = draw(st.lists(guests(), min_size=1, max_size=5))
    mins = sum(max(g["min_mib"], g["mem_mib"] * (1 - g["driver"]["max_balloon_frac"])) for g in gs)
    reserved = draw(st.floats(0, 2048))
    overcommit = draw(st.floats(0.4, 1.5))
    mem = max(mins + reserved + 1.0, sum(g["mem_mib"] for g in gs) * overcommit) / 0.94
    data = {
        "name": "prop",
        "dt_s": draw(st.sampled_from([1.0, 10.0, 30.0])),
        "action_mode": draw(st.sampled_from(["allocation", "delta"])),
        "host": {
            "mem_mib": mem,
            "reserved_mib": reserved,
            "pcpus": draw(st.floats(1, 32)),
            "swap_out_mib_s": draw(st.floats(1, 500)),
            "swap_in_mib_s": draw(st.floats(1, 500)),
            "sampling": draw(st.booleans()),
        },
        "guests": gs,
    }
    return parse_scenario(data)


def check_invariants(prev, s, params, obs, space_dim):
    mask = params.guest_mask
    acct = params.kernel_mib + s.anon_res + s.cache + s.free + s.balloon - params.mem_mib
    assert np.abs(np.where(mask, acct, 0.0)).max() < TOL, "guest accounting"
    free_host = host_free_mib(s, params)
    total = consumed_mib(s, params).sum(axis=1) + params.host_reserved_mib[:, 0] + free_host
    np.testing.assert_allclose(total, params.host_mem_mib[:, 0], atol=TOL)
    assert free_host.min() > -TOL, "the host handed out memory it does not have"
    for name in NON_NEGATIVE:
        assert getattr(s, name).min() > -TOL, f"{name} negative"
    assert (s.untouched <= s.free + TOL).all()
    assert (s.anon_swap + s.balloon_swap <= params.swap_mib + TOL).all(), "guest swap overflow"
    touched = s.anon_res + s.cache + s.free - s.untouched
    assert (s.host_swap <= touched + TOL).all()
    # rate limits
    assert (s.balloon_moved <= np.maximum(params.alloc_mib, params.free_mib) + TOL).all()
    assert (s.swap_out <= params.swap_out_mib + TOL).all()
    assert (s.swap_in <= params.swap_in_mib + TOL).all()
    assert (s.host_swap_out <= params.host_swap_out_mib[:, 0] + TOL).all()
    assert (s.host_swap_in <= params.host_swap_in_mib[:, 0] + TOL).all()
    change = np.abs(s.reserved_vcpus - prev.reserved_vcpus)
    assert (change <= params.vcpu_change + TOL).all()
    assert (s.reserved_vcpus <= params.vcpus - 1 + TOL).all()
    assert (s.throughput <= 1 + TOL).all()
    assert (s.lost_s <= params.dt_s + TOL).all() and (s.oom_scale <= 1.0).all()
    assert (s.balloon[~params.driver_present] <= TOL).all(), "a balloon without a driver"
    # the balloon never exceeds its cap by its own doing (only a deflating guest can be above)
    grew = s.balloon > prev.balloon + TOL
    assert (s.balloon[grew] <= params.balloon_max_mib[grew] + TOL).all()
    # observations
    assert obs.dtype == np.float32 and obs.shape == (params.num_envs, space_dim)
    assert np.isfinite(obs).all() and obs.min() >= 0.0 and obs.max() <= 1.0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cfg=scenarios(),
    seed=st.integers(0, 2**32 - 1),
    action_kind=st.sampled_from(["uniform", "extreme", "sticky"]),
)
def test_invariants_hold_for_random_scenarios_and_actions(cfg, seed, action_kind):
    num_envs, steps = 4, 120  # 40 examples x 4 hosts x 120 steps ~ 19k host-steps
    params = repeat_params(params_from_scenario(cfg), num_envs)
    rng = np.random.default_rng(seed)
    act_rng = np.random.default_rng(seed + 1)
    state = reset(params, rng)
    dim = observe(state, params).shape[1]
    shape = (num_envs, 2 * params.max_guests)
    action = act_rng.uniform(-1, 1, shape)
    for _ in range(steps):
        if action_kind == "uniform":
            action = act_rng.uniform(-1, 1, shape)
        elif action_kind == "extreme":
            action = act_rng.choice([-1.0, 1.0], shape)
        elif act_rng.random() < 0.1:
            action = act_rng.uniform(-1, 1, shape)
        new, out = step(state, action, params, rng)
        check_invariants(state, new, params, observe(new, params), dim)
        assert np.isfinite(out.reward).all()
        state = new


def test_invariants_hold_on_every_shipped_scenario_for_a_full_episode():
    from balloon_gym.scenarios import list_scenarios, load_scenario

    for name in list_scenarios():
        params = repeat_params(params_from_scenario(load_scenario(name)), 8)
        rng = np.random.default_rng(7)
        state = reset(params, rng)
        dim = observe(state, params).shape[1]
        for _ in range(360):
            action = rng.uniform(-1, 1, (8, 2 * params.max_guests))
            new, _ = step(state, action, params, rng)
            check_invariants(state, new, params, observe(new, params), dim)
            state = new
