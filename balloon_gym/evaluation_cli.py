"""``evaluate.py``'s command line: parse and check the request, evaluate, write the outputs.

The protocol itself (seeds, batches, metrics, results files) is :mod:`balloon_gym.evaluation`;
this module only turns arguments into a :class:`RunConfig`, fails fast on bad input (exit code
2, before any work) and writes ``results.csv``, ``leaderboard.md``, plots and ``run.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from balloon_gym import __version__
from balloon_gym.agents import AGENTS, AgentSpecError, check_agent_spec
from balloon_gym.config import ConfigError
from balloon_gym.evaluation import (
    DEFAULT_NUM_SEEDS,
    EVAL_SEED_START,
    EVAL_TRACE_SPLIT,
    REFERENCE_AGENTS,
    evaluate,
    evaluation_seeds,
    write_results_csv,
)
from balloon_gym.leaderboard import write_leaderboard
from balloon_gym.scenarios import BALLOONBENCH_V0, ENV_VERSION, load_scenario

MANIFEST = "run.json"
"""File in the output directory listing the files a run wrote (and its command and config)."""


@dataclass(frozen=True)
class RunConfig:
    """A validated evaluation request (everything the command line decides).

    Attributes:
        agents: Agents to evaluate, in order (reference agents appended if missing).
        scenarios: Scenarios, in order.
        seeds: Seed labels.
        max_episode_steps: Episode length, or None for each scenario's.
        out_dir: Output directory.
        overwrite: Replace the files of an earlier run in ``out_dir``.
        timeline_agent: Agent whose first episode per scenario is plotted as a timeline.
        bootstrap_reps: Bootstrap replicates of the intervals.
        progress: Show progress on stderr.
    """

    agents: tuple[str, ...]
    scenarios: tuple[str, ...]
    seeds: tuple[int, ...]
    max_episode_steps: int | None
    out_dir: Path
    overwrite: bool
    timeline_agent: str
    bootstrap_reps: int
    progress: bool


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``evaluate.py`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="evaluate.py",
        description="Evaluate schedulers on BalloonBench and write results.csv, "
        "leaderboard.md and plots into --out.",
    )
    parser.add_argument(
        "--agents",
        default=",".join(AGENTS),
        help=f"comma-separated agents (default: all: {','.join(AGENTS)}); trained agents "
        "as kind:DIR, e.g. ppo:runs/idle-ppo (a train.py run directory, loaded safely)",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(BALLOONBENCH_V0),
        help="comma-separated scenario names or YAML paths (default: the BalloonBench v0 "
        f"suite: {','.join(BALLOONBENCH_V0)})",
    )
    parser.add_argument(
        "--seeds",
        type=_positive_int,
        default=DEFAULT_NUM_SEEDS,
        help=f"number of evaluation seeds, {EVAL_SEED_START}.. (default {DEFAULT_NUM_SEEDS})",
    )
    parser.add_argument(
        "--max-episode-steps",
        type=_positive_int,
        default=None,
        help="episode length in steps (default: each scenario's, 360 = 1 h)",
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the files an earlier run wrote into --out (other files are kept)",
    )
    parser.add_argument(
        "--no-references",
        action="store_true",
        help=f"do not add the normalisation's reference agents ({', '.join(REFERENCE_AGENTS)})",
    )
    parser.add_argument(
        "--timeline-agent",
        default=None,
        help="agent plotted in the allocation timelines (default esx_idle_tax if evaluated, "
        "else the first agent)",
    )
    parser.add_argument(
        "--bootstrap-reps", type=_positive_int, default=2000, help="bootstrap replicates"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _split(text: str) -> list[str]:
    return list(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))


def _check_out_dir(out: Path, overwrite: bool) -> str | None:
    """An error message if ``out`` cannot take this run's files, else None."""
    if out.exists() and not out.is_dir():
        return f"--out {out} exists and is not a directory; choose a directory path"
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        return (
            f"--out {out} exists and is not empty; choose a new directory or pass --overwrite "
            "(which replaces only the files an earlier run wrote there)"
        )
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"--out {out}: {parent} is not a directory; choose a directory path"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"--out {out}: {parent} is not writable; choose a writable location"
    return None


