"""Validated, frozen scenario configuration.

A scenario is a YAML file (see ``configs/scenarios/``) loaded with a strict ``yaml.SafeLoader``
(duplicate keys are an error; ``1e5`` is a float, as in YAML 1.2) and validated into the frozen
models below. Every field carries its unit in its name or description,
a default and a bound. Unknown keys, wrong types and out-of-range values are rejected with a
:class:`ConfigError` whose message names the field path (``guests[1].driver.kind``) and the fix.

Defaults marked (src) come from the public record; see ``docs/model.md`` for the sources.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

__all__ = [
    "ConfigError",
    "ConfigTypeError",
    "DriverConfig",
    "GuestConfig",
    "HostConfig",
    "RewardConfig",
    "ScenarioConfig",
    "WorkloadConfig",
    "load_scenario_file",
    "load_yaml",
    "parse_scenario",
]


class ConfigError(ValueError):
    """Bad input: a scenario file or dict failed validation, or an env got a bad argument; the
    message names each field or argument and its fix."""


class ConfigTypeError(ConfigError, TypeError):
    """An argument of the wrong type (a scenario, ``num_envs``, a seed, an action, ...); both a
    :class:`ConfigError` and a ``TypeError``."""


MAX_GUESTS = 1024
"""Most guests (``count`` expanded) a host may have, and most guest slots an env may pad to."""

# --- Named choices whose defaults come from published measurements (docs/model.md, "Defaults
# from published measurements"; the evidence is docs/calibration.md sections 1, 2 and 6).

GUEST_SWAP_DEVICES: dict[str, dict[str, float]] = {
    "zram": {"fault_s": 20e-6, "swap_out_mib_s": 2000.0, "swap_in_mib_s": 195.0},
    "nvme": {"fault_s": 30e-6, "swap_out_mib_s": 1000.0, "swap_in_mib_s": 1042.0},
    "ssd": {"fault_s": 150e-6, "swap_out_mib_s": 250.0, "swap_in_mib_s": 208.0},
    "hdd": {"fault_s": 12e-3, "swap_out_mib_s": 30.0, "swap_in_mib_s": 2.6},
}
"""Guest swap devices: end-to-end fault time per 4 KiB page, sustained swap-out, and swap-in of
one faulting thread with the kernel's readahead (8 pages a fault on block devices, 1 on zram:
``pages * 4 KiB / fault_s``, below each device's random-read ceiling). SATA SSD is ``ssd``."""

HOST_SWAP_DEVICES: dict[str, dict[str, float]] = {
    "zram": {"fault_s": 20e-6, "swap_out_mib_s": 2000.0, "swap_in_mib_s": 2861.0},
    "nvme": {"fault_s": 30e-6, "swap_out_mib_s": 1000.0, "swap_in_mib_s": 1335.0},
    "ssd": {"fault_s": 150e-6, "swap_out_mib_s": 250.0, "swap_in_mib_s": 290.0},
    "hdd": {"fault_s": 12e-3, "swap_out_mib_s": 30.0, "swap_in_mib_s": 0.32},
}
"""Host swap devices: the same fault time (random victims, no readahead benefit) and swap-out;
swap-in is the device's random 4 KiB read ceiling, shared by every guest's faults."""

