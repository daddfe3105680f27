"""Tests of balloon_gym.traces: readers, cleaning rules, resampling, TraceBank, sample, CLI."""

from __future__ import annotations

import gzip
import os
import pickle
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from balloon_gym.traces import (
    CleaningOptions,
    TraceBank,
    TraceError,
    VMTrace,
    heldout_mask,
    infer_provisioned,
    is_heldout,
    load_sample_bank,
    load_trace_dir,
    read_bitbrains,
    read_csv_trace,
    read_trace,
    resample,
    summarize,
)
from balloon_gym.traces.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]
OPTS = CleaningOptions(min_rows=3)
BB_HEADER = ";\t".join(
    [
        "Timestamp [ms]",
        "CPU cores",
        "CPU capacity provisioned [MHZ]",
        "CPU usage [MHZ]",
        "CPU usage [%]",
        "Memory capacity provisioned [KB]",
        "Memory usage [KB]",
        "Disk read throughput [KB/s]",
        "Disk write throughput [KB/s]",
        "Network received throughput [KB/s]",
        "Network transmitted throughput [KB/s]",
    ]
)


def bb_row(
    t: float,
    cores: object = 2,
    cap_mhz: object = 5200.0,
    use_mhz: object = 1300.0,
    prov_kb: object = 4 * 1024 * 1024,
    used_kb: object = 1024 * 1024,
) -> str:
    """One GWA-T-12 row; defaults: 2 cores of 2600 MHz, 0.5 vCPU used, 1024 of 4096 MiB used."""
    return ";\t".join(str(v) for v in (t, cores, cap_mhz, use_mhz, 25.0, prov_kb, used_kb)) + (
        ";\t1.0;\t2.0;\t3.0;\t4.0"
    )


def write_bb(path: Path, rows: list[str]) -> Path:
    text = "\n".join([BB_HEADER, *rows]) + "\n"
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def good_rows(n: int = 4, t0: float = 1372629804) -> list[str]:
    return [bb_row(t0 + 300 * i, used_kb=1024 * (1000 + 10 * i)) for i in range(n)]


# --- reading the Bitbrains format -------------------------------------------------------------


@pytest.mark.parametrize("filename", ["vm7.csv.gz", "vm7.csv"])
def test_read_bitbrains_parses_and_converts_units(tmp_path: Path, filename: str) -> None:
    path = write_bb(tmp_path / filename, good_rows())
    trace, report = read_bitbrains(path, OPTS)
    assert trace.name == "vm7"
    assert trace.source == str(path)
    np.testing.assert_array_equal(trace.time_s, [0.0, 300.0, 600.0, 900.0])
    assert trace.time_s.dtype == np.float64
    assert trace.mem_used_mib.dtype == np.float32 and trace.cpu_used_vcpus.dtype == np.float32
    np.testing.assert_array_equal(trace.mem_used_mib, [1000.0, 1010.0, 1020.0, 1030.0])
    # 1300 MHz used / (5200 MHz / 2 cores) = 0.5 vCPU
    np.testing.assert_allclose(trace.cpu_used_vcpus, 0.5)
    assert trace.mem_provisioned_mib == 4096.0
    assert trace.vcpus == 2
    assert report.rows_read == 4 and report.rows_kept == 4 and report.rows_dropped == 0
    assert not report.rejected and report.describe() == "-"


def test_read_bitbrains_millisecond_timestamps(tmp_path: Path) -> None:
    rows = [bb_row(1372629804000 + 300000 * i) for i in range(3)]
    trace, _ = read_bitbrains(write_bb(tmp_path / "ms.csv", rows), OPTS)
    np.testing.assert_array_equal(trace.time_s, [0.0, 300.0, 600.0])


def test_provisioned_is_median_and_usage_is_clipped(tmp_path: Path) -> None:
    rows = [
        bb_row(0, cores=2, prov_kb=4096 * 1024, used_kb=5000 * 1024),  # above 4096 MiB
        bb_row(300, cores=4, cap_mhz=10400.0, prov_kb=8192 * 1024),
        bb_row(600, cores=2, use_mhz=6000.0),  # 6000 / 2600 = 2.31 vCPU > 2
        bb_row(900, cores=2, prov_kb=4096 * 1024),
    ]
    trace, report = read_bitbrains(write_bb(tmp_path / "a.csv", rows), OPTS)
    assert trace.mem_provisioned_mib == 4096.0 and trace.vcpus == 2
    assert report.mem_clipped == 1 and report.cpu_clipped == 1
    np.testing.assert_array_equal(trace.mem_used_mib, [4096.0, 1024.0, 1024.0, 1024.0])
    # row 2: 1300 MHz of 4 x 2600 MHz cores = 0.5 vCPU; row 3 clipped to 2 vCPUs
    np.testing.assert_allclose(trace.cpu_used_vcpus, [0.5, 0.5, 2.0, 0.5])


