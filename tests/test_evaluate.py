"""Evaluation: determinism, common random numbers, results files, and the evaluate.py script."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from balloon_gym.agents import make_agent
from balloon_gym.evaluation import (
    RESULT_COLUMNS,
    evaluate,
    evaluation_seeds,
    read_results_csv,
    run_batch,
    write_results_csv,
)
from balloon_gym.evaluation_cli import main
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
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
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
    # an existing, non-empty directory is never overwritten silently
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert again.returncode == 2
    assert "not empty" in again.stderr and "--overwrite" in again.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--agents", "esx,mom"], "unknown agent 'esx'"),
        (["--agents", "ppo:runs/x"], "policy.json: missing"),
        (["--scenarios", "idle-taxx"], "unknown scenario 'idle-taxx'"),
        (["--seeds", "0"], "must be a positive integer, got 0"),
        (["--seeds", "-3"], "must be a positive integer, got -3"),
        (["--max-episode-steps", "0"], "must be a positive integer, got 0"),
        (["--timeline-agent", "hyperv", "--agents", "mom"], "--timeline-agent 'hyperv'"),
    ],
)
def test_bad_input_fails_fast_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as exc:
        main([*args, "--out", str(out)])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()  # failed before any work


def test_unwritable_out_fails_fast(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a directory")
    for out in (blocker, blocker / "sub"):
        with pytest.raises(SystemExit) as exc:
            main(["--out", str(out)])
        assert exc.value.code == 2
        assert "not a directory" in capsys.readouterr().err


def test_overwrite_replaces_only_the_files_of_the_earlier_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    base = ["--agents", "static", "--scenarios", "idle-tax", "--seeds", "2"]
    base += ["--max-episode-steps", "3", "--bootstrap-reps", "50", "--no-progress"]
    assert main([*base, "--out", str(out)]) == 0
    (out / "notes.txt").write_text("mine")
    stale = out / "timeline_idle-tax.png"
    assert stale.is_file()
    assert main([*base, "--timeline-agent", "clairvoyant", "--overwrite", "--out", str(out)]) == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "results.csv").is_file() and stale.is_file()
