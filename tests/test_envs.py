"""Gymnasium adapters: registration, checkers, single vs vector equivalence, autoreset, errors.

Every test here drives the public API (``gymnasium.make``, ``make_vec``, ``BalloonEnv``,
``BalloonVectorEnv``) except the purity test, which calls the core directly.
"""

from __future__ import annotations

import copy
import re
import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers import TimeLimit
from gymnasium.wrappers.vector import RecordEpisodeStatistics
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import balloon_gym
from balloon_gym import BalloonEnv, BalloonVectorEnv, ConfigError, core
from balloon_gym.config import ConfigTypeError
from balloon_gym.core.params import params_from_scenario, repeat_params
from balloon_gym.envs import batch as batch_module
from balloon_gym.envs.batch import BACKENDS, MAX_NUM_ENVS
from balloon_gym.scenarios import env_id, list_scenarios, load_scenario

SCENARIOS = list_scenarios()
RANDOM_SCENARIOS = ["bursty", "driver-outage", "diurnal"]  # random workloads or outages
N_GUEST_FEATURES = len(core.GUEST_FEATURES)

ACCOUNTING_KEYS = (
    "kernel_mib",
    "anon_resident_mib",
    "cache_mib",
    "free_mib",
    "balloon_mib",
    "mem_mib",
    "consumed_mib",
    "host_free_mib",
    "host_mem_mib",
    "host_reserved_mib",
)


