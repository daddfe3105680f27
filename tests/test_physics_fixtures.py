"""Hand-computed numbers for throughput, every reward term, every stall cost and the workload.

The two-guest fixture of ``tests/test_core_mechanisms.py`` (4096 MiB guests, kernel 256 MiB,
min 1024 MiB, guest swap 1024 MiB, dt = 10 s), with every rate that enters a number set here, so
that each expected value below follows from the arithmetic in its comment. These tests pin the
physics through the numpy core alone (no second backend).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from balloon_gym.config import parse_scenario
from balloon_gym.core import (
    balloon,
    cpu,
    guest,
    params_from_scenario,
    perf,
    reset,
    reward,
    step,
    workload,
)
from balloon_gym.core.state import State

DT = 10.0


def _scenario(host=None, reward_cfg=None, a=None, b=None, **guest_overrides):
    guest = {
        "mem_mib": 4096.0,
        "min_mib": 1024.0,
        "kernel_mib": 256.0,
        "swap_mib": 1024.0,
        "swap_out_mib_s": 10.0,  # 100 MiB a step
        "swap_in_mib_s": 10.0,  # 100 MiB a step
        "cache_reclaim_mib_s": 100.0,
        "vcpus": 4,
        "fault_s": 1e-4,
        "vcpu_change_per_step": 2,
        "vcpu_change_cost_s": 0.5,
        "driver": {"alloc_mib_s": 200.0, "free_mib_s": 50.0, "max_request_mib_s": 100.0},
        "workload": {"anon_mib": 0.0, "cache_mib": 0.0, "cpu_vcpus": 0.0, "touch_mib_s": 0.0},
    }
    guest.update(guest_overrides)
    host_cfg = {"mem_mib": 10000.0, "reserved_mib": 0.0, "pcpus": 4.0, "sampling": False}
    host_cfg.update(host or {})
    return parse_scenario(
        {
            "name": "fixture",
            "dt_s": DT,
            "host": host_cfg,
            "reward": reward_cfg or {},
            "guests": [{**guest, "name": "a", **(a or {})}, {**guest, "name": "b", **(b or {})}],
        }
    )


LAYOUT = {  # kernel 256 + anon 3140 + cache 300 + free 400 = 4096, balloon 0, all touched
    "anon_res": [3140.0, 3140.0],
    "anon_swap": [0.0, 0.0],
    "cache": [300.0, 300.0],
    "free": [400.0, 400.0],
    "untouched": [0.0, 0.0],
    "balloon": [0.0, 0.0],
    "balloon_target": [0.0, 0.0],
    "alloc_target": [4096.0, 4096.0],
}


def _state(params, **fields) -> State:
    s = reset(params, np.random.default_rng(0))
    fields = {**LAYOUT, **fields}
    return s._replace(**{k: np.asarray(v, dtype=float).reshape(1, -1) for k, v in fields.items()})


def _action(mem=(1.0, 1.0), vcpu=(1.0, 1.0)):
    """Memory actions (+1: allocation max, balloon 0), then vCPU actions (+1: all active)."""
    return np.array([[*mem, *vcpu]])


# --- the host's projection of the targets ----------------------------------------------------

# Host 7000 MiB, no reserve: the scheduler may hand out 7000 * 0.94 = 6580 MiB. Both guests ask
# for 4096 (span 3072 above min 1024). A guest's claim is what it consumes plus what the host
# swapped out of it plus 2 % of its memory (81.92 MiB) of growth head room. Guest b holds all
# of its 4096 MiB; guest a consumes kernel 256 + anon 2000 + the touched part of free 1840.
PROJECTION_A = {"anon_res": [2000.0, 3140.0], "free": [1840.0, 400.0], "cache": [0.0, 300.0]}
HEADROOM = 0.02 * 4096.0


@pytest.mark.parametrize(
    ("untouched_a", "expected"),
    [
        # a consumes 2000: 2081.92 + min(4096, 4177.92) = 6177.92 <= 6580 fits: the targets
        # stay as asked (the old rule scaled both to 1024 + 3072 * (6580 - 2048) / 6144 = 3290).
        (2096.0, 4096.0),
        # a consumes 3000: 3081.92 + 4096 > 6580. Scale s with
        # min(1024 + 3072 s, 3081.92) + min(1024 + 3072 s, 4177.92) = 6580: a's claim binds
        # from s = 2057.92 / 3072 on, so 3081.92 + 1024 + 3072 s = 6580 and both targets are
        # 1024 + 3072 s = 6580 - 3081.92 = 3498.08 (a keeps head room above its claim).
        (1096.0, 6580.0 - 3000.0 - HEADROOM),
    ],
)
def test_the_host_projects_targets_only_as_far_as_claimed_memory_exceeds_it(untouched_a, expected):
    params = params_from_scenario(_scenario(host={"mem_mib": 7000.0}))
    s = _state(params, **PROJECTION_A, untouched=[untouched_a, 0.0])
    alloc, balloon_target, _ = balloon.targets(s, np.ones((1, 2)), np.ones((1, 2)), params)
    np.testing.assert_allclose(alloc, [[expected, expected]])
    np.testing.assert_allclose(balloon_target, [[4096.0 - expected] * 2])


def test_the_projection_counts_host_swapped_pages_and_leaves_targets_that_fit():
    params = params_from_scenario(_scenario(host={"mem_mib": 7000.0}))
    # a consumes 3000 as above; 500 of b's 4096 pages are in host swap: still b's claim.
    s = _state(params, **PROJECTION_A, untouched=[1096.0, 0.0], host_swap=[0.0, 500.0])
    alloc, _, _ = balloon.targets(s, np.ones((1, 2)), np.ones((1, 2)), params)
    np.testing.assert_allclose(alloc, [[6580.0 - 3000.0 - HEADROOM] * 2])
    # Asked: a 2048 (span 1024), b 4096. Claims 3081.92 and 4177.92 are both above the targets
    # for s near 1: 1024 + 1024 s + 1024 + 3072 s = 6580 gives s = 4532 / 4096 > 1; so the
    # asked targets (sum 6144 <= 6580) stand.
    two = np.array([[2.0 * (2048.0 - 1024.0) / 3072.0 - 1.0, 1.0]])
    alloc, _, _ = balloon.targets(s, two, np.ones((1, 2)), params)
    np.testing.assert_allclose(alloc, [[2048.0, 4096.0]])


# --- throughput -------------------------------------------------------------------------------


def test_throughput_is_cpu_times_time_run_times_memory_factor():
    params = params_from_scenario(_scenario())
    cpu_factor = np.array([[0.5, 1.0]])
    stall_s = np.array([[10.0, 2.5]])  # mem_factor = 1 / (1 + stall / dt): 1/2 and 1/1.25
    lost_s = np.array([[2.0, 0.0]])  # time run 1 - lost / dt: 0.8 and 1
    tp = perf.throughput(cpu_factor, stall_s, lost_s, params)
    np.testing.assert_allclose(tp, [[0.5 * 0.5 * 0.8, 0.8]], rtol=1e-15)
    misses = perf.sla_misses(tp, params._replace(sla=np.array([[0.5, 0.5]])))
    assert misses.tolist() == [[True, False]]


def test_a_step_with_no_stall_and_enough_cpu_has_full_throughput():
    wl = {"anon_mib": 3140.0, "cache_mib": 300.0, "cpu_vcpus": 1.0, "touch_mib_s": 0.0}
    params = params_from_scenario(_scenario(workload=wl))
    s, out = step(_state(params), _action(), params, np.random.default_rng(1))
    assert s.stall_s.tolist() == [[0.0, 0.0]] and s.throughput.tolist() == [[1.0, 1.0]]
    assert s.cpu_alloc.tolist() == [[1.0, 1.0]]
    assert out.reward[0] == 1.0 - 0.0  # no penalty


def test_cpu_contention_throughput():
    # Two guests want 4 vCPUs each on 4 pCPUs: 2 each, overcommit O = 4 / 2 = 2, so the
    # lock-holder loss is L = lhp_penalty = 0.5: smp_eff 1 / 1.5, throughput 2/4 * 2/3 = 1/3.
    params = params_from_scenario(_scenario(lhp_penalty=0.5, workload={"cpu_vcpus": 4.0,
                                            "anon_mib": 3140.0, "cache_mib": 300.0,
                                            "touch_mib_s": 0.0}))  # fmt: skip
    s, out = step(_state(params), _action(), params, np.random.default_rng(1))
    np.testing.assert_allclose(s.throughput, [[1 / 3, 1 / 3]], rtol=1e-15)
    np.testing.assert_allclose(out.parts["score"], [1 / 3], rtol=1e-15)


@pytest.mark.parametrize(
    ("alloc", "runnable", "expect_loss"),
    [
        (4.0, 4.0, 0.0),  # O = 1: no loss
        (4.0, 2.0, 0.0),  # O < 1: more pCPU time than runnable vCPUs, no loss
        (4.0, 6.0, 0.5 * 0.5),  # O = 1.5: half-way to L(2) = 0.5
        (2.0, 4.0, 0.5),  # O = 2: lhp_penalty
        (2.0, 5.0, 0.5 + 0.5 * (1.5 - 0.5)),  # O = 2.5: half-way from L(2) to L(3) = 1.5
        (1.0, 3.0, 1.5),  # O = 3: lhp_penalty_3x
        (1.0, 8.0, 1.5),  # O = 8: held at L(3)
        (0.0, 0.0, 0.0),  # nothing runnable
    ],
)
def test_lhp_loss_is_piecewise_linear_in_overcommit(alloc, runnable, expect_loss):
    loss = cpu.lhp_loss(np.array([alloc]), np.array([runnable]), 0.5, 1.5)
    np.testing.assert_allclose(loss, [expect_loss], rtol=1e-12, atol=1e-15)
    # demand = runnable: served = min(1, alloc / demand) / (1 + L)
    smp_eff, factor = cpu.served(np.array([alloc]), np.array([runnable]),
                                 np.array([runnable]), 0.5, 1.5)  # fmt: skip
    np.testing.assert_allclose(smp_eff, [1.0 / (1.0 + expect_loss)], rtol=1e-12)
    expect = 1.0 if runnable == 0 else min(1.0, alloc / runnable) / (1.0 + expect_loss)
    np.testing.assert_allclose(factor, [expect], rtol=1e-12)


@pytest.mark.parametrize(
    ("parallelism", "expect"),
    [("serial", (0.0, 0.0)), ("multiprocess", (0.4, 1.0)), ("lock_heavy", (0.5, 1.5))],
)
def test_parallelism_sets_the_calibrated_lhp_losses(parallelism, expect):
    # docs/calibration.md section 6: single-threaded 0; multi-process 0.4 at 2x (1.0 at 3x,
    # extrapolated); lock-heavy parallel, PV qspinlock, 0.5 at 2x and 1.5 at 3x (ebizzy).
    wl = {"anon_mib": 0.0, "cache_mib": 0.0, "cpu_vcpus": 0.0, "parallelism": parallelism}
    params = params_from_scenario(_scenario(workload=wl))
    assert params.lhp_penalty[0].tolist() == [expect[0]] * 2
    assert params.lhp_penalty_3x[0].tolist() == [expect[1]] * 2
    # A guest's own value wins over its workload's kind.
    own = params_from_scenario(_scenario(workload=wl, lhp_penalty=4.0, lhp_penalty_3x=5.0))
    assert own.lhp_penalty[0, 0] == 4.0 and own.lhp_penalty_3x[0, 0] == 5.0


def test_a_serial_guest_loses_only_its_fair_share():
    # 4 runnable vCPUs of independent single-threaded tasks on 2 pCPUs: served 2/4, no more loss.
    wl = {"cpu_vcpus": 4.0, "anon_mib": 3140.0, "cache_mib": 300.0, "touch_mib_s": 0.0,
          "parallelism": "serial"}  # fmt: skip
    params = params_from_scenario(_scenario(workload=wl))
    s, _ = step(_state(params), _action(), params, np.random.default_rng(1))
    np.testing.assert_allclose(s.throughput, [[0.5, 0.5]], rtol=1e-15)


# --- reward terms -----------------------------------------------------------------------------


REWARD_CFG = {"w_oom": 2.0, "w_host_swap_gib": 0.5, "w_sla": 0.25}


@pytest.mark.parametrize(
    ("name", "base"),
    [
        ("weighted_throughput", (1000 * 0.5 + 3000 * 1.0) / 4000),  # share-weighted mean
        ("mean_throughput", (0.5 + 1.0) / 2),
        ("sla", 1.0 - 1 / 2),  # one of two guests below its SLA
    ],
)
def test_every_reward_term(name, base):
    cfg = _scenario(reward_cfg={"name": name, **REWARD_CFG}, a={"shares": 1000.0},
                    b={"shares": 3000.0}, sla=0.6)  # fmt: skip
    params = params_from_scenario(cfg)
    tp = np.array([[0.5, 1.0]])
    oom = np.array([[True, False]])
    misses = perf.sla_misses(tp, params)
    r, parts = reward.compute(tp, oom, misses, np.array([3072.0]), params)
    # penalty: w_oom * 1 OOM + w_host_swap_gib * 3 GiB + w_sla * 1 miss = 2 + 1.5 + 0.25
    assert parts["score"][0] == 0.875
    assert parts["mean_throughput"][0] == 0.75
    assert parts["sla_ok_frac"][0] == 0.5
    assert parts["ooms"][0] == 1 and parts["sla_misses"][0] == 1
    assert parts["host_swap_gib"][0] == 3.0
    assert parts["penalty"][0] == 2.0 + 1.5 + 0.25
    assert r[0] == base - 3.75


def test_host_swap_out_is_penalised_in_the_step_reward():
    # Host 8000 MiB, both guests fully touched (4096 + 3960 MiB consumed): free -56 MiB, the low
    # state. The host swaps until free is back at the soft line (4 % = 320 MiB): 376 MiB, capped
    # by its rate of 20 MiB/s * 10 s = 200 MiB.
    cfg = _scenario(host={"mem_mib": 8000.0, "swap_out_mib_s": 20.0},
                    reward_cfg={"w_host_swap_gib": 1.0, "w_oom": 0.0},
                    workload={"anon_mib": 0.0, "cache_mib": 0.0, "cpu_vcpus": 0.0,
                              "touch_mib_s": 0.0})  # fmt: skip
    params = params_from_scenario(cfg)
    s0 = _state(params, untouched=[0.0, 136.0], alloc_target=[3000.0, 3000.0])
    s, out = step(s0, _action(), params, np.random.default_rng(1))
    assert s.host_swap_out[0] == pytest.approx(200.0)
    assert out.parts["host_swap_gib"][0] == pytest.approx(200.0 / 1024.0)
    assert out.parts["penalty"][0] == pytest.approx(200.0 / 1024.0)
    assert out.reward[0] == pytest.approx(out.parts["score"][0] - 200.0 / 1024.0)


# --- stall costs ------------------------------------------------------------------------------


def test_a_naive_driver_s_failed_request_stalls_the_guest():
    # Guest a: no free memory or cache, a naive driver asked for 1000 MiB (100 MiB/s * 10 s);
    # the guest can only swap out 100 MiB a step: 900 MiB in vain at 0.02 s/MiB = 18 s.
    full = {"anon_res": [3840.0, 3840.0], "cache": [0.0, 0.0], "free": [0.0, 0.0]}
    cfg = _scenario(driver={"rate_adaptive": False, "max_request_mib_s": 100.0,
                            "stall_s_per_mib": 0.02, "alloc_mib_s": 200.0},
                    workload={"anon_mib": 3840.0, "cache_mib": 0.0, "cpu_vcpus": 0.0,
                              "touch_mib_s": 0.0, "wss_frac": 0.0})  # fmt: skip
    params = params_from_scenario(cfg)
    s, _ = step(_state(params, **full), _action(mem=(-1.0, 1.0)), params, np.random.default_rng(1))
    assert s.balloon[0, 0] == 100.0 and s.balloon_moved[0, 0] == 100.0
    assert s.alloc_stall_s[0, 0] == pytest.approx(18.0)
    # The 100 MiB swapped out for the balloon stay in guest swap (none of it is hot): no fault.
    assert s.anon_swap[0, 0] == 100.0 and s.fault_pages[0, 0] == 0.0
    assert s.stall_s[0, 0] == pytest.approx(18.0)
    assert s.throughput[0, 0] == pytest.approx(1.0 / (1.0 + 18.0 / DT))
    assert s.stall_s[0, 1] == 0.0 and s.throughput[0, 1] == 1.0


def test_guest_major_faults_stall_at_fault_s_per_page():
    # Guest a: 100 MiB of its hot footprint in guest swap; swap-in 100 MiB a step.
    # 100 MiB * 256 pages * 1e-4 s = 2.56 s.
    cfg = _scenario(workload={"anon_mib": 3140.0, "wss_frac": 1.0, "cache_mib": 300.0,
                              "cpu_vcpus": 0.0, "touch_mib_s": 0.0})  # fmt: skip
    params = params_from_scenario(cfg)
    s0 = _state(params, anon_res=[3040.0, 3140.0], anon_swap=[100.0, 0.0], free=[500.0, 400.0])
    s, _ = step(s0, _action(), params, np.random.default_rng(1))
    assert s.fault_pages[0].tolist() == [25600.0, 0.0]
    assert s.swap_in[0].tolist() == [100.0, 0.0]
    assert s.stall_s[0, 0] == pytest.approx(2.56, rel=1e-12)
    assert s.throughput[0, 0] == pytest.approx(1.0 / 1.256, rel=1e-12)


def test_page_cache_misses_are_re_read_and_stall():
    # Guest a: 3840 MiB of cold anon fill its 3840 usable MiB; it wants 300 MiB of page cache,
    # half of it hot. LRU balance: hot anon 0, hot cache 150, room 3690 for 3840 + 150 cold MiB:
    # evict 300, anon's share 60 * 3840 / (60 * 3840 + 140 * 150) = 230400 / 251400. This step
    # the guest swaps out 100 MiB (its rate) of cold anon for cache: cache 100, so 50 MiB of hot
    # cache (all re-read) and 150 MiB of cold cache (2 % re-read) are missing:
    # (50 + 3) * 256 = 13568 pages at 1e-4 s.
    cfg = _scenario(workload={"anon_mib": 3840.0, "wss_frac": 0.0, "cache_mib": 300.0,
                              "cpu_vcpus": 0.0, "touch_mib_s": 0.0})  # fmt: skip
    params = params_from_scenario(cfg)
    s0 = _state(params, anon_res=[3840.0, 3840.0], cache=[0.0, 0.0], free=[0.0, 0.0])
    s, _ = step(s0, _action(), params, np.random.default_rng(1))
    np.testing.assert_allclose(s.cache, [[100.0, 100.0]], rtol=1e-12)
    np.testing.assert_allclose(s.anon_swap, [[100.0, 100.0]], rtol=1e-12)
    np.testing.assert_allclose(s.swap_out, [[100.0, 100.0]], rtol=1e-12)
    np.testing.assert_allclose(s.cache_fault_pages, [[13568.0, 13568.0]], rtol=1e-12)
    np.testing.assert_allclose(s.anon_fault_pages, [[0.0, 0.0]])
    np.testing.assert_allclose(s.fault_pages, [[13568.0, 13568.0]], rtol=1e-12)
    np.testing.assert_allclose(s.stall_s, [[1.3568, 1.3568]], rtol=1e-12)
    # Two steps on the cache reaches its target 300 * 230400 / 251400 = 274.94 MiB (the cold
    # anon swapped out); only 2 % of the 25.06 missing cold MiB is re-read.
    for _ in range(2):
        s, _ = step(s, _action(), params, np.random.default_rng(1))
    evicted_anon = 300.0 * 230400.0 / 251400.0
    np.testing.assert_allclose(s.cache, [[evicted_anon] * 2], rtol=1e-12)
    np.testing.assert_allclose(s.anon_swap, [[evicted_anon] * 2], rtol=1e-12)
    np.testing.assert_allclose(s.fault_pages, [[(300.0 - evicted_anon) * 0.02 * 256.0] * 2],
                               rtol=1e-12)  # fmt: skip


# --- guest page reclaim by recency (guest.lru_targets, balance_cache, cache_faults) ---------

# anon 3840 (hot 0), cache 300 (hot 150), 3840 usable, 1024 MiB of swap room
LRU = {"anon": 3840.0, "hot": 0.0, "cache_mib": 300.0, "cache_hot_frac": 0.5,
       "usable": 3840.0, "swap_room": 1024.0}  # fmt: skip


@pytest.mark.parametrize(
    ("swappiness", "anon_out"),
    [
        (60.0, 300.0 * 230400.0 / 251400.0),  # 60 * 3840 : 140 * 150
        (0.0, 150.0),  # only cache is scanned: all 150 cold MiB, the other 150 from anon
        (200.0, 300.0),  # only anon is scanned: the cache keeps all 300 MiB
        (100.0, 300.0 * 384000.0 / 399000.0),  # 100 * 3840 : 100 * 150
    ],
)
def test_lru_targets_evict_cold_anon_and_cache_by_swappiness(swappiness, anon_out):
    anon_t, cache_t = guest.lru_targets(**LRU, swappiness=swappiness)
    assert anon_t == pytest.approx(3840.0 - anon_out, rel=1e-12)
    assert cache_t == pytest.approx(anon_out, rel=1e-12)  # usable - anon target


def test_lru_targets_keep_hot_pages_first_and_respect_swap_space():
    # Hot anon 3700 and hot cache 150 do not both fit 3840: the hot anon first, 140 MiB of
    # cache; the 140 cold anon MiB go to swap.
    anon_t, cache_t = guest.lru_targets(**{**LRU, "hot": 3700.0}, swappiness=60.0)
    assert (anon_t, cache_t) == (pytest.approx(3700.0), pytest.approx(140.0))
    # Only 50 MiB of swap room: 50 MiB of cold anon out, the cache keeps 50.
    anon_t, cache_t = guest.lru_targets(**{**LRU, "swap_room": 50.0}, swappiness=60.0)
    assert (anon_t, cache_t) == (pytest.approx(3790.0), pytest.approx(50.0))
    # Everything fits: no eviction, the cache target is all of it.
    anon_t, cache_t = guest.lru_targets(**{**LRU, "anon": 3000.0}, swappiness=60.0)
    assert (anon_t, cache_t) == (3000.0, 300.0)


def test_balance_cache_fills_from_free_then_swaps_cold_anon_within_its_rate():
    # 40 MiB free (10 of them untouched, budget 4): fill 34; then cold anon above its target
    # (3600 - 3500 = 100) goes out for the cache up to its target 250, within the 80 MiB of
    # swap-out left (100 - 20 already used) and 1024 - 0 - 990 = 34 MiB of swap room.
    out = guest.balance_cache(
        cache_mib=300.0, cache_target=250.0, anon_target=3500.0, anon_res=3600.0,
        anon_swap=0.0, cache=100.0, free=40.0, untouched=10.0, budget=4.0, balloon_swap=990.0,
        swap_out=20.0, swap_out_mib=100.0, swap_mib=1024.0,
    )  # fmt: skip
    anon_res, anon_swap, cache, free, untouched, budget, swap_out = out
    assert (free, untouched, budget) == (6.0, 6.0, 0.0)
    assert (anon_res, anon_swap, cache, swap_out) == (3566.0, 34.0, 168.0, 54.0)
    # Cache the workload no longer wants is dropped at once.
    out = guest.balance_cache(100.0, 100.0, 3500.0, 3500.0, 0.0, 300.0, 0.0, 0.0, 0.0, 0.0,
                              0.0, 100.0, 1024.0)  # fmt: skip
    assert (out[2], out[3]) == (100.0, 200.0)


@pytest.mark.parametrize(
    ("cache", "pages"),
    [
        (0.0, (150.0 + 0.02 * 150.0) * 256.0),  # all hot and all cold missing
        (100.0, (50.0 + 0.02 * 150.0) * 256.0),  # resident cache is the hot part first
        (250.0, 0.02 * 50.0 * 256.0),  # hot all resident, 50 cold MiB missing
        (300.0, 0.0),
    ],
)
def test_cache_faults_re_read_all_missing_hot_and_two_percent_of_missing_cold(cache, pages):
    assert guest.cache_faults(300.0, 0.5, cache) == pytest.approx(pages, rel=1e-12)


def test_host_faults_stall_at_the_host_s_fault_s_per_page():
    # Guest b: 384 MiB of its 3840 touched MiB host-swapped; its hot memory 1570 MiB (half of the
    # 3140 MiB footprint) is all resident, so 1570 / 3840 of the host-swapped pages are hit:
    # 157 MiB = 40192 pages at 5e-5 s = 2.0096 s.
    cfg = _scenario(host={"fault_s": 5e-5},
                    workload={"anon_mib": 3140.0, "wss_frac": 0.5, "cache_mib": 300.0,
                              "cpu_vcpus": 0.0, "touch_mib_s": 0.0})  # fmt: skip
    params = params_from_scenario(cfg)
    s, _ = step(_state(params, host_swap=[0.0, 384.0]), _action(), params, np.random.default_rng(1))
    assert s.stall_s[0, 0] == 0.0
    assert s.stall_s[0, 1] == pytest.approx(157.0 * 256 * 5e-5, rel=1e-12)
    assert s.host_swap_in[0] == pytest.approx(157.0, rel=1e-12)  # the host has memory to spare


def test_vcpu_hot_plug_stalls_per_vcpu_changed():
    # vCPU action -1: one active vCPU of 4 -> 3 reserved, at most 2 a step, 0.5 s each.
    params = params_from_scenario(_scenario())
    s, _ = step(_state(params), _action(vcpu=(-1.0, 1.0)), params, np.random.default_rng(1))
    assert s.reserved_vcpus[0].tolist() == [2.0, 0.0]
    assert s.stall_s[0].tolist() == [1.0, 0.0]
    assert s.throughput[0, 0] == 1.0 / 1.1


def test_an_oom_kill_restarts_the_work_after_a_delay_and_a_reload():
    # Footprint 5000 > usable 3840 + swap 1024: killed in step 1. Restart 15 s, hot set
    # 0.2 * 5000 = 1000 MiB re-read at 200 MiB/s in 5 s: 20 s lost, steps 1 and 2 do no work.
    wl = {"anon_mib": 5000.0, "wss_frac": 0.2, "cache_mib": 0.0, "cpu_vcpus": 0.0,
          "touch_mib_s": 0.0, "oom_restart_s": 15.0, "oom_reload_mib_s": 200.0}  # fmt: skip
    params = params_from_scenario(_scenario(workload=wl))
    s, out = step(_state(params), _action(), params, np.random.default_rng(1))
    assert s.oom.all() and out.parts["ooms"][0] == 2
    assert s.lost_s.tolist() == [[DT, DT]] and s.throughput.tolist() == [[0.0, 0.0]]
    assert s.restart_left_s.tolist() == [[5.0, 5.0]] and s.oom_scale.tolist() == [[0.0, 0.0]]
    assert (s.anon_res == 0.0).all() and (s.anon_swap == 0.0).all()  # freed at the kill
    s, out = step(s, _action(), params, np.random.default_rng(1))
    # 5 s of delay, then 5 s re-reading 1000 MiB: the hot set is back at the end of step 2 and
    # the workload wants its full footprint again (no discount): killed again, from the start.
    assert s.lost_s.tolist() == [[DT, DT]] and s.throughput.tolist() == [[0.0, 0.0]]
    assert out.parts["ooms"][0] == 2
    assert s.restart_left_s.tolist() == [[5.0, 5.0]] and s.oom_scale.tolist() == [[0.0, 0.0]]


# --- workload formulas ------------------------------------------------------------------------


def _demand(params, t, burst_on=False, phase_level=1.0, leak=0.0, oom_scale=1.0, offset=0.0):
    g = params.guest_mask.shape

    def full(x, dtype=float):
        return np.full(g, x, dtype=dtype)

    return workload.demand(np.array([t]), full(burst_on, bool), full(phase_level),
                           full(offset), full(leak), full(oom_scale), full(0, np.int64),
                           full(0.0), params=params)  # fmt: skip


DIURNAL = {"anon_mib": 1000.0, "wss_frac": 0.25, "cache_mib": 200.0, "cpu_vcpus": 2.0,
           "touch_mib_s": 1.0, "diurnal_amp": 0.5, "diurnal_period_s": 400.0,
           "burst_mult": 3.0}  # fmt: skip


@pytest.mark.parametrize(
    ("t", "level"),
    [(0, 1.0), (10, 1.5), (30, 0.5)],  # period 40 steps: sin peaks at step 10, dips at 30
)
def test_diurnal_demand(t, level):
    params = params_from_scenario(_scenario(workload=DIURNAL))
    d = _demand(params, t)
    np.testing.assert_allclose(d.anon_mib, 1000.0 * level, rtol=1e-12)
    # wss = wss_frac * anon + touch (1 MiB/s * 10 s), at most anon
    np.testing.assert_allclose(d.wss_mib, 250.0 * level + 10.0, rtol=1e-12)
    np.testing.assert_allclose(d.cache_mib, 200.0 * level, rtol=1e-12)
    np.testing.assert_allclose(d.cpu_vcpus, 2.0 * level, rtol=1e-12)


def test_diurnal_phase_offset_shifts_the_cycle():
    params = params_from_scenario(_scenario(workload=DIURNAL))
    d = _demand(params, 0, offset=0.25)  # a quarter period ahead: the peak
    np.testing.assert_allclose(d.anon_mib, 1500.0, rtol=1e-12)


def test_burst_phase_leak_and_oom_reload_set_the_footprint():
    params = params_from_scenario(_scenario(workload=DIURNAL))
    # t = 0: level 1 * burst 3 * phase 0.5 = 1.5; anon = 1000 * 1.5 + leak 100 = 1600
    d = _demand(params, 0, burst_on=True, phase_level=0.5, leak=100.0)
    np.testing.assert_allclose(d.anon_mib, 1600.0, rtol=1e-12)
    np.testing.assert_allclose(d.wss_mib, 0.25 * 1600.0 + 10.0, rtol=1e-12)
    # Half of the hot set re-read after an OOM kill: the footprint is that half, all hot.
    d = _demand(params, 0, burst_on=True, phase_level=0.5, leak=100.0, oom_scale=0.5)
    np.testing.assert_allclose(d.anon_mib, 0.5 * 410.0, rtol=1e-12)
    np.testing.assert_allclose(d.wss_mib, 0.5 * 410.0, rtol=1e-12)
    np.testing.assert_allclose(d.cache_mib, 300.0, rtol=1e-12)  # leak and OOM: anon only
    np.testing.assert_allclose(d.cpu_vcpus, 3.0, rtol=1e-12)


def test_hot_set_is_capped_by_the_footprint():
    wl = {**DIURNAL, "wss_frac": 1.0, "touch_mib_s": 50.0, "diurnal_amp": 0.0}
    d = _demand(params_from_scenario(_scenario(workload=wl)), 0)
    np.testing.assert_allclose(d.wss_mib, 1000.0)  # min(1000 + 500, 1000)


def test_workload_processes_advance():
    wl = {**DIURNAL, "leak_mib_s": 2.0, "oom_restart_s": 5.0, "oom_reload_mib_s": 50.0,
          "burst_on_s": 100.0, "burst_off_s": 100.0, "phase_mean_s": 100.0,
          "phase_low": 0.5, "phase_high": 1.5}  # fmt: skip
    params = params_from_scenario(_scenario(workload=wl))
    s = _state(params)
    s = s._replace(
        burst_on=np.array([[False, True]]),
        leak=np.array([[5.0, 0.0]]),
        oom_scale=np.array([[0.0, 0.5]]),
        restart_left_s=np.array([[15.0, 0.0]]),
        phase_level=np.array([[1.0, 1.0]]),
    )
    p = 1.0 - math.exp(-0.1)  # an event with mean 100 s within a 10 s step
    # a: u 0.05 < p -> a burst starts, a phase change to 0.5 + 0.25 * 1; b: 0.05 < p -> it ends
    uniforms = np.array([[[0.05, 0.05]], [[0.05, 0.5]], [[0.25, 0.25]]])
    process, _ = workload.advance(s, params, uniforms)
    assert process["burst_on"].tolist() == [[True, False]]
    np.testing.assert_allclose(process["phase_level"], [[0.75, 1.0]])
    assert p > 0.05
    np.testing.assert_allclose(process["leak"], [[25.0, 20.0]])  # + 2 MiB/s * 10 s
    # a: 10 of its 15 s of restart delay gone, nothing re-read yet; b: half its hot set (under
    # 300 MiB at level < 1.2) still to re-read at 50 MiB/s, under 3 s: back within the step.
    np.testing.assert_allclose(process["restart_left_s"], [[5.0, 0.0]])
    np.testing.assert_allclose(process["oom_scale"], [[0.0, 1.0]])
