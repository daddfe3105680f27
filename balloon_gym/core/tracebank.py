"""The trace bank as the simulator uses it: usage fractions on one grid, VM pools by split.

A :class:`~balloon_gym.traces.TraceBank` holds cleaned per-VM traces in MiB and vCPUs. The core
replays them as fractions of each VM's provisioned size (memory used / provisioned memory, CPU
used / provisioned vCPUs), so that a trace drives a guest of any configured size. VMs are
ordered train first, then held-out, so that each split is one contiguous index range.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

from balloon_gym.config import ConfigError


class Bank(NamedTuple):
    """Trace data ready for vectorised lookup."""

    mem_frac: np.ndarray  # (num_vms, max_len) memory used / provisioned, padded with 0
    cpu_frac: np.ndarray  # (num_vms, max_len) CPU used / provisioned vCPUs
    length: np.ndarray  # (num_vms,) int, valid samples of each VM
    sample_period_s: float
    pools: dict[str, tuple[int, int]]  # split -> [lo, hi) VM index range
    names: tuple[str, ...]


@cache
def load_bank(source: str) -> Bank:
    """The bank of a ``trace_source``: ``"sample"``, a ``.npz`` TraceBank, or a trace directory.

    Raises:
        ConfigError: If the source cannot be read or a split it needs is empty.
    """
    from balloon_gym import traces  # the readers are only needed when a scenario replays

    try:
        if source == "sample":
            tb = traces.load_sample_bank()
        elif Path(source).is_dir():
            tb = traces.TraceBank.from_traces(traces.load_trace_dir(source)[0])
        else:
            tb = traces.TraceBank.load(source)
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"workload.trace_source {source!r} cannot be read: {err}; use 'sample', a TraceBank "
            ".npz file or a directory of trace files"
        ) from None
    train, heldout = tb.train(), tb.heldout()
    mem = np.concatenate([train.mem_used_mib, heldout.mem_used_mib]).astype(np.float64)
    cpu = np.concatenate([train.cpu_used_vcpus, heldout.cpu_used_vcpus]).astype(np.float64)
    prov = np.concatenate([train.mem_provisioned_mib, heldout.mem_provisioned_mib])
    vcpus = np.concatenate([train.vcpus, heldout.vcpus]).astype(np.float64)
    n_train = train.num_vms
    return Bank(
        mem_frac=np.clip(mem / prov[:, None], 0.0, 1.0),
        cpu_frac=np.clip(cpu / vcpus[:, None], 0.0, 1.0),
        length=np.concatenate([train.lengths, heldout.lengths]).astype(np.int64),
        sample_period_s=float(tb.sample_period_s),
        pools={"train": (0, n_train), "heldout": (n_train, tb.num_vms), "all": (0, tb.num_vms)},
        names=tuple(train.names) + tuple(heldout.names),
    )