def test_rule_invalid_provisioned(tmp_path: Path) -> None:
    rows = [
        bb_row(0),
        bb_row(300, cores=0),
        bb_row(600, prov_kb=0),
        bb_row(900, cap_mhz=0),
        bb_row(1200),
        bb_row(1500),
    ]
    trace, report = read_bitbrains(write_bb(tmp_path / "a.csv", rows), OPTS)
    assert report.dropped["invalid_provisioned"] == 3
    assert report.rows_dropped == 3 and report.rows_kept == 3
    np.testing.assert_array_equal(trace.time_s, [0.0, 1200.0, 1500.0])


def test_rule_non_numeric_and_negative(tmp_path: Path) -> None:
    rows = [
        bb_row(0),
        bb_row(300, used_kb="nan"),
        bb_row(600, use_mhz="abc"),
        bb_row(900, cores=""),
        "1200;\t2;\t5200.0",  # truncated row
        bb_row(1500, used_kb=-5),
        bb_row(1800),
        bb_row(2100, used_kb="inf"),
        bb_row(2400),
    ]
    trace, report = read_bitbrains(write_bb(tmp_path / "a.csv", rows), OPTS)
    assert report.rows_read == 9
    assert report.dropped["non_numeric"] == 5
    assert report.dropped["negative"] == 1
    np.testing.assert_array_equal(trace.time_s, [0.0, 1800.0, 2400.0])


def test_rule_duplicate_and_unordered_times(tmp_path: Path) -> None:
    rows = [
        bb_row(1000, used_kb=100 * 1024),
        bb_row(1300, used_kb=200 * 1024),
        bb_row(1300, used_kb=999 * 1024),  # duplicate: dropped, first kept
        bb_row(1900, used_kb=400 * 1024),
        bb_row(1600, used_kb=300 * 1024),  # out of order: sorted
    ]
    trace, report = read_bitbrains(write_bb(tmp_path / "a.csv", rows), OPTS)
    assert report.dropped["duplicate_time"] == 1
    assert report.unordered == 1
    np.testing.assert_array_equal(trace.time_s, [0.0, 300.0, 600.0, 900.0])
    np.testing.assert_array_equal(trace.mem_used_mib, [100.0, 200.0, 300.0, 400.0])


def test_rule_fill_short_gap(tmp_path: Path) -> None:
    times = [0, 300, 600, 1800, 2100]  # 1200 s = 4 periods > 3: filled at 900, 1200, 1500
    used = [100, 100, 100, 500, 500]
    rows = [bb_row(t, used_kb=u * 1024) for t, u in zip(times, used, strict=True)]
    trace, report = read_bitbrains(write_bb(tmp_path / "a.csv", rows), OPTS)
    assert report.gaps_filled == 1 and report.rows_filled == 3 and report.rows_kept == 5
    np.testing.assert_array_equal(trace.time_s, np.arange(8) * 300.0)
    np.testing.assert_array_equal(trace.mem_used_mib, [100, 100, 100, 200, 300, 400, 500, 500])


def test_rule_long_gap_keeps_longest_segment(tmp_path: Path) -> None:
    times = [0, 300, 600, 900, 1200, 10000, 10300, 10600]  # 8800 s > 12 periods: split
    trace, report = read_bitbrains(write_bb(tmp_path / "a.csv", [bb_row(t) for t in times]), OPTS)
    assert report.dropped["gap_segment"] == 3
    np.testing.assert_array_equal(trace.time_s, [0.0, 300.0, 600.0, 900.0, 1200.0])


def test_rule_gap_segment_tie_keeps_earliest(tmp_path: Path) -> None:
    times = [0, 300, 600, 50000, 50300, 50600]
    trace, report = read_bitbrains(write_bb(tmp_path / "a.csv", [bb_row(t) for t in times]), OPTS)
    assert report.dropped["gap_segment"] == 3
    np.testing.assert_array_equal(trace.time_s, [0.0, 300.0, 600.0])


def test_rejects_with_message_naming_file(tmp_path: Path) -> None:
    path = write_bb(tmp_path / "empty_vm.csv.gz", [bb_row(300 * i, prov_kb=0) for i in range(5)])
    with pytest.raises(TraceError, match=r"empty_vm\.csv\.gz.*no valid rows left") as info:
        read_bitbrains(path, OPTS)
    assert info.value.report is not None and info.value.report.rejected
    assert info.value.report.dropped["invalid_provisioned"] == 5

    short = write_bb(tmp_path / "short.csv", good_rows(4))
    with pytest.raises(TraceError, match=r"short\.csv: only 4 valid row\(s\) left.*need >= 10"):
        read_bitbrains(short, CleaningOptions(min_rows=10))

    bad = tmp_path / "bad.csv"
    bad.write_text("a;b;c\n1;2;3\n")
    with pytest.raises(TraceError, match=r"bad\.csv: not a GWA-T-12"):
        read_bitbrains(bad, OPTS)
    with pytest.raises(TraceError, match=r"nothere\.csv: file not found"):
        read_bitbrains(tmp_path / "nothere.csv", OPTS)


