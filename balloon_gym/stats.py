"""Statistics behind the BalloonBench leaderboard.

BalloonBench reports, per agent, aggregate normalised scores with stratified-bootstrap
confidence intervals and pairwise probabilities of improvement, following rliable
(https://github.com/google-research/rliable) and

    R. Agarwal, M. Schwarzer, P. S. Castro, A. Courville, M. G. Bellemare.
    "Deep Reinforcement Learning at the Edge of the Statistical Precipice". NeurIPS 2021.

Everything here is pure numpy. Scores are laid out as in rliable: one array of shape
``(num_runs, num_tasks)`` per agent, where runs are evaluation seeds and tasks are
BalloonBench scenarios.

The aggregate functions (:func:`iqm`, :func:`aggregate_mean`, :func:`aggregate_median`,
:func:`optimality_gap`) reduce the *last two* axes ``(num_runs, num_tasks)`` and keep any
leading axes, so that the bootstrap can evaluate thousands of replicates in one call. For a
plain 2-D score matrix they return a float, identical (up to floating-point summation order)
to the rliable function of the same name.

Differences from rliable that are deliberate:

* Random numbers come from :func:`numpy.random.default_rng` (rliable draws from the global
  legacy ``np.random`` state), so intervals agree with rliable only up to Monte-Carlo error.
* Each agent gets its own random stream derived from ``(seed, agent name)``: an agent's
  interval does not change when other agents are added to or removed from the leaderboard.
* Invalid input (empty arrays, NaN or infinite scores, mismatched task counts) raises
  :class:`ValueError` instead of propagating NaN.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

__all__ = [
    "AGGREGATES",
    "AggregateResult",
    "aggregate_mean",
    "aggregate_median",
    "aggregate_table",
    "iqm",
    "normalise_scores",
    "optimality_gap",
    "probability_of_improvement",
    "probability_of_improvement_ci",
    "stratified_bootstrap_ci",
]

FloatArray = npt.NDArray[np.float64]
#: An aggregate maps scores of shape ``(..., num_runs, num_tasks)`` to shape ``(...)``.
AggregateFn = Callable[[FloatArray], "float | FloatArray"]

# Upper bound on the number of array elements materialised at once by the bootstrap
# (resampled scores, or pairwise comparisons for the probability of improvement).
# 2**22 float64 values are 32 MiB; the replicates are processed in chunks below that.
_CHUNK_ELEMENTS = 2**22


@dataclass(frozen=True)
class AggregateResult:
    """A point estimate with its bootstrap confidence interval.

    Attributes:
        point: The statistic computed on the observed scores.
        lower: Lower end of the percentile bootstrap interval.
        upper: Upper end of the percentile bootstrap interval.
    """

    point: float
    lower: float
    upper: float


# --------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------


def normalise_scores(
    scores: npt.ArrayLike,
    low: npt.ArrayLike,
    high: npt.ArrayLike,
    scenario: str | Sequence[str] | None = None,
) -> FloatArray:
    """Normalises raw scores to ``(scores - low) / (high - low)``.

    On BalloonBench ``low`` is the mean score of the proportional-share reference agent
    and ``high`` that of the clairvoyant agent on the same scenario, so 0 means "as good
    as proportional share" and 1 "as good as clairvoyant" (rliable/Agarwal et al. 2021
    use the same min-max style normalisation with random and human scores on Atari).

    Args:
        scores: Raw scores. ``low`` and ``high`` broadcast against it, so a whole
            ``(num_runs, num_tasks)`` matrix can be normalised at once with per-task
            vectors ``low`` and ``high`` of shape ``(num_tasks,)``.
        low: Score mapped to 0 (proportional share).
        high: Score mapped to 1 (clairvoyant).
        scenario: Name of the scenario (or one name per entry of ``low``/``high`` when
            they are vectors), used only in error messages.

    Returns:
        The normalised scores as a float64 array of the broadcast shape.

    Raises:
        ValueError: If ``high == low`` for some scenario (the normalisation is undefined)
            or if ``low`` or ``high`` is not finite.
    """
    scores_arr = np.asarray(scores, dtype=np.float64)
    low_arr = np.asarray(low, dtype=np.float64)
    high_arr = np.asarray(high, dtype=np.float64)
    low_b, high_b = np.broadcast_arrays(low_arr, high_arr)
    bad_finite = ~(np.isfinite(low_b) & np.isfinite(high_b))
    if bad_finite.any():
        where = _describe_scenarios(bad_finite, scenario)
        raise ValueError(f"reference scores must be finite{where}: low={low}, high={high}")
    degenerate = high_b == low_b
    if degenerate.any():
        where = _describe_scenarios(degenerate, scenario)
        value = float(low_b[degenerate].flat[0])
        raise ValueError(
            f"cannot normalise scores{where}: the clairvoyant reference score equals the "
            f"proportional-share reference score (high == low == {value!r})"
        )
    return np.asarray((scores_arr - low_arr) / (high_arr - low_arr), dtype=np.float64)


def _describe_scenarios(mask: npt.NDArray[np.bool_], scenario: str | Sequence[str] | None) -> str:
    """Formats the scenario name(s) selected by ``mask`` for an error message."""
    if scenario is None:
        if mask.ndim == 0:
            return ""
        return f" (at index {[int(i) for i in np.flatnonzero(mask)]})"
    if isinstance(scenario, str):
        return f" for scenario {scenario!r}"
    names = list(scenario)
    flat = mask.reshape(-1)
    if len(names) == flat.size:
        picked = [names[i] for i in np.flatnonzero(flat)]
        return f" for scenario(s) {', '.join(repr(n) for n in picked)}"
    return f" for scenario(s) {', '.join(repr(n) for n in names)}"


# --------------------------------------------------------------------------------------
# Aggregate metrics (batched over leading axes)
# --------------------------------------------------------------------------------------


def _as_float_array(scores: npt.ArrayLike, min_ndim: int, what: str) -> FloatArray:
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim < min_ndim:
        raise ValueError(
            f"{what} needs an array with at least {min_ndim} dimension(s) "
            f"(..., num_runs, num_tasks); got shape {arr.shape}"
        )
    if arr.size == 0 or 0 in arr.shape[-2:]:
        raise ValueError(f"{what} needs at least one score; got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what}: scores contain NaN or infinite values")
    return arr


def _scalar_or_array(value: FloatArray) -> float | FloatArray:
    """Returns a Python float for 0-d results, the array otherwise."""
    if value.ndim == 0:
        return float(value)
    return value


def iqm(scores: npt.ArrayLike) -> float | FloatArray:
    """Interquartile mean (25 % trimmed mean) of all runs and tasks.

    Matches ``rliable.metrics.aggregate_iqm``, i.e.
    ``scipy.stats.trim_mean(scores, proportiontocut=0.25, axis=None)``: with ``n`` scores,
    ``floor(n / 4)`` of them are removed from each end (scipy rounds the trimmed count
    down, so for ``n = 50`` it removes 12 and averages the middle 26) and the rest are
    averaged. Agarwal et al. (2021) recommend the IQM as a robust and statistically
    efficient aggregate.

    Args:
        scores: Array of shape ``(..., num_runs, num_tasks)``; the IQM is taken over the
            last two axes. A 1-D array is treated as a single task (all its entries).

    Returns:
        A float for 1-D/2-D input, else an array of shape ``scores.shape[:-2]``.

    Raises:
        ValueError: If there are no scores or some are not finite.
    """
    arr = _as_float_array(scores, 1, "iqm")
    if arr.ndim == 1:
        arr = arr[:, None]
    flat = arr.reshape(*arr.shape[:-2], arr.shape[-2] * arr.shape[-1])
    n = flat.shape[-1]
    cut = n // 4  # == int(0.25 * n), scipy's rounding-down rule
    # Same partition as scipy.stats.trim_mean, so the averaged values match bit for bit.
    part = np.partition(flat, (cut, n - cut - 1), axis=-1)
    return _scalar_or_array(np.mean(part[..., cut : n - cut], axis=-1))


def aggregate_mean(scores: npt.ArrayLike) -> float | FloatArray:
    """Mean over tasks of the per-task mean scores (``rliable.metrics.aggregate_mean``).

    Args:
        scores: Array of shape ``(..., num_runs, num_tasks)``.

    Returns:
        A float for 2-D input, else an array of shape ``scores.shape[:-2]``.
    """
    arr = _as_float_array(scores, 2, "aggregate_mean")
    return _scalar_or_array(np.mean(np.mean(arr, axis=-2), axis=-1))


def aggregate_median(scores: npt.ArrayLike) -> float | FloatArray:
    """Median over tasks of the per-task mean scores (``rliable.metrics.aggregate_median``).

    Args:
        scores: Array of shape ``(..., num_runs, num_tasks)``.

    Returns:
        A float for 2-D input, else an array of shape ``scores.shape[:-2]``.
    """
    arr = _as_float_array(scores, 2, "aggregate_median")
    return _scalar_or_array(np.median(np.mean(arr, axis=-2), axis=-1))


def optimality_gap(scores: npt.ArrayLike, gamma: float = 1.0) -> float | FloatArray:
    """Optimality gap ``gamma - mean(min(scores, gamma))`` over all runs and tasks.

    Matches ``rliable.metrics.aggregate_optimality_gap``: how far, on average, the scores
    fall short of the target ``gamma`` (scores above it are clipped). Lower is better. With
    BalloonBench normalisation ``gamma = 1`` is the clairvoyant reference.

    Args:
        scores: Array of shape ``(..., num_runs, num_tasks)``.
        gamma: Target normalised score.

    Returns:
        A float for 2-D input, else an array of shape ``scores.shape[:-2]``.
    """
    arr = _as_float_array(scores, 2, "optimality_gap")
    flat = arr.reshape(*arr.shape[:-2], arr.shape[-2] * arr.shape[-1])
    return _scalar_or_array(gamma - np.mean(np.minimum(flat, gamma), axis=-1))


#: The aggregates reported by :func:`aggregate_table`, by name.
AGGREGATES: Mapping[str, AggregateFn] = MappingProxyType(
    {
        "iqm": iqm,
        "mean": aggregate_mean,
        "median": aggregate_median,
        "optimality_gap": optimality_gap,
    }
)


# --------------------------------------------------------------------------------------
# Probability of improvement
# --------------------------------------------------------------------------------------


def _poi_batched(x: FloatArray, y: FloatArray) -> FloatArray:
    """P(X > Y) for ``x`` of shape (..., nx, T) and ``y`` of shape (..., ny, T)."""
    nx, ny = x.shape[-2], y.shape[-2]
    xe = x[..., :, None, :]
    ye = y[..., None, :, :]
    greater = np.count_nonzero(xe > ye, axis=(-3, -2))
    ties = np.count_nonzero(xe == ye, axis=(-3, -2))
    # Mann-Whitney U of x against y, per task, normalised by the number of pairs.
    per_task = (greater + 0.5 * ties) / (nx * ny)
    return np.mean(per_task, axis=-1)


def _check_pair(x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    x_arr = _as_run_task_matrix(x, "x")
    y_arr = _as_run_task_matrix(y, "y")
    if x_arr.shape[1] != y_arr.shape[1]:
        raise ValueError(
            f"x and y must have the same number of tasks; got {x_arr.shape[1]} and {y_arr.shape[1]}"
        )
    return x_arr, y_arr


def probability_of_improvement(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Average probability of improvement P(X > Y) of agent X over agent Y.

    As ``rliable.metrics.probability_of_improvement`` (Agarwal et al. 2021, Sec. 4.3): for
    each task, the Mann-Whitney U statistic of X's runs against Y's runs divided by the
    number of pairs, i.e. the fraction of pairs ``(i, j)`` with ``x[i] > y[j]`` where a
    tie counts 1/2; then the mean over tasks.

    Args:
        x: Scores of X, shape ``(num_runs_x, num_tasks)``.
        y: Scores of Y, shape ``(num_runs_y, num_tasks)``.

    Returns:
        P(X > Y) in ``[0, 1]``; 0.5 means neither is better.

    Raises:
        ValueError: On bad shapes, different task counts or non-finite scores.
    """
    x_arr, y_arr = _check_pair(x, y)
    return float(_poi_batched(x_arr, y_arr))


