"""Readers for Bitbrains GWA-T-12 files, plain CSV traces and directories of them."""

from __future__ import annotations

import gzip
import re
import zlib
from pathlib import Path
from typing import IO

import numpy as np

from ._model import CleaningReport, TraceError, VMTrace
from .cleaning import (
    MAX_MIB,
    MAX_VCPUS,
    CleaningOptions,
    Columns,
    drop_out_of_range,
    finish_trace,
    reject,
    validate_rows,
)

#: Bitbrains header prefix (lower case) for each column we use.
_BITBRAINS_COLUMNS: dict[str, str] = {
    "time": "timestamp",
    "cores": "cpu cores",
    "capacity_mhz": "cpu capacity provisioned",
    "usage_mhz": "cpu usage [mhz]",
    "mem_prov_kb": "memory capacity provisioned",
    "mem_used_kb": "memory usage",
}
CSV_REQUIRED: tuple[str, ...] = ("time_s", "mem_used_mib", "cpu_used_vcpus")
CSV_OPTIONAL: tuple[str, ...] = ("mem_provisioned_mib", "vcpus")
FORMATS: tuple[str, ...] = ("auto", "bitbrains", "csv")


def trace_name(path: str | Path) -> str:
    """VM name of a trace file: its name without ``.gz`` and ``.csv`` (``17.csv.gz`` -> ``17``)."""
    name = Path(path).name
    for suffix in (".gz", ".csv"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def _open_text(path: Path) -> IO[str]:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return path.open(encoding="utf-8", errors="replace")


def _unreadable(path: Path, err: Exception) -> str:
    """Why a file cannot be read, for a :class:`TraceError`."""
    if path.name.lower().endswith(".gz") and not isinstance(err, PermissionError):
        return f"not a valid gzip file ({err}); gzip it again or drop the .gz suffix"
    return f"cannot be read ({getattr(err, 'strerror', None) or err})"


def _read_lines(path: Path, report: CleaningReport | None = None) -> list[str]:
    """Non-blank lines of a text file, gunzipped if the name ends in ``.gz``.

    Raises:
        TraceError: The file cannot be read or is not valid gzip (the message names it).
    """
    try:
        with _open_text(path) as fh:
            return [line for line in fh.read().splitlines() if line.strip()]
    except (OSError, EOFError, zlib.error) as err:
        reason = _unreadable(path, err)
        raise reject(report, reason) if report else TraceError(f"{path}: {reason}") from None


def _to_float(cells: np.ndarray) -> np.ndarray:
    """Convert a string array to float64; cells that are not numbers become NaN."""
    try:
        return cells.astype(np.float64)
    except ValueError:
        out = np.empty(cells.shape, dtype=np.float64)
        for idx, cell in np.ndenumerate(cells):
            try:
                out[idx] = float(cell)
            except ValueError:
                out[idx] = np.nan
        return out


def _parse_table(lines: list[str], delimiter: str, width: int, columns: list[int]) -> np.ndarray:
    """Pick ``columns`` of each line as float64 (rows x columns).

    Cells that are not numbers, and whole lines with the wrong number of fields, become NaN.
    """
    if not lines:
        return np.empty((0, len(columns)))
    try:  # fast path for clean files
        table = np.loadtxt(lines, delimiter=delimiter, usecols=columns, ndmin=2, comments=None)
        if all(line.count(delimiter) == width - 1 for line in lines):
            return table
    except ValueError:
        pass
    missing = ["nan"] * len(columns)
    rows = (line.split(delimiter) for line in lines)
    cells = [[f[j] for j in columns] if len(f) == width else missing for f in rows]
    return _to_float(np.array(cells, dtype=str))


def detect_format(path: str | Path) -> str:
    """Guess the format of a trace file from its header line.

    Returns:
        ``"bitbrains"`` (semicolon-separated, ``Timestamp`` column) or ``"csv"`` (``time_s``).

    Raises:
        TraceError: Unknown or empty file (message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise TraceError(f"{path}: {'not a file' if path.exists() else 'file not found'}")
    try:
        with _open_text(path) as fh:
            head = next((line for line in fh if line.strip()), "").strip().lower()
    except (OSError, EOFError, zlib.error) as err:
        raise TraceError(f"{path}: {_unreadable(path, err)}") from None
    if not head:
        raise TraceError(f"{path}: empty file; a trace file starts with a header row")
    if ";" in head and head.startswith("timestamp"):
        return "bitbrains"
    if "time_s" in [c.strip() for c in head.split(",")]:
        return "csv"
    raise TraceError(
        f"{path}: unrecognised trace format (header {head[:60]!r}); expected a Bitbrains "
        "header starting with 'Timestamp' or a CSV header naming time_s"
    )


def read_bitbrains(
    path: str | Path, options: CleaningOptions | None = None, name: str | None = None
) -> tuple[VMTrace, CleaningReport]:
    """Read and clean one Bitbrains GWA-T-12 file (``.csv`` or ``.csv.gz``).

    Memory KB (KiB) are divided by 1024 to give MiB. CPU used in vCPUs is
    ``usage_MHz / (capacity_MHz / cores)``: the usage in units of one core's capacity. It equals
    ``cores * usage% / 100`` in this data set but uses the unrounded MHz columns. Timestamps are
    seconds (despite the ``[ms]`` label); values above 1e11 are taken as milliseconds.

    Args:
        path: The file.
        options: Cleaning parameters (defaults: :class:`CleaningOptions`).
        name: VM name; defaults to :func:`trace_name` of the path.

    Returns:
        The cleaned trace and its cleaning report.

    Raises:
        TraceError: The file is missing, not in this format or unusable after cleaning.
    """
    path = Path(path)
    options = options or CleaningOptions()
    report = CleaningReport(source=str(path), fmt="bitbrains")
    if not path.is_file():
        raise reject(report, "file not found")
    lines = _read_lines(path, report)
    header = [h.strip().lower() for h in lines[0].split(";")] if lines else []
    index = {}
    for key, prefix in _BITBRAINS_COLUMNS.items():
        matches = [i for i, h in enumerate(header) if h.startswith(prefix)]
        if not matches:
            raise reject(report, f"not a GWA-T-12 (Bitbrains) file: no {prefix!r} column")
        index[key] = matches[0]
    report.rows_read = len(lines) - 1
    raw = _parse_table(lines[1:], ";", len(header), list(index.values()))
    table = dict(zip(index, raw.T, strict=True))
    time = table["time"]
    finite = time[np.isfinite(time)]
    if finite.size and np.median(finite) > 1e11:
        time = time / 1000.0
    cols: Columns = {
        "time_s": time,
        "cpu_used_mhz": table["usage_mhz"],
        "cpu_capacity_mhz": table["capacity_mhz"],
        "vcpus": table["cores"],
        "mem_provisioned_mib": table["mem_prov_kb"] / 1024.0,
        "mem_used_mib": table["mem_used_kb"] / 1024.0,
    }
    cols = validate_rows(cols, report)
    with np.errstate(over="ignore"):  # a tiny capacity gives inf: dropped as out_of_range
        cpu = cols.pop("cpu_used_mhz") * cols["vcpus"] / cols.pop("cpu_capacity_mhz")
    cols["cpu_used_vcpus"] = cpu
    cols, n = drop_out_of_range(cols)
    report.dropped["out_of_range"] += n
    trace = finish_trace(cols, report, options, name or trace_name(path))
    return trace, report


def read_csv_trace(
    path: str | Path,
    mem_provisioned_mib: float | None = None,
    vcpus: int | None = None,
    options: CleaningOptions | None = None,
    name: str | None = None,
) -> tuple[VMTrace, CleaningReport]:
    """Read and clean one trace in the plain CSV format of balloon-gym.

    Format: comma-separated, a header row naming at least ``time_s`` (seconds, any origin),
    ``mem_used_mib`` (MiB) and ``cpu_used_vcpus`` (vCPUs), optionally ``mem_provisioned_mib``
    (MiB) and ``vcpus``; other columns are ignored, lines starting with ``#`` are comments.

    Provisioned capacity, in order of precedence: the arguments, the median of the optional
    columns over kept rows, else inferred from usage (:func:`~.cleaning.infer_provisioned`:
    max memory used rounded up to a power-of-two GiB, ceil of max CPU used).

    Args:
        path: The file (``.csv`` or ``.csv.gz``).
        mem_provisioned_mib: Provisioned memory in MiB (overrides the column).
        vcpus: Number of vCPUs (overrides the column).
        options: Cleaning parameters (defaults: :class:`CleaningOptions`).
        name: VM name; defaults to :func:`trace_name` of the path.

    Returns:
        The cleaned trace and its cleaning report.

    Raises:
        TraceError: The file is missing, lacks a required column or is unusable after cleaning.
    """
    path = Path(path)
    options = options or CleaningOptions()
    report = CleaningReport(source=str(path), fmt="csv")
    if not path.is_file():
        raise reject(report, "file not found")
    if mem_provisioned_mib is not None and not 0 < mem_provisioned_mib <= MAX_MIB:
        raise reject(report, f"mem_provisioned_mib must be in (0, {MAX_MIB:.0f}] MiB")
    if vcpus is not None and not 0 < vcpus <= MAX_VCPUS:
        raise reject(report, f"vcpus must be in (0, {MAX_VCPUS:.0f}]")
    lines = [line for line in _read_lines(path, report) if not line.lstrip().startswith("#")]
    header = [h.strip() for h in lines[0].split(",")] if lines else []
    missing = [c for c in CSV_REQUIRED if c not in header]
    if missing:
        raise reject(report, f"CSV header lacks column(s) {', '.join(missing)}")
    wanted = [c for c in CSV_REQUIRED + CSV_OPTIONAL if c in header]
    report.rows_read = len(lines) - 1
    raw = _parse_table(lines[1:], ",", len(header), [header.index(c) for c in wanted])
    cols = validate_rows(dict(zip(wanted, raw.T, strict=True)), report)
    trace = finish_trace(
        cols, report, options, name or trace_name(path), mem_provisioned_mib, vcpus
    )
    return trace, report


def read_trace(
    path: str | Path, fmt: str = "auto", options: CleaningOptions | None = None
) -> tuple[VMTrace, CleaningReport]:
    """Read one trace file in the given format (``"auto"``, ``"bitbrains"`` or ``"csv"``).

    Raises:
        TraceError: As :func:`read_bitbrains` / :func:`read_csv_trace`, or unknown format.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "bitbrains":
        return read_bitbrains(path, options)
    return read_csv_trace(path, options=options)


def _natural_key(path: Path) -> list[object]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.name)]


