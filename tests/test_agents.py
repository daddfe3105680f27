"""Baseline schedulers: interface, actions, rules, and the sanity ordering of BalloonBench."""

from __future__ import annotations

import numpy as np
import pytest

from balloon_gym import BALLOONBENCH_V1, BalloonVectorEnv
from balloon_gym.agents import (
    AGENTS,
    CLASSIC_AGENTS,
    AgentSpecError,
    Clairvoyant,
    EsxIdleTax,
    Mom,
    Policy,
    make_agent,
)
from balloon_gym.agents.base import memory_action, share_fill, split_observation
from balloon_gym.agents.esx import idle_tax_allocation
from balloon_gym.core import GUEST_FEATURES, HOST_FEATURES, workload
from balloon_gym.core.privileged import true_demand
from balloon_gym.evaluation import evaluation_seeds, run_batch

SEEDS = evaluation_seeds(3)
STEPS = 120
TOLERANCE = 1e-3
"""Clairvoyant may trail a baseline by at most this much mean score (0.1 % of throughput):
where a baseline already reaches the optimum (e.g. esx_idle_tax on idle-tax) the two tie up to
the first step's unavoidable faults."""


def _env(scenario: str, num_envs: int = 3, steps: int | None = 5) -> BalloonVectorEnv:
    return BalloonVectorEnv(num_envs=num_envs, scenario=scenario, max_episode_steps=steps)


@pytest.fixture(scope="module")
def bench() -> dict[tuple[str, str], float]:
    """Mean score of every agent on every scenario, 3 seeds x 120 steps (about 8 s)."""
    scores = {}
    for scenario in BALLOONBENCH_V1:
        for name in AGENTS:
            result = run_batch(lambda env, n=name: make_agent(n, env), scenario, SEEDS, STEPS)
            scores[(scenario, name)] = float(result.metrics["score"].mean())
    return scores


# --- interface ------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", BALLOONBENCH_V1)
def test_actions_in_space_for_every_agent(scenario: str) -> None:
    env = _env(scenario)
    for name in AGENTS:
        obs, _ = env.reset(seed=0)
        policy = make_agent(name, env)
        assert isinstance(policy, Policy)
        state, start = None, np.ones(env.num_envs, dtype=bool)
        for _ in range(3):
            actions, state = policy.predict(obs, state=state, episode_start=start)
            assert actions.shape == env.action_space.shape, name
            assert np.isfinite(actions).all(), name
            assert env.action_space.contains(actions.astype(np.float32)), name
            obs, *_ = env.step(actions)
            start[:] = False


def test_rule_policies_accept_a_single_observation() -> None:
    env = _env("diurnal", num_envs=1)
    obs, _ = env.reset(seed=0)
    for name in (*CLASSIC_AGENTS, "random"):
        action, _ = make_agent(name, env).predict(obs[0])
        assert action.shape == env.single_action_space.shape


def test_split_observation_names_and_units() -> None:
    env = _env("steady-overcommit", num_envs=2)
    obs, _ = env.reset(seed=0)
    f = split_observation(obs, env.max_guests)
    assert set(f) == {n for n, _ in GUEST_FEATURES} | {n for n, _ in HOST_FEATURES}
    p = env.batch.params
    assert f["present"].shape == (2, env.max_guests)
    assert f["host_capacity"].shape == (2, 1)
    np.testing.assert_allclose(f["mem_size"], p.mem_mib / p.host_mem_mib, rtol=1e-6)
    np.testing.assert_allclose(f["min"], p.min_mib / p.mem_mib, rtol=1e-6)
    np.testing.assert_allclose(f["host_capacity"], p.host_target_mib / p.host_mem_mib, rtol=1e-6)
    with pytest.raises(ValueError, match="expected"):
        split_observation(obs[:, :-1], env.max_guests)


def test_memory_action_inverts_the_env_mapping() -> None:
    env = _env("steady-overcommit", num_envs=1)
    obs, _ = env.reset(seed=0)
    f = split_observation(obs, env.max_guests)
    want = f["min"] + 0.3 * (f["max"] - f["min"])
    a = memory_action(want, f)
    np.testing.assert_allclose(a, -0.4, atol=1e-6)


def test_make_agent_rejects_unknown_and_trained_specs() -> None:
    env = _env("idle-tax")
    with pytest.raises(AgentSpecError, match="unknown agent 'nope'"):
        make_agent("nope", env)
    with pytest.raises(AgentSpecError, match=r"policy\.json: missing"):
        make_agent("ppo:runs/x", env)


# --- rules ----------------------------------------------------------------------------


def test_share_fill_fills_capacity_within_clamps() -> None:
    w = np.array([[1.0, 2.0, 1.0]])
    lo = np.array([[1.0, 1.0, 3.0]])
    hi = np.array([[2.0, 10.0, 10.0]])
    x = share_fill(w, lo, hi, np.array([[9.0]]), np.ones((1, 3), bool))
    np.testing.assert_allclose(x.sum(), 9.0, atol=1e-9)
    assert (x >= lo - 1e-12).all() and (x <= hi + 1e-12).all()
    np.testing.assert_allclose(x, [[2.0, 4.0, 3.0]], atol=1e-9)


