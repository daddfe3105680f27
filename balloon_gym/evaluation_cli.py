"""``evaluate.py``'s command line: parse and check the request, evaluate, write the outputs.

The protocol itself (seeds, batches, metrics, results files) is :mod:`balloon_gym.evaluation`;
this module only turns arguments into a :class:`RunConfig`, fails fast on bad input (exit code
2 and one line naming the argument and the fix, before any work and before any file is
written) and writes ``results.csv``, ``leaderboard.md``, plots and ``run.json``.

Outputs are written into a hidden temporary directory beside ``--out`` (``.NAME.tmp-XXXX``) and
renamed into place only once complete, so a run that fails or is interrupted leaves ``--out``
as it was: absent, or the previous run's results (``--overwrite``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from balloon_gym import __version__
from balloon_gym.agents import AGENTS, AgentSpecError, check_agent_spec
from balloon_gym.cli_parser import ArgumentParser, one_line
from balloon_gym.config import ConfigError
from balloon_gym.evaluation import (
    DEFAULT_NUM_SEEDS,
    EVAL_SEED_START,
    EVAL_TRACE_SPLIT,
    REFERENCE_AGENTS,
    check_agents_fit,
    evaluate,
    evaluation_seeds,
    write_results_csv,
)
from balloon_gym.leaderboard import write_leaderboard
from balloon_gym.scenarios import BALLOONBENCH_V1, ENV_VERSION, load_scenario

MANIFEST = "run.json"
"""File in the output directory listing the files a run wrote (and its command and config)."""

KIND = "evaluation"
"""``run.json``'s ``kind``: marks a directory as evaluation output (``--overwrite`` checks it)."""

TRAINING_MARKERS: tuple[str, ...] = ("policy.json", "policy.pth", "checkpoint", "model.zip")
"""Files of a ``train.py`` run directory; ``--overwrite`` never replaces a directory with one."""

TRACE_SPLITS: tuple[str, ...] = ("heldout", "train", "all")
"""``--trace-split`` choices (``heldout``: the benchmark's protocol)."""

MAX_SEEDS = 1000
"""Most evaluation seeds per scenario (each is one env of a batch, held in memory at once)."""

MAX_EPISODE_STEPS = 10**6
"""Longest episode (the scenario files' own bound on ``episode_steps``)."""

MAX_BOOTSTRAP_REPS = 100_000
"""Most bootstrap replicates of the leaderboard's intervals."""


