"""Params: a scenario turned into arrays, batched like the state.

Guest fields have shape ``(num_envs, max_guests)``; host fields have shape ``(num_envs, 1)`` so
that they broadcast against guest fields without reshaping inside the step. Guests beyond a
scenario's own count are padding: ``guest_mask`` is False there, and their sizes are harmless
placeholders (1 MiB, no demand) so that no division is by zero.

Because params are arrays, one batch can hold hosts of different scenarios (:func:`stack_params`).
Derived constants (per-step rates, probabilities) are computed here, once, and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from balloon_gym.config import ConfigError, GuestConfig, ScenarioConfig, WorkloadConfig
from balloon_gym.core.tracebank import Bank, load_bank

FLOAT = np.float64
"""Float type of the core. float64 keeps the accounting identities exact to ~1e-9 MiB."""

PAGES_PER_MIB = 256.0
"""4 KiB pages per MiB: converts MiB of faulted memory into page faults."""

#: ESX free-memory thresholds as fractions of machine memory (Waldspurger, OSDI 2002).
HIGH_FREE_FRAC = 0.06
SOFT_FREE_FRAC = 0.04
LOW_FREE_FRAC = 0.01
STATE_MARGIN_FRAC = 1e-9
"""A host is below a state line only if below it by this much: the projection puts a compliant
host exactly on the high line, where the last bit of a sum must not flip the state."""

GROWTH_HEADROOM_FRAC = HIGH_FREE_FRAC - SOFT_FREE_FRAC
"""Growth head room the host's projection adds to each guest's claim on machine memory, as a
fraction of the guest's memory: the band between the high and the soft line, which a host can
lose to growth before it swaps (``balloon.project_allocation``)."""

#: Host memory states, in the order of the observation's ``host_state`` feature.
HOST_HIGH, HOST_SOFT, HOST_HARD, HOST_LOW = 0, 1, 2, 3

REWARD_NAMES = ("weighted_throughput", "mean_throughput", "sla")

#: Time constants of the ESX-style active-memory estimate's fast and slow averages, s.
SAMPLE_FAST_TAU_S = 60.0
SAMPLE_SLOW_TAU_S = 600.0

#: Free page reporting batches every 2 s in Linux (mm/page_reporting.c).
FREE_PAGE_REPORTING_DELAY_S = 2.0


class Params(NamedTuple):
    """Scenario parameters as arrays. ``[G]``: (num_envs, max_guests); ``[H]``: (num_envs, 1)."""

    # --- host [H] ---
    dt_s: np.ndarray  # [H] control interval, s
    episode_steps: np.ndarray  # [H] int, steps per episode
    host_mem_mib: np.ndarray  # [H] machine memory, MiB
    host_reserved_mib: np.ndarray  # [H] hypervisor's own memory, MiB
    host_target_mib: np.ndarray  # [H] memory the scheduler may hand out (high-state margin), MiB
    pcpus: np.ndarray  # [H] physical CPUs
    host_swap_out_mib: np.ndarray  # [H] host swap-out per step, MiB
    host_swap_in_mib: np.ndarray  # [H] host swap-in per step, MiB
    host_fault_s: np.ndarray  # [H] stall per host fault (page), s
    sampling: np.ndarray  # [H] bool, ESX statistical sampling on
    sample_pages: np.ndarray  # [H] int, pages sampled per step
    sample_fast_alpha: np.ndarray  # [H] EMA gain of the fast estimate per step
    sample_slow_alpha: np.ndarray  # [H] EMA gain of the slow estimate per step
    delta_mode: np.ndarray  # [H] bool, actions are target changes
    delta_frac: np.ndarray  # [H] largest target change per step, fraction of range
    reward_kind: np.ndarray  # [H] int, index into REWARD_NAMES
    w_oom: np.ndarray  # [H] penalty per OOM kill
    w_host_swap_gib: np.ndarray  # [H] penalty per GiB host-swapped
    w_sla: np.ndarray  # [H] penalty per SLA miss
    # --- guest sizes [G] ---
    guest_mask: np.ndarray  # [G] bool, real guest (False = padding)
    mem_mib: np.ndarray  # [G] configured memory, MiB
    min_mib: np.ndarray  # [G] guaranteed allocation, MiB
    max_mib: np.ndarray  # [G] allocation upper bound, MiB
    kernel_mib: np.ndarray  # [G] kernel and pinned memory, MiB
    balloon_max_mib: np.ndarray  # [G] balloon cap: min(max_balloon_frac * mem, mem - min), MiB
    shares: np.ndarray  # [G] memory and CPU shares (0 for padding)
    vcpus: np.ndarray  # [G] configured vCPUs
    vcpu_change: np.ndarray  # [G] most vCPUs changed per step
    vcpu_change_cost_s: np.ndarray  # [G] stall per vCPU changed, s
    swap_mib: np.ndarray  # [G] guest swap space, MiB
    swap_out_mib: np.ndarray  # [G] guest swap-out per step, MiB
    swap_in_mib: np.ndarray  # [G] guest swap-in per step, MiB
    cache_reclaim_mib: np.ndarray  # [G] page cache dropped per step, MiB
    fault_s: np.ndarray  # [G] stall per guest major fault (page), s
    lhp_penalty: np.ndarray  # [G] extra loss to lock-holder preemption at 2x overcommit
    lhp_penalty_3x: np.ndarray  # [G] the same at 3x overcommit and above
    sla: np.ndarray  # [G] throughput threshold of an SLA miss
    report_frac: np.ndarray  # [G] fraction of touched free pages reported per step (0 = off)
    # --- balloon driver [G] ---
    user_driver: np.ndarray  # [G] bool, user-level driver (claim 9)
    rate_adaptive: np.ndarray  # [G] bool, driver adapts to the reservation change rate
    alloc_mib: np.ndarray  # [G] inflation from free pages per step (user speed applied), MiB
    free_mib: np.ndarray  # [G] deflation per step, MiB
    request_mib: np.ndarray  # [G] a naive driver's request per step, MiB
    stall_s_per_mib: np.ndarray  # [G] stall per MiB a naive driver asks in vain, s
    driver_present: np.ndarray  # [G] bool, a driver is installed
    outage_start_step: np.ndarray  # [G] int, step of the scheduled outage (-1 = none)
    outage_steps: np.ndarray  # [G] int, length of each outage, steps
    outage_p: np.ndarray  # [G] probability per step that a random outage starts
    # --- workload [G] ---
    anon_mib: np.ndarray  # [G] base anonymous footprint, MiB
    wss_frac: np.ndarray  # [G] hot fraction of the footprint
    cache_mib: np.ndarray  # [G] page cache wanted, MiB
    cpu_vcpus: np.ndarray  # [G] base CPU demand, vCPUs
    diurnal_amp: np.ndarray  # [G] relative sine amplitude
    diurnal_period_steps: np.ndarray  # [G] sine period, steps
    diurnal_phase: np.ndarray  # [G] sine phase, fraction of the period
    phase_jitter: np.ndarray  # [G] random extra phase per episode, fraction of the period
    burst_mult: np.ndarray  # [G] demand multiplier while bursting
    burst_p_on: np.ndarray  # [G] probability per step that a burst starts
    burst_p_off: np.ndarray  # [G] probability per step that a burst ends
    phase_p: np.ndarray  # [G] probability per step of a phase change
    phase_low: np.ndarray  # [G] lowest level after a phase change
    phase_high: np.ndarray  # [G] highest level after a phase change
    leak_mib: np.ndarray  # [G] leak per step, MiB
    oom_restart_s: np.ndarray  # [G] delay before an OOM-killed workload restarts, s
    oom_reload_mib_s: np.ndarray  # [G] rate a restarted workload re-reads its hot set, MiB/s
    touch_mib: np.ndarray  # [G] cold pages touched per step, MiB
    # --- guest page reclaim by recency (LRU balance) [G] ---
    cache_hot_frac: np.ndarray  # [G] hot fraction of the page cache wanted
    swappiness: np.ndarray  # [G] vm.swappiness: anon vs file reclaim weight, 0..200
    # --- trace replay [G] ---
    trace_mask: np.ndarray  # [G] bool, the guest replays a trace
    trace_lo: np.ndarray  # [G] int, first VM of the guest's pool in the bank
    trace_hi: np.ndarray  # [G] int, one past the last VM of the pool
    trace_rate: np.ndarray  # [G] trace samples per step (dt_s / sample period)
    trace_mem_scale: np.ndarray  # [G] footprint = used fraction * mem_mib * scale
    # --- the trace bank: shared by the whole batch, no batch axis ---
    bank_mem_frac: np.ndarray  # (num_vms, max_len) memory used / provisioned
    bank_cpu_frac: np.ndarray  # (num_vms, max_len) CPU used / provisioned vCPUs
    bank_len: np.ndarray  # (num_vms,) int, samples of each VM
    # --- derived once ---
    obs_static: np.ndarray  # [G, 6] float32, the observation's static guest features

    @property
    def num_envs(self) -> int:
        """Batch size."""
        return self.guest_mask.shape[0]

    @property
    def max_guests(self) -> int:
        """Guest slots per host, padding included."""
        return self.guest_mask.shape[1]


_PAD_GUEST = GuestConfig(
    name="padding",
    mem_mib=2.0,
    min_mib=2.0,
    kernel_mib=1.0,
    workload=WorkloadConfig(anon_mib=0.0, wss_frac=0.0, cache_mib=0.0, cpu_vcpus=0.0),
)
"""An empty slot: valid sizes (no division by zero), no demand; masked out and zero shares."""


SHARED_FIELDS = frozenset({"bank_mem_frac", "bank_cpu_frac", "bank_len"})
"""Params fields without a batch axis (the trace bank), shared by every env of a batch."""


def _prob_per_step(dt_s: float, mean_s: float) -> float:
    """Probability that an event with mean waiting time ``mean_s`` happens within ``dt_s``."""
    return 0.0 if mean_s <= 0 else float(-np.expm1(-dt_s / mean_s))


def _host_row(cfg: ScenarioConfig) -> dict[str, float]:
    h, r, dt = cfg.host, cfg.reward, cfg.dt_s
    return {
        "dt_s": dt,
        "episode_steps": cfg.episode_steps,
        "host_mem_mib": h.mem_mib,
        "host_reserved_mib": h.reserved_mib,
        "host_target_mib": h.mem_mib * (1.0 - HIGH_FREE_FRAC) - h.reserved_mib,
        "pcpus": h.pcpus,
        "host_swap_out_mib": h.swap_out_mib_s * dt,
        "host_swap_in_mib": h.swap_in_mib_s * dt,
        "host_fault_s": h.fault_s,
        "sampling": h.sampling,
        "sample_pages": max(1, round(h.sample_pages * dt / h.sample_period_s)),
        "sample_fast_alpha": _prob_per_step(dt, SAMPLE_FAST_TAU_S),
        "sample_slow_alpha": _prob_per_step(dt, SAMPLE_SLOW_TAU_S),
        "delta_mode": cfg.action_mode == "delta",
        "delta_frac": cfg.delta_frac,
        "reward_kind": REWARD_NAMES.index(r.name),
        "w_oom": r.w_oom,
        "w_host_swap_gib": r.w_host_swap_gib,
        "w_sla": r.w_sla,
    }


def _guest_row(g: GuestConfig, dt: float, bank: Bank | None) -> dict[str, float]:
    d, w = g.driver, g.workload
    speed = d.user_speed if d.kind == "user" else 1.0
    report = max(0.0, 1.0 - FREE_PAGE_REPORTING_DELAY_S / dt) if g.free_page_reporting else 0.0
    return {
        "guest_mask": True,
        "mem_mib": g.mem_mib,
        "min_mib": g.min_mib,
        "max_mib": g.max_alloc_mib,
        "kernel_mib": g.kernel_mib,
        "balloon_max_mib": min(d.max_balloon_frac * g.mem_mib, g.mem_mib - g.min_mib),
        "shares": g.shares,
        "vcpus": g.vcpus,
        "vcpu_change": g.vcpu_change_per_step,
        "vcpu_change_cost_s": g.vcpu_change_cost_s,
        "swap_mib": g.swap_mib,
        "swap_out_mib": g.swap_out_mib_s * dt,
        "swap_in_mib": g.swap_in_mib_s * dt,
        "cache_reclaim_mib": g.cache_reclaim_mib_s * dt,
        "fault_s": g.fault_s,
        "lhp_penalty": g.lhp_penalty,
        "lhp_penalty_3x": g.lhp_penalty_3x,
        "sla": g.sla,
        "report_frac": report,
        "user_driver": d.kind == "user",
        "rate_adaptive": d.rate_adaptive,
        "alloc_mib": d.alloc_mib_s * speed * dt,
        "free_mib": d.free_mib_s * speed * dt,
        "request_mib": d.max_request_mib_s * speed * dt,
        "stall_s_per_mib": d.stall_s_per_mib,
        "driver_present": d.present,
        "outage_start_step": -1 if d.outage_start_s < 0 else round(d.outage_start_s / dt),
        "outage_steps": round(d.outage_duration_s / dt),
        "outage_p": _prob_per_step(dt, 3600.0 / d.outage_rate_per_h) if d.outage_rate_per_h else 0,
        "anon_mib": w.anon_mib,
        "wss_frac": w.wss_frac,
        "cache_mib": w.cache_mib,
        "cpu_vcpus": w.cpu_vcpus,
        "diurnal_amp": w.diurnal_amp,
        "diurnal_period_steps": w.diurnal_period_s / dt,
        "diurnal_phase": w.diurnal_phase,
        "phase_jitter": w.phase_jitter,
        "burst_mult": w.burst_mult,
        "burst_p_on": _prob_per_step(dt, w.burst_off_s),
        "burst_p_off": _prob_per_step(dt, w.burst_on_s),
        "phase_p": _prob_per_step(dt, w.phase_mean_s),
        "phase_low": w.phase_low,
        "phase_high": w.phase_high,
        "leak_mib": w.leak_mib_s * dt,
        "oom_restart_s": w.oom_restart_s,
        "oom_reload_mib_s": w.oom_reload_mib_s,
        "touch_mib": w.touch_mib_s * dt,
        "cache_hot_frac": w.cache_hot_frac,
        "swappiness": g.swappiness,
        **_trace_row(g, dt, bank),
    }


def _trace_row(g: GuestConfig, dt: float, bank: Bank | None) -> dict[str, float]:
    w = g.workload
    if w.kind != "trace" or bank is None:
        return {"trace_mask": False, "trace_lo": 0, "trace_hi": 0, "trace_rate": 0.0,
                "trace_mem_scale": 1.0}  # fmt: skip
    lo, hi = bank.pools[w.trace_split]
    return {
        "trace_mask": True,
        "trace_lo": lo,
        "trace_hi": hi,
        "trace_rate": dt / bank.sample_period_s,
        "trace_mem_scale": w.trace_mem_scale,
    }


_INT_FIELDS = {
    "episode_steps",
    "sample_pages",
    "reward_kind",
    "outage_start_step",
    "outage_steps",
    "trace_lo",
    "trace_hi",
}
_BOOL_FIELDS = {
    "sampling",
    "delta_mode",
    "guest_mask",
    "user_driver",
    "rate_adaptive",
    "driver_present",
    "trace_mask",
}


def _dtype(name: str) -> type:
    if name in _BOOL_FIELDS:
        return np.bool_
    if name in _INT_FIELDS:
        return np.int64
    return FLOAT


def _with_split(g: GuestConfig, split: str) -> GuestConfig:
    if g.workload.kind != "trace":
        return g
    return g.model_copy(update={"workload": g.workload.model_copy(update={"trace_split": split})})


def _scenario_bank(guests: list[GuestConfig]) -> Bank | None:
    """The one trace bank a scenario's trace guests replay, or None."""
    sources = {g.workload.trace_source for g in guests if g.workload.kind == "trace"}
    if not sources:
        return None
    if len(sources) > 1:
        raise ConfigError(
            f"trace guests of one scenario use different trace_source values {sorted(sources)}; "
            "give them the same one"
        )
    bank = load_bank(sources.pop())
    for g in guests:
        lo, hi = bank.pools[g.workload.trace_split] if g.workload.kind == "trace" else (0, 1)
        if hi <= lo:
            raise ConfigError(
                f"guest {g.name!r}: trace split {g.workload.trace_split!r} of its trace_source "
                "has no VM; choose another split or add traces"
            )
    return bank


