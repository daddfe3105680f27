"""The fused backend: ``step`` and ``observe`` as compiled numba kernels (optional, GitHub issue 4).

Same signatures, semantics and outputs as :func:`balloon_gym.core.step.step` and
:func:`balloon_gym.core.observe.observe`, which stay the reference and the default, plus
:func:`step_observe`, both in one kernel call (what the envs use). The numpy core spends most
of a step in the per-call overhead of ~300 array operations and their temporaries; the kernels
loop over hosts and guests in one compiled pass per sub-step instead. Enable it with
``backend="numba"`` on any env (``pip install 'balloon-gym[fast]'``).

- **Same numbers.** The kernels compile the reference's own equations (``core/ops.py``), so
  they repeat its float operations in the same order; only the reductions over a host's guests
  have a loop form of their own. Sums over a host's guests run in guest order where the
  reference sums through BLAS
  (``core/rows.py``), so results agree to float rounding, not always to the last bit (the
  tests hold them to 1e-9 relative over hundreds of steps; ``docs/speed.md``). The float32
  observation agrees to one float32 rounding step; its ``major_faults`` feature is computed
  here with numpy's ``log10``, bit for bit the reference's.
- **Same randomness.** The generator is consumed exactly as the reference consumes it: the
  ``(NUM_UNIFORMS + 1, N, G)`` uniforms, then the ``(N, G)`` standard normals of the sampling
  estimate, drawn here in Python and passed to the kernel. A seed gives the same episode on
  either backend.
- **Pure.** Inputs are only read (the kernels compile against read-only arrays); every output
  array is new, except ``phase_offset``, ``trace_vm`` and ``trace_pos``, which the new state
  shares with the old one exactly as the reference's does.
- **Lazy.** Importing this module does not import numba; the first call does, and raises
  ``ImportError`` with the install command if numba is missing. Kernels are compiled on first
  use and cached on disk (``cache=True``), so only the first run on a machine pays the compile.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType

import numpy as np

from balloon_gym.core import workload
from balloon_gym.core.observe import GUEST_FEATURES, fault_feature, observation_size
from balloon_gym.core.params import Params
from balloon_gym.core.state import State
from balloon_gym.core.step import StepOutput, split_action

MISSING_NUMBA = "the numba backend needs numba: pip install 'balloon-gym[fast]'"

#: State fields the new state shares with the old one (the reference carries them over).
_SHARED = ("phase_offset", "trace_vm", "trace_pos")
#: ``step_kernel``'s profiling counters, off (``benchmarks/fused_profile.py`` passes its own).
_NO_TICKS = np.zeros(0, dtype=np.int64)


class _Kernels:
    """The compiled kernels and what the caller needs to know of their layout."""

    def __init__(self, module: ModuleType) -> None:
        self.step_kernel = module.step_kernel
        self.observe_kernel = module.observe_kernel
        self.action_is_finite = module.action_is_finite
        self.reward_rows = module.REWARD_ROWS[1:]
        self.num_static = len(GUEST_FEATURES) - module.NUM_DYNAMIC
        self.fault_feature = module.FAULT_FEATURE


@functools.cache
def load_kernels() -> _Kernels:
    """The compiled kernels (``balloon_gym.core.fused.kernels``), importing numba on first use.

    Raises:
        ImportError: If numba is not installed (or cannot be imported).
    """
    try:
        importlib.import_module("numba")
    except ImportError as err:
        raise ImportError(MISSING_NUMBA) from err
    return _Kernels(importlib.import_module("balloon_gym.core.fused.kernels"))


@functools.cache
def _layout(kinds: tuple) -> tuple[tuple, tuple]:
    """How a new state is laid out, from each ``State`` field's (dtype, ndim) in ``kinds``: one
    buffer per (dtype, ndim) of the fields a step writes, as (dtype, ndim, rows); and for each
    field in order, its (buffer, row), or (None, name) for a field carried over (``_SHARED``)."""
    groups: dict[tuple, list[str]] = {}
    for name, kind in zip(State._fields, kinds, strict=True):
        if name not in _SHARED:
            groups.setdefault(kind, []).append(name)
    buffers = tuple((dtype, ndim, len(names)) for (dtype, ndim), names in groups.items())
    where = {name: (b, row) for b, names in enumerate(groups.values()) for row, name in
             enumerate(names)}  # fmt: skip
    return buffers, tuple(where.get(name, (None, name)) for name in State._fields)


def _new_state(state: State) -> State:
    """Arrays for the state after a step: rows of a few fresh buffers, one per dtype and ndim of
    the fields of ``state``, and the fields carried over from it (``_SHARED``)."""
    n, g = state.anon_res.shape
    buffers, fields = _layout(tuple((a.dtype, a.ndim) for a in state))
    arrays = [
        np.empty((rows, n, g) if ndim == 2 else (rows, n), dtype) for dtype, ndim, rows in buffers
    ]
    return State(*(getattr(state, row) if b is None else arrays[b][row] for b, row in fields))


def _fault_feature(obs: np.ndarray, state: State, params: Params, k: _Kernels) -> None:
    """Write ``major_faults``, ``log10(1 + fault_pages) / 8`` clipped to [0, 1], into ``obs``.

    The kernels leave this feature out: numpy's SIMD ``log10`` is ~5x faster than the C
    library's that compiled code calls (measured: 7 % of a step at 1024 hosts x 8 guests), and
    it is the reference's own operation, bit for bit. ``log10(1 + x) >= 0`` for the counts
    ``x >= 0``, so only the upper clip can bite; clipping before or after the float32 cast
    gives the same value.
    """
    n, g = params.guest_mask.shape
    nf = len(GUEST_FEATURES)
    value = fault_feature(state.fault_pages)
    value *= params.guest_mask
    np.minimum(value, 1.0, out=value)
    obs[:, : g * nf].reshape(n, g, nf)[:, :, k.fault_feature] = value


def _step(
    state: State, action: np.ndarray, params: Params, rng: np.random.Generator, with_obs: bool
) -> tuple[State, StepOutput, np.ndarray | None, dict[str, np.ndarray]]:
    """One kernel call: the step, and if ``with_obs`` the new state's observation and memory
    accounting (``step_observe``)."""
    k = load_kernels()
    n, g = params.guest_mask.shape
    action = np.ascontiguousarray(action, dtype=np.float64)
    if not action.flags.writeable:  # a read-only array would compile the kernel once more
        action = action.copy()
    if action.shape != (n, 2 * g) or not k.action_is_finite(action):
        split_action(action, params)  # raises the reference's ValueError, naming the problem
        raise AssertionError("unreachable: split_action accepted an action the kernel refused")
    uniforms = rng.random((workload.NUM_UNIFORMS + 1, n, g))
    normals = rng.standard_normal((n, g))  # the draw of host.sample_active, in the same order
    new_state = _new_state(state)
    out = np.empty((len(k.reward_rows) + 1, n))
    rows = n if with_obs else 0
    obs = np.empty((rows, observation_size(g) if with_obs else 0), dtype=np.float32)
    memory = (np.empty((rows, g)), np.empty(rows), np.empty(rows, dtype=np.int64))
    if with_obs:
        _check_static(params, k)
    k.step_kernel(
        tuple(params), tuple(state), tuple(new_state), action, uniforms, normals, out, obs, memory,
        _NO_TICKS,
    )  # fmt: skip
    parts = dict(zip(k.reward_rows, out[1:], strict=True))
    if not with_obs:
        return new_state, StepOutput(reward=out[0], parts=parts), None, {}
    _fault_feature(obs, new_state, params, k)
    accounting = dict(zip(("consumed_mib", "host_free_mib", "host_state"), memory, strict=True))
    return new_state, StepOutput(reward=out[0], parts=parts), obs, accounting


def step(
    state: State, action: np.ndarray, params: Params, rng: np.random.Generator
) -> tuple[State, StepOutput]:
    """Advance every host by one control interval, as :func:`balloon_gym.core.step.step`.

    Args:
        state: Batch state, ``num_envs`` hosts (only read).
        action: ``(num_envs, 2 * max_guests)`` in [-1, 1]: memory actions, then vCPU actions.
        params: Scenario arrays of the same batch (only read).
        rng: Source of all randomness of this step, consumed exactly as the reference does.

    Returns:
        The new state and the step's reward with its parts (the reference's dict keys).

    Raises:
        ValueError: On a malformed or non-finite action (the state and ``rng`` are untouched).
        ImportError: If numba is missing.
    """
    new_state, out, _, _ = _step(state, action, params, rng, with_obs=False)
    return new_state, out


def step_observe(
    state: State, action: np.ndarray, params: Params, rng: np.random.Generator
) -> tuple[State, StepOutput, np.ndarray, dict[str, np.ndarray]]:
    """:func:`step` and :func:`observe` of the new state in one kernel call.

    The observation is built in the same pass as the step, and it equals
    ``observe(new_state, params)`` exactly. On the way the kernel has the new state's memory
    accounting, which it returns too (for the env's ``info``).

    Returns:
        The new state, the step's reward with its parts, the observation, and a dict with
        ``consumed_mib`` (``[G]``, as ``state.consumed_mib``), ``host_free_mib`` and
        ``host_state`` (``[N]``, as ``state.host_free_mib`` and ``host_memory_state``; the free
        memory summed in guest order).
    """
    new_state, out, obs, accounting = _step(state, action, params, rng, with_obs=True)
    assert obs is not None
    return new_state, out, obs, accounting


def _check_static(params: Params, k: _Kernels) -> None:
    """Raise if ``params.obs_static`` no longer has the features the kernels lay out."""
    if params.obs_static.shape[-1] != k.num_static:
        raise RuntimeError(
            f"params.obs_static has {params.obs_static.shape[-1]} features, core/observe.py "
            f"lists {k.num_static} after the dynamic ones; the kernels are out of date"
        )


def observe(state: State, params: Params) -> np.ndarray:
    """Observation of every host, as :func:`balloon_gym.core.observe.observe`.

    Returns:
        ``(num_envs, observation_size(max_guests))`` float32, every feature in [0, 1].

    Raises:
        ImportError: If numba is missing.
        RuntimeError: If the observation's layout changed in the core and not in the kernels.
    """
    k = load_kernels()
    n, g = params.guest_mask.shape
    _check_static(params, k)
    out = np.empty((n, observation_size(g)), dtype=np.float32)
    k.observe_kernel(tuple(params), tuple(state), out)
    _fault_feature(out, state, params, k)
    return out


__all__ = ["MISSING_NUMBA", "load_kernels", "observe", "step", "step_observe"]
