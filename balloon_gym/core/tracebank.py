"""The trace bank as the simulator uses it: usage fractions on one grid, VM pools by split.

A :class:`~balloon_gym.traces.TraceBank` holds cleaned per-VM traces in MiB and vCPUs. The core
replays them as fractions of each VM's provisioned size (memory used / provisioned memory, CPU
used / provisioned vCPUs), so that a trace drives a guest of any configured size. VMs are
ordered train first, then held-out, so that each split is one contiguous index range, and all
VMs are padded to the longest one. A split may be empty (a small directory can hash all its
VMs into one split); only using an empty split is an error.

:func:`check_source` validates a ``trace_source`` (and a split) up front, before any work that
should not start on a bad source, such as creating an output directory.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from balloon_gym.config import ConfigError

if TYPE_CHECKING:
    from balloon_gym.traces import TraceBank

#: The splits a trace guest can draw VMs from.
SPLITS: tuple[str, ...] = ("train", "heldout", "all")
_USE = "use 'sample', a .npz written by TraceBank.save, or a directory of trace files"


class Bank(NamedTuple):
    """Trace data ready for vectorised lookup."""

    mem_frac: np.ndarray  # (num_vms, max_len) memory used / provisioned, padded with 0
    cpu_frac: np.ndarray  # (num_vms, max_len) CPU used / provisioned vCPUs
    length: np.ndarray  # (num_vms,) int, valid samples of each VM
    sample_period_s: float
    pools: dict[str, tuple[int, int]]  # split -> [lo, hi) VM index range
    names: tuple[str, ...]

    def split_size(self, split: str) -> int:
        """Number of VMs of ``split`` (``"train"``, ``"heldout"`` or ``"all"``)."""
        lo, hi = self.pools[split]
        return hi - lo

    @property
    def nonempty_splits(self) -> tuple[str, ...]:
        """The splits with at least one VM, in the order of :data:`SPLITS`."""
        return tuple(s for s in SPLITS if self.split_size(s) > 0)


def _read(source: str) -> TraceBank:
    from balloon_gym import traces  # the readers are only needed when a scenario replays

    if source == "sample":
        return traces.load_sample_bank()
    path = Path(source)
    if not path.exists():
        raise ConfigError(
            f"workload.trace_source {source!r} does not exist (a relative path in a scenario "
            f"file is relative to that file's folder); {_USE}"
        )
    if path.is_dir() or path.name.lower().endswith((".csv", ".csv.gz")):
        try:
            return traces.TraceBank.from_traces(traces.load_trace_dir(path)[0])
        except (OSError, ValueError) as err:
            raise ConfigError(f"workload.trace_source {source!r} cannot be used: {err}") from None
    try:
        return traces.TraceBank.load(path)
    except (OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or str(err)
        raise ConfigError(
            f"workload.trace_source {source!r} is not a TraceBank .npz / trace directory "
            f"({reason}); {_USE}"
        ) from None


@cache
def load_bank(source: str) -> Bank:
    """The bank of a ``trace_source``: ``"sample"``, a ``.npz`` TraceBank, or trace files.

    ``source`` is ``"sample"`` (the packaged Bitbrains sample), a ``.npz`` file written by
    :meth:`~balloon_gym.traces.TraceBank.save`, a directory of ``*.csv`` / ``*.csv.gz`` trace
    files, or one such file. Splits may be empty (see :attr:`Bank.nonempty_splits`).

    Raises:
        ConfigError: If the source is missing, cannot be read, is not a trace bank or trace
            directory, or holds no VM.
    """
    tb = _read(source)
    if tb.num_vms == 0:
        raise ConfigError(f"workload.trace_source {source!r} holds no VM; {_USE}")
    order = np.concatenate([np.flatnonzero(~tb.heldout_mask), np.flatnonzero(tb.heldout_mask)])
    tb = tb.subset(order)  # train first, then held-out, padded to the longest VM
    n_train = int(np.count_nonzero(~tb.heldout_mask))
    mem = tb.mem_used_mib.astype(np.float64)
    cpu = tb.cpu_used_vcpus.astype(np.float64)
    return Bank(
        mem_frac=np.clip(mem / tb.mem_provisioned_mib[:, None], 0.0, 1.0),
        cpu_frac=np.clip(cpu / tb.vcpus.astype(np.float64)[:, None], 0.0, 1.0),
        length=tb.lengths.astype(np.int64),
        sample_period_s=float(tb.sample_period_s),
        pools={"train": (0, n_train), "heldout": (n_train, tb.num_vms), "all": (0, tb.num_vms)},
        names=tuple(tb.names.tolist()),
    )


def check_source(source: str | Path, split: str | None = None) -> Bank:
    """Validate a ``trace_source`` and, if given, that ``split`` has VMs; return its bank.

    Call it before any work that should not start on a bad source (e.g. creating an output
    directory). The bank is cached, so building the env afterwards does not read it again.

    Args:
        source: ``"sample"``, a TraceBank ``.npz``, a directory of trace files or one file.
        split: ``"train"``, ``"heldout"``, ``"all"`` or None (only the source is checked).

    Raises:
        ConfigError: The split is unknown or empty, or as :func:`load_bank`.
    """
    if split is not None and split not in SPLITS:
        raise ConfigError(f"trace split {split!r} unknown; use one of {', '.join(SPLITS)}")
    bank = load_bank(str(source))
    if split is not None and bank.split_size(split) == 0:
        sizes = ", ".join(f"{s}: {bank.split_size(s)}" for s in SPLITS)
        raise ConfigError(
            f"trace split {split!r} of trace_source {str(source)!r} has no VM (VMs per split: "
            f"{sizes}); choose a split with VMs or add traces (VMs are split by a hash of "
            "their name)"
        )
    return bank
