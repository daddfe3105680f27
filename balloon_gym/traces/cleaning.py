"""Cleaning rules for raw per-VM traces.

Every rule is a small function on a *column table*: a ``dict`` mapping column names to 1-D
float64 arrays of equal length (one entry per row). Rules that drop rows return the filtered
table and the number of rows they removed. :func:`validate_rows` applies the row-validity
rules (1-4) and :func:`finish_trace` applies the time-axis and clipping rules (5-10) and builds
the :class:`~balloon_gym.traces.VMTrace`. The rules, in order:

1. ``non_numeric``: drop rows with a missing, non-numeric, NaN or infinite value (also rows with
   the wrong number of fields, which the readers turn into NaN).
2. ``negative``: drop rows with any negative value.
3. ``out_of_range``: drop rows with a value above its column's physical limit
   (:data:`COLUMN_LIMITS`: e.g. more than 1 PiB of memory or 65 536 vCPUs, a time after
   1e11 s), such as ``1.7e308``; such values are corrupt, and would overflow later.
4. ``invalid_provisioned``: drop rows whose provisioned memory, vCPU count or CPU capacity
   (when the file has these columns) is zero.
5. ``unordered`` (counted, nothing dropped): rows are stably sorted by timestamp.
6. ``duplicate_time``: of rows with the same timestamp, keep the first one in file order.
7. ``gap_segment``: a gap longer than ``max_gap_periods`` sample periods splits the trace;
   only the longest contiguous segment (most rows; the earliest on a tie) is kept.
   The sample period is ``CleaningOptions.period_s`` or the median interval between rows.
   A trace left with fewer than ``min_rows`` rows is rejected (:class:`TraceError`).
8. Provisioned memory and vCPUs: explicit arguments, else the median over the kept rows
   (vCPUs rounded to an integer), else inferred (plain CSV only, see :func:`infer_provisioned`).
   Kept rows whose provisioned memory or vCPUs differ from the previous row by more than
   :data:`RESIZE_TOLERANCE` (1 %) are counted (``mem_prov_changes``, ``vcpus_changes``): the VM
   was resized during the trace (a warning: the trace is replayed relative to the median).
9. ``mem_clipped`` / ``cpu_clipped`` (counted, nothing dropped): usage above provisioned is
   clipped to provisioned (memory to ``mem_provisioned_mib``, CPU to ``vcpus``). Rows reporting
   exactly 0 MiB used are counted as ``mem_zero`` (kept unchanged).
10. ``gaps_filled`` / ``rows_filled``: a gap longer than ``fill_gap_periods`` (but not longer
    than ``max_gap_periods``) periods is filled with evenly spaced, linearly interpolated rows,
    so that no interval of the final trace exceeds ``fill_gap_periods`` periods.

Spikes are deliberately *not* filtered: short bursts are real guest behaviour that a balloon
policy must cope with; only physically impossible values (usage above provisioned) are clipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._model import CleaningReport, TraceError, VMTrace

Columns = dict[str, np.ndarray]

#: Columns that hold provisioned capacity; zero there makes a row invalid.
PROVISIONED_COLUMNS: tuple[str, ...] = ("mem_provisioned_mib", "vcpus", "cpu_capacity_mhz")
#: Largest plausible value of each column (rule ``out_of_range``); larger values are corrupt.
#: Times: 1e11 s is about 3 170 years (Bitbrains timestamps above it are read as milliseconds).
MAX_TIME_S = 1e11
#: Memory: 2**30 MiB = 1 PiB.
MAX_MIB = float(2**30)
#: vCPUs (provisioned or used): 65 536.
MAX_VCPUS = float(2**16)
#: CPU capacity or usage in MHz: 1e9 MHz (65 536 cores of 15 GHz).
MAX_MHZ = 1e9
COLUMN_LIMITS: dict[str, float] = {
    "time_s": MAX_TIME_S,
    "mem_used_mib": MAX_MIB,
    "mem_provisioned_mib": MAX_MIB,
    "cpu_used_vcpus": MAX_VCPUS,
    "vcpus": MAX_VCPUS,
    "cpu_used_mhz": MAX_MHZ,
    "cpu_capacity_mhz": MAX_MHZ,
}


@dataclass(frozen=True)
class CleaningOptions:
    """Parameters of the cleaning rules.

    Attributes:
        min_rows: Reject a trace with fewer measured rows than this after cleaning
            (288 rows = one day at 300 s).
        fill_gap_periods: Gaps longer than this many sample periods are filled by interpolation.
        max_gap_periods: Gaps longer than this many sample periods split the trace
            (12 periods = 1 hour at 300 s).
        period_s: Nominal sample period in seconds; ``None`` uses the median row interval.
    """

    min_rows: int = 288
    fill_gap_periods: float = 3.0
    max_gap_periods: float = 12.0
    period_s: float | None = None

    def __post_init__(self) -> None:
        if self.min_rows < 2:
            raise ValueError("min_rows must be >= 2")
        if not 1.0 <= self.fill_gap_periods <= self.max_gap_periods:
            raise ValueError("need 1 <= fill_gap_periods <= max_gap_periods")
        if self.period_s is not None and self.period_s <= 0:
            raise ValueError("period_s must be positive")


def _take(cols: Columns, keep: np.ndarray) -> Columns:
    return {k: v[keep] for k, v in cols.items()}


def _num_rows(cols: Columns) -> int:
    return int(next(iter(cols.values())).size)


def drop_non_numeric(cols: Columns) -> tuple[Columns, int]:
    """Rule 1: drop rows with a NaN or infinite value in any column.

    Returns:
        The filtered table and the number of rows dropped.
    """
    keep = np.ones(_num_rows(cols), dtype=bool)
    for values in cols.values():
        keep &= np.isfinite(values)
    return _take(cols, keep), int((~keep).sum())


def drop_negative(cols: Columns) -> tuple[Columns, int]:
    """Rule 2: drop rows with a negative value in any column (NaN-free input).

    Returns:
        The filtered table and the number of rows dropped.
    """
    keep = np.ones(_num_rows(cols), dtype=bool)
    for values in cols.values():
        keep &= values >= 0
    return _take(cols, keep), int((~keep).sum())


def drop_out_of_range(cols: Columns) -> tuple[Columns, int]:
    """Rule 3: drop rows with a value above its column's limit in :data:`COLUMN_LIMITS`.

    Columns without a limit are not checked.

    Returns:
        The filtered table and the number of rows dropped.
    """
    keep = np.ones(_num_rows(cols), dtype=bool)
    for key, values in cols.items():
        if key in COLUMN_LIMITS:
            keep &= values <= COLUMN_LIMITS[key]
    return _take(cols, keep), int((~keep).sum())


def drop_invalid_provisioned(cols: Columns) -> tuple[Columns, int]:
    """Rule 4: drop rows with zero provisioned memory, vCPUs or CPU capacity.

    Only the columns of :data:`PROVISIONED_COLUMNS` present in the table are checked.

    Returns:
        The filtered table and the number of rows dropped.
    """
    keep = np.ones(_num_rows(cols), dtype=bool)
    for key in PROVISIONED_COLUMNS:
        if key in cols:
            keep &= cols[key] > 0
    return _take(cols, keep), int((~keep).sum())


def sort_by_time(cols: Columns) -> tuple[Columns, int]:
    """Rule 5: stably sort rows by ``time_s``.

    Returns:
        The sorted table and the number of rows that came after a later timestamp in the file.
    """
    t = cols["time_s"]
    if t.size < 2:
        return cols, 0
    late = int(np.sum(t[1:] < np.maximum.accumulate(t)[:-1]))
    if late == 0:
        return cols, 0
    return _take(cols, np.argsort(t, kind="stable")), late


def drop_duplicate_times(cols: Columns) -> tuple[Columns, int]:
    """Rule 6: keep only the first row (in file order) of each timestamp.

    The table must already be stably sorted by time (:func:`sort_by_time`).

    Returns:
        The filtered table and the number of rows dropped.
    """
    t = cols["time_s"]
    keep = np.ones(t.size, dtype=bool)
    keep[1:] = np.diff(t) > 0
    return _take(cols, keep), int((~keep).sum())


def keep_longest_segment(cols: Columns, max_gap_s: float) -> tuple[Columns, int]:
    """Rule 7: split at gaps longer than ``max_gap_s`` seconds and keep the longest segment.

    The longest segment is the one with the most rows; the earliest wins a tie.

    Returns:
        The kept segment and the number of rows dropped.
    """
    t = cols["time_s"]
    cuts = np.flatnonzero(np.diff(t) > max_gap_s) + 1
    if cuts.size == 0:
        return cols, 0
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [t.size]))
    best = int(np.argmax(ends - starts))
    keep = np.zeros(t.size, dtype=bool)
    keep[starts[best] : ends[best]] = True
    return _take(cols, keep), int((~keep).sum())


def clip_to_provisioned(
    mem_used_mib: np.ndarray, cpu_used_vcpus: np.ndarray, mem_provisioned_mib: float, vcpus: int
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Rule 9: clip memory to provisioned MiB and CPU to the vCPU count.

    The memory limit is rounded down to float32 so that the float32 trace stays
    ``<= mem_provisioned_mib`` exactly.

    Returns:
        Clipped memory (MiB), clipped CPU (vCPUs), rows clipped for memory, rows clipped for CPU.
    """
    mem_over = mem_used_mib > mem_provisioned_mib
    cpu_over = cpu_used_vcpus > vcpus
    limit = np.float32(mem_provisioned_mib)
    if limit > mem_provisioned_mib:
        limit = np.nextafter(limit, np.float32(0))
    return (
        np.minimum(mem_used_mib, float(limit)),
        np.minimum(cpu_used_vcpus, float(vcpus)),
        int(mem_over.sum()),
        int(cpu_over.sum()),
    )