# --- plain CSV format -------------------------------------------------------------------------


def test_read_csv_trace_with_provisioned_columns(tmp_path: Path) -> None:
    path = tmp_path / "web-1.csv"
    path.write_text(
        "# exported by hand\n"
        "time_s,mem_used_mib,cpu_used_vcpus,mem_provisioned_mib,vcpus,comment\n"
        "100,500,0.5,2048,2,x\n"
        "160,600,2.5,2048,2,y\n"
        "220,abc,0.5,2048,2,z\n"
        "280,700,1.0,2048,2,w\n"
    )
    trace, report = read_csv_trace(path, options=OPTS)
    assert trace.name == "web-1"
    np.testing.assert_array_equal(trace.time_s, [0.0, 60.0, 180.0])
    np.testing.assert_array_equal(trace.mem_used_mib, [500.0, 600.0, 700.0])
    np.testing.assert_array_equal(trace.cpu_used_vcpus, [0.5, 2.0, 1.0])
    assert (trace.mem_provisioned_mib, trace.vcpus) == (2048.0, 2)
    assert report.dropped["non_numeric"] == 1 and report.cpu_clipped == 1


def test_read_csv_trace_infers_or_takes_provisioned(tmp_path: Path) -> None:
    path = tmp_path / "db.csv"
    path.write_text("time_s,mem_used_mib,cpu_used_vcpus\n0,1500,0.2\n300,900,1.2\n600,1000,0.1\n")
    trace, _ = read_csv_trace(path, options=OPTS)
    assert (trace.mem_provisioned_mib, trace.vcpus) == (2048.0, 2)  # 1500 MiB -> 2 GiB, ceil 1.2
    trace, report = read_csv_trace(path, mem_provisioned_mib=1200.0, vcpus=4, options=OPTS)
    assert (trace.mem_provisioned_mib, trace.vcpus) == (1200.0, 4)
    assert report.mem_clipped == 1 and float(trace.mem_used_mib.max()) == 1200.0
    assert infer_provisioned(np.array([0.0]), np.array([0.0])) == (1024.0, 1)
    assert infer_provisioned(np.array([4096.0]), np.array([2.0])) == (4096.0, 2)

    bad = tmp_path / "nocols.csv"
    bad.write_text("time_s,mem\n0,1\n")
    with pytest.raises(TraceError, match=r"nocols\.csv: CSV header lacks column\(s\) mem_used_mib"):
        read_csv_trace(bad, options=OPTS)


# --- directories --------------------------------------------------------------------------------


def make_dir(tmp_path: Path) -> Path:
    d = tmp_path / "traces"
    d.mkdir()
    write_bb(d / "2.csv.gz", good_rows(5))
    write_bb(d / "10.csv.gz", good_rows(4))
    write_bb(d / "3.csv.gz", [bb_row(300 * i, cores=0) for i in range(4)])
    (d / "junk.csv").write_text("hello world\n")
    (d / "README.md").write_text("not a trace\n")
    (d / "own.csv").write_text("time_s,mem_used_mib,cpu_used_vcpus\n0,1,0\n10,2,0\n20,3,1\n")
    return d


def test_load_trace_dir_loads_good_and_reports_bad(tmp_path: Path) -> None:
    traces, reports = load_trace_dir(make_dir(tmp_path), options=OPTS)
    assert [t.name for t in traces] == ["2", "10", "own"]
    assert [Path(r.source).name for r in reports] == [
        "2.csv.gz",
        "3.csv.gz",
        "10.csv.gz",
        "junk.csv",
        "own.csv",
    ]
    rejected = {Path(r.source).name: r.reason for r in reports if r.rejected}
    assert set(rejected) == {"3.csv.gz", "junk.csv"}
    assert "invalid_provisioned=4" in rejected["3.csv.gz"]
    assert "unrecognised trace format" in rejected["junk.csv"]


def test_load_trace_dir_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="missing_dir: trace path not found"):
        load_trace_dir(tmp_path / "missing_dir")
    d = tmp_path / "allbad"
    d.mkdir()
    write_bb(d / "1.csv", [bb_row(0, prov_kb=0)])
    with pytest.raises(TraceError, match=r"allbad: no usable trace among 1 file.*1\.csv"):
        load_trace_dir(d, options=OPTS)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TraceError, match=r"empty: no \.csv or \.csv\.gz trace files"):
        load_trace_dir(empty)


# --- resampling and TraceBank -------------------------------------------------------------------


def small_trace(name: str = "a") -> VMTrace:
    return VMTrace(name, [0.0, 300.0, 600.0], [0.0, 300.0, 600.0], [0.0, 1.0, 2.0], 1024.0, 2)


