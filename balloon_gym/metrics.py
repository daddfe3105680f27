"""Episode metrics of BalloonBench, accumulated step by step over a batch of hosts.

:class:`EpisodeMetrics` adds up what each step reports (the lazy ``info`` mapping of
:class:`~balloon_gym.envs.batch.StepInfo` and the batch's ``State``), vectorised over envs, and
turns the sums into one row per episode. :func:`jain_index` is the fairness measure (the
leaderboard's normalised scores are :func:`balloon_gym.stats.normalise_scores`).

Per-episode metrics (the columns of ``results.csv``):

| name | meaning | unit |
|---|---|---|
| ``score`` | mean over steps of ``info["score"]``, the share-weighted mean throughput | [0, 1] |
| ``mean_throughput`` | mean over steps of the unweighted mean guest throughput | [0, 1] |
| ``ooms`` | guest OOM kills in the episode | count |
| ``host_swap_gib`` | memory the host swapped out | GiB |
| ``guest_swap_gib`` | memory the guests swapped out (for their workloads and balloons) | GiB |
| ``sla_misses`` | guest-steps below the guest's SLA throughput | count |
| ``fairness`` | Jain's index of the guests' mean throughputs over the episode | (0, 1] |
| ``balloon_churn_gib`` | memory the balloons moved (inflated plus deflated) | GiB |
| ``alloc_stall_s`` | guest time lost to a naive driver's failed requests | s |
| ``steps`` | steps in the episode | count |
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

MIB_PER_GIB = 1024.0

#: Episode metrics in the order of the results file, after the identifying columns.
METRIC_NAMES: tuple[str, ...] = (
    "score",
    "mean_throughput",
    "ooms",
    "host_swap_gib",
    "guest_swap_gib",
    "sla_misses",
    "fairness",
    "balloon_churn_gib",
    "alloc_stall_s",
    "steps",
)


def jain_index(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Jain's fairness index ``(sum x)^2 / (n * sum x^2)`` over the masked guests of each row.

    Args:
        x: ``(num_envs, max_guests)`` non-negative values (e.g. mean throughput per guest).
        mask: Real guests.

    Returns:
        ``(num_envs,)`` in ``[1/n, 1]``; 1 for a row whose values are all zero.
    """
    x = np.where(mask, x, 0.0)
    n = mask.sum(axis=1)
    sq = (x * x).sum(axis=1)
    total = x.sum(axis=1)
    return np.where(sq > 0, total * total / np.maximum(n * sq, 1e-300), 1.0)


class EpisodeMetrics:
    """Sums of per-step metrics for a batch of episodes that run in lockstep.

    Call :meth:`update` once after every ``env.step`` with the step's ``info`` and the batch's
    new state; :meth:`result` gives the per-episode metrics. Only the ``info`` keys it needs are
    read (``info`` computes keys lazily).

    Args:
        guest_mask: ``(num_envs, max_guests)`` real guests of the batch.
    """

    def __init__(self, guest_mask: np.ndarray) -> None:
        self.guest_mask = np.asarray(guest_mask, dtype=bool)
        n = self.guest_mask.shape[0]
        self.steps = 0
        self._sums = {
            name: np.zeros(n)
            for name in (
                "score",
                "mean_throughput",
                "ooms",
                "host_swap_gib",
                "guest_swap_mib",
                "sla_misses",
                "balloon_moved_mib",
                "alloc_stall_s",
            )
        }
        self._throughput = np.zeros(self.guest_mask.shape)

    def update(self, info: Mapping[str, Any], state: Any) -> None:
        """Add one step.

        Args:
            info: The step's info (keys ``score``, ``mean_throughput``, ``ooms``,
                ``host_swap_gib``, ``sla_misses``, each ``(num_envs,)``).
            state: The batch's state after the step (fields ``swap_out``, ``balloon_moved``,
                ``alloc_stall_s``, ``throughput``, each ``(num_envs, max_guests)``).
        """
        mask = self.guest_mask
        s = self._sums
        for key in ("score", "mean_throughput", "ooms", "host_swap_gib", "sla_misses"):
            s[key] += np.asarray(info[key], dtype=np.float64)
        s["guest_swap_mib"] += np.where(mask, state.swap_out, 0.0).sum(axis=1)
        s["balloon_moved_mib"] += np.where(mask, state.balloon_moved, 0.0).sum(axis=1)
        s["alloc_stall_s"] += np.where(mask, state.alloc_stall_s, 0.0).sum(axis=1)
        self._throughput += np.where(mask, state.throughput, 0.0)
        self.steps += 1

    def result(self) -> dict[str, np.ndarray]:
        """Per-episode metrics, each ``(num_envs,)`` (see the module docstring).

        Raises:
            RuntimeError: Before the first :meth:`update`.
        """
        if self.steps == 0:
            raise RuntimeError("no step recorded; call update() after every env.step")
        s, t = self._sums, float(self.steps)
        n = self.guest_mask.shape[0]
        return {
            "score": s["score"] / t,
            "mean_throughput": s["mean_throughput"] / t,
            "ooms": s["ooms"],
            "host_swap_gib": s["host_swap_gib"],
            "guest_swap_gib": s["guest_swap_mib"] / MIB_PER_GIB,
            "sla_misses": s["sla_misses"],
            "fairness": jain_index(self._throughput / t, self.guest_mask),
            "balloon_churn_gib": s["balloon_moved_mib"] / MIB_PER_GIB,
            "alloc_stall_s": s["alloc_stall_s"],
            "steps": np.full(n, self.steps, dtype=np.float64),
        }