def fill_gaps(cols: Columns, period_s: float, fill_above_s: float) -> tuple[Columns, int, int]:
    """Rule 10: fill gaps longer than ``fill_above_s`` seconds by linear interpolation.

    A gap of length ``g`` gets ``round(g / period_s) - 1`` evenly spaced new rows, so every new
    interval is close to ``period_s``.

    Returns:
        The filled table, the number of gaps filled and the number of rows inserted.
    """
    t = cols["time_s"]
    gaps = np.flatnonzero(np.diff(t) > fill_above_s)
    if gaps.size == 0:
        return cols, 0, 0
    new_times = []
    for i in gaps:
        width = t[i + 1] - t[i]
        n = max(2, round(width / period_s))
        new_times.append(t[i] + width * np.arange(1, n) / n)
    inserted = np.concatenate(new_times)
    t_all = np.sort(np.concatenate((t, inserted)))
    filled = {k: np.interp(t_all, t, v) for k, v in cols.items() if k != "time_s"}
    filled["time_s"] = t_all
    return filled, int(gaps.size), int(inserted.size)


def infer_provisioned(mem_used_mib: np.ndarray, cpu_used_vcpus: np.ndarray) -> tuple[float, int]:
    """Infer provisioned capacity of a trace that does not state it.

    Memory: the maximum used, rounded up to a power-of-two number of GiB (at least 1 GiB).
    vCPUs: the ceiling of the maximum CPU used (at least 1).

    Returns:
        ``(mem_provisioned_mib, vcpus)``.
    """
    max_gib = float(np.max(mem_used_mib)) / 1024.0
    gib = 2 ** max(0, math.ceil(math.log2(max_gib))) if max_gib > 0 else 1
    vcpus = max(1, math.ceil(float(np.max(cpu_used_vcpus)) - 1e-9))
    return float(gib * 1024), int(vcpus)


