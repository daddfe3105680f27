"""The batch runner shared by every adapter: core + params + episode clock + info.

Adapters (the Gymnasium ``Env``, the native ``VectorEnv``, the SB3 ``VecEnv``) only translate
between their API and this class; none holds a second copy of the physics or of the episode
logic. It owns the state between calls, resets subsets of hosts, and builds ``info`` lazily.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from balloon_gym import core
from balloon_gym.config import ConfigError, ScenarioConfig
from balloon_gym.core.params import Params, params_from_scenario, select_params, stack_params
from balloon_gym.core.rows import row_sum
from balloon_gym.core.state import State, consumed_mib, host_memory_state
from balloon_gym.scenarios import load_scenario

ScenarioLike = str | Path | ScenarioConfig

BACKENDS = ("numpy", "numba")
"""Implementations of ``step`` and ``observe``: ``numpy`` (the reference, default) and ``numba``
(``balloon_gym.core.fused``: compiled kernels, same numbers; ``pip install 'balloon-gym[fast]'``).
"""

StepFn = Callable[[State, np.ndarray, Params, np.random.Generator], tuple[State, Any]]
ObserveFn = Callable[[State, Params], np.ndarray]
StepObserveFn = Callable[
    [State, np.ndarray, Params, np.random.Generator], tuple[State, Any, np.ndarray, dict[str, Any]]
]


class Backend(NamedTuple):
    """The functions of a backend: ``step`` and ``observe`` (``reset`` is shared: numpy's), and
    ``step_observe``, both in one call, where the backend computes them together (else None:
    the observation is computed when asked for). ``step_observe`` also returns ``info`` keys it
    computed on the way (a dict, which ``StepInfo`` takes as they are)."""

    step: StepFn
    observe: ObserveFn
    step_observe: StepObserveFn | None = None


def backend_functions(backend: str) -> Backend:
    """The functions of a backend.

    Raises:
        ValueError: For an unknown backend (the message lists :data:`BACKENDS`).
        ImportError: For ``"numba"`` without numba installed.
    """
    if backend == "numpy":
        return Backend(core.step, core.observe)
    if backend == "numba":
        from balloon_gym.core import fused  # numba is optional: imported only when asked for

        fused.load_kernels()  # fail here, not at the first step, if numba is missing
        return Backend(fused.step, fused.observe, fused.step_observe)
    raise ValueError(f"backend {backend!r} unknown; choose one of {', '.join(BACKENDS)}")


def resolve_scenarios(
    scenario: ScenarioLike | Sequence[ScenarioLike], num_envs: int
) -> list[ScenarioConfig]:
    """One config per env: a single scenario is repeated, a list is assigned round-robin."""
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    items = [scenario] if isinstance(scenario, str | Path | ScenarioConfig) else list(scenario)
    if not items:
        raise ConfigError("scenario list is empty; name at least one scenario")
    configs = [load_scenario(s) for s in items]
    return [configs[i % len(configs)] for i in range(num_envs)]


def build_params(
    configs: Sequence[ScenarioConfig],
    max_guests: int | None = None,
    trace_split: str | None = None,
) -> Params:
    """Params of a batch of (possibly different) scenarios, padded to a common width.

    ``trace_split`` overrides the split trace guests draw VMs from (``"heldout"`` for
    evaluation); None keeps each scenario's.
    """
    if trace_split not in (None, "train", "heldout", "all"):
        raise ValueError(f"trace_split {trace_split!r} unknown; use train, heldout, all or None")
    width = max(c.num_guests for c in configs) if max_guests is None else max_guests
    cache: dict[int, Params] = {}
    rows = []
    for c in configs:
        if id(c) not in cache:
            cache[id(c)] = params_from_scenario(c, width, trace_split)
        rows.append(cache[id(c)])
    return stack_params(rows)


def _static_info(params: Params) -> dict[str, np.ndarray]:
    """The ``info`` keys that depend only on params: computed once per batch and shared by every
    step's info, so they are read-only copies."""
    static = {
        "kernel_mib": np.where(params.guest_mask, params.kernel_mib, 0.0),  # padding: 0
        "mem_mib": np.where(params.guest_mask, params.mem_mib, 0.0),
        "host_mem_mib": params.host_mem_mib[:, 0].copy(),
        "host_reserved_mib": params.host_reserved_mib[:, 0].copy(),
        "guest_mask": params.guest_mask.copy(),
    }
    for value in static.values():
        value.flags.writeable = False
    return static


class StepInfo(MutableMapping[str, Any]):
    """``info`` of one batch step, computed on first access of each key (a mutable mapping:
    wrappers may add keys).

    Keys (each an array with leading axis ``num_envs``): the reward parts (``score``,
    ``mean_throughput``, ``sla_ok_frac``, ``ooms``, ``host_swap_gib``, ``sla_misses``,
    ``penalty``), host memory (``host_free_mib``, ``host_state``, ``consumed_mib`` per guest),
    guest memory per guest (``kernel_mib``, ``anon_resident_mib``, ``anon_swapped_mib``,
    ``cache_mib``, ``free_mib``, ``balloon_mib``, ``mem_mib``, ``host_swapped_mib``), and per guest
    ``throughput``, ``stall_s``, ``wss_mib`` is not exposed (it is the hidden truth).
    """

    _GUEST_KEYS = {
        "anon_resident_mib": "anon_res",
        "anon_swapped_mib": "anon_swap",
        "cache_mib": "cache",
        "free_mib": "free",
        "untouched_mib": "untouched",
        "balloon_mib": "balloon",
        "balloon_swapped_mib": "balloon_swap",
        "host_swapped_mib": "host_swap",
        "alloc_target_mib": "alloc_target",
        "reserved_vcpus": "reserved_vcpus",
        "throughput": "throughput",
        "stall_s": "stall_s",
        "oom": "oom",
        "driver_up": "driver_up",
    }

    def __init__(
        self,
        state: State,
        params: Params,
        parts: dict[str, np.ndarray],
        static: dict[str, np.ndarray] | None = None,
        computed: dict[str, np.ndarray] | None = None,
    ) -> None:
        self._state, self._params, self._parts = state, params, parts
        self._static = _static_info(params) if static is None else static
        self._computed = computed or {}  # keys the backend computed on the way (numba)
        self._cache: dict[str, np.ndarray] = dict(self._computed)
        self._keys = (
            *parts,
            *self._GUEST_KEYS,
            "kernel_mib",
            "mem_mib",
            "consumed_mib",
            "host_free_mib",
            "host_state",
            "host_mem_mib",
            "host_reserved_mib",
            "guest_mask",
        )

    def _compute(self, key: str) -> np.ndarray:
        s, p = self._state, self._params
        if key in self._parts:
            return self._parts[key]
        if key in self._static:
            return self._static[key]
        if key in self._GUEST_KEYS:
            # Padding slots are all kernel: their memory fields are zero already.
            value = getattr(s, self._GUEST_KEYS[key])
            return value * p.guest_mask if key == "alloc_target_mib" else value  # padding: 0
        if key == "consumed_mib":
            return consumed_mib(s, p)
        if key == "host_free_mib":
            used = row_sum(self["consumed_mib"])
            return p.host_mem_mib[:, 0] - p.host_reserved_mib[:, 0] - used
        if key == "host_state":
            return host_memory_state(self["host_free_mib"], p)
        raise KeyError(key)  # pragma: no cover - every key of _keys is handled above

    def to_dict(self) -> dict[str, Any]:
        """Every key as a plain dict (what the vector adapters return): one pass, without the
        per-key lookups of the mapping protocol."""
        cache = self._cache
        if not all(key in cache for key in self._keys):
            state = self._state
            for key, value in self._parts.items():
                cache.setdefault(key, value)
            for key, value in self._static.items():
                cache.setdefault(key, value)
            for key, name in self._GUEST_KEYS.items():
                if key not in cache:
                    cache[key] = (
                        self._compute(key) if key == "alloc_target_mib" else getattr(state, name)
                    )
            for key in ("consumed_mib", "host_free_mib", "host_state"):
                if key not in cache:
                    cache[key] = self._compute(key)
        return {key: cache[key] for key in self._keys}

    def __getitem__(self, key: str) -> Any:
        if key not in self._cache:
            if key not in self._keys:
                raise KeyError(key)
            self._cache[key] = self._compute(key)
        return self._cache[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self._keys:
            self._keys = (*self._keys, key)
        self._cache[key] = value

    def __delitem__(self, key: str) -> None:
        if key not in self._keys:
            raise KeyError(key)
        self._keys = tuple(k for k in self._keys if k != key)
        self._cache.pop(key, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def row(self, i: int) -> dict[str, Any]:
        """Everything for env ``i``, as Python scalars and small arrays."""
        out: dict[str, Any] = {}
        for k in self._keys:
            v = self[k][i]
            out[k] = v.item() if np.ndim(v) == 0 else np.array(v)  # a copy: never shared
        return out


class Batch:
    """A batch of hosts advanced by the core, with an episode clock and subset resets.

    Args:
        params: Scenario arrays of the batch.
        max_episode_steps: Steps until truncation; default each scenario's ``episode_steps``.
        backend: ``"numpy"`` (the reference, default) or ``"numba"`` (compiled kernels with the
            same numbers, see ``docs/speed.md``; the first use compiles them, about 15 s once
            per machine, then they load from numba's on-disk cache).

    Raises:
        ValueError: For ``max_episode_steps < 1`` or an unknown backend.
        ImportError: For ``backend="numba"`` without numba installed.
    """

    def __init__(
        self, params: Params, max_episode_steps: int | None = None, backend: str = "numpy"
    ) -> None:
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
        self._backend = backend_functions(backend)
        self.backend = backend
        self.params = params
        self.max_steps = (
            params.episode_steps[:, 0].copy()
            if max_episode_steps is None
            else np.full(params.num_envs, max_episode_steps, dtype=np.int64)
        )
        self.state: State | None = None
        self._static_info = _static_info(params)
        self._obs: np.ndarray | None = None  # observation of ``state``, once computed

    @property
    def num_envs(self) -> int:
        """Hosts in the batch."""
        return self.params.num_envs

    def reset(self, rng: np.random.Generator) -> np.ndarray:
        """Reset every host; returns the observations."""
        self.state = core.reset(self.params, rng)
        self._obs = None
        return self.observe()

    def reset_where(self, mask: np.ndarray, rng: np.random.Generator) -> None:
        """Reset the hosts where ``mask`` is True; the others keep their state."""
        assert self.state is not None
        self._obs = None
        if mask.all():
            self.state = core.reset(self.params, rng)
            return
        index = np.flatnonzero(mask)
        fresh = core.reset(select_params(self.params, index), rng)
        fields = []
        for arr, new in zip(self.state, fresh, strict=True):
            arr = arr.copy()  # an earlier step's info may still refer to the old arrays
            arr[index] = new
            fields.append(arr)
        self.state = State(*fields)

    def step(self, action: np.ndarray, rng: np.random.Generator):
        """Advance all hosts; returns ``(reward, terminated, truncated, info)``."""
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        computed: dict[str, np.ndarray] = {}  # info keys the backend computed on the way
        if self._backend.step_observe is None:
            state, out = self._backend.step(self.state, action, self.params, rng)
            self._obs = None
        else:
            state, out, self._obs, computed = self._backend.step_observe(
                self.state, action, self.params, rng
            )
        self.state = state
        truncated = state.t >= self.max_steps
        terminated = np.zeros(self.num_envs, dtype=bool)
        info = StepInfo(state, self.params, out.parts, self._static_info, computed)
        return out.reward, terminated, truncated, info

    def observe(self) -> np.ndarray:
        """Observations of the current state (computed once per state; do not write to it)."""
        assert self.state is not None
        if self._obs is None:
            self._obs = self._backend.observe(self.state, self.params)
        return self._obs
