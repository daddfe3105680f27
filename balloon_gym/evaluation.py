"""BalloonBench evaluation: run policies on scenarios over fixed seeds, write the results.

Protocol (DESIGN 5):

* **Seeds.** Evaluation seeds are ``10000 .. 10000 + N - 1`` (training uses seeds below
  10,000). Each (scenario, agent) pair runs as one batch: one
  :class:`~balloon_gym.envs.vector.BalloonVectorEnv` with ``num_envs = N``, reset once with
  ``seed=seeds[0]``, stepped for exactly one episode per env; env ``i`` is labelled
  ``seeds[i]``. The vector env draws every host's randomness from one generator, so an
  episode's realisation depends on the whole seed list: **the seed set is the unit of
  reproducibility** (the same list gives identical results; a different list changes every
  episode).
* **Common random numbers.** The simulator draws a fixed number of random numbers per step
  whatever the actions, and no policy touches the env's generator, so every agent sees the same
  workload realisation for the same scenario and seeds (up to the consequences of its own
  actions, e.g. an OOM kill restarting a workload).
* **Held-out traces.** Trace-replay guests draw the held-out VMs (``trace_split="heldout"``);
  training draws the others. ``evaluate.py --trace-split train|all`` overrides this (e.g. for
  a trace bank of your own); such results are not comparable with held-out ones.
* **Score.** The episode's mean of ``info["score"]``, the share-weighted mean guest throughput.
  The leaderboard (:mod:`balloon_gym.leaderboard`) normalises it per scenario between
  ``proportional_share`` (0) and ``clairvoyant`` (1); those two reference agents are added to
  every run unless ``--no-references`` is given.

The command line (``python evaluate.py --help``) is :mod:`balloon_gym.evaluation_cli`; what it
does is importable from here: :func:`run_batch` (one batch), :func:`evaluate` (agents x
scenarios, after :func:`check_agents_fit` has checked every pair), :func:`write_results_csv` /
:func:`read_results_csv`.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from balloon_gym import __version__
from balloon_gym.agents import make_agent
from balloon_gym.agents.base import Policy
from balloon_gym.core.privileged import true_demand
from balloon_gym.core.state import host_free_mib
from balloon_gym.envs.vector import BalloonVectorEnv
from balloon_gym.metrics import METRIC_NAMES, EpisodeMetrics
from balloon_gym.scenarios import ENV_VERSION, load_scenario

EVAL_SEED_START = 10_000
"""First evaluation seed; training uses seeds below it."""

DEFAULT_NUM_SEEDS = 10
"""Evaluation seeds per scenario."""

REFERENCE_AGENTS: tuple[str, ...] = ("proportional_share", "clairvoyant")
"""The normalisation's 0 and 1."""

EVAL_TRACE_SPLIT = "heldout"
"""Trace-replay guests draw held-out VMs in evaluation (training draws the others)."""

#: Columns of ``results.csv``, in order.
RESULT_COLUMNS: tuple[str, ...] = (
    "scenario",
    "agent",
    "seed",
    *METRIC_NAMES,
    "wall_s",
    "env_version",
    "package_version",
)

#: Fields a timeline records per step: state fields and two derived ones.
TIMELINE_FIELDS: tuple[str, ...] = (
    "alloc_target",
    "balloon",
    "usable",
    "working_set",
    "throughput",
    "host_free_frac",
)

PolicyFactory = Callable[[BalloonVectorEnv], Policy]
"""Builds a policy for an env (after the env's reset); e.g. ``lambda env: make_agent(...)``."""


def evaluation_seeds(num_seeds: int = DEFAULT_NUM_SEEDS) -> tuple[int, ...]:
    """The fixed evaluation seeds ``10000 .. 10000 + num_seeds - 1``.

    Raises:
        ValueError: If ``num_seeds < 1``.
    """
    if num_seeds < 1:
        raise ValueError(f"num_seeds must be >= 1, got {num_seeds}")
    return tuple(range(EVAL_SEED_START, EVAL_SEED_START + num_seeds))


def trained_guest_slots(agent: str) -> int | None:
    """Guest slots a trained agent ``kind:DIR`` was trained with (its ``policy.json``), or
    None for a baseline (which acts on any number of guests).

    Raises:
        ValueError: If ``kind:DIR`` holds no valid export (the message names the file).
    """
    if ":" not in agent:
        return None
    from balloon_gym.agents.trained import load_trained

    kind, _, path = agent.partition(":")
    return int(load_trained(kind, path, None).trained_guests)