def test_resample_interpolates_and_wraps() -> None:
    out = resample(small_trace(), dt_s=150.0, num_steps=8)
    # period = 600 + 300 s; from t=600 to 900 the trace returns linearly to its first value
    np.testing.assert_array_equal(out["time_s"], np.arange(8) * 150.0)
    np.testing.assert_array_equal(out["mem_used_mib"], [0, 150, 300, 450, 600, 300, 0, 150])
    np.testing.assert_array_equal(out["cpu_used_vcpus"], [0, 0.5, 1, 1.5, 2, 1, 0, 0.5])
    assert out["mem_used_mib"].dtype == np.float32
    back = resample(small_trace(), dt_s=900.0, num_steps=3, offset_s=-300.0)
    np.testing.assert_array_equal(back["mem_used_mib"], [600.0, 600.0, 600.0])


def test_vmtrace_validates() -> None:
    with pytest.raises(ValueError, match="start at 0"):
        VMTrace("x", [1.0, 2.0], [0.0, 0.0], [0.0, 0.0], 1.0, 1)
    with pytest.raises(ValueError, match="at least 2"):
        VMTrace("x", [0.0], [0.0], [0.0], 1.0, 1)
    trace = small_trace()
    with pytest.raises(ValueError):
        trace.mem_used_mib[0] = 5.0  # read-only


def test_trace_bank_from_traces_and_indexing() -> None:
    irregular = VMTrace("b", [0.0, 299.0, 600.0, 901.0], [0, 299, 600, 901], [1, 1, 1, 1], 2048, 1)
    bank = TraceBank.from_traces([small_trace(), irregular], sample_period_s=300.0)
    assert bank.num_vms == 2 and bank.max_len == 4
    np.testing.assert_array_equal(bank.lengths, [3, 4])
    np.testing.assert_array_equal(bank.mem_used_mib[0], [0, 300, 600, 0])  # padded with 0
    np.testing.assert_array_equal(bank.mem_used_mib[1], [0, 300, 600, 900])
    vm = np.array([0, 0, 1, 1])
    t = np.array([3, 4, 4, 5])
    mem, cpu = bank.at(vm, t)
    np.testing.assert_array_equal(bank.wrap(vm, t), [0, 1, 0, 1])
    np.testing.assert_array_equal(mem, [0, 300, 0, 300])
    np.testing.assert_array_equal(cpu, [0, 1, 1, 1])
    short = TraceBank.from_traces([irregular], max_len=2)
    np.testing.assert_array_equal(short.lengths, [2])


def test_trace_bank_save_load_round_trip(tmp_path: Path) -> None:
    traces = [small_trace(f"vm-{i}") for i in range(6)]
    bank = TraceBank.from_traces(traces, metadata={"source": "unit test", "n": 6})
    path = tmp_path / "bank.npz"
    bank.save(path)
    with np.load(path, allow_pickle=False) as raw:
        assert raw["names"].dtype.kind == "U"
    loaded = TraceBank.load(path)
    for key in ("names", "mem_used_mib", "cpu_used_vcpus", "lengths", "vcpus", "heldout_mask"):
        np.testing.assert_array_equal(getattr(loaded, key), getattr(bank, key))
    np.testing.assert_array_equal(loaded.mem_provisioned_mib, bank.mem_provisioned_mib)
    assert loaded.sample_period_s == 300.0 and loaded.metadata == {"source": "unit test", "n": 6}
    assert loaded.mem_used_mib.dtype == np.float32


def test_trace_bank_float16_keeps_used_below_provisioned(tmp_path: Path) -> None:
    prov = 1000.3  # not representable in float16 nor float32
    trace = VMTrace("x", [0.0, 300.0], [prov, 3.3], [0.0, 0.7], prov, 1)
    assert float(trace.mem_used_mib[0]) <= prov
    path = tmp_path / "b16.npz"
    TraceBank.from_traces([trace]).save(path, float16=True)
    with np.load(path, allow_pickle=False) as raw:
        assert raw["mem_used_mib"].dtype == np.float16
    loaded = TraceBank.load(path)
    assert float(loaded.mem_used_mib[0, 0]) <= prov
    np.testing.assert_allclose(loaded.mem_used_mib[0], [prov, 3.3], rtol=2e-3)


def test_trace_bank_subset() -> None:
    bank = TraceBank.from_traces(
        [small_trace("a"), VMTrace("b", [0.0, 300.0], [1, 2], [0, 0], 8, 1), small_trace("c")]
    )
    sub = bank.subset([1])
    assert sub.names.tolist() == ["b"] and sub.max_len == 2
    by_mask = bank.subset(np.array([True, False, True]))
    assert by_mask.names.tolist() == ["a", "c"] and by_mask.max_len == 3
    with pytest.raises(ValueError, match="boolean mask"):
        bank.subset(np.array([True]))
    assert bank.subset([]).num_vms == 0


