"""Compiled kernels of the fused backend: the whole step and the observation, in numba.

The model's equations are not repeated here. Each is written once, in the numpy core, as a
function registered with :func:`balloon_gym.core.ops.equation`; this module compiles every one of
them for scalars (the primitives ``minimum``, ``maximum``, ``select``, ``scaled_sin`` rebound to
the scalar forms of ``SCALAR_PRIMITIVES``) and calls them inside loops over hosts ``n`` and guests
``g``. What is left here is the loops and the reductions over a host's guests, which have a numpy
form (vectorised over rows) and a loop form (here): the allocation projection, the reclaim split,
the machine-page budget, water-filling and the reward's sums; ``tests/test_fused.py`` holds the
two forms to each other. Sums over a host's guests run in guest order where the numpy core sums
through BLAS (``core/rows.py``), which may round the last bit differently.

Structure: ``step_kernel`` runs the sub-steps of ``balloon_gym/core/step.py`` (``SUBSTEPS``) in
order, one function per sub-step (named as in ``SUBSTEPS``, listed in ``SUBSTEP_FUNCTIONS``),
each a loop over all hosts and their guests taking the whole ``Params`` (``p``), the state before
the step (``s``) and the new state (``o``) as namedtuples of the same fields. Every helper is
inlined into its entry point, and the entry points promise LLVM that their arrays do not overlap
(``NoAliasCompiler``). Measured alternatives were slower: one fused pass per host keeps ~140
arrays live and spills their pointers on every access (1.5x slower); taking 64 hosts at a time
through all sub-steps to stay in L2 (1.1x slower); the guest count as a compile-time constant
(1.15x slower); the observation computed feature by feature over a host's guests and then
transposed (1.25x slower). ``benchmarks/fused_profile.py`` times each sub-step.

Numba's on-disk cache would only notice a change of this file; the code compiled here comes from
every file of ``balloon_gym/core``, so the cache is keyed on a hash of all of them
(:class:`CoreSourcesLocator`).
"""

from __future__ import annotations

import hashlib
import types
from collections import namedtuple
from functools import cache
from pathlib import Path

import numpy as np
from llvmlite import ir
from numba import njit
from numba.core import caching
from numba.core import types as nb_types
from numba.core.compiler import Compiler
from numba.extending import intrinsic, overload, register_jitable

from balloon_gym.core import balloon, cpu, guest, host, ops, perf, reward, state, workload
from balloon_gym.core.observe import (
    FAULT_FEATURE,
    GUEST_OBSERVATION,
    HOST_FEATURES,
    NUM_DYNAMIC,
    guest_observation,
    host_observation,
)
from balloon_gym.core.params import Params
from balloon_gym.core.state import State
from balloon_gym.core.step import SUBSTEPS, host_in_scale, host_swap_after_move

_CORE_DIR = Path(balloon.__file__).resolve().parent


