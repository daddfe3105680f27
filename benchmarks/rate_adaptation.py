"""Rate adaptation (seed claim 8): every classic scheduler, all drivers naive vs all adaptive.

A ``rate_adaptive`` balloon driver never asks its guest for more memory in a step than the guest
can give (free pages, droppable page cache, anonymous pages it can swap out at
``swap_out_mib_s`` with free swap); a naive one asks at ``max_request_mib_s`` regardless, and
the excess costs ``stall_s_per_mib`` of guest time (and an OOM kill once guest swap is full).
This script runs each of :data:`balloon_gym.agents.CLASSIC_AGENTS` on a scenario twice, once with
every guest's driver set to rate-adaptive and once with every driver naive (nothing else
changes: same seeds, same workload draws), and prints the mean scores, the paired difference
``adaptive - naive`` with its normal 95 % interval over the seeds, and the OOM kills per episode.

Usage (from the repository root)::

    python benchmarks/rate_adaptation.py                      # slow-reclaim, 20 seeds
    python benchmarks/rate_adaptation.py bursty --seeds 5
    python benchmarks/rate_adaptation.py path/to/scenario.yaml --agents mom hyperv

Seeds are the evaluation seeds ``10000 .. 10000 + seeds - 1``. The table is in
``docs/rate-adaptation.md``.
"""

from __future__ import annotations

import argparse
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from balloon_gym.agents import CLASSIC_AGENTS, make_agent
from balloon_gym.evaluation import evaluation_seeds, run_batch


def driver_variants(scenario: str, out_dir: Path) -> dict[bool, str]:
    """Two copies of ``scenario`` (a shipped name or a YAML path) in ``out_dir``: every guest's
    driver rate-adaptive (key True) or naive (key False). Returns their paths."""
    if scenario.endswith((".yaml", ".yml")):
        src = Path(scenario)
    else:
        src = Path(str(resources.files("balloon_gym.configs") / "scenarios" / f"{scenario}.yaml"))
    paths = {}
    for adaptive in (True, False):
        doc = yaml.safe_load(src.read_text())
        for guest in doc["guests"]:
            guest["driver"] = {**(guest.get("driver") or {}), "rate_adaptive": adaptive}
        doc["name"] = f"{doc['name']}-{'adaptive' if adaptive else 'naive'}"
        path = out_dir / f"{doc['name']}.yaml"
        path.write_text(yaml.safe_dump(doc))
        paths[adaptive] = str(path)
    return paths


def compare(
    scenario: str, seeds: list[int], agents: list[str], max_episode_steps: int | None = None
) -> list[dict[str, float | str]]:
    """For each agent: mean score with adaptive and naive drivers, the paired difference, its
    95 % interval (normal, over the seeds) and the mean OOM kills per episode of each."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = driver_variants(scenario, Path(tmp))
        for agent in agents:
            res = {
                mode: run_batch(
                    lambda env, a=agent: make_agent(a, env),
                    path,
                    seeds,
                    max_episode_steps=max_episode_steps,
                ).metrics
                for mode, path in paths.items()
            }
            a, n = (np.asarray(res[m]["score"]) for m in (True, False))
            d = a - n
            half = 1.96 * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
            rows.append(
                {
                    "agent": agent,
                    "adaptive": float(a.mean()),
                    "naive": float(n.mean()),
                    "diff": float(d.mean()),
                    "lo": float(d.mean() - half),
                    "hi": float(d.mean() + half),
                    "ooms_adaptive": float(np.mean(res[True]["ooms"])),
                    "ooms_naive": float(np.mean(res[False]["ooms"])),
                }
            )
    return rows


def format_table(rows: list[dict[str, float | str]]) -> str:
    """The rows as the fixed-width table this script prints."""
    head = f"{'agent':20} {'adaptive':>9} {'naive':>9} {'diff':>8} {'95% CI':>18} {'ooms a/n':>10}"
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['agent']:20} {r['adaptive']:9.4f} {r['naive']:9.4f} {r['diff']:+8.4f} "
            f"[{r['lo']:+.4f}, {r['hi']:+.4f}] {r['ooms_adaptive']:4.2f}/{r['ooms_naive']:4.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the comparison and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "scenario", nargs="?", default="slow-reclaim", help="shipped name or YAML path"
    )
    parser.add_argument("--seeds", type=int, default=20, help="evaluation seeds (from 10000)")
    parser.add_argument(
        "--agents", nargs="+", default=list(CLASSIC_AGENTS), help="agents (default: classic)"
    )
    parser.add_argument("--steps", type=int, default=None, help="episode length (default: own)")
    args = parser.parse_args(argv)
    seeds = list(evaluation_seeds(args.seeds))
    print(format_table(compare(args.scenario, seeds, args.agents, args.steps)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
