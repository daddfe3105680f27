"""A hand-built two-guest host with exact expected numbers for each mechanism of the core.

Each guest: 4096 MiB, kernel 256 MiB, min 1024 MiB, guest swap 1024 MiB, dt = 10 s. Rates are
chosen so that every expected number below can be checked by hand.
"""

from __future__ import annotations

import numpy as np
import pytest

from balloon_gym.config import parse_scenario
from balloon_gym.core import balloon, cpu, host, params_from_scenario, reset, rows, step
from balloon_gym.core.state import consumed_mib, host_free_mib

DT = 10.0


def _scenario(host_mem=10000.0, **guest_overrides):
    guest = {
        "mem_mib": 4096.0,
        "min_mib": 1024.0,
        "kernel_mib": 256.0,
        "swap_mib": 1024.0,
        "swap_out_mib_s": 10.0,  # 100 MiB a step
        "swap_in_mib_s": 10.0,
        "cache_reclaim_mib_s": 100.0,  # 1000 MiB a step
        "vcpus": 4,
        "driver": {"alloc_mib_s": 200.0, "free_mib_s": 50.0, "max_request_mib_s": 100.0},
        "workload": {"anon_mib": 0.0, "cache_mib": 0.0, "cpu_vcpus": 0.0},
    }
    guest.update(guest_overrides)
    return parse_scenario(
        {
            "name": "fixture",
            "dt_s": DT,
            "host": {"mem_mib": host_mem, "reserved_mib": 0.0, "pcpus": 4.0, "sampling": False},
            "guests": [{**guest, "name": "a"}, {**guest, "name": "b"}],
        }
    )


def _state(params, **fields):
    """A reset state with the given (num_envs=1, 2 guests) fields overwritten."""
    s = reset(params, np.random.default_rng(0))
    return s._replace(**{k: np.asarray(v, dtype=float).reshape(1, -1) for k, v in fields.items()})


# Guest memory layout: kernel 256 + anon 3140 + cache 300 + free 400 = 4096, balloon 0.
LAYOUT = {
    "anon_res": [3140.0, 3140.0],
    "anon_swap": [0.0, 0.0],
    "cache": [300.0, 300.0],
    "free": [400.0, 400.0],
    "untouched": [0.0, 0.0],
    "balloon": [0.0, 0.0],
}


def test_inflation_drains_free_then_cache_then_swaps_anon():
    params = params_from_scenario(_scenario(swap_out_mib_s=100.0))  # 1000 MiB a step
    s = _state(params, **LAYOUT)
    m = balloon.move(s, np.array([[1000.0, 0.0]]), np.array([[True, True]]), params)
    assert m.free[0, 0] == 0.0
    assert m.cache[0, 0] == 0.0
    assert m.anon_res[0, 0] == 3140.0 - 300.0
    assert m.anon_swap[0, 0] == 300.0
    assert m.balloon[0, 0] == 1000.0
    assert m.swap_out[0, 0] == 300.0
    # Guest b was asked for nothing and is unchanged.
    assert m.balloon[0, 1] == 0.0 and m.free[0, 1] == 400.0


def test_small_inflation_takes_only_free_pages():
    params = params_from_scenario(_scenario())
    s = _state(params, **LAYOUT)
    m = balloon.move(s, np.array([[250.0, 0.0]]), np.array([[True, True]]), params)
    assert (m.free[0, 0], m.cache[0, 0], m.anon_res[0, 0]) == (150.0, 300.0, 3140.0)


def test_reservation_rate_is_the_sum_of_the_stages_and_adaptive_driver_keeps_to_it():
    params = params_from_scenario(_scenario())  # swap-out 100 MiB a step
    s = _state(params, **LAYOUT)
    # free 400 + cache min(300, 1000) + anon min(3140, 100, swap 1024) = 800, under alloc 2000.
    assert balloon.max_reservation_rate(s, params)[0, 0] == 800.0
    m = balloon.move(s, np.array([[1000.0, 0.0]]), np.array([[True, True]]), params)
    assert m.balloon[0, 0] == 800.0
    assert m.alloc_stall_s[0, 0] == 0.0


def test_naive_driver_on_a_guest_with_no_free_memory_stalls():
    params = params_from_scenario(
        _scenario(driver={"rate_adaptive": False, "max_request_mib_s": 100.0})
    )
    full = {**LAYOUT, "anon_res": [3840.0, 3840.0], "cache": [0.0, 0.0], "free": [0.0, 0.0]}
    s = _state(params, **full)
    m = balloon.move(s, np.array([[2000.0, 0.0]]), np.array([[True, True]]), params)
    # It asks 100 MiB/s * 10 s = 1000 MiB; the guest can only swap out 100 MiB this step.
    assert m.balloon[0, 0] == 100.0
    assert m.alloc_stall_s[0, 0] == pytest.approx(900.0 * 0.02)
    assert not m.oom[0, 0]
    # The same guest under a rate-adaptive driver moves as much and loses nothing.
    adaptive = params_from_scenario(_scenario())
    m2 = balloon.move(
        _state(adaptive, **full), np.array([[2000.0, 0.0]]), np.ones((1, 2), bool), adaptive
    )
    assert m2.balloon[0, 0] == 100.0 and m2.alloc_stall_s[0, 0] == 0.0