@dataclass(frozen=True)
class RunConfig:
    """A validated evaluation request (everything the command line decides).

    Attributes:
        agents: Agents to evaluate, in order (reference agents appended if missing).
        scenarios: Scenarios, in order.
        seeds: Seed labels.
        max_episode_steps: Episode length, or None for each scenario's.
        out_dir: Output directory.
        overwrite: Replace an earlier evaluation's output in ``out_dir``.
        timeline_agent: Agent whose first episode per scenario is plotted as a timeline.
        bootstrap_reps: Bootstrap replicates of the intervals.
        progress: Show progress on stderr.
        trace_split: Trace VMs that trace-replay guests draw (``heldout``: the protocol).
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
    trace_split: str = EVAL_TRACE_SPLIT


def _bounded_int(maximum: int, what: str) -> Any:
    """An argparse type: a whole number in ``[1, maximum]`` written in ASCII digits."""

    def parse(text: str) -> int:
        word = text.strip()
        shown = word if len(word) <= 24 else f"{word[:20]}..."
        if not re.fullmatch(r"[+-]?[0-9]+", word):
            raise argparse.ArgumentTypeError(
                f"{shown!r} is not a whole number; give {what} between 1 and {maximum}"
            )
        digits = word.lstrip("+-").lstrip("0")
        value = int(word) if len(digits) <= 18 else None  # no 10,000-digit conversions
        if value is not None and value < 1:
            raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
        if value is None or value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum} ({what}), got {shown}")
        return value

    return parse


def build_parser() -> ArgumentParser:
    """The ``evaluate.py`` argument parser."""
    parser = ArgumentParser(
        prog="evaluate.py",
        description="Evaluate schedulers on BalloonBench and write results.csv, "
        "leaderboard.md, plots and run.json into --out. Bad input exits with code 2 before "
        "anything is written; the outputs appear in --out only once the run is complete.",
    )
    parser.add_argument(
        "--agents",
        default=",".join(AGENTS),
        help=f"comma-separated agents (default: all: {','.join(AGENTS)}); trained agents "
        "as kind:DIR, e.g. ppo:runs/idle-ppo (a train.py run directory, loaded safely)",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(BALLOONBENCH_V1),
        help="comma-separated scenario names or YAML paths (default: the BalloonBench v1 "
        f"suite: {','.join(BALLOONBENCH_V1)})",
    )
    parser.add_argument(
        "--seeds",
        type=_bounded_int(MAX_SEEDS, "a number of seeds"),
        default=DEFAULT_NUM_SEEDS,
        metavar="N",
        help=f"number of evaluation seeds: seeds {EVAL_SEED_START}..{EVAL_SEED_START}+N-1, "
        f"N from 1 to {MAX_SEEDS} (default {DEFAULT_NUM_SEEDS})",
    )
    parser.add_argument(
        "--max-episode-steps",
        type=_bounded_int(MAX_EPISODE_STEPS, "a number of steps"),
        default=None,
        help="episode length in steps (default: each scenario's, 360 = 1 h)",
    )
    parser.add_argument(
        "--trace-split",
        choices=TRACE_SPLITS,
        default=EVAL_TRACE_SPLIT,
        help="trace VMs that trace-replay guests draw from each scenario's trace_source: "
        "heldout (default, the benchmark's protocol), train or all (e.g. for a trace bank of "
        "your own; not comparable with held-out results)",
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier evaluation's output in --out (only once the new run is "
        "complete; files the earlier run did not write are kept; never a train.py run "
        "directory or any directory that is not evaluate.py output)",
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
        "--bootstrap-reps",
        type=_bounded_int(MAX_BOOTSTRAP_REPS, "a number of replicates"),
        default=2000,
        help="bootstrap replicates",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _split(text: str) -> list[str]:
    return list(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))


def _is_evaluation_output(out: Path) -> bool:
    """Whether ``out`` holds evaluate.py output (and no train.py run)."""
    if any((out / name).exists() for name in TRAINING_MARKERS):
        return False
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = None
    if isinstance(manifest, dict) and "kind" in manifest:
        return manifest["kind"] == KIND
    # Outputs written before run.json had a kind: results.csv and leaderboard.md.
    return (out / "results.csv").is_file() and (out / "leaderboard.md").is_file()


def out_dir_problem(out: Path, overwrite: bool) -> str | None:
    """An error message if ``out`` cannot take a run's outputs, else None.

    ``out`` is replaced as a whole (see the module docstring), so it must be absent, empty, or
    (with ``overwrite``) an earlier evaluation's output; its parent must be writable.
    """
    target = Path(os.path.realpath(out))
    if target.exists() and not target.is_dir():
        return f"--out {out} exists and is not a directory; choose a directory path"
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        return f"--out {out} is the current directory or contains it; choose another directory"
    if target.is_dir():
        try:
            empty = not any(target.iterdir())
        except OSError as err:
            return f"--out {out} cannot be read ({err.strerror}); choose another directory"
        if not empty and not overwrite:
            return (
                f"--out {out} exists and is not empty; choose a new directory or pass "
                "--overwrite (which replaces an earlier evaluation's output there)"
            )
        if not empty and not _is_evaluation_output(target):
            return (
                f"--out {out} holds something other than evaluate.py output (a train.py run, "
                "or no run.json of kind evaluation / results.csv and leaderboard.md); "
                "--overwrite only replaces evaluation output; choose another directory"
            )
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"--out {out}: {parent} is not a directory; choose a directory path"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"--out {out}: {parent} is not writable; choose a writable location"
    return None


def _check_agents(agents: list[str]) -> str | None:
    """An error message for the first agent that cannot be built, else None."""
    for name in agents:
        try:
            check_agent_spec(name)
        except AgentSpecError as err:
            return f"--agents: {err}"
        except OSError as err:  # e.g. an unreadable policy.json
            return f"--agents: agent {name!r}: {err}; check the run directory"
    return None


def _check_scenario(name: str, trace_split: str) -> tuple[str | None, str | None]:
    """``(scenario name, None)`` if ``name`` loads and its traces are usable, else
    ``(None, error message)``: the trace bank of every ``trace_source`` is loaded now
    (:func:`balloon_gym.core.tracebank.check_source`), and the env's parameters are built."""
    from balloon_gym.core.params import params_from_scenario
    from balloon_gym.core.tracebank import check_source

    try:
        cfg = load_scenario(name)
    except ConfigError as err:
        return None, f"--scenarios: {err}"
    guests = cfg.expanded_guests()
    sources = sorted({g.workload.trace_source for g in guests if g.workload.kind == "trace"})
    for source in sources:
        try:
            check_source(source)
        except ConfigError as err:
            return None, f"--scenarios {name}: {err}"
        try:
            check_source(source, trace_split)
        except ConfigError as err:
            return None, f"--trace-split {trace_split}: scenario {name}: {err}"
    try:  # whatever else the env would refuse, refused now
        params_from_scenario(cfg, None, trace_split)
    except (ConfigError, ValueError) as err:
        return None, f"--scenarios {name}: {err}"
    return cfg.name, None