def probability_of_improvement_ci(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> AggregateResult:
    """P(X > Y) with its stratified-bootstrap percentile confidence interval.

    Like rliable's ``get_interval_estimates`` on a pair ``[x, y]``
    (``StratifiedIndependentBootstrap``): in every replicate both ``x`` and ``y`` are
    resampled, each with its own run indices drawn with replacement independently within
    every task, and P(X > Y) is recomputed on the pair.

    Args:
        x: Scores of X, shape ``(num_runs_x, num_tasks)``.
        y: Scores of Y, shape ``(num_runs_y, num_tasks)``.
        reps: Number of bootstrap replicates.
        confidence: Coverage of the two-sided interval, in (0, 1).
        seed: Non-negative seed; the result is deterministic for a given seed.

    Returns:
        The point estimate and the interval.
    """
    x_arr, y_arr = _check_pair(x, y)
    _check_bootstrap_args(reps, confidence, seed)
    point = float(_poi_batched(x_arr, y_arr))
    rng = np.random.default_rng(seed)
    cells = x_arr.shape[0] * y_arr.shape[0] * x_arr.shape[1]
    replicates = _bootstrap_replicates(
        (x_arr, y_arr), {"poi": _poi_batched}, reps, rng, cells_per_rep=cells
    )["poi"]
    return _percentile_result(point, replicates, confidence)


# --------------------------------------------------------------------------------------
# Stratified bootstrap
# --------------------------------------------------------------------------------------


def _as_run_task_matrix(scores: npt.ArrayLike, name: str) -> FloatArray:
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(
            f"scores of {name!r} must have shape (num_runs, num_tasks); got shape {arr.shape}"
        )
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"scores of {name!r} need at least one run and one task")
    if not np.isfinite(arr).all():
        raise ValueError(f"scores of {name!r} contain NaN or infinite values")
    return arr


