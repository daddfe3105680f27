"""The paper check: Waldspurger (OSDI 2002), figure 7, on the ``idle-tax`` scenario.

Two equal-share guests, one idle with a large allocated footprint, one with a working set that
does not fit an equal split. Under ``esx_idle_tax`` with ``tau = 0`` (plain proportional share)
both converge to the same allocation; with ``tau = 0.75`` the idle guest's memory moves to the
busy guest and its throughput rises markedly (the paper: by over 30 %).

Run as a script to print the numbers of ``docs/esx-idle-tax.md`` and redraw its figure::

    python tests/test_esx_idle_tax.py --plot docs/img/esx-idle-tax.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from balloon_gym.agents import EsxIdleTax
from balloon_gym.evaluation import BatchResult, evaluation_seeds, run_batch

SCENARIO = "idle-tax"
RECORD = ("alloc_target", "balloon", "usable", "working_set", "throughput", "host_free_frac")


def experiment(tax_rate: float, num_seeds: int = 3) -> tuple[dict[str, float], BatchResult]:
    """Run ``esx_idle_tax`` at ``tax_rate`` on idle-tax; numbers over the second half.

    Returns:
        ``idle_gib`` / ``busy_gib`` (mean allocation outside the balloon, GiB),
        ``ratio`` (busy / idle allocation), ``idle_tp`` / ``busy_tp`` (mean throughput),
        ``score`` (episode mean), and the recorded batch.
    """
    result = run_batch(
        EsxIdleTax(2, tax_rate=tax_rate), SCENARIO, evaluation_seeds(num_seeds), record=RECORD
    )
    idle, busy = result.guest_names.index("idle"), result.guest_names.index("busy")
    half = result.trace["usable"].shape[0] // 2
    usable = result.trace["usable"][half:].mean(axis=(0, 1)) / 1024.0
    tp = result.trace["throughput"][half:].mean(axis=(0, 1))
    numbers = {
        "idle_gib": float(usable[idle]),
        "busy_gib": float(usable[busy]),
        "ratio": float(usable[busy] / usable[idle]),
        "idle_tp": float(tp[idle]),
        "busy_tp": float(tp[busy]),
        "score": float(result.metrics["score"].mean()),
    }
    return numbers, result


@pytest.fixture(scope="module")
def runs() -> dict[float, dict[str, float]]:
    return {tau: experiment(tau)[0] for tau in (0.0, 0.75)}


def test_without_tax_both_guests_converge_to_the_same_allocation(runs: dict) -> None:
    assert runs[0.0]["ratio"] == pytest.approx(1.0, rel=0.15)


def test_the_tax_moves_idle_memory_to_the_busy_guest(runs: dict) -> None:
    assert runs[0.75]["busy_gib"] > runs[0.0]["busy_gib"] * 1.2
    assert runs[0.75]["idle_gib"] < runs[0.0]["idle_gib"] * 0.8


def test_busy_guest_throughput_rises_by_at_least_30_percent(runs: dict) -> None:
    assert runs[0.75]["busy_tp"] >= 1.3 * runs[0.0]["busy_tp"]
    assert runs[0.75]["idle_tp"] >= 0.95  # the idle guest barely notices


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="evaluation seeds")
    parser.add_argument("--plot", type=Path, default=None, help="write the timeline PNG here")
    args = parser.parse_args()
    results, numbers = {}, {}
    print("| tau | idle GiB | busy GiB | busy/idle | idle throughput | busy throughput | score |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for tau in (0.0, 0.75):
        n, results[tau] = experiment(tau, args.seeds)
        numbers[tau] = n
        print(
            f"| {tau:.2f} | {n['idle_gib']:.2f} | {n['busy_gib']:.2f} | {n['ratio']:.3f} | "
            f"{n['idle_tp']:.3f} | {n['busy_tp']:.3f} | {n['score']:.4f} |"
        )
    if args.plot:
        from balloon_gym.leaderboard import plot_timeline

        titles = [f"esx_idle_tax, tau = {tau:g}" for tau in results]
        plot_timeline(list(results.values()), args.plot, titles=titles)
        print(f"wrote {args.plot}")
    gain = numbers[0.75]["busy_tp"] / numbers[0.0]["busy_tp"]
    print(f"busy guest throughput, second half: x{gain:.2f} with the tax (paper: > x1.3)")


if __name__ == "__main__":
    _main()