LHP_PENALTIES: dict[str, dict[str, float]] = {
    "serial": {"lhp_penalty": 0.0, "lhp_penalty_3x": 0.0},
    "multiprocess": {"lhp_penalty": 0.4, "lhp_penalty_3x": 1.0},
    "lock_heavy": {"lhp_penalty": 0.5, "lhp_penalty_3x": 1.5},
}
"""Extra loss ``L`` to lock-holder preemption at 2x and 3x vCPU overcommit, by the workload's
``parallelism`` (PV-qspinlock guests; the guest's own ``lhp_penalty*`` fields win)."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fill_defaults(data: Any, key: str, choices: dict[str, dict[str, float]], default: str) -> Any:
    """Fill the fields the named choice ``data[key]`` is about, where ``data`` leaves them out
    (an unknown name is left to the field's own validation)."""
    if not isinstance(data, dict):
        return data
    name = data.get(key, default)
    if isinstance(name, str) and name in choices:
        return {**choices[name], **data}
    return data


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class HostConfig(_Frozen):
    """The physical host: machine memory, hypervisor reservation, pCPUs, host swap."""

    mem_mib: float = Field(
        65536.0, ge=64, le=2**24, description="Machine memory, MiB (64 MiB to 16 TiB)."
    )
    reserved_mib: float = Field(
        1024.0, ge=0, le=2**22, description="Memory kept by the hypervisor itself, MiB."
    )
    pcpus: float = Field(16.0, ge=0.1, le=1024, description="Physical CPUs shared by guests.")
    swap_device: Literal["zram", "nvme", "ssd", "hdd"] = Field(
        "ssd",
        description="Host swap device; sets the defaults of swap_out_mib_s, swap_in_mib_s "
        "and fault_s (src).",
    )
    swap_out_mib_s: float = Field(
        250.0, ge=0.1, le=1e5, description="Host swap-out rate in the hard state, MiB/s (src)."
    )
    swap_in_mib_s: float = Field(
        290.0, ge=0.1, le=1e5, description="Host swap-in rate (host faults served), MiB/s (src)."
    )
    fault_s: float = Field(
        1.5e-4, ge=0, le=1.0, description="Stall per host-swapped page a guest touches, s (src)."
    )
    sampling: bool = Field(
        True, description="ESX-style statistical sampling of each guest's active fraction."
    )
    sample_pages: int = Field(
        100, ge=1, le=10000, description="Pages sampled per sampling period (src: ESX 100)."
    )
    sample_period_s: float = Field(
        30.0,
        ge=1e-3,
        le=3600,
        description="Sampling period of the active-memory estimate, s (src).",
    )

    @model_validator(mode="before")
    @classmethod
    def _device_defaults(cls, data: Any) -> Any:
        """Fill the swap rates and fault time from ``swap_device``, where left out."""
        return _fill_defaults(data, "swap_device", HOST_SWAP_DEVICES, "ssd")


class DriverConfig(_Frozen):
    """The balloon driver inside a guest (DESIGN 3.3)."""

    kind: Literal["kernel", "user"] = Field(
        "kernel",
        description="kernel: pinned pages (virtio, vmmemctl); user: an ordinary process "
        "whose pages the guest may swap (claim 9).",
    )
    rate_adaptive: bool = Field(
        True, description="Never ask faster than the guest's reservation change rate (claim 8)."
    )
    alloc_mib_s: float = Field(
        1621.0, ge=0.1, le=1e6, description="Inflation rate from guest-free pages, MiB/s (src)."
    )
    free_mib_s: float = Field(
        1621.0, ge=0.1, le=1e6, description="Deflation rate (pages given back), MiB/s (src)."
    )
    max_request_mib_s: float = Field(
        1621.0, ge=0.1, le=1e6, description="Rate a naive driver asks at regardless, MiB/s."
    )
    stall_s_per_mib: float = Field(
        0.02, ge=0, le=10, description="Guest time lost per MiB a naive driver asks in vain, s."
    )
    user_speed: float = Field(
        0.25, ge=0.01, le=1, description="Speed of a user-level driver relative to a kernel one."
    )
    max_balloon_frac: float = Field(
        0.65, ge=0, le=0.95, description="Balloon cap as a fraction of guest memory (src 65 %)."
    )
    present: bool = Field(
        True, description="False: no driver installed; the guest boots with no balloon."
    )
    outage_start_s: float = Field(
        -1.0, ge=-1, le=1e7, description="Start of a scheduled outage, s from reset; -1 = none."
    )
    outage_duration_s: float = Field(
        0.0, ge=0, le=1e7, description="Length of each outage (scheduled or random), s."
    )
    outage_rate_per_h: float = Field(
        0.0, ge=0, le=3600, description="Random outages per hour of driver uptime."
    )


WORKLOAD_KIND_DEFAULTS: dict[str, dict[str, float]] = {
    "constant": {},
    "diurnal": {"diurnal_amp": 0.5},
    "bursty": {"burst_mult": 2.0},
    "phases": {"phase_mean_s": 600.0},
    "leak": {"leak_mib_s": 0.5},
    "idle": {"wss_frac": 0.03, "cpu_vcpus": 0.05},
    "trace": {"anon_mib": 128.0, "cache_mib": 256.0, "cpu_vcpus": 0.05},
}
"""Defaults each workload kind sets for the fields it is about (a file's own values win)."""


class WorkloadConfig(_Frozen):
    """Demand process of one guest (DESIGN 3.6).

    Every kind is the same vectorised formula with different parameters; ``kind`` only picks
    the defaults documented in ``docs/model.md``. Level at time t:
    ``level = (1 + diurnal_amp * sin(2 pi (t / period + phase))) * (burst_mult if on else 1)``
    ``* phase_level``; ``anon = anon_mib * level + leak``, ``wss = wss_frac * anon``,
    ``cpu = cpu_vcpus * level``.
    """

    kind: Literal["constant", "diurnal", "bursty", "phases", "leak", "idle", "trace"] = Field(
        "constant", description="Demand process; picks defaults (see the table below)."
    )
    anon_mib: float = Field(2048.0, ge=0, le=2**22, description="Base anonymous footprint, MiB.")
    wss_frac: float = Field(
        0.6, ge=0, le=1, description="Hot fraction of the anonymous footprint (touched each step)."
    )
    cache_mib: float = Field(
        512.0, ge=0, le=2**22, description="Page cache the workload wants, MiB."
    )
    cpu_vcpus: float = Field(1.0, ge=0, le=1024, description="Base CPU demand, vCPUs.")
    parallelism: Literal["serial", "multiprocess", "lock_heavy"] = Field(
        "multiprocess",
        description="serial: independent single-threaded tasks; multiprocess: fork/lock-mixed "
        "(UnixBench-like); lock_heavy: one parallel lock-heavy program. Sets the guest's "
        "lhp_penalty defaults (src).",
    )
    diurnal_amp: float = Field(0.0, ge=0, le=0.95, description="Relative amplitude of the sine.")
    diurnal_period_s: float = Field(3600.0, ge=1, le=1e7, description="Period of the sine, s.")
    diurnal_phase: float = Field(
        0.0, ge=0, le=1, description="Phase of the sine as a fraction of the period."
    )
    phase_jitter: float = Field(
        0.0, ge=0, le=1, description="Random extra phase per episode, fraction of the period."
    )
    burst_mult: float = Field(1.0, ge=1, le=20, description="Demand multiplier while bursting.")
    burst_on_s: float = Field(120.0, ge=1, le=1e7, description="Mean length of a burst, s.")
    burst_off_s: float = Field(600.0, ge=1, le=1e7, description="Mean time between bursts, s.")
    phase_mean_s: float = Field(
        0.0, ge=0, le=1e7, description="Mean time between phase changes, s; 0 = never."
    )
    phase_low: float = Field(0.5, ge=0.01, le=10, description="Lowest level after a phase change.")
    phase_high: float = Field(
        1.5, ge=0.01, le=10, description="Highest level after a phase change."
    )
    leak_mib_s: float = Field(0.0, ge=0, le=1e4, description="Anonymous memory leak, MiB/s.")
    # OOM kill and restart (v1): no work for the restart delay, then while the hot set is
    # re-read; the footprint comes back in full (docs/model.md, docs/calibration.md section 8).
    oom_restart_s: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="Delay before an OOM-killed workload restarts, s (src: Kubernetes back-off "
        "10 s; systemd 0.1 s).",
    )
    oom_reload_mib_s: float = Field(
        100.0,
        ge=1,
        le=1e5,
        description="Rate a restarted workload re-reads its hot set, MiB/s (src: published "
        "11 MB/s to 1 GB/s).",
    )
    touch_mib_s: float = Field(
        0.0, ge=0, le=1e6, description="Extra cold-page touches, MiB/s (0 = hot set only)."
    )
    cache_hot_frac: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Hot fraction of the page cache (read every step; the rest is cold and "
        "re-read at 2 % of its missing part a step). Default 0.5: Linux keeps a file LRU list "
        "under 1 GiB at most half active (src: mm/vmscan.c inactive_is_low).",
    )
    trace_source: str = Field(
        "sample",
        min_length=1,
        max_length=4096,
        description="kind trace: 'sample' (the packaged Bitbrains sample), a TraceBank .npz "
        "file or a directory of trace files.",
    )
    trace_split: Literal["train", "heldout", "all"] = Field(
        "train", description="kind trace: which VMs an episode may draw (held-out: evaluation)."
    )
    trace_mem_scale: float = Field(
        1.0,
        ge=0.01,
        le=100,
        description="kind trace: footprint = used / provisioned memory * mem_mib * this.",
    )

    @model_validator(mode="before")
    @classmethod
    def _kind_defaults(cls, data: Any) -> Any:
        """Fill the fields a kind is about with its defaults, where the file leaves them out."""
        kind = data.get("kind") if isinstance(data, dict) else None
        if isinstance(kind, str) and kind in WORKLOAD_KIND_DEFAULTS:
            return {**WORKLOAD_KIND_DEFAULTS[data["kind"]], **data}
        return data

    @field_validator("phase_high")
    @classmethod
    def _check_phase_range(cls, value: float, info: ValidationInfo) -> float:
        low = info.data.get("phase_low")
        if low is not None and low > value:
            raise ValueError(f"phase_high ({value:g}) < phase_low ({low:g}); swap the two values")
        return value


