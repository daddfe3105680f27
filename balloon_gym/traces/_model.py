"""Data types of the trace subsystem: VMTrace, CleaningReport and TraceError."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Names of the cleaning rules that DROP rows, in the order they are applied.
DROP_RULES: tuple[str, ...] = (
    "non_numeric",
    "negative",
    "out_of_range",
    "invalid_provisioned",
    "duplicate_time",
    "gap_segment",
)
#: Counters of :class:`CleaningReport` for rules that change or flag rows without dropping them.
_COUNTERS: tuple[str, ...] = (
    "unordered",
    "mem_clipped",
    "cpu_clipped",
    "mem_zero",
    "gaps_filled",
    "rows_filled",
)


class TraceError(ValueError):
    """A trace file or directory is missing, unreadable or unusable after cleaning.

    The message always names the offending path and the reason.

    Attributes:
        report: The :class:`CleaningReport` of the rejected file, when there is one.
    """

    def __init__(self, message: str, report: CleaningReport | None = None) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True, eq=False)
class VMTrace:
    """A cleaned per-VM usage trace.

    The arrays are made read-only on construction.

    Attributes:
        name: VM identifier (file stem by default, e.g. ``"17"`` for ``17.csv.gz``).
        time_s: Sample times in seconds, float64, starting at 0, strictly increasing.
        mem_used_mib: Memory used by the guest in MiB (float32), ``<= mem_provisioned_mib``.
        cpu_used_vcpus: CPU used in vCPUs (float32, 1.0 = one fully busy vCPU), ``<= vcpus``.
        mem_provisioned_mib: Memory provisioned to the VM in MiB.
        vcpus: Number of vCPUs provisioned to the VM.
        source: File the trace was read from ("" when built in memory).
    """

    name: str
    time_s: np.ndarray
    mem_used_mib: np.ndarray
    cpu_used_vcpus: np.ndarray
    mem_provisioned_mib: float
    vcpus: int
    source: str = ""

    def __post_init__(self) -> None:
        t = np.array(self.time_s, dtype=np.float64)
        mem = np.array(self.mem_used_mib, dtype=np.float32)
        cpu = np.array(self.cpu_used_vcpus, dtype=np.float32)
        if t.ndim != 1 or mem.shape != t.shape or cpu.shape != t.shape:
            raise ValueError(f"VMTrace {self.name!r}: time/mem/cpu must be 1-D of equal length")
        if t.size < 2:
            raise ValueError(f"VMTrace {self.name!r}: needs at least 2 samples, got {t.size}")
        if t[0] != 0.0 or not np.all(np.diff(t) > 0):
            raise ValueError(f"VMTrace {self.name!r}: time_s must start at 0 and strictly increase")
        if not (np.all(np.isfinite(mem)) and np.all(np.isfinite(cpu))):
            raise ValueError(f"VMTrace {self.name!r}: usage values must be finite")
        for arr in (t, mem, cpu):
            arr.setflags(write=False)
        object.__setattr__(self, "time_s", t)
        object.__setattr__(self, "mem_used_mib", mem)
        object.__setattr__(self, "cpu_used_vcpus", cpu)
        object.__setattr__(self, "mem_provisioned_mib", float(self.mem_provisioned_mib))
        object.__setattr__(self, "vcpus", int(self.vcpus))

    @property
    def num_rows(self) -> int:
        """Number of samples."""
        return int(self.time_s.size)

    @property
    def duration_s(self) -> float:
        """Time of the last sample in seconds (the first is at 0)."""
        return float(self.time_s[-1])

    @property
    def sample_period_s(self) -> float:
        """Median interval between samples in seconds."""
        return float(np.median(np.diff(self.time_s)))


@dataclass
class CleaningReport:
    """What cleaning did to one file.

    Attributes:
        source: The file path.
        fmt: Format it was read as (``"bitbrains"`` or ``"csv"``).
        rows_read: Data rows in the file (header excluded, blank lines ignored).
        dropped: Rows dropped by each rule of :data:`DROP_RULES`.
        unordered: Rows that arrived after a later timestamp (fixed by sorting; none dropped).
        mem_clipped: Rows whose memory used exceeded provisioned (clipped to provisioned).
        cpu_clipped: Rows whose CPU used exceeded the vCPU count (clipped to ``vcpus``).
        mem_zero: Kept rows reporting exactly 0 MiB used (counted only: in Bitbrains this
            usually means "not reported", not an idle guest).
        mem_prov_changes: Kept rows whose provisioned memory differs by more than 1 % from the
            previous kept row (0 when the file has no such column). The trace uses the median;
            a non-zero count means the VM was resized during the trace (a warning, not an error).
        vcpus_changes: The same for the vCPU count.
        mem_prov_range: ``(min, max)`` provisioned memory of the kept rows in MiB, or None when
            the file has no such column.
        vcpus_range: ``(min, max)`` vCPUs of the kept rows, or None.
        gaps_filled: Gaps longer than the fill threshold that were filled by interpolation.
        rows_filled: Rows inserted by gap filling.
        rows_kept: Measured rows in the final trace (``rows_read - sum(dropped)``).
        rejected: True if the file yielded no usable trace.
        reason: Why it was rejected ("" otherwise).
    """

    source: str
    fmt: str = ""
    rows_read: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_RULES, 0))
    unordered: int = 0
    mem_clipped: int = 0
    cpu_clipped: int = 0
    mem_zero: int = 0
    mem_prov_changes: int = 0
    vcpus_changes: int = 0
    mem_prov_range: tuple[float, float] | None = None
    vcpus_range: tuple[float, float] | None = None
    gaps_filled: int = 0
    rows_filled: int = 0
    rows_kept: int = 0
    rejected: bool = False
    reason: str = ""

    @property
    def resized(self) -> str:
        """What changed size during the kept rows: ``"mem"``, ``"cpu"``, ``"mem+cpu"`` or ``""``."""
        return "+".join(
            k for k, n in (("mem", self.mem_prov_changes), ("cpu", self.vcpus_changes)) if n
        )

    @property
    def rows_dropped(self) -> int:
        """Total rows dropped over all rules."""
        return int(sum(self.dropped.values()))

    def describe(self) -> str:
        """Compact one-line summary of the non-zero counters, e.g. ``"duplicate_time=3 ..."``."""
        items = {k: v for k, v in self.dropped.items() if v}
        for key in _COUNTERS:
            if getattr(self, key):
                items[key] = getattr(self, key)
        return " ".join(f"{k}={v}" for k, v in items.items()) or "-"

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable copy of the report."""
        return {
            "source": self.source,
            "fmt": self.fmt,
            "rows_read": self.rows_read,
            "dropped": dict(self.dropped),
            "unordered": self.unordered,
            "mem_clipped": self.mem_clipped,
            "cpu_clipped": self.cpu_clipped,
            "mem_zero": self.mem_zero,
            "mem_prov_changes": self.mem_prov_changes,
            "vcpus_changes": self.vcpus_changes,
            "mem_prov_range": list(self.mem_prov_range) if self.mem_prov_range else None,
            "vcpus_range": list(self.vcpus_range) if self.vcpus_range else None,
            "gaps_filled": self.gaps_filled,
            "rows_filled": self.rows_filled,
            "rows_kept": self.rows_kept,
            "rejected": self.rejected,
            "reason": self.reason,
        }
