"""Roll a simple scheduler out on a scenario and print what happened to each guest.

``python -m balloon_gym.demo [--scenario idle-tax] [--seed 0] [--steps N]``

The policy is the simplest a host could run: ask every guest for its maximum allocation and keep
all its vCPUs ("no ballooning"); the host's projection scales the guests' allocations above
their minimums down only as far as the memory they claim does not fit. It shows the environment
end to end with no training.
"""

from __future__ import annotations

import sys

import numpy as np

from balloon_gym.cli_parser import ArgumentParser
from balloon_gym.config import ConfigError
from balloon_gym.envs.render import render_host
from balloon_gym.envs.vector import BalloonVectorEnv


def run(scenario: str, seed: int, steps: int | None) -> str:
    """Roll out one episode; returns the report text."""
    env = BalloonVectorEnv(num_envs=1, scenario=scenario, max_episode_steps=steps)
    env.reset(seed=seed)
    params = env.batch.params
    names = [g.name for g in env.scenarios[0].expanded_guests()]
    num_guests = len(names)
    action = np.ones((1, 2 * params.max_guests), dtype=np.float32)
    sums = {k: np.zeros(num_guests) for k in ("tput", "alloc", "balloon", "faults", "oom", "stall")}
    score = swap = 0.0
    n = 0
    done = False
    while not done:
        _, _, term, trunc, info = env.step(action)
        s = env.batch.state
        for key, value in (
            ("tput", s.throughput),
            ("alloc", s.alloc_target),
            ("balloon", s.balloon),
            ("faults", s.fault_pages),
            ("oom", s.oom),
            ("stall", s.stall_s),
        ):
            sums[key] += value[0, :num_guests]
        score += float(info["score"][0])
        swap += float(info["host_swap_gib"][0])
        n += 1
        done = bool(term[0] or trunc[0])
    lines = [
        f"scenario {scenario}, seed {seed}, {n} steps of {params.dt_s[0, 0]:g} s, "
        "policy: every guest at max_mib (projected when short), all vCPUs",
        "",
        render_host(env.batch.state, params, 0, names).rstrip(),
        "",
        f"{'guest':<16}{'throughput':>11}{'alloc MiB':>11}{'balloon MiB':>13}"
        f"{'faults/step':>13}{'stall s/step':>14}{'OOMs':>6}",
    ]
    for i, name in enumerate(names):
        lines.append(
            f"{name[:15]:<16}{sums['tput'][i] / n:11.3f}{sums['alloc'][i] / n:11.0f}"
            f"{sums['balloon'][i] / n:13.0f}{sums['faults'][i] / n:13.0f}"
            f"{sums['stall'][i] / n:14.2f}{int(sums['oom'][i]):6d}"
        )
    lines += ["", f"score (mean share-weighted throughput): {score / n:.4f}",
              f"host swap: {swap:.2f} GiB"]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = ArgumentParser(prog="python -m balloon_gym.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="idle-tax", help="shipped name or YAML path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="episode length (steps)")
    args = parser.parse_args(argv)
    if args.steps is not None and not 1 <= args.steps <= 10**6:
        parser.error(f"--steps must be in 1..1000000, got {args.steps}")
    try:
        print(run(args.scenario, args.seed, args.steps))
    except (ConfigError, ValueError) as err:
        parser.error(str(err))
    return 0


if __name__ == "__main__":
    sys.exit(main())
