"""Real VM usage traces: reading, cleaning, resampling and batching for the simulator.

Guest workloads of balloon-gym can be replayed from per-VM traces of memory used (MiB) and CPU
used (vCPUs). Two file formats are read:

* Bitbrains GWA-T-12 (Grid Workloads Archive, TU Delft; Shen, van Beek, Iosup, CCGrid 2015):
  semicolon-and-tab separated, one row per 300 s (:func:`read_bitbrains`).
* balloon-gym CSV: ``time_s,mem_used_mib,cpu_used_vcpus[,mem_provisioned_mib,vcpus]``
  (:func:`read_csv_trace`).

Cleaning rules (each a function of :mod:`balloon_gym.traces.cleaning`, applied in this order):

1. ``non_numeric``: drop rows with a missing, non-numeric, NaN or infinite value.
2. ``negative``: drop rows with a negative value.
3. ``out_of_range``: drop rows above a column's physical limit (e.g. ``1.7e308`` MiB).
4. ``invalid_provisioned``: drop rows with zero provisioned memory, cores or CPU capacity.
5. ``unordered``: sort rows by time (stable; counted, nothing dropped).
6. ``duplicate_time``: keep the first row (in file order) of each timestamp.
7. ``gap_segment``: a gap > 12 sample periods (1 h at 300 s) splits the trace; keep the
   longest segment. Reject the file (:class:`TraceError`) if < 288 rows are left.
8. Provisioned memory and vCPUs: median over kept rows (or given / inferred for plain CSV);
   changes within the kept rows are counted (``mem_prov_changes``, ``vcpus_changes``).
9. ``mem_clipped`` / ``cpu_clipped``: clip usage above provisioned to provisioned (counted).
10. ``gaps_filled``: fill gaps of 3-12 sample periods by linear interpolation.

Two files giving the same VM name (``1.csv`` and ``1.csv.gz``) are an error.

The train/held-out split is a hash of the VM name (:func:`is_heldout`, about 20 % held out).
Held-out VMs are for evaluation only. :class:`TraceBank` stacks traces on a common 300 s grid
for vectorised indexing. See ``docs/traces.md`` for details.
"""

from ._model import DROP_RULES, CleaningReport, TraceError, VMTrace
from .bank import (
    HELDOUT_FRACTION,
    SAMPLE_FILE,
    TraceBank,
    heldout_mask,
    is_heldout,
    load_sample_bank,
    resample,
)
from .cleaning import CleaningOptions, infer_provisioned
from .cli import summarize
from .readers import (
    detect_format,
    load_trace_dir,
    read_bitbrains,
    read_csv_trace,
    read_trace,
    trace_name,
)

__all__ = [
    "DROP_RULES",
    "HELDOUT_FRACTION",
    "SAMPLE_FILE",
    "CleaningOptions",
    "CleaningReport",
    "TraceBank",
    "TraceError",
    "VMTrace",
    "detect_format",
    "heldout_mask",
    "infer_provisioned",
    "is_heldout",
    "load_sample_bank",
    "load_trace_dir",
    "read_bitbrains",
    "read_csv_trace",
    "read_trace",
    "resample",
    "summarize",
    "trace_name",
]