class GuestConfig(_Frozen):
    """One guest VM (or ``count`` identical ones)."""

    name: str = Field("guest", min_length=1, max_length=64, description="Label in tables.")
    count: int = Field(1, ge=1, le=256, description="Number of identical guests of this kind.")
    mem_mib: float = Field(
        8192.0, ge=2, le=2**22, description="Configured memory, MiB (up to 4 TiB)."
    )
    min_mib: float = Field(1024.0, ge=2, le=2**22, description="Guaranteed memory, MiB.")
    max_mib: float | None = Field(
        None, ge=2, le=2**22, description="Upper allocation bound, MiB; default mem_mib."
    )
    kernel_mib: float = Field(256.0, ge=1, le=2**20, description="Kernel and pinned memory, MiB.")
    shares: float = Field(1000.0, ge=1, le=1e6, description="Memory and CPU shares.")
    vcpus: int = Field(2, ge=1, le=256, description="Configured vCPUs.")
    vcpu_change_per_step: int = Field(
        1, ge=0, le=256, description="Most vCPUs reserved or released in one step; 0 disables."
    )
    vcpu_change_cost_s: float = Field(
        0.01, ge=0, le=10, description="Guest stall per vCPU hot-(un)plugged, s (src: 10 ms)."
    )
    swap_mib: float = Field(4096.0, ge=0, le=2**22, description="Guest swap space, MiB.")
    swap_device: Literal["zram", "nvme", "ssd", "hdd"] = Field(
        "ssd",
        description="Guest swap device; sets the defaults of fault_s, swap_out_mib_s and "
        "swap_in_mib_s (src).",
    )
    swap_out_mib_s: float = Field(
        250.0, ge=0.1, le=1e5, description="Guest swap-out rate, MiB/s (src)."
    )
    swap_in_mib_s: float = Field(
        208.0, ge=0.1, le=1e5, description="Guest swap-in rate, MiB/s (src)."
    )
    cache_reclaim_mib_s: float = Field(
        1024.0, ge=0.1, le=1e6, description="Rate the guest drops page cache, MiB/s."
    )
    fault_s: float = Field(
        1.5e-4, ge=0, le=1.0, description="Stall per guest major fault (4 KiB page), s (src)."
    )
    swappiness: float = Field(
        60.0,
        ge=0,
        le=200,
        description="vm.swappiness: cold anonymous vs cold page-cache pages are evicted in the "
        "ratio swappiness : 200 - swappiness times their sizes (src: Linux vm.rst, default 60).",
    )
    lhp_penalty: float = Field(
        0.4,
        ge=0,
        le=10,
        description="Extra loss L to lock-holder preemption at 2x vCPU overcommit (runnable "
        "vCPUs / pCPUs granted); default from workload.parallelism (src).",
    )
    lhp_penalty_3x: float = Field(
        1.0,
        ge=0,
        le=20,
        description="The same at 3x overcommit and above (>= lhp_penalty); default from "
        "workload.parallelism (src).",
    )
    sla: float = Field(0.0, ge=0, le=1, description="Throughput below which a step is an SLA miss.")
    free_page_reporting: bool = Field(
        False, description="Guest reports free pages to the host (Linux free page reporting)."
    )
    driver: DriverConfig = DriverConfig()
    workload: WorkloadConfig = WorkloadConfig()

    @model_validator(mode="before")
    @classmethod
    def _named_defaults(cls, data: Any) -> Any:
        """Fill the swap rates and fault time from ``swap_device``, and the lock-holder losses
        from ``workload.parallelism``, where the file leaves them out. A loss left out never
        contradicts one given: ``lhp_penalty_3x`` is at least, ``lhp_penalty`` at most the other."""
        data = _fill_defaults(data, "swap_device", GUEST_SWAP_DEVICES, "ssd")
        if not isinstance(data, dict):
            return data
        w = data.get("workload")
        if isinstance(w, dict):
            kind = w.get("parallelism", "multiprocess")
        else:  # a WorkloadConfig, or left out (the default workload)
            kind = getattr(w, "parallelism", "multiprocess")
        if not (isinstance(kind, str) and kind in LHP_PENALTIES):
            return data  # the workload's own validation names the bad choice
        l2, l3 = data.get("lhp_penalty"), data.get("lhp_penalty_3x")
        d2, d3 = LHP_PENALTIES[kind]["lhp_penalty"], LHP_PENALTIES[kind]["lhp_penalty_3x"]
        fill = {}
        if "lhp_penalty" not in data:
            fill["lhp_penalty"] = min(d2, l3) if _is_number(l3) else d2
        if "lhp_penalty_3x" not in data:
            fill["lhp_penalty_3x"] = max(d3, l2) if _is_number(l2) else d3
        return {**data, **fill}

    @property
    def max_alloc_mib(self) -> float:
        """Upper allocation bound, MiB (``max_mib`` or ``mem_mib``)."""
        return self.mem_mib if self.max_mib is None else self.max_mib

    @field_validator("min_mib")
    @classmethod
    def _check_min(cls, value: float, info: ValidationInfo) -> float:
        mem = info.data.get("mem_mib")
        if mem is not None and value > mem:
            raise ValueError(
                f"min_mib ({value:g}) > mem_mib ({mem:g}); lower min_mib or raise mem_mib"
            )
        return value

    @field_validator("max_mib")
    @classmethod
    def _check_max(cls, value: float | None, info: ValidationInfo) -> float | None:
        mem, low = info.data.get("mem_mib"), info.data.get("min_mib")
        if value is not None and mem is not None and low is not None and not low <= value <= mem:
            raise ValueError(
                f"max_mib ({value:g}) must lie in [min_mib, mem_mib] = [{low:g}, {mem:g}]; "
                "move it into that range or leave it out"
            )
        return value

    @field_validator("kernel_mib")
    @classmethod
    def _check_kernel(cls, value: float, info: ValidationInfo) -> float:
        low = info.data.get("min_mib")
        if low is not None and value >= low:
            raise ValueError(
                f"kernel_mib ({value:g}) must be below min_mib ({low:g}); "
                "lower kernel_mib or raise min_mib"
            )
        return value

    @field_validator("lhp_penalty_3x")
    @classmethod
    def _check_lhp(cls, value: float, info: ValidationInfo) -> float:
        low = info.data.get("lhp_penalty")
        if low is not None and value < low:
            raise ValueError(
                f"lhp_penalty_3x ({value:g}) < lhp_penalty ({low:g}): more overcommit cannot lose "
                "less; raise lhp_penalty_3x or lower lhp_penalty (or leave one out: it is filled "
                "from workload.parallelism without contradicting the other)"
            )
        return value

    @property
    def floor_mib(self) -> float:
        """The least memory ballooning can leave the guest, MiB: its minimum or balloon cap."""
        return max(self.min_mib, self.mem_mib * (1.0 - self.driver.max_balloon_frac))

    @model_validator(mode="after")
    def _check_sizes(self) -> GuestConfig:
        floor = self.mem_mib * (1.0 - self.driver.max_balloon_frac)
        if floor > self.max_alloc_mib:
            raise ValueError(
                f"driver.max_balloon_frac ({self.driver.max_balloon_frac:g}) leaves "
                f"{floor:g} MiB > max_mib ({self.max_alloc_mib:g}); raise max_balloon_frac"
            )
        return self


