"""The batch runner shared by every adapter: core + params + episode clock + info.

Adapters (the Gymnasium ``Env``, the native ``VectorEnv``, the SB3 ``VecEnv``) only translate
between their API and this class; none holds a second copy of the physics or of the episode
logic. It owns the state between calls, resets subsets of hosts, and builds ``info`` lazily.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from balloon_gym import core
from balloon_gym.config import MAX_GUESTS, ConfigError, ConfigTypeError, ScenarioConfig
from balloon_gym.core.params import Params, params_from_scenario, select_params, stack_params
from balloon_gym.core.rows import row_sum
from balloon_gym.core.state import State, consumed_mib, host_memory_state
from balloon_gym.core.step import as_action_array, split_action
from balloon_gym.scenarios import load_scenario

ScenarioLike = str | Path | ScenarioConfig

MAX_NUM_ENVS = 2**20
"""Most hosts in one batch."""

MAX_EPISODE_STEPS = 10**9
"""Largest ``max_episode_steps`` (10**9 steps of 0.1 s are three years)."""

BYTES_PER_GUEST_SLOT = 2048
"""Memory a batch takes per guest slot (hosts x max_guests) while stepping, bytes: measured
1.7-1.9 KiB with the numpy backend (state, params, the step's temporaries and info). A batch
whose estimate exceeds the machine's memory is refused."""

_SCENARIO_HELP = (
    "a shipped scenario name (str), a path to a .yaml file, a ScenarioConfig, "
    "or a non-empty list of them"
)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_int(value: Any, name: str, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]``: a Python or numpy integer, not a bool.

    Raises:
        ConfigTypeError: For any other type (``2.0`` and ``"3"`` included).
        ConfigError: Outside the range.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigTypeError(
            f"{name} must be an integer, got {type(value).__name__} {_short(value)}"
            + (f"; write {name}={int(value)}" if _is_whole(value) else "")
        )
    value = int(value)
    if not low <= value <= high:
        raise ConfigError(f"{name} must be in [{low}, {high}], got {value}")
    return value


def _is_whole(value: Any) -> bool:
    return isinstance(value, float | np.floating) and float(value).is_integer()


def check_choice(value: Any, name: str, choices: Sequence[str], none_ok: bool = False) -> Any:
    """``value`` if it is one of ``choices`` (or None, if ``none_ok``); else a ConfigError."""
    if value is None and none_ok:
        return None
    options = ", ".join(choices) + (" or None" if none_ok else "")
    if not isinstance(value, str):
        raise ConfigTypeError(
            f"{name} must be one of {options}, got {type(value).__name__} {_short(value)}"
        )
    if value not in choices:
        raise ConfigError(f"{name} {value!r} unknown; choose one of {options}")
    return value


def check_seed(seed: Any) -> int | None:
    """A reset seed: None or a non-negative integer (Python or numpy; any size)."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ConfigTypeError(
            f"seed must be a non-negative integer or None, got {type(seed).__name__} {_short(seed)}"
        )
    if seed < 0:
        raise ConfigError(f"seed must be >= 0 (numpy seeds are non-negative), got {seed}")
    return int(seed)


def check_reset_options(options: Any) -> None:
    """This environment takes no reset options: None or an empty mapping."""
    if options is None:
        return
    if not isinstance(options, Mapping):
        raise ConfigTypeError(
            f"options must be a dict or None, got {type(options).__name__} {_short(options)}"
        )
    if options:
        raise ConfigError(
            f"reset options {sorted(map(str, options))} not supported: this environment takes "
            "no reset options; pass options=None"
        )


def _physical_memory_bytes() -> int | None:
    """The machine's memory, bytes; None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def check_batch_memory(num_envs: int, max_guests: int) -> None:
    """Refuse a batch whose estimated memory exceeds the machine's (see
    :data:`BYTES_PER_GUEST_SLOT`), before any of it is allocated."""
    need = num_envs * max_guests * BYTES_PER_GUEST_SLOT
    have = _physical_memory_bytes()
    if have is not None and need > have:
        raise ConfigError(
            f"a batch of {num_envs} hosts x {max_guests} guest slots needs about "
            f"{need / 2**30:.1f} GiB ({BYTES_PER_GUEST_SLOT} bytes per slot), more than this "
            f"machine's {have / 2**30:.1f} GiB; use fewer hosts (num_envs) or split them over "
            "several batches"
        )


BACKENDS = ("numpy", "numba")
"""Implementations of ``step`` and ``observe``: ``numpy`` (the reference, default) and ``numba``
(``balloon_gym.core.fused``: compiled kernels, same numbers; ``pip install 'balloon-gym[fast]'``).
"""

StepFn = Callable[[State, np.ndarray, Params, np.random.Generator], tuple[State, Any]]
ObserveFn = Callable[[State, Params], np.ndarray]
StepObserveFn = Callable[
    [State, np.ndarray, Params, np.random.Generator], tuple[State, Any, np.ndarray, dict[str, Any]]
]


class AutoresetStep(NamedTuple):
    """What :meth:`Batch.step_autoreset` returns (arrays ``(num_envs, ...)``)."""

    obs: np.ndarray  # observation after the call (a reset host's first one)
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    info: StepInfo | None  # None when every host was reset instead of stepped
    final_obs: np.ndarray | None  # same step: the observation in which each episode ended
    done: np.ndarray  # episodes that ended in this call (same step: already reset)


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
        ConfigError: For an unknown backend (the message lists :data:`BACKENDS`), a
            ValueError.
        ImportError: For ``"numba"`` without numba installed.
    """
    check_choice(backend, "backend", BACKENDS)
    if backend == "numpy":
        return Backend(core.step, core.observe)
    from balloon_gym.core import fused  # numba is optional: imported only when asked for

    fused.load_kernels()  # fail here, not at the first step, if numba is missing
    return Backend(fused.step, fused.observe, fused.step_observe)


def _is_scenario_like(value: Any) -> bool:
    return isinstance(value, str | os.PathLike | ScenarioConfig)


def resolve_scenarios(
    scenario: ScenarioLike | Sequence[ScenarioLike], num_envs: int
) -> list[ScenarioConfig]:
    """One config per env: a single scenario is repeated; a list is assigned round-robin (env
    ``i`` runs ``scenario[i % len(scenario)]``), so a list longer than ``num_envs`` is an
    error (its tail would get no env). A length that does not divide ``num_envs`` is allowed:
    the first ``num_envs % len`` scenarios then get one env more.

    Raises:
        ConfigTypeError: ``num_envs`` not an integer, ``scenario`` or an item of the wrong type.
        ConfigError: ``num_envs`` outside ``[1, MAX_NUM_ENVS]``, an empty list, a list longer
            than ``num_envs``, an unknown scenario or an invalid file.
    """
    num_envs = check_int(num_envs, "num_envs", 1, MAX_NUM_ENVS)
    if _is_scenario_like(scenario):
        items = [scenario]
    elif isinstance(scenario, Sequence) and not isinstance(scenario, bytes | bytearray):
        items = list(scenario)
    else:
        raise ConfigTypeError(
            f"scenario must be {_SCENARIO_HELP}; got {type(scenario).__name__} {_short(scenario)}"
        )
    if not items:
        raise ConfigError("scenario list is empty; name at least one scenario")
    for i, item in enumerate(items):
        if not _is_scenario_like(item):
            raise ConfigTypeError(
                f"scenario[{i}] must be a shipped scenario name (str), a path to a .yaml file "
                f"or a ScenarioConfig; got {type(item).__name__} {_short(item)}"
            )
    if len(items) > num_envs:
        raise ConfigError(
            f"scenario lists {len(items)} scenarios but num_envs={num_envs}: envs take the "
            f"list round-robin, so {_short([str(getattr(s, 'name', s)) for s in items[num_envs:]])}"
            f" would get no env; raise num_envs to at least {len(items)} or shorten the list"
        )
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
    check_choice(trace_split, "trace_split", ("train", "heldout", "all"), none_ok=True)
    widest = max(c.num_guests for c in configs)
    if max_guests is None:
        width = widest
    else:
        width = check_int(max_guests, "max_guests", 1, MAX_GUESTS)
        if width < widest:
            name = next(c.name for c in configs if c.num_guests == widest)
            raise ConfigError(
                f"scenario {name!r} has {widest} guests but max_guests={width}; raise max_guests "
                "or leave it out (the default is the widest scenario's guest count)"
            )
    check_batch_memory(len(configs), width)
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
    ``throughput``, ``stall_s`` (stalls of the time it ran), ``lost_s`` (time it did not run:
    blocked, or restarting after an OOM kill), guest major faults ``fault_pages`` (pages, the
    sum of ``anon_fault_pages``, hot anonymous pages swapped in, and ``cache_fault_pages``, page
    cache re-read); ``wss_mib`` is not exposed (it is the hidden truth).
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
        "fault_pages": "fault_pages",
        "anon_fault_pages": "anon_fault_pages",
        "cache_fault_pages": "cache_fault_pages",
        "lost_s": "lost_s",
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
        self.steps = state.t  # steps taken in each host's episode, read before any reset
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
        ConfigError: For ``max_episode_steps`` not an integer in ``[1, MAX_EPISODE_STEPS]``
            or an unknown backend.
        ImportError: For ``backend="numba"`` without numba installed.
    """

    def __init__(
        self, params: Params, max_episode_steps: int | None = None, backend: str = "numpy"
    ) -> None:
        if max_episode_steps is not None:
            max_episode_steps = check_int(
                max_episode_steps, "max_episode_steps", 1, MAX_EPISODE_STEPS
            )
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
        """Advance all hosts; returns ``(reward, terminated, truncated, info)``.

        Raises:
            RuntimeError: Before :meth:`reset`.
            ConfigTypeError: For an action that is not an array of real numbers.
            ValueError: For a wrong shape or a NaN or infinite entry (state and ``rng`` are
                left untouched).
        """
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        action = as_action_array(action)
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

    def step_autoreset(
        self, action: np.ndarray, rng: np.random.Generator, pending: np.ndarray | None = None
    ) -> AutoresetStep:
        """One step with autoreset: the only place any adapter resets finished episodes.

        Two rules, chosen by ``pending``:

        * ``pending is None``, same step: every host steps; hosts whose episode ended in this
          step are reset within it. Their last observation and info are returned beside the
          first observation of their next episode (SB3's and Gymnasium's ``SAME_STEP``).
        * ``pending`` a bool ``(num_envs,)``, next step: hosts marked pending (their episode
          ended in the previous call) are reset instead of stepped, their action ignored and
          their reward 0; the others step (Gymnasium's ``NEXT_STEP``). Nothing is reset at
          the end of an episode; the caller marks the ended hosts pending for its next call.

        Raises:
            RuntimeError: Before :meth:`reset`.
            ConfigTypeError, ValueError: For a bad action (as :meth:`step`; nothing changes).
        """
        if pending is not None and pending.all():
            # Every action is ignored, but a malformed one is still an error.
            action = as_action_array(action)
            if action.shape != (self.num_envs, 2 * self.params.max_guests):
                split_action(action, self.params)  # raises the shape error
            obs = self.reset(rng)
            none = np.zeros(self.num_envs, dtype=bool)
            return AutoresetStep(obs, np.zeros(self.num_envs), none, none.copy(), None, None, none)
        reward, terminated, truncated, info = self.step(action, rng)
        if pending is not None:
            if pending.any():
                self.reset_where(pending, rng)
                reward = np.where(pending, 0.0, reward)
                terminated, truncated = terminated & ~pending, truncated & ~pending
            done = terminated | truncated
            return AutoresetStep(self.observe(), reward, terminated, truncated, info, None, done)
        done = terminated | truncated
        final_obs = None
        if done.any():
            final_obs = self.observe()
            self.reset_where(done, rng)
        return AutoresetStep(self.observe(), reward, terminated, truncated, info, final_obs, done)

    def observe(self) -> np.ndarray:
        """Observations of the current state, an array the caller owns.

        The observation a step computed on the way (numba's ``step_observe``) is handed over
        as it is, without a copy, and forgotten; a later call for the same state computes a
        new one. So no two calls return the same array, and writing to one changes nothing in
        the batch.
        """
        assert self.state is not None
        obs = self._obs
        if obs is None:
            return self._backend.observe(self.state, self.params)
        self._obs = None
        return obs
