"""Compiled kernels of the fused backend: the whole step and the observation, in numba.

``step_kernel`` runs the sub-steps of ``balloon_gym/core/step.py`` in the same order, one
compiled function per sub-step, then (when asked) builds the observation of the new state;
``observe_kernel`` is ``core/observe.py`` alone. Each function mirrors
the numpy function named in its docstring as a loop over hosts ``n`` and guests ``g`` with the
float operations in the same order, so that it gives the same numbers. Sums over a host's guests
run in guest order where the reference sums through BLAS (``core/rows.py``), which may round
the last bit differently.

Structure: one function per sub-step, each a loop over all hosts and their guests (with a
sum over a host's guests where the model has one), taking only the arrays it uses, under their
``Params``/``State`` field names (a trailing ``0`` marks the state before the step; ``[G]``:
``(num_envs, max_guests)``, ``[H]``: ``(num_envs, 1)``). Per-guest helpers take and return
scalars. Every helper is inlined into its entry point, and the entry points promise LLVM that
their arrays do not overlap (``NoAliasCompiler``). Measured alternatives were slower: one fused
pass per host keeps ~140 arrays live and spills their pointers on every access (1.5x slower);
shorter loops move more memory; taking 64 hosts at a time through all sub-steps to stay in L2
(1.1x slower: the step is bound by instructions, not memory); the guest count as a compile-time
constant (1.15x slower); the observation computed feature by feature over a host's guests and
then transposed (1.25x slower). ``benchmarks/fused_profile.py`` times each sub-step.

This one file holds all the compiled code, and it names its own inputs (``STEP_PARAMS``,
``STATE_FIELDS``, ...) and copies the reference's constants (``REFERENCE_CONSTANTS``): numba's
on-disk cache is invalidated only when this file changes, so nothing it compiles may depend on
another file's layout or values. ``balloon_gym.core.fused`` checks the copies against the
reference when it loads this module.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit
from numba.core.compiler import Compiler
from numba.extending import register_jitable


class NoAliasCompiler(Compiler):
    """numba's compiler, telling LLVM that no two array arguments of an entry point overlap.

    LLVM can then keep values in registers across stores and vectorise loops without runtime
    overlap checks (numba otherwise sets the flag only for its parallel loops). It holds for the
    entry points: they write only the new state, ``out`` and ``obs``, which the caller allocates
    fresh (``balloon_gym.core.fused``); the arrays they only read may share memory (the old and
    new state share ``phase_offset``, ``trace_vm`` and ``trace_pos``, which are never written).
    Measured: the step 14 % faster at 1024 hosts x 8 guests, with bit-identical results.
    Numba has no public option for it (its parallel loops set the same flag internally); a
    ``pipeline_class`` is numba's documented way to customise compilation.
    """

    def define_pipelines(self):
        self.state.flags.noalias = True
        return super().define_pipelines()


ENTRY = {"cache": True, "error_model": "numpy", "pipeline_class": NoAliasCompiler}
"""Options of the entry points: cached on disk; a float division by zero gives inf/NaN as in
numpy instead of raising; no overlapping array arguments (``NoAliasCompiler``)."""
INNER = {"error_model": "numpy", "forceinline": True}
"""Options of the functions they call (``register_jitable``: compiled into the entry points,
no Python wrapper of their own; callable from Python as plain functions too). ``forceinline``
has LLVM inline every one of them into its entry point (LLVM's own heuristics left most
sub-steps as calls, whose arguments then lose ``NoAliasCompiler``'s guarantee): 6 % faster,
bit-identical."""

#: The reference's constants, copied (``module.NAME``, relative to ``balloon_gym.core``).
REFERENCE_CONSTANTS = {
    "params.HIGH_FREE_FRAC": 0.06,
    "params.SOFT_FREE_FRAC": 0.04,
    "params.LOW_FREE_FRAC": 0.01,
    "params.STATE_MARGIN_FRAC": 1e-9,
    "params.HOST_HARD": 2,
    "params.HOST_LOW": 3,
    "params.PAGES_PER_MIB": 256.0,
    "guest.CACHE_REREAD_FRAC": 0.02,
    "step._EPS_MIB": 1e-6,
    "balloon._EPS_MIB": 1e-6,
    "host._EPS_MIB": 1e-6,
    "guest._EPS_MIB": 1e-6,
    "cpu._EPS": 1e-9,
    "reward._EPS": 1e-12,
    "observe._FAULT_LOG_SCALE": 8.0,
    "workload.NUM_UNIFORMS": 3,
}
HIGH_FREE_FRAC = REFERENCE_CONSTANTS["params.HIGH_FREE_FRAC"]
SOFT_FREE_FRAC = REFERENCE_CONSTANTS["params.SOFT_FREE_FRAC"]
LOW_FREE_FRAC = REFERENCE_CONSTANTS["params.LOW_FREE_FRAC"]
STATE_MARGIN_FRAC = REFERENCE_CONSTANTS["params.STATE_MARGIN_FRAC"]
HOST_HARD = REFERENCE_CONSTANTS["params.HOST_HARD"]
HOST_LOW = REFERENCE_CONSTANTS["params.HOST_LOW"]
PAGES_PER_MIB = REFERENCE_CONSTANTS["params.PAGES_PER_MIB"]
CACHE_REREAD_FRAC = REFERENCE_CONSTANTS["guest.CACHE_REREAD_FRAC"]
EPS_MIB = REFERENCE_CONSTANTS["step._EPS_MIB"]
EPS_CPU = REFERENCE_CONSTANTS["cpu._EPS"]
EPS_REWARD = REFERENCE_CONSTANTS["reward._EPS"]
FAULT_LOG_SCALE = REFERENCE_CONSTANTS["observe._FAULT_LOG_SCALE"]
TWO_PI = 2.0 * np.pi  # the reference's ``2.0 * np.pi * x`` is ``(2.0 * np.pi) * x``

#: ``State`` fields, all of which a step writes (or carries over).
STATE_FIELDS = (
    "t", "anon_res", "anon_swap", "cache", "free", "untouched", "balloon", "balloon_swap",
    "host_swap", "alloc_target", "balloon_target", "reserved_vcpus", "burst_on", "phase_level",
    "phase_offset", "leak", "oom_scale", "trace_vm", "trace_pos", "outage_left", "active_fast",
    "active_slow", "swap_in", "swap_out", "fault_pages", "oom", "alloc_stall_s", "stall_s",
    "cpu_alloc", "throughput", "balloon_moved", "driver_up", "host_swap_out", "host_swap_in",
)  # fmt: skip
#: ``Params`` fields the step reads.
STEP_PARAMS = (
    "dt_s", "host_mem_mib", "host_reserved_mib", "host_target_mib", "pcpus",
    "host_swap_out_mib", "host_swap_in_mib", "host_fault_s", "sampling", "sample_pages",
    "sample_fast_alpha", "sample_slow_alpha", "delta_mode", "delta_frac", "reward_kind", "w_oom",
    "w_host_swap_gib", "w_sla", "guest_mask", "mem_mib", "min_mib", "max_mib", "kernel_mib",
    "balloon_max_mib", "shares", "vcpus", "vcpu_change", "vcpu_change_cost_s", "swap_mib",
    "swap_out_mib", "swap_in_mib", "cache_reclaim_mib", "fault_s", "lhp_penalty", "sla",
    "report_frac", "user_driver", "rate_adaptive", "alloc_mib", "free_mib", "request_mib",
    "stall_s_per_mib", "driver_present", "outage_start_step", "outage_steps", "outage_p",
    "anon_mib", "wss_frac", "cache_mib", "cpu_vcpus", "diurnal_amp", "diurnal_period_steps",
    "diurnal_phase", "burst_mult", "burst_p_on", "burst_p_off", "phase_p", "phase_low",
    "phase_high", "leak_mib", "oom_restart_frac", "oom_recover_per_step", "touch_mib",
    "trace_mask", "trace_rate", "trace_mem_scale", "bank_mem_frac", "bank_cpu_frac", "bank_len",
)  # fmt: skip
#: ``Params`` and ``State`` fields the observation reads.
OBS_PARAMS = (
    "dt_s", "host_mem_mib", "host_reserved_mib", "host_target_mib", "pcpus",
    "host_swap_out_mib", "host_swap_in_mib", "guest_mask", "mem_mib", "vcpus", "swap_out_mib",
    "swap_in_mib", "obs_static",
)  # fmt: skip
OBS_STATE = (
    "untouched", "balloon", "free", "cache", "host_swap", "balloon_target", "reserved_vcpus",
    "active_fast", "active_slow", "swap_in", "swap_out", "oom", "alloc_stall_s", "cpu_alloc",
    "driver_up", "host_swap_out", "host_swap_in",
)  # fmt: skip
#: The observation features the kernel computes (the rest of a guest's are ``obs_static``),
#: but for ``FAULT_FEATURE``, which it leaves to the caller.
DYNAMIC_FEATURES = (
    "present", "balloon", "balloon_target", "usable", "free", "available", "cache", "swap_in",
    "swap_out", "major_faults", "oom", "alloc_stall", "cpu_util", "active_vcpus", "driver_up",
    "active_estimate",
)  # fmt: skip
FAULT_FEATURE = DYNAMIC_FEATURES.index("major_faults")
HOST_FEATURES = (
    "host_free", "host_state", "host_swap_out", "host_swap_in", "pcpu_load", "host_capacity",
)  # fmt: skip
#: Rows of ``step_kernel``'s ``out``: the reward, then its parts in ``reward.compute``'s order.
REWARD_ROWS = (
    "reward", "score", "mean_throughput", "sla_ok_frac", "ooms", "host_swap_gib", "sla_misses",
    "penalty",
)  # fmt: skip

StepParams = namedtuple("StepParams", STEP_PARAMS)
KState = namedtuple("KState", STATE_FIELDS)
ObsParams = namedtuple("ObsParams", OBS_PARAMS)
ObsState = namedtuple("ObsState", OBS_STATE)
#: What the step passes between sub-steps: as ``workload.Demand``, ``balloon.BalloonMove`` and
#: ``guest.GuestStep`` (the fields the step uses).
Demand = namedtuple("Demand", ("anon_mib", "wss_mib", "cache_mib", "cpu_vcpus"))
Move = namedtuple(
    "Move",
    ("anon_res", "anon_swap", "cache", "free", "untouched", "balloon", "balloon_swap",
     "swap_out", "cache_dropped", "oom"),
)  # fmt: skip
GuestOut = namedtuple(
    "GuestOut",
    ("anon_res", "anon_swap", "cache", "free", "untouched", "balloon", "balloon_swap",
     "host_swap", "host_swap_in", "swap_in", "swap_out", "fault_pages", "oom", "stall_s"),
)  # fmt: skip


# --- 1. workload (workload.advance, workload.demand, workload.trace_usage) --------------------


@register_jitable(**INNER)
def advance(
    uniforms, burst_on0, phase_level0, leak0, oom_scale0, burst_p_on, burst_p_off, burst_mult,
    phase_p, phase_low, phase_high, leak_mib, oom_recover_per_step,
    burst_on, phase_level, leak, oom_scale,
):  # fmt: skip
    """Move the workload processes one step into ``burst_on`` ... ``oom_scale`` (``advance``).

    ``leak`` and ``oom_scale`` get the values before this step's OOM kills; the step resets
    them where the OOM killer fires, as the reference does.
    """
    n_envs, n_guests = burst_on.shape
    for n in range(n_envs):
        for g in range(n_guests):
            u = uniforms[0, n, g]
            on = u >= burst_p_off[n, g] if burst_on0[n, g] else u < burst_p_on[n, g]
            burst_on[n, g] = on and burst_mult[n, g] > 1.0
            level = phase_level0[n, g]
            if uniforms[1, n, g] < phase_p[n, g]:
                lo, hi = phase_low[n, g], phase_high[n, g]
                level = lo + uniforms[2, n, g] * (hi - lo)
            phase_level[n, g] = level
            leak[n, g] = leak0[n, g] + leak_mib[n, g]
            oom_scale[n, g] = min(oom_scale0[n, g] + oom_recover_per_step[n, g], 1.0)


@register_jitable(**INNER)
def _interpolate(frac, vm, i0, i1, w):
    """``(1 - w) * frac[vm, i0] + w * frac[vm, i1]`` (``trace_usage``)."""
    return (1.0 - w) * frac[vm, i0] + w * frac[vm, i1]


@register_jitable(**INNER)
def trace_demand(
    t, trace_vm, trace_pos, trace_mask, trace_rate, trace_mem_scale, mem_mib, vcpus, anon_mib,
    cpu_vcpus, bank_mem_frac, bank_cpu_frac, bank_len, anon_base, cpu,
):  # fmt: skip
    """Replace the footprint base and CPU demand of trace guests by their trace, in place
    (``workload.demand`` and ``workload.trace_usage``); ``t`` is the step's time ``[N]``.

    The reference replays only when the batch has a trace bank, and so does the step
    (``trace_mask`` is False everywhere without one).
    """
    n_envs, n_guests = trace_mask.shape
    for n in range(n_envs):
        for g in range(n_guests):
            if not trace_mask[n, g]:
                continue
            vm = trace_vm[n, g]
            length = bank_len[vm]
            pos = trace_pos[n, g] + t[n] * trace_rate[n, g]
            base = np.floor(pos)
            w = pos - base
            i0 = np.int64(base) % length
            i1 = (i0 + 1) % length
            mem_frac = _interpolate(bank_mem_frac, vm, i0, i1, w)
            cpu_frac = _interpolate(bank_cpu_frac, vm, i0, i1, w)
            scaled = min(mem_frac * trace_mem_scale[n, g], 1.0) * mem_mib[n, g]
            anon_base[n, g] = max(scaled, anon_mib[n, g])
            cpu[n, g] = max(cpu_frac * vcpus[n, g], cpu_vcpus[n, g])


@register_jitable(**INNER)
def levels(
    t, burst_on, phase_level, phase_offset, diurnal_period_steps, diurnal_phase, diurnal_amp,
    burst_mult, anon_mib, cpu_vcpus, cache_mib,
):  # fmt: skip
    """Footprint base (MiB), CPU (vCPUs) and page cache (MiB) wanted at step ``t`` (``[N]``)
    before trace replay, leak and OOM restart (``workload.demand``)."""
    n_envs, n_guests = burst_on.shape
    anon_base = np.empty((n_envs, n_guests))
    cpu = np.empty((n_envs, n_guests))
    cache = np.empty((n_envs, n_guests))
    for n in range(n_envs):
        for g in range(n_guests):
            level = 1.0  # ``1 + 0 * sin(...)`` is exactly 1: no ``sin`` (~13 ns) without a cycle
            if diurnal_amp[n, g] != 0.0:
                angle = TWO_PI * (t[n] / diurnal_period_steps[n, g] + diurnal_phase[n, g])
                level = 1.0 + diurnal_amp[n, g] * np.sin(angle + TWO_PI * phase_offset[n, g])
            level = level * (burst_mult[n, g] if burst_on[n, g] else 1.0) * phase_level[n, g]
            anon_base[n, g] = anon_mib[n, g] * level
            cpu[n, g] = cpu_vcpus[n, g] * level
            cache[n, g] = cache_mib[n, g] * level
    return anon_base, cpu, cache


@register_jitable(**INNER)
def footprint(anon_base, leak, oom_scale, wss_frac, touch_mib):
    """Anonymous footprint and hot memory wanted, MiB (``workload.demand``, last lines)."""
    n_envs, n_guests = anon_base.shape
    anon = np.empty((n_envs, n_guests))
    wss = np.empty((n_envs, n_guests))
    for n in range(n_envs):
        for g in range(n_guests):
            a = (anon_base[n, g] + leak[n, g]) * oom_scale[n, g]
            anon[n, g] = a
            wss[n, g] = min(wss_frac[n, g] * a + touch_mib[n, g], a)
    return anon, wss


# --- 2. targets (balloon.targets, balloon.project_allocation) ---------------------------------


@register_jitable(**INNER)
def _clip_action(a):
    """One action entry clipped to [-1, 1] (``split_action``'s ``minimum(maximum(a, -1), 1)``)."""
    return min(max(a, -1.0), 1.0)


@register_jitable(**INNER)
def _project_row(n, alloc, min_mib, guest_mask, host_target_mib):
    """Scale host ``n``'s allocations above ``min_mib`` into ``host_target_mib``, in place."""
    mins = 0.0
    total = 0.0
    for g in range(alloc.shape[1]):
        above = alloc[n, g] - min_mib[n, g] if guest_mask[n, g] else 0.0
        alloc[n, g] = above
        mins += min_mib[n, g] if guest_mask[n, g] else 0.0
        total += above
    room = max(host_target_mib[n, 0] - mins, 0.0)
    scale = min(1.0, room / max(total, EPS_MIB))
    for g in range(alloc.shape[1]):
        alloc[n, g] = min_mib[n, g] + alloc[n, g] * scale


@register_jitable(**INNER)
def targets(
    action, alloc_target0, delta_mode, delta_frac, min_mib, max_mib, mem_mib,
    balloon_max_mib, vcpus, guest_mask, host_target_mib, alloc_target, balloon_target,
):  # fmt: skip
    """Allocation and balloon targets into ``alloc_target`` and ``balloon_target``; returns the
    reserved-vCPU target (``balloon.targets``)."""
    n_envs, n_guests = alloc_target.shape
    reserved_target = np.empty((n_envs, n_guests))
    for n in range(n_envs):
        for g in range(n_guests):
            a = _clip_action(action[n, g])
            lo, hi = min_mib[n, g], max_mib[n, g]
            span = hi - lo
            if delta_mode[n, 0]:
                x = alloc_target0[n, g] + a * delta_frac[n, 0] * span
            else:
                x = lo + 0.5 * (a + 1.0) * span
            alloc_target[n, g] = min(max(x, lo), hi)
            v = vcpus[n, g]
            b = _clip_action(action[n, n_guests + g])
            reserved_target[n, g] = v - (1.0 + np.rint(0.5 * (b + 1.0) * (v - 1.0)))
        _project_row(n, alloc_target, min_mib, guest_mask, host_target_mib)
        for g in range(n_guests):
            gap = mem_mib[n, g] - alloc_target[n, g]
            balloon_target[n, g] = min(max(gap, 0.0), balloon_max_mib[n, g])
    return reserved_target


# --- 3. availability (balloon.availability) ---------------------------------------------------


@register_jitable(**INNER)
def availability(
    t0, outage_left0, u_outage, outage_start_step, outage_steps, outage_p, driver_present,
    guest_mask, driver_up, outage_left,
):  # fmt: skip
    """Driver up mask and outage countdown after this step (``balloon.availability``)."""
    n_envs, n_guests = driver_up.shape
    for n in range(n_envs):
        for g in range(n_guests):
            left = outage_left0[n, g]
            if t0[n] == outage_start_step[n, g]:
                left = outage_steps[n, g]
            if left == 0 and u_outage[n, g] < outage_p[n, g]:
                left = outage_steps[n, g]
            driver_up[n, g] = driver_present[n, g] and left == 0 and guest_mask[n, g]
            outage_left[n, g] = max(left - 1, 0)


# --- 4. host reclaim (host.reclaim, host.blocked_guests, state.host_memory_state) -------------


@register_jitable(**INNER)
def memory_state(free, host_mem):
    """ESX free-memory state of one host: 0 high, 1 soft, 2 hard, 3 low (``host_memory_state``)."""
    frac = free / host_mem + STATE_MARGIN_FRAC
    state = 0
    for line in (HIGH_FREE_FRAC, SOFT_FREE_FRAC, LOW_FREE_FRAC):
        state += 1 if frac < line else 0
    return state


@register_jitable(**INNER)
def consumed(mask, mem, untouched, balloon, host_swap):
    """Machine memory one guest uses, MiB (``state.consumed_mib``)."""
    return mem - untouched - balloon - host_swap if mask else 0.0


@register_jitable(**INNER)
def touched(anon_res, cache, free, untouched):
    """Guest pages with a machine page behind them, MiB (``step._touched``)."""
    return anon_res + cache + free - untouched


@register_jitable(**INNER)
def _split_reclaim(n, amount, host_swap0, swappable, over):
    """Split host ``n``'s swap-out ``amount`` among its guests: in place, ``over`` becomes the
    host swap after reclaim and ``swappable`` the swap-out per guest (``host.reclaim``)."""
    n_guests = swappable.shape[1]
    if amount == 0.0:  # the common case, exactly: the split below gives min(0 * w, s) == 0
        for g in range(n_guests):
            swappable[n, g] = 0.0
            over[n, g] = host_swap0[n, g]
        return
    over_sum = 0.0
    for g in range(n_guests):
        over_sum += over[n, g]
    any_over = over_sum > EPS_MIB
    weight_sum = 0.0
    for g in range(n_guests):
        weight_sum += over[n, g] if any_over else swappable[n, g]
    for g in range(n_guests):
        weight = over[n, g] if any_over else swappable[n, g]
        taken = min(amount * (weight / max(weight_sum, EPS_MIB)), swappable[n, g])
        swappable[n, g] = taken
        over[n, g] = host_swap0[n, g] + taken


@register_jitable(**INNER)
def reclaim(
    anon_res0, cache0, free0, untouched0, balloon0, host_swap0, alloc_target0, mem_mib,
    guest_mask, host_mem_mib, host_reserved_mib, host_swap_out_mib,
):  # fmt: skip
    """Host swap-out at the start of the step (``host.reclaim`` and ``host.blocked_guests``).

    Returns:
        ``host_swap`` after reclaim and the swap-out per guest (MiB ``[G]``), and the guests
        blocked in the low state (``[G]`` bool).
    """
    n_envs, n_guests = guest_mask.shape
    host_swap = np.empty((n_envs, n_guests))  # first: pages above target that may go
    host_out = np.empty((n_envs, n_guests))  # first: swappable pages
    blocked = np.empty((n_envs, n_guests), np.bool_)
    used = np.empty(n_guests)
    for n in range(n_envs):
        total = 0.0
        for g in range(n_guests):
            used[g] = consumed(guest_mask[n, g], mem_mib[n, g], untouched0[n, g], balloon0[n, g],
                               host_swap0[n, g])  # fmt: skip
            total += used[g]
        host_mem = host_mem_mib[n, 0]
        free = host_mem - host_reserved_mib[n, 0] - total
        state = memory_state(free, host_mem)
        need = max(SOFT_FREE_FRAC * host_mem - free, 0.0)
        amount = min(need, host_swap_out_mib[n, 0]) if state >= HOST_HARD else 0.0
        for g in range(n_guests):
            t = touched(anon_res0[n, g], cache0[n, g], free0[n, g], untouched0[n, g])
            swappable = max(t - host_swap0[n, g], 0.0) if guest_mask[n, g] else 0.0
            host_out[n, g] = swappable
            host_swap[n, g] = min(max(used[g] - alloc_target0[n, g], 0.0), swappable)
            above = used[g] > alloc_target0[n, g] + EPS_MIB
            blocked[n, g] = above and state == HOST_LOW and guest_mask[n, g]
        _split_reclaim(n, amount, host_swap0, host_out, host_swap)
    return host_swap, host_out, blocked


# --- 5. balloon driver (balloon.move, balloon.max_reservation_rate) ---------------------------


@register_jitable(**INNER)
def _inflate(
    want, free, cache, anon_res, anon_swap, balloon_swap, swap_mib, cache_reclaim_mib,
    swap_out_mib, alloc_mib, rate_adaptive, request_mib,
):  # fmt: skip
    """One guest's inflation: pages from free, cache and anon, the excess request, OOM flag."""
    swap_left = max(swap_mib - anon_swap - balloon_swap, 0.0)
    cache_cap = min(cache, cache_reclaim_mib)
    anon_cap = min(min(anon_res, swap_out_mib), swap_left)
    rate = min(alloc_mib, free + cache_cap + anon_cap)
    request = min(max(want, 0.0), rate if rate_adaptive else request_mib)
    got = min(request, rate)
    from_free = min(got, free)
    from_cache = min(got - from_free, cache_cap)
    from_anon = got - from_free - from_cache
    excess = request - got
    swap_after = swap_mib - anon_swap - balloon_swap - from_anon
    needs_anon = request > free + cache_cap + EPS_MIB
    oom = excess > EPS_MIB and needs_anon and swap_after <= EPS_MIB
    return got, from_free, from_cache, from_anon, excess, oom


@register_jitable(**INNER)
def move(
    balloon_target, driver_up, anon_res0, anon_swap0, cache0, free0, untouched0, balloon0,
    balloon_swap0, swap_mib, cache_reclaim_mib, swap_out_mib, alloc_mib, rate_adaptive,
    request_mib, free_mib, stall_s_per_mib, alloc_stall_s, balloon_moved,
):  # fmt: skip
    """Inflate or deflate every balloon towards its target (``balloon.move``).

    Fills ``alloc_stall_s`` and ``balloon_moved`` (the new state's) and returns the memory
    after the move (a ``Move``).
    """
    n_envs, n_guests = balloon_target.shape
    shape = (n_envs, n_guests)
    m = Move(
        np.empty(shape), np.empty(shape), np.empty(shape), np.empty(shape), np.empty(shape),
        np.empty(shape), np.empty(shape), np.empty(shape), np.empty(shape),
        np.empty(shape, np.bool_),
    )  # fmt: skip
    for n in range(n_envs):
        for g in range(n_guests):
            free, balloon = free0[n, g], balloon0[n, g]
            want = balloon_target[n, g] - balloon if driver_up[n, g] else 0.0
            got, from_free, from_cache, from_anon, excess, oom = _inflate(
                want, free, cache0[n, g], anon_res0[n, g], anon_swap0[n, g], balloon_swap0[n, g],
                swap_mib[n, g], cache_reclaim_mib[n, g], swap_out_mib[n, g], alloc_mib[n, g],
                rate_adaptive[n, g], request_mib[n, g],
            )  # fmt: skip
            release = min(max(-want, 0.0), free_mib[n, g])
            from_bswap = min(release, balloon_swap0[n, g])
            to_guest = min(release - from_bswap, balloon)
            m.anon_res[n, g] = anon_res0[n, g] - from_anon
            m.anon_swap[n, g] = anon_swap0[n, g] + from_anon
            m.cache[n, g] = cache0[n, g] - from_cache
            m.free[n, g] = free - from_free + to_guest
            m.untouched[n, g] = min(untouched0[n, g], free - from_free) + to_guest
            m.balloon[n, g] = balloon + got - to_guest
            m.balloon_swap[n, g] = balloon_swap0[n, g] - from_bswap
            m.swap_out[n, g] = from_anon
            m.cache_dropped[n, g] = from_cache
            alloc_stall_s[n, g] = excess * stall_s_per_mib[n, g]
            m.oom[n, g] = oom
            balloon_moved[n, g] = got + to_guest
    return m


# --- 6. guest memory (step glue, guest.machine_demand, host.machine_budget, guest.update) -----


@register_jitable(**INNER)
def _machine_demand(anon, wss, cache_want, anon_res, anon_swap, cache, host_swap):
    """Upper estimate of the new machine pages one guest could touch (``machine_demand``)."""
    grow = max(anon - anon_res - anon_swap, 0.0)
    hot_out = max(min(wss, anon_res + anon_swap) - anon_res, 0.0)
    fill = max(cache_want - cache, 0.0)
    return grow + hot_out + fill + host_swap


@register_jitable(**INNER)
def budgets(
    anon_res0, cache0, free0, untouched0, m, host_swap, d, blocked, guest_mask, mem_mib,
    host_mem_mib, host_reserved_mib, host_swap_in_mib,
):  # fmt: skip
    """Rescale host swap by the balloon's take and split free machine memory among guests.

    The step's host-swap rescale (``host_swap`` in place), ``guest.machine_demand``,
    ``host.machine_budget`` and the host swap-in scale of ``step.step``.

    Returns:
        The machine-page budget of each guest (MiB ``[G]``) and the fraction of host faults
        each host can serve this step (``[N]``).
    """
    n_envs, n_guests = guest_mask.shape
    budget = np.empty((n_envs, n_guests))
    in_scale = np.empty(n_envs)
    for n in range(n_envs):
        used_sum, demand_sum, swap_sum = 0.0, 0.0, 0.0
        for g in range(n_guests):
            before = touched(anon_res0[n, g], cache0[n, g], free0[n, g], untouched0[n, g])
            after = touched(m.anon_res[n, g], m.cache[n, g], m.free[n, g], m.untouched[n, g])
            hs = host_swap[n, g] * min(after / max(before, EPS_MIB), 1.0)
            host_swap[n, g] = hs
            mask = guest_mask[n, g]
            used_sum += consumed(mask, mem_mib[n, g], m.untouched[n, g], m.balloon[n, g], hs)
            want = _machine_demand(
                d.anon_mib[n, g], d.wss_mib[n, g], d.cache_mib[n, g], m.anon_res[n, g],
                m.anon_swap[n, g], m.cache[n, g], hs,
            )  # fmt: skip
            want = 0.0 if blocked[n, g] or not mask else want
            budget[n, g] = want
            demand_sum += want
            swap_sum += hs
        free = host_mem_mib[n, 0] - host_reserved_mib[n, 0] - used_sum
        scale = min(1.0, max(free, 0.0) / max(demand_sum, EPS_MIB))
        for g in range(n_guests):
            budget[n, g] = budget[n, g] * scale
        in_scale[n] = min(1.0, host_swap_in_mib[n, 0] / max(swap_sum, EPS_MIB))
    return budget, in_scale


@register_jitable(**INNER)
def _take_free(want, free, untouched, budget):
    """Take up to ``want`` free pages, touched first, untouched within ``budget``.

    Returns ``taken``, and ``free``, ``untouched``, ``budget`` after the take (``_take_free``).
    """
    touched_free = free - untouched
    taken = min(want, touched_free + min(untouched, budget))
    used_untouched = max(taken - touched_free, 0.0)
    return taken, free - taken, untouched - used_untouched, budget - used_untouched


@register_jitable(**INNER)
def _oom_and_shrink(
    mask, mem, kernel, swap, balloon, balloon_swap, forced_oom, free, anon_res, anon_swap,
    anon, wss,
):  # fmt: skip
    """OOM kill, then the footprint's shrink (``guest.update``, first two blocks).

    Returns ``oom``, ``free``, ``anon_res``, ``anon_swap``, ``anon_want``, ``hot_want``.
    """
    usable = mem - kernel - balloon
    oom = (anon > usable + swap - balloon_swap + EPS_MIB or forced_oom) and mask
    free = free + (anon_res if oom else 0.0)
    anon_res = 0.0 if oom else anon_res
    anon_swap = 0.0 if oom else anon_swap
    anon_want = 0.0 if oom else anon
    hot_want = 0.0 if oom else wss
    release = max(anon_res + anon_swap - anon_want, 0.0)
    from_swap = min(release, anon_swap)
    anon_swap = anon_swap - from_swap
    anon_res = anon_res - (release - from_swap)
    free = free + (release - from_swap)
    return oom, free, anon_res, anon_swap, anon_want, hot_want


@register_jitable(**INNER)
def _swap_out(rem, anon_res, anon_swap, budget, balloon, balloon_swap, swap_out_left, swap,
              user_driver):  # fmt: skip
    """Growth's swap-out: a user balloon's pages first, then anon (``guest.update``).

    Returns ``out_b`` (balloon pages), ``out_a`` (anon pages) and the budget after.
    """
    swap_room = max(swap - anon_swap - balloon_swap, 0.0)
    out_b = min(min(rem, swap_out_left), min(swap_room, budget))
    out_b = min(out_b, balloon) if user_driver else 0.0
    budget = budget - out_b
    out_a = min(min(rem - out_b, anon_res), min(swap_out_left, swap_room) - out_b)
    return out_b, out_a, budget


@register_jitable(**INNER)
def _cache_fill(want, cache, free, untouched, budget):
    """Page cache: drop what is not wanted, fill from free pages (``guest.update``).

    Returns ``cache``, ``free``, ``untouched``, ``budget`` and the re-read faults, pages.
    """
    drop = max(cache - want, 0.0)
    cache, free = cache - drop, free + drop
    fill, free, untouched, budget = _take_free(want - cache, free, untouched, budget)
    cache = cache + max(fill, 0.0)
    miss_pages = max(want - cache, 0.0) * CACHE_REREAD_FRAC * PAGES_PER_MIB
    return cache, free, untouched, budget, miss_pages


@register_jitable(**INNER)
def _report(anon_res, cache, free, untouched, report_frac, host_swap):
    """Free page reporting; host-swapped pages leave with the reported pages, in proportion.

    Returns ``untouched``, the touched pages and ``host_swap`` after (``guest.update``).
    """
    t = anon_res + cache + free - untouched
    reported = (free - untouched) * report_frac
    untouched = untouched + reported
    kept = 1.0 - reported / max(t, EPS_MIB)
    t = t - reported
    return untouched, t, min(host_swap * kept, t)


@register_jitable(**INNER)
def guest_update(
    m, host_swap, d, budget, in_scale, guest_mask, mem_mib, kernel_mib, swap_mib,
    cache_reclaim_mib, swap_out_mib, swap_in_mib, user_driver, dt_s, fault_s, report_frac,
    host_fault_s, out,
):  # fmt: skip
    """One step of guest memory management into ``out``, a ``GuestOut`` (``guest.update``)."""
    n_envs, n_guests = guest_mask.shape
    for n in range(n_envs):
        for g in range(n_guests):
            oom, free, anon_res, anon_swap, anon_want, hot_want = _oom_and_shrink(
                guest_mask[n, g], mem_mib[n, g], kernel_mib[n, g], swap_mib[n, g],
                m.balloon[n, g], m.balloon_swap[n, g], m.oom[n, g], m.free[n, g],
                m.anon_res[n, g], m.anon_swap[n, g], d.anon_mib[n, g], d.wss_mib[n, g],
            )  # fmt: skip
            # grow: free pages, then page cache, then swap out
            cache_left = cache_reclaim_mib[n, g] - m.cache_dropped[n, g]
            grow = max(anon_want - anon_res - anon_swap, 0.0)
            take_f, free, untouched, bud = _take_free(grow, free, m.untouched[n, g], budget[n, g])
            take_c = min(grow - take_f, min(m.cache[n, g], cache_left))
            cache_left = cache_left - take_c
            rem = grow - take_f - take_c
            out_b, out_a, bud = _swap_out(
                rem, anon_res, anon_swap, bud, m.balloon[n, g], m.balloon_swap[n, g],
                swap_out_mib[n, g] - m.swap_out[n, g], swap_mib[n, g], user_driver[n, g],
            )  # fmt: skip
            unmet = rem - out_b - out_a
            anon_res = anon_res + take_f + take_c + out_b
            anon_swap = anon_swap + out_a
            stall = dt_s[n, 0] * min(1.0, unmet / max(swap_out_mib[n, g], EPS_MIB))
            cache, free, untouched, bud, miss_pages = _cache_fill(
                d.cache_mib[n, g], m.cache[n, g] - take_c, free, untouched, bud
            )
            # hot pages not resident fault; bring them back from guest swap
            hot = min(hot_want, anon_res + anon_swap)
            hot_out = max(hot - anon_res, 0.0)
            want_in = min(hot_out, swap_in_mib[n, g])
            in_f, free, untouched, bud = _take_free(want_in, free, untouched, bud)
            in_c = min(want_in - in_f, min(cache, cache_left))
            swap_in = in_f + in_c
            cache = cache - in_c
            anon_res, anon_swap = anon_res + swap_in, anon_swap - swap_in
            fault_pages = hot_out * PAGES_PER_MIB + miss_pages
            stall = stall + fault_pages * fault_s[n, g]
            # free page reporting, then host faults on host-swapped pages
            untouched, t, hs = _report(anon_res, cache, free, untouched, report_frac[n, g],
                                       host_swap[n, g])  # fmt: skip
            host_hot = hs * min(min(hot, anon_res) / max(t, EPS_MIB), 1.0)
            host_in = min(host_hot * in_scale[n], bud)
            stall = stall + host_hot * PAGES_PER_MIB * host_fault_s[n, 0]
            out.anon_res[n, g], out.anon_swap[n, g], out.cache[n, g] = anon_res, anon_swap, cache
            out.free[n, g], out.untouched[n, g] = free, untouched
            out.balloon[n, g] = m.balloon[n, g] - out_b
            out.balloon_swap[n, g] = m.balloon_swap[n, g] + out_b
            out.host_swap[n, g], out.host_swap_in[n, g] = hs - host_in, host_in
            out.swap_in[n, g] = swap_in
            out.swap_out[n, g] = m.swap_out[n, g] + out_a + out_b
            out.fault_pages[n, g], out.oom[n, g], out.stall_s[n, g] = fault_pages, oom, stall


# --- 7. vcpus (balloon.vcpu_reservation) and the step's stall sum -----------------------------


@register_jitable(**INNER)
def vcpus(
    reserved_target, reserved_vcpus0, driver_up, blocked, oom, cpu_demand, vcpu_change,
    vcpu_change_cost_s, vcpu_count, guest_mask, dt_s, alloc_stall_s, reserved_vcpus, stall_s,
):  # fmt: skip
    """Reserved vCPUs after the step, the step's stall total; returns the runnable vCPUs.

    ``stall_s`` holds the guest update's stall on entry and gets the reference's sum
    ``guest + allocation stall + vCPU hot-plug + dt_s * (blocked | oom)``.
    """
    n_envs, n_guests = guest_mask.shape
    runnable = np.empty((n_envs, n_guests))
    for n in range(n_envs):
        dt = dt_s[n, 0]
        for g in range(n_guests):
            limit = vcpu_change[n, g] if driver_up[n, g] else 0.0
            change = min(max(reserved_target[n, g] - reserved_vcpus0[n, g], -limit), limit)
            reserved = reserved_vcpus0[n, g] + change
            reserved_vcpus[n, g] = reserved
            lost = dt * (1.0 if blocked[n, g] or oom[n, g] else 0.0)
            vcpu_stall = abs(change) * vcpu_change_cost_s[n, g]
            stall_s[n, g] = stall_s[n, g] + alloc_stall_s[n, g] + vcpu_stall + lost
            active = vcpu_count[n, g] - reserved
            runnable[n, g] = min(cpu_demand[n, g], active) if guest_mask[n, g] else 0.0
    return runnable


# --- 8. cpu (cpu.schedule, cpu.water_fill) ----------------------------------------------------


@register_jitable(**INNER)
def _sorted_order(ratio, order):
    """Indices of ``ratio`` in ascending order into ``order`` (insertion sort, stable)."""
    for k in range(ratio.size):
        j = k
        while j > 0 and ratio[order[j - 1]] > ratio[k]:
            order[j] = order[j - 1]
            j -= 1
        order[j] = k


@register_jitable(**INNER)
def _water_level(caps, w, ratio, order, capacity):
    """Water level ``lam`` of one host: ``sum(min(w * lam, caps)) == capacity``, or inf."""
    w_sum = 0.0
    for g in range(w.size):
        w_sum += w[g]
    cum_c, cum_w = 0.0, 0.0
    for k in range(order.size):
        j = order[k]
        next_c, next_w = cum_c + caps[j], cum_w + w[j]
        if next_c + ratio[j] * (w_sum - next_w) >= capacity:
            return (capacity - cum_c) / max(w_sum - cum_w, EPS_CPU)
        cum_c, cum_w = next_c, next_w
    return np.inf


@register_jitable(**INNER)
def water_fill(caps, shares, guest_mask, pcpus, alloc):
    """Proportional share of each host's pCPUs with caps into ``alloc`` (``cpu.water_fill``).

    Including the reference's batch-wide shortcut: when no host is short, every guest gets its
    cap; otherwise every host goes through the water level.
    """
    n_envs, n_guests = caps.shape
    short = False
    for n in range(n_envs):
        total = 0.0
        for g in range(n_guests):
            total += caps[n, g]
        short = short or not total <= pcpus[n, 0]
    if not short:
        for n in range(n_envs):
            for g in range(n_guests):
                alloc[n, g] = caps[n, g]
        return
    w = np.empty(n_guests)
    ratio = np.empty(n_guests)
    order = np.empty(n_guests, np.int64)
    for n in range(n_envs):
        for g in range(n_guests):
            w[g] = max(shares[n, g] if guest_mask[n, g] else 0.0, EPS_CPU)
            ratio[g] = caps[n, g] / w[g]
        _sorted_order(ratio, order)
        lam = _water_level(caps[n], w, ratio, order, pcpus[n, 0])
        for g in range(n_guests):
            alloc[n, g] = min(w[g] * lam, caps[n, g])


@register_jitable(**INNER)
def cpu_factor(cpu_alloc, runnable, cpu_demand, lhp_penalty):
    """Fraction of CPU demand served, SMP efficiency included (``cpu.schedule``)."""
    n_envs, n_guests = runnable.shape
    factor = np.empty((n_envs, n_guests))
    for n in range(n_envs):
        for g in range(n_guests):
            alloc, run, want = cpu_alloc[n, g], runnable[n, g], cpu_demand[n, g]
            short = max(run - alloc, 0.0) / max(run, EPS_CPU)
            smp_eff = 1.0 / (1.0 + lhp_penalty[n, g] * short)
            served = min(1.0, alloc / max(want, EPS_CPU)) * smp_eff
            factor[n, g] = served if want > EPS_CPU else 1.0
    return factor


# --- 9.-10. perf, sampling (perf.throughput, host.sample_active) -------------------------------


@register_jitable(**INNER)
def throughput(factor, stall_s, work_frac, guest_mask, dt_s, tp):
    """Per-guest throughput into ``tp``, 0 for padding (``perf.throughput``).

    ``work_frac``: how far a workload restarted by the OOM killer has recovered (``oom_scale``).
    """
    n_envs, n_guests = guest_mask.shape
    for n in range(n_envs):
        dt = dt_s[n, 0]
        for g in range(n_guests):
            mem_factor = 1.0 / (1.0 + stall_s[n, g] / dt)
            served = factor[n, g] * mem_factor * work_frac[n, g]
            tp[n, g] = served if guest_mask[n, g] else 0.0


@register_jitable(**INNER)
def sample_active(
    active_fast0, active_slow0, wss, balloon, normals, mem_mib, sample_pages, sample_fast_alpha,
    sample_slow_alpha, sampling, guest_mask, active_fast, active_slow,
):  # fmt: skip
    """The host's fast and slow estimates of each guest's active fraction (``sample_active``)."""
    n_envs, n_guests = guest_mask.shape
    for n in range(n_envs):
        for g in range(n_guests):
            true = min(wss[n, g] / max(mem_mib[n, g] - balloon[n, g], EPS_MIB), 1.0)
            noise = np.sqrt(true * (1.0 - true) / sample_pages[n, 0]) * normals[n, g]
            sample = min(max(true + noise, 0.0), 1.0)
            fast, slow = active_fast0[n, g], active_slow0[n, g]
            on = sampling[n, 0] and guest_mask[n, g]
            active_fast[n, g] = fast + sample_fast_alpha[n, 0] * (sample - fast) if on else 0.0
            active_slow[n, g] = slow + sample_slow_alpha[n, 0] * (sample - slow) if on else 0.0


# --- 11. reward (reward.compute) and the end of the step ---------------------------------------


@register_jitable(**INNER)
def _reward_row(n, sums, reward_kind, w_oom, w_host_swap_gib, w_sla, out):
    """Reward and parts of host ``n`` into ``out[:, n]`` from its guest sums (``compute``).

    ``sums``: guests, share-weighted throughput, shares, throughput, SLA misses, OOM kills and
    host swap-out (MiB).
    """
    count, weighted, shares, tp, misses, ooms, swap_out = sums
    n_guests = max(count, 1.0)
    score = weighted / max(shares, EPS_REWARD)
    mean_tp = tp / n_guests
    sla_ok = 1.0 - misses / n_guests
    swap_gib = swap_out / 1024.0
    kind = reward_kind[n, 0]
    base = score if kind == 0 else (mean_tp if kind == 1 else sla_ok)
    penalty = w_oom[n, 0] * ooms + w_host_swap_gib[n, 0] * swap_gib + w_sla[n, 0] * misses
    out[0, n] = base - penalty
    out[1, n], out[2, n], out[3, n], out[4, n] = score, mean_tp, sla_ok, ooms
    out[5, n], out[6, n], out[7, n] = swap_gib, misses, penalty


@register_jitable(**INNER)
def reward(
    tp, oom, host_out, host_in, guest_mask, shares, sla, reward_kind, w_oom, w_host_swap_gib,
    w_sla, host_swap_out, host_swap_in, out,
):  # fmt: skip
    """Host swap sums into ``host_swap_out``/``host_swap_in``, the reward and its parts into
    ``out`` (``reward.compute``)."""
    n_envs, n_guests = guest_mask.shape
    for n in range(n_envs):
        count, weighted, share_sum, tp_sum, misses, ooms, swap_out, swap_in = (0.0,) * 8
        for g in range(n_guests):
            mask = guest_mask[n, g]
            w = shares[n, g] if mask else 0.0
            count += 1.0 if mask else 0.0
            weighted += w * tp[n, g]
            share_sum += w
            tp_sum += tp[n, g]
            misses += 1.0 if mask and tp[n, g] < sla[n, g] else 0.0
            ooms += 1.0 if oom[n, g] else 0.0
            swap_out += host_out[n, g]
            swap_in += host_in[n, g]
        host_swap_out[n] = swap_out
        host_swap_in[n] = swap_in
        sums = (count, weighted, share_sum, tp_sum, misses, ooms, swap_out)
        _reward_row(n, sums, reward_kind, w_oom, w_host_swap_gib, w_sla, out)


@register_jitable(**INNER)
def restart(t0, oom, oom_restart_frac, t, oom_scale, leak):
    """The clock, and the workload's restart where the OOM killer fired (``step.step``)."""
    n_envs, n_guests = oom.shape
    for n in range(n_envs):
        t[n] = t0[n] + 1
        for g in range(n_guests):
            if oom[n, g]:
                oom_scale[n, g] = oom_restart_frac[n, g]
                leak[n, g] = 0.0


# --- entry points -----------------------------------------------------------------------------


@njit(**ENTRY)
def action_is_finite(action):
    """Whether every entry of ``action`` (2-D) is finite: checked before the step draws anything,
    so a bad action leaves the state and the generator untouched."""
    bad = 0
    for n in range(action.shape[0]):
        for j in range(action.shape[1]):
            bad += 0 if np.isfinite(action[n, j]) else 1  # no early exit: the loop vectorises
    return bad == 0


@njit(**ENTRY)
def step_kernel(
    p_fields, s_fields, o_fields, action, uniforms, normals, out, obs_static, obs, memory
):  # fmt: skip
    """One step of every host (``step.step``), written into ``o_fields`` and ``out``.

    Args:
        p_fields: The ``Params`` arrays named by ``STEP_PARAMS``, in that order.
        s_fields: The ``State`` arrays before the step named by ``STATE_FIELDS`` (only read).
        o_fields: The arrays of the new state named by ``STATE_FIELDS``, to fill; its
            ``phase_offset``, ``trace_vm`` and ``trace_pos`` are the old state's (not written).
        action: ``(N, 2 * G)`` float64, finite (``action_is_finite``): memory actions, then
            vCPU actions, each clipped here to [-1, 1] (``step.split_action``).
        uniforms: ``(4, N, G)`` uniform draws: burst, phase change, phase level, outage.
        normals: ``[G]`` standard normal draws of the sampling estimate.
        out: ``(len(REWARD_ROWS), N)``, gets the reward and its parts.
        obs_static: ``params.obs_static`` (the observation's static guest features).
        obs: ``(N, observation_size)`` float32, gets the observation of the new state; an
            array with no rows skips it.
        memory: ``(consumed_mib, host_free_mib, host_state)`` of the new state to fill (see
            ``observe_into``), with the observation.
    """
    p, s, o = StepParams(*p_fields), KState(*s_fields), KState(*o_fields)
    # 1. workload
    advance(uniforms, s.burst_on, s.phase_level, s.leak, s.oom_scale, p.burst_p_on,
            p.burst_p_off, p.burst_mult, p.phase_p, p.phase_low, p.phase_high, p.leak_mib,
            p.oom_recover_per_step, o.burst_on, o.phase_level, o.leak, o.oom_scale)  # fmt: skip
    t = s.t + 1
    anon_base, cpu, cache = levels(
        t, o.burst_on, o.phase_level, s.phase_offset, p.diurnal_period_steps, p.diurnal_phase,
        p.diurnal_amp, p.burst_mult, p.anon_mib, p.cpu_vcpus, p.cache_mib,
    )  # fmt: skip
    if p.bank_len.size > 0:  # as the reference: no trace bank, no trace guests (6 % faster)
        trace_demand(t, s.trace_vm, s.trace_pos, p.trace_mask, p.trace_rate, p.trace_mem_scale,
                     p.mem_mib, p.vcpus, p.anon_mib, p.cpu_vcpus, p.bank_mem_frac,
                     p.bank_cpu_frac, p.bank_len, anon_base, cpu)  # fmt: skip
    anon, wss = footprint(anon_base, o.leak, o.oom_scale, p.wss_frac, p.touch_mib)
    d = Demand(anon, wss, cache, cpu)
    # 2. targets
    reserved_target = targets(
        action, s.alloc_target, p.delta_mode, p.delta_frac, p.min_mib,
        p.max_mib, p.mem_mib, p.balloon_max_mib, p.vcpus, p.guest_mask, p.host_target_mib,
        o.alloc_target, o.balloon_target,
    )  # fmt: skip
    # 3. availability
    availability(
        s.t, s.outage_left, uniforms[3], p.outage_start_step, p.outage_steps, p.outage_p,
        p.driver_present, p.guest_mask, o.driver_up, o.outage_left,
    )  # fmt: skip
    # 4. host_reclaim
    host_swap, host_out, blocked = reclaim(
        s.anon_res, s.cache, s.free, s.untouched, s.balloon, s.host_swap, s.alloc_target,
        p.mem_mib, p.guest_mask, p.host_mem_mib, p.host_reserved_mib, p.host_swap_out_mib,
    )  # fmt: skip
    # 5. balloon
    m = move(o.balloon_target, o.driver_up, s.anon_res, s.anon_swap, s.cache, s.free,
             s.untouched, s.balloon, s.balloon_swap, p.swap_mib, p.cache_reclaim_mib,
             p.swap_out_mib, p.alloc_mib, p.rate_adaptive, p.request_mib, p.free_mib,
             p.stall_s_per_mib, o.alloc_stall_s, o.balloon_moved)  # fmt: skip
    # 6. guest
    budget, in_scale = budgets(s.anon_res, s.cache, s.free, s.untouched, m, host_swap, d,
                               blocked, p.guest_mask, p.mem_mib, p.host_mem_mib,
                               p.host_reserved_mib, p.host_swap_in_mib)  # fmt: skip
    host_in = np.empty_like(budget)
    g = GuestOut(o.anon_res, o.anon_swap, o.cache, o.free, o.untouched, o.balloon,
                 o.balloon_swap, o.host_swap, host_in, o.swap_in, o.swap_out, o.fault_pages,
                 o.oom, o.stall_s)  # fmt: skip
    guest_update(m, host_swap, d, budget, in_scale, p.guest_mask, p.mem_mib, p.kernel_mib,
                 p.swap_mib, p.cache_reclaim_mib, p.swap_out_mib, p.swap_in_mib, p.user_driver,
                 p.dt_s, p.fault_s, p.report_frac, p.host_fault_s, g)  # fmt: skip
    # 7. vcpus (and the step's stall total)
    runnable = vcpus(reserved_target, s.reserved_vcpus, o.driver_up, blocked, o.oom, cpu,
                     p.vcpu_change, p.vcpu_change_cost_s, p.vcpus, p.guest_mask, p.dt_s,
                     o.alloc_stall_s, o.reserved_vcpus, o.stall_s)  # fmt: skip
    # 8. cpu
    water_fill(runnable, p.shares, p.guest_mask, p.pcpus, o.cpu_alloc)
    factor = cpu_factor(o.cpu_alloc, runnable, cpu, p.lhp_penalty)
    # 9. perf, after the workload's OOM restart (its oom_scale is the work fraction)
    restart(s.t, o.oom, p.oom_restart_frac, o.t, o.oom_scale, o.leak)
    throughput(factor, o.stall_s, o.oom_scale, p.guest_mask, p.dt_s, o.throughput)
    # 10. sampling
    sample_active(s.active_fast, s.active_slow, wss, o.balloon, normals, p.mem_mib,
                  p.sample_pages, p.sample_fast_alpha, p.sample_slow_alpha, p.sampling,
                  p.guest_mask, o.active_fast, o.active_slow)  # fmt: skip
    # 11. reward
    reward(o.throughput, o.oom, host_out, host_in, p.guest_mask, p.shares, p.sla, p.reward_kind,
           p.w_oom, p.w_host_swap_gib, p.w_sla, o.host_swap_out, o.host_swap_in, out)  # fmt: skip
    # the observation of the new state, in the same call (``observe_kernel``)
    if obs.shape[0] > 0:
        obs_p = ObsParams(
            dt_s=p.dt_s, host_mem_mib=p.host_mem_mib, host_reserved_mib=p.host_reserved_mib,
            host_target_mib=p.host_target_mib, pcpus=p.pcpus,
            host_swap_out_mib=p.host_swap_out_mib, host_swap_in_mib=p.host_swap_in_mib,
            guest_mask=p.guest_mask, mem_mib=p.mem_mib, vcpus=p.vcpus,
            swap_out_mib=p.swap_out_mib, swap_in_mib=p.swap_in_mib, obs_static=obs_static,
        )  # fmt: skip
        obs_s = ObsState(
            untouched=o.untouched, balloon=o.balloon, free=o.free, cache=o.cache,
            host_swap=o.host_swap, balloon_target=o.balloon_target,
            reserved_vcpus=o.reserved_vcpus, active_fast=o.active_fast,
            active_slow=o.active_slow, swap_in=o.swap_in, swap_out=o.swap_out,
            oom=o.oom, alloc_stall_s=o.alloc_stall_s,
            cpu_alloc=o.cpu_alloc, driver_up=o.driver_up, host_swap_out=o.host_swap_out,
            host_swap_in=o.host_swap_in,
        )  # fmt: skip
        observe_into(obs_p, obs_s, obs, memory[0], memory[1], memory[2])


# --- observation (observe.observe) ------------------------------------------------------------


@register_jitable(**INNER)
def _feature(value, mask):
    """One float32 observation feature: cast, masked, clipped to [0, 1] (NaN stays NaN)."""
    x = np.float32(value) * mask
    x = np.float32(0.0) if x < 0.0 else x
    return np.float32(1.0) if x > 1.0 else x


@register_jitable(**INNER)
def _guest_features(
    out, n, base, mask, mem, balloon, balloon_target, free, cache, vcpus, reserved_vcpus, swap_in,
    swap_in_mib, swap_out, swap_out_mib, oom, alloc_stall_s, dt_s, cpu_alloc, driver_up,
    active_fast, active_slow,
):  # fmt: skip
    """The ``DYNAMIC_FEATURES`` of one guest into ``out[n, base:]`` (``observe.observe``),
    except ``major_faults``: its ``log10`` is the caller's, in numpy (``FAULT_FEATURE``)."""
    active = vcpus - reserved_vcpus
    per_mem = 1.0 / mem  # one division, not six: float32 features round the same (within
    out[n, base + 0] = _feature(1.0, mask)  # one float32 step, which the tests allow)
    out[n, base + 1] = _feature(balloon * per_mem, mask)
    out[n, base + 2] = _feature(balloon_target * per_mem, mask)
    out[n, base + 3] = _feature((mem - balloon) * per_mem, mask)
    out[n, base + 4] = _feature(free * per_mem, mask)
    out[n, base + 5] = _feature((free + cache) * per_mem, mask)
    out[n, base + 6] = _feature(cache * per_mem, mask)
    out[n, base + 7] = _feature(swap_in / swap_in_mib, mask)
    out[n, base + 8] = _feature(swap_out / swap_out_mib, mask)
    out[n, base + 10] = _feature(1.0 if oom else 0.0, mask)
    out[n, base + 11] = _feature(alloc_stall_s / dt_s, mask)
    out[n, base + 12] = _feature(cpu_alloc / active, mask)
    out[n, base + 13] = _feature(active / vcpus, mask)
    out[n, base + 14] = _feature(1.0 if driver_up else 0.0, mask)
    out[n, base + 15] = _feature(max(active_fast, active_slow), mask)


@register_jitable(**INNER)
def _host_features(out, n, base, free, host_mem, swap_out, swap_out_mib, swap_in, swap_in_mib, cpu,
                   pcpus, host_target):  # fmt: skip
    """The ``HOST_FEATURES`` of host ``n`` into ``out[n, base:]`` (``observe.observe``)."""
    one = np.float32(1.0)
    out[n, base + 0] = _feature(free / host_mem, one)
    out[n, base + 1] = _feature(memory_state(free, host_mem) * (1.0 / 3.0), one)
    out[n, base + 2] = _feature(swap_out / swap_out_mib, one)
    out[n, base + 3] = _feature(swap_in / swap_in_mib, one)
    out[n, base + 4] = _feature(cpu / pcpus, one)
    out[n, base + 5] = _feature(host_target / host_mem, one)


@register_jitable(**INNER)
def observe_into(p, s, out, consumed_mib, host_free_mib, host_state):
    """Observation of every host into ``out`` (``observe.observe``): ``p`` an ``ObsParams``,
    ``s`` an ``ObsState``; per guest the ``DYNAMIC_FEATURES`` then ``obs_static``, then the
    ``HOST_FEATURES``.

    On the way it has each guest's machine memory and each host's free memory and state, which
    it writes into ``consumed_mib`` ``[G]``, ``host_free_mib`` and ``host_state`` ``[N]`` (the
    env's ``info``; ``state.consumed_mib``, ``host_free_mib``, ``host_memory_state``) unless
    they have no rows.
    """
    n_envs, n_guests, n_static = p.obs_static.shape
    nf = len(DYNAMIC_FEATURES) + n_static
    one = np.float32(1.0)
    memory = consumed_mib.shape[0] > 0
    for n in range(n_envs):
        used, cpu = 0.0, 0.0
        for g in range(n_guests):
            base = g * nf
            mask = one if p.guest_mask[n, g] else np.float32(0.0)
            _guest_features(
                out, n, base, mask, p.mem_mib[n, g], s.balloon[n, g], s.balloon_target[n, g],
                s.free[n, g], s.cache[n, g], p.vcpus[n, g], s.reserved_vcpus[n, g],
                s.swap_in[n, g], p.swap_in_mib[n, g], s.swap_out[n, g], p.swap_out_mib[n, g],
                s.oom[n, g], s.alloc_stall_s[n, g], p.dt_s[n, 0],
                s.cpu_alloc[n, g], s.driver_up[n, g], s.active_fast[n, g], s.active_slow[n, g],
            )  # fmt: skip
            for k in range(n_static):
                out[n, base + len(DYNAMIC_FEATURES) + k] = _feature(p.obs_static[n, g, k], one)
            guest_used = consumed(p.guest_mask[n, g], p.mem_mib[n, g], s.untouched[n, g],
                                  s.balloon[n, g], s.host_swap[n, g])  # fmt: skip
            if memory:
                consumed_mib[n, g] = guest_used
            used += guest_used
            cpu += s.cpu_alloc[n, g]
        host_mem = p.host_mem_mib[n, 0]
        free = host_mem - p.host_reserved_mib[n, 0] - used
        if memory:
            host_free_mib[n] = free
            host_state[n] = memory_state(free, host_mem)
        _host_features(
            out, n, n_guests * nf, free, host_mem, s.host_swap_out[n], p.host_swap_out_mib[n, 0],
            s.host_swap_in[n], p.host_swap_in_mib[n, 0], cpu, p.pcpus[n, 0],
            p.host_target_mib[n, 0],
        )  # fmt: skip


@njit(**ENTRY)
def observe_kernel(p_fields, s_fields, out):
    """Observation of every host into ``out``, float32 (``observe.observe``).

    Args:
        p_fields: The ``Params`` arrays named by ``OBS_PARAMS``, in that order.
        s_fields: The ``State`` arrays named by ``OBS_STATE``, in that order.
        out: ``(num_envs, observation_size(max_guests))`` float32 to fill.
    """
    p, s = ObsParams(*p_fields), ObsState(*s_fields)
    observe_into(p, s, out, np.empty((0, 0)), np.empty(0), np.empty(0, np.int64))
