"""Smoke tests of ``train.py`` (tiny budgets, subprocess) and its config and argument checks."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from balloon_gym.training.cli import parse_args
from balloon_gym.training.config import (
    TrainConfigError,
    load_algo_config,
    parse_overrides,
    sb3_kwargs,
)
from balloon_gym.training.envs import env_seed

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "--hp",
    "n_steps=32",
    "n_envs=4",
    "batch_size=64",
    "n_epochs=1",
    "max_episode_steps=24",
    "eval_freq=64",
    "eval_seeds=1",
    "checkpoint_freq=64",
]


def _train(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--no-progress", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    tmp = tmp_path_factory.mktemp("train")
    out = tmp / "run"
    proc = _train(tmp, "--timesteps", "128", "--eval-seeds", "1", "--out", str(out), *TINY)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, proc


def test_train_writes_model_stats_export_config_and_command(
    tiny_run: tuple[Path, subprocess.CompletedProcess],
) -> None:
    out, proc = tiny_run
    for name in ("model.zip", "vecnormalize.pkl", "policy.json", "policy.pth", "config.yaml"):
        assert (out / name).is_file(), name
    assert (out / "checkpoint" / "model.zip").is_file()
    assert any((out / "tb").rglob("events.out.tfevents.*"))
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["algo"] == "ppo" and config["scenarios"] == ["idle-tax"]
    assert config["hyperparameters"]["n_envs"] == 4
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished" and run["num_timesteps"] >= 128
    assert "train.py" in run["commands"][0] and "--timesteps 128" in run["commands"][0]
    assert run["package_version"] and run["env_version"] == "v0"
    assert 0.0 < run["env_share_of_training_wall_time"] < 1.0
    # periodic evaluation against the baselines, and the final table
    assert "[eval] baselines on idle-tax" in proc.stdout and "esx_idle_tax" in proc.stdout
    assert f"ppo:{out}" in proc.stdout and "clairvoyant" in proc.stdout


def test_evaluate_py_takes_the_trained_run(
    tiny_run: tuple[Path, subprocess.CompletedProcess], tmp_path: Path
) -> None:
    out, _ = tiny_run
    cmd = [
        sys.executable,
        str(ROOT / "evaluate.py"),
        "--agents",
        f"ppo:{out},esx_idle_tax",
        "--scenarios",
        "idle-tax",
        "--seeds",
        "2",
        "--max-episode-steps",
        "12",
        "--no-progress",
        "--bootstrap-reps",
        "50",
        "--out",
        str(tmp_path / "eval"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with (tmp_path / "eval" / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    trained = [r for r in rows if r["agent"] == f"ppo:{out}"]
    assert [int(r["seed"]) for r in trained] == [10000, 10001]


def test_resume_continues_from_the_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    # one rollout is n_steps x n_envs = 128 steps; SB3 stops at the end of a rollout
    first = _train(tmp_path, "--timesteps", "128", "--eval-seeds", "0", "--out", str(out), *TINY)
    assert first.returncode == 0, first.stderr[-2000:]
    again = _train(tmp_path, "--resume", str(out), "--timesteps", "256", "--eval-seeds", "0")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "from 128 to 256 timesteps" in again.stdout
    run = json.loads((out / "run.json").read_text())
    assert run["num_timesteps"] == 256 and len(run["commands"]) == 2
    assert [s["segment"] for s in run["segments"]] == [0, 1]
    progress = json.loads((out / "checkpoint" / "progress.json").read_text())
    assert progress == {"num_timesteps": 256, "segment": 1}


def test_bad_arguments_exit_2_before_training(tmp_path: Path) -> None:
    proc = _train(tmp_path, "--algo", "dqn", "--out", str(tmp_path / "x"), timeout=60)
    assert proc.returncode == 2
    assert "--algo 'dqn' unknown" in proc.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--algo", "dqn"], "--algo 'dqn' unknown; choose from ppo, sac, a2c, td3"),
        (["--timesteps", "-5"], "--timesteps must be positive, got -5"),
        (["--scenario", "idle-taxx"], "unknown scenario 'idle-taxx'"),
        (["--seed", "20000"], "--seed must be in 0..999"),
        (["--hp", "learning_rat=1e-3"], "unknown ppo hyperparameter(s) ['learning_rat']"),
        (["--hp", "policy_kwargs.activation_fn=os.system"], "activation_fn 'os.system' unknown"),
        (["--hp", "n_steps"], "expected key=value"),
        (["--resume", "nowhere"], "nowhere/config.yaml is missing"),
    ],
)
def test_bad_arguments_are_clear(
    tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args([*args, "--out", str(tmp_path / "never")] if "--resume" not in args else args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_non_empty_out_needs_resume_or_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "old.txt").write_text("x")
    with pytest.raises(SystemExit) as exc:
        parse_args(["--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "not empty" in capsys.readouterr().err
    assert parse_args(["--out", str(tmp_path), "--overwrite"]).out == tmp_path


def test_config_merges_default_scenario_and_overrides() -> None:
    cfg = load_algo_config(
        "ppo", ["large"], parse_overrides(["learning_rate=3e-4", "policy_kwargs.net_arch=[64]"])
    )
    assert cfg["learning_rate"] == 3e-4 and isinstance(cfg["learning_rate"], float)
    assert cfg["n_envs"] == 8  # the `large` entry over `default`
    assert cfg["policy_kwargs"]["net_arch"] == [64]
    assert cfg["policy_kwargs"]["activation_fn"] == "tanh"  # merged one level deep
    import torch.nn as nn

    assert sb3_kwargs(cfg)["policy_kwargs"]["activation_fn"] is nn.Tanh
    assert load_algo_config("sac", ["idle-tax"])["n_envs"] == 8


def test_config_files_are_never_evaluated(tmp_path: Path) -> None:
    (tmp_path / "ppo.yaml").write_text("default: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(TrainConfigError, match="cannot read it as YAML"):
        load_algo_config("ppo", ["idle-tax"], config_dir=tmp_path)
    (tmp_path / "ppo.yaml").write_text("default: {n_envs: 4, gama: 0.9}\n")
    with pytest.raises(TrainConfigError, match=r"unknown ppo hyperparameter\(s\) \['gama'\]"):
        load_algo_config("ppo", ["idle-tax"], config_dir=tmp_path)


@pytest.mark.parametrize(
    ("hp", "message"),
    [
        ("learning_rate=abc", 'learning_rate="abc": expected a number 0 < x <= 1'),
        ("learning_rate=nan", "learning_rate=NaN: expected a number"),
        ("learning_rate=-1", "learning_rate=-1: expected a number 0 < x <= 1"),
        ("n_steps=0", "n_steps=0: expected an integer 1 <= x"),
        ("n_steps=64.5", "n_steps=64.5: expected an integer"),
        ("gamma=2", "gamma=2: expected a number 0 <= x <= 1"),
        ("normalize.clip_obs=-1", "normalize.clip_obs=-1: expected a number 0 < x"),
        ("normalize.clip_obs=true", "normalize.clip_obs=true: expected a number"),
        ("checkpoint_freq=-5", "checkpoint_freq=-5: expected an integer 0 <= x"),
        ("eval_freq=abc", 'eval_freq="abc": expected an integer'),
        ("n_envs=true", "n_envs=true: expected an integer"),
        ("n_envs=1e9", "n_envs=1000000000.0: expected an integer 1 <= x <= 4096"),
        ("use_sde=true", "use_sde=true is not supported (gSDE policies cannot be exported"),
        ("rollout_buffer_class=os.system", 'rollout_buffer_class="os.system" is not supported'),
        ("policy_kwargs.net_arch=[true]", "policy_kwargs.net_arch=[true]: expected a list"),
        ("policy_kwargs.net_arch=[64]*", "policy_kwargs.net_arch"),
        ("policy_kwargs.foo=1", "policy_kwargs: unknown key(s) ['foo']; valid keys: net_arch"),
        ("residual=nobody", 'residual="nobody": expected one of'),
        ("a.b.c=1", "keys have at most two parts"),
        ("a..b=1", "expected key=value"),
        ("=1", "expected key=value"),
        ("learning_rate=[[[[", "cannot parse the value"),
    ],
)
def test_hyperparameters_are_type_and_range_checked(hp: str, message: str) -> None:
    with pytest.raises(TrainConfigError) as err:
        load_algo_config("ppo", ["idle-tax"], parse_overrides([hp]))
    assert message in str(err.value)
    assert str(err.value).startswith("--hp ")
    assert "\n" not in str(err.value)


def test_hyperparameter_checks_cover_files_and_combinations(tmp_path: Path) -> None:
    (tmp_path / "ppo.yaml").write_text("default: {n_envs: 4}\nlarge: {gamma: 1.5}\n")
    with pytest.raises(TrainConfigError, match=r"ppo\.yaml: large\.gamma=1\.5: expected"):
        load_algo_config("ppo", ["idle-tax"], config_dir=tmp_path)  # unused entries too
    with pytest.raises(TrainConfigError, match="n_steps \\* n_envs must be at least 2"):
        load_algo_config("ppo", ["idle-tax"], parse_overrides(["n_envs=1", "n_steps=1"]))
    with pytest.raises(TrainConfigError, match="learning_rate was given a value"):
        parse_overrides(["learning_rate=1e-3", "learning_rate.x=1"])
    with pytest.raises(TrainConfigError, match=r"unknown key\(s\) \['log_std_init'\]"):
        load_algo_config("td3", ["idle-tax"], parse_overrides(["policy_kwargs.log_std_init=0"]))
    cfg = load_algo_config(
        "sac", ["idle-tax"], parse_overrides(["ent_coef=auto_0.1", "train_freq=[4, step]"])
    )
    assert cfg["ent_coef"] == "auto_0.1" and cfg["train_freq"] == [4, "step"]
    cfg = load_algo_config("ppo", ["idle-tax"], parse_overrides(["n_steps=1e3", "use_sde=false"]))
    assert cfg["n_steps"] == 1000 and isinstance(cfg["n_steps"], int) and "use_sde" not in cfg


def test_swap_penalty_charges_host_swap_in_the_training_reward() -> None:
    import numpy as np

    from balloon_gym.training.envs import SwapPenaltyVecEnv, TimedVecEnv, make_train_env

    hp = [
        "residual=null",
        "normalize.norm_obs=false",
        "normalize.norm_reward=false",
        "n_envs=2",
        "max_episode_steps=10",
        "host_swap_penalty_gib=0",
        "residual_vcpu_scale=null",
    ]
    cfg = load_algo_config("ppo", ["steady-overcommit"], parse_overrides(hp))
    plain, _ = make_train_env(["steady-overcommit"], cfg, 0)
    cfg["host_swap_penalty_gib"] = 3.0
    shaped, _ = make_train_env(["steady-overcommit"], cfg, 0)
    assert isinstance(plain, TimedVecEnv) and isinstance(shaped, SwapPenaltyVecEnv)
    acc = shaped.venv.venv._ep_parts["host_swap_gib"]
    plain.seed(1), shaped.seed(1)
    plain.reset(), shaped.reset()
    total, rng = 0.0, np.random.default_rng(0)
    for _ in range(30):  # crosses episode ends (same-step reset); random actions swap
        a = rng.uniform(-1, 1, (2, 8)).astype(np.float32)
        before = acc.copy()
        _, r0, done, _ = plain.step(a)
        _, r1, _, infos1 = shaped.step(a)
        after = np.array(
            [
                i["episode"]["host_swap_gib"] if d else x
                for i, d, x in zip(infos1, done, acc, strict=True)
            ]
        )
        np.testing.assert_allclose(r0 - r1, 3.0 * (after - before), atol=1e-4)
        total += float((after - before).sum())
    assert total > 0.0  # the test saw host swap


def test_training_env_seeds_stay_below_evaluation_seeds() -> None:
    seeds = [env_seed(s, k) for s in (0, 1, 2, 999) for k in range(20)]
    assert max(seeds) < 10_000 and min(seeds) >= 1000
    assert env_seed(0, 0) != env_seed(0, 1)
    with pytest.raises(ValueError):
        env_seed(-1)
