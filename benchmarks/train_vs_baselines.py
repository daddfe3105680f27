"""Train PPO on each BalloonBench scenario (several training seeds) and compare it with the
best classic baseline on the held-out evaluation seeds.

    nohup python benchmarks/train_vs_baselines.py --timesteps 150000 --seeds 3 --jobs 2 \
        > runs/train_vs_baselines.log 2>&1 &

One policy per scenario (not one across all): the scenarios have different guest counts (2 to
32) and the question asked is per scenario ("does the learned scheduler beat esx_idle_tax on
X?"); a per-scenario policy is the fair, cheap answer. ``train.py --scenario a,b`` trains one
policy over several.

Each (scenario, seed) run is ``train.py`` in a subprocess (``runs/train_vs_baselines/<scenario>/
seed<k>``), ``--jobs`` at a time. Resumable: ``state.json`` in the runs directory lists finished
runs (skipped on restart); a run that stopped part-way resumes from its last checkpoint
(``train.py --resume``). The report (``--out``): ``results.md``, ``results.csv`` (one row per
scenario), ``episodes.csv`` (every evaluation episode) and ``summary.json`` (budget, command,
wall time, the simulator's share of training time). ``--report-only`` rewrites the report from
finished runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from balloon_gym import stats
from balloon_gym.agents import CLASSIC_AGENTS
from balloon_gym.evaluation import read_results_csv
from balloon_gym.scenarios import BALLOONBENCH_V1, ENV_VERSION

ROOT = Path(__file__).resolve().parent.parent
_LOCK = threading.Lock()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenarios", default=",".join(BALLOONBENCH_V1))
    p.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1")
    p.add_argument("--timesteps", type=int, default=150_000, help="per run")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time")
    p.add_argument("--eval-seeds", type=int, default=10, help="evaluation seeds 10000..")
    p.add_argument("--algo", default="ppo")
    p.add_argument("--hp", nargs="*", default=[], help="overrides passed to train.py")
    p.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "train_vs_baselines")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/train_vs_baselines")
    p.add_argument("--report-only", action="store_true")
    p.add_argument(
        "--profile",
        metavar="SCENARIO",
        default=None,
        help="instead: cProfile one in-process training run of --timesteps on SCENARIO and "
        "write the time split (simulator, residual baseline, rollout policy, SGD) to --out",
    )
    args = p.parse_args(argv)
    if args.seeds < 1 or args.timesteps < 1 or args.jobs < 1 or args.eval_seeds < 1:
        p.error("--seeds, --timesteps, --jobs and --eval-seeds must be positive")
    return args


def budget_of(args: argparse.Namespace) -> dict[str, Any]:
    """What must not change between a run and its resumption."""
    return {
        "algo": args.algo,
        "timesteps": args.timesteps,
        "eval_seeds": args.eval_seeds,
        "hp": list(args.hp),
    }


def load_state(path: Path, budget: dict[str, Any]) -> dict[str, Any]:
    """The state file, created if missing; exits 2 if it was made with another budget."""
    if path.is_file():
        state = json.loads(path.read_text(encoding="utf-8"))
        if state["budget"] != budget:
            sys.exit(
                f"error: {path} was written with budget {state['budget']}, not {budget}; "
                "use another --runs-dir or the same arguments"
            )
        return state
    return {"budget": budget, "done": {}, "wall_s": 0.0}


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write the state file atomically."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def train_command(args: argparse.Namespace, scenario: str, seed: int, run: Path) -> list[str]:
    """``train.py`` for a fresh run, or ``--resume`` from its checkpoint."""
    base = [sys.executable, str(ROOT / "train.py"), "--no-progress"]
    base += ["--eval-seeds", str(args.eval_seeds)]
    if (run / "checkpoint" / "model.zip").is_file():
        return [*base, "--resume", str(run)]
    cmd = [*base, "--algo", args.algo, "--scenario", scenario, "--seed", str(seed)]
    cmd += ["--timesteps", str(args.timesteps), "--out", str(run), "--overwrite"]
    return [*cmd, "--hp", *args.hp] if args.hp else cmd


def run_one(
    args: argparse.Namespace, state: dict, state_path: Path, scenario: str, seed: int
) -> None:
    """Train and evaluate one (scenario, seed), then mark it done in the state file."""
    key = f"{scenario}/{seed}"
    run = args.runs_dir / scenario / f"seed{seed}"
    log = args.runs_dir / "logs" / f"{scenario}-seed{seed}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = train_command(args, scenario, seed, run)
    start = time.perf_counter()
    print(f"[bench] start {key}: {shlex.join(cmd)}", flush=True)
    with log.open("a", encoding="utf-8") as fh:
        code = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    wall = time.perf_counter() - start
    if code != 0:
        print(f"[bench] FAILED {key} (exit {code}); see {log}", flush=True)
        return
    info = json.loads((run / "run.json").read_text(encoding="utf-8"))
    with _LOCK:
        state["done"][key] = {
            "run": str(run.relative_to(ROOT)) if run.is_relative_to(ROOT) else str(run),
            "wall_s": round(wall, 1),
            "num_timesteps": info["num_timesteps"],
            "env_share": info.get("env_share_of_training_wall_time"),
            "learn_wall_s": sum(s["learn_wall_s"] for s in info.get("segments", [])),
        }
        save_state(state_path, state)
    print(f"[bench] done {key} in {wall:.0f} s", flush=True)


def _verdict(poi: stats.AggregateResult) -> str:
    """win / loss when the interval of P(X > Y) excludes 0.5, else tie."""
    return "win" if poi.lower > 0.5 else "loss" if poi.upper < 0.5 else "tie"


def _mean_ci(scores: np.ndarray) -> stats.AggregateResult:
    return stats.stratified_bootstrap_ci({"x": scores[:, None]}, stats.aggregate_mean)["x"]


def scenario_row(scenario: str, trained: list[dict], base: list[dict], algo: str) -> dict:
    """One report row: the trained policy against the best classic baseline."""

    def col(rows: list[dict], agent: str | None, key: str) -> np.ndarray:
        return np.array([r[key] for r in rows if agent is None or r["agent"] == agent])

    means = {a: col(base, a, "score").mean() for a in CLASSIC_AGENTS}
    best = max(means, key=lambda a: means[a])
    x, y = col(trained, None, "score"), col(base, best, "score")
    low, high = (
        col(base, "proportional_share", "score").mean(),
        col(base, "clairvoyant", "score").mean(),
    )
    ci_x, ci_y = _mean_ci(x), _mean_ci(y)
    poi = stats.probability_of_improvement_ci(x[:, None], y[:, None], reps=2000)
    verdict = _verdict(poi)
    vs = {
        a: _verdict(stats.probability_of_improvement_ci(x[:, None], col(base, a, "score")[:, None]))
        for a in ("esx_idle_tax", "mom")
    }
    gap = high - low
    seeds = sorted({r["train_seed"] for r in trained})
    return {
        "scenario": scenario,
        f"{algo}_score": x.mean(),
        f"{algo}_ci": (ci_x.lower, ci_x.upper),
        f"{algo}_norm": (x.mean() - low) / gap if gap > 1e-9 else float("nan"),
        f"{algo}_per_seed": [
            col([r for r in trained if r["train_seed"] == s], None, "score").mean() for s in seeds
        ],
        "best_classic": best,
        "best_score": y.mean(),
        "best_ci": (ci_y.lower, ci_y.upper),
        "esx_idle_tax": means["esx_idle_tax"],
        "mom": means["mom"],
        "clairvoyant": high,
        "poi": (poi.point, poi.lower, poi.upper),
        "verdict": verdict,
        "vs_esx_idle_tax": vs["esx_idle_tax"],
        "vs_mom": vs["mom"],
        f"{algo}_ooms": col(trained, None, "ooms").mean(),
        "best_ooms": col(base, best, "ooms").mean(),
        f"{algo}_host_swap_gib": col(trained, None, "host_swap_gib").mean(),
        "best_host_swap_gib": col(base, best, "host_swap_gib").mean(),
    }


def collect(args: argparse.Namespace, state: dict) -> tuple[list[dict], list[dict]]:
    """Report rows (one per scenario with finished runs) and every evaluation episode."""
    rows, episodes = [], []
    for scenario in [s for s in args.scenarios.split(",") if s]:
        trained, base = [], []
        for seed in range(args.seeds):
            if f"{scenario}/{seed}" not in state["done"]:
                continue
            run = args.runs_dir / scenario / f"seed{seed}"
            for r in read_results_csv(run / "eval" / "results.csv"):
                if ":" in r["agent"]:
                    trained.append({**r, "agent": args.algo, "train_seed": seed})
                elif not base or seed == min(
                    int(k.split("/")[1]) for k in state["done"] if k.startswith(scenario + "/")
                ):
                    base.append({**r, "train_seed": ""})
        if trained:
            rows.append(scenario_row(scenario, trained, base, args.algo))
            episodes += trained + base
    return rows, episodes


def aggregate_lines(episodes: list[dict], algo: str) -> list[str]:
    """The leaderboard's aggregate, for the trained policy beside every baseline.

    Per scenario, scores are normalised between ``proportional_share`` (0) and ``clairvoyant``
    (1) by their mean scores; the trained policy's runs are its training seeds x evaluation
    seeds. IQM with a 95 % stratified bootstrap interval, and P(trained > agent), as in
    ``leaderboard.md`` (``balloon_gym.stats``).
    """
    scenarios = sorted({e["scenario"] for e in episodes})
    by: dict[tuple[str, str], list[float]] = {}
    for e in episodes:
        by.setdefault((e["agent"], e["scenario"]), []).append(float(e["score"]))
    agents = sorted({a for a, s in by if all((a, t) in by for t in scenarios)})
    if not {"proportional_share", "clairvoyant", algo} <= set(agents):
        return []
    low = np.array([np.mean(by["proportional_share", s]) for s in scenarios])
    high = np.array([np.mean(by["clairvoyant", s]) for s in scenarios])
    norm = {
        a: (np.array([by[a, s] for s in scenarios]).T - low) / (high - low) for a in agents
    }  # (runs, scenarios)
    ci = stats.stratified_bootstrap_ci(norm, stats.iqm, reps=2000, seed=0)
    lines = [
        "",
        "## Aggregate over the scenarios (leaderboard form)",
        "",
        f"IQM of the normalised score over (run, scenario) with a 95 % stratified bootstrap "
        f"interval; P({algo} > agent) with its interval. {algo}'s runs: one policy per scenario "
        "and training seed, each evaluated on the held-out seeds.",
        "",
        f"| agent | IQM normalised score [95 % CI] | P({algo} > agent) [95 % CI] |",
        "|---|---|---|",
    ]
    for a in sorted(agents, key=lambda a: -ci[a].point):
        poi = "" if a == algo else stats.probability_of_improvement_ci(norm[algo], norm[a], seed=0)
        poi_text = "—" if a == algo else f"{poi.point:.2f} [{poi.lower:.2f}, {poi.upper:.2f}]"
        name = f"**{a}** (trained)" if a == algo else f"`{a}`"
        lines.append(
            f"| {name} | {ci[a].point:.3f} [{ci[a].lower:.3f}, {ci[a].upper:.3f}] | {poi_text} |"
        )
    return lines


def _fmt(v: Any) -> str:
    if isinstance(v, tuple | list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return f"{v:.4f}" if isinstance(v, float | np.floating) else str(v)


def write_report(args: argparse.Namespace, state: dict, command: str) -> None:
    """Write results.md/.csv, episodes.csv and summary.json into ``--out``."""
    rows, episodes = collect(args, state)
    if not rows:
        print("[bench] no finished runs yet")
        return
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    a = args.algo
    with (out / "results.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows([{k: _fmt(v) for k, v in r.items()} for r in rows])
    keys = ["scenario", "agent", "train_seed", "seed", "score", "ooms", "host_swap_gib"]
    with (out / "episodes.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(episodes)
    done = state["done"].values()
    shares = [d["env_share"] for d in done if d.get("env_share") is not None]
    summary = {
        "command": command,
        "budget": state["budget"],
        "training_seeds": args.seeds,
        "runs_finished": len(state["done"]),
        "bench_wall_s": round(state.get("wall_s", 0.0), 1),
        "sum_run_wall_s": round(sum(d["wall_s"] for d in done), 1),
        "mean_env_share_of_training_time": float(np.mean(shares)) if shares else None,
        "verdicts": {
            r["scenario"]: {k: r[k] for k in ("verdict", "vs_esx_idle_tax", "vs_mom")} for r in rows
        },
    }
    env_share = summary["mean_env_share_of_training_time"]
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    lines = [
        f"# {a.upper()} vs the best classic baseline (BalloonBench v{ENV_VERSION}, held-out seeds)",
        "",
        f"Command: `{command}`  ",
        f"Budget: {state['budget']['timesteps']} timesteps per run, {args.seeds} training "
        f"seeds, {state['budget']['eval_seeds']} evaluation seeds (10000..), hp overrides "
        f"{state['budget']['hp'] or 'none'}; {len(state['done'])} runs, benchmark wall "
        f"time {summary['bench_wall_s']:.0f} s.  ",
        f"Simulator share of training wall time: {100 * (env_share or 0):.1f} %.",
        "",
        f"Mean score per episode with 95 % bootstrap CI ({a}: all training seeds x evaluation "
        "seeds); norm = (score - proportional_share) / (clairvoyant - proportional_share); "
        f"P(>) = P({a} > best classic) with its CI; win/loss when its CI excludes 0.5.",
        "",
        f"| scenario | {a} | norm | per training seed | best classic | esx_idle_tax | mom | "
        f"clairvoyant | P(>) | vs best | vs esx / mom | OOMs {a} / best | "
        f"host swap GiB {a} / best |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['scenario']} | {r[a + '_score']:.4f} [{r[a + '_ci'][0]:.4f}, "
            f"{r[a + '_ci'][1]:.4f}] | {r[a + '_norm']:.2f} | "
            f"{' '.join(f'{s:.4f}' for s in r[a + '_per_seed'])} | {r['best_classic']} "
            f"{r['best_score']:.4f} [{r['best_ci'][0]:.4f}, {r['best_ci'][1]:.4f}] | "
            f"{r['esx_idle_tax']:.4f} | {r['mom']:.4f} | {r['clairvoyant']:.4f} | "
            f"{r['poi'][0]:.2f} [{r['poi'][1]:.2f}, {r['poi'][2]:.2f}] | {r['verdict']} | "
            f"{r['vs_esx_idle_tax']} / {r['vs_mom']} | "
            f"{r[a + '_ooms']:.2f} / {r['best_ooms']:.2f} | "
            f"{r[a + '_host_swap_gib']:.3f} / {r['best_host_swap_gib']:.3f} |"
        )
    lines += aggregate_lines(episodes, a)
    (out / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines), flush=True)


_PROFILE_PARTS = {
    "simulator (BalloonSB3VecEnv.step_wait + reset)": ("sb3.py", ("step_wait", "reset")),
    "residual baseline (esx_idle_tax.predict)": ("envs.py", ("_base_action",)),
    "VecNormalize": ("vec_normalize.py", ("step_wait", "reset")),
    "rollout collection (all)": ("on_policy_algorithm.py", ("collect_rollouts",)),
    "gradient updates (PPO.train)": ("ppo.py", ("train",)),
    "periodic evaluation": ("callbacks.py", ("evaluate_now", "_on_training_start")),
}


def profile_run(args: argparse.Namespace, scenario: str) -> dict[str, Any]:
    """cProfile one training run; cumulative time of each part of :data:`_PROFILE_PARTS`."""
    import cProfile
    import pstats
    import tempfile

    import torch

    from balloon_gym.training.config import load_algo_config, parse_overrides
    from balloon_gym.training.trainer import Trainer, TrainRequest

    torch.set_num_threads(1)
    cfg = load_algo_config(args.algo, [scenario], parse_overrides(args.hp))
    with tempfile.TemporaryDirectory() as tmp:
        req = TrainRequest(args.algo, [scenario], 0, args.timesteps, Path(tmp) / "run", cfg)
        req.progress = False
        trainer = Trainer(req)
        prof = cProfile.Profile()
        start = time.perf_counter()
        prof.enable()
        trainer.train()
        prof.disable()
        total = time.perf_counter() - start
    st = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    parts = {}
    for label, (file, funcs) in _PROFILE_PARTS.items():
        cum = sum(v[3] for (f, _, name), v in st.items() if f.endswith(file) and name in funcs)
        parts[label] = {"s": round(cum, 2), "share": round(cum / total, 3)}
    return {
        "scenario": scenario,
        "timesteps": args.timesteps,
        "total_s": round(total, 2),
        "hp": list(args.hp),
        "parts": parts,
    }


def main(argv: list[str] | None = None) -> int:
    """Run (or resume) the benchmark, then write the report."""
    args = parse_args(argv)
    if args.profile:
        result = profile_run(args, args.profile)
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"profile_{args.profile}.json"
        path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(json.dumps(result, indent=2))
        return 0
    args.runs_dir = args.runs_dir.resolve()
    words = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "benchmarks/train_vs_baselines.py", *words])
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    state_path = args.runs_dir / "state.json"
    state = load_state(state_path, budget_of(args))
    if not args.report_only:
        state.setdefault("commands", []).append(command)
        save_state(state_path, state)
        todo = [
            (s, k)
            for k in range(args.seeds)
            for s in args.scenarios.split(",")
            if s and f"{s}/{k}" not in state["done"]
        ]
        print(f"[bench] {len(todo)} runs to do, {len(state['done'])} done", flush=True)
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(run_one, args, state, state_path, s, k) for s, k in todo]
            for f in futures:
                f.result()
        with _LOCK:
            state["wall_s"] = state.get("wall_s", 0.0) + time.perf_counter() - start
            save_state(state_path, state)
    write_report(args, state, " && ".join(state.get("commands", [])) or command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
