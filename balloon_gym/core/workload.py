"""Workload demand processes (DESIGN 3.6), vectorised over hosts and guests.

Every guest runs the same formula; the scenario's ``workload.kind`` only picks parameters, so
constant, diurnal, bursty, phase-changing, leaking and idle guests mix in one batch without a
branch. At step ``t`` (time ``t * dt_s``):

    level  = (1 + diurnal_amp * sin(2 pi (t / period + phase + offset)))
             * (burst_mult if bursting else 1) * phase_level
    anon   = anon_mib * level + leak                        # footprint wanted, MiB
    wss    = min(wss_frac * anon + touch, anon)             # hot memory touched this step, MiB
    cache  = cache_mib * level                              # page cache wanted, MiB
    cpu    = cpu_vcpus * level                              # CPU demand, vCPUs

Bursts are a two-state Markov chain, phase changes a Poisson process whose new level is uniform
on ``[phase_low, phase_high]``.

An OOM kill (``perf.restart``) frees the workload's memory and stops its work: for
``oom_restart_s`` it is not running (footprint 0), then it re-reads its hot set at
``oom_reload_mib_s`` (its footprint is what it has re-read, all of it hot); once the hot set is
back it works again and wants its full footprint. ``oom_scale`` is the fraction of the hot set
re-read (1: running), ``restart_left_s`` the restart delay still to come (:func:`recover`).

A **trace** guest replays a real VM (drawn per episode from its pool, from a random start):
memory used / provisioned, interpolated linearly at the step's time, times ``trace_mem_scale``
(capped at 1) times ``mem_mib``, replaces ``anon_mib * level`` (``anon_mib`` is then a floor),
and CPU used / provisioned vCPUs times ``vcpus`` replaces ``cpu_vcpus * level`` (a floor too).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from balloon_gym.core.ops import equation, maximum, minimum, scaled_sin, select
from balloon_gym.core.params import Params
from balloon_gym.core.state import State

_EPS_MIB = 1e-6

#: Uniform draws per guest and step used by :func:`advance` (burst, phase change, phase level).
NUM_UNIFORMS = 3


class Demand(NamedTuple):
    """What the workloads want this step, all ``(num_envs, max_guests)``."""

    anon_mib: np.ndarray  # anonymous footprint wanted, MiB
    wss_mib: np.ndarray  # hot memory (touched every step), MiB
    cache_mib: np.ndarray  # page cache wanted, MiB
    cpu_vcpus: np.ndarray  # CPU demand, vCPUs


@equation
def advance_process(
    u_burst, u_phase, u_level, burst_on, phase_level, leak, burst_p_on, burst_p_off,
    burst_mult, phase_p, phase_low, phase_high, leak_mib,
):  # fmt: skip
    """The process one step on: burst state, phase level, leak (``advance``)."""
    burst = select(burst_on, u_burst >= burst_p_off, u_burst < burst_p_on) & (burst_mult > 1.0)
    new_level = phase_low + u_level * (phase_high - phase_low)
    level = select(u_phase < phase_p, new_level, phase_level)
    return burst, level, leak + leak_mib


@equation
def recover(restart_left_s, oom_scale, hot_mib, oom_reload_mib_s, dt_s):
    """One step of an OOM-killed workload's recovery: the restart delay runs first, then the
    hot set ``hot_mib`` is re-read at ``oom_reload_mib_s``; the workload does no work until it
    is back. A running workload (no delay left, ``oom_scale`` 1) loses nothing.

    Returns ``restart_left_s``, ``oom_scale`` (the fraction of the hot set re-read, exactly 1
    once back) and the time lost this step, s.
    """
    delay = minimum(restart_left_s, dt_s)
    left_s = dt_s - delay
    reload_s = (1.0 - oom_scale) * hot_mib / oom_reload_mib_s
    done = (restart_left_s <= dt_s) & (reload_s <= left_s)
    reloading = minimum(reload_s, left_s)
    grown = oom_scale + reloading * oom_reload_mib_s / maximum(hot_mib, _EPS_MIB)
    return restart_left_s - delay, select(done, 1.0, grown), delay + reloading


@equation
def level(
    t, diurnal_period_steps, diurnal_phase, diurnal_amp, phase_offset, burst_on, burst_mult,
    phase_level,
):  # fmt: skip
    """Demand level at step ``t``: diurnal cycle, burst and phase (the module's ``level``)."""
    angle = 2.0 * np.pi * (t / diurnal_period_steps + diurnal_phase)
    cycle = 1.0 + scaled_sin(diurnal_amp, angle + 2.0 * np.pi * phase_offset)
    return cycle * select(burst_on, burst_mult, 1.0) * phase_level


@equation
def base_demand(level, anon_mib, cpu_vcpus, cache_mib):
    """Footprint base (MiB), CPU (vCPUs) and page cache (MiB) wanted at ``level``."""
    return anon_mib * level, cpu_vcpus * level, cache_mib * level


@equation
def trace_position(trace_pos, t, trace_rate):
    """Sample index (as a float, floored) and interpolation weight of a trace at step ``t``."""
    pos = trace_pos + t * trace_rate
    base = np.floor(pos)
    return base, pos - base


@equation
def interpolate(w, x0, x1):
    """Linear interpolation between two trace samples."""
    return (1.0 - w) * x0 + w * x1


@equation
def trace_demand(mem_frac, cpu_frac, trace_mem_scale, mem_mib, anon_mib, vcpus, cpu_vcpus):
    """Footprint base and CPU demand of a trace guest from its trace's used fractions."""
    anon_base = maximum(minimum(mem_frac * trace_mem_scale, 1.0) * mem_mib, anon_mib)
    return anon_base, maximum(cpu_frac * vcpus, cpu_vcpus)


@equation
def full_footprint(anon_base, leak, wss_frac, touch_mib):
    """Anonymous footprint and hot set a running workload wants, MiB."""
    anon = anon_base + leak
    return anon, minimum(wss_frac * anon + touch_mib, anon)


@equation
def reloaded(anon_mib, wss_mib, oom_scale):
    """Footprint and hot set while an OOM-killed workload re-reads its hot set (``oom_scale``
    < 1): the part re-read, all of it hot; the full ones once it runs again, MiB."""
    back = oom_scale * wss_mib
    reloading = oom_scale < 1.0
    return select(reloading, back, anon_mib), select(reloading, back, wss_mib)


@equation
def footprint(anon_base, leak, oom_scale, wss_frac, touch_mib):
    """Anonymous footprint and hot set wanted, MiB (:func:`full_footprint`, :func:`reloaded`)."""
    anon, wss = full_footprint(anon_base, leak, wss_frac, touch_mib)
    return reloaded(anon, wss, oom_scale)


def trace_usage(
    t: np.ndarray, trace_vm: np.ndarray, trace_pos: np.ndarray, params: Params
) -> tuple[np.ndarray, np.ndarray]:
    """Memory and CPU used / provisioned of each guest's trace at step ``t``, ``[G]`` each.

    Linear interpolation between samples, wrapping around the end of the VM's trace.
    """
    length = params.bank_len[trace_vm]
    base, w = trace_position(trace_pos, t[:, None], params.trace_rate)
    i0 = base.astype(np.int64) % length
    i1 = (i0 + 1) % length
    mem, cpu = params.bank_mem_frac, params.bank_cpu_frac
    mem_frac = interpolate(w, mem[trace_vm, i0], mem[trace_vm, i1])
    cpu_frac = interpolate(w, cpu[trace_vm, i0], cpu[trace_vm, i1])
    return mem_frac, cpu_frac


def _base_demand(
    t: np.ndarray,
    burst_on: np.ndarray,
    phase_level: np.ndarray,
    phase_offset: np.ndarray,
    trace_vm: np.ndarray,
    trace_pos: np.ndarray,
    params: Params,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Footprint base (MiB), CPU (vCPUs) and page cache (MiB) wanted at step ``t``."""
    p = params
    lv = level(t[:, None], p.diurnal_period_steps, p.diurnal_phase, p.diurnal_amp, phase_offset,
               burst_on, p.burst_mult, phase_level)  # fmt: skip
    anon_base, cpu, cache = base_demand(lv, p.anon_mib, p.cpu_vcpus, p.cache_mib)
    if p.bank_len.size:  # a batch-level switch, not a branch per guest
        mem_frac, cpu_frac = trace_usage(t, trace_vm, trace_pos, p)
        traced_base, traced_cpu = trace_demand(mem_frac, cpu_frac, p.trace_mem_scale, p.mem_mib,
                                               p.anon_mib, p.vcpus, p.cpu_vcpus)  # fmt: skip
        anon_base = np.where(p.trace_mask, traced_base, anon_base)
        cpu = np.where(p.trace_mask, traced_cpu, cpu)
    return anon_base, cpu, cache


def demand(
    t: np.ndarray,
    burst_on: np.ndarray,
    phase_level: np.ndarray,
    phase_offset: np.ndarray,
    leak: np.ndarray,
    oom_scale: np.ndarray,
    trace_vm: np.ndarray,
    trace_pos: np.ndarray,
    params: Params,
    restart_left_s: np.ndarray | None = None,
) -> Demand:
    """Demand at step ``t`` (``[N]``) given the process state (all other arrays ``[G]``).

    ``restart_left_s`` is a process field too, but the demand depends on it only through
    ``oom_scale`` (0 while the restart delay runs); it is accepted so that every process field
    can be passed.
    """
    anon_base, cpu, cache = _base_demand(t, burst_on, phase_level, phase_offset, trace_vm,
                                         trace_pos, params)  # fmt: skip
    anon, wss = footprint(anon_base, leak, oom_scale, params.wss_frac, params.touch_mib)
    return Demand(anon_mib=anon, wss_mib=wss, cache_mib=cache, cpu_vcpus=cpu)


def initial_process(params: Params, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random start of the workload process: burst state from its stationary law, jitter,
    and for trace guests the VM (uniform over the guest's pool) and a start offset."""
    shape = params.guest_mask.shape
    u = rng.random((4, *shape))
    p_on = params.burst_p_on / np.maximum(params.burst_p_on + params.burst_p_off, 1e-12)
    span = params.trace_hi - params.trace_lo
    trace_vm = params.trace_lo + np.minimum((u[2] * span).astype(np.int64), np.maximum(span - 1, 0))
    length = params.bank_len[trace_vm] if params.bank_len.size else np.ones(shape, np.int64)
    return {
        "burst_on": (u[0] < p_on) & (params.burst_mult > 1.0),
        "phase_level": np.ones(shape),
        "phase_offset": u[1] * params.phase_jitter,
        "leak": np.zeros(shape),
        "oom_scale": np.ones(shape),
        "restart_left_s": np.zeros(shape),
        "trace_vm": np.where(params.trace_mask, trace_vm, 0),
        "trace_pos": np.where(params.trace_mask, u[3] * length, 0.0),
    }


def advance(
    state: State, params: Params, uniforms: np.ndarray
) -> tuple[dict[str, np.ndarray], Demand]:
    """Move the processes one step and return the new process fields and the demand.

    Args:
        state: State before the step.
        params: Scenario arrays.
        uniforms: ``(NUM_UNIFORMS, num_envs, max_guests)`` uniform draws in [0, 1).
    """
    process, d, _, _ = advance_with_recovery(state, params, uniforms)
    return process, d


def advance_with_recovery(
    state: State, params: Params, uniforms: np.ndarray
) -> tuple[dict[str, np.ndarray], Demand, np.ndarray, np.ndarray]:
    """:func:`advance`, and each workload's full hot set (MiB) and the time its recovery from
    an OOM kill took this step (s, :func:`recover`), all ``[G]``."""
    p = params
    burst_on, phase_level, leak = advance_process(
        *uniforms, state.burst_on, state.phase_level, state.leak, p.burst_p_on, p.burst_p_off,
        p.burst_mult, p.phase_p, p.phase_low, p.phase_high, p.leak_mib,
    )  # fmt: skip
    t = state.t + 1
    anon_base, cpu, cache = _base_demand(t, burst_on, phase_level, state.phase_offset,
                                         state.trace_vm, state.trace_pos, p)  # fmt: skip
    anon, hot = full_footprint(anon_base, leak, p.wss_frac, p.touch_mib)
    restart_left_s, oom_scale, lost_s = recover(state.restart_left_s, state.oom_scale, hot,
                                                p.oom_reload_mib_s, p.dt_s)  # fmt: skip
    process = {
        "burst_on": burst_on,
        "phase_level": phase_level,
        "phase_offset": state.phase_offset,
        "leak": leak,
        "oom_scale": oom_scale,
        "restart_left_s": restart_left_s,
        "trace_vm": state.trace_vm,
        "trace_pos": state.trace_pos,
    }
    anon, wss = reloaded(anon, hot, oom_scale)
    return process, Demand(anon_mib=anon, wss_mib=wss, cache_mib=cache, cpu_vcpus=cpu), hot, lost_s