def test_naive_driver_on_a_guest_with_full_swap_fires_the_oom_killer():
    params = params_from_scenario(_scenario(driver={"rate_adaptive": False}))
    full = {**LAYOUT, "anon_res": [2816.0, 2816.0], "anon_swap": [1024.0, 0.0]}
    full.update(cache=[0.0, 0.0], free=[0.0, 1024.0])
    s = _state(params, **full)
    m = balloon.move(s, np.array([[500.0, 500.0]]), np.ones((1, 2), bool), params)
    assert m.oom[0, 0] and m.balloon[0, 0] == 0.0
    assert not m.oom[0, 1] and m.balloon[0, 1] == 500.0  # b had free pages


def test_deflation_is_rate_limited_and_returns_untouched_pages():
    params = params_from_scenario(_scenario())  # free 50 MiB/s -> 500 MiB a step
    layout = {**LAYOUT, "anon_res": [2140.0, 3140.0], "balloon": [1000.0, 0.0]}
    s = _state(params, **layout)
    m = balloon.move(s, np.array([[0.0, 0.0]]), np.ones((1, 2), bool), params)
    assert m.balloon[0, 0] == 500.0
    assert m.free[0, 0] == 900.0
    assert m.untouched[0, 0] == 500.0  # ballooned pages were never backed


def test_a_guest_whose_driver_is_out_cannot_be_ballooned():
    cfg = _scenario(driver={"outage_start_s": 0.0, "outage_duration_s": 30.0})
    params = params_from_scenario(cfg)
    s = _state(params, **LAYOUT)
    up, left = balloon.availability(s, params, np.zeros((1, 2)))
    assert not up.any() and left.tolist() == [[2, 2]]  # 3 steps out: this one and 2 more
    m = balloon.move(s, np.array([[1000.0, 1000.0]]), up, params)
    assert m.balloon.tolist() == [[0.0, 0.0]]
    # Nor can its vCPUs be reserved.
    reserved, cost = balloon.vcpu_reservation(s, np.array([[2.0, 2.0]]), up, params)
    assert reserved.tolist() == [[0.0, 0.0]] and cost.tolist() == [[0.0, 0.0]]


@pytest.mark.parametrize(
    ("free_b", "expect_state", "expect_swap"),
    [(296.0, 1, 0.0), (136.0, 2, 80.0)],  # host free 5 % (soft) and 3 % (hard)
)
def test_the_host_swaps_only_in_the_hard_state(free_b, expect_state, expect_swap):
    params = params_from_scenario(_scenario(host_mem=8000.0))
    # All guest-free memory untouched: consumed = 4096 - free. a: 3800; b: 3800 or 3960.
    s = _state(
        params,
        anon_res=[3840.0 - 296.0, 3840.0 - free_b],
        anon_swap=[0.0, 0.0],
        cache=[0.0, 0.0],
        free=[296.0, free_b],
        untouched=[296.0, free_b],
        balloon=[0.0, 0.0],
        alloc_target=[3000.0, 3000.0],
    )
    hs, taken, mem_state = host.reclaim(s, params)
    assert mem_state[0] == expect_state
    # Hard: swap until free is back at the soft line (4 % = 320 MiB): 80 MiB, split between
    # the guests in proportion to how far each is above its target (800 and 960 MiB).
    assert taken.sum() == pytest.approx(expect_swap)
    np.testing.assert_allclose(taken[0], np.array([800.0, 960.0]) / 1760.0 * expect_swap)
    np.testing.assert_allclose(hs, taken)
    after = s._replace(host_swap=hs)
    consumed_before = 3800.0 + (4096.0 - free_b)
    assert host_free_mib(after, params)[0] == pytest.approx(8000.0 - consumed_before + expect_swap)


def test_vcpu_reservation_lowers_the_smp_loss():
    params = params_from_scenario(_scenario(lhp_penalty=0.5))  # 2 guests x 4 vCPUs, 4 pCPUs
    demand = np.array([[4.0, 4.0]])
    none = cpu.schedule(np.zeros((1, 2)), demand, params)
    # Each gets 2 pCPUs for 4 runnable vCPUs (2x overcommit): eff = 1 / (1 + 0.5) = 2/3.
    assert none.alloc.tolist() == [[2.0, 2.0]]
    assert none.smp_eff[0, 0] == pytest.approx(2 / 3)
    assert none.factor[0, 0] == pytest.approx(1 / 3)
    packed = cpu.schedule(np.array([[2.0, 2.0]]), demand, params)
    assert packed.smp_eff[0, 0] == pytest.approx(1.0)
    assert packed.factor[0, 0] == pytest.approx(0.5)


