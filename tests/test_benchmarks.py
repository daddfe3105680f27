"""Smoke test of ``benchmarks/throughput.py``: it runs and writes what it promises.

Nothing here checks speed (speed is what the benchmark reports, never what the tests assert):
only that ``--quick`` finishes, and that its CSV and PNG exist with the expected shape; and that
``fused_profile.py`` can still profile the numba kernel.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from balloon_gym.core import SUBSTEPS

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"
COLUMNS = ["section", "name", "hosts", "guests", "value", "unit", "spread_pct", "target", "status"]


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a CSV file."""
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def test_quick_run_writes_csv_and_png(tmp_path: Path) -> None:
    """``--quick`` exits 0 and writes a PNG and a CSV with every section of the report."""
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "PASS" in proc.stdout or "MISS" in proc.stdout

    png = tmp_path / "throughput.png"
    assert png.is_file()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    header, rows = _rows(tmp_path / "throughput.csv")
    assert header == COLUMNS
    by_key = {(r["section"], r["name"], int(r["hosts"]), int(r["guests"])): r for r in rows}

    targets = {r["name"]: r for r in rows if r["section"] == "target"}
    assert set(targets) == {"native_host_steps_per_s", "native_vs_sync", "single_env_step"}
    assert all(r["status"] in {"PASS", "MISS"} for r in targets.values())

    throughput = [r for r in rows if r["section"] == "throughput"]
    native = {(r["hosts"], r["guests"]) for r in throughput if r["name"] == "native"}
    sync = {r["hosts"] for r in throughput if r["name"] == "sync"}
    assert {("1", "8"), ("64", "8"), ("1024", "8")} <= native
    assert any(g == "32" for _, g in native)
    assert {"1", "64", "1024"} <= sync
    for hosts in (1, 64, 1024):
        assert ("speedup", "native_vs_sync", hosts, 8) in by_key
        assert ("floor_fraction", "native", hosts, 8) in by_key
    assert ("step_time", "single", 1, 8) in by_key

    substeps = {r["name"] for r in rows if r["section"] == "substep"}
    assert {*SUBSTEPS, "observe", "glue", "total", "env_adapter"} <= substeps

    memory = {r["name"] for r in rows if r["section"] == "memory"}
    assert {"state_bytes_per_host", "params_bytes_per_host", "peak_tracemalloc"} <= memory
    assert any(r["section"] == "bandwidth" for r in rows)
    for r in rows:
        float(r["value"])  # every value parses (NaN allowed)


def test_fused_profile_reports_every_section_of_the_kernel() -> None:
    """``fused_profile.py`` times the installed kernel and prints one row per sub-step of
    ``core.step.SUBSTEPS`` (the kernel's own ``ticks``), then the observation."""
    pytest.importorskip("numba")
    script = SCRIPT.parent / "fused_profile.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--hosts", "4", "--steps", "3"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split()[0] for line in proc.stdout.splitlines()[2:]]
    assert rows[: len(SUBSTEPS) + 1] == [*SUBSTEPS, "observation"], rows
    assert "kernel," in rows and "fused.step_observe," in rows


def test_the_kernel_s_profile_sections_are_the_core_s_sub_steps() -> None:
    pytest.importorskip("numba")
    from balloon_gym.core.fused import kernels

    assert (*SUBSTEPS, "observation") == kernels.PROFILE_SECTIONS