class RewardConfig(_Frozen):
    """Named reward function and its penalty weights (DESIGN 3.5)."""

    name: Literal["weighted_throughput", "mean_throughput", "sla"] = Field(
        "weighted_throughput", description="Base term (core/reward.py); penalties are added."
    )
    w_oom: float = Field(1.0, ge=0, le=1e3, description="Penalty per guest OOM kill.")
    w_host_swap_gib: float = Field(0.05, ge=0, le=1e3, description="Penalty per GiB host-swapped.")
    w_sla: float = Field(0.0, ge=0, le=1e3, description="Penalty per guest-step SLA miss.")


class ScenarioConfig(_Frozen):
    """A whole scenario: one host, its guests, timing, reward and action mode."""

    name: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9][a-z0-9-]*$",
        description="Lower-case letters, digits and '-'; equal to the file name.",
    )
    description: str = Field("", max_length=500, description="One line for tables and listings.")
    dt_s: float = Field(10.0, ge=0.1, le=3600, description="Control interval, s (src: MOM 10 s).")
    episode_steps: int = Field(360, ge=1, le=10**6, description="Steps per episode.")
    action_mode: Literal["allocation", "delta"] = Field(
        "allocation", description="Actions set targets, or change them (DESIGN 3.8)."
    )
    delta_frac: float = Field(
        0.1, ge=1e-3, le=1, description="Delta mode: largest target change a step, frac of range."
    )
    host: HostConfig = HostConfig()
    reward: RewardConfig = RewardConfig()
    guests: tuple[GuestConfig, ...] = Field(min_length=1, strict=False)

    @property
    def num_guests(self) -> int:
        """Number of guests after expanding ``count``."""
        return sum(g.count for g in self.guests)

    def expanded_guests(self) -> list[GuestConfig]:
        """One config per guest, ``count`` expanded, names suffixed with an index."""
        out: list[GuestConfig] = []
        for g in self.guests:
            for i in range(g.count):
                name = g.name if g.count == 1 else f"{g.name}-{i}"
                out.append(g.model_copy(update={"name": name, "count": 1}))
        return out

    @field_validator("guests")
    @classmethod
    def _check_guest_count(cls, guests: tuple[GuestConfig, ...]) -> tuple[GuestConfig, ...]:
        total = sum(g.count for g in guests)
        if total > MAX_GUESTS:
            raise ValueError(
                f"{total} guests (count expanded), at most {MAX_GUESTS} per host; "
                "split them over several scenarios or lower count"
            )
        return guests

    @model_validator(mode="after")
    def _check_host_holds_minimums(self) -> ScenarioConfig:
        need = sum(g.floor_mib * g.count for g in self.guests) + self.host.reserved_mib
        if need > self.host.mem_mib:
            raise ValueError(
                f"host.mem_mib ({self.host.mem_mib:g}) cannot hold the guests' floors (the larger "
                "of min_mib and what the balloon cap leaves, mem_mib * (1 - max_balloon_frac)) "
                f"plus host.reserved_mib ({need:g} MiB); raise host.mem_mib, lower min_mib or "
                "raise driver.max_balloon_frac"
            )
        return self


