"""Resampling, the train/held-out split and :class:`TraceBank`, the batched trace store."""

from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO, Any

import numpy as np

from ._model import TraceError, VMTrace

#: Fraction of VMs held out for evaluation.
HELDOUT_FRACTION = 0.2
#: Salt of the split hash; changing it changes the split, so never do.
SPLIT_SALT = "balloon-gym-split-v1"
#: File name of the packaged sample inside ``balloon_gym/data``.
SAMPLE_FILE = "bitbrains_sample.npz"
_FORMAT_VERSION = 1
_FLOAT16_MAX = float(np.finfo(np.float16).max)
#: Arrays of a TraceBank ``.npz`` file (:meth:`TraceBank.save`).
_NPZ_KEYS: tuple[str, ...] = (
    "format_version",
    "names",
    "mem_used_mib",
    "cpu_used_vcpus",
    "lengths",
    "mem_provisioned_mib",
    "vcpus",
    "heldout_mask",
    "sample_period_s",
    "metadata_json",
)
#: Most grid samples of one VM in :meth:`TraceBank.from_traces` (about 160 years at 300 s).
MAX_GRID_LEN = 2**24
#: The splits of a bank: ``train``, ``heldout`` and ``all`` (both).
SPLITS: tuple[str, ...] = ("train", "heldout", "all")