def _bank_fields(bank: Bank | None) -> dict[str, np.ndarray]:
    if bank is None:
        return {
            "bank_mem_frac": np.zeros((0, 1)),
            "bank_cpu_frac": np.zeros((0, 1)),
            "bank_len": np.zeros(0, dtype=np.int64),
        }
    return {"bank_mem_frac": bank.mem_frac, "bank_cpu_frac": bank.cpu_frac, "bank_len": bank.length}


def params_from_scenario(
    cfg: ScenarioConfig, max_guests: int | None = None, trace_split: str | None = None
) -> Params:
    """Arrays of one scenario at batch size one, guests padded to ``max_guests``.

    Args:
        cfg: A validated scenario.
        max_guests: Guest slots; default the scenario's own guest count.
        trace_split: Overrides every trace guest's ``trace_split`` (``"heldout"`` for
            evaluation); None keeps the scenario's.

    Raises:
        ValueError: If the scenario has more guests than ``max_guests``.
    """
    guests = cfg.expanded_guests()
    g_max = len(guests) if max_guests is None else max_guests
    if len(guests) > g_max:
        raise ValueError(
            f"scenario {cfg.name!r} has {len(guests)} guests but max_guests={g_max}; "
            "raise max_guests"
        )
    if trace_split is not None:
        guests = [_with_split(g, trace_split) for g in guests]
    bank = _scenario_bank(guests)
    host = _host_row(cfg)
    rows = [_guest_row(g, cfg.dt_s, bank) for g in guests]
    # Padding: all of its memory is kernel, so every memory quantity of the slot stays zero.
    pad_row = {
        **_guest_row(_PAD_GUEST, cfg.dt_s, None),
        "guest_mask": False,
        "shares": 0.0,
        "kernel_mib": _PAD_GUEST.mem_mib,
    }
    fields: dict[str, np.ndarray] = {}
    for name, value in host.items():
        fields[name] = np.full((1, 1), value, dtype=_dtype(name))
    for name in rows[0]:
        col = [r[name] for r in rows] + [pad_row[name]] * (g_max - len(rows))
        fields[name] = np.asarray(col, dtype=_dtype(name)).reshape(1, g_max)
    fields.update(_bank_fields(bank))
    fields["obs_static"] = _static_features(fields)
    return Params(**fields)