def test_split_is_deterministic_and_disjoint() -> None:
    names = [str(i) for i in range(1, 1001)]
    mask = heldout_mask(names)
    np.testing.assert_array_equal(mask, heldout_mask(list(reversed(names)))[::-1])
    assert [is_heldout(n) for n in names[:50]] == mask[:50].tolist()
    assert 0.15 < mask.mean() < 0.25
    bank = TraceBank.from_traces([small_trace(n) for n in names[:60]])
    train, held = bank.train(), bank.heldout()
    assert set(train.names.tolist()).isdisjoint(held.names.tolist())
    assert train.num_vms + held.num_vms == 60 and held.num_vms > 0
    assert set(bank.split.tolist()) == {"train", "heldout"}
    assert not train.heldout_mask.any() and held.heldout_mask.all()


# --- packaged sample ----------------------------------------------------------------------------


def test_packaged_sample() -> None:
    bank = load_sample_bank()
    assert bank.num_vms >= 50 and bank.sample_period_s == 300.0
    assert 0 < bank.heldout_mask.sum() < bank.num_vms
    np.testing.assert_array_equal(bank.heldout_mask, heldout_mask(bank.names.tolist()))
    valid = np.arange(bank.max_len)[None, :] < bank.lengths[:, None]
    for arr in (bank.mem_used_mib, bank.cpu_used_vcpus):
        assert np.all(np.isfinite(arr)) and np.all(arr >= 0)
    assert np.all(bank.mem_used_mib <= bank.mem_provisioned_mib[:, None])
    assert np.all(bank.mem_used_mib[~valid] == 0)  # padding
    assert np.all(bank.cpu_used_vcpus <= bank.vcpus[:, None])
    assert np.all(bank.vcpus >= 1) and np.all(bank.mem_provisioned_mib > 0)
    assert "Shen" in bank.metadata["citation"] and "make_trace_sample" in bank.metadata["command"]


# --- CLI ----------------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "balloon_gym.traces", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)


def test_cli_summarize(tmp_path: Path) -> None:
    result = run_cli("summarize", str(make_dir(tmp_path)), "--min-rows", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:6] == ["vm", "split", "rows", "days", "prov_MiB", "vcpus"]
    assert lines[1].split()[0] == "2" and lines[1].split()[2] == "5"
    assert "files: 5  loaded: 3  rejected: 2" in result.stdout  # README.md is not a trace file
    assert "rejected 3.csv.gz:" in result.stdout and "rejected junk.csv:" in result.stdout
    single = run_cli("summarize", str(tmp_path / "traces" / "2.csv.gz"), "--min-rows", "3")
    assert single.returncode == 0 and "files: 1  loaded: 1" in single.stdout


def test_cli_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_traces"
    result = run_cli("summarize", str(missing))
    assert result.returncode == 2
    assert str(missing) in result.stderr and "not found" in result.stderr
    allbad = tmp_path / "allbad"
    allbad.mkdir()
    (allbad / "x.csv").write_text("nonsense\n")
    result = run_cli("summarize", str(allbad))
    assert result.returncode == 2 and "allbad: no usable trace" in result.stderr
    assert "Traceback" not in result.stderr


# --- bad input ----------------------------------------------------------------------------------


def csv_rows(values: list[str], header: str = "time_s,mem_used_mib,cpu_used_vcpus") -> str:
    return "\n".join([header, *values]) + "\n"


