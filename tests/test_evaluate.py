"""Evaluation: determinism, common random numbers, results files, and the evaluate.py script."""

from __future__ import annotations

import csv
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from balloon_gym import evaluation, evaluation_cli
from balloon_gym.agents import make_agent
from balloon_gym.evaluation import (
    RESULT_COLUMNS,
    evaluate,
    evaluation_seeds,
    read_results_csv,
    run_batch,
    write_results_csv,
)
from balloon_gym.evaluation_cli import RunConfig, main, run
from balloon_gym.metrics import EpisodeMetrics, jain_index

ROOT = Path(__file__).resolve().parents[1]
AGENTS = ("esx_idle_tax", "random", "clairvoyant")


def _csv_without_wall(path: Path) -> list[list[str]]:
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    drop = rows[0].index("wall_s")
    return [[v for i, v in enumerate(r) if i != drop] for r in rows]


# --- metrics -----------------------------------------------------------------------------


def test_jain_index_known_values() -> None:
    x = np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.5, 9.0]])
    mask = np.array([[True, True, False], [True, True, True], [True, True, False]])
    np.testing.assert_allclose(jain_index(x, mask), [1.0, 1.0 / 3.0, 1.0])
    assert jain_index(np.zeros((1, 2)), np.ones((1, 2), bool))[0] == 1.0


def test_episode_metrics_need_a_step() -> None:
    with pytest.raises(RuntimeError, match="no step"):
        EpisodeMetrics(np.ones((2, 3), bool)).result()


def test_episode_score_is_the_mean_of_info_score() -> None:
    from balloon_gym import BalloonVectorEnv

    env = BalloonVectorEnv(num_envs=2, scenario="diurnal", max_episode_steps=7)
    obs, _ = env.reset(seed=5)
    policy = make_agent("mom", env)
    scores = []
    for _ in range(7):
        actions, _ = policy.predict(obs)
        obs, _, _, _, info = env.step(actions)
        scores.append(info["score"])
    result = run_batch(lambda e: make_agent("mom", e), "diurnal", (5, 6), 7, trace_split=None)
    np.testing.assert_allclose(result.metrics["score"], np.mean(scores, axis=0), rtol=1e-12)
    assert (result.metrics["steps"] == 7).all()


# --- determinism and common random numbers ---------------------------------------------------


def test_same_request_gives_identical_results(tmp_path: Path) -> None:
    seeds = evaluation_seeds(3)
    for name in ("a.csv", "b.csv"):
        result = evaluate(AGENTS, ["bursty", "trace-replay"], seeds, max_episode_steps=30)
        write_results_csv(result.rows, tmp_path / name)
    assert _csv_without_wall(tmp_path / "a.csv") == _csv_without_wall(tmp_path / "b.csv")
    other = evaluate(AGENTS, ["bursty"], evaluation_seeds(4), max_episode_steps=30).rows
    first = read_results_csv(tmp_path / "a.csv")
    assert [r["score"] for r in other[:3]] != [r["score"] for r in first[:3]]


def test_agents_see_the_same_workloads() -> None:
    """Common random numbers: same scenario and seeds, same demand whatever the policy."""
    seeds = evaluation_seeds(3)
    traces = [
        run_batch(
            lambda env, n=name: make_agent(n, env), "diurnal", seeds, 40, record=["working_set"]
        ).trace["working_set"]
        for name in ("static", "esx_idle_tax", "clairvoyant")
    ]
    for trace in traces[1:]:
        np.testing.assert_array_equal(trace, traces[0])


def test_results_csv_round_trip(tmp_path: Path) -> None:
    rows = evaluate(["squeezed"], ["idle-tax"], evaluation_seeds(2), max_episode_steps=5).rows
    path = write_results_csv(rows, tmp_path / "results.csv")
    back = read_results_csv(path)
    assert list(back[0]) == list(RESULT_COLUMNS)
    assert back == rows


# --- the command line ----------------------------------------------------------------


def test_evaluate_script_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        str(ROOT / "evaluate.py"),
        "--agents",
        "esx_idle_tax,mom",
        "--scenarios",
        "idle-tax",
        "--seeds",
        "2",
        "--max-episode-steps",
        "20",
        "--bootstrap-reps",
        "200",
        "--no-progress",
        "--out",
        str(out),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for name in (
        "results.csv",
        "leaderboard.md",
        "run.json",
        "scores.png",
        "timeline_idle-tax.png",
    ):
        assert (out / name).is_file(), name
    rows = read_results_csv(out / "results.csv")
    assert len(rows) == 4 * 2  # two agents and the two reference agents, two seeds
    assert {r["seed"] for r in rows} == {10000, 10001}
    assert "| rank | agent |" in (out / "leaderboard.md").read_text()
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["kind"] == "evaluation"
    assert manifest["trace_split"] == "heldout"
    assert manifest["hostname"] and isinstance(manifest["hostname"], str)
    commit = manifest["git_commit"]
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}", commit)
    # the directory is renamed into place from a temporary one: a plain mkdir's mode, no leftovers
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    # an existing, non-empty directory is never overwritten silently
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 2
    assert "not empty" in again.stderr and "--overwrite" in again.stderr