def _static_features(f: dict[str, np.ndarray]) -> np.ndarray:
    """The observation's static guest features (see ``core/observe.py``), float32 ``[G, 6]``."""
    mem, mask = f["mem_mib"], f["guest_mask"]
    shares = np.where(mask, f["shares"], 0.0)
    static = np.stack(
        [
            mem / f["host_mem_mib"],
            f["min_mib"] / mem,
            (mem - f["balloon_max_mib"]) / mem,
            f["max_mib"] / mem,
            shares / np.maximum(shares.sum(axis=1, keepdims=True), 1e-12),
            f["vcpus"] / np.maximum(f["vcpus"], f["pcpus"]),
        ],
        axis=-1,
    )
    return np.where(mask[..., None], np.clip(static, 0.0, 1.0), 0.0).astype(np.float32)


def _shared_bank(params: list[Params]) -> dict[str, np.ndarray]:
    banks = [p for p in params if p.bank_len.size]
    first = banks[0] if banks else params[0]
    for p in banks[1:]:
        if p.bank_len is not first.bank_len and not (
            p.bank_mem_frac.shape == first.bank_mem_frac.shape
            and np.array_equal(p.bank_mem_frac, first.bank_mem_frac)
        ):
            raise ValueError(
                "scenarios in one batch replay different trace banks; give their trace guests "
                "the same trace_source or run them in separate batches"
            )
    return {name: getattr(first, name) for name in SHARED_FIELDS}


