"""Trace replay in the simulator: exact interpolation, VM pools by split, determinism."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest
import yaml

from balloon_gym.config import ConfigError, parse_scenario
from balloon_gym.core import params_from_scenario, repeat_params, reset, step
from balloon_gym.core.params import stack_params
from balloon_gym.core.tracebank import SPLITS, check_source
from balloon_gym.core.workload import trace_usage
from balloon_gym.envs.vector import BalloonVectorEnv
from balloon_gym.scenarios import load_scenario
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


# --- trace sources that are small, uneven, corrupt or not traces at all ------------------------

TRAIN_NAMES = ("1", "2")  # split by a hash of the name
HELDOUT_NAMES = ("7", "21")


def _write_csv_trace(path, rows, mem=500.0, extra=()):
    lines = ["time_s,mem_used_mib,cpu_used_vcpus,mem_provisioned_mib,vcpus"]
    lines += [f"{300 * i},{mem + i % 7},0.5,1000,2" for i in range(rows)]
    path.write_text("\n".join([*lines, *extra]) + "\n")


def _trace_dir(root, vms):
    root.mkdir(parents=True)
    for name, rows in vms:
        _write_csv_trace(root / f"{name}.csv", rows)
    return root


def test_split_names_are_what_the_tests_assume():
    assert not any(is_heldout(n) for n in TRAIN_NAMES)
    assert all(is_heldout(n) for n in HELDOUT_NAMES)


@pytest.mark.parametrize(
    "vms",
    [
        [("1", 300)],  # one VM: held-out split empty
        [("1", 300), ("2", 400)],  # two training VMs of different lengths
        [("7", 350)],  # training split empty
        [("1", 300), ("7", 500)],  # held-out VM longer than the training one
        [("1", 500), ("2", 290), ("7", 300), ("21", 320)],
    ],
)
def test_directories_with_uneven_or_empty_splits_work(tmp_path, vms):
    source = _trace_dir(tmp_path / "traces", vms)
    bank = check_source(source)
    lengths = dict(vms)
    train = [n for n, _ in vms if not is_heldout(n)]
    held = [n for n, _ in vms if is_heldout(n)]
    assert bank.names == (*train, *held)  # train first, then held-out
    assert bank.mem_frac.shape == (len(vms), max(lengths.values()))  # padded to the longest
    assert bank.length.tolist() == [lengths[n] for n in bank.names]
    assert (bank.split_size("train"), bank.split_size("heldout")) == (len(train), len(held))
    assert bank.nonempty_splits == tuple(
        s for s, n in (("train", train), ("heldout", held), ("all", vms)) if n
    )
    for split in SPLITS:
        if split in bank.nonempty_splits:
            assert check_source(source, split) is bank
            params = repeat_params(params_from_scenario(_scenario(source, split)), 16)
            state = reset(params, np.random.default_rng(0))
            lo, hi = bank.pools[split]
            assert ((state.trace_vm[:, 0] >= lo) & (state.trace_vm[:, 0] < hi)).all()
            state, _ = step(state, np.ones((16, 4)), params, np.random.default_rng(1))
        else:
            with pytest.raises(ConfigError, match=rf"trace split '{split}' .* has no VM"):
                check_source(source, split)
            with pytest.raises(ConfigError, match=rf"trace split '{split}' .*has no VM"):
                params_from_scenario(_scenario(source, split))


def test_the_env_override_to_an_empty_split_is_a_config_error(tmp_path):
    source = _trace_dir(tmp_path / "traces", [("1", 300), ("2", 320)])
    env = BalloonVectorEnv(2, scenario=_scenario(source, "train"))
    env.reset(seed=0)
    with pytest.raises(ConfigError, match=r"'heldout'.*has no VM"):
        BalloonVectorEnv(2, scenario=_scenario(source, "train"), trace_split="heldout")


def test_corrupt_values_never_reach_the_simulator(tmp_path):
    source = tmp_path / "traces"
    source.mkdir()
    corrupt = ["90300,1.7e308,0.5,1000,2", "90600,inf,0.5,1000,2", "90900,-3,nan,1000,2"]
    corrupt += ["91200,100,1e300,1000,2", "91500,100,0.5,1.7e308,2"]
    _write_csv_trace(source / "1.csv", 301, extra=corrupt)
    bank = check_source(source, "train")
    assert bank.length.tolist() == [301]
    assert check_source(source / "1.csv", "train").length.tolist() == [301]  # one file
    assert np.isfinite(bank.mem_frac).all() and bank.mem_frac.max() <= 1.0
    params = params_from_scenario(_scenario(source, "train"))
    rng = np.random.default_rng(0)
    state = reset(params, rng)
    with np.errstate(over="raise", invalid="raise"):
        for _ in range(5):
            state, _ = step(state, np.ones((1, 4)), params, rng)
    assert np.isfinite(state.anon_res).all()


def _not_trace_sources(d):
    d.mkdir()
    (d / "notes.txt").write_text("hello\n")
    np.savez(d / "other.npz", a=np.arange(3))
    np.save(d / "array.npy", np.arange(3))
    (d / "data.pkl").write_bytes(pickle.dumps({"a": 1}))
    (d / "broken.npz").write_bytes(b"PK\x03\x04 not really a zip")
    return ["notes.txt", "other.npz", "array.npy", "data.pkl", "broken.npz"]


def test_a_file_that_is_not_a_trace_bank_gets_a_clear_message(tmp_path, monkeypatch):
    calls = []
    real_load = np.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("allow_pickle", False))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", spy)
    for name in _not_trace_sources(tmp_path / "junk"):
        source = tmp_path / "junk" / name
        with pytest.raises(ConfigError) as info:
            check_source(source)
        message = str(info.value)
        assert message.startswith(f"workload.trace_source '{source}' is not a TraceBank .npz / ")
        assert message.endswith(
            "use 'sample', a .npz written by TraceBank.save, or a directory of trace files"
        )
        assert "allow_pickle" not in message
        with pytest.raises(ConfigError, match="is not a TraceBank"):
            params_from_scenario(_scenario(source))
    assert calls and not any(calls)  # never allow_pickle=True


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda d: d.mkdir(), r"no \.csv or \.csv\.gz trace files found"),
        (lambda d: (d.mkdir(), (d / "a.txt").write_text("x")), "no .csv or .csv.gz"),
        (lambda d: (d.mkdir(), (d / "1.csv").write_text("nonsense\n")), "no usable trace"),
        (lambda d: None, "does not exist"),
    ],
)
def test_bad_trace_directories_are_config_errors(tmp_path, make, match):
    source = tmp_path / "traces"
    make(source)
    with pytest.raises(ConfigError, match=rf"trace_source '{source}' .*{match}"):
        check_source(source)


def test_duplicate_vm_names_in_a_trace_directory(tmp_path):
    source = _trace_dir(tmp_path / "traces", [("1", 300)])
    _write_csv_trace(source / "1.csv.gz.tmp", 300)
    (source / "1.csv.gz").write_bytes(gzip.compress((source / "1.csv.gz.tmp").read_bytes()))
    with pytest.raises(ConfigError, match=r"1\.csv and 1\.csv\.gz both give VM name '1'"):
        check_source(source)


def test_an_empty_bank_file_is_a_config_error(tmp_path):
    path = tmp_path / "empty.npz"
    TraceBank.from_traces([]).save(path)
    with pytest.raises(ConfigError, match="holds no VM"):
        check_source(path)


def test_check_source_checks_the_split_name():
    with pytest.raises(ConfigError, match="trace split 'test' unknown; use one of train"):
        check_source("sample", "test")
    bank = check_source("sample", "heldout")
    assert bank.nonempty_splits == SPLITS


def test_a_relative_trace_source_is_relative_to_the_scenario_file(tmp_path, monkeypatch):
    sub = tmp_path / "sub"
    _trace_dir(sub / "mytraces", [("1", 300), ("2", 310)])
    data = _scenario("mytraces").model_dump(mode="json")
    data["guests"][1]["workload"]["trace_source"] = "elsewhere"  # not a trace guest: kept
    (sub / "scn.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    for path in (sub / "scn.yaml", "../sub/scn.yaml"):
        cfg = load_scenario(path)
        assert cfg.guests[0].workload.trace_source == str(sub / "mytraces")
        assert cfg.guests[1].workload.trace_source == "elsewhere"
        assert params_from_scenario(cfg).trace_hi[0, 0] == 2
    for source in ("sample", str(sub / "mytraces")):  # kept as they are
        data["guests"][0]["workload"]["trace_source"] = source
        (sub / "abs.yaml").write_text(yaml.safe_dump(data))
        assert load_scenario(sub / "abs.yaml").guests[0].workload.trace_source == source
