"""The BalloonBench leaderboard: normalised scores, IQM with bootstrap intervals, plots.

From the rows of a ``results.csv`` (:mod:`balloon_gym.evaluation`):

* per scenario, the references are the mean scores of ``proportional_share`` (low) and
  ``clairvoyant`` (high) over the run's seeds, and every episode's score is normalised to
  ``(score - low) / (high - low)`` (:func:`balloon_gym.stats.normalise_scores`);
* per agent, the interquartile mean (IQM) of its normalised scores over all (seed, scenario)
  pairs with a 95 % stratified bootstrap interval (:func:`balloon_gym.stats.aggregate_table`,
  rliable's method), and per scenario over its seeds;
* the probability of improvement of each agent over the best classic baseline (the real
  systems' policies, :data:`balloon_gym.agents.CLASSIC_AGENTS`, best by aggregate IQM), with its
  interval (:func:`balloon_gym.stats.probability_of_improvement_ci`);
* beside them, per episode: mean OOM kills, host swap GiB, SLA misses, fairness, balloon churn,
  and the wall time.

Without both reference agents, or on a scenario where they score the same, raw scores are
aggregated instead and the table says so. Plots use matplotlib's Agg canvas directly (no global
backend change).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from balloon_gym import stats
from balloon_gym.agents import CLASSIC_AGENTS
from balloon_gym.scenarios import ENV_VERSION

ENV_TAG = f"v{ENV_VERSION}"
"""The environment version a leaderboard made by this package scores."""

LOW_AGENT, HIGH_AGENT = "proportional_share", "clairvoyant"
_SIDE = ("ooms", "host_swap_gib", "sla_misses", "fairness", "balloon_churn_gib")
_DEGENERATE = 1e-9
NARROW_GAP = 0.01
"""Reference gaps (clairvoyant - proportional_share mean score) below this get a note."""


@dataclass
class Entry:
    """One agent's line in a table (aggregate or one scenario).

    Attributes:
        iqm: IQM of the (normalised) scores with its 95 % interval.
        poi: P(agent > best classic) with its interval; None for the best classic itself.
        score: Mean raw score per episode.
        side: Mean per episode of OOMs, host swap GiB, SLA misses, fairness, churn GiB.
        wall_s: Wall time of the agent's episodes, s (sum).
    """

    iqm: stats.AggregateResult
    poi: stats.AggregateResult | None
    score: float
    side: dict[str, float]
    wall_s: float


@dataclass
class Leaderboard:
    """Everything ``leaderboard.md`` shows."""

    agents: list[str]  # ranked by aggregate IQM, best first
    scenarios: list[str]  # in run order
    seeds: list[int]
    normalised: bool
    references: dict[str, tuple[float, float]]  # scenario -> (low, high) mean raw scores
    excluded: list[str]  # scenarios left out of the normalised aggregate (degenerate)
    best_classic: str | None
    aggregate: dict[str, Entry]
    per_scenario: dict[str, dict[str, Entry]]
    notes: list[str] = field(default_factory=list)


def _grid(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[str], list[int], dict]:
    """Agents, scenarios, seeds and ``(scenario, agent) -> rows sorted by seed``.

    Raises:
        ValueError: If some (scenario, agent) pair is missing or has other seeds.
    """
    if not rows:
        raise ValueError("no results rows; run an evaluation first")
    agents = list(dict.fromkeys(r["agent"] for r in rows))
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        cells.setdefault((r["scenario"], r["agent"]), []).append(r)
    seeds = sorted({int(r["seed"]) for r in rows})
    for s in scenarios:
        for a in agents:
            got = sorted(int(r["seed"]) for r in cells.get((s, a), []))
            if got != seeds:
                raise ValueError(
                    f"results are not a full grid: {a!r} on {s!r} has seeds {got}, expected "
                    f"{seeds}; evaluate every agent on every scenario with the same seeds"
                )
    for key in cells:
        cells[key].sort(key=lambda r: int(r["seed"]))
    return agents, scenarios, seeds, cells


def _column(cells: dict, scenario: str, agent: str, key: str) -> np.ndarray:
    return np.array([float(r[key]) for r in cells[(scenario, agent)]])


def build_leaderboard(
    rows: Sequence[dict[str, Any]], reps: int = 2000, seed: int = 0
) -> Leaderboard:
    """Aggregate result rows into the leaderboard's numbers.

    Args:
        rows: One dict per episode (``results.csv`` rows).
        reps: Bootstrap replicates.
        seed: Bootstrap seed (results are deterministic for a given seed).

    Raises:
        ValueError: If the rows are not a full agents x scenarios x seeds grid.
    """
    agents, scenarios, seeds, cells = _grid(rows)
    raw = {a: np.stack([_column(cells, s, a, "score") for s in scenarios], axis=1) for a in agents}
    notes: list[str] = []
    references: dict[str, tuple[float, float]] = {}
    excluded: list[str] = []
    normalised = LOW_AGENT in agents and HIGH_AGENT in agents
    if normalised:
        for j, s in enumerate(scenarios):
            low, high = float(raw[LOW_AGENT][:, j].mean()), float(raw[HIGH_AGENT][:, j].mean())
            references[s] = (low, high)
            if abs(high - low) < _DEGENERATE:
                excluded.append(s)
        narrow = {
            s: high - low
            for s, (low, high) in references.items()
            if s not in excluded and abs(high - low) < NARROW_GAP
        }
        for s, gap in narrow.items():
            notes.append(
                f"{s}: the references are only {gap:.4f} apart, so normalised scores there "
                f"magnify raw differences {1 / abs(gap):.0f}-fold; the IQM trims such outliers, "
                "but read that scenario's table in raw scores too"
            )
        if excluded:
            notes.append(
                f"{', '.join(excluded)}: {HIGH_AGENT} and {LOW_AGENT} score the same, so the "
                "normalised score is undefined there; raw scores are shown and the scenario is "
                "left out of the aggregate"
            )
    else:
        notes.append(
            f"normalisation needs both {LOW_AGENT} and {HIGH_AGENT} in the run; raw scores "
            "are aggregated instead"
        )
    kept = [j for j, s in enumerate(scenarios) if s not in excluded] if normalised else []
    if normalised and not kept:
        normalised = False
    scaled = {a: _scale(raw[a], scenarios, references, excluded, normalised) for a in agents}
    agg_scores = {a: scaled[a][:, kept] if normalised else scaled[a] for a in agents}
    table = stats.aggregate_table(agg_scores, reps=reps, seed=seed, metrics=("iqm",))
    classic = [a for a in agents if a in CLASSIC_AGENTS]
    best = max(classic, key=lambda a: table[a]["iqm"].point) if classic else None

    def entry(a: str, scores: np.ndarray, best_scores: np.ndarray | None, cols: list[int]):
        iqm = stats.stratified_bootstrap_ci({a: scores}, stats.iqm, reps=reps, seed=seed)[a]
        poi = None
        if best_scores is not None and a != best:
            poi = stats.probability_of_improvement_ci(scores, best_scores, reps=reps, seed=seed)
        picked = [scenarios[j] for j in cols]
        side = {k: float(np.mean([_column(cells, s, a, k) for s in picked])) for k in _SIDE}
        wall = float(np.sum([_column(cells, s, a, "wall_s") for s in picked]))
        return Entry(iqm, poi, float(raw[a][:, cols].mean()), side, wall)

    all_cols = list(range(len(scenarios)))
    aggregate = {
        a: entry(a, agg_scores[a], agg_scores[best] if best else None, all_cols) for a in agents
    }
    per_scenario = {
        s: {
            a: entry(a, scaled[a][:, [j]], scaled[best][:, [j]] if best else None, [j])
            for a in agents
        }
        for j, s in enumerate(scenarios)
    }
    ranked = sorted(agents, key=lambda a: -aggregate[a].iqm.point)
    return Leaderboard(
        agents=ranked,
        scenarios=scenarios,
        seeds=seeds,
        normalised=normalised,
        references=references,
        excluded=excluded,
        best_classic=best,
        aggregate=aggregate,
        per_scenario=per_scenario,
        notes=notes,
    )


def _scale(
    raw: np.ndarray,
    scenarios: list[str],
    references: dict[str, tuple[float, float]],
    excluded: list[str],
    normalised: bool,
) -> np.ndarray:
    """Normalised scores ``(num_seeds, num_scenarios)``; raw where undefined."""
    if not normalised:
        return raw
    out = raw.copy()
    for j, s in enumerate(scenarios):
        if s not in excluded:
            low, high = references[s]
            out[:, j] = stats.normalise_scores(raw[:, j], low, high, scenario=s)
    return out


def write_leaderboard(
    rows: Sequence[dict[str, Any]],
    out_dir: str | Path,
    timelines: Sequence[Any] = (),
    timeline_agent: str | None = None,
    meta: dict[str, Any] | None = None,
    reps: int = 2000,
) -> list[str]:
    """Write ``leaderboard.md``, ``scores.png``, ``scores_per_scenario.png`` and one
    ``timeline_<scenario>.png`` per recorded batch into ``out_dir``.

    Returns:
        The names of the files written.
    """
    out = Path(out_dir)
    board = build_leaderboard(rows, reps=reps)
    files = ["leaderboard.md"]
    plot_scores(board, out / "scores.png")
    plot_scores_per_scenario(board, out / "scores_per_scenario.png")
    files += ["scores.png", "scores_per_scenario.png"]
    timeline_files = []
    for result in timelines:
        name = f"timeline_{result.scenario}.png"
        title = f"{result.scenario}: {timeline_agent}, seed {result.seeds[0]}"
        plot_timeline([result], out / name, titles=[title])
        timeline_files.append(name)
    files += timeline_files
    text = render_markdown(board, meta or {}, timeline_files)
    (out / "leaderboard.md").write_text(text, encoding="utf-8")
    return files


def _ci(r: stats.AggregateResult | None, digits: int = 3) -> str:
    if r is None:
        return "—"
    return f"{r.point:.{digits}f} [{r.lower:.{digits}f}, {r.upper:.{digits}f}]"


def _row(rank: Any, agent: str, e: Entry, extra: Sequence[str] = ()) -> str:
    side = e.side
    cells = [
        str(rank),
        f"`{agent}`",
        _ci(e.iqm),
        _ci(e.poi, 2),
        f"{e.score:.4f}",
        f"{side['ooms']:.2f}",
        f"{side['host_swap_gib']:.2f}",
        f"{side['sla_misses']:.1f}",
        f"{side['fairness']:.3f}",
        *extra,
        f"{e.wall_s:.1f}",
    ]
    return "| " + " | ".join(cells) + " |"


_TRACE_SPLIT_TEXT = {
    "heldout": "the held-out VMs",
    "train": "the training VMs (not the held-out ones: not comparable with held-out results)",
    "all": "all VMs, training and held-out (not comparable with held-out results)",
}
"""How the leaderboard's header names ``run.json``'s ``trace_split``."""


def render_markdown(board: Leaderboard, meta: dict[str, Any], timelines: Sequence[str]) -> str:
    """The text of ``leaderboard.md``."""
    what = "normalised score" if board.normalised else "raw score"
    best = f"`{board.best_classic}`" if board.best_classic else "(no classic baseline)"
    seeds = board.seeds
    steps = meta.get("max_episode_steps")
    split = str(meta.get("trace_split", "heldout"))
    length = f"{steps} steps" if steps else "each scenario's own"
    lines = [
        f"# BalloonBench {meta.get('env_version', '')} leaderboard".replace("  ", " "),
        "",
        f"Command: `{meta.get('command', '')}`  ",
        f"Seeds: {seeds[0]}..{seeds[-1]} ({len(seeds)} per scenario; the seed set is the "
        f"unit of reproducibility); env {meta.get('env_version', '')}, balloon-gym "
        f"{meta.get('package_version', '')}; episode length: {length}; trace-replay guests draw "
        f"{_TRACE_SPLIT_TEXT.get(split, f'the {split} VMs')}.",
        "",
        "Score: episode mean of the share-weighted guest throughput (fraction of demanded work "
        "done). Normalised per scenario as (score - proportional_share) / (clairvoyant - "
        "proportional_share), the references being those agents' mean scores on the same "
        "seeds (0 = proportional share, 1 = clairvoyant). IQM over all (seed, scenario) pairs "
        "with a 95 % stratified bootstrap interval; P(> best) is the probability of "
        f"improvement over the best classic baseline by aggregate IQM, here {best}. OOMs, host "
        "swap (GiB), SLA misses and fairness (Jain's index of the guests' mean throughputs) are "
        "means per episode; wall is the agent's total evaluation time in seconds.",
        "",
        *[f"> Note: {n}" for n in board.notes],
        "",
        "## Aggregate",
        "",
        f"| rank | agent | IQM {what} [95 % CI] | P(> best) [95 % CI] | mean score | OOMs | "
        "host swap GiB | SLA misses | fairness | wall s |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [_row(i + 1, a, board.aggregate[a]) for i, a in enumerate(board.agents)]
    lines += ["", "![aggregate scores](scores.png)", "", "## Per scenario", ""]
    for s in board.scenarios:
        ref = board.references.get(s)
        head = f"### {s}"
        lines += [head, ""]
        if ref:
            lines += [
                f"References: proportional_share {ref[0]:.4f}, clairvoyant {ref[1]:.4f}"
                + (" (degenerate: raw scores below)" if s in board.excluded else ""),
                "",
            ]
        label = what if s not in board.excluded else "raw score"
        lines += [
            f"| rank | agent | IQM {label} [95 % CI] | P(> best) [95 % CI] | mean score | OOMs "
            "| host swap GiB | SLA misses | fairness | churn GiB | wall s |",
            "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        entries = board.per_scenario[s]
        order = sorted(entries, key=lambda a: -entries[a].iqm.point)
        for i, a in enumerate(order):
            e = entries[a]
            lines.append(_row(i + 1, a, e, [f"{e.side['balloon_churn_gib']:.1f}"]))
        lines.append("")
    lines += ["![per-scenario scores](scores_per_scenario.png)", ""]
    if timelines:
        lines += ["## Allocation timelines", ""]
        lines += [f"![{Path(t).stem}]({t})" for t in timelines]
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Plots (matplotlib's Agg canvas, no global backend change)
# --------------------------------------------------------------------------------------

#: Free-memory lines of the host states (ESX), fraction of host memory.
STATE_LINES: tuple[tuple[float, str], ...] = (
    (0.06, "high"),
    (0.04, "soft"),
    (0.02, "hard"),
    (0.01, "low"),
)


def _figure(width_in: float, height_in: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _point_ranges(ax: Any, names: list[str], results: list[stats.AggregateResult]) -> None:
    """Horizontal point-and-interval plot, best at the top, x clipped to a readable range."""
    y = np.arange(len(names))[::-1]
    points = np.array([r.point for r in results])
    lower = np.array([r.lower for r in results])
    upper = np.array([r.upper for r in results])
    lo_lim = max(min(-0.25, float(lower.min()) - 0.05), -1.5)
    hi_lim = min(max(1.15, float(upper.max()) + 0.05), 2.0)
    clipped = np.clip(points, lo_lim, hi_lim)
    ax.hlines(y, np.clip(lower, lo_lim, hi_lim), np.clip(upper, lo_lim, hi_lim), lw=3, alpha=0.5)
    ax.plot(clipped, y, "o", ms=4)
    for yi, p, c in zip(y, points, clipped, strict=True):
        if p != c:
            ax.annotate(f"{p:.2f}", (c, yi), xytext=(4, 3), textcoords="offset points", fontsize=7)
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlim(lo_lim, hi_lim)
    for x in (0.0, 1.0):
        ax.axvline(x, color="grey", lw=0.8, ls=":")


def plot_scores(board: Leaderboard, path: str | Path) -> None:
    """Aggregate IQM with its 95 % interval per agent, best first."""
    fig = _figure(6.0, 0.35 * len(board.agents) + 1.2)
    ax = fig.add_subplot()
    _point_ranges(ax, board.agents, [board.aggregate[a].iqm for a in board.agents])
    what = "normalised score" if board.normalised else "raw score"
    ax.set_xlabel(f"IQM {what} (95 % stratified bootstrap CI)")
    ax.set_title(
        f"BalloonBench {ENV_TAG}, {len(board.scenarios)} scenarios x {len(board.seeds)} seeds"
    )
    fig.savefig(path, dpi=100)


def plot_scores_per_scenario(board: Leaderboard, path: str | Path) -> None:
    """One panel per scenario: each agent's IQM over seeds with its interval."""
    n = len(board.scenarios)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig = _figure(3.2 * cols, 0.28 * len(board.agents) * rows + 1.0 * rows)
    for k, s in enumerate(board.scenarios):
        ax = fig.add_subplot(rows, cols, k + 1)
        entries = board.per_scenario[s]
        _point_ranges(ax, board.agents, [entries[a].iqm for a in board.agents])
        ax.set_title(s, fontsize=9)
        if k % cols:
            ax.set_yticklabels([])
    fig.suptitle("IQM over seeds per scenario (0 = proportional share, 1 = clairvoyant)")
    fig.savefig(path, dpi=90)


