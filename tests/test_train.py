"""Smoke tests of ``train.py`` (tiny budgets, subprocess) and its config and argument checks."""

from __future__ import annotations

import csv
import hashlib
import json
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
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


def _train(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--no-progress", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
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
    assert run["package_version"] and run["env_version"] == "v1"
    assert "git_commit" in run and run["hostname"] == socket.gethostname()
    manifest = json.loads((out / "checkpoint" / "manifest.json").read_text())
    assert set(manifest["sha256"]) == {"model.zip", "vecnormalize.pkl", "policy.json", "policy.pth"}
    digest = hashlib.sha256((out / "checkpoint" / "model.zip").read_bytes()).hexdigest()
    assert manifest["sha256"]["model.zip"] == digest
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
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
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
    proc = _train(tmp_path, "--algo", "dqn", "--out", str(tmp_path / "x"))
    assert proc.returncode == 2
    assert "--algo 'dqn' unknown" in proc.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--algo", "dqn"], "--algo 'dqn' unknown; choose from ppo, sac, a2c, td3"),
        (["--timesteps", "-5"], "--timesteps must be in 1..1e+12, got -5"),
        (["--scenario", "idle-taxx"], "unknown scenario 'idle-taxx'"),
        (["--seed", "20000"], "--seed must be in 0..999"),
        (["--hp", "learning_rat=1e-3"], "unknown ppo hyperparameter(s) ['learning_rat']"),
        (
            ["--hp", "policy_kwargs.activation_fn=os.system"],
            'activation_fn="os.system": expected one of tanh',
        ),
        (["--hp", "n_steps"], "expected key=value"),
        (["--resume", "nowhere"], "--resume nowhere: nowhere is not a directory"),
        (["--timesteps", "abc"], "--timesteps: expected a whole number like 200000 or 2e5"),
        (["--timesteps", "1e99"], "--timesteps must be in 1..1e+12, got 1e+99"),
        (["--timesteps", "0"], "--timesteps must be in 1..1e+12, got 0"),
        (["--scenario", "/"], "scenario file / is a directory; give the path of a .yaml file"),
        (["--hp", "a.b.c=1"], "keys have at most two parts"),
        (["--hp", "learning_rate"], "expected key=value"),
        (["--hp", "eval_freq=abc"], '--hp eval_freq="abc": expected an integer'),
        (["--hp", "use_sde=true"], "use_sde=true is not supported"),
        (["--seed", str(10**40)], "--seed must be in 0..999"),
        (["--eval-seeds", str(10**20)], "--eval-seeds must be in 0..1000"),
    ],
)
def test_bad_arguments_are_clear(
    tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args([*args, "--out", str(tmp_path / "never")] if "--resume" not in args else args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.strip().splitlines()[-1].startswith("train.py: error: ")
    assert "Traceback" not in err
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
    assert sb3_kwargs(cfg)["train_freq"] == (4, "step")  # SB3 wants a tuple
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


class _Evil:
    """Unpickling this creates a file: what a planted vecnormalize.pkl could do."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def _copy(tiny_run: tuple[Path, subprocess.CompletedProcess], tmp_path: Path) -> Path:
    run = tmp_path / "copy"
    shutil.copytree(tiny_run[0], run)
    return run


def _exit_2(capsys: pytest.CaptureFixture, argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.strip().splitlines()[-1].startswith("train.py: error: ")
    assert "Traceback" not in err


def test_resume_refuses_tampered_or_unlisted_pickles(
    tiny_run: tuple[Path, subprocess.CompletedProcess],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    run = _copy(tiny_run, tmp_path)
    ckpt = run / "checkpoint"
    before = sorted(p.name for p in run.iterdir())
    with (ckpt / "model.zip").open("ab") as fh:
        fh.write(b"\0")
    _exit_2(capsys, ["--resume", str(run)], "model.zip: SHA-256 does not match")
    shutil.copy(tiny_run[0] / "checkpoint" / "model.zip", ckpt / "model.zip")
    manifest = json.loads((ckpt / "manifest.json").read_text())
    del manifest["sha256"]["vecnormalize.pkl"]
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    _exit_2(capsys, ["--resume", str(run)], "vecnormalize.pkl: no SHA-256 in")
    (ckpt / "manifest.json").unlink()
    _exit_2(capsys, ["--resume", str(run)], "manifest.json is missing")
    (ckpt / "manifest.json").write_text("[" * 100_000)
    _exit_2(capsys, ["--resume", str(run)], "not valid JSON")
    assert sorted(p.name for p in run.iterdir()) == before


def test_planted_pickle_never_runs(
    tiny_run: tuple[Path, subprocess.CompletedProcess], tmp_path: Path
) -> None:
    from balloon_gym.training.trainer import RunDirectoryError, Trainer, TrainRequest

    run = _copy(tiny_run, tmp_path)
    marker = tmp_path / "pwned"
    (run / "checkpoint" / "vecnormalize.pkl").write_bytes(pickle.dumps(_Evil(marker)))
    proc = _train(tmp_path, "--resume", str(run), "--eval-seeds", "0")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "vecnormalize.pkl: SHA-256 does not match" in proc.stderr
    assert "Traceback" not in proc.stderr and not marker.exists()
    # the library refuses too, without the command line's checks
    saved = yaml.safe_load((run / "config.yaml").read_text())
    req = TrainRequest("ppo", ["idle-tax"], 0, 256, run, saved["hyperparameters"], resume=True)
    with pytest.raises(RunDirectoryError, match="SHA-256 does not match"):
        Trainer(req, log=lambda _: None)
    assert not marker.exists()


def test_checkpoint_that_does_not_fit_its_config_exits_2(
    tiny_run: tuple[Path, subprocess.CompletedProcess], tmp_path: Path
) -> None:
    run = _copy(tiny_run, tmp_path)
    _set_yaml(run / "config.yaml", scenarios=["large"])  # 32 guests: other spaces
    proc = _train(tmp_path, "--resume", str(run), "--timesteps", "512", "--eval-seeds", "0")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "does not fit config.yaml's scenarios and algo" in proc.stderr
    assert "Traceback" not in proc.stderr


def _set_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def _set_yaml(path: Path, **changes) -> None:
    data = yaml.safe_load(path.read_text())
    data.update(changes)
    path.write_text(yaml.safe_dump(data))


def _hyperparameters(path: Path, **changes) -> None:
    data = yaml.safe_load(path.read_text())
    data["hyperparameters"].update(changes)
    path.write_text(yaml.safe_dump(data))


MALFORMED = {
    "run.json not JSON": (lambda r: (r / "run.json").write_text("{"), "run.json: not valid JSON"),
    "run.json missing": (lambda r: (r / "run.json").unlink(), "run.json is missing"),
    "run.json list": (lambda r: (r / "run.json").write_text("[]"), "expected a JSON object"),
    "commands type": (
        lambda r: _set_json(r / "run.json", commands="python train.py"),
        "commands must be a list of strings",
    ),
    "segments type": (
        lambda r: _set_json(r / "run.json", segments=[{"learn_wall_s": "x"}]),
        "segments must be a list of timing records",
    ),
    "config missing": (lambda r: (r / "config.yaml").unlink(), "config.yaml is missing"),
    "config not YAML": (
        lambda r: (r / "config.yaml").write_text("a: [\n"),
        "config.yaml: not valid YAML",
    ),
    "config key": (
        lambda r: (r / "config.yaml").write_text("algo: ppo\n"),
        "expected a mapping with keys algo, scenarios, seed, timesteps, hyperparameters",
    ),
    "seed type": (lambda r: _set_yaml(r / "config.yaml", seed="0"), "seed must be an integer"),
    "seed huge": (lambda r: _set_yaml(r / "config.yaml", seed=10**30), "seed must be an integer"),
    "algo": (lambda r: _set_yaml(r / "config.yaml", algo="dqn"), "algo must be one of"),
    "scenarios": (lambda r: _set_yaml(r / "config.yaml", scenarios="x"), "scenarios must be"),
    "unknown scenario": (
        lambda r: _set_yaml(r / "config.yaml", scenarios=["nope"]),
        "unknown scenario 'nope'",
    ),
    "hyperparameter": (
        lambda r: _hyperparameters(r / "config.yaml", gamma="high"),
        'hyperparameters.gamma="high": expected a number',
    ),
    "progress": (
        lambda r: (r / "checkpoint" / "progress.json").write_text('{"segment": -1}'),
        "num_timesteps must be an integer",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_run_directory_exits_2(
    tiny_run: tuple[Path, subprocess.CompletedProcess],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    case: str,
) -> None:
    run = _copy(tiny_run, tmp_path)
    breaks, message = MALFORMED[case]
    breaks(run)
    _exit_2(capsys, ["--resume", str(run)], message)


def test_unwritable_out_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "file").write_text("x")
    _exit_2(capsys, ["--out", str(tmp_path / "file" / "run")], "is not a directory")
    _exit_2(capsys, ["--out", str(tmp_path / "file")], "exists and is not a directory")
    if Path("/proc/self").is_dir():
        _exit_2(capsys, ["--out", "/proc/balloon-gym-run"], "--out /proc/balloon-gym-run:")
    _exit_2(capsys, ["--out", str(tmp_path / ("x" * 300))], "--out")
    deep = tmp_path / "a" / "b" / "c"
    assert parse_args(["--out", str(deep)]).out == deep
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # the probe left nothing


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_exports_a_usable_policy(tmp_path: Path, sig: signal.Signals) -> None:
    from balloon_gym.agents import check_agent_spec

    out = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "train.py"), "--no-progress", "--eval-seeds", "0"]
    replaced = ("eval_freq=", "checkpoint_freq=")
    hp = [*(a for a in TINY if not a.startswith(replaced)), "eval_freq=0", "checkpoint_freq=128"]
    proc = subprocess.Popen(
        [*cmd, "--timesteps", "10000000", "--out", str(out), *hp],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    progress = out / "checkpoint" / "progress.json"
    for _ in range(100_000):  # bounded by count, not by time: wait for the first checkpoint
        if progress.is_file() or proc.poll() is not None:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(sig)
    _, stderr = proc.communicate()
    assert proc.returncode == 128 + sig, stderr[-2000:]
    assert "Traceback" not in stderr and f"interrupted ({sig.name})" in stderr
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "interrupted" and run["num_timesteps"] >= 128
    check_agent_spec(f"ppo:{out}")  # what evaluate.py --agents ppo:DIR checks
    spec = json.loads((out / "policy.json").read_text())
    assert spec["algo"] == "ppo"
    assert not (out / "checkpoint.tmp").exists() and not (out / "checkpoint.old").exists()
    if sig == signal.SIGINT:  # the last whole checkpoint resumes
        done = json.loads(progress.read_text())["num_timesteps"]
        again = _train(
            tmp_path, "--resume", str(out), "--timesteps", str(done + 128), "--eval-seeds", "0"
        )
        assert again.returncode == 0, again.stderr[-2000:]
        assert json.loads((out / "run.json").read_text())["status"] == "finished"