MAX_ERROR_LINES = 20
"""Most field errors one message lists (the rest are counted)."""

_TYPE_ERRORS = {"float_type", "int_type", "string_type", "bool_type", "dict_type", "model_type"}
_TYPE_ERRORS |= {"tuple_type", "list_type", "literal_error", "int_from_float"}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _message(e: Any) -> str:
    """One field error's text, with a fix where pydantic's own is unclear."""
    kind, value = e["type"], e.get("input")
    if kind == "extra_forbidden":
        return "unknown key; remove it or check its spelling (see docs/scenarios.md)"
    if kind == "invalid_key":
        return f"keys are field names, not {type(value).__name__}; remove the key or fix its name"
    if kind == "finite_number":
        return "must be a finite number (.nan and .inf are not allowed)"
    msg = e["msg"].removeprefix("Value error, ")
    if kind == "float_type" and isinstance(value, int) and not isinstance(value, bool):
        return f"{msg}; {_short(value)} is too large for a float"
    if kind == "float_type" and isinstance(value, str) and _looks_numeric(value):
        return f"{msg}; got the text {_short(value)}: write a number without quotes, e.g. 1.0e5"
    if kind in _TYPE_ERRORS:
        return f"{msg}; got {type(value).__name__} {_short(value)}"
    return msg