def parse_args(argv: Sequence[str] | None = None) -> RunConfig:
    """Parse and validate the command line; bad input exits with code 2 before any work.

    Raises:
        SystemExit: With code 2 and a message naming the bad value and the fix.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    agents = _split(args.agents)
    if not agents:
        parser.error("--agents is empty; name at least one agent")
    for name in agents:
        try:
            check_agent_spec(name)
        except AgentSpecError as err:
            parser.error(str(err))
    if not args.no_references:
        agents += [a for a in REFERENCE_AGENTS if a not in agents]
    scenarios = _split(args.scenarios)
    if not scenarios:
        parser.error("--scenarios is empty; name at least one scenario")
    for name in scenarios:
        try:
            load_scenario(name)
        except ConfigError as err:
            parser.error(f"--scenarios: {err}")
    timeline = args.timeline_agent or ("esx_idle_tax" if "esx_idle_tax" in agents else agents[0])
    if timeline not in agents:
        parser.error(f"--timeline-agent {timeline!r} is not among --agents ({','.join(agents)})")
    problem = _check_out_dir(args.out, args.overwrite)
    if problem:
        parser.error(problem)
    return RunConfig(
        agents=tuple(agents),
        scenarios=tuple(scenarios),
        seeds=evaluation_seeds(args.seeds),
        max_episode_steps=args.max_episode_steps,
        out_dir=args.out,
        overwrite=args.overwrite,
        timeline_agent=timeline,
        bootstrap_reps=args.bootstrap_reps,
        progress=not args.no_progress,
    )


def _remove_previous_run(out: Path) -> None:
    """Delete the files the previous run listed in its manifest (and nothing else)."""
    manifest = out / MANIFEST
    if not manifest.is_file():
        return
    try:
        files = json.loads(manifest.read_text(encoding="utf-8")).get("files", [])
    except (ValueError, AttributeError):
        return
    for name in [*files, MANIFEST]:
        target = out / Path(str(name)).name  # only plain names inside out
        if target.is_file():
            target.unlink()


def run(config: RunConfig, command: str = "") -> dict[str, Any]:
    """Evaluate, then write ``results.csv``, ``leaderboard.md``, plots and ``run.json``.

    Returns:
        The manifest (config, versions, files written, wall time).
    """
    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    if config.overwrite:
        _remove_previous_run(out)
    result = evaluate(
        config.agents,
        config.scenarios,
        config.seeds,
        config.max_episode_steps,
        timeline_agents=(config.timeline_agent,),
        progress=config.progress,
    )
    files = [write_results_csv(result.rows, out / "results.csv").name]
    meta = {
        "command": command,
        "agents": list(config.agents),
        "scenarios": list(config.scenarios),
        "seeds": list(config.seeds),
        "max_episode_steps": config.max_episode_steps,
        "env_version": f"v{ENV_VERSION}",
        "package_version": __version__,
        "trace_split": EVAL_TRACE_SPLIT,
        "evaluation_wall_s": round(result.wall_s, 3),
    }
    files += write_leaderboard(
        result.rows,
        out,
        timelines=[result.timelines[k] for k in sorted(result.timelines)],
        timeline_agent=config.timeline_agent,
        meta=meta,
        reps=config.bootstrap_reps,
    )
    manifest = {**meta, "files": files}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    """``evaluate.py``: parse, evaluate, write; returns the exit code (2: bad input)."""
    config = parse_args(argv)
    words = list(sys.argv[1:] if argv is None else argv)
    command = shlex.join(["python", "evaluate.py", *words])
    manifest = run(config, command)
    print(
        f"evaluated {len(config.agents)} agents x {len(config.scenarios)} scenarios x "
        f"{len(config.seeds)} seeds in {manifest['evaluation_wall_s']:.1f} s; wrote "
        f"{', '.join(manifest['files'])} into {config.out_dir}"
    )
    return 0