def parse_args(argv: Sequence[str] | None = None) -> RunConfig:
    """Parse and validate the command line; bad input exits with code 2 before any work.

    Raises:
        SystemExit: With code 2 and a message naming the bad value and the fix.
    """
    parser = build_parser()
    args = parser.parse_args(argv)

    def fail(message: str) -> NoReturn:
        parser.error(one_line(message))

    if not args.out.strip():
        fail("--out is empty; give an output directory")
    out = Path(args.out)
    problem = out_dir_problem(out, args.overwrite)
    if problem:
        fail(problem)
    agents = _split(args.agents)
    if not agents:
        fail("--agents is empty; name at least one agent")
    problem = _check_agents(agents)
    if problem:
        fail(problem)
    if not args.no_references:
        agents += [a for a in REFERENCE_AGENTS if a not in agents]
    scenarios = _split(args.scenarios)
    if not scenarios:
        fail("--scenarios is empty; name at least one scenario")
    names: dict[str, str] = {}
    for scenario in scenarios:
        name, problem = _check_scenario(scenario, args.trace_split)
        if problem or name is None:
            fail(problem or f"--scenarios {scenario}: cannot be loaded")
        if name in names:
            fail(
                f"--scenarios: {names[name]} and {scenario} are both named {name!r}; "
                "give scenarios distinct names"
            )
        names[name] = scenario
    try:
        check_agents_fit(agents, scenarios)
    except (ConfigError, OSError, ValueError) as err:
        fail(f"--agents: {err}")
    timeline = args.timeline_agent or ("esx_idle_tax" if "esx_idle_tax" in agents else agents[0])
    if timeline not in agents:
        fail(f"--timeline-agent {timeline!r} is not among --agents ({','.join(agents)})")
    return RunConfig(
        agents=tuple(agents),
        scenarios=tuple(scenarios),
        seeds=evaluation_seeds(args.seeds),
        max_episode_steps=args.max_episode_steps,
        out_dir=out,
        overwrite=args.overwrite,
        timeline_agent=timeline,
        bootstrap_reps=args.bootstrap_reps,
        progress=not args.no_progress,
        trace_split=args.trace_split,
    )


def git_commit() -> str | None:
    """HEAD of the git checkout balloon-gym runs from, or None (an installed package)."""
    package = Path(__file__).resolve().parent
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "HEAD"],
            cwd=package,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except OSError:
        return None
    lines = done.stdout.split()
    if done.returncode != 0 or len(lines) != 2:
        return None
    top, commit = lines
    # Only this package's own checkout: not a repository that merely contains site-packages.
    if (Path(top).resolve() / package.name) != package:
        return None
    return commit