@pytest.mark.parametrize("bad", ["1.7e308", "inf", "-inf", "nan", "-5", "1e12", "1e40"])
def test_corrupt_memory_values_are_dropped_by_a_counted_rule(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "vm.csv"
    path.write_text(csv_rows(["0,100,0.5", f"300,{bad},0.5", "600,200,0.5", "900,300,1.5"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow on the way
        trace, report = read_csv_trace(path, options=OPTS)
    np.testing.assert_array_equal(trace.time_s, [0.0, 600.0, 900.0])
    assert report.rows_dropped == 1 and report.rows_kept == 3
    assert np.all(np.isfinite(trace.mem_used_mib)) and trace.mem_provisioned_mib == 1024.0


def test_rule_out_of_range(tmp_path: Path) -> None:
    rows = [
        bb_row(0),
        bb_row(300, used_kb=1.7e308),  # more than 1 PiB of memory
        bb_row(600, prov_kb=1.7e308),
        bb_row(900, cores=1e9),  # more than 65 536 vCPUs
        bb_row(1200, use_mhz=1.7e308),
        bb_row(1500, cap_mhz=1e-300),  # usage / a tiny capacity overflows to inf
        bb_row(1.7e308),  # a time after 1e11 s
        bb_row(1800),
        bb_row(2100),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trace, report = read_bitbrains(write_bb(tmp_path / "a.csv", rows), OPTS)
    assert report.dropped["out_of_range"] == 6 and report.rows_dropped == 6
    np.testing.assert_array_equal(trace.time_s, [0.0, 1800.0, 2100.0])
    np.testing.assert_allclose(trace.cpu_used_vcpus, 0.5)
    assert "out_of_range=6" in report.describe()


def test_a_file_of_only_corrupt_values_is_rejected_naming_the_rule(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    path.write_text(csv_rows([f"{300 * i},1.7e308,0.5" for i in range(5)]))
    with pytest.raises(TraceError, match=r"huge\.csv: no valid rows.*out_of_range=5"):
        read_csv_trace(path, options=OPTS)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mem_provisioned_mib": 1.7e308}, "mem_provisioned_mib must be in"),
        ({"mem_provisioned_mib": float("nan")}, "mem_provisioned_mib must be in"),
        ({"mem_provisioned_mib": 0.0}, "mem_provisioned_mib must be in"),
        ({"vcpus": 10**9}, "vcpus must be in"),
    ],
)
def test_read_csv_trace_rejects_absurd_provisioned_arguments(
    tmp_path: Path, kwargs: dict[str, float], match: str
) -> None:
    path = tmp_path / "vm.csv"
    path.write_text(csv_rows(["0,1,0", "300,1,0", "600,1,0"]))
    with pytest.raises(TraceError, match=rf"vm\.csv: {match}"):
        read_csv_trace(path, options=OPTS, **kwargs)  # type: ignore[arg-type]


def test_negative_times_are_dropped_and_unsorted_duplicates_cleaned(tmp_path: Path) -> None:
    path = tmp_path / "vm.csv"
    path.write_text(csv_rows(["-300,1,0", "600,3,0", "0,1,0", "300,2,0", "300,9,0", "-5,1,0"]))
    trace, report = read_csv_trace(path, options=OPTS)
    assert report.dropped["negative"] == 2 and report.dropped["duplicate_time"] == 1
    assert report.unordered == 3  # 0, 300 and 300 come after 600
    np.testing.assert_array_equal(trace.time_s, [0.0, 300.0, 600.0])
    np.testing.assert_array_equal(trace.mem_used_mib, [1.0, 2.0, 3.0])


def test_all_rows_at_one_time_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "same.csv"
    path.write_text(csv_rows(["0,1,0"] * 5))
    with pytest.raises(TraceError, match=r"same\.csv: only 1 valid row.*duplicate_time=4"):
        read_csv_trace(path, options=OPTS)


def bad_files(d: Path) -> dict[str, str]:
    """Files that are not usable traces, and the reason each is rejected for."""
    d.mkdir(exist_ok=True)
    (d / "fake.csv.gz").write_text("time_s,mem_used_mib,cpu_used_vcpus\n")
    (d / "trunc.csv.gz").write_bytes(gzip.compress(b"time_s,mem_used_mib\n" * 50)[:20])
    (d / "empty.csv").write_text("")
    (d / "header.csv").write_text("time_s,mem_used_mib,cpu_used_vcpus\n")
    (d / "binary.csv").write_bytes(bytes(range(256)) * 4)
    return {
        "fake.csv.gz": "not a valid gzip file",
        "trunc.csv.gz": "not a valid gzip file",
        "empty.csv": "empty file",
        "header.csv": "no valid rows left",
        "binary.csv": "unrecognised trace format",
    }


def test_unreadable_files_raise_trace_errors_naming_them(tmp_path: Path) -> None:
    for name, reason in bad_files(tmp_path / "bad").items():
        path = tmp_path / "bad" / name
        with pytest.raises(TraceError, match=rf"{re.escape(name)}: {reason}"):
            read_trace(path, options=OPTS)
    with pytest.raises(TraceError, match=r"fake\.csv\.gz: not a valid gzip file"):
        read_csv_trace(tmp_path / "bad" / "fake.csv.gz", options=OPTS)
    with pytest.raises(TraceError, match=r"trunc\.csv\.gz: not a valid gzip file"):
        read_bitbrains(tmp_path / "bad" / "trunc.csv.gz", OPTS)
    with pytest.raises(TraceError, match=r"bad: not a file"):
        read_trace(tmp_path / "bad")


def test_load_trace_dir_rejects_unreadable_files_and_keeps_the_rest(tmp_path: Path) -> None:
    d = tmp_path / "mixed"
    reasons = bad_files(d)
    write_bb(d / "7.csv", good_rows(4))
    traces, reports = load_trace_dir(d, options=OPTS)
    assert [t.name for t in traces] == ["7"]
    rejected = {Path(r.source).name: r.reason for r in reports if r.rejected}
    assert set(rejected) == set(reasons)
    for name, reason in reasons.items():
        assert reason in rejected[name]
    # A single unusable file raises its own reason.
    with pytest.raises(TraceError, match=r"fake\.csv\.gz: not a valid gzip file"):
        load_trace_dir(d / "fake.csv.gz", options=OPTS)
    nontrace = tmp_path / "nontrace"
    nontrace.mkdir()
    (nontrace / "notes.txt").write_text("hello\n")
    with pytest.raises(TraceError, match=r"nontrace: no \.csv or \.csv\.gz trace files found"):
        load_trace_dir(nontrace)


@pytest.mark.parametrize("other", ["1.csv.gz", "1.CSV"])
def test_duplicate_vm_names_are_rejected_naming_both_files(tmp_path: Path, other: str) -> None:
    d = tmp_path / "dup"
    d.mkdir()
    write_bb(d / "1.csv", good_rows(4))
    write_bb(d / other, good_rows(4))
    with pytest.raises(TraceError, match=r"1\.(csv|CSV).* and 1\.(csv\.gz|csv).*VM name '1'"):
        load_trace_dir(d, options=OPTS)


# --- resized VMs --------------------------------------------------------------------------------


def test_resized_vms_are_counted_not_rejected(tmp_path: Path) -> None:
    gib = 1024 * 1024
    rows = [bb_row(0, prov_kb=4 * gib), bb_row(300, prov_kb=4 * gib - 100)]  # jitter: no change
    rows += [bb_row(600, prov_kb=8 * gib), bb_row(900, prov_kb=8 * gib)]
    rows += [bb_row(1200, prov_kb=4 * gib)]
    trace, report = read_bitbrains(write_bb(tmp_path / "mem.csv", rows), OPTS)
    assert (report.mem_prov_changes, report.vcpus_changes, report.resized) == (2, 0, "mem")
    assert report.mem_prov_range == (4096.0 - 100 / 1024, 8192.0)
    assert trace.mem_provisioned_mib == 4096.0  # the median
    assert report.to_dict()["mem_prov_changes"] == 2

    rows = [bb_row(0), bb_row(300, cores=4, cap_mhz=10400.0), bb_row(600)]
    _, report = read_bitbrains(write_bb(tmp_path / "cpu.csv", rows), OPTS)
    assert (report.mem_prov_changes, report.vcpus_changes, report.resized) == (0, 2, "cpu")
    _, report = read_bitbrains(write_bb(tmp_path / "fixed.csv", good_rows(4)), OPTS)
    assert report.resized == "" and report.vcpus_range == (2.0, 2.0)


def test_summarize_flags_resized_vms(tmp_path: Path) -> None:
    d = tmp_path / "traces"
    d.mkdir()
    write_bb(d / "1.csv", good_rows(4))
    write_bb(d / "2.csv", [bb_row(300 * i, prov_kb=(2 + i) * 1024 * 1024) for i in range(4)])
    text = summarize(d, options=OPTS)
    lines = text.splitlines()
    col = lines[0].split().index("resized")
    assert lines[1].split()[col] == "-" and lines[2].split()[col] == "mem"
    assert "warning: 1 VM(s) change provisioned size" in text
    assert "resized 2.csv: memory 2048-5120 MiB (3 change(s))" in text


# --- TraceBank files ----------------------------------------------------------------------------


def not_banks(d: Path) -> dict[str, str]:
    """Files that are not TraceBank .npz files, and what the error says about each."""
    d.mkdir(exist_ok=True)
    (d / "text.npz").write_text("hello\n")
    np.savez(d / "other.npz", a=np.arange(3))
    np.save(d / "array.npy", np.arange(3))
    (d / "pickle.pkl").write_bytes(pickle.dumps({"a": 1}))
    np.savez(d / "objects.npz", a=np.array([{"a": 1}], dtype=object))
    (d / "empty.npz").write_bytes(b"")
    bank = TraceBank.from_traces([small_trace()])
    bank.save(d / "good.npz")
    (d / "truncated.npz").write_bytes((d / "good.npz").read_bytes()[:100])
    with np.load(d / "good.npz") as good:
        arrays = dict(good)
    np.savez(d / "objarr.npz", **{**arrays, "names": np.array([object()], dtype=object)})
    np.savez(d / "nan.npz", **{**arrays, "mem_used_mib": np.full((1, 3), np.nan, np.float32)})
    np.savez(d / "v9.npz", **{**arrays, "format_version": np.array(9)})
    return {
        "text.npz": "not an .npz archive",
        "other.npz": "no format_version, names, mem_used_mib array",
        "array.npy": "a single .npy array",
        "pickle.pkl": "not an .npz archive",
        "objects.npz": "no format_version",
        "empty.npz": "not an .npz archive",
        "truncated.npz": "not an .npz archive|invalid arrays",
        "objarr.npz": "invalid arrays: pickled object arrays",
        "nan.npz": "invalid arrays: mem_used_mib must be finite",
        "v9.npz": "unsupported TraceBank format version 9",
    }


def test_trace_bank_load_rejects_other_files_without_pickle_advice(tmp_path: Path) -> None:
    for name, reason in not_banks(tmp_path).items():
        with pytest.raises(TraceError, match=rf"{re.escape(name)} is not a TraceBank") as info:
            TraceBank.load(tmp_path / name)
        assert re.search(reason, str(info.value)), (name, str(info.value))
        assert "allow_pickle" not in str(info.value) and "pickle.load" not in str(info.value)
    with pytest.raises(TraceError, match=r"missing\.npz: file not found"):
        TraceBank.load(tmp_path / "missing.npz")


def test_trace_bank_validates_values_and_grid_length() -> None:
    trace = small_trace()
    fields = {
        "names": ["a"],
        "mem_used_mib": [[1.0, 2.0]],
        "cpu_used_vcpus": [[0.0, 0.0]],
        "lengths": [2],
        "mem_provisioned_mib": [1024.0],
        "vcpus": [1],
        "heldout_mask": [False],
    }
    TraceBank(**fields)  # type: ignore[arg-type]
    for key, value in (
        ("mem_used_mib", [[np.inf, 0.0]]),
        ("cpu_used_vcpus", [[-1.0, 0.0]]),
        ("mem_provisioned_mib", [0.0]),
        ("vcpus", [0]),
    ):
        with pytest.raises(ValueError, match=key):
            TraceBank(**{**fields, key: value})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="VM names must be unique; repeated: a"):
        TraceBank.from_traces([trace, trace])
    long = VMTrace("long", [0.0, 1e10], [1.0, 1.0], [0.0, 0.0], 1024.0, 1)
    with pytest.raises(ValueError, match=r"'long' lasts .* pass max_len"):
        TraceBank.from_traces([long])
    assert TraceBank.from_traces([long], max_len=10).max_len == 10


def test_split_counts() -> None:
    names = [str(i) for i in range(1, 30)]
    bank = TraceBank.from_traces([small_trace(n) for n in names])
    held = int(heldout_mask(names).sum())
    assert bank.split_counts() == {"train": 29 - held, "heldout": held, "all": 29}
    assert bank.train().split_counts()["heldout"] == 0


# --- CLI: bad input exits 2 with one error line ----------------------------------------------


def test_cli_bad_input_exits_2_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad"
    bad_files(bad)
    (tmp_path / "empty").mkdir()
    nontrace = tmp_path / "nontrace"
    nontrace.mkdir()
    (nontrace / "a.txt").write_text("x\n")
    dup = tmp_path / "dup"
    dup.mkdir()
    write_bb(dup / "5.csv", good_rows(4))
    write_bb(dup / "5.csv.gz", good_rows(4))
    cases = {
        str(tmp_path / "empty"): "no .csv or .csv.gz trace files found",
        str(nontrace): "no .csv or .csv.gz trace files found",
        str(bad): "no usable trace among 5 file(s)",
        str(bad / "fake.csv.gz"): "not a valid gzip file",
        str(bad / "header.csv"): "no valid rows left",
        str(dup): "both give VM name '5'",
        str(tmp_path / "missing"): "trace path not found",
    }
    for path, message in cases.items():
        with pytest.raises(SystemExit) as info:
            cli_main(["summarize", path, "--min-rows", "3"])
        out, err = capsys.readouterr()
        assert info.value.code == 2 and out == "", path
        error = err.strip().splitlines()[-1]
        assert error.startswith("python -m balloon_gym.traces summarize: error: argument path: ")
        assert message in error, (path, error)
    with pytest.raises(SystemExit) as info:
        cli_main(["summarize", str(dup), "--min-rows", "1"])
    assert info.value.code == 2
    assert "argument --min-rows: must be >= 2" in capsys.readouterr().err


# --- real data (skipped when the shared traces are absent) --------------------------------------

REAL_DIRS = [
    Path("/work/shared/traces/bitbrains-rnd-2013-7"),
    REPO.parent / "shared" / "traces" / "bitbrains-rnd-2013-7",
]
REAL = next((d for d in REAL_DIRS if d.is_dir()), None)


@pytest.mark.skipif(REAL is None, reason="shared Bitbrains traces not available")
def test_real_bitbrains_files() -> None:
    assert REAL is not None
    trace, report = read_bitbrains(REAL / "1.csv.gz")
    assert trace.vcpus == 2 and trace.mem_provisioned_mib == 8192.0
    assert report.rows_read > 8000 and report.dropped["gap_segment"] > 0
    assert trace.duration_s > 10 * 86400 and np.diff(trace.time_s).max() <= 900.0
    assert np.all(trace.mem_used_mib <= trace.mem_provisioned_mib)
    trace, report = read_bitbrains(REAL / "14.csv.gz")
    assert report.dropped["invalid_provisioned"] > 0 and trace.num_rows > 288
    with pytest.raises(TraceError, match=r"54\.csv\.gz: .*invalid_provisioned"):
        read_bitbrains(REAL / "54.csv.gz")
