"""The fused numba backend (``balloon_gym.core.fused``) against the numpy reference.

Both backends run from the same seed on their own trajectories (nothing is re-synchronised
between steps), and every ``State`` field, the reward, its parts and the observation are
compared after every step. Tolerance: float fields agree to ``RTOL`` relative or ``ATOL``
absolute (per MiB; ``fault_pages`` counts 256 pages per MiB). The kernels repeat the
reference's float operations in order, except that they sum a host's guests in guest order
where the reference sums through BLAS (``core/rows.py``); that last-bit difference is all there
is, and it stays at ~1e-11 MiB (measured over 3,000 steps of every shipped scenario; a value the
reference computes as exactly 0 after a cancellation can come out as ~1e-12, hence ``ATOL``).
Boolean and integer fields must match exactly. Observations are float32: they may differ by one
float32 rounding step when a float64 value sits on a rounding boundary, and the ``host_state``
feature may differ when the host's free fraction sits on a state line to within 1e-12. That
happens by design: targets are projected to ``host_mem * (1 - 6 %) - reserved`` (once the guests
claim more), so when every
guest reaches its target the free fraction is exactly the 6 % line and ``frac < 0.06`` is decided
by the last bit of a sum (in the reference, by the BLAS kernel's summation order).

The first run on a machine compiles the kernels (about 20 s, and as much again for the
read-only arrays of the purity test); numba caches them on disk after that.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

if os.environ.get("BALLOON_GYM_HIDE_NUMBA"):  # the physics must be pinned without numba too
    pytest.skip("numba hidden by BALLOON_GYM_HIDE_NUMBA", allow_module_level=True)
pytest.importorskip("numba")

import gymnasium
from gymnasium.utils.env_checker import check_env

from balloon_gym import core
from balloon_gym.config import parse_scenario
from balloon_gym.core import fused
from balloon_gym.core.observe import HOST_FEATURES
from balloon_gym.core.params import (
    HIGH_FREE_FRAC,
    LOW_FREE_FRAC,
    PAGES_PER_MIB,
    SOFT_FREE_FRAC,
    Params,
    repeat_params,
    stack_params,
)
from balloon_gym.core.state import State, host_free_mib
from balloon_gym.envs.batch import BACKENDS, Batch, build_params
from balloon_gym.envs.single import BalloonEnv
from balloon_gym.envs.vector import BalloonVectorEnv
from balloon_gym.scenarios import env_id, list_scenarios, load_scenario

try:  # the property tests' scenario strategy (tests/ is on sys.path under pytest)
    from test_core_properties import scenarios as random_scenarios
except ImportError:  # pragma: no cover - another pytest import mode
    random_scenarios = None

RTOL = 1e-9
ATOL = 1e-9  # MiB, s, vCPUs or fractions: the unit of the field
ATOL_FIELD = {  # pages: 256 per MiB
    name: ATOL * PAGES_PER_MIB for name in ("fault_pages", "anon_fault_pages", "cache_fault_pages")
}
OBS_TOL = 2.0**-23  # one float32 rounding step of a feature in [0.5, 1]
STATE_LINE_TOL = 1e-12  # free fraction this close to a state line: either side is rounding


def assert_same_step(ref: tuple[State, object], new: tuple[State, object], where: str) -> None:
    """Every field, the reward and its parts agree (floats to tolerance, the rest exactly)."""
    (s_ref, out_ref), (s_new, out_new) = ref, new
    for name, a, b in zip(State._fields, s_ref, s_new, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype, f"{where}: {name} shape or dtype"
        if a.dtype.kind == "f":
            atol = ATOL_FIELD.get(name, ATOL)
            np.testing.assert_allclose(b, a, rtol=RTOL, atol=atol, err_msg=f"{where}: {name}")
        else:
            np.testing.assert_array_equal(b, a, err_msg=f"{where}: {name}")
    np.testing.assert_allclose(out_new.reward, out_ref.reward, rtol=RTOL, atol=ATOL)
    assert list(out_new.parts) == list(out_ref.parts), where
    for key, a in out_ref.parts.items():
        np.testing.assert_allclose(out_new.parts[key], a, rtol=RTOL, atol=ATOL, err_msg=key)


def assert_same_obs(a: np.ndarray, b: np.ndarray, state: State, params: Params, where: str) -> None:
    """Observations agree to one float32 rounding step; ``host_state`` exactly, unless the free
    fraction of ``state`` (the reference's) sits on a state line."""
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape, where
    col = a.shape[1] - len(HOST_FEATURES) + 1  # host_state
    flips = a[:, col] != b[:, col]
    if flips.any():
        frac = host_free_mib(state, params) / params.host_mem_mib[:, 0]
        lines = np.array([HIGH_FREE_FRAC, SOFT_FREE_FRAC, LOW_FREE_FRAC])
        edge = np.abs(frac[:, None] - lines).min(axis=1)
        assert (edge[flips] < STATE_LINE_TOL).all(), f"{where}: host_state, free {frac[flips]}"
        a, b = a.copy(), b.copy()
        b[flips, col] = a[flips, col]
    np.testing.assert_allclose(b, a, rtol=0, atol=OBS_TOL, err_msg=where)


def compare_rollouts(params: Params, steps: int, seed: int, action_kind: str = "uniform") -> None:
    """Run both backends ``steps`` steps from ``seed`` on the same actions; compare each step."""
    shape = (params.num_envs, 2 * params.max_guests)
    rng_ref, rng_new = np.random.default_rng(seed), np.random.default_rng(seed)
    actions = np.random.default_rng(seed + 1)
    s_ref = core.reset(params, rng_ref)
    s_new = core.reset(params, rng_new)  # reset is shared: the numpy one
    action = actions.uniform(-1, 1, shape)
    for t in range(steps):
        if action_kind == "uniform":
            action = actions.uniform(-1, 1, shape)
        elif action_kind == "extreme":
            action = actions.choice([-1.0, 1.0], shape)
        elif action_kind == "outside":  # clipped to the box by both backends
            action = actions.uniform(-3, 3, shape)
        elif actions.random() < 0.1:  # sticky
            action = actions.uniform(-1, 1, shape)
        ref = core.step(s_ref, action, params, rng_ref)
        *new, obs_new, accounting = fused.step_observe(s_new, action, params, rng_new)
        assert_same_step(ref, new, f"step {t}")
        (s_ref, _), (s_new, _) = ref, new
        # the step's own observation is exactly the observe kernel's
        np.testing.assert_array_equal(obs_new, fused.observe(s_new, params), err_msg=f"{t}")
        assert_same_obs(core.observe(s_ref, params), obs_new, s_ref, params, f"obs {t}")
        np.testing.assert_array_equal(accounting["consumed_mib"], core.consumed_mib(s_new, params))
        free = core.host_free_mib(s_new, params)
        np.testing.assert_allclose(accounting["host_free_mib"], free, rtol=0, atol=1e-6)
        state_of = core.host_memory_state(accounting["host_free_mib"], params)
        np.testing.assert_array_equal(accounting["host_state"], state_of)
    # both generators are where the same draws leave them
    assert rng_ref.random() == rng_new.random()


# --- 1. every shipped scenario, a mixed padded batch, delta mode ------------------------------


@pytest.mark.parametrize("scenario", list_scenarios())
def test_fused_matches_numpy_on_every_shipped_scenario(scenario):
    params = repeat_params(build_params([load_scenario(scenario)]), 4)
    compare_rollouts(params, steps=300, seed=3)


def test_fused_matches_numpy_on_a_mixed_batch_padded_to_32_guests():
    params = build_params([load_scenario("idle-tax"), load_scenario("large")] * 2, max_guests=32)
    assert params.max_guests == 32 and not params.guest_mask.all()
    compare_rollouts(params, steps=300, seed=5)


@pytest.mark.parametrize("scenario", ["steady-overcommit", "driver-outage", "trace-replay"])
def test_fused_matches_numpy_in_delta_mode(scenario):
    data = load_scenario(scenario).model_dump(mode="python")
    cfg = parse_scenario({**data, "action_mode": "delta", "delta_frac": 0.2})
    params = repeat_params(build_params([cfg]), 4)
    assert params.delta_mode.all()
    compare_rollouts(params, steps=300, seed=7, action_kind="sticky")


def test_fused_matches_numpy_with_every_reward_and_extreme_actions():
    data = load_scenario("slow-reclaim").model_dump(mode="python")
    configs = [
        parse_scenario({**data, "reward": {"name": name, "w_oom": 2.0, "w_sla": 0.5}})
        for name in ("weighted_throughput", "mean_throughput", "sla")
    ]
    params = stack_params([build_params([c]) for c in configs])
    assert params.reward_kind[:, 0].tolist() == [0, 1, 2]
    compare_rollouts(params, steps=200, seed=11, action_kind="extreme")


def test_fused_matches_numpy_on_actions_outside_the_box():
    params = repeat_params(build_params([load_scenario("cpu-contention")]), 4)
    compare_rollouts(params, steps=100, seed=5, action_kind="outside")


def test_fused_matches_numpy_through_oom_restarts_and_without_a_driver():
    # Guest 0 is killed often (no swap, a naive driver) and restarts over two steps (restart 3 s,
    # hot set 300 MiB re-read at 37 MiB/s: 11.1 s, a partial second step); guest 1 has no driver.
    data = load_scenario("steady-overcommit").model_dump(mode="python")
    g0, g1 = (dict(g) for g in data["guests"][:2])
    g0.update(
        swap_mib=0.0,
        driver={"rate_adaptive": False, "max_balloon_frac": 0.95},
        workload={
            **g0["workload"],
            "anon_mib": 3000.0,
            "wss_frac": 0.1,
            "oom_restart_s": 3.0,
            "oom_reload_mib_s": 37.0,
        },
    )
    g1.update(count=1, driver={"present": False})
    cfg = parse_scenario({**data, "guests": [g0, g1, *data["guests"][1:]]})
    params = repeat_params(build_params([cfg]), 4)
    compare_rollouts(params, steps=200, seed=13, action_kind="extreme")


def test_fused_step_without_observation_matches_step_observe():
    params = repeat_params(build_params([load_scenario("diurnal")]), 3)
    state = core.reset(params, np.random.default_rng(0))
    action = np.random.default_rng(1).uniform(-1, 1, (3, 2 * params.max_guests))
    s_a, out_a = fused.step(state, action, params, np.random.default_rng(2))
    s_b, out_b, obs, _ = fused.step_observe(state, action, params, np.random.default_rng(2))
    for name, a, b in zip(State._fields, s_a, s_b, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
    np.testing.assert_array_equal(out_a.reward, out_b.reward)
    np.testing.assert_array_equal(obs, fused.observe(s_a, params))


# --- 2. property test over random scenarios ---------------------------------------------------


@st.composite
def fused_scenarios(draw):
    """The property tests' random scenarios, with a random reward on top."""
    data = draw(random_scenarios()).model_dump(mode="python")
    data["reward"] = {
        "name": draw(st.sampled_from(["weighted_throughput", "mean_throughput", "sla"])),
        "w_oom": draw(st.floats(0, 5)),
        "w_host_swap_gib": draw(st.floats(0, 1)),
        "w_sla": draw(st.floats(0, 1)),
    }
    return parse_scenario(data)


@pytest.mark.skipif(random_scenarios is None, reason="tests/test_core_properties not importable")
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cfg=fused_scenarios(),
    seed=st.integers(0, 2**32 - 2),
    action_kind=st.sampled_from(["uniform", "extreme", "outside", "sticky"]),
)
def test_fused_matches_numpy_on_random_scenarios(cfg, seed, action_kind):
    params = repeat_params(build_params([cfg]), 3)
    compare_rollouts(params, steps=40, seed=seed, action_kind=action_kind)


# --- 3. purity, 4. errors ---------------------------------------------------------------------


def _read_only(arrays) -> None:
    for a in arrays:
        a.flags.writeable = False


def test_fused_step_and_observe_never_write_their_inputs():
    params = repeat_params(build_params([load_scenario("driver-outage")]), 3)
    rng = np.random.default_rng(0)
    state = core.reset(params, rng)
    action = rng.uniform(-1, 1, (3, 2 * params.max_guests))
    for _ in range(5):  # swap, faults and targets in the state
        state, _ = fused.step(state, action, params, rng)
    copies = [a.copy() for a in (*params, *state)]
    _read_only(params)
    _read_only(state)
    action.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        state.free[0, 0] = 1.0  # the flags really protect the arrays

    ref = core.step(state, action, params, np.random.default_rng(1))
    new = fused.step(state, action, params, np.random.default_rng(1))
    obs = fused.observe(state, params)

    for a, b in zip((*params, *state), copies, strict=True):
        np.testing.assert_array_equal(a, b)
    assert_same_step(ref, new, "read-only inputs")
    assert_same_obs(core.observe(state, params), obs, state, params, "read-only inputs")
    inputs = [*params, *state, action]
    carried = {"phase_offset", "trace_vm", "trace_pos"}  # the reference carries them over too
    for name, a in zip(State._fields, new[0], strict=True):
        if name in carried:
            assert a is getattr(state, name)
        else:
            assert a.flags.writeable and not any(np.may_share_memory(a, x) for x in inputs), name


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_action_raises_and_leaves_the_generator_alone(bad):
    params = repeat_params(build_params([load_scenario("bursty")]), 2)
    state = core.reset(params, np.random.default_rng(0))
    action = np.zeros((2, 2 * params.max_guests))
    action[1, 3] = bad
    rng = np.random.default_rng(4)
    with pytest.raises(ValueError, match="NaN or infinite") as fused_err:
        fused.step(state, action, params, rng)
    with pytest.raises(ValueError, match="NaN or infinite") as ref_err:
        core.step(state, action, params, np.random.default_rng(4))
    assert str(fused_err.value) == str(ref_err.value)
    assert rng.random() == np.random.default_rng(4).random()


def test_unknown_backend_raises_naming_the_choices():
    params = build_params([load_scenario("idle-tax")])
    for make in (
        lambda: Batch(params, backend="jax"),
        lambda: BalloonVectorEnv(2, "idle-tax", backend="jax"),
        lambda: BalloonEnv("idle-tax", backend="jax"),
    ):
        with pytest.raises(ValueError, match=r"'jax' unknown.*numpy, numba"):
            make()


def test_missing_numba_raises_with_the_install_command(monkeypatch):
    fused.load_kernels.cache_clear()
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba now raises ImportError
    try:
        with pytest.raises(ImportError, match=r"pip install 'balloon-gym\[fast\]'"):
            Batch(build_params([load_scenario("idle-tax")]), backend="numba")
    finally:
        monkeypatch.undo()
        fused.load_kernels.cache_clear()


def test_the_kernel_cache_is_keyed_on_every_core_source(tmp_path, monkeypatch):
    """Numba's cache only watches the entry point's file; the kernels compile the equations of
    every core module, so their cache key is a hash of all of ``balloon_gym/core``."""
    kernels = importlib.import_module("balloon_gym.core.fused.kernels")
    core_dir = tmp_path / "core"
    (core_dir / "fused").mkdir(parents=True)
    for name in ("workload.py", "fused/kernels.py"):
        (core_dir / name).write_text("x = 1\n")
    monkeypatch.setattr(kernels, "_CORE_DIR", core_dir)
    kernels.core_sources_hash.cache_clear()
    try:
        before = kernels.core_sources_hash()
        (core_dir / "workload.py").write_text("x = 2\n")  # a physics module, not kernels.py
        kernels.core_sources_hash.cache_clear()
        assert kernels.core_sources_hash() != before
    finally:
        kernels.core_sources_hash.cache_clear()
    cache = kernels.step_kernel._cache._impl.locator
    assert isinstance(cache, kernels._CoreSourcesStamp)
    assert cache.get_source_stamp() == kernels.core_sources_hash()
    assert kernels.core_sources_hash()[:16] in cache.get_disambiguator()


def test_the_kernels_compile_the_core_s_own_equations():
    """No equation is copied: every one registered in ``core/ops.py`` is compiled from its
    numpy source, and the kernels hold no constant of the model of their own."""
    from balloon_gym.core import ops

    kernels = importlib.import_module("balloon_gym.core.fused.kernels")
    assert len(ops.EQUATIONS) >= 30
    source = importlib.util.find_spec(kernels.__name__).origin
    with open(source) as f:
        text = f.read()
    for constant in ("1e-6", "1e-9", "1e-12", "256.0", "0.02", "0.06", "0.04", "0.01", "1024.0"):
        assert constant not in text, constant


# --- 5. the env adapters ----------------------------------------------------------------------


def test_single_env_with_the_numba_backend_passes_the_gymnasium_checker():
    env = gymnasium.make(env_id("driver-outage"), backend="numba")  # kwargs reach BalloonEnv
    assert env.unwrapped._batch.backend == "numba"
    check_env(env.unwrapped)


@pytest.mark.parametrize("scenario", ["bursty", "large"])
def test_vector_env_rollouts_agree_between_backends(scenario):
    envs = [BalloonVectorEnv(4, scenario, max_episode_steps=40, backend=b) for b in BACKENDS]
    ref, new = envs
    actions = np.random.default_rng(2).uniform(-1, 1, (100, *ref.action_space.shape))
    obs_ref, _ = ref.reset(seed=9)
    obs_new, _ = new.reset(seed=9)
    assert_same_obs(obs_ref, obs_new, ref.batch.state, ref.batch.params, "reset")
    for t, a in enumerate(actions.astype(np.float32)):  # 100 steps: two autoresets
        obs_ref, r_ref, term_ref, trunc_ref, info_ref = ref.step(a)
        obs_new, r_new, term_new, trunc_new, info_new = new.step(a)
        assert_same_obs(obs_ref, obs_new, ref.batch.state, ref.batch.params, f"obs {t}")
        np.testing.assert_allclose(r_new, r_ref, rtol=RTOL, atol=ATOL, err_msg=f"reward {t}")
        np.testing.assert_array_equal(trunc_new, trunc_ref)
        np.testing.assert_array_equal(term_new, term_ref)
        assert list(info_new) == list(info_ref)


def test_sb3_vec_env_takes_the_backend():
    pytest.importorskip("stable_baselines3")
    from balloon_gym.envs.sb3 import BalloonSB3VecEnv

    envs = [BalloonSB3VecEnv(2, "bursty", max_episode_steps=5, backend=b) for b in BACKENDS]
    assert [e.batch.backend for e in envs] == list(BACKENDS)
    actions = np.random.default_rng(0).uniform(-1, 1, (8, 2, 2 * envs[0].batch.params.max_guests))
    ref, new = envs
    ref.seed(3)
    new.seed(3)
    obs_ref, obs_new = ref.reset(), new.reset()
    for a in actions:  # 8 steps: one same-step autoreset
        assert_same_obs(obs_ref, obs_new, ref.batch.state, ref.batch.params, "sb3")
        obs_ref, r_ref, done_ref, _ = ref.step(a)
        obs_new, r_new, done_new, _ = new.step(a)
        np.testing.assert_allclose(r_new, r_ref, rtol=1e-6)  # SB3 rewards are float32
        np.testing.assert_array_equal(done_new, done_ref)
