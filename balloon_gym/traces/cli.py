"""Command line: ``python -m balloon_gym.traces summarize PATH``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from balloon_gym.cli_parser import ArgumentParser

from ._model import DROP_RULES, CleaningReport, TraceError, VMTrace
from .bank import heldout_mask
from .cleaning import CleaningOptions
from .readers import FORMATS, load_trace_dir

_HEADER = (
    f"{'vm':<12} {'split':<7} {'rows':>6} {'days':>6} {'prov_MiB':>9} {'vcpus':>5} "
    f"{'mem_mean':>9} {'mem_p95':>9} {'mem_frac':>8} {'cpu_mean':>8} {'cpu_p95':>8} "
    f"{'resized':<7}  cleaning"
)


def _row(trace: VMTrace, report: CleaningReport, heldout: bool) -> str:
    mem, cpu = trace.mem_used_mib, trace.cpu_used_vcpus
    frac = float(mem.mean()) / trace.mem_provisioned_mib
    return (
        f"{trace.name:<12} {'heldout' if heldout else 'train':<7} {report.rows_kept:>6d} "
        f"{trace.duration_s / 86400:>6.2f} {trace.mem_provisioned_mib:>9.1f} {trace.vcpus:>5d} "
        f"{mem.mean():>9.1f} {np.percentile(mem, 95):>9.1f} {frac:>8.3f} "
        f"{cpu.mean():>8.3f} {np.percentile(cpu, 95):>8.3f} {report.resized or '-':<7}  "
        f"{report.describe()}"
    )


def _footer(traces: Sequence[VMTrace], reports: Sequence[CleaningReport], held: int) -> list[str]:
    rejected = [r for r in reports if r.rejected]
    kept = [r for r in reports if not r.rejected]
    resized = [r for r in kept if r.resized]
    totals = {rule: sum(r.dropped[rule] for r in reports) for rule in DROP_RULES}
    lines = [
        "",
        f"files: {len(reports)}  loaded: {len(traces)}  rejected: {len(rejected)}  "
        f"held-out VMs: {held} of {len(traces)}",
        f"rows read: {sum(r.rows_read for r in reports)}  kept: "
        f"{sum(r.rows_kept for r in reports if not r.rejected)}",
        "rows dropped by rule: " + " ".join(f"{k}={v}" for k, v in totals.items()),
        f"rows clipped: mem={sum(r.mem_clipped for r in reports)} "
        f"cpu={sum(r.cpu_clipped for r in reports)}  zero-memory rows: "
        f"{sum(r.mem_zero for r in reports)}  unordered rows: "
        f"{sum(r.unordered for r in reports)}  gaps filled: {sum(r.gaps_filled for r in reports)}"
        f" (rows inserted: {sum(r.rows_filled for r in reports)})",
    ]
    if resized:
        mem = sum(1 for r in resized if r.mem_prov_changes)
        cpu = sum(1 for r in resized if r.vcpus_changes)
        lines.append(
            f"warning: {len(resized)} VM(s) change provisioned size during the trace "
            f"(memory: {mem}, vCPUs: {cpu}; column 'resized'); each is replayed relative to its "
            "median size"
        )
    lines += [f"resized {Path(r.source).name}: {_size_range(r)}" for r in resized]
    lines += [f"rejected {Path(r.source).name}: {r.reason}" for r in rejected]
    return lines


def _size_range(report: CleaningReport) -> str:
    parts = []
    if report.mem_prov_changes and report.mem_prov_range:
        lo, hi = report.mem_prov_range
        parts.append(f"memory {lo:.0f}-{hi:.0f} MiB ({report.mem_prov_changes} change(s))")
    if report.vcpus_changes and report.vcpus_range:
        lo, hi = report.vcpus_range
        parts.append(f"vCPUs {lo:g}-{hi:g} ({report.vcpus_changes} change(s))")
    return ", ".join(parts)


def summarize(path: str | Path, fmt: str = "auto", options: CleaningOptions | None = None) -> str:
    """Per-VM statistics of a trace directory or file, as printable text.

    Columns: rows kept, duration in days, provisioned MiB, vCPUs, mean / p95 memory used (MiB),
    mean used fraction of provisioned memory, mean / p95 CPU used (vCPUs), ``resized`` (``mem``,
    ``cpu`` or ``mem+cpu`` when the provisioned size changes within the kept rows, else ``-``)
    and the cleaning counters; the footer totals the cleaning, warns about resized VMs and lists
    rejected files with the reason.

    Raises:
        TraceError: As :func:`~balloon_gym.traces.load_trace_dir`.
    """
    traces, reports = load_trace_dir(path, fmt, options)
    accepted = [r for r in reports if not r.rejected]
    held = heldout_mask([t.name for t in traces])
    lines = [_HEADER]
    lines += [_row(t, r, h) for t, r, h in zip(traces, accepted, held, strict=True)]
    lines += _footer(traces, reports, int(held.sum()))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m balloon_gym.traces``; returns the exit code."""
    parser = ArgumentParser(
        prog="python -m balloon_gym.traces", description="Inspect and clean VM usage traces."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_sum = sub.add_parser("summarize", help="per-VM statistics of a trace directory or file")
    p_sum.add_argument("path", type=Path, help="directory of *.csv / *.csv.gz traces, or a file")
    p_sum.add_argument("--format", choices=FORMATS, default="auto", dest="fmt")
    p_sum.add_argument("--min-rows", type=int, default=CleaningOptions.min_rows)
    args = parser.parse_args(argv)
    if not args.path.exists():
        p_sum.error(
            f"argument path: trace path not found: {args.path}; give a directory of *.csv / "
            "*.csv.gz traces or one such file"
        )
    if args.min_rows < 2:
        p_sum.error(f"argument --min-rows: must be >= 2, got {args.min_rows}")
    try:
        text = summarize(args.path, args.fmt, CleaningOptions(min_rows=args.min_rows))
    except (TraceError, OSError) as exc:
        p_sum.error(f"argument path: {' '.join(str(exc).split())}")
    print(text)
    return 0