def _looks_numeric(text: str) -> bool:
    try:
        float(text.replace("_", ""))
    except ValueError:
        return False
    return True


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid scenario {source}:"]
    errors = err.errors()
    guest_errors = any(len(e["loc"]) > 1 and e["loc"][0] == "guests" for e in errors)
    shown = 0
    for e in errors:
        if guest_errors and e["type"] == "too_short" and tuple(e["loc"]) == ("guests",):
            continue  # the list is not empty: its only guests were invalid, reported above
        if shown == MAX_ERROR_LINES:
            lines.append(f"  ... and {len(errors) - shown} more; fix the ones above first")
            break
        path = ""
        for part in e["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            elif not (part.isascii() and part.isidentifier()):  # an odd unknown key: quoted
                path += f"[{part if len(part) <= 30 else part[:27] + '...'!r}]"
            else:
                path += f".{part}" if path else part
        lines.append(f"  {path or '<root>'}: {_message(e)}")
        shown += 1
    return "\n".join(lines)


def parse_scenario(data: Any, source: str = "<dict>") -> ScenarioConfig:
    """Validate a mapping into a :class:`ScenarioConfig`.

    Args:
        data: The mapping, as ``yaml.safe_load`` returns it.
        source: Where it came from, for error messages.

    Raises:
        ConfigError: With one line per invalid field, naming its path and the fix.
    """
    if not isinstance(data, dict):
        raise ConfigError(
            f"invalid scenario {source}: the top level must be a mapping of keys "
            f"(name, host, guests, ...), got {type(data).__name__}"
        )
    try:
        return ScenarioConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


MAX_SCENARIO_BYTES = 2**20
"""Largest scenario file read, bytes (a scenario is a few KiB)."""

_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")
"""Floats YAML 1.1 reads as text (``1e5``, ``1.0e5``, ``-2E-3``); YAML 1.2 reads them as floats."""


class _ScenarioLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects duplicate mapping keys (``safe_load`` keeps the last
    silently) and reads ``1e5`` as a float."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # keys merged from an anchor may be overridden: that is the point
                key = self.construct_object(key_node, deep=deep)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:
                    continue  # an unhashable key: the base class reports it
                if first is not key_node:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {_short(key)} (first at line {first.start_mark.line + 1}); "
                        "remove one of them",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)


_ScenarioLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+.0123456789")
)


def load_yaml(text: str, source: str = "<string>") -> Any:
    """Parse YAML text as scenario files are: safe tags only, duplicate keys rejected, ``1e5``
    read as a float.

    Raises:
        ConfigError: Naming ``source``, the line and the problem.
    """
    try:
        return yaml.load(text, Loader=_ScenarioLoader)  # a SafeLoader subclass: safe tags only
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = err.problem or err.context or "invalid YAML"
        raise ConfigError(f"{source} is not valid YAML{where}: {problem}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{source} is not valid YAML: {' '.join(str(err).split())}") from None
    except RecursionError:
        raise ConfigError(f"{source} is nested too deeply to be a scenario") from None


def load_scenario_file(path: str | Path) -> ScenarioConfig:
    """Load and validate one scenario YAML file.

    Raises:
        ConfigError: If the file is missing, is a directory or not a regular file, is larger
            than :data:`MAX_SCENARIO_BYTES`, is not UTF-8 or valid YAML, or fails validation.
    """
    path = Path(path)
    try:
        if path.is_dir():
            raise ConfigError(f"scenario file {path} is a directory; give the path of a .yaml file")
        if not path.exists():
            raise ConfigError(f"scenario file {path} does not exist")
        if not path.is_file():
            raise ConfigError(f"scenario file {path} is not a regular file; give a .yaml file")
        size = path.stat().st_size
        if size > MAX_SCENARIO_BYTES:
            raise ConfigError(
                f"scenario file {path} is {size} bytes, more than the {MAX_SCENARIO_BYTES} a "
                "scenario may have (a few KiB is usual); is it the right file?"
            )
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"scenario file {path} cannot be read: {err.strerror or err}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"scenario file {path} is not UTF-8 text ({err.reason}); save it as UTF-8"
        ) from None
    return parse_scenario(load_yaml(text, source=f"scenario file {path}"), source=str(path))
