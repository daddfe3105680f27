"""``BalloonSB3VecEnv``: stable-baselines3's VecEnv contract, seeding, and SB3 on top of it."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecMonitor, VecNormalize, is_vecenv_wrapped

from balloon_gym import ConfigError, core
from balloon_gym.config import ConfigTypeError
from balloon_gym.envs.sb3 import BalloonSB3VecEnv

N_ENVS = 3


def random_actions(venv, n, seed=0):
    """``n`` batches of actions uniform in the action Box, from their own generator."""
    rng = np.random.default_rng(seed)
    space = venv.action_space
    shape = (n, venv.num_envs, *space.shape)
    return rng.uniform(space.low, space.high, size=shape).astype(space.dtype)


def rollout(venv, steps, action_seed=0):
    observations, rewards = [venv.reset()], []
    for action in random_actions(venv, steps, action_seed):
        obs, reward, _, _ = venv.step(action)
        observations.append(obs)
        rewards.append(reward)
    return np.array(observations), np.array(rewards)


@pytest.fixture
def venv():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return BalloonSB3VecEnv(num_envs=N_ENVS, scenario="bursty", max_episode_steps=5)


def test_reset_returns_a_float32_batch(venv):
    obs = venv.reset()
    assert obs.shape == (N_ENVS, core.observation_size(6))
    assert obs.shape[1:] == venv.observation_space.shape
    assert obs.dtype == np.float32
    assert all(o in venv.observation_space for o in obs)


def test_step_returns_sb3_shapes_and_dtypes(venv):
    venv.reset()
    obs, rewards, dones, infos = venv.step(random_actions(venv, 1)[0])
    assert obs.shape == (N_ENVS, *venv.observation_space.shape) and obs.dtype == np.float32
    assert rewards.shape == (N_ENVS,) and rewards.dtype == np.float32
    assert dones.shape == (N_ENVS,) and dones.dtype == np.bool_
    assert isinstance(infos, list) and len(infos) == N_ENVS
    assert all(isinstance(info, dict) for info in infos)


def test_time_limit_gives_terminal_observation_and_episode_stats(venv):
    venv.reset()
    actions = random_actions(venv, 5, seed=1)
    rewards = []
    for t in range(5):
        obs, reward, dones, infos = venv.step(actions[t])
        rewards.append(reward)
        assert dones.all() == (t == 4) and dones.any() == (t == 4)
        if t < 4:
            assert all("terminal_observation" not in info for info in infos)
    returns = np.sum(np.array(rewards, dtype=np.float64), axis=0)
    for i, info in enumerate(infos):
        terminal = info["terminal_observation"]
        assert terminal.shape == venv.observation_space.shape
        assert not np.array_equal(terminal, obs[i])  # obs[i] is already the reset obs
        assert info["TimeLimit.truncated"] is True
        assert info["episode"]["l"] == 5
        # the adapter sums the float64 rewards; the returned ones are rounded to float32
        assert info["episode"]["r"] == pytest.approx(returns[i], rel=1e-6)
    assert venv.batch.state.t.tolist() == [0] * N_ENVS

    # the next episode's statistics start from zero
    rewards = []
    for action in actions:
        _, reward, dones, infos = venv.step(action)
        rewards.append(reward)
    assert dones.all()
    returns = np.sum(np.array(rewards, dtype=np.float64), axis=0)
    for i, info in enumerate(infos):
        assert info["episode"]["l"] == 5
        assert info["episode"]["r"] == pytest.approx(returns[i], rel=1e-6)


def test_seed_then_reset_reproduces_rollouts(venv):
    venv.seed(42)
    obs_a, rew_a = rollout(venv, 12)
    venv.seed(42)
    obs_b, rew_b = rollout(venv, 12)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(rew_a, rew_b)


def test_different_seeds_give_different_rollouts(venv):
    venv.seed(42)
    obs_a, rew_a = rollout(venv, 12)
    venv.seed(43)
    obs_b, rew_b = rollout(venv, 12)
    assert not np.array_equal(obs_a, obs_b)
    assert not np.array_equal(rew_a, rew_b)


def test_seed_returns_one_seed_per_env(venv):
    assert venv.seed(7) == [7, 8, 9]


def test_ppo_learns_on_the_adapter():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        venv = BalloonSB3VecEnv(num_envs=2, scenario="idle-tax", max_episode_steps=8)
    model = PPO("MlpPolicy", venv, n_steps=16, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(64)
    assert model.num_timesteps == 64
    action, _ = model.predict(venv.reset(), deterministic=True)
    assert action.shape == (2, *venv.action_space.shape)


def test_vec_monitor_and_vec_normalize_wrap_the_adapter(venv):
    wrapped = VecNormalize(VecMonitor(venv), gamma=0.99)
    assert is_vecenv_wrapped(wrapped, VecNormalize) and is_vecenv_wrapped(wrapped, VecMonitor)
    obs = wrapped.reset()
    assert obs.shape == (N_ENVS, *venv.observation_space.shape)
    for action in random_actions(venv, 5, seed=3):
        obs, reward, dones, infos = wrapped.step(action)
        assert np.isfinite(obs).all() and np.isfinite(reward).all()
    assert dones.all()
    for info in infos:
        # VecMonitor's episode record replaces the adapter's one, with the same return
        assert info["episode"]["l"] == 5
        assert np.isfinite(info["episode"]["r"])
        assert info["terminal_observation"].shape == venv.observation_space.shape


def test_vec_monitor_return_matches_the_adapter_return(venv):
    monitored = VecMonitor(venv)
    monitored.reset()
    rewards = []
    for action in random_actions(venv, 5, seed=4):
        _, reward, _, infos = monitored.step(action)
        rewards.append(reward)
    returns = np.sum(np.array(rewards, dtype=np.float64), axis=0)
    for i, info in enumerate(infos):
        assert info["episode"]["r"] == pytest.approx(returns[i], rel=1e-5)


def test_per_env_queries_return_one_entry_per_env(venv):
    assert venv.env_is_wrapped(VecMonitor) == [False] * N_ENVS
    assert venv.env_is_wrapped(VecMonitor, indices=[0, 2]) == [False, False]
    assert venv.get_attr("render_mode") == [None] * N_ENVS
    assert venv.get_attr("num_envs", indices=1) == [N_ENVS]
    venv.set_attr("custom_flag", 3)
    assert venv.get_attr("custom_flag") == [3] * N_ENVS
    venv.reset()
    texts = venv.env_method("render_text", 0)
    assert len(texts) == N_ENVS and all("burst" in t for t in texts)
    assert venv.get_images() == [None] * N_ENVS


def test_step_before_reset_raises(venv):
    with pytest.raises(RuntimeError, match="reset"):
        venv.step(random_actions(venv, 1)[0])


def test_non_finite_action_raises_value_error(venv):
    venv.reset()
    action = random_actions(venv, 1)[0]
    action[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        venv.step(action)


def test_unknown_scenario_raises_config_error():
    with pytest.raises(ConfigError, match="known scenarios"):
        BalloonSB3VecEnv(num_envs=2, scenario="no-such-scenario")


def test_construction_emits_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BalloonSB3VecEnv(num_envs=2, scenario="idle-tax")


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"num_envs": 2.0}, ConfigTypeError, "num_envs=2"),
        ({"num_envs": "3"}, ConfigTypeError, "num_envs"),
        ({"num_envs": 0}, ConfigError, "num_envs"),
        ({"num_envs": 1, "scenario": ["idle-tax", "large"]}, ConfigError, "would get no env"),
        ({"scenario": None}, ConfigTypeError, "scenario"),
        ({"max_episode_steps": 2.5}, ConfigTypeError, "max_episode_steps"),
        ({"backend": "jax"}, ConfigError, "numpy, numba"),
    ],
)
def test_bad_constructor_argument_raises_config_error(kwargs, error, words):
    with pytest.raises(error, match=words):
        BalloonSB3VecEnv(**{"num_envs": 2, "scenario": "idle-tax", **kwargs})


@pytest.mark.parametrize(
    ("seed", "error"), [(-1, ConfigError), ("a", ConfigTypeError), (1.5, ConfigTypeError)]
)
def test_bad_seed_raises_at_seed_time(venv, seed, error):
    with pytest.raises(error, match="seed"):
        venv.seed(seed)
    assert venv.seed(np.int64(3)) == [3, 4, 5]


def test_non_empty_reset_options_are_rejected(venv):
    with pytest.raises(ConfigError, match="not supported"):
        venv.set_options({"bad": 1})
    with pytest.raises(ConfigError, match="not supported"):
        venv.set_options([{}, {"bad": 1}, {}])
    venv.set_options({})
    venv.set_options(None)


@pytest.mark.parametrize(
    "bad",
    [{"a": 1}, np.zeros((N_ENVS, 4), dtype=complex), np.full((N_ENVS, 4), "0"), None],
    ids=["dict", "complex", "text", "none"],
)
def test_actions_that_are_not_real_numbers_raise_at_step_async(venv, bad):
    venv.reset()
    t_before = venv.batch.state.t.copy()
    with pytest.raises(ConfigTypeError, match="action"):
        venv.step_async(bad)
    np.testing.assert_array_equal(venv.batch.state.t, t_before)
    venv.step(random_actions(venv, 1)[0])  # still usable


def test_observations_are_owned_by_the_caller(venv):
    obs = venv.reset()
    seen = [obs]
    for action in random_actions(venv, 7):
        for old in seen:
            old[:] = -7.0
        obs, _, dones, infos = venv.step(action)
        assert not any(np.shares_memory(obs, old) for old in seen)
        for i in np.flatnonzero(dones):
            terminal = infos[i]["terminal_observation"]
            assert not np.shares_memory(terminal, obs) and (terminal >= 0).all()
        seen.append(obs)
    assert (obs >= 0).all()