def test_idle_tax_closed_form() -> None:
    """Two equal-share guests; the idle one has 10 units active, the busy one all of its."""
    shares = np.array([[0.5, 0.5]])
    active = np.array([[10.0, 100.0]])
    lo, hi = np.full((1, 2), 0.0), np.full((1, 2), 100.0)
    cap, mask = np.array([[100.0]]), np.ones((1, 2), bool)
    no_tax = idle_tax_allocation(shares, active, lo, hi, cap, mask, tax_rate=0.0)
    np.testing.assert_allclose(no_tax, [[50.0, 50.0]], atol=1e-6)
    # tau = 0.75, k = 4: busy P = x, idle P = 10 + (x - 10) / 4; sum 100 -> x = 74
    taxed = idle_tax_allocation(shares, active, lo, hi, cap, mask, tax_rate=0.75)
    np.testing.assert_allclose(taxed, [[26.0, 74.0]], atol=1e-6)


def test_static_sends_the_same_targets_every_step() -> None:
    env = _env("diurnal", steps=20)
    obs, _ = env.reset(seed=1)
    policy = make_agent("static", env)
    first, state = policy.predict(obs, episode_start=np.ones(env.num_envs, bool))
    for _ in range(10):
        obs, *_ = env.step(first)
        again, state = policy.predict(obs, state=state, episode_start=np.zeros(3, bool))
        np.testing.assert_array_equal(again, first)


def test_mom_shrinks_at_most_five_percent_under_pressure() -> None:
    env = _env("steady-overcommit", num_envs=1)
    obs, _ = env.reset(seed=0)
    f = split_observation(obs, env.max_guests)
    f["host_free"] = np.full_like(f["host_free"], 0.10)  # pressure: below 20 % free
    f["free"] = f["usable"] * 0.5  # lots of guest-free memory: the floor does not bind
    alloc, _ = Mom(env.max_guests).allocate(f)
    np.testing.assert_allclose(alloc, f["usable"] * 0.95, rtol=1e-9)
    f["host_free"] = np.full_like(f["host_free"], 0.30)  # no pressure: grow 5 %
    alloc, _ = Mom(env.max_guests).allocate(f)
    grow = np.minimum(f["usable"] * 1.05, f["max"])
    expect = np.where(f["usable"] < f["max"], np.maximum(grow, f["usable"] * 0.7), alloc)
    np.testing.assert_allclose(alloc, expect, rtol=1e-9)


def test_esx_tax_rate_is_validated() -> None:
    with pytest.raises(ValueError, match="tax_rate"):
        EsxIdleTax(2, tax_rate=1.0)


# --- clairvoyant's privileged channel ----------------------------------------------------


def test_clairvoyant_refuses_to_act_unbound() -> None:
    env = _env("idle-tax")
    obs, _ = env.reset(seed=0)
    policy = make_agent("clairvoyant", (env.single_observation_space, env.single_action_space))
    with pytest.raises(RuntimeError, match="privileged"):
        policy.predict(obs)
    policy.bind(env.batch)
    actions, _ = policy.predict(obs)
    assert actions.shape == env.action_space.shape


def test_clairvoyant_peek_sees_the_next_step_exactly_and_leaves_the_env_alone() -> None:
    env = _env("bursty", num_envs=4, steps=60)
    obs, _ = env.reset(seed=3)
    policy = Clairvoyant(env.max_guests, source=env)
    twin = _env("bursty", num_envs=4, steps=60)
    twin.reset(seed=3)
    for _ in range(40):
        uniforms = policy._next_uniforms(env.batch.params.guest_mask.shape)
        _, predicted = workload.advance(env.batch.state, env.batch.params, uniforms)
        actions, _ = policy.predict(obs)
        obs, *_ = env.step(actions)
        twin.step(actions)
        realised = true_demand(env.batch.state, env.batch.params)
        np.testing.assert_allclose(predicted.anon_mib, realised.anon_mib, rtol=1e-12)
    # peeking never advanced the env's generator: the twin (never peeked at) is identical
    for a, b in zip(env.batch.state, twin.batch.state, strict=True):
        np.testing.assert_array_equal(a, b)


# --- the sanity ordering of BalloonBench ------------------------------------------------


#: Where the clairvoyant heuristic is known to be beaten, and by how much at most. On v1's
#: idle-tax the guest LRU evicts some of the idle guest's cold page cache at the allocation
#: the clairvoyant leaves it, while esx_idle_tax's deeper early balloon pushes more cold anon
#: into swap for good: esx_idle_tax scores 0.003 higher. The clairvoyant is a privileged
#: heuristic, not a ceiling.
KNOWN_GAPS = {"idle-tax": 0.005}


@pytest.mark.slow
def test_clairvoyant_is_the_top_on_every_scenario(bench: dict) -> None:
    for scenario in BALLOONBENCH_V1:
        top = bench[(scenario, "clairvoyant")]
        tolerance = KNOWN_GAPS.get(scenario, TOLERANCE)
        for name in AGENTS:
            assert top >= bench[(scenario, name)] - tolerance, (scenario, name, top)


@pytest.mark.slow
def test_esx_idle_tax_beats_proportional_share_on_idle_tax(bench: dict) -> None:
    assert bench[("idle-tax", "esx_idle_tax")] > bench[("idle-tax", "proportional_share")] + 0.1


@pytest.mark.slow
def test_random_is_beaten_by_every_rule_on_average(bench: dict) -> None:
    def mean(name: str) -> float:
        return float(np.mean([bench[(s, name)] for s in BALLOONBENCH_V1]))

    for name in CLASSIC_AGENTS:
        assert mean(name) > mean("random"), name
