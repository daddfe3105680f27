"""Named reward functions (DESIGN 3.5), chosen per scenario by ``reward.name``.

Each reward is a base term minus the same penalties: ``w_oom`` per OOM kill, ``w_host_swap_gib``
per GiB the host swapped out, ``w_sla`` per guest below its SLA. Like CompilerGym's reward
spaces, each is a named object with metadata, so a config names it and tools can list them.
Because params are arrays, the choice is per host and a batch may mix rewards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from balloon_gym.core.ops import equation, maximum, select
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

#: The parts of a reward, in the order :func:`compute` returns them.
PARTS = ("score", "mean_throughput", "sla_ok_frac", "ooms", "host_swap_gib", "sla_misses",
         "penalty")  # fmt: skip


@equation
def from_sums(
    count, weighted_tp, share_sum, tp_sum, misses, ooms, host_swap_out_mib, reward_kind, w_oom,
    w_host_swap_gib, w_sla,
):  # fmt: skip
    """A host's reward and its parts from its sums over guests: guests, share-weighted
    throughput, shares, throughput, SLA misses, OOM kills; and its host swap-out, MiB.

    Returns the reward, then the parts in :func:`compute`'s order.
    """
    n_guests = maximum(count, 1.0)
    score = weighted_tp / maximum(share_sum, _EPS)
    mean_tp = tp_sum / n_guests
    sla_ok = 1.0 - misses / n_guests
    swap_gib = host_swap_out_mib / 1024.0
    base = select(reward_kind == 0, score, select(reward_kind == 1, mean_tp, sla_ok))
    penalty = w_oom * ooms + w_host_swap_gib * swap_gib + w_sla * misses
    return base - penalty, score, mean_tp, sla_ok, ooms, swap_gib, misses, penalty


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
    p = params
    w = np.where(p.guest_mask, p.shares, 0.0)
    r, *values = from_sums(
        row_sum(p.guest_mask), row_sum(w * tp), row_sum(w), row_sum(tp), row_sum(sla_miss),
        row_sum(oom), host_swap_out_mib, p.reward_kind[:, 0], p.w_oom[:, 0],
        p.w_host_swap_gib[:, 0], p.w_sla[:, 0],
    )  # fmt: skip
    return r, dict(zip(PARTS, values, strict=True))
