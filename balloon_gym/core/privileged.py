"""Privileged views of the simulator: what no real scheduler can see, in one place.

Evaluation records each guest's true demand beside what the scheduler saw, and the privileged
reference policies plan with it. These functions read the core's state and parameters (and,
for :func:`next_step_uniforms`, a copy of the generator a step will draw from) and never change
them. Nothing observable by a policy comes from here.
"""

from __future__ import annotations

import inspect

import numpy as np

from balloon_gym.core import workload
from balloon_gym.core.params import Params
from balloon_gym.core.state import State
from balloon_gym.core.workload import Demand

#: The process fields :func:`balloon_gym.core.workload.demand` takes besides ``t`` and
#: ``params`` (read from its signature, so new workload kinds need no change here).
PROCESS_FIELDS: tuple[str, ...] = tuple(
    name for name in inspect.signature(workload.demand).parameters if name not in ("t", "params")
)


def process_state(state: State) -> dict[str, np.ndarray]:
    """The workload process fields of ``state`` (burst state, phase level, leak, ...)."""
    return {name: getattr(state, name) for name in PROCESS_FIELDS}


def true_demand(state: State, params: Params) -> Demand:
    """The workloads' true demand in the step that led to ``state`` (the hidden truth)."""
    return workload.demand(state.t, params=params, **process_state(state))


def demand_ahead(
    state: State, params: Params, steps: int, uniforms: np.ndarray | None = None
) -> Demand:
    """Largest true demand over the next ``steps`` steps, each field ``(num_envs, max_guests)``.

    Args:
        state: The simulator's state now.
        params: Its parameters.
        steps: Look-ahead window, steps (>= 1).
        uniforms: ``(NUM_UNIFORMS, num_envs, max_guests)`` draws of the next step, if known:
            the next step's demand is then exact (:func:`balloon_gym.core.workload.advance`).

    Without ``uniforms`` bursts and phase levels stay as they are now. Beyond the next step,
    they stay as they are then; the diurnal cycle, leak and an OOM-killed workload's restart and
    reload advance exactly.
    """
    if uniforms is None:
        process = process_state(state)
        process["leak"] = state.leak + params.leak_mib
        first = 0  # the next step's OOM recovery is still to come
    else:
        process, _ = workload.advance(state, params, uniforms)
        first = 1
    restart_left, scale = process["restart_left_s"], process["oom_scale"]
    full_scale = np.ones_like(scale)
    # The demand of the step just done: the balloon moves before the guest's footprint does,
    # so a guest about to shrink still holds it when the next step's targets apply.
    fields = list(true_demand(state, params))
    for h in range(steps):  # a loop over look-ahead steps, not over hosts or guests
        ahead = {**process, "leak": process["leak"] + h * params.leak_mib, "oom_scale": full_scale}
        full = workload.demand(state.t + 1 + h, params=params, **ahead)
        if h >= first:  # an OOM-killed workload's restart and reload advance exactly
            restart_left, scale, _ = workload.recover(
                restart_left, scale, full.wss_mib, params.oom_reload_mib_s, params.dt_s
            )
        anon, wss = workload.reloaded(full.anon_mib, full.wss_mib, scale)
        d = full._replace(anon_mib=anon, wss_mib=wss)
        fields = [np.maximum(a, b) for a, b in zip(fields, d, strict=True)]
    return Demand(*fields)


def next_step_uniforms(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """The workload uniforms the next :func:`balloon_gym.core.step` with ``rng`` will draw.

    ``step`` draws them first, ``(NUM_UNIFORMS, num_envs, max_guests)``; they are read from a
    copy of ``rng``'s bit generator, so ``rng`` itself is not advanced.
    """
    bit_gen = rng.bit_generator
    twin = type(bit_gen)()
    twin.state = bit_gen.state
    return np.random.Generator(twin).random((workload.NUM_UNIFORMS, *shape))


__all__ = ["PROCESS_FIELDS", "demand_ahead", "next_step_uniforms", "process_state", "true_demand"]