TINY = ["--seeds", "1", "--max-episode-steps", "3", "--bootstrap-reps", "20", "--no-progress"]


def _assert_one_line_error(err: str, message: str) -> None:
    """argparse's usage, then exactly one ``error:`` line holding ``message``; no traceback."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("evaluate.py: error: "), err
    assert sum("error:" in line for line in lines) == 1, err
    assert message in lines[-1], err


def _fixtures(tmp: Path) -> None:
    """Files the bad-input cases below name (``{tmp}`` in their arguments)."""
    (tmp / "a-dir").mkdir()
    (tmp / "no-policy").mkdir()
    (tmp / "bad.yaml").write_text("name: bad\nhost: {mem_mib: -5}\nguests: []\n")
    (tmp / "no-traces.yaml").write_text(
        "name: no-traces\nguests:\n  - name: g\n"
        f"    workload: {{kind: trace, trace_source: {tmp / 'missing-traces'}}}\n"
    )
    (tmp / "bad-bank.yaml").write_text(
        "name: bad-bank\nguests:\n  - name: g\n"
        f"    workload: {{kind: trace, trace_source: {tmp / 'bank.npz'}}}\n"
    )
    (tmp / "bank.npz").write_bytes(b"PK\x03\x04 not a zip file")
    idle_tax = (ROOT / "configs" / "scenarios" / "idle-tax.yaml").read_text()
    (tmp / "same-name.yaml").write_text(idle_tax)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--agents", "esx,mom"], "unknown agent 'esx'"),
        (["--agents", "ppo:runs/x"], "policy.json: missing"),
        (["--agents", "ppo:{tmp}/no-policy"], "no-policy/policy.json: missing"),
        (["--agents", " , "], "--agents is empty"),
        (["--scenarios", "idle-taxx"], "unknown scenario 'idle-taxx'"),
        (["--scenarios", ""], "--scenarios is empty"),
        (["--scenarios", ",,"], "--scenarios is empty"),
        (["--scenarios", "{tmp}/a-dir"], "a-dir is a directory; give the path of a .yaml file"),
        (["--scenarios", "{tmp}/a-dir/"], "a-dir is a directory; give the path of a .yaml file"),
        (["--scenarios", "{tmp}/bad.yaml"], "host.mem_mib"),
        (["--scenarios", "{tmp}/no-traces.yaml"], "missing-traces' does not exist"),
        (["--scenarios", "{tmp}/bad-bank.yaml"], "bank.npz' is not a TraceBank .npz"),
        (["--scenarios", "idle-tax,{tmp}/same-name.yaml"], "are both named 'idle-tax'"),
        (["--seeds", "0"], "must be a positive integer, got 0"),
        (["--seeds", "-3"], "must be a positive integer, got -3"),
        (["--seeds", "99999999999999999999999"], "--seeds: must be at most 1000"),
        (["--seeds", "1001"], "--seeds: must be at most 1000"),
        (["--seeds", "1e3"], "'1e3' is not a whole number"),
        (["--seeds", "2.0"], "'2.0' is not a whole number"),
        (["--seeds", "\u0661\u0662"], "is not a whole number"),  # Arabic-Indic digits
        (["--seeds", "9" * 5000], "--seeds: must be at most 1000"),
        (["--max-episode-steps", "0"], "must be a positive integer, got 0"),
        (["--max-episode-steps", "1" + "0" * 30], "must be at most 1000000"),
        (["--bootstrap-reps", "10000000"], "must be at most 100000"),
        (["--trace-split", "test"], "invalid choice: 'test'"),
        (["--timeline-agent", "hyperv", "--agents", "mom"], "--timeline-agent 'hyperv'"),
    ],
)
def test_bad_input_fails_fast_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    _fixtures(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "never" / "out"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--out", str(out)])
    assert exc.value.code == 2
    _assert_one_line_error(capsys.readouterr().err, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_bad_input_from_the_shell_is_one_line(tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "evaluate.py"), "--seeds", "9" * 30, "--out", "x"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2
    _assert_one_line_error(done.stderr, "--seeds: must be at most 1000")
    assert not (tmp_path / "x").exists()


def test_module_prints_help() -> None:
    cmd = [sys.executable, "-m", "balloon_gym.evaluation_cli", "--help"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "usage: evaluate.py" in done.stdout and "--trace-split" in done.stdout


def test_unwritable_out_fails_fast(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a directory")
    for out in (blocker, blocker / "sub", blocker / "sub" / "deeper"):
        with pytest.raises(SystemExit) as exc:
            main(["--out", str(out)])
        assert exc.value.code == 2
        _assert_one_line_error(capsys.readouterr().err, "not a directory")
    assert blocker.read_text() == "not a directory"
    for out in ("", "."):
        with pytest.raises(SystemExit) as exc:
            main(["--out", out])
        assert exc.value.code == 2
        _assert_one_line_error(capsys.readouterr().err, "--out")


def _tiny_args(out: Path, *extra: str) -> list[str]:
    return ["--agents", "static", "--scenarios", "idle-tax", *TINY, *extra, "--out", str(out)]


def test_overwrite_replaces_only_the_files_of_the_earlier_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    base = ["--agents", "static", "--scenarios", "idle-tax", "--seeds", "2"]
    base += ["--max-episode-steps", "3", "--bootstrap-reps", "50", "--no-progress"]
    assert main([*base, "--out", str(out)]) == 0
    (out / "notes.txt").write_text("mine")
    (out / "extra").mkdir()
    (out / "extra" / "more.txt").write_text("also mine")
    stale = out / "timeline_idle-tax.png"
    assert stale.is_file()
    assert main([*base, "--timeline-agent", "clairvoyant", "--overwrite", "--out", str(out)]) == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "extra" / "more.txt").read_text() == "also mine"
    assert (out / "results.csv").is_file() and stale.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temporary or old dirs


def test_overwrite_accepts_output_written_before_run_json_had_a_kind(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(_tiny_args(out)) == 0
    manifest = json.loads((out / "run.json").read_text())
    del manifest["kind"]
    (out / "run.json").write_text(json.dumps(manifest))
    assert main(_tiny_args(out, "--overwrite")) == 0
    assert json.loads((out / "run.json").read_text())["kind"] == "evaluation"


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() if p.is_file() else b"<dir>"
        for p in directory.rglob("*")
    }


@pytest.mark.parametrize("error", [RuntimeError("simulator bug"), KeyboardInterrupt()])
def test_failed_overwrite_keeps_the_previous_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    out = tmp_path / "run"
    assert main(_tiny_args(out)) == 0
    (out / "notes.txt").write_text("mine")
    before = _snapshot(out)

    def broken(*args: object, **kwargs: object) -> list[str]:
        Path(str(args[1]), "leaderboard.md").write_text("half")  # some outputs written
        raise error

    monkeypatch.setattr(evaluation_cli, "write_leaderboard", broken)
    if isinstance(error, KeyboardInterrupt):
        assert main(_tiny_args(out, "--overwrite")) == 130
    else:
        with pytest.raises(RuntimeError, match="simulator bug"):
            main(_tiny_args(out, "--overwrite"))
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_failed_first_run_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulator bug")

    monkeypatch.setattr(evaluation_cli, "evaluate", broken)
    with pytest.raises(RuntimeError, match="simulator bug"):
        main(_tiny_args(tmp_path / "new" / "nested" / "run"))
    assert list(tmp_path.iterdir()) == []  # neither the output nor the parents it created


@pytest.mark.parametrize(
    ("files", "why"),
    [
        ({"run.json": '{"command": "train.py"}', "policy.json": "{}", "policy.pth": ""}, "train"),
        ({"run.json": '{"kind": "evaluation"}', "checkpoint/model.zip": ""}, "train"),
        ({"run.json": '{"kind": "training"}', "results.csv": "", "leaderboard.md": ""}, "kind"),
        ({"notes.txt": "mine"}, "unknown"),
        ({"results.csv": "a,b\n"}, "results.csv alone"),
    ],
)
def test_overwrite_refuses_what_is_not_evaluation_output(
    tmp_path: Path, capsys: pytest.CaptureFixture, files: dict[str, str], why: str
) -> None:
    out = tmp_path / "run"
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    before = _snapshot(out)
    with pytest.raises(SystemExit) as exc:
        main(_tiny_args(out, "--overwrite"))
    assert exc.value.code == 2, why
    _assert_one_line_error(capsys.readouterr().err, "other than evaluate.py output")
    assert _snapshot(out) == before
    config = RunConfig(("static",), ("idle-tax",), (1,), 3, out, True, "static", 20, False)
    with pytest.raises(FileExistsError, match=r"other than evaluate\.py output"):
        run(config)  # the library entry point (train.py's final evaluation) refuses too
    assert _snapshot(out) == before


def test_trace_split_is_passed_to_the_envs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str | None] = []
    real = evaluation.run_batch

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(kwargs.get("trace_split"))  # type: ignore[arg-type]
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(evaluation, "run_batch", spy)
    out = tmp_path / "run"
    args = ["--agents", "static", "--scenarios", "trace-replay", *TINY, "--no-references"]
    assert main([*args, "--trace-split", "train", "--out", str(out)]) == 0
    assert seen == ["train"]
    assert json.loads((out / "run.json").read_text())["trace_split"] == "train"
    assert "the training VMs" in (out / "leaderboard.md").read_text()


def _one_vm_trace_dir(directory: Path) -> Path:
    """A trace directory with one VM, in the training split: its held-out split is empty."""
    from balloon_gym.traces.bank import is_heldout

    name = next(f"vm{i}" for i in range(100) if not is_heldout(f"vm{i}"))
    directory.mkdir()
    lines = ["time_s,mem_used_mib,cpu_used_vcpus,mem_provisioned_mib,vcpus"]
    lines += [f"{t},{1000 + (t // 300) % 7 * 50},0.5,4096,2" for t in range(0, 30 * 3600, 300)]
    (directory / f"{name}.csv").write_text("\n".join(lines) + "\n")
    return directory


def test_empty_trace_split_fails_before_any_output(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    traces = _one_vm_trace_dir(tmp_path / "traces")
    scenario = tmp_path / "mine.yaml"
    scenario.write_text(
        f"name: mine\nguests:\n  - name: g\n    workload: {{kind: trace, trace_source: {traces}}}\n"
    )
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        main(["--agents", "static", "--scenarios", str(scenario), *TINY, "--out", str(out)])
    assert exc.value.code == 2
    _assert_one_line_error(capsys.readouterr().err, "trace split 'heldout' of trace_source")
    assert not out.exists()


def test_empty_trace_split_names_the_split(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from balloon_gym.core import tracebank

    bank = tracebank.load_bank("sample")
    n = bank.pools["all"][1]
    only_train = bank._replace(pools={"train": (0, n), "heldout": (n, n), "all": (0, n)})
    monkeypatch.setattr(tracebank, "load_bank", lambda source: only_train)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        main(["--scenarios", "trace-replay", *TINY, "--out", str(out)])
    assert exc.value.code == 2
    _assert_one_line_error(capsys.readouterr().err, "--trace-split heldout: scenario trace-replay")
    assert not out.exists()


def _narrow_policy(directory: Path) -> str:
    """A (random) PPO export for idle-tax's guests: ``ppo:DIR``."""
    sb3 = pytest.importorskip("stable_baselines3")
    from balloon_gym.envs.sb3 import BalloonSB3VecEnv
    from balloon_gym.training.policy import make_export, save_export

    model = sb3.PPO(
        "MlpPolicy",
        BalloonSB3VecEnv(1, "idle-tax", max_episode_steps=5),
        n_steps=8,
        batch_size=8,
        seed=0,
        device="cpu",
        policy_kwargs={"net_arch": [8]},
    )
    meta = {"residual": None, "env_version": "v1", "package_version": "test"}
    meta |= {"max_guests": int(model.action_space.shape[0]) // 2, "scenarios": ["idle-tax"]}
    save_export(directory, *make_export(model, None, 10.0, 1e-8, meta))
    return f"ppo:{directory}"


def test_narrow_trained_agent_fails_before_any_episode(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = _narrow_policy(tmp_path / "ppo-run")

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("an episode ran")

    monkeypatch.setattr(evaluation, "run_batch", never)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        main(["--agents", agent, "--scenarios", "idle-tax,large", *TINY, "--out", str(out)])
    assert exc.value.code == 2
    _assert_one_line_error(capsys.readouterr().err, f"agent {agent!r} was trained with")
    assert not out.exists()
    with pytest.raises(ValueError, match="scenario 'large' has 32 guests"):
        evaluate([agent, "static"], ["idle-tax", "large"], evaluation_seeds(1), 3)


def test_run_into_a_training_runs_eval_subdirectory(tmp_path: Path) -> None:
    """train.py's final evaluation: run() into DIR/eval, again on a resumed run."""
    training = tmp_path / "ppo-run"
    training.mkdir()
    (training / "policy.json").write_text("{}")
    (training / "run.json").write_text('{"command": "train.py"}')
    config = RunConfig(
        ("static",), ("idle-tax",), (10000,), 3, training / "eval", True, "static", 20, False
    )
    for _ in range(2):
        manifest = run(config, command="final evaluation")
        assert manifest["kind"] == "evaluation"
    assert sorted(p.name for p in training.iterdir()) == ["eval", "policy.json", "run.json"]
    assert (training / "run.json").read_text() == '{"command": "train.py"}'
