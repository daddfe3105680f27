"""``reset(params, rng)`` and ``step(state, action, params, rng)``: the simulator.

Both are pure: arrays in, new arrays out; inputs are never written (a test runs them on
read-only arrays). All randomness comes from the ``numpy.random.Generator`` passed in. There is
no Python loop over hosts or guests; one call advances the whole batch.

One step is one control interval ``dt_s``. Its sub-steps, in order:

1. ``workload``      demand processes advance (bursts, phases, leak, OOM restart and reload)
2. ``targets``       action -> allocation, balloon and vCPU targets, projected to the host
3. ``availability``  driver outages (scheduled and random)
4. ``host_reclaim``  host swap in the hard and low states, victims above target
5. ``balloon``       driver inflates (free -> cache -> swap) or deflates, rate-limited
6. ``guest``         guest memory: footprint, cache, guest swap, faults, OOM, host faults
7. ``vcpus``         vCPU reservation, rate-limited
8. ``cpu``           pCPU proportional share, SMP efficiency
9. ``perf``          OOM kills restart; lost and stall time -> throughput, SLA misses
10. ``sampling``     the host's statistical estimate of each guest's active fraction
11. ``reward``       the scenario's named reward
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from balloon_gym.config import ConfigTypeError
from balloon_gym.core import balloon, cpu, guest, host, perf, reward, workload
from balloon_gym.core.ops import equation, maximum, minimum
from balloon_gym.core.params import Params
from balloon_gym.core.rows import row_sum, row_sum_keep
from balloon_gym.core.state import State, consumed, consumed_mib, touched

SUBSTEPS = (
    "workload",
    "targets",
    "availability",
    "host_reclaim",
    "balloon",
    "guest",
    "vcpus",
    "cpu",
    "perf",
    "sampling",
    "reward",
)

_EPS_MIB = 1e-6


class StepOutput(NamedTuple):
    """What a step returns besides the new state."""

    reward: np.ndarray  # (num_envs,)
    parts: dict[str, np.ndarray]  # unweighted reward parts, each (num_envs,)


_DTYPE_HINTS = {
    "b": "bool: give numbers in [-1, 1]",
    "c": "complex: give real numbers (np.real(action) if the imaginary parts are zero)",
    "U": "text: give numbers, not strings",
    "S": "bytes: give numbers, not strings",
    "O": "object: give numbers (a list holding None, dicts or arrays of other lengths?)",
    "M": "datetime: give numbers",
    "m": "timedelta: give numbers",
    "V": "structured: give a plain array of numbers",
}


def as_action_array(action: Any) -> np.ndarray:
    """``action`` as an array of real numbers (float, int or uint), without a copy when it is
    one already: O(1) for an ndarray (a type and a dtype check), ``np.asarray`` otherwise.

    Raises:
        ConfigTypeError: For a mapping, a ragged list, or a bool, complex, text or object dtype
            (a ``ConfigError`` and a ``TypeError``): never a cast that loses or invents values.
    """
    if type(action) is not np.ndarray:
        if isinstance(action, Mapping):
            raise ConfigTypeError(
                f"action must be an array of numbers, got {type(action).__name__}: the action "
                "space is a Box, not a Dict"
            )
        try:
            action = np.asarray(action)
        except (ValueError, TypeError) as err:
            raise ConfigTypeError(
                f"action must be a rectangular array of numbers, got {type(action).__name__} "
                f"that numpy cannot make one of ({str(err).split('.')[0]})"
            ) from None
    if action.dtype.kind not in "fiu":
        hint = _DTYPE_HINTS.get(action.dtype.kind, "give numbers")
        raise ConfigTypeError(f"action has dtype {action.dtype}, {hint}")
    return action


def split_action(action: np.ndarray, params: Params) -> tuple[np.ndarray, np.ndarray]:
    """Check an action batch and split it into memory and vCPU parts, each ``[G]``.

    Finite values outside [-1, 1] are clipped to the box (the Gymnasium convention); NaN or
    infinite values raise, since no projection could give them a meaning.

    Raises:
        ConfigTypeError: If the action is not an array of real numbers (:func:`as_action_array`).
        ValueError: If the shape is wrong or any entry is NaN or infinite.
    """
    action = np.asarray(as_action_array(action), dtype=np.float64)
    n, g = params.guest_mask.shape
    if action.shape != (n, 2 * g):
        raise ValueError(
            f"action has shape {action.shape}, expected (num_envs, 2 * max_guests) = {(n, 2 * g)}:"
            " memory actions for every guest slot, then vCPU actions"
        )
    if not np.isfinite(action).all():
        bad = np.argwhere(~np.isfinite(action))[0]
        raise ValueError(
            f"action contains NaN or infinite values (first at env {bad[0]}, index {bad[1]}); "
            "actions must be finite numbers in [-1, 1]"
        )
    action = np.minimum(np.maximum(action, -1.0), 1.0)
    return action[:, :g], action[:, g:]


def reset(params: Params, rng: np.random.Generator) -> State:
    """A fresh batch: guests booted at the host's initial allocation, workloads started.

    Every guest starts at ``project_allocation(max_mib)`` (all guests at their maximum, scaled
    down as far as the host cannot hold what they touch at boot: kernel, footprint and page
    cache) with its balloon at the matching size (none without a driver: ``driver.present:
    false``), its footprint
    resident as far as it fits (the rest in guest swap), page cache filled from what is left,
    and its free memory never touched (no machine page behind it). If the guests' boot footprint
    does not fit the host, the host has swapped the excess out of them, in proportion.
    """
    shape = params.guest_mask.shape
    zeros = np.zeros(shape)
    process = workload.initial_process(params, rng)
    t = np.zeros(shape[0], dtype=np.int64)
    d = workload.demand(t, params=params, **process)
    mask = params.guest_mask
    # What each guest touches at boot (no balloon yet) is what the host's projection bounds.
    boot = np.where(mask, np.minimum(params.kernel_mib + d.anon_mib + d.cache_mib,
                                     params.mem_mib), 0.0)  # fmt: skip
    alloc = balloon.project_allocation(params.max_mib, boot, zeros, params)
    # A guest without a balloon driver boots with no balloon: all its memory is its own.
    bal = np.where(params.driver_present, np.clip(params.mem_mib - alloc, 0.0,
                                                  params.balloon_max_mib), 0.0)  # fmt: skip
    usable = params.mem_mib - params.kernel_mib - bal
    anon = np.where(mask, np.minimum(d.anon_mib, usable + params.swap_mib), 0.0)
    anon_res = np.minimum(anon, usable)
    cache = np.where(mask, np.minimum(d.cache_mib, usable - anon_res), 0.0)
    free = usable - anon_res - cache
    # A host too small for what its guests touched at boot has swapped the excess out of them.
    touched = np.where(mask, params.kernel_mib + anon_res + cache, 0.0)
    spare = params.host_mem_mib - params.host_reserved_mib - row_sum_keep(touched)
    excess = np.maximum(-spare, 0.0)
    share = (touched - params.kernel_mib) / np.maximum(
        row_sum_keep(touched - params.kernel_mib), 1e-12
    )
    host_swap = np.where(mask, excess * share, 0.0)
    active = np.where(mask & params.sampling, np.clip(d.wss_mib / (params.mem_mib - bal), 0, 1), 0)
    return State(
        t=t,
        anon_res=anon_res,
        anon_swap=anon - anon_res,
        cache=cache,
        free=free,
        untouched=free.copy(),
        balloon=bal,
        balloon_swap=zeros.copy(),
        host_swap=host_swap,
        alloc_target=alloc,
        balloon_target=bal.copy(),
        reserved_vcpus=zeros.copy(),
        **process,
        outage_left=np.zeros(shape, dtype=np.int64),
        active_fast=active,
        active_slow=active.copy(),
        swap_in=zeros.copy(),
        swap_out=zeros.copy(),
        fault_pages=zeros.copy(),
        anon_fault_pages=zeros.copy(),
        cache_fault_pages=zeros.copy(),
        oom=np.zeros(shape, dtype=bool),
        alloc_stall_s=zeros.copy(),
        stall_s=zeros.copy(),
        lost_s=zeros.copy(),
        cpu_alloc=zeros.copy(),
        throughput=np.where(mask, 1.0, 0.0),
        balloon_moved=zeros.copy(),
        driver_up=mask & params.driver_present,
        host_swap_out=np.zeros(shape[0]),
        host_swap_in=np.zeros(shape[0]),
    )


@equation
def host_swap_after_move(host_swap, touched_before, touched_after):
    """The host drops its swap copy of pages the balloon took, in proportion, MiB."""
    return host_swap * minimum(touched_after / maximum(touched_before, _EPS_MIB), 1.0)


@equation
def host_in_scale(host_swap_in_mib, host_swap_sum):
    """Fraction of its host faults a host can serve this step (its swap-in rate)."""
    return minimum(1.0, host_swap_in_mib / maximum(host_swap_sum, _EPS_MIB))


def step(
    state: State, action: np.ndarray, params: Params, rng: np.random.Generator
) -> tuple[State, StepOutput]:
    """Advance every host by one control interval.

    Args:
        state: Batch state, ``num_envs`` hosts.
        action: ``(num_envs, 2 * max_guests)`` in [-1, 1]: memory actions, then vCPU actions.
        params: Scenario arrays of the same batch.
        rng: Source of all randomness of this step.

    Returns:
        The new state and the step's reward with its parts.

    Raises:
        ValueError: On a malformed or non-finite action (the state is left untouched).
    """
    mem_action, vcpu_action = split_action(action, params)
    uniforms = rng.random((workload.NUM_UNIFORMS + 1, *params.guest_mask.shape))

    process, demand, hot, restart_lost = workload.advance_with_recovery(
        state, params, uniforms[:-1]
    )
    alloc, balloon_target, reserved_target = balloon.targets(state, mem_action, vcpu_action, params)
    up, outage_left = balloon.availability(state, params, uniforms[-1])
    host_swap, host_out, mem_state = host.reclaim(state, params)
    blocked = host.blocked_guests(state, mem_state, params)

    moved = balloon.move(state, balloon_target, up, params)
    # The host drops its swap copy of pages the balloon took, in proportion.
    before = touched(state.anon_res, state.cache, state.free, state.untouched)
    after = touched(moved.anon_res, moved.cache, moved.free, moved.untouched)
    host_swap = host_swap_after_move(host_swap, before, after)
    used = consumed(params.mem_mib, moved.untouched, moved.balloon, host_swap, params.guest_mask)
    budget = host.machine_budget(
        guest.machine_demand(moved, host_swap, demand), used, blocked, params
    )
    in_scale = host_in_scale(params.host_swap_in_mib, row_sum_keep(host_swap))
    g = guest.update(moved, host_swap, demand, budget, in_scale, params)

    reserved_vcpus, vcpu_stall_s = balloon.vcpu_reservation(state, reserved_target, up, params)
    c = cpu.schedule(reserved_vcpus, demand.cpu_vcpus, params)

    stall_s = perf.total_stall(g.stall_s, moved.alloc_stall_s, vcpu_stall_s)
    restart_left, oom_scale, leak, restart_lost = perf.restart(
        g.oom, process["restart_left_s"], process["oom_scale"], process["leak"], restart_lost, hot,
        params.oom_restart_s, params.oom_reload_mib_s, params.dt_s,
    )  # fmt: skip
    lost_s = perf.lost_time(blocked, restart_lost, params.dt_s)
    tp = perf.throughput(c.factor, stall_s, lost_s, params)
    active_fast, active_slow = host.sample_active(state, demand.wss_mib, g.balloon, params, rng)

    host_swap_out = row_sum(host_out)
    r, parts = reward.compute(tp, g.oom, perf.sla_misses(tp, params), host_swap_out, params)

    process["oom_scale"] = oom_scale
    process["restart_left_s"] = restart_left
    process["leak"] = leak
    new_state = State(
        t=state.t + 1,
        anon_res=g.anon_res,
        anon_swap=g.anon_swap,
        cache=g.cache,
        free=g.free,
        untouched=g.untouched,
        balloon=g.balloon,
        balloon_swap=g.balloon_swap,
        host_swap=g.host_swap,
        alloc_target=alloc,
        balloon_target=balloon_target,
        reserved_vcpus=reserved_vcpus,
        **process,
        outage_left=outage_left,
        active_fast=active_fast,
        active_slow=active_slow,
        swap_in=g.swap_in,
        swap_out=g.swap_out,
        fault_pages=g.fault_pages,
        anon_fault_pages=g.anon_fault_pages,
        cache_fault_pages=g.cache_fault_pages,
        oom=g.oom,
        alloc_stall_s=moved.alloc_stall_s,
        stall_s=stall_s,
        lost_s=lost_s,
        cpu_alloc=c.alloc,
        throughput=tp,
        balloon_moved=moved.moved,
        driver_up=up,
        host_swap_out=host_swap_out,
        host_swap_in=row_sum(g.host_swap_in),
    )
    return new_state, StepOutput(reward=r, parts=parts)


__all__ = [
    "SUBSTEPS",
    "StepOutput",
    "as_action_array",
    "consumed_mib",
    "reset",
    "split_action",
    "step",
]