def validate_rows(cols: Columns, report: CleaningReport) -> Columns:
    """Apply rules 1-4 (non-numeric, negative, out of range, invalid provisioned).

    Drops are recorded in ``report``.

    Returns:
        The table of valid rows.
    """
    for rule, func in (
        ("non_numeric", drop_non_numeric),
        ("negative", drop_negative),
        ("out_of_range", drop_out_of_range),
        ("invalid_provisioned", drop_invalid_provisioned),
    ):
        cols, n = func(cols)
        report.dropped[rule] += n
    return cols


def reject(report: CleaningReport, reason: str) -> TraceError:
    """Mark ``report`` as rejected and build the :class:`TraceError` naming the file."""
    report.rejected = True
    report.reason = reason
    return TraceError(f"{report.source}: {reason}", report)


#: A provisioned size counts as changed when it differs from the previous row's by more than
#: this fraction (Bitbrains reports memory jitter of a few KB on otherwise fixed VMs).
RESIZE_TOLERANCE = 0.01


def _changes(cols: Columns, key: str) -> tuple[int, tuple[float, float] | None]:
    """Rows whose ``key`` differs from the previous row's by more than
    :data:`RESIZE_TOLERANCE` (relative), and the ``(min, max)`` of the column (None without it).
    """
    if key not in cols:
        return 0, None
    values = cols[key]
    jumps = np.abs(np.diff(values)) > RESIZE_TOLERANCE * np.maximum(values[:-1], values[1:])
    return int(np.count_nonzero(jumps)), (float(values.min()), float(values.max()))


