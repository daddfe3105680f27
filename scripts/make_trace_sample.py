"""Build the packaged Bitbrains sample ``balloon_gym/data/bitbrains_sample.npz``.

Reads every GWA-T-12 file of the source directory, cleans it (balloon_gym.traces rules),
resamples it onto a 300 s grid, keeps the first ``days`` days of each VM (the largest number of
days <= --max-days whose float16 file fits in --max-kb) and writes the bank with its provenance
(source, citation, this command, cleaning summary, split) in ``metadata_json`` and in a JSON
file beside it.

Usage:
    python scripts/make_trace_sample.py [--src DIR] [--out FILE] [--max-days 7] [--max-kb 300]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from balloon_gym.traces import (  # noqa: E402
    DROP_RULES,
    CleaningOptions,
    CleaningReport,
    TraceBank,
    load_trace_dir,
)
from balloon_gym.traces.bank import SPLIT_SALT  # noqa: E402

DEFAULT_SRC = Path("/work/shared/traces/bitbrains-rnd-2013-7")
DEFAULT_OUT = REPO / "balloon_gym" / "data" / "bitbrains_sample.npz"
CITATION = (
    "S. Shen, V. van Beek, A. Iosup, 'Statistical Characterization of Business-Critical "
    "Workloads Hosted in Cloud Datacenters', CCGrid 2015. Trace: Grid Workloads Archive "
    "GWA-T-12 Bitbrains (TU Delft), http://gwa.ewi.tudelft.nl/datasets/gwa-t-12-bitbrains"
)


def cleaning_summary(reports: list[CleaningReport], options: CleaningOptions) -> dict[str, object]:
    """Totals of the cleaning counters over all files, and the rejected files with reasons."""
    counters = ("unordered", "mem_clipped", "cpu_clipped", "mem_zero", "gaps_filled", "rows_filled")
    return {
        "options": {
            "min_rows": options.min_rows,
            "fill_gap_periods": options.fill_gap_periods,
            "max_gap_periods": options.max_gap_periods,
        },
        "files": len(reports),
        "rows_read": sum(r.rows_read for r in reports),
        "rows_kept": sum(r.rows_kept for r in reports if not r.rejected),
        "dropped_by_rule": {k: sum(r.dropped[k] for r in reports) for k in DROP_RULES},
        **{k: sum(getattr(r, k) for r in reports) for k in counters},
        "rejected": {Path(r.source).name: r.reason for r in reports if r.rejected},
    }


def sample_metadata(args: argparse.Namespace, days: int, bank: TraceBank) -> dict[str, object]:
    """Provenance of a sample of ``days`` days (the cleaning summary is added separately)."""
    held = int(bank.heldout_mask.sum())
    return {
        "dataset": f"Bitbrains GWA-T-12 'Rnd' set, July 2013 ({args.src.name}, files 1-100)",
        "citation": CITATION,
        "command": shlex.join(["python", "scripts/make_trace_sample.py", *sys.argv[1:]]),
        "content": (
            f"first {days} days (at most {bank.max_len} samples of {bank.sample_period_s:g} s) "
            "of the cleaned longest contiguous segment of each usable VM; memory used (MiB) and "
            "CPU used (vCPUs) stored as float16 rounded toward zero (relative precision 2**-11), "
            "provisioned MiB as float64"
        ),
        "days": days,
        "vms": bank.num_vms,
        "split": {
            "train": bank.num_vms - held,
            "heldout": held,
            "rule": f"sha256('{SPLIT_SALT}:' + name)[:8] / 2**64 < 0.2 -> heldout",
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--max-days", type=int, default=7)
    parser.add_argument("--max-kb", type=float, default=300.0)
    args = parser.parse_args()

    options = CleaningOptions()
    traces, reports = load_trace_dir(args.src, "bitbrains", options)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    per_day = round(86400 / 300.0)
    summary = cleaning_summary(reports, options)
    for days in range(args.max_days, 0, -1):
        bank = TraceBank.from_traces(traces, 300.0, max_len=days * per_day)
        bank.metadata.update(sample_metadata(args, days, bank), cleaning=summary)
        bank.save(args.out, float16=True)
        if args.out.stat().st_size / 1024 <= args.max_kb:
            break
    else:
        raise SystemExit(f"cannot fit the sample in {args.max_kb} KB")
    metadata = bank.metadata
    held = int(bank.heldout_mask.sum())
    json_path = args.out.with_suffix(".json")
    json_path.write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    print(
        f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB): {bank.num_vms} VMs "
        f"({bank.num_vms - held} train, {held} heldout), {days} days; metadata in {json_path}"
    )


if __name__ == "__main__":
    main()