@cache
def core_sources_hash() -> str:
    """SHA-256 of every Python source of ``balloon_gym/core`` (this package included)."""
    h = hashlib.sha256()
    for path in sorted(_CORE_DIR.rglob("*.py")):
        h.update(str(path.relative_to(_CORE_DIR)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


class _CoreSourcesStamp:
    """Locator mixin: the cache's freshness stamp is the hash of the core's sources, and the
    hash is part of the cache files' names (a stale file is never even looked at)."""

    def get_source_stamp(self):
        return core_sources_hash()

    def get_disambiguator(self):
        return f"{super().get_disambiguator()}-{core_sources_hash()[:16]}"

    @classmethod
    def from_function(cls, py_func, py_file):
        if py_func.__module__ != __name__:
            return None
        return super().from_function(py_func, py_file)


class CoreSourcesLocator(_CoreSourcesStamp, caching.InTreeCacheLocator):
    """The kernels' cache in ``__pycache__`` next to this file, keyed on the core's sources."""


class _UserWideCoreSourcesLocator(_CoreSourcesStamp, caching.UserWideCacheLocator):
    """The same in the user-wide cache directory, when the package's directory is read-only."""


class _UserProvidedCoreSourcesLocator(_CoreSourcesStamp, caching.UserProvidedCacheLocator):
    """The same in ``NUMBA_CACHE_DIR``, when it is set."""


_LOCATORS = getattr(caching, "CacheImpl", None) or caching._CacheImpl  # renamed in numba 0.62
for _locator in (_UserWideCoreSourcesLocator, CoreSourcesLocator, _UserProvidedCoreSourcesLocator):
    if _locator not in _LOCATORS._locator_classes:
        _LOCATORS._locator_classes.insert(0, _locator)


class NoAliasCompiler(Compiler):
    """numba's compiler, telling LLVM that no two array arguments of an entry point overlap.

    LLVM can then keep values in registers across stores and vectorise loops without runtime
    overlap checks (numba otherwise sets the flag only for its parallel loops). It holds for the
    entry points: they write only the new state, ``out`` and ``obs``, which the caller allocates
    fresh (``balloon_gym.core.fused``); the arrays they only read may share memory (the old and
    new state share ``phase_offset``, ``trace_vm`` and ``trace_pos``, which are never written).
    Measured: the step 14 % faster at 1024 hosts x 8 guests, with bit-identical results.
    """

    def define_pipelines(self):
        self.state.flags.noalias = True
        return super().define_pipelines()


ENTRY = {"cache": True, "error_model": "numpy", "pipeline_class": NoAliasCompiler}
"""Options of the entry points: cached on disk; a float division by zero gives inf/NaN as in
numpy instead of raising; no overlapping array arguments (``NoAliasCompiler``)."""
INNER = {"error_model": "numpy", "forceinline": True}
"""Options of the functions they call (compiled into the entry points, no Python wrapper of
their own). ``forceinline`` has LLVM inline every one of them into its entry point: 6 % faster,
bit-identical."""


@register_jitable(**INNER)
def _select(cond, a, b):
    return a if cond else b


@register_jitable(**INNER)
def _scaled_sin(amp, angle):
    return amp * np.sin(angle) if amp != 0.0 else 0.0  # 1 + 0 * sin(x) == 1 + 0: no sine


@register_jitable(**INNER)
def _per(x, d):
    return x * (1.0 / d)  # LLVM computes 1 / d once for all the features with this d


#: The scalar forms of the primitives of ``core/ops.py``, by name.
SCALAR_PRIMITIVES = {
    "minimum": min,
    "maximum": max,
    "select": _select,
    "scaled_sin": _scaled_sin,
    "per": _per,
}


def _compile_for_scalars(fn):
    """Have numba compile calls of ``fn`` (an equation of the numpy core) as ``fn``'s own code
    with the primitives rebound to their scalar forms."""
    scope = {**fn.__globals__, **SCALAR_PRIMITIVES}
    scalar_fn = types.FunctionType(fn.__code__, scope, fn.__name__, fn.__defaults__, fn.__closure__)
    overload(fn, jit_options=INNER, strict=False)(lambda *args, **kwargs: scalar_fn)


for _fn in ops.EQUATIONS:
    _compile_for_scalars(_fn)

#: ``Params`` and ``State`` as the kernels see them (numba builds them from plain tuples).
KParams = namedtuple("KParams", Params._fields)
KState = namedtuple("KState", State._fields)
#: What the step passes between sub-steps: as ``workload.Demand`` and ``balloon.BalloonMove``.
Demand = namedtuple("Demand", workload.Demand._fields)
Move = namedtuple("Move", balloon.BalloonMove._fields)

#: Rows of ``step_kernel``'s ``out``: the reward, then its parts in ``reward.compute``'s order.
REWARD_ROWS = ("reward", *reward.PARTS)

#: The kernel computes the guest features of ``observe.GUEST_OBSERVATION`` (the dynamic ones,
#: before ``NUM_DYNAMIC``, but ``FAULT_FEATURE``: ``major_faults`` is left to the caller) and
#: copies ``params.obs_static`` after them.
OBSERVATION_LAYOUT = (GUEST_OBSERVATION, FAULT_FEATURE, NUM_DYNAMIC)
assert len(GUEST_OBSERVATION) == 15 and len(HOST_FEATURES) == 6  # the unrolled lines below

# --- 1. workload (workload.advance, workload.demand) ------------------------------------------


@register_jitable(**INNER)
def workload_(p, s, o, uniforms):
    """The processes one step on into ``o``; returns this step's ``Demand`` and each workload's
    full hot set (MiB ``[G]``).

    ``leak``, ``oom_scale``, ``restart_left_s`` and ``lost_s`` (the OOM recovery's lost time)
    get the values before this step's OOM kills; ``perf_`` restarts the workloads the OOM killer
    hits and adds the blocked guests' time, as the reference does. Trace guests replay only when the
    batch has a trace bank, as in the reference. Four short loops: the first and the last
    vectorise, which one loop with the sine's and the trace's branches would not.
    """
    n_envs, n_guests = p.guest_mask.shape
    shape = (n_envs, n_guests)
    for n in range(n_envs):
        for g in range(n_guests):
            o.burst_on[n, g], o.phase_level[n, g], o.leak[n, g] = workload.advance_process(
                uniforms[0, n, g], uniforms[1, n, g], uniforms[2, n, g], s.burst_on[n, g],
                s.phase_level[n, g], s.leak[n, g], p.burst_p_on[n, g], p.burst_p_off[n, g],
                p.burst_mult[n, g], p.phase_p[n, g], p.phase_low[n, g], p.phase_high[n, g],
                p.leak_mib[n, g],
            )  # fmt: skip
    anon_base, cpu_want, cache = np.empty(shape), np.empty(shape), np.empty(shape)
    for n in range(n_envs):
        t = s.t[n] + 1
        for g in range(n_guests):
            if p.diurnal_amp[n, g] != 0.0:
                lv = workload.level(
                    t, p.diurnal_period_steps[n, g], p.diurnal_phase[n, g], p.diurnal_amp[n, g],
                    s.phase_offset[n, g], o.burst_on[n, g], p.burst_mult[n, g],
                    o.phase_level[n, g],
                )  # fmt: skip
            else:  # no cycle: the same level (1 + 0 * sin(x) is 1), without the angle's division
                lv = workload.level(
                    0, 1.0, 0.0, 0.0, 0.0, o.burst_on[n, g], p.burst_mult[n, g],
                    o.phase_level[n, g],
                )  # fmt: skip
            anon_base[n, g], cpu_want[n, g], cache[n, g] = workload.base_demand(
                lv, p.anon_mib[n, g], p.cpu_vcpus[n, g], p.cache_mib[n, g]
            )
    if p.bank_len.size > 0:  # as the reference: no trace bank, no trace guests (6 % faster)
        _trace_demand(p, s, anon_base, cpu_want)
    anon, wss, hot = np.empty(shape), np.empty(shape), np.empty(shape)
    for n in range(n_envs):
        dt = p.dt_s[n, 0]
        for g in range(n_guests):
            full, hot[n, g] = workload.full_footprint(
                anon_base[n, g], o.leak[n, g], p.wss_frac[n, g], p.touch_mib[n, g]
            )
            o.restart_left_s[n, g], o.oom_scale[n, g], o.lost_s[n, g] = workload.recover(
                s.restart_left_s[n, g], s.oom_scale[n, g], hot[n, g], p.oom_reload_mib_s[n, g], dt
            )
            anon[n, g], wss[n, g] = workload.reloaded(full, hot[n, g], o.oom_scale[n, g])
    return Demand(anon, wss, cache, cpu_want), hot


@register_jitable(**INNER)
def _trace_demand(p, s, anon_base, cpu_want):
    """Footprint base and CPU demand of trace guests from their traces, in place."""
    n_envs, n_guests = p.guest_mask.shape
    for n in range(n_envs):
        t = s.t[n] + 1
        for g in range(n_guests):
            if not p.trace_mask[n, g]:
                continue
            vm = s.trace_vm[n, g]
            base, w = workload.trace_position(s.trace_pos[n, g], t, p.trace_rate[n, g])
            i0 = np.int64(base) % p.bank_len[vm]
            i1 = (i0 + 1) % p.bank_len[vm]
            mem_frac = workload.interpolate(w, p.bank_mem_frac[vm, i0], p.bank_mem_frac[vm, i1])
            cpu_frac = workload.interpolate(w, p.bank_cpu_frac[vm, i0], p.bank_cpu_frac[vm, i1])
            anon_base[n, g], cpu_want[n, g] = workload.trace_demand(
                mem_frac, cpu_frac, p.trace_mem_scale[n, g], p.mem_mib[n, g], p.anon_mib[n, g],
                p.vcpus[n, g], p.cpu_vcpus[n, g],
            )  # fmt: skip


# --- 2. targets (balloon.targets, balloon.project_allocation) ---------------------------------


@register_jitable(**INNER)
def _clip_action(a):
    """One action entry clipped to [-1, 1] (``split_action``'s ``minimum(maximum(a, -1), 1)``)."""
    return min(max(a, -1.0), 1.0)


@register_jitable(**INNER)
def _project_row(alloc_row, min_row, span, cap, base_sum, cap_sum, room_total, saturated):
    """Project one host's allocations (``balloon.project_allocation``) in place, from its
    guests' projection terms (``balloon.projection_parts``: ``span``, ``cap`` and the sums):
    the part above ``min_mib`` scaled as far as the claims on machine memory, bounded by the
    targets, exceed ``room_total`` (``host_target_mib``). Takes rows, not ``Params``/``State``:
    passed whole to a function LLVM does not inline, those two cost ~400 ns a host to copy."""
    room = room_total - base_sum
    if cap_sum <= room:  # the host is not short: the targets stay as asked
        for g in range(alloc_row.size):
            alloc_row[g] = min_row[g] + span[g]
        return
    level = _level_without_sort(cap, span, room, saturated)
    scale = balloon.projection_scale(room, cap_sum, level)
    for g in range(alloc_row.size):
        alloc_row[g] = min_row[g] + span[g] * scale


@register_jitable(**INNER)
def _level_without_sort(cap, span, room, saturated):
    """``level`` with ``sum(min(span * level, cap)) == room`` (inf if every cap fits);
    ``saturated``: scratch ``[G]`` int, 1 where a guest is held at its cap."""
    n_guests = span.size
    for g in range(n_guests):
        saturated[g] = 0
    while True:
        cap_sat, span_free = 0.0, 0.0
        for g in range(n_guests):
            if saturated[g]:
                cap_sat += cap[g]
            else:
                span_free += span[g]
        if span_free <= cpu._EPS:
            return np.inf
        level = (room - cap_sat) / span_free
        grew = False
        for g in range(n_guests):
            if not saturated[g] and span[g] * level >= cap[g]:
                saturated[g] = 1
                grew = True
        if not grew:
            return level


@register_jitable(**INNER)
def targets_(p, s, o, action):
    """Allocation and balloon targets into ``o``; returns the reserved-vCPU targets."""
    n_envs, n_guests = p.guest_mask.shape
    reserved_target = np.empty((n_envs, n_guests))
    span, cap = np.empty(n_guests), np.empty(n_guests)
    saturated = np.empty(n_guests, np.int64)
    for n in range(n_envs):
        delta_mode, delta_frac = p.delta_mode[n, 0], p.delta_frac[n, 0]
        base_sum, cap_sum = 0.0, 0.0
        for g in range(n_guests):
            want = balloon.alloc_request(
                _clip_action(action[n, g]), s.alloc_target[n, g], delta_mode, delta_frac,
                p.min_mib[n, g], p.max_mib[n, g],
            )  # fmt: skip
            b = _clip_action(action[n, n_guests + g])
            reserved_target[n, g] = balloon.reserved_request(b, p.vcpus[n, g])
            used = state.consumed(p.mem_mib[n, g], s.untouched[n, g], s.balloon[n, g],
                                  s.host_swap[n, g], p.guest_mask[n, g])  # fmt: skip
            base, span[g], cap[g] = balloon.projection_parts(
                want, p.min_mib[n, g], p.mem_mib[n, g], used, s.host_swap[n, g],
                p.guest_mask[n, g],
            )  # fmt: skip
            base_sum += base
            cap_sum += cap[g]
        _project_row(o.alloc_target[n], p.min_mib[n], span, cap, base_sum, cap_sum,
                     p.host_target_mib[n, 0], saturated)  # fmt: skip
        for g in range(n_guests):
            o.balloon_target[n, g] = balloon.balloon_size(
                p.mem_mib[n, g], o.alloc_target[n, g], p.balloon_max_mib[n, g]
            )
    return reserved_target


# --- 3. availability (balloon.availability) ---------------------------------------------------


@register_jitable(**INNER)
def availability_(p, s, o, u_outage):
    """Driver up mask and outage countdown into ``o``."""
    n_envs, n_guests = p.guest_mask.shape
    for n in range(n_envs):
        t = s.t[n]
        for g in range(n_guests):
            o.driver_up[n, g], o.outage_left[n, g] = balloon.outage(
                t, s.outage_left[n, g], u_outage[n, g], p.outage_start_step[n, g],
                p.outage_steps[n, g], p.outage_p[n, g], p.driver_present[n, g],
                p.guest_mask[n, g],
            )  # fmt: skip


# --- 4. host reclaim (host.reclaim, host.blocked_guests) --------------------------------------


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
    any_over = over_sum > host._EPS_MIB
    weight_sum = 0.0
    for g in range(n_guests):
        weight_sum += over[n, g] if any_over else swappable[n, g]
    for g in range(n_guests):
        weight = over[n, g] if any_over else swappable[n, g]
        taken = min(amount * (weight / max(weight_sum, host._EPS_MIB)), swappable[n, g])
        swappable[n, g] = taken
        over[n, g] = host_swap0[n, g] + taken


@register_jitable(**INNER)
def host_reclaim_(p, s):
    """Host swap-out at the start of the step (``host.reclaim`` and ``host.blocked_guests``).

    Returns:
        ``host_swap`` after reclaim and the swap-out per guest (MiB ``[G]``), and the guests
        blocked in the low state (``[G]`` bool).
    """
    n_envs, n_guests = p.guest_mask.shape
    host_swap = np.empty((n_envs, n_guests))  # first: pages above target that may go
    host_out = np.empty((n_envs, n_guests))  # first: swappable pages
    blocked = np.empty((n_envs, n_guests), np.bool_)
    used = np.empty(n_guests)
    for n in range(n_envs):
        total = 0.0
        for g in range(n_guests):
            used[g] = state.consumed(p.mem_mib[n, g], s.untouched[n, g], s.balloon[n, g],
                                     s.host_swap[n, g], p.guest_mask[n, g])  # fmt: skip
            total += used[g]
        host_mem = p.host_mem_mib[n, 0]
        free = host_mem - p.host_reserved_mib[n, 0] - total
        mem_state, amount = host.reclaim_amount(free, host_mem, p.host_swap_out_mib[n, 0])
        for g in range(n_guests):
            t = state.touched(s.anon_res[n, g], s.cache[n, g], s.free[n, g], s.untouched[n, g])
            host_out[n, g], host_swap[n, g] = host.reclaim_candidates(
                t, s.host_swap[n, g], used[g], s.alloc_target[n, g], p.guest_mask[n, g]
            )
            blocked[n, g] = host.blocked(used[g], s.alloc_target[n, g], mem_state,
                                         p.guest_mask[n, g])  # fmt: skip
        _split_reclaim(n, amount, s.host_swap, host_out, host_swap)
    return host_swap, host_out, blocked


# --- 5. balloon driver (balloon.move) ---------------------------------------------------------


@register_jitable(**INNER)
def balloon_(p, s, o):
    """Inflate or deflate every balloon towards its target (``balloon.move``).

    Fills ``alloc_stall_s`` and ``balloon_moved`` of ``o`` and returns the memory after the
    move (a ``Move``; its ``alloc_stall_s`` and ``moved`` are ``o``'s arrays).
    """
    n_envs, n_guests = p.guest_mask.shape
    shape = (n_envs, n_guests)
    m = Move(
        np.empty(shape), np.empty(shape), np.empty(shape), np.empty(shape), np.empty(shape),
        np.empty(shape), np.empty(shape), np.empty(shape), np.empty(shape), o.alloc_stall_s,
        np.empty(shape, np.bool_), o.balloon_moved,
    )  # fmt: skip
    for n in range(n_envs):
        for g in range(n_guests):
            (m.anon_res[n, g], m.anon_swap[n, g], m.cache[n, g], m.free[n, g],
             m.untouched[n, g], m.balloon[n, g], m.balloon_swap[n, g], m.swap_out[n, g],
             m.cache_dropped[n, g], m.alloc_stall_s[n, g], m.oom[n, g],
             m.moved[n, g]) = balloon.move_guest(
                o.driver_up[n, g], o.balloon_target[n, g], s.anon_res[n, g], s.anon_swap[n, g],
                s.cache[n, g], s.free[n, g], s.untouched[n, g], s.balloon[n, g],
                s.balloon_swap[n, g], p.swap_mib[n, g], p.cache_reclaim_mib[n, g],
                p.swap_out_mib[n, g], p.alloc_mib[n, g], p.rate_adaptive[n, g],
                p.request_mib[n, g], p.free_mib[n, g], p.stall_s_per_mib[n, g],
            )  # fmt: skip
    return m


# --- 6. guest memory (step glue, guest.machine_demand, host.machine_budget, guest.update) -----


@register_jitable(**INNER)
def _budgets(p, s, m, host_swap_moved, d, blocked):
    """Rescale host swap by the balloon's take (``host_swap_moved`` in place) and split free machine
    memory among guests (``guest.machine_demand``, ``host.machine_budget``).

    Returns:
        The machine-page budget of each guest (MiB ``[G]``) and the fraction of host faults
        each host can serve this step (``[N]``).
    """
    n_envs, n_guests = p.guest_mask.shape
    budget = np.empty((n_envs, n_guests))
    in_scale = np.empty(n_envs)
    for n in range(n_envs):
        used_sum, demand_sum, swap_sum = 0.0, 0.0, 0.0
        for g in range(n_guests):
            before = state.touched(s.anon_res[n, g], s.cache[n, g], s.free[n, g],
                                   s.untouched[n, g])  # fmt: skip
            after = state.touched(m.anon_res[n, g], m.cache[n, g], m.free[n, g],
                                  m.untouched[n, g])  # fmt: skip
            hs = host_swap_after_move(host_swap_moved[n, g], before, after)
            host_swap_moved[n, g] = hs
            mask = p.guest_mask[n, g]
            used_sum += state.consumed(p.mem_mib[n, g], m.untouched[n, g], m.balloon[n, g], hs,
                                       mask)  # fmt: skip
            want = guest.new_pages(
                d.anon_mib[n, g], d.wss_mib[n, g], d.cache_mib[n, g], m.anon_res[n, g],
                m.anon_swap[n, g], m.cache[n, g], hs,
            )  # fmt: skip
            want = 0.0 if blocked[n, g] or not mask else want
            budget[n, g] = want
            demand_sum += want
            swap_sum += hs
        free = p.host_mem_mib[n, 0] - p.host_reserved_mib[n, 0] - used_sum
        scale = min(1.0, max(free, 0.0) / max(demand_sum, host._EPS_MIB))
        for g in range(n_guests):
            budget[n, g] = budget[n, g] * scale
        in_scale[n] = host_in_scale(p.host_swap_in_mib[n, 0], swap_sum)
    return budget, in_scale


@register_jitable(**INNER)
def guest_(p, s, o, m, host_swap_moved, d, blocked):
    """One step of guest memory management into ``o`` (``guest.update``); returns the host's
    swap-in per guest (MiB ``[G]``)."""
    budget, in_scale = _budgets(p, s, m, host_swap_moved, d, blocked)
    n_envs, n_guests = p.guest_mask.shape
    host_in = np.empty((n_envs, n_guests))
    for n in range(n_envs):
        scale, host_fault_s, dt = in_scale[n], p.host_fault_s[n, 0], p.dt_s[n, 0]
        for g in range(n_guests):
            (o.anon_res[n, g], o.anon_swap[n, g], o.cache[n, g], o.free[n, g],
             o.untouched[n, g], o.balloon[n, g], o.balloon_swap[n, g], o.host_swap[n, g],
             o.swap_in[n, g], o.swap_out[n, g], o.fault_pages[n, g], o.anon_fault_pages[n, g],
             o.cache_fault_pages[n, g], _, host_in[n, g], o.oom[n, g],
             o.stall_s[n, g]) = guest.update_guest(
                d.anon_mib[n, g], d.wss_mib[n, g], d.cache_mib[n, g], m.anon_res[n, g],
                m.anon_swap[n, g], m.cache[n, g], m.free[n, g], m.untouched[n, g],
                m.balloon[n, g], m.balloon_swap[n, g], host_swap_moved[n, g], budget[n, g],
                scale, m.oom[n, g], m.cache_dropped[n, g], m.swap_out[n, g],
                p.mem_mib[n, g], p.kernel_mib[n, g], p.swap_mib[n, g],
                p.cache_reclaim_mib[n, g], p.swap_out_mib[n, g], p.swap_in_mib[n, g],
                p.user_driver[n, g], p.report_frac[n, g], p.fault_s[n, g], host_fault_s, dt,
                p.guest_mask[n, g], p.cache_hot_frac[n, g], p.swappiness[n, g],
            )  # fmt: skip
    return host_in


# --- 7. vcpus (balloon.vcpu_reservation) and the step's stall sum -----------------------------


@register_jitable(**INNER)
def vcpus_(p, s, o, reserved_target, blocked, cpu_demand):
    """Reserved vCPUs after the step into ``o``, and the stall of the time the guests ran
    (``o.stall_s`` holds the guest update's stall on entry); returns the runnable vCPUs."""
    n_envs, n_guests = p.guest_mask.shape
    runnable = np.empty((n_envs, n_guests))
    for n in range(n_envs):
        for g in range(n_guests):
            reserved, vcpu_stall = balloon.vcpu_step(
                reserved_target[n, g], s.reserved_vcpus[n, g], o.driver_up[n, g],
                p.vcpu_change[n, g], p.vcpu_change_cost_s[n, g],
            )  # fmt: skip
            o.reserved_vcpus[n, g] = reserved
            o.stall_s[n, g] = perf.total_stall(o.stall_s[n, g], o.alloc_stall_s[n, g], vcpu_stall)
            runnable[n, g] = cpu.runnable_vcpus(cpu_demand[n, g], p.vcpus[n, g], reserved,
                                                p.guest_mask[n, g])  # fmt: skip
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
            return (capacity - cum_c) / max(w_sum - cum_w, cpu._EPS)
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
            w[g] = max(shares[n, g] if guest_mask[n, g] else 0.0, cpu._EPS)
            ratio[g] = caps[n, g] / w[g]
        _sorted_order(ratio, order)
        lam = _water_level(caps[n], w, ratio, order, pcpus[n, 0])
        for g in range(n_guests):
            alloc[n, g] = min(w[g] * lam, caps[n, g])


@register_jitable(**INNER)
def cpu_(p, o, runnable, cpu_demand):
    """pCPU time into ``o.cpu_alloc``; returns the fraction of CPU demand served."""
    water_fill(runnable, p.shares, p.guest_mask, p.pcpus, o.cpu_alloc)
    n_envs, n_guests = p.guest_mask.shape
    factor = np.empty((n_envs, n_guests))
    for n in range(n_envs):
        for g in range(n_guests):
            _, factor[n, g] = cpu.served(o.cpu_alloc[n, g], runnable[n, g], cpu_demand[n, g],
                                         p.lhp_penalty[n, g], p.lhp_penalty_3x[n, g])  # fmt: skip
    return factor


# --- 9.-10. perf, sampling (step.step, perf.throughput, host.sample_active) -------------------


@register_jitable(**INNER)
def perf_(p, s, o, factor, hot, blocked):
    """The clock, the workload's restart where the OOM killer fired, the time lost, and the
    throughput."""
    n_envs, n_guests = p.guest_mask.shape
    for n in range(n_envs):
        o.t[n] = s.t[n] + 1
        dt = p.dt_s[n, 0]
        for g in range(n_guests):
            if o.oom[n, g]:  # rare: a branch, not a store to every guest
                o.restart_left_s[n, g], o.oom_scale[n, g], o.leak[n, g], o.lost_s[n, g] = (
                    perf.restart(
                        True, o.restart_left_s[n, g], o.oom_scale[n, g], o.leak[n, g],
                        o.lost_s[n, g], hot[n, g], p.oom_restart_s[n, g],
                        p.oom_reload_mib_s[n, g], dt,
                    )
                )  # fmt: skip
    for n in range(n_envs):
        dt = p.dt_s[n, 0]
        for g in range(n_guests):
            o.lost_s[n, g] = perf.lost_time(blocked[n, g], o.lost_s[n, g], dt)
            o.throughput[n, g] = perf.guest_throughput(
                factor[n, g], o.stall_s[n, g], o.lost_s[n, g], dt, p.guest_mask[n, g]
            )


@register_jitable(**INNER)
def sampling_(p, s, o, wss, normals):
    """The host's fast and slow estimates of each guest's active fraction into ``o``."""
    n_envs, n_guests = p.guest_mask.shape
    for n in range(n_envs):
        pages, sampling = p.sample_pages[n, 0], p.sampling[n, 0]
        fast_alpha, slow_alpha = p.sample_fast_alpha[n, 0], p.sample_slow_alpha[n, 0]
        for g in range(n_guests):
            o.active_fast[n, g], o.active_slow[n, g] = host.sample(
                s.active_fast[n, g], s.active_slow[n, g], wss[n, g], o.balloon[n, g],
                normals[n, g], p.mem_mib[n, g], pages, fast_alpha, slow_alpha,
                sampling and p.guest_mask[n, g],
            )  # fmt: skip


# --- 11. reward (reward.compute) --------------------------------------------------------------


@register_jitable(**INNER)
def reward_(p, o, host_out, host_in, out):
    """Host swap sums into ``o``, the reward and its parts into ``out`` (``reward.compute``)."""
    n_envs, n_guests = p.guest_mask.shape
    for n in range(n_envs):
        count, weighted, share_sum, tp_sum, misses, ooms, swap_out, swap_in = (0.0,) * 8
        for g in range(n_guests):
            mask = p.guest_mask[n, g]
            tp = o.throughput[n, g]
            w = p.shares[n, g] if mask else 0.0
            count += 1.0 if mask else 0.0
            weighted += w * tp
            share_sum += w
            tp_sum += tp
            misses += 1.0 if perf.sla_miss(tp, p.sla[n, g], mask) else 0.0
            ooms += 1.0 if o.oom[n, g] else 0.0
            swap_out += host_out[n, g]
            swap_in += host_in[n, g]
        o.host_swap_out[n] = swap_out
        o.host_swap_in[n] = swap_in
        values = reward.from_sums(
            count, weighted, share_sum, tp_sum, misses, ooms, swap_out, p.reward_kind[n, 0],
            p.w_oom[n, 0], p.w_host_swap_gib[n, 0], p.w_sla[n, 0],
        )  # fmt: skip
        # one line per row: constant indices (a loop over the tuple's index is much slower)
        out[0, n], out[1, n], out[2, n], out[3, n] = values[0], values[1], values[2], values[3]
        out[4, n], out[5, n], out[6, n], out[7, n] = values[4], values[5], values[6], values[7]


# --- entry points -----------------------------------------------------------------------------


@intrinsic
def _cycles(typingctx):
    """The CPU's cycle counter (``llvm.readcyclecounter``)."""

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(64), [])
        fn = builder.module.declare_intrinsic("llvm.readcyclecounter", fnty=fnty)
        return builder.call(fn, [])

    return nb_types.int64(), codegen


@register_jitable(**INNER)
def _tick(ticks, k):
    """Profiling (``benchmarks/fused_profile.py``): add the cycles since the last tick to
    ``ticks[k]``; the last slot holds the last reading. An empty ``ticks`` (the normal call)
    does nothing."""
    if ticks.size > 0:
        now = _cycles()
        if k >= 0:
            ticks[k] += now - ticks[-1]
        ticks[-1] = now


#: The sub-step functions of ``step_kernel``, in ``core.step.SUBSTEPS`` order.
SUBSTEP_FUNCTIONS = ("workload_", "targets_", "availability_", "host_reclaim_", "balloon_",
                     "guest_", "vcpus_", "cpu_", "perf_", "sampling_", "reward_")  # fmt: skip
assert tuple(f[:-1] for f in SUBSTEP_FUNCTIONS) == SUBSTEPS
#: What ``step_kernel``'s ``ticks`` time, in order: the sub-steps, then the observation.
PROFILE_SECTIONS = (*SUBSTEPS, "observation")


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
def step_kernel(p_fields, s_fields, o_fields, action, uniforms, normals, out, obs, memory, ticks):
    """One step of every host (``step.step``), written into ``o_fields`` and ``out``.

    Args:
        p_fields: The ``Params`` arrays, in field order.
        s_fields: The ``State`` arrays before the step, in field order (only read).
        o_fields: The arrays of the new state, in field order, to fill; its ``phase_offset``,
            ``trace_vm`` and ``trace_pos`` are the old state's (not written).
        action: ``(N, 2 * G)`` float64, finite (``action_is_finite``): memory actions, then
            vCPU actions, each clipped here to [-1, 1] (``step.split_action``).
        uniforms: ``(4, N, G)`` uniform draws: burst, phase change, phase level, outage.
        normals: ``[G]`` standard normal draws of the sampling estimate.
        out: ``(len(REWARD_ROWS), N)``, gets the reward and its parts.
        obs: ``(N, observation_size)`` float32, gets the observation of the new state; an
            array with no rows skips it.
        memory: ``(consumed_mib, host_free_mib, host_state)`` of the new state to fill (see
            ``observe_into``), with the observation.
        ticks: Empty; or ``len(PROFILE_SECTIONS) + 1`` int64 that gets the CPU cycles spent in
            each of ``PROFILE_SECTIONS`` added (``benchmarks/fused_profile.py``).
    """
    p, s, o = KParams(*p_fields), KState(*s_fields), KState(*o_fields)
    _tick(ticks, -1)
    d, hot = workload_(p, s, o, uniforms)
    _tick(ticks, 0)
    reserved_target = targets_(p, s, o, action)
    _tick(ticks, 1)
    availability_(p, s, o, uniforms[3])
    _tick(ticks, 2)
    host_swap, host_out, blocked = host_reclaim_(p, s)
    _tick(ticks, 3)
    m = balloon_(p, s, o)
    _tick(ticks, 4)
    host_in = guest_(p, s, o, m, host_swap, d, blocked)
    _tick(ticks, 5)
    runnable = vcpus_(p, s, o, reserved_target, blocked, d.cpu_vcpus)
    _tick(ticks, 6)
    factor = cpu_(p, o, runnable, d.cpu_vcpus)
    _tick(ticks, 7)
    perf_(p, s, o, factor, hot, blocked)
    _tick(ticks, 8)
    sampling_(p, s, o, d.wss_mib, normals)
    _tick(ticks, 9)
    reward_(p, o, host_out, host_in, out)
    _tick(ticks, 10)
    if obs.shape[0] > 0:  # the observation of the new state, in the same call
        observe_into(p, o, obs, memory[0], memory[1], memory[2])
    _tick(ticks, 11)


# --- observation (observe.observe) ------------------------------------------------------------


@register_jitable(**INNER)
def _feature(value, mask):
    """One float32 observation feature: cast, masked, clipped to [0, 1] (NaN stays NaN)."""
    x = np.float32(value) * mask
    x = np.float32(0.0) if x < 0.0 else x
    return np.float32(1.0) if x > 1.0 else x


@register_jitable(**INNER)
def _guest_features(out, n, g, base, mask, p, s):
    """The features of ``GUEST_OBSERVATION`` of guest ``g`` into ``out[n, base:]``."""
    values = guest_observation(
        p.mem_mib[n, g], s.balloon[n, g], s.balloon_target[n, g], s.free[n, g], s.cache[n, g],
        s.swap_in[n, g], p.swap_in_mib[n, g], s.swap_out[n, g], p.swap_out_mib[n, g],
        s.oom[n, g], s.alloc_stall_s[n, g], p.dt_s[n, 0], s.cpu_alloc[n, g],
        s.reserved_vcpus[n, g], p.vcpus[n, g], s.driver_up[n, g], s.active_fast[n, g],
        s.active_slow[n, g],
    )  # fmt: skip
    # one line per feature: constant indices (a loop over the tuple's index was 1.4x slower)
    out[n, base + GUEST_OBSERVATION[0]] = _feature(values[0], mask)
    out[n, base + GUEST_OBSERVATION[1]] = _feature(values[1], mask)
    out[n, base + GUEST_OBSERVATION[2]] = _feature(values[2], mask)
    out[n, base + GUEST_OBSERVATION[3]] = _feature(values[3], mask)
    out[n, base + GUEST_OBSERVATION[4]] = _feature(values[4], mask)
    out[n, base + GUEST_OBSERVATION[5]] = _feature(values[5], mask)
    out[n, base + GUEST_OBSERVATION[6]] = _feature(values[6], mask)
    out[n, base + GUEST_OBSERVATION[7]] = _feature(values[7], mask)
    out[n, base + GUEST_OBSERVATION[8]] = _feature(values[8], mask)
    out[n, base + GUEST_OBSERVATION[9]] = _feature(values[9], mask)
    out[n, base + GUEST_OBSERVATION[10]] = _feature(values[10], mask)
    out[n, base + GUEST_OBSERVATION[11]] = _feature(values[11], mask)
    out[n, base + GUEST_OBSERVATION[12]] = _feature(values[12], mask)
    out[n, base + GUEST_OBSERVATION[13]] = _feature(values[13], mask)
    out[n, base + GUEST_OBSERVATION[14]] = _feature(values[14], mask)


@register_jitable(**INNER)
def _host_features(out, n, base, free, cpu_sum, p, s):
    """The ``HOST_FEATURES`` of host ``n`` into ``out[n, base:]``."""
    values = host_observation(
        free, p.host_mem_mib[n, 0], s.host_swap_out[n], p.host_swap_out_mib[n, 0],
        s.host_swap_in[n], p.host_swap_in_mib[n, 0], cpu_sum, p.pcpus[n, 0],
        p.host_target_mib[n, 0],
    )  # fmt: skip
    one = np.float32(1.0)
    out[n, base + 0] = _feature(values[0], one)
    out[n, base + 1] = _feature(values[1], one)
    out[n, base + 2] = _feature(values[2], one)
    out[n, base + 3] = _feature(values[3], one)
    out[n, base + 4] = _feature(values[4], one)
    out[n, base + 5] = _feature(values[5], one)


@register_jitable(**INNER)
def observe_into(p, s, out, consumed_mib, host_free_mib, host_state):
    """Observation of every host into ``out`` (``observe.observe``): ``p`` a ``KParams``, ``s``
    a ``KState``; per guest the dynamic features then ``obs_static``, then the host features.

    On the way it has each guest's machine memory and each host's free memory and state, which
    it writes into ``consumed_mib`` ``[G]``, ``host_free_mib`` and ``host_state`` ``[N]`` (the
    env's ``info``; ``state.consumed_mib``, ``host_free_mib``, ``host_memory_state``) unless
    they have no rows.
    """
    n_envs, n_guests, n_static = p.obs_static.shape
    nf = NUM_DYNAMIC + n_static
    one = np.float32(1.0)
    memory = consumed_mib.shape[0] > 0
    for n in range(n_envs):
        used, cpu_sum = 0.0, 0.0
        for g in range(n_guests):
            base = g * nf
            mask = one if p.guest_mask[n, g] else np.float32(0.0)
            _guest_features(out, n, g, base, mask, p, s)
            for k in range(n_static):
                out[n, base + NUM_DYNAMIC + k] = _feature(p.obs_static[n, g, k], one)
            guest_used = state.consumed(p.mem_mib[n, g], s.untouched[n, g], s.balloon[n, g],
                                        s.host_swap[n, g], p.guest_mask[n, g])  # fmt: skip
            if memory:
                consumed_mib[n, g] = guest_used
            used += guest_used
            cpu_sum += s.cpu_alloc[n, g]
        free = p.host_mem_mib[n, 0] - p.host_reserved_mib[n, 0] - used
        if memory:
            host_free_mib[n] = free
            host_state[n] = state.memory_state(free, p.host_mem_mib[n, 0])
        _host_features(out, n, n_guests * nf, free, cpu_sum, p, s)


@njit(**ENTRY)
def observe_kernel(p_fields, s_fields, out):
    """Observation of every host into ``out``, float32 (``observe.observe``).

    Args:
        p_fields: The ``Params`` arrays, in field order.
        s_fields: The ``State`` arrays, in field order.
        out: ``(num_envs, observation_size(max_guests))`` float32 to fill.
    """
    p, s = KParams(*p_fields), KState(*s_fields)
    observe_into(p, s, out, np.empty((0, 0)), np.empty(0), np.empty(0, np.int64))