def _median_provisioned(cols: Columns, key: str) -> float | None:
    return float(np.median(cols[key])) if key in cols else None


def finish_trace(
    cols: Columns,
    report: CleaningReport,
    options: CleaningOptions,
    name: str,
    mem_provisioned_mib: float | None = None,
    vcpus: int | None = None,
) -> VMTrace:
    """Apply rules 5-10 to valid rows and build the trace.

    Args:
        cols: Valid rows with ``time_s`` (s), ``mem_used_mib`` (MiB), ``cpu_used_vcpus`` (vCPUs)
            and optionally ``mem_provisioned_mib`` (MiB) and ``vcpus`` per row.
        report: Updated in place.
        options: Cleaning parameters.
        name: VM name.
        mem_provisioned_mib: Overrides the provisioned memory in MiB.
        vcpus: Overrides the vCPU count.

    Returns:
        The cleaned trace, with time rebased to start at 0.

    Raises:
        TraceError: Fewer than ``options.min_rows`` rows are left (message names the file).
    """
    cols, report.unordered = sort_by_time(cols)
    cols, report.dropped["duplicate_time"] = drop_duplicate_times(cols)
    if _num_rows(cols) >= 2:
        t = cols["time_s"]
        period = options.period_s or float(np.median(np.diff(t)))
        cols, report.dropped["gap_segment"] = keep_longest_segment(
            cols, options.max_gap_periods * period
        )
    n = _num_rows(cols)
    if n < options.min_rows:
        what = f"only {n} valid row(s) left" if n else "no valid rows left"
        dropped = ", ".join(f"{k}={v}" for k, v in report.dropped.items() if v) or "none"
        raise reject(
            report,
            f"{what} after cleaning, need >= {options.min_rows} (dropped: {dropped}); lower "
            "min_rows to accept shorter traces",
        )
    report.rows_kept = n
    report.mem_prov_changes, report.mem_prov_range = _changes(cols, "mem_provisioned_mib")
    report.vcpus_changes, report.vcpus_range = _changes(cols, "vcpus")

    mem_prov = mem_provisioned_mib or _median_provisioned(cols, "mem_provisioned_mib")
    cpus_med = _median_provisioned(cols, "vcpus")
    n_vcpus = vcpus or (max(1, round(cpus_med)) if cpus_med is not None else None)
    if mem_prov is None or n_vcpus is None:
        inferred_mem, inferred_cpus = infer_provisioned(
            cols["mem_used_mib"], cols["cpu_used_vcpus"]
        )
        mem_prov = mem_prov or inferred_mem
        n_vcpus = n_vcpus or inferred_cpus

    mem, cpu, report.mem_clipped, report.cpu_clipped = clip_to_provisioned(
        cols["mem_used_mib"], cols["cpu_used_vcpus"], mem_prov, n_vcpus
    )
    report.mem_zero = int(np.sum(mem == 0))
    core = {"time_s": cols["time_s"], "mem_used_mib": mem, "cpu_used_vcpus": cpu}
    period = options.period_s or float(np.median(np.diff(core["time_s"])))
    core, report.gaps_filled, report.rows_filled = fill_gaps(
        core, period, options.fill_gap_periods * period
    )
    return VMTrace(
        name=name,
        time_s=core["time_s"] - core["time_s"][0],
        mem_used_mib=core["mem_used_mib"],
        cpu_used_vcpus=core["cpu_used_vcpus"],
        mem_provisioned_mib=mem_prov,
        vcpus=n_vcpus,
        source=report.source,
    )