def stack_params(params: list[Params]) -> Params:
    """Concatenate params of equal ``max_guests`` along the batch axis.

    Raises:
        ValueError: If the batches disagree on ``max_guests`` or replay different trace banks.
    """
    widths = {p.max_guests for p in params}
    if len(widths) != 1:
        raise ValueError(
            f"cannot stack params with different max_guests {sorted(widths)}; "
            "build them with the same max_guests"
        )
    fields = {
        name: np.concatenate([getattr(p, name) for p in params], axis=0)
        for name in Params._fields
        if name not in SHARED_FIELDS
    }
    return Params(**fields, **_shared_bank(params))


def _map_batched(params: Params, fn: Callable[[np.ndarray], np.ndarray]) -> Params:
    fields = zip(Params._fields, params, strict=True)
    return Params(*(a if name in SHARED_FIELDS else fn(a) for name, a in fields))


def repeat_params(params: Params, num_envs: int) -> Params:
    """Tile a batch-one ``Params`` to ``num_envs`` identical hosts."""
    return _map_batched(params, lambda a: np.repeat(a, num_envs, axis=0))


def select_params(params: Params, index: np.ndarray) -> Params:
    """Rows ``index`` of every field (an integer array or a boolean mask over envs)."""
    return _map_batched(params, lambda a: a[index])