def _check_bootstrap_args(reps: int, confidence: float, seed: int) -> None:
    if int(reps) != reps or reps < 1:
        raise ValueError(f"reps must be a positive integer; got {reps!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1; got {confidence!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")


def _agent_rng(seed: int, agent: str) -> np.random.Generator:
    """A random stream that depends only on ``seed`` and the agent's name."""
    digest = hashlib.sha256(agent.encode("utf-8")).digest()
    entropy = [int(seed), int.from_bytes(digest[:16], "little")]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def _resample(rng: np.random.Generator, scores: FloatArray, reps: int) -> FloatArray:
    """``reps`` stratified resamples of a (num_runs, num_tasks) matrix.

    Runs are drawn with replacement independently within each task (column), as in
    rliable's ``StratifiedBootstrap`` with ``task_bootstrap=False``.
    """
    num_runs, num_tasks = scores.shape
    idx = rng.integers(0, num_runs, size=(reps, num_runs, num_tasks))
    return scores[idx, np.arange(num_tasks)]


def _bootstrap_replicates(
    arrays: tuple[FloatArray, ...],
    statistics: Mapping[str, Callable[..., float | FloatArray]],
    reps: int,
    rng: np.random.Generator,
    *,
    cells_per_rep: int,
    vectorized: bool = True,
) -> dict[str, FloatArray]:
    """Evaluates each statistic on ``reps`` joint stratified resamples of ``arrays``.

    Every replicate resamples each array independently; all statistics see the same
    replicates. Work is chunked so that at most about ``_CHUNK_ELEMENTS`` elements are
    live at once; the chunk size depends only on the shapes, so results are deterministic
    for a given generator state.
    """
    out = {key: np.empty(reps, dtype=np.float64) for key in statistics}
    chunk = max(1, _CHUNK_ELEMENTS // max(1, cells_per_rep))
    for start in range(0, reps, chunk):
        size = min(chunk, reps - start)
        samples = tuple(_resample(rng, arr, size) for arr in arrays)
        for key, fn in statistics.items():
            if vectorized:
                values = np.asarray(fn(*samples), dtype=np.float64)
                if values.shape != (size,):
                    raise ValueError(
                        f"aggregate function {key!r} must reduce the last two axes of a "
                        f"batch of shape {samples[0].shape} to shape {(size,)}, got "
                        f"{values.shape}; pass vectorized=False for a function that only "
                        "accepts a single (num_runs, num_tasks) matrix"
                    )
            else:
                values = np.array(
                    [_to_float(fn(*(s[i] for s in samples)), key) for i in range(size)],
                    dtype=np.float64,
                )
            out[key][start : start + size] = values
    return out


def _to_float(value: object, key: str) -> float:
    """Converts a single-value aggregate result (float, 0-d or 1-element array) to float."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.size != 1:
        raise ValueError(
            f"aggregate function {key!r} must return a single value for one score matrix; "
            f"got shape {arr.shape}"
        )
    return float(arr.reshape(()))


def _percentile_result(point: float, replicates: FloatArray, confidence: float) -> AggregateResult:
    """Percentile interval, as ``arch``'s ``conf_int(method='percentile')`` used by rliable."""
    alpha = (1.0 - confidence) / 2.0
    lower, upper = np.percentile(replicates, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return AggregateResult(point=point, lower=float(lower), upper=float(upper))


def _bootstrap_agents(
    score_dict: Mapping[str, npt.ArrayLike],
    statistics: Mapping[str, AggregateFn],
    reps: int,
    confidence: float,
    seed: int,
    vectorized: bool,
) -> dict[str, dict[str, AggregateResult]]:
    _check_bootstrap_args(reps, confidence, seed)
    table: dict[str, dict[str, AggregateResult]] = {}
    for agent, raw in score_dict.items():
        name = str(agent)
        scores = _as_run_task_matrix(raw, name)
        replicates = _bootstrap_replicates(
            (scores,),
            statistics,
            reps,
            _agent_rng(seed, name),
            cells_per_rep=scores.size,
            vectorized=vectorized,
        )
        table[name] = {
            key: _percentile_result(_to_float(fn(scores), key), replicates[key], confidence)
            for key, fn in statistics.items()
        }
    return table


def stratified_bootstrap_ci(
    score_dict: Mapping[str, npt.ArrayLike],
    aggregate_fn: AggregateFn,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    *,
    vectorized: bool = True,
) -> dict[str, AggregateResult]:
    """Point estimates and stratified-bootstrap percentile intervals, per agent.

    The equivalent of ``rliable.library.get_interval_estimates(score_dict, fn,
    method="percentile", task_bootstrap=False)`` (Agarwal et al. 2021, Sec. 4.1): each
    replicate resamples the runs with replacement independently within each task, and the
    interval is given by the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2``
    percentiles of the aggregate over the replicates (linear interpolation, as ``arch``).

    Args:
        score_dict: Agent name -> scores of shape ``(num_runs, num_tasks)``. Agents may
            have different numbers of runs.
        aggregate_fn: The aggregate, e.g. :func:`iqm`. With ``vectorized=True`` (the
            default) it is called once per chunk of replicates on an array of shape
            ``(reps_in_chunk, num_runs, num_tasks)`` and must return shape
            ``(reps_in_chunk,)`` -- all aggregates in this module do. With
            ``vectorized=False`` it is called once per replicate on a
            ``(num_runs, num_tasks)`` matrix (slow, but accepts e.g. rliable's own
            functions).
        reps: Number of bootstrap replicates (rliable's default is 50000; 2000 keeps the
            Monte-Carlo error of the interval ends around 0.01 on normalised scores).
        confidence: Coverage of the two-sided interval, in (0, 1).
        seed: Non-negative seed. Each agent draws from its own stream derived from the
            seed and its name, so results are deterministic and independent of the other
            agents in ``score_dict``.
        vectorized: Whether ``aggregate_fn`` accepts a batch of replicates.

    Returns:
        Agent name -> :class:`AggregateResult`, in the order of ``score_dict``.

    Raises:
        ValueError: On malformed scores or arguments.
    """
    table = _bootstrap_agents(
        score_dict, {"aggregate": aggregate_fn}, reps, confidence, seed, vectorized
    )
    return {agent: results["aggregate"] for agent, results in table.items()}


def aggregate_table(
    score_dict: Mapping[str, npt.ArrayLike],
    reps: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    metrics: Sequence[str] = ("iqm", "mean", "median", "optimality_gap"),
) -> dict[str, dict[str, AggregateResult]]:
    """The leaderboard's aggregate metrics with stratified-bootstrap intervals.

    All metrics of an agent are computed on the same bootstrap replicates, which are the
    ones :func:`stratified_bootstrap_ci` uses for the same ``seed`` and ``reps``; so
    ``aggregate_table(d)[a]["iqm"] == stratified_bootstrap_ci(d, iqm)[a]``.

    Args:
        score_dict: Agent name -> normalised scores of shape ``(num_runs, num_tasks)``.
        reps: Number of bootstrap replicates.
        seed: Non-negative seed.
        confidence: Coverage of the two-sided interval, in (0, 1).
        metrics: Names from :data:`AGGREGATES` (``"iqm"``, ``"mean"``, ``"median"``,
            ``"optimality_gap"``).

    Returns:
        Agent name -> metric name -> :class:`AggregateResult`.

    Raises:
        ValueError: On an unknown metric name or malformed scores or arguments.
    """
    unknown = [m for m in metrics if m not in AGGREGATES]
    if unknown or not metrics:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {sorted(AGGREGATES)}")
    statistics = {m: AGGREGATES[m] for m in metrics}
    return _bootstrap_agents(score_dict, statistics, reps, confidence, seed, vectorized=True)