def _shown_guests(num_guests: int, limit: int) -> np.ndarray:
    """Up to ``limit`` guest slots spread over all of them (every kind of a large host)."""
    if num_guests <= limit:
        return np.arange(num_guests)
    return np.unique(np.linspace(0, num_guests - 1, limit).round().astype(int))


def plot_timeline(
    results: Sequence[Any],
    path: str | Path,
    titles: Sequence[str] | None = None,
    env_index: int = 0,
    max_guests_shown: int = 6,
) -> None:
    """Allocation timelines of one episode per column (batches recorded by ``run_batch``).

    Per guest: the allocation target, the allocation (memory outside the balloon), the
    balloon and the true working set (kernel plus hot set, which no policy observes), GiB.
    Bottom: the host's free memory with the state lines (6 / 4 / 2 / 1 %).

    Args:
        results: :class:`~balloon_gym.evaluation.BatchResult` objects with a trace of
            :data:`~balloon_gym.evaluation.TIMELINE_FIELDS`.
        path: PNG file to write.
        titles: One title per column.
        env_index: Which episode of each batch.
        max_guests_shown: Most guest panels per column.
    """
    num_guests = len(results[0].guest_names)
    shown = _shown_guests(num_guests, max_guests_shown)
    rows = len(shown) + 1
    fig = _figure(5.2 * len(results), 1.45 * rows + 0.6)
    axes = fig.subplots(rows, len(results), sharex=True, sharey="row", squeeze=False)
    for c, res in enumerate(results):
        tr = {k: v[:, env_index] for k, v in res.trace.items()}
        t_min = np.arange(1, len(tr["host_free_frac"]) + 1) * res.dt_s / 60.0
        for r, g in enumerate(shown):
            ax = axes[r, c]
            gib = {k: tr[k][:, g] / 1024.0 for k in ("alloc_target", "usable", "balloon")}
            ax.plot(t_min, gib["usable"], lw=1.4, label="allocation (outside balloon)")
            ax.plot(t_min, gib["alloc_target"], lw=1.0, ls="--", label="target")
            ax.plot(t_min, gib["balloon"], lw=0.9, color="grey", label="balloon")
            ws = tr["working_set"][:, g] / 1024.0
            ax.plot(t_min, ws, lw=1.0, color="tab:red", label="true working set")
            ax.set_ylabel(f"{res.guest_names[g][:14]}\nGiB", fontsize=7)
            ax.tick_params(labelsize=7)
        ax = axes[-1, c]
        ax.plot(t_min, 100.0 * tr["host_free_frac"], lw=1.2, color="black")
        for frac, name in STATE_LINES:
            ax.axhline(100.0 * frac, lw=0.7, ls=":", color="tab:purple")
            ax.annotate(name, (t_min[-1], 100.0 * frac), fontsize=6, ha="right", va="bottom")
        ax.set_ylabel("host free %", fontsize=7)
        ax.set_xlabel("time (min)", fontsize=8)
        ax.tick_params(labelsize=7)
        title = titles[c] if titles else res.scenario
        if len(shown) < num_guests:
            title += f" ({len(shown)} of {num_guests} guests)"
        axes[0, c].set_title(title, fontsize=9)
    axes[0, 0].legend(fontsize=6, loc="upper right", ncol=2)
    fig.savefig(path, dpi=90)
