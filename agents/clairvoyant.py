"""The clairvoyant scheduler: the top of BalloonBench's normalisation, not a real policy.

It reads what no real scheduler can: the simulator's true state and parameters, and from them
each guest's true demand over the next steps (:func:`balloon_gym.core.workload.demand`). That
access is **privileged** and explicit: the policy must be bound to the env's
:class:`~balloon_gym.envs.batch.Batch` (``Clairvoyant(max_guests, batch=env.batch)``,
``policy.bind(env.batch)``, or ``make_agent("clairvoyant", env)``, which binds to
``env.batch``); an unbound one refuses to act. The observation passed to ``predict`` is only
checked against the batch; decisions come from ``batch.state`` and ``batch.params``.

Rule, per step and host (all vectorised):

1. Demand ahead: the workload's anonymous footprint ``A``, hot set ``W`` and page cache ``C``
   at steps ``t+1 .. t+lookahead``, maximum over the window. The deterministic parts (diurnal
   cycle, leak, recovery after an OOM) are exact; random events not yet drawn (burst starts
   and ends, phase changes) are assumed not to happen.
2. Memory in three tiers, each shared by shares only when the host cannot hold the tier:
   **need** ``kernel + max(W + Ch, A - swap) + margin`` (hot anon ``W`` and hot page cache
   ``Ch = cache_hot_frac * C`` resident, footprint fits with swap:
   no major faults, no OOM), **want** ``kernel + A + C + margin`` (no swapping, full cache),
   then the rest of the capacity by shares up to ``max_mib`` (head room for bursts). Tiers are
   clamped to ``[min_mib, max_mib]``; a guest whose driver is out keeps what it has. The sum
   never exceeds the memory the host may hand out (``host_target_mib``), so the host stays in
   its high state apart from transitions.
3. vCPUs: where the host is CPU-contended, the pCPU time each guest will get
   (proportional share of the true CPU demands, :func:`balloon_gym.core.cpu.water_fill`) is
   computed, and a guest that would get less than it can run keeps ``ceil(share)`` vCPUs
   active (no lock-holder preemption loss); otherwise all vCPUs stay active.

Parameters: ``lookahead_steps`` (3), ``margin_mib`` (64 MiB of slack per tier).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from balloon_gym.agents.base import PolicyState, share_fill
from balloon_gym.core import cpu
from balloon_gym.core.balloon import max_reservation_rate
from balloon_gym.core.params import Params
from balloon_gym.core.privileged import demand_ahead, next_step_uniforms
from balloon_gym.core.state import State, consumed_mib
from balloon_gym.core.workload import Demand

_EPS = 1e-9


class Clairvoyant:
    """Privileged policy that sees the true demand ahead (bound to an env's ``Batch``).

    Args:
        max_guests: Guest slots of the env.
        lookahead_steps: Steps of future demand taken into account (>= 1).
        margin_mib: Slack added to each guest's need and want, MiB.
        transition_free_frac: Free fraction of host memory kept while memory moves between
            guests (between the soft line, 0.04, and the high line, 0.06).
        source: What to bind to at once (see :meth:`bind`); or call :meth:`bind` later.
        peek: Read the next step's workload draws from the env's generator (see :meth:`bind`).
    """

    name: ClassVar[str] = "clairvoyant"

    def __init__(
        self,
        max_guests: int,
        lookahead_steps: int = 3,
        margin_mib: float = 64.0,
        transition_free_frac: float = 0.045,
        source: Any | None = None,
        peek: bool = True,
    ) -> None:
        if lookahead_steps < 1:
            raise ValueError(f"lookahead_steps must be >= 1, got {lookahead_steps}")
        self.max_guests = max_guests
        self.lookahead_steps = int(lookahead_steps)
        self.margin_mib = float(margin_mib)
        self.transition_free_frac = float(transition_free_frac)
        self.peek = bool(peek)
        self._batch: Any = None
        self._env: Any = None
        if source is not None:
            self.bind(source)

    def bind(self, source: Any) -> Clairvoyant:
        """Open the privileged channel; returns self.

        Args:
            source: The env's :class:`~balloon_gym.envs.batch.Batch` (``env.batch``): the
                policy reads ``batch.state`` and ``batch.params`` at every call. Or the env
                itself (a ``BalloonVectorEnv``): its batch, and also its generator
                ``env.np_random``, from a copy of which the policy reads the uniforms the
                next ``step`` will draw for the workloads (``core.step`` draws them first),
                so that it sees burst starts and phase changes one step ahead; the env's own
                generator is never advanced. Without the env (``peek=False`` or a bare batch)
                random events not yet drawn are assumed not to happen.

        Raises:
            TypeError: If ``source`` is neither (pass ``env`` or ``env.batch``).
            ValueError: If its guest slots differ from the policy's.
        """
        batch = getattr(source, "batch", source)
        if not (hasattr(batch, "state") and hasattr(batch, "params")):
            raise TypeError(
                "clairvoyant binds to a balloon-gym env or its Batch (env.batch), got "
                f"{type(source).__name__}"
            )
        if batch.params.max_guests != self.max_guests:
            raise ValueError(
                f"batch has {batch.params.max_guests} guest slots, policy {self.max_guests}"
            )
        self._batch = batch
        self._env = source if source is not batch and hasattr(source, "np_random") else None
        return self

    @property
    def bound(self) -> bool:
        """Whether the policy has its privileged channel."""
        return self._batch is not None

    def _next_uniforms(self, shape: tuple[int, int]) -> np.ndarray | None:
        """The workload uniforms the env's next step will draw, from a copy of its generator."""
        if not self.peek or self._env is None:
            return None
        return next_step_uniforms(self._env.np_random, shape)

    def predict(
        self,
        observation: np.ndarray,
        state: PolicyState = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, PolicyState]:
        """Actions from the bound batch's true state (the observation is only checked).

        Raises:
            RuntimeError: If unbound, or if the observation batch does not match the batch.
        """
        if self._batch is None or self._batch.state is None:
            raise RuntimeError(
                "clairvoyant needs privileged access to the simulator: bind it to the env "
                "(policy.bind(env) or policy.bind(env.batch), or make_agent('clairvoyant', "
                "env)) and reset the env first"
            )
        s, p = self._batch.state, self._batch.params
        obs = np.atleast_2d(observation)
        if obs.shape[0] != p.num_envs:
            raise RuntimeError(
                f"observation batch has {obs.shape[0]} envs, the bound batch {p.num_envs}: "
                "bind the policy to the env it acts on"
            )
        d = demand_ahead(s, p, self.lookahead_steps, self._next_uniforms(p.guest_mask.shape))
        actions = clairvoyant_actions(s, p, d, self.margin_mib, self.transition_free_frac)
        actions = actions.astype(np.float32)
        return (actions[0] if np.ndim(observation) == 1 else actions), state

    def __repr__(self) -> str:
        return (
            f"Clairvoyant(max_guests={self.max_guests}, lookahead_steps={self.lookahead_steps}, "
            f"margin_mib={self.margin_mib}, peek={self.peek}, bound={self.bound})"
        )


def _greedy_fill(
    gap: np.ndarray, density: np.ndarray, room: np.ndarray, mask: np.ndarray, whole: bool = False
) -> np.ndarray:
    """Fill ``gap`` (MiB ``[G]``) in order of decreasing ``density`` until ``room`` is used.

    The fractional knapsack's greedy solution, vectorised: sort each host's guests once,
    cumulative sums, no loop. With ``whole``, items are all-or-nothing: the longest prefix of
    the order that fits gets its whole gap, the rest nothing.
    """
    gap = np.where(mask, np.maximum(gap, 0.0), 0.0)
    order = np.argsort(-np.where(mask, density, -np.inf), axis=1, kind="stable")
    gap_sorted = np.take_along_axis(gap, order, axis=1)
    cum = np.cumsum(gap_sorted, axis=1)
    room = np.maximum(room, 0.0)
    if whole:
        give_sorted = np.where(cum <= room + 1e-9, gap_sorted, 0.0)
        give_sorted *= np.cumprod(cum <= room + 1e-9, axis=1)  # a prefix only
    else:
        give_sorted = np.clip(room - (cum - gap_sorted), 0.0, gap_sorted)
    give = np.empty_like(give_sorted)
    np.put_along_axis(give, order, give_sorted, axis=1)
    return give


def _floor_mib(params: Params) -> np.ndarray:
    """Least memory a guest can be held to: ``min_mib``, or what the balloon's cap leaves."""
    return np.maximum(params.min_mib, params.mem_mib - params.balloon_max_mib)


def at_floor(state: State, params: Params, d: Demand, margin_mib: float) -> np.ndarray:
    """Steerable guests that want no more than the floor their balloon cap holds them at."""
    want = params.kernel_mib + d.anon_mib + d.cache_mib + margin_mib
    return params.guest_mask & state.driver_up & (want <= _floor_mib(params))


def desired_targets(state: State, params: Params, d: Demand, margin_mib: float) -> np.ndarray:
    """Allocations in MiB ``(num_envs, max_guests)`` the host would settle at (tiers 1-3)."""
    mask = params.guest_mask
    # The balloon cannot take more than balloon_max_mib: below that floor a target is not met.
    lo = _floor_mib(params)
    hi = params.max_mib
    fits = params.kernel_mib + d.anon_mib - params.swap_mib + margin_mib  # below: OOM kill
    # below: major faults every step (hot anon swapped in, hot page cache re-read)
    hot = params.kernel_mib + d.wss_mib + params.cache_hot_frac * d.cache_mib + margin_mib
    raw_want = params.kernel_mib + d.anon_mib + d.cache_mib + margin_mib
    fits, hot = np.clip(fits, lo, hi), np.clip(hot, lo, hi)
    want = np.clip(raw_want, np.maximum(fits, hot), hi)
    pinned = mask & ~state.driver_up
    usable = params.mem_mib - state.balloon
    fits, hot, want, top, lo = (np.where(pinned, usable, x) for x in (fits, hot, want, hi, lo))
    # A guest whose balloon is at its cap and who wants no more memory than that floor backs
    # only the pages it touches: the host's capacity counts what it will consume, not its
    # floor (the floor's untouched rest needs no machine memory).
    floored = at_floor(state, params, d, margin_mib)
    charge = np.clip(np.maximum(raw_want, consumed_mib(state, params)), params.min_mib, lo)
    slack = np.where(floored, lo - charge, 0.0).sum(axis=1, keepdims=True)
    capacity = params.host_target_mib + slack
    top = np.where(floored, lo, top)
    shares = np.where(mask, params.shares, 0.0)

    def room(x: np.ndarray) -> np.ndarray:
        return capacity - np.where(mask, x, 0.0).sum(axis=1, keepdims=True)

    # Tier 1, the need: a footprint that fits (no OOM kill) and a resident hot set (no major
    # faults). Where the host cannot hold every guest's need, whole guests get theirs first,
    # by shares per MiB, and what is left goes to the next in that order: concentrating the
    # shortage on few guests loses less throughput than spreading it (a guest short of its hot
    # set faults on every missing page). A guest already holding its need is preferred, so
    # that memory does not move back and forth.
    need = np.maximum(fits, hot)
    gap = need - lo
    density = np.where(usable >= need - 1.0, 2.0, 1.0) * shares / np.maximum(gap, 1.0)
    x = lo + _greedy_fill(gap, density, room(lo), mask, whole=True)
    x = x + _greedy_fill(need - x, density, room(x), mask)
    # Tier 2, no swapping and a full page cache: in order of the share-weighted value of the
    # cache it buys per MiB (cache misses are what a guest above its need still loses).
    gap = want - x
    value = shares * np.minimum(d.cache_mib, gap) * params.fault_s
    x = x + _greedy_fill(gap, value / np.maximum(gap, _EPS) + 1e-12 * shares, room(x), mask)
    # Tier 3, head room up to max_mib by shares: free memory a burst can grow into at once.
    x = x + share_fill(shares, np.zeros_like(x), top - x, np.maximum(room(x), 0.0), mask)
    return np.where(mask, x, params.min_mib)


def limit_transitions(
    state: State, params: Params, d: Demand, desired: np.ndarray, free_frac: float
) -> np.ndarray:
    """Slow down the guests that grow so that the host stays out of its hard state.

    Guests that shrink give memory back only as fast as their balloon can take it (free
    pages, page cache, then guest swap: :func:`balloon_gym.core.balloon.max_reservation_rate`)
    and only touched pages free machine memory. The machine memory guests may touch this step
    is what is free above ``free_frac`` of host memory plus what the shrinking guests release;
    the growing guests' targets are scaled back to share it. ``free_frac`` lies between the
    soft line (4 %, below which the host swaps) and the high line (6 %).
    """
    mask = params.guest_mask & state.driver_up
    consumed = consumed_mib(state, params)
    usable = params.mem_mib - state.balloon
    line = params.host_mem_mib * (1.0 - free_frac) - params.host_reserved_mib
    budget = line - consumed.sum(axis=1, keepdims=True)
    # --- what shrinking guests give back this step (machine memory)
    got = np.where(
        mask,
        np.minimum(np.maximum(usable - desired, 0.0), max_reservation_rate(state, params)),
        0.0,
    )
    touched_free = state.free - state.untouched
    release = np.minimum(got, touched_free) + np.maximum(got - state.free, 0.0)
    # --- what every guest may newly touch this step, and the growing guests' part of it
    want_now = params.kernel_mib + d.anon_mib + d.cache_mib
    growth = np.where(
        params.guest_mask, np.maximum(np.minimum(desired, want_now) - consumed, 0.0), 0.0
    )
    growing = mask & (desired > usable)
    allowance = budget + release.sum(axis=1, keepdims=True)
    allowance -= np.where(growing, 0.0, growth).sum(axis=1, keepdims=True)
    asked = np.where(growing, growth, 0.0).sum(axis=1, keepdims=True)
    scale = np.clip(np.maximum(allowance, 0.0) / np.maximum(asked, _EPS), 0.0, 1.0)
    # Where the growth fits, head room above it costs nothing until touched: grant it all.
    slowed = np.where(scale < 1.0, np.maximum(usable, consumed + scale * growth), desired)
    return np.where(growing, np.minimum(desired, slowed), desired)


def memory_targets(
    state: State, params: Params, d: Demand, margin_mib: float, free_frac: float
) -> np.ndarray:
    """Allocation targets in MiB ``(num_envs, max_guests)``: tiers, then transition limits.

    A naive driver (``rate_adaptive`` false) asks for whatever the target says and turns the
    excess over the guest's reservation rate into allocation stalls: its guest is never asked
    to give more in one step than that rate (the scheduler adapts the rate for it).
    """
    x = desired_targets(state, params, d, margin_mib)
    x = limit_transitions(state, params, d, x, free_frac)
    usable = params.mem_mib - state.balloon
    floor = usable - max_reservation_rate(state, params)
    x = np.where(params.rate_adaptive, x, np.maximum(x, floor))
    # Guests held at their balloon's cap get min_mib as target: the balloon stays at its cap
    # either way, and the env's projection then leaves room for the others (see
    # desired_targets: their untouched floor needs no machine memory).
    held = at_floor(state, params, d, margin_mib) & (x <= _floor_mib(params) + 1e-6)
    return np.where(held, params.min_mib, x)


def vcpu_targets(params: Params, d: Demand) -> np.ndarray:
    """vCPUs to keep active ``(num_envs, max_guests)``: ``ceil(pCPU share)`` where squeezed."""
    mask = params.guest_mask
    runnable = np.where(mask, np.minimum(d.cpu_vcpus, params.vcpus), 0.0)
    share = cpu.water_fill(runnable, np.where(mask, params.shares, 0.0), params.pcpus)
    squeezed = share < runnable - 1e-3
    active = np.clip(np.ceil(share - 1e-3), 1.0, params.vcpus)
    return np.where(squeezed, active, params.vcpus)


def clairvoyant_actions(
    state: State,
    params: Params,
    d: Demand,
    margin_mib: float = 64.0,
    transition_free_frac: float = 0.045,
) -> np.ndarray:
    """The clairvoyant's actions ``(num_envs, 2 * max_guests)`` for demand ``d`` ahead."""
    alloc = memory_targets(state, params, d, margin_mib, transition_free_frac)
    span = params.max_mib - params.min_mib
    u_mem = np.where(span > _EPS, (alloc - params.min_mib) / np.maximum(span, _EPS), 1.0)
    active = vcpu_targets(params, d)
    u_cpu = np.where(params.vcpus > 1, (active - 1.0) / np.maximum(params.vcpus - 1.0, _EPS), 1.0)
    actions = np.concatenate([2.0 * u_mem - 1.0, 2.0 * u_cpu - 1.0], axis=1)
    mask2 = np.concatenate([params.guest_mask, params.guest_mask], axis=1)
    return np.where(mask2, np.clip(actions, -1.0, 1.0), 0.0)
