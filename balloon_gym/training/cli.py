"""``train.py``: the command line of :mod:`balloon_gym.training`.

    python train.py                                   # short PPO run on idle-tax + evaluation
    python train.py --scenario idle-tax --algo ppo --timesteps 200000 --seed 0 --out DIR
    python train.py --scenario idle-tax,diurnal --hp learning_rate=1e-4 n_envs=64 --out DIR
    python train.py --resume DIR [--timesteps 400000]

Bad arguments exit with code 2 and a one-line message before anything is written. SIGINT
(Ctrl-C) or SIGTERM during training exports the policy so far into the run directory, marks
``run.json`` ``interrupted`` and exits with 130 (SIGINT) or 143 (SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import math
import os
import shlex
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from balloon_gym.agents import CLASSIC_AGENTS
from balloon_gym.cli_parser import ArgumentParser
from balloon_gym.config import ConfigError
from balloon_gym.scenarios import load_scenario
from balloon_gym.training.callbacks import raise_on_sigterm
from balloon_gym.training.config import (
    ALGOS,
    TrainConfigError,
    load_algo_config,
    parse_overrides,
)
from balloon_gym.training.envs import MAX_SEED
from balloon_gym.training.trainer import TrainRequest, check_resumable

DEFAULT_TIMESTEPS = 50_000
"""Timesteps of ``python train.py`` without arguments (a few minutes on a laptop CPU)."""

FINAL_BASELINES: tuple[str, ...] = (*CLASSIC_AGENTS, "clairvoyant")
"""Agents evaluated beside the trained policy at the end of a run."""

MAX_TIMESTEPS = 10**12
MAX_EVAL_SEEDS = 1000


def _count(text: str) -> int:
    """An argparse type: a whole number in ASCII digits, also written like ``2e5``."""
    if not text.isascii():
        raise argparse.ArgumentTypeError(f"expected a whole number like 200000 or 2e5: {text!r}")
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value != int(value):
        raise argparse.ArgumentTypeError(f"expected a whole number like 200000 or 2e5: {text!r}")
    return int(value)


def build_parser() -> ArgumentParser:
    """The ``train.py`` argument parser."""
    p = ArgumentParser(
        prog="train.py",
        description="Train a balloon scheduler with stable-baselines3 on balloon-gym's own "
        "batched SB3 VecEnv, then evaluate it against the baselines on seeds 10000..",
    )
    p.add_argument("--scenario", default="idle-tax", help="scenario(s), comma-separated")
    p.add_argument("--algo", default="ppo", help=f"one of {', '.join(ALGOS)} (default ppo)")
    p.add_argument(
        "--timesteps",
        type=_count,
        default=None,
        help=f"total environment steps (default {DEFAULT_TIMESTEPS}; with --resume: the "
        "run's own target, or a new, larger one)",
    )
    p.add_argument("--seed", type=_count, default=0, help=f"training seed, 0..{MAX_SEED - 1}")
    p.add_argument("--out", type=Path, default=None, help="run directory (default runs/<time>)")
    p.add_argument(
        "--hp", nargs="*", default=[], metavar="KEY=VALUE", help="hyperparameter overrides"
    )
    p.add_argument("--config-dir", type=Path, default=None, help="directory with <algo>.yaml")
    p.add_argument("--resume", type=Path, default=None, metavar="DIR", help="continue a run")
    p.add_argument("--overwrite", action="store_true", help="reuse a non-empty --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--eval-seeds",
        type=_count,
        default=10,
        help=f"final evaluation seeds, 0..{MAX_EVAL_SEEDS} (0: no evaluation)",
    )
    return p


def _error(parser: argparse.ArgumentParser, message: str) -> None:
    """``parser.error``: the message on one line, exit code 2."""
    parser.error(message)


def _check_timesteps(parser: argparse.ArgumentParser, timesteps: int) -> None:
    if not 1 <= timesteps <= MAX_TIMESTEPS:
        shown = timesteps if abs(timesteps) < 10**15 else f"{timesteps:.3g}"
        _error(parser, f"--timesteps must be in 1..{MAX_TIMESTEPS:.0e}, got {shown}")


def _check_scenarios(parser: argparse.ArgumentParser, scenarios: list[str]) -> None:
    for s in scenarios:
        try:
            load_scenario(s)
        except ConfigError as err:  # the loader reports every bad file as one
            _error(parser, f"--scenario: {err}")


def _resume_request(args: argparse.Namespace, parser: argparse.ArgumentParser) -> TrainRequest:
    run = args.resume
    if args.hp or args.out is not None:
        _error(parser, "--resume DIR continues DIR with its own config; drop --hp and --out")
    try:
        saved = check_resumable(run)
    except TrainConfigError as err:
        _error(parser, f"--resume {run}: {err}")
    _check_scenarios(parser, saved["scenarios"])
    timesteps = saved["timesteps"] if args.timesteps is None else args.timesteps
    _check_timesteps(parser, timesteps)
    problem = _probe_writable(run)
    if problem:
        _error(parser, f"--resume {run}: {problem}")
    return TrainRequest(
        algo=saved["algo"],
        scenarios=list(saved["scenarios"]),
        seed=int(saved["seed"]),
        timesteps=int(timesteps),
        out=run,
        config=saved["hyperparameters"],
        resume=True,
    )


def _probe_writable(out: Path) -> str | None:
    """Why ``out`` cannot be created and written to, or None; leaves nothing behind."""
    created: list[Path] = []
    try:
        target = out.resolve()  # ".." and symlinks as the kernel will follow them
        top = target
        while not top.exists():
            top = top.parent
        if not top.is_dir():
            return f"{top} is not a directory"
        for missing in reversed([target, *target.parents]):
            if missing.is_relative_to(top) and missing != top:
                missing.mkdir()
                created.append(missing)
        fd, probe = tempfile.mkstemp(dir=target, prefix=".write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        return f"cannot write there ({err.strerror or err})"
    except RuntimeError as err:  # a symlink loop
        return f"cannot resolve the path ({err})"
    finally:
        for d in reversed(created):
            with contextlib.suppress(OSError):
                d.rmdir()
    return None


def _check_out(out: Path, overwrite: bool) -> str | None:
    try:
        if out.exists() and not out.is_dir():
            return f"--out {out} exists and is not a directory"
        if out.is_dir() and any(out.iterdir()) and not overwrite:
            return (
                f"--out {out} exists and is not empty; choose a new directory, continue it "
                f"with --resume {out}, or pass --overwrite"
            )
    except OSError as err:
        return f"--out {out}: {err.strerror or err}"
    problem = _probe_writable(out)
    return f"--out {out}: {problem}" if problem else None


def parse_args(argv: Sequence[str] | None = None) -> TrainRequest:
    """Parse and validate; bad input exits with code 2 before anything is written."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 <= args.eval_seeds <= MAX_EVAL_SEEDS:
        _error(parser, f"--eval-seeds must be in 0..{MAX_EVAL_SEEDS}, got {args.eval_seeds}")
    if args.resume is not None:
        req = _resume_request(args, parser)
    else:
        if args.algo not in ALGOS:
            _error(parser, f"--algo {args.algo!r} unknown; choose from {', '.join(ALGOS)}")
        scenarios = [s.strip() for s in args.scenario.split(",") if s.strip()]
        if not scenarios:
            _error(parser, "--scenario is empty")
        _check_scenarios(parser, scenarios)
        timesteps = DEFAULT_TIMESTEPS if args.timesteps is None else args.timesteps
        _check_timesteps(parser, timesteps)
        if not 0 <= args.seed < MAX_SEED:
            _error(parser, f"--seed must be in 0..{MAX_SEED - 1} (env seeds stay below 10000)")
        try:
            cfg = load_algo_config(args.algo, scenarios, parse_overrides(args.hp), args.config_dir)
        except TrainConfigError as err:
            _error(parser, str(err))
        out = args.out
        if out is None:
            stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            out = Path("runs") / f"{args.algo}-{'+'.join(scenarios)}-s{args.seed}-{stamp}"
        problem = _check_out(out, args.overwrite)
        if problem:
            _error(parser, problem)
        req = TrainRequest(args.algo, scenarios, args.seed, timesteps, out, cfg)
    req.progress = not args.no_progress
    req.final_eval_seeds = args.eval_seeds
    return req