def _write_outputs(config: RunConfig, out: Path, command: str) -> dict[str, Any]:
    """Evaluate and write every output into the (new, empty) directory ``out``."""
    result = evaluate(
        config.agents,
        config.scenarios,
        config.seeds,
        config.max_episode_steps,
        timeline_agents=(config.timeline_agent,),
        progress=config.progress,
        trace_split=config.trace_split,
    )
    files = [write_results_csv(result.rows, out / "results.csv").name]
    meta = {
        "kind": KIND,
        "command": command,
        "agents": list(config.agents),
        "scenarios": list(config.scenarios),
        "seeds": list(config.seeds),
        "max_episode_steps": config.max_episode_steps,
        "env_version": f"v{ENV_VERSION}",
        "package_version": __version__,
        "git_commit": git_commit(),
        "hostname": socket.gethostname(),
        "trace_split": config.trace_split,
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


def _keep_other_files(old: Path, new: Path) -> None:
    """Copy into ``new`` what ``old`` holds that its run did not write (e.g. notes)."""
    try:
        written = json.loads((old / MANIFEST).read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        written = []
    skip = {str(name) for name in written if isinstance(name, str)} | {MANIFEST}
    for entry in old.iterdir():
        if entry.name in skip or (new / entry.name).exists():
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, new / entry.name, symlinks=True)
        else:
            shutil.copy2(entry, new / entry.name, follow_symlinks=False)


def _make_dirs(path: Path) -> list[Path]:
    """``mkdir -p path``; returns the directories created, outermost first."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
    return list(reversed(missing))


def _swap_in(new: Path, target: Path) -> None:
    """Put the complete directory ``new`` at ``target``, replacing (and deleting) what was
    there; if the final rename fails or is interrupted, the old directory is put back."""
    if not target.exists():
        os.rename(new, target)
        return
    trash = target.with_name(f".{target.name[:100]}.old-{secrets.token_hex(4)}")
    os.rename(target, trash)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(trash, target)
        raise
    try:
        shutil.rmtree(trash)
    except (OSError, KeyboardInterrupt) as err:  # the new results are in place regardless
        print(f"evaluate.py: warning: could not delete {trash}: {err}", file=sys.stderr)


def run(config: RunConfig, command: str = "") -> dict[str, Any]:
    """Evaluate, then write ``results.csv``, ``leaderboard.md``, plots and ``run.json``.

    Everything is written into a temporary directory beside ``config.out_dir`` that replaces it
    only once complete: on any failure (or Ctrl-C) ``out_dir`` is left as it was.

    Returns:
        The manifest (config, versions, files written, wall time).

    Raises:
        FileExistsError: If ``out_dir`` cannot be replaced (see :func:`out_dir_problem`).
    """
    problem = out_dir_problem(config.out_dir, config.overwrite)
    if problem:
        raise FileExistsError(problem)
    target = Path(os.path.realpath(config.out_dir))
    created = _make_dirs(target.parent)
    tmp: Path | None = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name[:100]}.tmp-", dir=target.parent))
        manifest = _write_outputs(config, tmp, command)
        if target.is_dir():
            _keep_other_files(target, tmp)
            mode = stat.S_IMODE(target.stat().st_mode)
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o777 & ~umask
        tmp.chmod(mode)  # mkdtemp's 0700 -> what a plain mkdir (or the old directory) had
        _swap_in(tmp, target)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        for directory in reversed(created):
            try:
                directory.rmdir()
            except OSError:
                break
        raise
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    """``evaluate.py``: parse, evaluate, write; returns the exit code (2: bad input)."""
    config = parse_args(argv)
    words = list(sys.argv[1:] if argv is None else argv)
    command = shlex.join(["python", "evaluate.py", *words])
    try:
        manifest = run(config, command)
    except KeyboardInterrupt:
        print(f"evaluate.py: interrupted; {config.out_dir} was left as it was", file=sys.stderr)
        return 130
    print(
        f"evaluated {len(config.agents)} agents x {len(config.scenarios)} scenarios x "
        f"{len(config.seeds)} seeds in {manifest['evaluation_wall_s']:.1f} s; wrote "
        f"{', '.join(manifest['files'])} into {config.out_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
