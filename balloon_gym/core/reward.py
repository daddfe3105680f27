"""Named reward functions (DESIGN 3.5), chosen per scenario by ``reward.name``.

Each reward is a base term minus the same penalties: ``w_oom`` per OOM kill, ``w_host_swap_gib``
per GiB the host swapped out, ``w_sla`` per guest below its SLA. Like CompilerGym's reward
spaces, each is a named object with metadata, so a config names it and tools can list them.
Because params are arrays, the choice is per host and a batch may mix rewards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from balloon_gym.core.params import REWARD_NAMES, Params
from balloon_gym.core.rows import row_sum

_EPS = 1e-12


@dataclass(frozen=True)
class RewardSpec:
    """A named reward: what its base term measures, and its range per step without penalties."""

    name: str
    description: str
    base_range: tuple[float, float] = (0.0, 1.0)


REWARDS: dict[str, RewardSpec] = {
    "weighted_throughput": RewardSpec(
        "weighted_throughput", "Share-weighted mean guest throughput (the BalloonBench score)."
    ),
    "mean_throughput": RewardSpec("mean_throughput", "Unweighted mean guest throughput."),
    "sla": RewardSpec("sla", "Fraction of guests at or above their SLA throughput."),
}
assert tuple(REWARDS) == REWARD_NAMES


def weighted_throughput(tp: np.ndarray, params: Params) -> np.ndarray:
    """Share-weighted mean throughput per host ``(num_envs,)``: the BalloonBench score."""
    w = np.where(params.guest_mask, params.shares, 0.0)
    return row_sum(w * tp) / np.maximum(row_sum(w), _EPS)


def compute(
    tp: np.ndarray,
    oom: np.ndarray,
    sla_miss: np.ndarray,
    host_swap_out_mib: np.ndarray,
    params: Params,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Reward per host ``(num_envs,)`` and its unweighted parts.

    Returns:
        The reward, and a dict of the parts: ``score`` (weighted throughput), ``mean_throughput``,
        ``sla_ok_frac``, ``ooms``, ``host_swap_gib``, ``sla_misses``, ``penalty``.
    """
    n_guests = np.maximum(row_sum(params.guest_mask), 1)
    score = weighted_throughput(tp, params)
    mean_tp = row_sum(tp) / n_guests
    misses = row_sum(sla_miss)
    sla_ok = 1.0 - misses / n_guests
    ooms = row_sum(oom)
    swap_gib = host_swap_out_mib / 1024.0
    kind = params.reward_kind[:, 0]
    base = np.where(kind == 0, score, np.where(kind == 1, mean_tp, sla_ok))
    penalty = (
        params.w_oom[:, 0] * ooms
        + params.w_host_swap_gib[:, 0] * swap_gib
        + params.w_sla[:, 0] * misses
    )
    parts = {
        "score": score,
        "mean_throughput": mean_tp,
        "sla_ok_frac": sla_ok,
        "ooms": ooms,
        "host_swap_gib": swap_gib,
        "sla_misses": misses,
        "penalty": penalty,
    }
    return base - penalty, parts