def check_agents_fit(agents: Sequence[str], scenarios: Sequence[str]) -> None:
    """Fail before any episode if a trained agent is narrower than a scenario.

    A policy trained with ``G`` guest slots acts on scenarios of at most ``G`` guests (see
    :mod:`balloon_gym.agents.trained`); checking every (agent, scenario) pair first keeps a
    long run from failing after the earlier scenarios ran.

    Raises:
        ValueError: Naming the first agent and scenario that do not fit, and the fix.
        balloon_gym.config.ConfigError: For a scenario that does not load.
    """
    slots = {a: trained_guest_slots(a) for a in agents}
    if all(v is None for v in slots.values()):
        return
    for scenario in scenarios:
        cfg = load_scenario(scenario)
        guests = len(cfg.expanded_guests())
        for agent, width in slots.items():
            if width is not None and guests > width:
                raise ValueError(
                    f"agent {agent!r} was trained with {width} guest slots but scenario "
                    f"{scenario!r} has {guests} guests; evaluate it on scenarios of at most "
                    f"{width} guests, or train it on a scenario at least as wide"
                )


@dataclass
class BatchResult:
    """One batch of episodes: ``len(seeds)`` hosts of one scenario under one policy.

    Attributes:
        scenario: Scenario name.
        seeds: Seed label of each env.
        metrics: Episode metrics (:data:`balloon_gym.metrics.METRIC_NAMES`), each ``(N,)``.
        wall_s: Wall-clock time of the batch (policy and simulator), s.
        trace: Recorded per-step arrays, ``(steps, N, max_guests)`` per guest field and
            ``(steps, N)`` for ``host_free_frac``; empty unless asked for.
        guest_names: Names of the scenario's guests (slot order).
        dt_s: Control interval, s.
    """

    scenario: str
    seeds: tuple[int, ...]
    metrics: dict[str, np.ndarray]
    wall_s: float
    trace: dict[str, np.ndarray] = field(default_factory=dict)
    guest_names: list[str] = field(default_factory=list)
    dt_s: float = 10.0


def _record(env: BalloonVectorEnv, fields: Sequence[str]) -> dict[str, np.ndarray]:
    """The requested per-step fields of the batch's current state (copies)."""
    s, p = env.batch.state, env.batch.params
    out: dict[str, np.ndarray] = {}
    for name in fields:
        if name == "usable":
            value = p.mem_mib - s.balloon
        elif name == "working_set":  # the hidden truth: kernel plus the hot set
            d = true_demand(s, p)
            value = p.kernel_mib + d.wss_mib
        elif name == "host_free_frac":
            value = host_free_mib(s, p) / p.host_mem_mib[:, 0]
        else:
            value = getattr(s, name)
        out[name] = np.array(value, dtype=np.float64)
    return out


def run_batch(
    policy: Policy | PolicyFactory,
    scenario: str,
    seeds: Sequence[int],
    max_episode_steps: int | None = None,
    record: Sequence[str] = (),
    trace_split: str | None = EVAL_TRACE_SPLIT,
) -> BatchResult:
    """Run one episode per seed of ``scenario`` under ``policy``, as one batch.

    Args:
        policy: A policy, or a factory called with the env after its reset (needed for
            policies bound to the env, e.g. ``clairvoyant``).
        scenario: Shipped scenario name or YAML path.
        seeds: Seed labels; the batch is reset with ``seed=seeds[0]`` (see the module
            docstring: the seed list is the unit of reproducibility).
        max_episode_steps: Episode length; default the scenario's ``episode_steps``.
        record: Per-step fields to keep for every env (:data:`TIMELINE_FIELDS` or any
            ``State`` field).
        trace_split: Trace VMs that trace-replay guests draw: ``"heldout"`` (evaluation, the
            default), ``"train"``, ``"all"``, or None for each scenario's own.

    Returns:
        The batch's episode metrics, wall time and recorded trace.
    """
    env = BalloonVectorEnv(
        num_envs=len(seeds),
        scenario=scenario,
        max_episode_steps=max_episode_steps,
        trace_split=trace_split,
    )
    start = time.perf_counter()
    obs, _ = env.reset(seed=int(seeds[0]))
    agent = policy if hasattr(policy, "predict") else policy(env)  # type: ignore[operator]
    params = env.batch.params
    acc = EpisodeMetrics(params.guest_mask)
    steps = int(env.batch.max_steps.max())
    episode_start = np.ones(len(seeds), dtype=bool)
    state: Any = None
    trace: dict[str, list[np.ndarray]] = {name: [] for name in record}
    for _ in range(steps):
        actions, state = agent.predict(
            obs, state=state, episode_start=episode_start, deterministic=True
        )
        obs, _, _, truncated, info = env.step(np.asarray(actions))
        acc.update(info, env.batch.state)
        for name, value in _record(env, record).items():
            trace[name].append(value)
        episode_start = np.zeros(len(seeds), dtype=bool)
    if not truncated.all():  # every env of a batch has the same length
        raise RuntimeError(f"episodes of {scenario!r} did not end together after {steps} steps")
    wall_s = time.perf_counter() - start
    return BatchResult(
        scenario=env.scenarios[0].name,
        seeds=tuple(int(s) for s in seeds),
        metrics=acc.result(),
        wall_s=wall_s,
        trace={name: np.stack(values) for name, values in trace.items()},
        guest_names=[g.name for g in env.scenarios[0].expanded_guests()],
        dt_s=float(params.dt_s[0, 0]),
    )