def is_heldout(name: str, fraction: float = HELDOUT_FRACTION) -> bool:
    """Whether a VM is held out: a deterministic hash of its name.

    The first 8 bytes of ``sha256(SPLIT_SALT + ":" + name)``, read as a fraction of 2**64, are
    compared with ``fraction``. The split depends only on the name, so it is the same in every
    bank, subset and machine, and adding VMs never moves an existing VM between splits.
    """
    digest = hashlib.sha256(f"{SPLIT_SALT}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < fraction


def heldout_mask(names: Sequence[str], fraction: float = HELDOUT_FRACTION) -> np.ndarray:
    """Boolean mask, True for held-out VMs (see :func:`is_heldout`)."""
    return np.array([is_heldout(str(n), fraction) for n in names], dtype=bool)


def resample(
    trace: VMTrace, dt_s: float, num_steps: int, offset_s: float = 0.0
) -> dict[str, np.ndarray]:
    """Sample a trace at ``offset_s + k * dt_s`` for ``k = 0 .. num_steps - 1``.

    Values are linearly interpolated. The trace wraps around: it is treated as periodic with
    period ``duration_s + sample_period_s``, the last sample being followed, one sample period
    later, by the first one again (interpolating linearly between them).

    Args:
        trace: The trace.
        dt_s: Step in seconds (> 0).
        num_steps: Number of samples (>= 0).
        offset_s: Time of the first sample in seconds (any real; wrapped).

    Returns:
        ``time_s`` (the unwrapped query times, float64), ``mem_used_mib`` (MiB, float32) and
        ``cpu_used_vcpus`` (vCPUs, float32), each of shape ``(num_steps,)``.
    """
    if dt_s <= 0 or num_steps < 0:
        raise ValueError("need dt_s > 0 and num_steps >= 0")
    period = trace.duration_s + trace.sample_period_s
    query = offset_s + dt_s * np.arange(num_steps, dtype=np.float64)
    wrapped = np.mod(query, period)
    xp = np.append(trace.time_s, period)
    out = {"time_s": query}
    for key in ("mem_used_mib", "cpu_used_vcpus"):
        values = getattr(trace, key)
        fp = np.append(values, values[0]).astype(np.float64)
        out[key] = np.interp(wrapped, xp, fp).astype(np.float32)
    return out


def _floor_float16(x: np.ndarray) -> np.ndarray:
    """Cast to float16 rounding toward zero (so that ``x16 <= x`` for ``x >= 0``)."""
    if x.size and float(np.max(x)) > _FLOAT16_MAX:
        raise ValueError("value too large for float16 storage; save with float16=False")
    x16 = x.astype(np.float16)
    over = x16.astype(np.float64) > x
    x16[over] = np.nextafter(x16[over], np.float16(0))
    return x16


def _readonly(x: np.ndarray) -> np.ndarray:
    x.setflags(write=False)
    return x


@dataclass(frozen=True, eq=False)
class TraceBank:
    """Many VM traces on a common regular time grid, stacked for vectorised indexing.

    Row ``i`` holds VM ``names[i]``; ``mem_used_mib[i, :lengths[i]]`` are its samples at
    ``t = k * sample_period_s``; entries beyond ``lengths[i]`` are padding (0.0). Wrap time
    indices per VM with :meth:`wrap` (or ``t_idx % lengths[vm_idx]``) before indexing, e.g.
    ``bank.mem_used_mib[vm_idx, bank.wrap(vm_idx, t_idx)]``. Arrays are read-only.

    Attributes:
        names: VM names, fixed-width unicode, shape ``(num_vms,)``.
        mem_used_mib: Memory used in MiB, float32, shape ``(num_vms, max_len)``.
        cpu_used_vcpus: CPU used in vCPUs, float32, shape ``(num_vms, max_len)``.
        lengths: Valid samples per VM, int64, ``1 <= lengths <= max_len``.
        mem_provisioned_mib: Provisioned memory in MiB, float64, shape ``(num_vms,)``.
        vcpus: Provisioned vCPUs, int64, shape ``(num_vms,)``.
        heldout_mask: True for evaluation-only VMs (never train on them), shape ``(num_vms,)``.
        sample_period_s: Grid step in seconds.
        metadata: JSON-serialisable provenance (source, citation, cleaning summary...).
    """

    names: np.ndarray
    mem_used_mib: np.ndarray
    cpu_used_vcpus: np.ndarray
    lengths: np.ndarray
    mem_provisioned_mib: np.ndarray
    vcpus: np.ndarray
    heldout_mask: np.ndarray
    sample_period_s: float = 300.0
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = np.asarray(self.names).astype(str)
        mem = np.array(self.mem_used_mib, dtype=np.float32, ndmin=2)
        cpu = np.array(self.cpu_used_vcpus, dtype=np.float32, ndmin=2)
        lengths = np.array(self.lengths, dtype=np.int64)
        n = names.size
        if names.size == 0:
            mem = cpu = np.zeros((0, 0), dtype=np.float32)
        per_vm = {
            "lengths": lengths,
            "mem_provisioned_mib": np.array(self.mem_provisioned_mib, dtype=np.float64),
            "vcpus": np.array(self.vcpus, dtype=np.int64),
            "heldout_mask": np.array(self.heldout_mask, dtype=bool),
        }
        if names.ndim != 1:
            raise ValueError("names must be a 1-D array of strings")
        if len(set(names.tolist())) != n:
            dups = sorted(k for k, c in Counter(names.tolist()).items() if c > 1)
            raise ValueError(f"VM names must be unique; repeated: {', '.join(dups[:5])}")
        if mem.shape != cpu.shape or mem.shape[0] != n:
            raise ValueError("mem_used_mib and cpu_used_vcpus must have shape (num_vms, max_len)")
        if any(v.shape != (n,) for v in per_vm.values()):
            raise ValueError("lengths, mem_provisioned_mib, vcpus, heldout_mask need (num_vms,)")
        if n and (lengths.min() < 1 or lengths.max() > mem.shape[1]):
            raise ValueError("lengths must lie in [1, max_len]")
        if not 0 < self.sample_period_s < np.inf:
            raise ValueError("sample_period_s must be positive and finite")
        for key, arr in (("mem_used_mib", mem), ("cpu_used_vcpus", cpu)):
            if not np.all(np.isfinite(arr) & (arr >= 0)):
                raise ValueError(f"{key} must be finite and >= 0")
        prov, cores = per_vm["mem_provisioned_mib"], per_vm["vcpus"]
        if not np.all(np.isfinite(prov) & (prov > 0)) or not np.all(cores >= 1):
            raise ValueError("mem_provisioned_mib must be finite and > 0, vcpus >= 1")
        object.__setattr__(self, "names", _readonly(names))
        object.__setattr__(self, "mem_used_mib", _readonly(mem))
        object.__setattr__(self, "cpu_used_vcpus", _readonly(cpu))
        for key, value in per_vm.items():
            object.__setattr__(self, key, _readonly(value))
        object.__setattr__(self, "sample_period_s", float(self.sample_period_s))

    @property
    def num_vms(self) -> int:
        """Number of VMs."""
        return int(self.names.size)

    @property
    def max_len(self) -> int:
        """Padded length of the time axis."""
        return int(self.mem_used_mib.shape[1])

    @property
    def split(self) -> np.ndarray:
        """``"train"`` or ``"heldout"`` per VM."""
        return np.where(self.heldout_mask, "heldout", "train")

    def split_counts(self) -> dict[str, int]:
        """Number of VMs of each split: ``{"train": ..., "heldout": ..., "all": ...}``.

        A split can be empty: a small directory may hash all its VMs into one split.
        """
        held = int(self.heldout_mask.sum())
        return {"train": self.num_vms - held, "heldout": held, "all": self.num_vms}

    def wrap(self, vm_idx: np.ndarray | int, t_idx: np.ndarray | int) -> np.ndarray:
        """Time indices wrapped into each VM's valid range: ``t_idx % lengths[vm_idx]``."""
        return np.mod(t_idx, self.lengths[vm_idx])

    def at(
        self, vm_idx: np.ndarray | int, t_idx: np.ndarray | int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Memory used (MiB) and CPU used (vCPUs) of VMs at (wrapped) time indices."""
        t = self.wrap(vm_idx, t_idx)
        return self.mem_used_mib[vm_idx, t], self.cpu_used_vcpus[vm_idx, t]

    def to_trace(self, i: int) -> VMTrace:
        """VM ``i`` as a :class:`VMTrace` on the bank's grid."""
        n = int(self.lengths[i])
        return VMTrace(
            name=str(self.names[i]),
            time_s=np.arange(n, dtype=np.float64) * self.sample_period_s,
            mem_used_mib=self.mem_used_mib[i, :n],
            cpu_used_vcpus=self.cpu_used_vcpus[i, :n],
            mem_provisioned_mib=float(self.mem_provisioned_mib[i]),
            vcpus=int(self.vcpus[i]),
        )

    @classmethod
    def from_traces(
        cls,
        traces: Sequence[VMTrace],
        sample_period_s: float = 300.0,
        max_len: int | None = None,
        heldout_fraction: float = HELDOUT_FRACTION,
        metadata: dict[str, Any] | None = None,
    ) -> TraceBank:
        """Stack traces, each linearly resampled onto its own grid ``k * sample_period_s``.

        Args:
            traces: Cleaned traces with unique names.
            sample_period_s: Grid step in seconds.
            max_len: Keep at most this many samples per VM (the first ones).
            heldout_fraction: Fraction of VMs held out (see :func:`is_heldout`).
            metadata: Provenance stored with the bank.

        Returns:
            The bank, VMs in the order given.

        Raises:
            ValueError: A trace would need more than :data:`MAX_GRID_LEN` grid samples (pass
                ``max_len`` or a longer ``sample_period_s``), or two traces share a name.
        """
        grids = []
        for trace in traces:
            n = int(np.floor(trace.duration_s / sample_period_s + 1e-9)) + 1
            if max_len is not None:
                n = min(n, max_len)
            if n > MAX_GRID_LEN:
                raise ValueError(
                    f"trace {trace.name!r} lasts {trace.duration_s:.3g} s: {n} samples of "
                    f"{sample_period_s:g} s, more than {MAX_GRID_LEN}; pass max_len or a longer "
                    "sample_period_s"
                )
            grids.append(np.arange(n, dtype=np.float64) * sample_period_s)
        lengths = np.array([g.size for g in grids], dtype=np.int64)
        width = int(lengths.max()) if lengths.size else 0
        mem = np.zeros((len(traces), width), dtype=np.float32)
        cpu = np.zeros_like(mem)
        for i, (trace, grid) in enumerate(zip(traces, grids, strict=True)):
            mem[i, : grid.size] = np.interp(grid, trace.time_s, trace.mem_used_mib)
            cpu[i, : grid.size] = np.interp(grid, trace.time_s, trace.cpu_used_vcpus)
        names = [t.name for t in traces]
        return cls(
            names=np.array(names, dtype=str),
            mem_used_mib=mem,
            cpu_used_vcpus=cpu,
            lengths=lengths,
            mem_provisioned_mib=np.array([t.mem_provisioned_mib for t in traces]),
            vcpus=np.array([t.vcpus for t in traces]),
            heldout_mask=heldout_mask(names, heldout_fraction),
            sample_period_s=sample_period_s,
            metadata=dict(metadata or {}),
        )

    def subset(self, mask_or_indices: np.ndarray | Sequence[int] | Sequence[bool]) -> TraceBank:
        """A bank with the selected VMs (boolean mask of length ``num_vms`` or indices)."""
        sel = np.asarray(mask_or_indices)
        if sel.dtype == bool:
            if sel.shape != (self.num_vms,):
                raise ValueError(f"boolean mask must have shape ({self.num_vms},)")
            sel = np.flatnonzero(sel)
        idx = sel.astype(np.int64).reshape(-1)
        lengths = self.lengths[idx]
        width = int(lengths.max()) if idx.size else 0
        return TraceBank(
            names=self.names[idx],
            mem_used_mib=self.mem_used_mib[idx, :width],
            cpu_used_vcpus=self.cpu_used_vcpus[idx, :width],
            lengths=lengths,
            mem_provisioned_mib=self.mem_provisioned_mib[idx],
            vcpus=self.vcpus[idx],
            heldout_mask=self.heldout_mask[idx],
            sample_period_s=self.sample_period_s,
            metadata=dict(self.metadata),
        )

    def train(self) -> TraceBank:
        """The training VMs only."""
        return self.subset(~self.heldout_mask)

    def heldout(self) -> TraceBank:
        """The held-out (evaluation-only) VMs."""
        return self.subset(self.heldout_mask)

    def save(self, path: str | Path, float16: bool = False) -> None:
        """Write a compressed ``.npz`` loadable with ``allow_pickle=False``.

        Args:
            path: Output file.
            float16: Store usage as float16 (rounded toward zero, so used <= provisioned still
                holds; relative precision 2**-11; values must stay below 65504 MiB).
        """
        store = _floor_float16 if float16 else (lambda x: x)
        np.savez_compressed(
            path,
            format_version=np.array(_FORMAT_VERSION),
            names=np.array(self.names.tolist(), dtype=str),
            mem_used_mib=store(self.mem_used_mib),
            cpu_used_vcpus=store(self.cpu_used_vcpus),
            lengths=self.lengths.astype(np.int32),
            mem_provisioned_mib=self.mem_provisioned_mib,
            vcpus=self.vcpus.astype(np.int32),
            heldout_mask=self.heldout_mask,
            sample_period_s=np.array(self.sample_period_s),
            metadata_json=np.array(json.dumps(self.metadata, sort_keys=True)),
        )

    @classmethod
    def load(cls, source: str | Path | IO[bytes]) -> TraceBank:
        """Read a bank written by :meth:`save` (with ``allow_pickle=False``).

        Raises:
            TraceError: The file is missing, or is not a TraceBank ``.npz`` (another ``.npz``,
                an ``.npy``, a pickle, a text file, a corrupt archive or invalid arrays); the
                message names the file and the reason.
        """
        label = getattr(source, "name", source)
        try:
            data = np.load(source, allow_pickle=False)
        except FileNotFoundError:
            raise TraceError(f"{label}: file not found") from None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            # never relay numpy's advice to load with allow_pickle=True: a bank has no pickles
            detail = "" if "pickle" in str(err) else f": {err}"
            raise _not_a_bank(label, f"not an .npz archive{detail}") from None
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise _not_a_bank(label, "a single .npy array, not an .npz archive")
        with data:
            missing = [key for key in _NPZ_KEYS if key not in data.files]
            if missing:
                raise _not_a_bank(label, f"no {', '.join(missing[:3])} array")
            try:
                arrays = {key: data[key] for key in _NPZ_KEYS}
                version = int(arrays["format_version"])
                if version != _FORMAT_VERSION:
                    raise _not_a_bank(label, f"unsupported TraceBank format version {version}")
                return cls(
                    names=arrays["names"],
                    mem_used_mib=arrays["mem_used_mib"],
                    cpu_used_vcpus=arrays["cpu_used_vcpus"],
                    lengths=arrays["lengths"],
                    mem_provisioned_mib=arrays["mem_provisioned_mib"],
                    vcpus=arrays["vcpus"],
                    heldout_mask=arrays["heldout_mask"],
                    sample_period_s=float(arrays["sample_period_s"]),
                    metadata=json.loads(str(arrays["metadata_json"])),
                )
            except TraceError:
                raise
            except (
                ValueError,
                TypeError,
                OSError,
                EOFError,
                zipfile.BadZipFile,
                zlib.error,
            ) as err:
                why = "pickled object arrays" if "pickle" in str(err) else str(err)
                raise _not_a_bank(label, f"invalid arrays: {why}") from None


def _not_a_bank(source: object, why: str) -> TraceError:
    err = TraceError(f"{source} is not a TraceBank .npz ({why}); write one with TraceBank.save")
    err.reason = why  # type: ignore[attr-defined]  # the bare reason, for callers' own wording
    return err


def load_sample_bank() -> TraceBank:
    """Load the packaged Bitbrains sample (``balloon_gym/data/bitbrains_sample.npz``).

    See ``bank.metadata`` for its source, citation, build command and cleaning summary.
    """
    resource = resources.files("balloon_gym").joinpath("data").joinpath(SAMPLE_FILE)
    with resource.open("rb") as fh:
        return TraceBank.load(fh)
