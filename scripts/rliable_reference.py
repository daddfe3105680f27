"""Prints rliable's reference numbers used by ``tests/test_stats.py``.

This script is NOT run by the test suite and needs rliable, which is not a dependency of
balloon-gym. Run it in a throwaway virtual environment outside the repository::

    python -m venv /tmp/rl-venv
    /tmp/rl-venv/bin/pip install rliable==1.2.0 'pandas<3' numpy scipy
    /tmp/rl-venv/bin/python scripts/rliable_reference.py            # ~2 min
    /tmp/rl-venv/bin/python scripts/rliable_reference.py --spread 5  # + spread, ~12 min

(rliable 1.2.0 imports ``arch``, reported to fail with pandas 3.x; pandas 2.3.3 with
arch 7.2.0 works.)

It builds a fixed small score dict (agents A and B with 10 runs and C with 12 runs on 5
tasks, scores in hundredths so that there are many ties, task 2 of B identical to task 2 of
A to exercise rliable's ``array_equal`` branch), then prints, as Python literals ready to
paste into the tests:

* the data itself (so the tests do not depend on numpy's random streams),
* rliable's IQM, mean, median and optimality gap point estimates and their stratified
  bootstrap 95 % percentile intervals (``rly.get_interval_estimates``, reps=20000),
* the probability of improvement of A over B and of A over C with their intervals.

With ``--spread K`` it repeats the interval computation with K more seeds and prints the
standard deviation of each interval end across seeds (the Monte-Carlo error of rliable's
intervals at that number of replicates), which is what the test tolerance is based on.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import pprint

import numpy as np
from rliable import library as rly
from rliable import metrics

AGENTS = ("A", "B", "C")
METRICS = ("iqm", "mean", "median", "optimality_gap")
REPS = 20000
SEED = 0


def make_scores() -> dict[str, np.ndarray]:
    """The fixed score dict: integers out of 100, so ties within and across agents."""
    rng = np.random.default_rng(0)
    a = rng.integers(30, 101, size=(10, 5))
    b = rng.integers(20, 91, size=(10, 5))
    b[:, 2] = a[:, 2]  # identical task column: P(A > B) on that task is exactly 1/2
    c = rng.integers(0, 101, size=(12, 5))
    return {"A": a / 100.0, "B": b / 100.0, "C": c / 100.0}


def all_metrics(scores: np.ndarray) -> np.ndarray:
    return np.array(
        [
            metrics.aggregate_iqm(scores),
            metrics.aggregate_mean(scores),
            metrics.aggregate_median(scores),
            metrics.aggregate_optimality_gap(scores),
        ]
    )


def estimates(score_dict: dict[str, np.ndarray], seed: int) -> tuple[dict, dict]:
    """Point estimates and 95 % intervals from rliable for every metric and P(A > X)."""
    # rliable's StratifiedBootstrap draws from numpy's global legacy RandomState.
    np.random.seed(seed)  # noqa: NPY002
    points, intervals = rly.get_interval_estimates(score_dict, all_metrics, reps=REPS)
    pairs = {
        "A>B": [score_dict["A"], score_dict["B"]],
        "A>C": [score_dict["A"], score_dict["C"]],
    }
    poi_points, poi_intervals = rly.get_interval_estimates(
        pairs, metrics.probability_of_improvement, reps=REPS
    )
    point_out = {
        agent: {m: float(points[agent][i]) for i, m in enumerate(METRICS)} for agent in AGENTS
    }
    ci_out = {
        agent: {
            m: (float(intervals[agent][0, i]), float(intervals[agent][1, i]))
            for i, m in enumerate(METRICS)
        }
        for agent in AGENTS
    }
    for key in pairs:
        point_out[key] = float(poi_points[key])
        ci_out[key] = (
            float(np.ravel(poi_intervals[key])[0]),
            float(np.ravel(poi_intervals[key])[1]),
        )
    return point_out, ci_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spread", type=int, default=0, help="extra seeds for MC spread")
    args = parser.parse_args()

    versions = {
        pkg: importlib.metadata.version(pkg) for pkg in ("rliable", "arch", "numpy", "scipy")
    }
    print(
        f"# python {platform.python_version()}, "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
    )
    score_dict = make_scores()
    print("SCORES_HUNDREDTHS = ", end="")
    pprint.pprint(
        {k: np.rint(v * 100).astype(int).tolist() for k, v in score_dict.items()}, width=100
    )
    points, intervals = estimates(score_dict, SEED)
    pairs = ("A>B", "A>C")
    print("# rliable point estimates")
    print("RLIABLE_POINTS = ", end="")
    pprint.pprint({a: points[a] for a in AGENTS}, width=100, sort_dicts=False)
    print("RLIABLE_POI = ", end="")
    pprint.pprint({p: points[p] for p in pairs}, width=100, sort_dicts=False)
    print(f"# rliable stratified bootstrap 95 % percentile intervals, reps={REPS}, seed={SEED}")
    print("RLIABLE_CIS = ", end="")
    pprint.pprint({a: intervals[a] for a in AGENTS}, width=100, sort_dicts=False)
    print("RLIABLE_POI_CIS = ", end="")
    pprint.pprint({p: intervals[p] for p in pairs}, width=100, sort_dicts=False)

    if args.spread:
        ends: dict[str, list[float]] = {}
        for seed in range(SEED + 1, SEED + 1 + args.spread):
            _, cis = estimates(score_dict, seed)
            for agent in AGENTS:
                for m in METRICS:
                    lo, hi = cis[agent][m]
                    ends.setdefault(f"{agent}/{m}/lower", []).append(lo)
                    ends.setdefault(f"{agent}/{m}/upper", []).append(hi)
            for key in ("A>B", "A>C"):
                ends.setdefault(f"{key}/lower", []).append(cis[key][0])
                ends.setdefault(f"{key}/upper", []).append(cis[key][1])
        print(f"# standard deviation of interval ends over {args.spread} seeds (reps={REPS})")
        sds = {key: float(np.std(vals, ddof=1)) for key, vals in ends.items()}
        pprint.pprint(sds, width=100)
        print(f"# max sd: {max(sds.values()):.5f}")


if __name__ == "__main__":
    main()