def trace_files(path: str | Path) -> list[Path]:
    """Trace files of a directory (``*.csv``, ``*.csv.gz``, not hidden) in natural order.

    A file path is returned as a one-element list.

    Raises:
        TraceError: The path does not exist (message names it).
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise TraceError(f"{path}: trace path not found")
    files = [
        p
        for p in path.iterdir()
        if p.is_file()
        and not p.name.startswith(".")
        and p.name.lower().endswith((".csv", ".csv.gz"))
    ]
    return sorted(files, key=_natural_key)


def _check_unique_names(files: list[Path]) -> None:
    """Reject two files that give the same VM name (``1.csv`` and ``1.csv.gz``)."""
    seen: dict[str, Path] = {}
    for file in files:
        name = trace_name(file)
        if name in seen:
            raise TraceError(
                f"{seen[name]} and {file.name} both give VM name {name!r}; "
                "remove or rename one of them"
            )
        seen[name] = file


def load_trace_dir(
    path: str | Path, fmt: str = "auto", options: CleaningOptions | None = None
) -> tuple[list[VMTrace], list[CleaningReport]]:
    """Load every trace file of a directory (or a single file), skipping unusable ones.

    A bad file never stops the load: it gets a rejected :class:`CleaningReport`.

    Args:
        path: Directory holding ``*.csv`` / ``*.csv.gz`` files, or one such file.
        fmt: ``"auto"`` (detect per file from the header), ``"bitbrains"`` or ``"csv"``.
        options: Cleaning parameters (defaults: :class:`CleaningOptions`).

    Returns:
        The usable traces and one report per file (accepted and rejected), both in file order.

    Raises:
        TraceError: The path is missing, holds no trace file, two files give the same VM name
            (e.g. ``1.csv`` and ``1.csv.gz``), or no file is usable.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    files = trace_files(path)
    if not files:
        raise TraceError(
            f"{path}: no .csv or .csv.gz trace files found; give a directory of *.csv / "
            "*.csv.gz trace files or one such file"
        )
    _check_unique_names(files)
    traces: list[VMTrace] = []
    reports: list[CleaningReport] = []
    for file in files:
        try:
            trace, report = read_trace(file, fmt, options)
        except (TraceError, OSError, ValueError, EOFError, zlib.error) as exc:
            report = getattr(exc, "report", None) or CleaningReport(source=str(file))
            if not report.rejected:
                reject(report, str(exc).removeprefix(f"{file}: "))
        else:
            traces.append(trace)
        reports.append(report)
    if not traces and Path(path).is_file():
        raise TraceError(f"{files[0]}: {reports[0].reason}", reports[0])
    if not traces:
        reasons = "; ".join(f"{Path(r.source).name}: {r.reason}" for r in reports[:5])
        more = f"; and {len(reports) - 5} more" if len(reports) > 5 else ""
        raise TraceError(
            f"{path}: no usable trace among {len(files)} file(s) ({reasons}{more}); fix or "
            "replace these files (the cleaning rules are in docs/traces.md)"
        )
    return traces, reports
