"""``BalloonEnv``: the Gymnasium ``Env``, the core at batch size one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from balloon_gym.config import ScenarioConfig
from balloon_gym.core.step import as_action_array
from balloon_gym.envs.batch import (
    Batch,
    build_params,
    check_choice,
    check_reset_options,
    check_seed,
    resolve_scenarios,
)
from balloon_gym.envs.render import render_host
from balloon_gym.envs.spaces import action_space, observation_space


class BalloonEnv(gym.Env):
    """A virtualisation host's memory and CPU scheduler, steering guests' balloon drivers.

    ## Description

    A host runs several guest VMs on less machine memory (and fewer pCPUs) than their configured
    sizes add up to. Each step (``dt_s``, 10 s by default) the agent sets, for every guest, a
    memory allocation target and a number of vCPUs to keep active. Targets reach a guest only
    through its **balloon driver**, which inflates (reserves guest memory through the guest's
    own allocator: free pages, then page cache, then pages the guest must swap out) or deflates,
    at the rate the guest can sustain, or not at all while the driver is out. Memory the host
    cannot get back by ballooning it takes by host swap when free machine memory runs low,
    which costs guests dearly. The model, its equations and its sources are in
    ``docs/model.md``; the scenario (``configs/scenarios/*.yaml``) fixes host, guests and
    workloads.

    ## Action Space

    ``Box(-1, 1, (2 * max_guests,), float32)``. With ``u = (a + 1) / 2``:

    | index | name | meaning |
    |---|---|---|
    | ``g`` | memory of guest ``g`` | see below |
    | ``max_guests + g`` | vCPUs of guest ``g`` | keep ``1 + round(u * (vcpus - 1))`` active |

    Memory, ``allocation`` mode (default): target ``min_mib + u * (max_mib - min_mib)`` MiB.
    ``delta`` mode: the target changes by ``a * delta_frac * (max_mib - min_mib)`` MiB.

    Memory targets are ceilings. The host projects them only when the memory its guests claim
    (consumed, host-swapped and 2 % growth head room, each bounded by its target) exceeds
    machine memory less the reserve and a 6 % margin: every guest keeps ``min_mib`` and the rest
    scales down as far as needed (``docs/model.md``, step 2).
    Finite values outside [-1, 1] are clipped; NaN or infinite values raise ``ValueError``.
    Any real dtype (float or int), a list or an ndarray is fine; a dict, text, complex or bool
    values raise ``ConfigTypeError`` (a ``ValueError`` and a ``TypeError``) rather than being
    cast. A rejected step leaves the env as it was. Actions of padding slots are ignored.

    ## Observation Space

    ``Box(0, 1, (max_guests * 22 + 6,), float32)``: 22 features per guest slot (guest-major),
    then 6 host features. Only what a balloon driver and the host can report; never the true
    working set. Padding slots are zero.

    | index | name | unit / normalisation | min | max |
    |---|---|---|---|---|
    | 22g+0 | present | 1 real guest, 0 padding | 0 | 1 |
    | 22g+1 | balloon | balloon size / mem_mib | 0 | 1 |
    | 22g+2 | balloon_target | balloon target / mem_mib | 0 | 1 |
    | 22g+3 | usable | (mem_mib - balloon) / mem_mib | 0 | 1 |
    | 22g+4 | free | guest-free memory / mem_mib | 0 | 1 |
    | 22g+5 | available | (free + page cache) / mem_mib | 0 | 1 |
    | 22g+6 | cache | page cache / mem_mib | 0 | 1 |
    | 22g+7 | swap_in | guest swap-in this step / max per step | 0 | 1 |
    | 22g+8 | swap_out | guest swap-out this step / max per step | 0 | 1 |
    | 22g+9 | major_faults | log10(1 + faults in the step) / 8 | 0 | 1 |
    | 22g+10 | oom | 1 if the OOM killer fired this step | 0 | 1 |
    | 22g+11 | alloc_stall | allocation stall / dt_s | 0 | 1 |
    | 22g+12 | cpu_util | pCPU time granted / active vCPUs | 0 | 1 |
    | 22g+13 | active_vcpus | active vCPUs / vcpus | 0 | 1 |
    | 22g+14 | driver_up | 1 if the driver answered this step | 0 | 1 |
    | 22g+15 | active_estimate | host's sampled active fraction (0 without sampling) | 0 | 1 |
    | 22g+16 | mem_size | mem_mib / host mem_mib | 0 | 1 |
    | 22g+17 | min | min_mib / mem_mib | 0 | 1 |
    | 22g+18 | floor | max(min_mib, mem_mib - balloon cap) / mem_mib | 0 | 1 |
    | 22g+19 | max | max_mib / mem_mib | 0 | 1 |
    | 22g+20 | shares | shares / host's total shares | 0 | 1 |
    | 22g+21 | vcpus | vcpus / max(vcpus, pcpus) | 0 | 1 |
    | 22G+0 | host_free | free machine memory / host memory | 0 | 1 |
    | 22G+1 | host_state | ESX state / 3 (high, soft, hard, low) | 0 | 1 |
    | 22G+2 | host_swap_out | host swap-out this step / max per step | 0 | 1 |
    | 22G+3 | host_swap_in | host swap-in this step / max per step | 0 | 1 |
    | 22G+4 | pcpu_load | pCPU time granted / pcpus | 0 | 1 |
    | 22G+5 | host_capacity | memory the scheduler may hand out / host memory | 0 | 1 |

    ## Rewards

    Chosen by the scenario's ``reward.name``; default ``weighted_throughput``: the share-weighted
    mean of guest throughput (fraction of demanded work done, in [0, 1]), minus ``w_oom`` per
    OOM kill, ``w_host_swap_gib`` per GiB host-swapped and ``w_sla`` per SLA miss. The parts are
    in ``info`` unweighted (``score``, ``ooms``, ``host_swap_gib``, ``sla_misses``, ...).

    ## Starting State

    Guests booted at the host's initial allocation (every guest at ``max_mib``, scaled down to
    fit), balloons at the matching size, footprints resident as far as they fit, page cache
    filled, free memory untouched. Random: workload phase jitter and burst states.

    ## Episode End

    No termination (the host runs on). Truncation after ``max_episode_steps`` steps (default the
    scenario's ``episode_steps``, 360 = 1 h).

    ## Arguments

    ``gymnasium.make("BalloonGym/IdleTax-v1", render_mode=None, max_episode_steps=None)``, or
    ``BalloonEnv(scenario=..., max_guests=None, render_mode=None, max_episode_steps=None)``:
    ``scenario`` is a shipped name, a path to a YAML file or a ``ScenarioConfig``; ``max_guests``
    pads the guest slots (to share a policy across scenarios); ``render_mode="ansi"`` returns a
    table of the host and its guests; ``trace_split`` ("train", "heldout", "all") overrides which
    real VMs trace-replay guests draw (evaluation uses "heldout"); ``backend`` is ``"numpy"``
    (the reference, default) or ``"numba"``: compiled kernels with the same numbers, ~4.5x
    faster for one env (``docs/speed.md``; needs ``pip install 'balloon-gym[fast]'``; the first
    step compiles them once per machine). Integer arguments take ``int`` or numpy integers
    (not floats or bools: ``max_guests`` in [1, 1024], ``max_episode_steps`` in [1, 10**9]);
    a bad argument raises :class:`~balloon_gym.config.ConfigError` (``ConfigTypeError`` for a
    wrong type) naming it. ``reset`` takes ``seed`` None or a non-negative integer and no
    ``options``. Observations returned by ``reset`` and ``step`` are arrays the caller owns.

    ``info`` holds the reward parts and the exact memory accounting (``kernel_mib``,
    ``anon_resident_mib``, ``cache_mib``, ``free_mib``, ``balloon_mib``, ``mem_mib``,
    ``consumed_mib``, ``host_free_mib``, ...); see :class:`balloon_gym.envs.batch.StepInfo`.

    ## Version History

    * v0: initial release (balloon-gym 0.1).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        scenario: str | Path | ScenarioConfig = "idle-tax",
        max_guests: int | None = None,
        render_mode: str | None = None,
        max_episode_steps: int | None = None,
        trace_split: str | None = None,
        backend: str = "numpy",
    ) -> None:
        check_choice(render_mode, "render_mode", self.metadata["render_modes"], none_ok=True)
        (self.scenario,) = resolve_scenarios(scenario, 1)
        self._batch = Batch(
            build_params([self.scenario], max_guests, trace_split), max_episode_steps, backend
        )
        self.max_guests = self._batch.params.max_guests
        self.observation_space = observation_space(self.max_guests)
        self.action_space = action_space(self.max_guests)
        self.render_mode = render_mode
        self.guest_names = [g.name for g in self.scenario.expanded_guests()]

    @property
    def params(self):
        """The scenario's arrays (batch size one)."""
        return self._batch.params

    @property
    def state(self):
        """The core state (batch size one); read-only by convention."""
        return self._batch.state

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; see the class docstring for the starting state.

        ``seed`` is None or a non-negative integer; there are no ``options`` (None or ``{}``).
        The observation is an array the caller owns (no later call writes to it).
        """
        seed = check_seed(seed)
        check_reset_options(options)
        super().reset(seed=seed)
        obs = self._batch.reset(self.np_random)
        return obs[0], {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """One control interval.

        Raises:
            ConfigTypeError: For an action that is not an array of real numbers (a dict, a
                string, complex or bool values); a ``ValueError`` and a ``TypeError``.
            ValueError: For a wrong shape or a NaN or infinite entry. A rejected step leaves the
                env as it was.
        """
        action = as_action_array(action)
        if action.shape != self.action_space.shape:
            raise ValueError(
                f"action has shape {action.shape}, expected {self.action_space.shape}: "
                "memory actions for every guest slot, then vCPU actions"
            )
        action = action[None, :]
        reward, terminated, truncated, info = self._batch.step(action, self.np_random)
        obs = self._batch.observe()
        return obs[0], float(reward[0]), bool(terminated[0]), bool(truncated[0]), info.row(0)

    def render(self) -> str | None:
        """The ansi table of the host and its guests (``render_mode="ansi"``)."""
        if self.render_mode is None or self._batch.state is None:
            return None
        return render_host(self._batch.state, self._batch.params, 0, self.guest_names)