def random_actions(space, n, seed=0):
    """``n`` actions uniform in the Box, from their own generator (independent of the env)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(space.low, space.high, size=(n, *space.shape)).astype(space.dtype)


def guest_block(obs, max_guests):
    """The per-guest part of a batch of observations, ``(num_envs, max_guests, features)``."""
    return obs[:, : max_guests * N_GUEST_FEATURES].reshape(len(obs), max_guests, -1)


def rollout(venv, seed, steps, action_seed=0):
    """Observations and rewards of ``steps`` random-action steps after ``reset(seed)``."""
    obs, _ = venv.reset(seed=seed)
    observations, rewards = [obs], []
    for action in random_actions(venv.action_space, steps, action_seed):
        obs, reward, _, _, _ = venv.step(action)
        observations.append(obs)
        rewards.append(reward)
    return np.array(observations), np.array(rewards)


# --- 1. checkers ------------------------------------------------------------------------------


@pytest.mark.parametrize("eid", balloon_gym.ENV_IDS)
def test_gymnasium_env_checker_passes(eid):
    env = gymnasium.make(eid)
    # No warning is exempted: gymnasium 1.x emits no deprecation warning for this env, so any
    # warning the checker raises is a real finding.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gymnasium_check_env(env.unwrapped)


@pytest.mark.parametrize("eid", balloon_gym.ENV_IDS)
def test_sb3_env_checker_passes_without_warnings(eid):
    env = gymnasium.make(eid)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb3_check_env(env.unwrapped, warn=True)


# --- 2. registration --------------------------------------------------------------------------


def test_every_shipped_scenario_is_registered_under_its_camel_case_id():
    assert [env_id(name) for name in SCENARIOS] == balloon_gym.ENV_IDS
    assert env_id("idle-tax") == "BalloonGym/IdleTax-v1"
    assert env_id("cpu-contention") == "BalloonGym/CpuContention-v1"
    for name, eid in zip(SCENARIOS, balloon_gym.ENV_IDS, strict=True):
        assert re.fullmatch(r"BalloonGym/([A-Z][a-z0-9]*)+-v1", eid), eid
        assert eid.removeprefix("BalloonGym/").removesuffix("-v1").lower() == name.replace("-", "")


@pytest.mark.parametrize("eid", balloon_gym.ENV_IDS)
def test_spec_has_entry_point_and_vector_entry_point(eid):
    spec = gymnasium.spec(eid)
    assert spec.entry_point == "balloon_gym.envs.single:BalloonEnv"
    assert spec.vector_entry_point == "balloon_gym.envs.vector:BalloonVectorEnv"
    assert env_id(spec.kwargs["scenario"]) == eid


@pytest.mark.parametrize("eid", balloon_gym.ENV_IDS)
def test_make_builds_the_registered_scenario(eid):
    env = gymnasium.make(eid)
    assert isinstance(env.unwrapped, BalloonEnv)
    assert env_id(env.unwrapped.scenario.name) == eid
    obs, _ = env.reset(seed=0)
    assert obs in env.observation_space
    env.step(env.action_space.sample())


def test_register_envs_is_idempotent():
    assert balloon_gym.register_envs() == balloon_gym.ENV_IDS


# --- 3. single env == vector env of one ----------------------------------------------------


@pytest.mark.parametrize("eid", balloon_gym.ENV_IDS)
def test_make_vec_of_one_matches_make_step_for_step_over_two_episodes(eid):
    steps = 30
    # make(): max_episode_steps is make()'s own argument and becomes a TimeLimit wrapper.
    env = gymnasium.make(eid, max_episode_steps=steps)
    assert isinstance(env, TimeLimit) and env._max_episode_steps == steps
    # make_vec(): extra kwargs go to the vector entry point, whose batch truncates itself.
    venv = gymnasium.make_vec(
        eid, num_envs=1, vectorization_mode="vector_entry_point", max_episode_steps=steps
    )
    assert isinstance(venv, BalloonVectorEnv)
    assert venv.batch.max_steps.tolist() == [steps]

    actions = random_actions(env.action_space, 2 * steps, seed=1)
    obs, _ = env.reset(seed=11)
    vobs, _ = venv.reset(seed=11)
    np.testing.assert_array_equal(vobs[0], obs)
    for episode in range(2):
        if episode == 1:
            # NEXT_STEP: the vector env resets in the step after truncation (action ignored,
            # reward 0); the single env needs an explicit reset() without a seed.
            obs, _ = env.reset()
            vobs, vrew, vterm, vtrunc, _ = venv.step(actions[0][None])
            np.testing.assert_array_equal(vobs[0], obs)
            assert (vrew[0], vterm[0], vtrunc[0]) == (0.0, False, False)
        for t in range(steps):
            action = actions[episode * steps + t]
            obs, rew, term, trunc, _ = env.step(action)
            vobs, vrew, vterm, vtrunc, _ = venv.step(action[None])
            np.testing.assert_array_equal(vobs[0], obs, err_msg=f"episode {episode} step {t}")
            assert vrew[0] == rew
            assert (bool(vterm[0]), bool(vtrunc[0])) == (term, trunc)
            assert trunc == (t == steps - 1)


# --- 4. determinism --------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", [*RANDOM_SCENARIOS, "large"])
def test_vector_rollouts_are_reproducible_from_the_seed(scenario):
    obs_a, rew_a = rollout(BalloonVectorEnv(num_envs=8, scenario=scenario), seed=7, steps=50)
    obs_b, rew_b = rollout(BalloonVectorEnv(num_envs=8, scenario=scenario), seed=7, steps=50)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(rew_a, rew_b)


@pytest.mark.parametrize("scenario", [*RANDOM_SCENARIOS, "large"])
def test_vector_rollouts_differ_between_seeds(scenario):
    obs_a, rew_a = rollout(BalloonVectorEnv(num_envs=8, scenario=scenario), seed=7, steps=50)
    obs_b, rew_b = rollout(BalloonVectorEnv(num_envs=8, scenario=scenario), seed=8, steps=50)
    assert not np.array_equal(obs_a, obs_b)
    assert not np.array_equal(rew_a, rew_b)


def test_reseeding_the_same_env_reproduces_the_rollout():
    venv = BalloonVectorEnv(num_envs=8, scenario="bursty")
    obs_a, rew_a = rollout(venv, seed=3, steps=50)
    obs_b, rew_b = rollout(venv, seed=3, steps=50)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(rew_a, rew_b)


# --- 5. autoreset ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_autoreset_mode_is_recorded_in_metadata(mode):
    venv = BalloonVectorEnv(num_envs=2, scenario="idle-tax", autoreset_mode=mode)
    assert venv.metadata["autoreset_mode"] is mode
    assert venv.autoreset_mode is mode
    # the class default is not mutated by an instance's choice
    assert BalloonVectorEnv.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP


def test_next_step_autoreset_resets_in_the_step_after_truncation():
    venv = BalloonVectorEnv(num_envs=3, scenario="bursty", max_episode_steps=5)
    venv.reset(seed=4)
    actions = random_actions(venv.action_space, 7, seed=2)
    for t in range(5):
        _, reward, terminated, truncated, _ = venv.step(actions[t])
        assert not terminated.any()
        assert truncated.all() == (t == 4) and truncated.any() == (t == 4)
        assert (reward != 0).all()
    assert venv.batch.state.t.tolist() == [5, 5, 5]

    # What a reset drawn from the same generator state gives.
    rng = copy.deepcopy(venv.np_random)
    expected = core.observe(core.reset(venv.batch.params, rng), venv.batch.params)

    obs, reward, terminated, truncated, _ = venv.step(actions[5])
    np.testing.assert_array_equal(obs, expected)
    np.testing.assert_array_equal(reward, np.zeros(3))
    assert not terminated.any() and not truncated.any()
    assert venv.batch.state.t.tolist() == [0, 0, 0]

    venv.step(actions[6])
    assert venv.batch.state.t.tolist() == [1, 1, 1]


def test_same_step_autoreset_returns_the_reset_obs_and_the_final_obs_in_info():
    venv = BalloonVectorEnv(
        num_envs=2, scenario="idle-tax", max_episode_steps=5, autoreset_mode="SameStep"
    )
    # idle-tax has no random initial state, so every reset gives this observation.
    first_obs, _ = venv.reset(seed=4)
    actions = random_actions(venv.action_space, 5, seed=2)
    for t in range(4):
        _, _, _, truncated, info = venv.step(actions[t])
        assert not truncated.any()
        assert "final_obs" not in info
    obs, reward, terminated, truncated, info = venv.step(actions[4])
    assert truncated.all() and not terminated.any()
    assert (reward != 0).all()
    np.testing.assert_array_equal(obs, first_obs)
    np.testing.assert_array_equal(info["_final_obs"], [True, True])
    assert not np.array_equal(info["final_obs"], obs)
    assert info["final_obs"] in venv.observation_space
    assert "final_info" in info
    np.testing.assert_array_equal(info["_final_info"], [True, True])
    assert info["final_info"]["host_free_mib"].shape == (2,)
    assert venv.batch.state.t.tolist() == [0, 0]


def test_same_step_autoreset_marks_only_the_done_envs():
    base = load_scenario("bursty")
    short, long = (base.model_copy(update={"episode_steps": n}) for n in (3, 5))
    venv = BalloonVectorEnv(num_envs=2, scenario=[short, long], autoreset_mode="SameStep")
    venv.reset(seed=0)
    actions = random_actions(venv.action_space, 3, seed=0)
    for action in actions[:2]:
        venv.step(action)
    obs, _, _, truncated, info = venv.step(actions[2])
    np.testing.assert_array_equal(truncated, [True, False])
    np.testing.assert_array_equal(info["_final_obs"], [True, False])
    assert not np.array_equal(info["final_obs"][0], obs[0])
    assert venv.batch.state.t.tolist() == [0, 3]


def test_next_step_autoreset_resets_only_the_done_envs():
    base = load_scenario("bursty")
    short, long = (base.model_copy(update={"episode_steps": n}) for n in (3, 5))
    venv = BalloonVectorEnv(num_envs=2, scenario=[short, long])
    venv.reset(seed=0)
    for action in random_actions(venv.action_space, 4, seed=0):
        _, reward, _, truncated, _ = venv.step(action)
    # step 3 truncated env 0; step 4 reset it (reward 0) and stepped env 1
    assert reward[0] == 0.0 and reward[1] != 0.0
    assert venv.batch.state.t.tolist() == [0, 4]
    assert not truncated.any()


def test_same_step_and_next_step_agree_on_the_episode_after_the_reset():
    kwargs = {"num_envs": 2, "scenario": "bursty", "max_episode_steps": 5}
    same = BalloonVectorEnv(**kwargs, autoreset_mode=AutoresetMode.SAME_STEP)
    nxt = BalloonVectorEnv(**kwargs, autoreset_mode=AutoresetMode.NEXT_STEP)
    same.reset(seed=3)
    nxt.reset(seed=3)
    actions = random_actions(same.action_space, 9, seed=0)
    for action in actions[:5]:
        same_obs, *_ = same.step(action)
        nxt.step(action)
    nxt_obs, *_ = nxt.step(actions[5])  # NEXT_STEP's reset step
    np.testing.assert_array_equal(same_obs, nxt_obs)  # SAME_STEP's obs at step 5 is the reset
    for action in actions[6:]:
        same_obs, same_rew, *_ = same.step(action)
        nxt_obs, nxt_rew, *_ = nxt.step(action)
        np.testing.assert_array_equal(same_obs, nxt_obs)
        np.testing.assert_array_equal(same_rew, nxt_rew)


# --- 6. mixed batches and padding -------------------------------------------------------------


def test_mixed_batch_pads_guests_and_zeroes_padded_observations():
    venv = BalloonVectorEnv(num_envs=4, scenario=["idle-tax", "large"])
    assert venv.max_guests == 32
    assert venv.single_observation_space.shape == (core.observation_size(32),)
    assert [s.name for s in venv.scenarios] == ["idle-tax", "large"] * 2
    np.testing.assert_array_equal(venv.batch.params.guest_mask.sum(axis=1), [2, 32, 2, 32])
    obs, _ = venv.reset(seed=0)
    for action in [None, *random_actions(venv.action_space, 20, seed=5)]:
        if action is not None:
            obs, reward, _, _, _ = venv.step(action)
            assert reward.shape == (4,) and np.isfinite(reward).all()
        assert obs.shape == (4, core.observation_size(32))
        guests = guest_block(obs, 32)
        assert (guests[[0, 2], 2:] == 0).all()  # padding: exactly zero
        assert (guests[[0, 2], :2, 0] == 1).all()  # "present" for the real guests
        assert (guests[[1, 3], :, 0] == 1).all()


def test_actions_on_padded_slots_are_ignored():
    kwargs = {"num_envs": 2, "scenario": ["idle-tax", "bursty"], "max_guests": 8}
    a, b = BalloonVectorEnv(**kwargs), BalloonVectorEnv(**kwargs)
    a.reset(seed=1)
    b.reset(seed=1)
    mask = a.batch.params.guest_mask
    slot_mask = np.concatenate([mask, mask], axis=1)  # memory actions, then vCPU actions
    for action in random_actions(a.action_space, 10, seed=3):
        other = np.where(slot_mask, action, -action)
        obs_a, rew_a, *_ = a.step(action)
        obs_b, rew_b, *_ = b.step(other)
        np.testing.assert_array_equal(obs_a, obs_b)
        np.testing.assert_array_equal(rew_a, rew_b)


@pytest.mark.parametrize(
    "make",
    [
        lambda: BalloonVectorEnv(num_envs=2, scenario=["idle-tax", "large"], max_guests=4),
        lambda: BalloonEnv(scenario="large", max_guests=31),
    ],
    ids=["vector", "single"],
)
def test_max_guests_below_the_scenario_guest_count_raises(make):
    with pytest.raises(ValueError, match="max_guests") as err:
        make()
    message = str(err.value)
    assert "'large'" in message and "32 guests" in message
    assert "raise max_guests" in message


# --- 7. invalid input ------------------------------------------------------------------------


BAD_VALUES = pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])


@BAD_VALUES
def test_single_env_rejects_non_finite_actions_and_keeps_its_state(bad):
    env, twin = BalloonEnv("bursty"), BalloonEnv("bursty")
    env.reset(seed=5)
    twin.reset(seed=5)
    actions = random_actions(env.action_space, 6, seed=9)
    for action in actions[:3]:
        env.step(action)
        twin.step(action)
    broken = actions[3].copy()
    broken[1] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        env.step(broken)
    for action in actions[3:]:
        obs, rew, term, trunc, info = env.step(action)
        t_obs, t_rew, t_term, t_trunc, t_info = twin.step(action)
        np.testing.assert_array_equal(obs, t_obs)
        assert (rew, term, trunc) == (t_rew, t_term, t_trunc)
        np.testing.assert_array_equal(info["balloon_mib"], t_info["balloon_mib"])


@BAD_VALUES
def test_vector_env_rejects_non_finite_actions_and_keeps_its_state(bad):
    venv, twin = (BalloonVectorEnv(num_envs=3, scenario="driver-outage") for _ in range(2))
    venv.reset(seed=5)
    twin.reset(seed=5)
    actions = random_actions(venv.action_space, 6, seed=9)
    for action in actions[:3]:
        venv.step(action)
        twin.step(action)
    broken = actions[3].copy()
    broken[2, 0] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        venv.step(broken)
    for action in actions[3:]:
        obs, rew, term, trunc, _ = venv.step(action)
        t_obs, t_rew, t_term, t_trunc, _ = twin.step(action)
        np.testing.assert_array_equal(obs, t_obs)
        np.testing.assert_array_equal(rew, t_rew)
        np.testing.assert_array_equal(term, t_term)
        np.testing.assert_array_equal(trunc, t_trunc)


@pytest.mark.parametrize("shape", [(3,), (5,), (8,)])
def test_single_env_rejects_wrong_action_length(shape):
    env = BalloonEnv("idle-tax")  # 2 guests: action length 4
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(shape, dtype=np.float32))


@pytest.mark.parametrize("shape", [(2, 2), (4, 1)])
def test_single_env_rejects_a_reshaped_action(shape):
    env = BalloonEnv("idle-tax")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(shape, dtype=np.float32))


@pytest.mark.parametrize("shape", [(4,), (2, 3), (1, 4), (2, 2, 2)])
def test_vector_env_rejects_wrong_action_shape(shape):
    venv = BalloonVectorEnv(num_envs=2, scenario="idle-tax")  # actions (2, 4)
    venv.reset(seed=0)
    with pytest.raises(ValueError, match=r"expected \(num_envs, 2 \* max_guests\)"):
        venv.step(np.zeros(shape))


@pytest.mark.parametrize(
    "make",
    [lambda: BalloonEnv("idle-tax"), lambda: BalloonVectorEnv(num_envs=2, scenario="idle-tax")],
    ids=["single", "vector"],
)
def test_step_before_reset_raises_a_clear_error(make):
    env = make()
    with pytest.raises(RuntimeError, match=r"reset\(\) before step\(\)"):
        env.step(env.action_space.sample())


def test_made_env_step_before_reset_raises_reset_needed():
    env = gymnasium.make("BalloonGym/IdleTax-v1")
    with pytest.raises(gymnasium.error.ResetNeeded):
        env.step(env.action_space.sample())


@pytest.mark.parametrize(
    "make",
    [
        lambda: BalloonEnv("no-such-scenario"),
        lambda: BalloonVectorEnv(num_envs=2, scenario=["idle-tax", "no-such-scenario"]),
        lambda: gymnasium.make("BalloonGym/IdleTax-v1", scenario="no-such-scenario"),
    ],
    ids=["single", "vector", "make"],
)
def test_unknown_scenario_raises_config_error_listing_known_ones(make):
    with pytest.raises(ConfigError, match="unknown scenario 'no-such-scenario'") as err:
        make()
    for name in SCENARIOS:
        assert name in str(err.value)


@pytest.mark.parametrize("render_mode", ["human", "rgb_array", "ANSI"])
@pytest.mark.parametrize(
    "cls",
    [BalloonEnv, lambda **kw: BalloonVectorEnv(num_envs=2, **kw)],
    ids=["single", "vector"],
)
def test_unsupported_render_mode_raises(cls, render_mode):
    with pytest.raises(ValueError, match="render_mode"):
        cls(render_mode=render_mode)


# --- 8. observations ---------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_observations_are_finite_float32_inside_the_space(scenario):
    venv = BalloonVectorEnv(num_envs=4, scenario=scenario)
    obs, _ = venv.reset(seed=0)
    assert obs.dtype == np.float32
    assert obs in venv.observation_space
    for action in random_actions(venv.action_space, 200, seed=1):
        obs, reward, _, _, _ = venv.step(action)
        assert obs.dtype == np.float32
        assert np.isfinite(obs).all()
        assert obs in venv.observation_space
        assert np.isfinite(reward).all()


# --- 9. render ---------------------------------------------------------------------------------


_STATE_WORDS = ("high", "soft", "hard", "low")


@pytest.mark.parametrize(
    "scenario",
    SCENARIOS,
)
def test_ansi_render_names_every_guest_and_the_host_state(scenario):
    env = gymnasium.make(env_id(scenario), render_mode="ansi")
    env.reset(seed=0)
    for action in random_actions(env.action_space, 3, seed=0):
        _, _, _, _, info = env.step(action)
    text = env.render()
    assert isinstance(text, str)
    word = re.search(r"%, (\w+)\)", text).group(1)
    assert word == _STATE_WORDS[info["host_state"]]
    for guest in load_scenario(scenario).expanded_guests():
        assert guest.name in text, guest.name


def test_vector_ansi_render_shows_env_zero():
    venv = BalloonVectorEnv(
        num_envs=2, scenario=["steady-overcommit", "idle-tax"], render_mode="ansi"
    )
    venv.reset(seed=0)
    text = venv.render()
    for guest in load_scenario("steady-overcommit").expanded_guests():
        assert guest.name in text
    assert re.search(r"%, (high|soft|hard|low)\)", text)


def test_render_without_render_mode_returns_none():
    env = BalloonEnv("idle-tax")
    env.reset(seed=0)
    assert env.render() is None


# --- 10. the core is pure ----------------------------------------------------------------------


def _read_only(arrays):
    for a in arrays:
        a.flags.writeable = False
    return arrays


def _assert_same(arrays, copies):
    for name, a, b in zip(arrays._fields, arrays, copies, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)


@pytest.mark.parametrize("scenario", ["bursty", "driver-outage", "slow-reclaim"])
def test_core_reset_step_observe_never_write_their_inputs(scenario):
    params = repeat_params(params_from_scenario(load_scenario(scenario)), 3)
    rng = np.random.default_rng(0)
    state = core.reset(params, rng)
    action = rng.uniform(-1, 1, size=(3, 2 * params.max_guests))
    for _ in range(5):  # a state with swap, faults and targets in it
        state, _ = core.step(state, action, params, rng)
    params_copy, state_copy = copy.deepcopy(params), copy.deepcopy(state)
    _read_only(params)
    _read_only(state)
    action.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        state.balloon[0, 0] = 1.0  # the flags really protect the arrays

    new_state, out = core.step(state, action, params, rng)
    core.reset(params, rng)
    obs = core.observe(state, params)

    _assert_same(params, params_copy)
    _assert_same(state, state_copy)
    assert np.isfinite(out.reward).all() and np.isfinite(obs).all()
    assert new_state.t.tolist() == [6, 6, 6]


# --- 11. info accounting -----------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["idle-tax", "slow-reclaim", "driver-outage", "large"])
def test_info_accounting_is_exact(scenario):
    env = BalloonEnv(scenario)
    env.reset(seed=2)
    for action in random_actions(env.action_space, 40, seed=4):
        _, _, _, _, info = env.step(action)
        assert set(ACCOUNTING_KEYS) <= set(info)
        guest_sum = (
            info["kernel_mib"]
            + info["anon_resident_mib"]
            + info["cache_mib"]
            + info["free_mib"]
            + info["balloon_mib"]
        )
        np.testing.assert_allclose(guest_sum, info["mem_mib"], rtol=0, atol=1e-6)
        host_sum = info["consumed_mib"].sum() + info["host_reserved_mib"] + info["host_free_mib"]
        assert host_sum == pytest.approx(info["host_mem_mib"], rel=0, abs=1e-6)


def test_info_accounting_is_exact_on_padded_slots():
    env = BalloonEnv("idle-tax", max_guests=4)
    env.reset(seed=2)
    _, _, _, _, info = env.step(random_actions(env.action_space, 1)[0])
    guest_sum = sum(
        info[k] for k in ("kernel_mib", "anon_resident_mib", "cache_mib", "free_mib", "balloon_mib")
    )
    np.testing.assert_allclose(guest_sum, info["mem_mib"], rtol=0, atol=1e-6)


def test_the_true_working_set_is_hidden():
    env = BalloonEnv("bursty")
    env.reset(seed=0)
    _, _, _, _, info = env.step(env.action_space.sample())
    feature_names = [name for name, _ in core.GUEST_FEATURES + core.HOST_FEATURES]
    for key in [*info, *feature_names]:
        assert "wss" not in key.lower() and "working_set" not in key.lower(), key


# --- 12. gymnasium vector wrappers ---------------------------------------------------------------


def test_record_episode_statistics_reports_episode_returns():
    venv = RecordEpisodeStatistics(
        BalloonVectorEnv(num_envs=3, scenario="bursty", max_episode_steps=5)
    )
    venv.reset(seed=0)
    total = np.zeros(3)
    for t, action in enumerate(random_actions(venv.action_space, 5, seed=1)):
        _, reward, _, truncated, info = venv.step(action)
        total += reward
        assert truncated.all() == (t == 4)
    np.testing.assert_array_equal(info["_episode"], [True, True, True])
    np.testing.assert_allclose(info["episode"]["r"], total)
    np.testing.assert_array_equal(info["episode"]["l"], [5, 5, 5])
    assert len(venv.return_queue) == 3


# --- 12. the batch's observation cache and shared info arrays ------------------------------------


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_batch_observation_is_always_that_of_the_current_state(backend):
    if backend == "numba":
        pytest.importorskip("numba")
    from balloon_gym.envs.batch import Batch, backend_functions, build_params

    observe = backend_functions(backend).observe  # the step's own observation must equal it
    batch = Batch(build_params([load_scenario("bursty")] * 3), backend=backend)
    rng = np.random.default_rng(0)
    batch.reset(rng)
    for t in range(6):
        batch.step(rng.uniform(-1, 1, (3, 2 * batch.params.max_guests)), rng)
        if t % 2:
            batch.reset_where(np.array([True, False, t > 3]), rng)
        np.testing.assert_array_equal(batch.observe(), observe(batch.state, batch.params))


def test_info_arrays_shared_between_steps_are_read_only():
    env = BalloonVectorEnv(2, "idle-tax")
    env.reset(seed=0)
    _, _, _, _, first = env.step(env.action_space.sample())
    _, _, _, _, second = env.step(env.action_space.sample())
    for key in ("kernel_mib", "mem_mib", "host_mem_mib", "host_reserved_mib", "guest_mask"):
        assert first[key] is second[key], key  # computed once per batch
        with pytest.raises(ValueError, match="read-only"):
            first[key][0] = 0
    assert not np.shares_memory(first["free_mib"], second["free_mib"])  # state: one per step


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_info_derived_keys_equal_the_core_helpers(backend):
    if backend == "numba":
        pytest.importorskip("numba")  # its kernel computes these keys on the way
    env = BalloonVectorEnv(3, ["idle-tax", "large"], backend=backend)  # idle-tax hosts padded
    env.reset(seed=1)
    for _ in range(3):
        _, _, _, _, info = env.step(env.action_space.sample())
    state, params = env.batch.state, env.batch.params
    np.testing.assert_array_equal(info["consumed_mib"], core.consumed_mib(state, params))
    np.testing.assert_allclose(info["host_free_mib"], core.host_free_mib(state, params), atol=1e-6)
    np.testing.assert_array_equal(
        info["host_state"], core.host_memory_state(info["host_free_mib"], params)
    )
    masked = np.where(params.guest_mask, state.alloc_target, 0.0)
    np.testing.assert_array_equal(info["alloc_target_mib"], masked)


# --- bad input: constructor arguments, seeds, options, actions --------------------------------


def _vec(**kw):
    return BalloonVectorEnv(**{"num_envs": 2, **kw})


# (factory, exception, words the message must hold)
BAD_ARGUMENTS = {
    "single-scenario-none": (lambda: BalloonEnv(scenario=None), ConfigTypeError, "scenario"),
    "vector-scenario-none": (lambda: _vec(scenario=None), ConfigTypeError, "scenario"),
    "scenario-int": (lambda: BalloonEnv(scenario=3), ConfigTypeError, "got int 3"),
    "scenario-bytes": (lambda: BalloonEnv(scenario=b"idle-tax"), ConfigTypeError, "bytes"),
    "scenario-dict": (lambda: _vec(scenario={"name": "x"}), ConfigTypeError, "got dict"),
    "scenario-item-none": (
        lambda: _vec(scenario=["idle-tax", None]),
        ConfigTypeError,
        "scenario[1]",
    ),
    "scenario-empty-name": (lambda: BalloonEnv(scenario=""), ConfigError, "empty"),
    "scenario-empty-list": (lambda: _vec(scenario=[]), ConfigError, "list is empty"),
    "num-envs-float": (lambda: BalloonVectorEnv(2.0), ConfigTypeError, "num_envs=2"),
    "num-envs-str": (lambda: BalloonVectorEnv("3"), ConfigTypeError, "num_envs must be an integer"),
    "num-envs-bool": (lambda: BalloonVectorEnv(True), ConfigTypeError, "got bool"),
    "num-envs-none": (lambda: BalloonVectorEnv(None), ConfigTypeError, "num_envs"),
    "num-envs-zero": (lambda: BalloonVectorEnv(0), ConfigError, "num_envs must be in [1, "),
    "num-envs-negative": (lambda: BalloonVectorEnv(-4), ConfigError, "num_envs must be in"),
    "num-envs-huge": (lambda: BalloonVectorEnv(10**12), ConfigError, f"{MAX_NUM_ENVS}]"),
    "max-guests-str": (lambda: BalloonEnv(max_guests="2"), ConfigTypeError, "max_guests"),
    "max-guests-float": (lambda: BalloonEnv(max_guests=2.5), ConfigTypeError, "max_guests"),
    "max-guests-zero": (lambda: BalloonEnv(max_guests=0), ConfigError, "max_guests"),
    "max-guests-huge": (lambda: BalloonEnv(max_guests=10**9), ConfigError, "[1, 1024]"),
    "max-guests-too-few": (lambda: BalloonEnv(max_guests=1), ConfigError, "raise max_guests"),
    "steps-str": (lambda: BalloonEnv(max_episode_steps="5"), ConfigTypeError, "max_episode_steps"),
    "steps-float": (
        lambda: BalloonEnv(max_episode_steps=2.5),
        ConfigTypeError,
        "max_episode_steps",
    ),
    "steps-zero": (lambda: _vec(max_episode_steps=0), ConfigError, "max_episode_steps"),
    "steps-huge": (lambda: BalloonEnv(max_episode_steps=2**70), ConfigError, "max_episode_steps"),
    "render-mode-int": (lambda: BalloonEnv(render_mode=1), ConfigTypeError, "render_mode"),
    "trace-split-int": (lambda: BalloonEnv(trace_split=1), ConfigTypeError, "trace_split"),
    "trace-split-unknown": (lambda: _vec(trace_split="test"), ConfigError, "train, heldout, all"),
    "backend-unknown": (lambda: BalloonEnv(backend="jax"), ConfigError, "numpy, numba"),
    "backend-int": (lambda: _vec(backend=3), ConfigTypeError, "backend"),
    "autoreset-unknown": (lambda: _vec(autoreset_mode="x"), ConfigError, "SAME_STEP"),
    "autoreset-disabled": (
        lambda: _vec(autoreset_mode=AutoresetMode.DISABLED),
        ConfigError,
        "NEXT_STEP",
    ),
    "make-scenario-none": (
        lambda: gymnasium.make("BalloonGym/IdleTax-v1", scenario=None),
        ConfigTypeError,
        "scenario must be",
    ),
    "make-vec-num-envs-float": (
        lambda: gymnasium.make_vec(
            "BalloonGym/IdleTax-v1", num_envs=2.0, vectorization_mode="vector_entry_point"
        ),
        ConfigTypeError,
        "num_envs",
    ),
    "make-backend": (
        lambda: gymnasium.make("BalloonGym/IdleTax-v1", backend="x"),
        ConfigError,
        "backend",
    ),
}


@pytest.mark.parametrize("case", BAD_ARGUMENTS, ids=list(BAD_ARGUMENTS))
def test_bad_constructor_argument_raises_a_clear_config_error(case):
    make, error, words = BAD_ARGUMENTS[case]
    with pytest.raises(error) as err:
        make()
    assert words in str(err.value)
    assert isinstance(err.value, ConfigError)  # ConfigTypeError is both ValueError and TypeError


def test_config_type_error_is_a_type_error_and_a_value_error():
    assert issubclass(ConfigTypeError, TypeError) and issubclass(ConfigTypeError, ValueError)


def test_numpy_integers_are_accepted_where_ints_are():
    env = BalloonVectorEnv(
        np.int64(2), "idle-tax", max_guests=np.int32(3), max_episode_steps=np.uint8(4)
    )
    assert env.num_envs == 2 and type(env.num_envs) is int and env.max_guests == 3
    obs, _ = env.reset(seed=np.int64(7))
    twin_obs, _ = BalloonVectorEnv(2, "idle-tax", max_guests=3).reset(seed=7)
    np.testing.assert_array_equal(obs, twin_obs)


def test_a_scenario_list_longer_than_num_envs_is_rejected_not_dropped():
    with pytest.raises(ConfigError, match=r"\['large'\] would get no env"):
        BalloonVectorEnv(1, ["idle-tax", "large"])


def test_a_scenario_list_is_assigned_round_robin():
    env = BalloonVectorEnv(5, ["idle-tax", "bursty"])
    assert [c.name for c in env.scenarios] == ["idle-tax", "bursty"] * 2 + ["idle-tax"]


def test_a_batch_larger_than_the_machine_memory_is_refused_before_allocating(monkeypatch):
    monkeypatch.setattr(batch_module, "_physical_memory_bytes", lambda: 2**20)
    with pytest.raises(ConfigError, match=r"needs about .* GiB .* fewer hosts") as err:
        BalloonVectorEnv(1000, "idle-tax")
    assert "1000 hosts x 2 guest slots" in str(err.value)
    monkeypatch.setattr(batch_module, "_physical_memory_bytes", lambda: None)  # OS does not say
    assert BalloonVectorEnv(2, "idle-tax").num_envs == 2


def test_a_directory_as_scenario_raises_config_error(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        BalloonEnv(str(tmp_path) + "/")
    with pytest.raises(ConfigError, match="is a directory"):
        BalloonVectorEnv(2, tmp_path)


@pytest.mark.parametrize(
    ("seed", "error", "words"),
    [
        (-1, ConfigError, "seed must be >= 0"),
        ("a", ConfigTypeError, "got str"),
        (1.5, ConfigTypeError, "got float"),
        (True, ConfigTypeError, "got bool"),
        ([1], ConfigTypeError, "got list"),
    ],
)
@pytest.mark.parametrize("make", [BalloonEnv, _vec], ids=["single", "vector"])
def test_bad_seeds_raise_a_clear_error(make, seed, error, words):
    env = make(scenario="idle-tax")
    with pytest.raises(error, match=words):
        env.reset(seed=seed)


@pytest.mark.parametrize("make", [BalloonEnv, _vec], ids=["single", "vector"])
def test_a_huge_seed_is_a_valid_reproducible_seed(make):
    first, _ = make(scenario="bursty").reset(seed=2**70)
    again, _ = make(scenario="bursty").reset(seed=2**70)
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize(
    ("options", "error", "words"),
    [({"bad": 1}, ConfigError, r"\['bad'\] not supported"), ([1], ConfigTypeError, "dict or None")],
)
@pytest.mark.parametrize("make", [BalloonEnv, _vec], ids=["single", "vector"])
def test_reset_options_are_rejected_not_ignored(make, options, error, words):
    env = make(scenario="idle-tax")
    with pytest.raises(error, match=words):
        env.reset(seed=0, options=options)
    env.reset(seed=0, options={})  # empty options are fine
    env.reset(seed=0, options=None)


def _bad_actions(shape):
    """Actions of the right size but not an array of real numbers."""
    zeros = np.zeros(shape)
    return {
        "dict": {"memory": zeros},
        "complex": zeros.astype(complex),
        "complex-imag": zeros + 1j,
        "text-array": zeros.astype(str),
        "text": "0" * shape[-1],
        "bool": zeros.astype(bool),
        "object-none": np.full(shape, None),
        "none": None,
        "datetime": zeros.astype("datetime64[s]"),
        "ragged": [[0.0], [0.0, 1.0]]
        if len(shape) == 1
        else [[0.0]] * (shape[0] - 1) + [[0.0, 1.0]],
    }


BAD_ACTION_KINDS = list(_bad_actions((4,)))


@pytest.mark.parametrize("kind", BAD_ACTION_KINDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_single_env_rejects_actions_that_are_not_real_numbers_and_keeps_its_state(kind, backend):
    if backend == "numba":
        pytest.importorskip("numba")
    env, twin = BalloonEnv("bursty", backend=backend), BalloonEnv("bursty", backend=backend)
    env.reset(seed=3)
    twin.reset(seed=3)
    with pytest.raises(ConfigTypeError, match="action"):
        env.step(_bad_actions(env.action_space.shape)[kind])
    action = random_actions(env.action_space, 1, seed=2)[0]
    np.testing.assert_array_equal(env.step(action)[0], twin.step(action)[0])


@pytest.mark.parametrize("kind", BAD_ACTION_KINDS)
@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_vector_env_rejects_actions_that_are_not_real_numbers_and_keeps_its_state(kind, mode):
    venv, twin = (BalloonVectorEnv(2, "bursty", autoreset_mode=mode) for _ in range(2))
    venv.reset(seed=3)
    twin.reset(seed=3)
    with pytest.raises(ConfigTypeError, match="action"):
        venv.step(_bad_actions(venv.action_space.shape)[kind])
    action = random_actions(venv.action_space, 1, seed=2)[0]
    np.testing.assert_array_equal(venv.step(action)[0], twin.step(action)[0])


@pytest.mark.parametrize("bad", [np.zeros((2, 4), dtype=complex), np.zeros((3, 4)), {"a": 1}])
def test_next_step_reset_of_every_env_still_checks_the_ignored_action(bad):
    venv = BalloonVectorEnv(2, "idle-tax", max_episode_steps=1)
    venv.reset(seed=0)
    venv.step(np.zeros((2, 4)))  # both truncated: the next step resets both, ignoring actions
    t_before = venv.batch.state.t.copy()
    with pytest.raises(ValueError, match="action"):
        venv.step(bad)
    np.testing.assert_array_equal(venv.batch.state.t, t_before)
    venv.step(np.zeros((2, 4)))
    np.testing.assert_array_equal(venv.batch.state.t, [0, 0])


@pytest.mark.parametrize(
    "as_given",
    [
        lambda a: a.tolist(),
        lambda a: np.rint(a).astype(np.int64),
        lambda a: np.rint(a).astype(np.int8).tolist(),
        lambda a: a.astype(np.float16),
        lambda a: a.astype(np.float32),
    ],
    ids=["list", "int64", "int-list", "float16", "float32"],
)
def test_lists_and_int_or_other_float_actions_equal_their_float64_values(as_given):
    env, twin = BalloonEnv("bursty"), BalloonEnv("bursty")
    env.reset(seed=1)
    twin.reset(seed=1)
    for action in random_actions(env.action_space, 4, seed=3).astype(np.float64):
        given = as_given(action)
        obs = env.step(given)[0]
        np.testing.assert_array_equal(obs, twin.step(np.asarray(given, dtype=np.float64))[0])


@pytest.mark.parametrize("action", [np.float32(0.0), np.array(0.0), 0.0, []])
def test_scalar_and_empty_actions_raise_a_shape_error(action):
    env = BalloonEnv("idle-tax")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action has shape"):
        env.step(action)


# --- observations are arrays the caller owns --------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_env_observations_are_owned_by_the_caller(backend):
    if backend == "numba":
        pytest.importorskip("numba")
    env, twin = BalloonEnv("bursty", backend=backend), BalloonEnv("bursty", backend=backend)
    obs, _ = env.reset(seed=4)
    twin.reset(seed=4)
    seen = [obs]
    for action in random_actions(env.action_space, 4, seed=1):
        for old in seen:
            old[:] = -7.0  # the caller scribbles over every observation it was given
        obs = env.step(action)[0]
        assert not any(np.shares_memory(obs, old) for old in seen)
        np.testing.assert_array_equal(obs, twin.step(action)[0])
        assert not np.shares_memory(obs, env._batch.observe())
        seen.append(obs)
    assert env.render() is None  # and the env still works


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_vector_env_observations_are_owned_by_the_caller(backend, mode):
    if backend == "numba":
        pytest.importorskip("numba")
    kw = {"max_episode_steps": 3, "autoreset_mode": mode, "backend": backend}
    venv, twin = BalloonVectorEnv(2, "bursty", **kw), BalloonVectorEnv(2, "bursty", **kw)
    obs, _ = venv.reset(seed=4)
    twin.reset(seed=4)
    seen = [obs]
    for action in random_actions(venv.action_space, 8, seed=1):
        for old in seen:
            old[:] = -7.0
        obs, _, _, _, info = venv.step(action)
        t_obs, _, _, _, t_info = twin.step(action)
        np.testing.assert_array_equal(obs, t_obs)
        if "final_obs" in info:
            np.testing.assert_array_equal(info["final_obs"], t_info["final_obs"])
            assert not np.shares_memory(info["final_obs"], obs)
            seen.append(info["final_obs"])
        assert not any(np.shares_memory(obs, old) for old in seen)
        np.testing.assert_array_equal(venv.batch.observe(), t_obs)
        seen.append(obs)


@pytest.mark.parametrize(
    "make",
    [
        lambda: BalloonEnv(foo=1),
        lambda: BalloonVectorEnv(2, foo=1),
        lambda: gymnasium.make("BalloonGym/IdleTax-v1", foo=1),
    ],
    ids=["single", "vector", "make"],
)
def test_an_unknown_keyword_argument_raises_type_error_naming_it(make):
    with pytest.raises(TypeError, match="unexpected keyword argument 'foo'"):
        make()


def test_v0_ids_point_to_v1():
    """The v0 model is gone: its ids fail with Gymnasium's message naming the v1 id."""
    with pytest.raises(gymnasium.error.DeprecatedEnv, match="BalloonGym/IdleTax-v1"):
        gymnasium.make("BalloonGym/IdleTax-v0")