def batch_rows(result: BatchResult, agent: str) -> list[dict[str, Any]]:
    """One results row per episode of a batch (``wall_s`` is the batch's share per episode)."""
    rows = []
    n = len(result.seeds)
    for i, seed in enumerate(result.seeds):
        row: dict[str, Any] = {"scenario": result.scenario, "agent": agent, "seed": seed}
        row.update({k: float(result.metrics[k][i]) for k in METRIC_NAMES})
        row["wall_s"] = result.wall_s / n
        row["env_version"] = f"v{ENV_VERSION}"
        row["package_version"] = __version__
        rows.append(row)
    return rows


@dataclass
class Evaluation:
    """Results of :func:`evaluate`.

    Attributes:
        rows: One dict per episode with the :data:`RESULT_COLUMNS`.
        timelines: ``(scenario, agent) -> BatchResult`` with a recorded trace, for the pairs
            asked for.
        wall_s: Total wall time, s.
    """

    rows: list[dict[str, Any]]
    timelines: dict[tuple[str, str], BatchResult]
    wall_s: float


class _NoBar:
    """Stands in for a tqdm bar when progress is off or tqdm is not installed."""

    def set_postfix_str(self, text: str) -> None:
        """Ignored."""

    def update(self, n: int) -> None:
        """Ignored."""

    def close(self) -> None:
        """Ignored."""


def _progress(total: int, enabled: bool) -> Any:
    """A tqdm bar on stderr (tqdm is in the ``train`` extra), or a silent stand-in."""
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc="BalloonBench", unit="batch", leave=False)


def evaluate(
    agents: Sequence[str],
    scenarios: Sequence[str],
    seeds: Sequence[int],
    max_episode_steps: int | None = None,
    timeline_agents: Sequence[str] = (),
    agent_kwargs: dict[str, dict[str, Any]] | None = None,
    progress: bool = False,
    trace_split: str | None = EVAL_TRACE_SPLIT,
) -> Evaluation:
    """Evaluate every agent on every scenario, one batch per pair, in a fixed order.

    Args:
        agents: Names of :data:`balloon_gym.agents.AGENTS`.
        scenarios: Scenario names (or YAML paths).
        seeds: Seed labels (see the module docstring).
        max_episode_steps: Episode length; default each scenario's.
        timeline_agents: Agents whose batches keep a per-step trace of
            :data:`TIMELINE_FIELDS` (for the timeline plots).
        agent_kwargs: Extra constructor arguments per agent name.
        progress: Show a progress bar on stderr.
        trace_split: Trace VMs that trace-replay guests draw (see :func:`run_batch`).

    Returns:
        Rows (scenario-major, then agent, then seed) and the recorded timelines.

    Raises:
        ValueError: Before any episode, if a trained agent is narrower than a scenario
            (:func:`check_agents_fit`).
    """
    check_agents_fit(agents, scenarios)
    kwargs = agent_kwargs or {}
    rows: list[dict[str, Any]] = []
    timelines: dict[tuple[str, str], BatchResult] = {}
    start = time.perf_counter()
    pairs = [(s, a) for s in scenarios for a in agents]
    bar = _progress(len(pairs), progress)
    for scenario, agent in pairs:
        bar.set_postfix_str(f"{scenario} / {agent}")
        record = TIMELINE_FIELDS if agent in timeline_agents else ()

        def factory(env: BalloonVectorEnv, name: str = agent) -> Policy:
            return make_agent(name, env, **kwargs.get(name, {}))

        result = run_batch(
            factory, scenario, seeds, max_episode_steps, record=record, trace_split=trace_split
        )
        rows.extend(batch_rows(result, agent))
        if record:
            timelines[(result.scenario, agent)] = result
        bar.update(1)
    bar.close()
    return Evaluation(rows=rows, timelines=timelines, wall_s=time.perf_counter() - start)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)  # shortest round-trip form: deterministic, exact
    return str(value)


def write_results_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write rows with the :data:`RESULT_COLUMNS` (floats in round-trip form)."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(RESULT_COLUMNS)
        for row in rows:
            writer.writerow([_format(row[c]) for c in RESULT_COLUMNS])
    return path


def read_results_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``results.csv``: ``scenario``, ``agent``, version columns as str, ``seed``
    as int, every other column as float.

    Raises:
        ValueError: If a required column is missing.
    """
    with Path(path).open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"scenario", "agent", "seed", "score"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
        text = {"scenario", "agent", "env_version", "package_version"}
        rows = []
        for raw in reader:
            row: dict[str, Any] = {}
            for key, value in raw.items():
                if key in text:
                    row[key] = value
                elif key == "seed":
                    row[key] = int(value)
                else:
                    row[key] = float(value)
            rows.append(row)
    return rows
