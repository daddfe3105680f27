"""Trace replay in the simulator: exact interpolation, VM pools by split, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from balloon_gym.config import ConfigError, parse_scenario
from balloon_gym.core import params_from_scenario, repeat_params, reset, step
from balloon_gym.core.params import stack_params
from balloon_gym.core.workload import trace_usage
from balloon_gym.envs.vector import BalloonVectorEnv
from balloon_gym.traces import TraceBank, VMTrace, is_heldout


def _trace(name, mem, cpu):
    n = len(mem)
    return VMTrace(
        name=name,
        time_s=np.arange(n) * 300.0,
        mem_used_mib=np.asarray(mem, dtype=np.float32),
        cpu_used_vcpus=np.asarray(cpu, dtype=np.float32),
        mem_provisioned_mib=1000.0,
        vcpus=2,
    )


@pytest.fixture
def bank_file(tmp_path):
    # Names chosen so that one is in the training split and one held out (split by name hash).
    names = [f"vm{i}" for i in range(40)]
    train = next(n for n in names if not is_heldout(n))
    held = next(n for n in names if is_heldout(n))
    traces = [
        _trace(train, [100.0, 200.0, 400.0, 300.0], [0.5, 1.0, 2.0, 1.0]),
        _trace(held, [500.0, 500.0, 500.0, 500.0], [2.0, 2.0, 2.0, 2.0]),
    ]
    path = tmp_path / "bank.npz"
    TraceBank.from_traces(traces).save(path)
    return path


def _scenario(source, split="train", dt_s=150.0, scale=1.0):
    return parse_scenario(
        {
            "name": "traced",
            "dt_s": dt_s,
            "host": {"mem_mib": 40000.0, "sampling": False},
            "guests": [
                {
                    "name": "t",
                    "mem_mib": 4000.0,
                    "min_mib": 1024.0,
                    "vcpus": 4,
                    "workload": {
                        "kind": "trace",
                        "trace_source": str(source),
                        "trace_split": split,
                        "trace_mem_scale": scale,
                        "anon_mib": 0.0,
                        "cpu_vcpus": 0.0,
                    },
                },
                {"name": "synthetic", "workload": {"kind": "constant"}},
            ],
        }
    )


def test_trace_usage_interpolates_linearly_and_wraps(bank_file):
    params = params_from_scenario(_scenario(bank_file))  # dt 150 s = half a 300 s sample
    vm = np.zeros((1, 2), dtype=np.int64)
    pos = np.array([[2.0, 0.0]])
    expected_mem = [0.4, 0.35, 0.3, 0.2, 0.1, 0.15]  # samples 2, 2.5, 3, 3.5 (wraps), 4=0, 4.5
    for t, want in enumerate(expected_mem):
        mem_frac, cpu_frac = trace_usage(np.array([t]), vm, pos, params)
        assert mem_frac[0, 0] == pytest.approx(want)
    mem_frac, cpu_frac = trace_usage(np.array([1]), vm, pos, params)
    assert cpu_frac[0, 0] == pytest.approx((2.0 + 1.0) / 2 / 2)  # used / provisioned vCPUs


def test_trace_guests_draw_only_from_their_split(bank_file):
    for split, vm_index in (("train", 0), ("heldout", 1)):
        params = repeat_params(params_from_scenario(_scenario(bank_file, split)), 64)
        state = reset(params, np.random.default_rng(0))
        assert (state.trace_vm[:, 0] == vm_index).all()
    # The env-level override switches the split without editing the scenario.
    env = BalloonVectorEnv(8, scenario=_scenario(bank_file, "train"), trace_split="heldout")
    env.reset(seed=0)
    assert (env.batch.state.trace_vm[:, 0] == 1).all()


def test_the_footprint_follows_the_trace_scaled_to_the_guest(bank_file):
    params = params_from_scenario(_scenario(bank_file, "heldout", scale=2.0))
    rng = np.random.default_rng(0)
    state = reset(params, rng)
    for _ in range(3):
        state, _ = step(state, np.ones((1, 4)), params, rng)
    # held-out VM uses 500 of 1000 MiB: 0.5 * 2.0 * 4000 MiB of anon, resident.
    assert state.anon_res[0, 0] + state.anon_swap[0, 0] == pytest.approx(4000.0)


def test_shipped_trace_replay_is_deterministic_and_varies_by_seed():
    def rollout(seed):
        env = BalloonVectorEnv(4, scenario="trace-replay", max_episode_steps=20)
        env.reset(seed=seed)
        vms = env.batch.state.trace_vm.copy()
        rewards = [env.step(np.zeros((4, 16)))[1] for _ in range(20)]
        return vms, np.array(rewards)

    a, b, c = rollout(1), rollout(1), rollout(2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_a_missing_trace_source_names_the_field(tmp_path):
    with pytest.raises(ConfigError, match="trace_source"):
        params_from_scenario(_scenario(tmp_path / "missing.npz"))


def test_one_batch_cannot_mix_trace_banks(bank_file):
    ours = params_from_scenario(_scenario(bank_file))
    shipped = params_from_scenario(_scenario("sample"))
    with pytest.raises(ValueError, match="trace banks"):
        stack_params([ours, shipped])
    # A batch of a trace scenario and a synthetic one shares the one bank.
    synthetic = params_from_scenario(parse_scenario({"name": "s", "guests": [{}, {}]}))
    mixed = stack_params([ours, synthetic])
    assert mixed.bank_len is ours.bank_len and mixed.num_envs == 2