def final_evaluation(req: TrainRequest) -> list[dict[str, Any]]:
    """Evaluate ``algo:DIR`` beside the baselines (``evaluate.py``'s path) into ``DIR/eval``."""
    from balloon_gym.evaluation import evaluation_seeds, read_results_csv
    from balloon_gym.evaluation_cli import RunConfig, run

    spec = f"{req.algo}:{req.out}"
    cfg = RunConfig(
        agents=(spec, *FINAL_BASELINES),
        scenarios=tuple(req.scenarios),
        seeds=evaluation_seeds(req.final_eval_seeds),
        max_episode_steps=req.config.get("max_episode_steps"),
        out_dir=req.out / "eval",
        overwrite=True,
        timeline_agent=spec,
        bootstrap_reps=1000,
        progress=False,
    )
    run(cfg, command=f"(train.py final evaluation of {spec})")
    return read_results_csv(req.out / "eval" / "results.csv")


def format_table(rows: list[dict[str, Any]]) -> str:
    """Per scenario and agent: mean score, normalised score, OOMs and host swap per episode."""
    lines = [
        f"{'scenario':18} {'agent':40} {'score':>7} {'norm':>7} {'ooms':>6} {'swapGiB':>8}",
    ]
    for scenario in dict.fromkeys(r["scenario"] for r in rows):
        sub = [r for r in rows if r["scenario"] == scenario]
        mean = {
            a: {
                k: float(np.mean([r[k] for r in sub if r["agent"] == a]))
                for k in ("score", "ooms", "host_swap_gib")
            }
            for a in dict.fromkeys(r["agent"] for r in sub)
        }
        low = mean.get("proportional_share", {}).get("score", np.nan)
        high = mean.get("clairvoyant", {}).get("score", np.nan)
        for a, m in sorted(mean.items(), key=lambda kv: -kv[1]["score"]):
            norm = (m["score"] - low) / (high - low) if high - low > 1e-9 else float("nan")
            name = a if len(a) <= 40 else "..." + a[-37:]
            lines.append(
                f"{scenario:18} {name:40} {m['score']:7.4f} {norm:7.3f} {m['ooms']:6.2f} "
                f"{m['host_swap_gib']:8.3f}"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``train.py``: parse, train, evaluate; returns the exit code.

    0: done; 2: bad input (nothing written); 130/143: interrupted by SIGINT/SIGTERM (the
    policy so far is exported and ``run.json`` says ``interrupted``).
    """
    req = parse_args(argv)
    words = list(sys.argv[1:] if argv is None else argv)
    req.command = shlex.join(["python", "train.py", *words])
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, raise_on_sigterm)
    try:
        return _train_and_evaluate(req)
    except KeyboardInterrupt as err:
        signum = getattr(err, "signum", signal.SIGINT)
        print(f"train.py: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + int(signum)


def _train_and_evaluate(req: TrainRequest) -> int:
    import torch

    from balloon_gym.training.trainer import RunDirectoryError, Trainer

    torch.set_num_threads(1)  # small networks: one thread is fastest and shares the CPU
    try:
        trainer = Trainer(req)
    except RunDirectoryError as err:  # a resumed checkpoint that does not fit its config
        build_parser().error(" ".join(str(err).split()))
    trainer.train()
    if req.final_eval_seeds > 0:
        rows = final_evaluation(req)
        print(f"\nevaluation on seeds 10000..{10000 + req.final_eval_seeds - 1} (held-out):")
        print(format_table(rows))
        print(
            f"\nleaderboard: {req.out / 'eval' / 'leaderboard.md'}; "
            f"evaluate again: python evaluate.py --agents {req.algo}:{req.out},esx_idle_tax "
            f"--scenarios {','.join(req.scenarios)} --out DIR"
        )
    return 0