def test_water_fill_caps_and_shares_exactly():
    caps = np.array([[1.0, 5.0, 5.0]])
    weights = np.array([[1.0, 1.0, 2.0]])
    alloc = cpu.water_fill(caps, weights, np.array([[6.0]]))
    np.testing.assert_allclose(alloc, [[1.0, 5.0 / 3.0, 10.0 / 3.0]])
    # Enough for everyone: every guest gets its cap.
    np.testing.assert_allclose(cpu.water_fill(caps, weights, np.array([[20.0]])), caps)


def test_water_level_of_the_projection_exactly():
    caps = np.array([[1.0, 5.0, 5.0], [1.0, 1.0, 0.0]])
    weights = np.array([[1.0, 1.0, 2.0], [1.0, 1.0, 0.0]])
    level = rows.water_level(caps, weights, np.array([[6.0], [3.0]]))
    # Row 0: the first cap binds at 1, then 1 + 3 lam = 6: lam = 5 / 3. Row 1: caps sum to 2 < 3.
    np.testing.assert_allclose(level[0], [5.0 / 3.0])
    assert np.isinf(level[1, 0])


def test_guest_oom_when_the_footprint_outgrows_memory_and_swap():
    cfg = _scenario(workload={"anon_mib": 5000.0, "wss_frac": 0.5, "cache_mib": 0.0})
    params = params_from_scenario(cfg)
    rng = np.random.default_rng(0)
    s = reset(params, rng)
    # Usable 4096 - 256 - balloon, plus 1024 swap, is below 5000 once the balloon holds 300.
    s, out = step(s, np.array([[-1.0, -1.0, 1.0, 1.0]]), params, rng)
    assert s.oom.all() and out.parts["ooms"][0] == 2
    assert (s.anon_res == 0.0).all() and (s.oom_scale == 0.0).all()  # nothing re-read yet


def test_a_user_level_balloon_is_swapped_before_the_guest_s_own_pages():
    cfg = _scenario(driver={"kind": "user"}, workload={"anon_mib": 3340.0, "cache_mib": 0.0})
    params = params_from_scenario(cfg)
    # Guest a holds a 400 MiB user-level balloon and no free memory; its workload grows by 200.
    layout = {**LAYOUT, "cache": [0.0, 0.0], "free": [0.0, 0.0], "balloon": [700.0, 700.0]}
    s = _state(params, **layout, alloc_target=[3396.0, 3396.0], balloon_target=[700.0, 700.0])
    s, _ = step(s, _hold(params, s), params, _rng())
    # The growth of 200 MiB needs room: the guest swaps out 100 MiB (its rate) of balloon pages.
    assert s.balloon_swap[0, 0] == pytest.approx(100.0)
    assert s.anon_swap[0, 0] == pytest.approx(0.0)


def test_a_guest_touches_no_more_new_pages_than_the_host_has_free():
    cfg = _scenario(
        host_mem=7000.0,
        workload={"anon_mib": 3500.0, "cache_mib": 0.0},
        driver={"outage_start_s": 0.0, "outage_duration_s": 100.0},  # balloons cannot help
    )
    params = params_from_scenario(cfg)
    # Each guest: 1000 MiB resident, 2840 free never touched; host free = 7000 - 2 * 1256.
    layout = {
        "anon_res": [1000.0, 1000.0],
        "anon_swap": [0.0, 0.0],
        "cache": [0.0, 0.0],
        "free": [2840.0, 2840.0],
        "untouched": [2840.0, 2840.0],
        "balloon": [0.0, 0.0],
    }
    s = _state(params, **layout, alloc_target=[3500.0, 3500.0])
    s, _ = step(s, _hold(params, s), params, _rng())
    # Both want 2500 MiB more; the host has 4488 MiB: 2244 each, and nothing is left.
    np.testing.assert_allclose(s.anon_res, [[3244.0, 3244.0]])
    assert host_free_mib(s, params)[0] == pytest.approx(0.0, abs=1e-6)
    assert (s.stall_s > 0).all()  # the rest of the growth had to wait


def test_free_page_reporting_returns_touched_free_pages_to_the_host():
    params = params_from_scenario(_scenario(free_page_reporting=True))
    layout = {**LAYOUT, "anon_res": [0.0, 0.0], "cache": [0.0, 0.0], "free": [3840.0, 3840.0]}
    s = _state(params, **layout, alloc_target=[4096.0, 4096.0])
    s, _ = step(s, _hold(params, s), params, _rng())
    # 2 s reporting delay in a 10 s step: 80 % of the touched free pages go back.
    np.testing.assert_allclose(s.untouched, [[0.8 * 3840.0, 0.8 * 3840.0]])
    np.testing.assert_allclose(consumed_mib(s, params), [[4096.0 - 3072.0] * 2])


def _rng():
    return np.random.default_rng(1)


def _hold(params, s):
    """The action that keeps each guest's current allocation target and all vCPUs."""
    span = params.max_mib - params.min_mib
    mem = 2.0 * (s.alloc_target - params.min_mib) / span - 1.0
    return np.concatenate([mem, np.ones_like(mem)], axis=1)
