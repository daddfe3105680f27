"""Tests for balloon_gym.stats against rliable, scipy and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from balloon_gym.stats import (
    AggregateResult,
    aggregate_mean,
    aggregate_median,
    aggregate_table,
    iqm,
    normalise_scores,
    optimality_gap,
    probability_of_improvement,
    probability_of_improvement_ci,
    stratified_bootstrap_ci,
)

# --------------------------------------------------------------------------------------
# Reference numbers from rliable.
#
# Produced by `scripts/rliable_reference.py` (reps=20000, np.random.seed(0)) in a throwaway
# venv with python 3.11.7, rliable 1.2.0, arch 7.2.0, numpy 2.4.6, scipy 1.17.1,
# pandas 2.3.3. The data are the script's `make_scores()` in hundredths, pasted so that the
# test does not depend on numpy's random streams. A and B: 10 runs, C: 12 runs, 5 tasks
# (50 and 60 scores, so the IQM trims a non-integer 12.5 -> 12 and an integer 15 per end);
# task 2 of B equals task 2 of A, and there are many ties within and across agents.
# --------------------------------------------------------------------------------------

SCORES_HUNDREDTHS = {
    "A": [
        [90, 75, 66, 49, 51],
        [32, 35, 31, 42, 87],
        [76, 94, 65, 73, 98],
        [81, 74, 68, 69, 96],
        [49, 87, 77, 30, 57],
        [90, 69, 32, 84, 81],
        [90, 42, 36, 91, 31],
        [68, 35, 51, 64, 60],
        [58, 32, 30, 38, 30],
        [77, 67, 75, 48, 73],
    ],
    "B": [
        [74, 47, 66, 90, 77],
        [89, 46, 31, 87, 66],
        [79, 68, 65, 47, 82],
        [29, 61, 68, 80, 57],
        [46, 42, 77, 54, 71],
        [83, 25, 32, 57, 45],
        [67, 60, 36, 42, 71],
        [62, 55, 51, 74, 47],
        [43, 83, 30, 36, 70],
        [64, 23, 75, 46, 79],
    ],
    "C": [
        [40, 79, 31, 24, 79],
        [88, 8, 5, 67, 33],
        [57, 15, 86, 45, 90],
        [80, 71, 23, 77, 5],
        [57, 40, 100, 20, 95],
        [9, 62, 58, 90, 30],
        [91, 67, 89, 20, 76],
        [95, 4, 36, 64, 10],
        [51, 63, 77, 93, 41],
        [44, 47, 96, 19, 50],
        [5, 42, 95, 62, 35],
        [100, 60, 95, 1, 46],
    ],
}
SCORES = {agent: np.array(v) / 100.0 for agent, v in SCORES_HUNDREDTHS.items()}

RLIABLE_POINTS = {
    "A": {"iqm": 0.6319230769230769, "mean": 0.6208, "median": 0.61, "optimality_gap": 0.3792},
    "B": {
        "iqm": 0.6000000000000001,
        "mean": 0.591,
        "median": 0.6130000000000001,
        "optimality_gap": 0.40900000000000003,
    },
    "C": {
        "iqm": 0.5523333333333333,
        "mean": 0.5396666666666666,
        "median": 0.49166666666666653,
        "optimality_gap": 0.46033333333333326,
    },
}
RLIABLE_POI = {"A>B": 0.557, "A>C": 0.5725}
RLIABLE_CIS = {
    "A": {
        "iqm": (0.5476923076923076, 0.7073076923076922),
        "mean": (0.5640000000000001, 0.6768000000000001),
        "median": (0.538, 0.701),
        "optimality_gap": (0.32319999999999993, 0.43600000000000005),
    },
    "B": {
        "iqm": (0.5384615384615384, 0.6638461538461538),
        "mean": (0.5436, 0.6386000000000001),
        "median": (0.524, 0.669),
        "optimality_gap": (0.36140000000000005, 0.45640000000000003),
    },
    "C": {
        "iqm": (0.4459916666666668, 0.654),
        "mean": (0.4648333333333333, 0.6141666666666667),
        "median": (0.4283333333333333, 0.6291666666666667),
        "optimality_gap": (0.38583333333333336, 0.5351666666666667),
    },
}
RLIABLE_POI_CIS = {"A>B": (0.44000000000000006, 0.67), "A>C": (0.4625, 0.6791666666666666)}

# Bootstrap intervals cannot match rliable exactly: rliable draws from numpy's legacy global
# RandomState, we from default_rng. At reps=20000 the Monte-Carlo standard deviation of an
# interval end on these data is at most 0.0012 for our implementation (measured over 100
# seeds) and 0.0015 for rliable (over 5 seeds, `scripts/rliable_reference.py --spread 5`),
# so the difference of two independent estimates has sd <= 0.002 and 0.01 is >= 5 sd (the
# largest difference observed at seed 0 is 0.002). It is still tight enough to catch real
# mistakes, which move some interval end of these data by 0.01-0.05: resampling whole rows
# (not stratified per task), also resampling tasks, or a 90 % instead of a 95 % interval.
CI_TOL = 0.01
REF_REPS = 20000

METRICS = {
    "iqm": iqm,
    "mean": aggregate_mean,
    "median": aggregate_median,
    "optimality_gap": optimality_gap,
}


# --------------------------------------------------------------------------------------
# Cross-check against rliable
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("agent", ["A", "B", "C"])
@pytest.mark.parametrize("metric", list(METRICS))
def test_point_estimates_match_rliable(agent: str, metric: str) -> None:
    value = METRICS[metric](SCORES[agent])
    assert isinstance(value, float)
    assert value == pytest.approx(RLIABLE_POINTS[agent][metric], abs=1e-12, rel=0)


@pytest.mark.parametrize(("pair", "x", "y"), [("A>B", "A", "B"), ("A>C", "A", "C")])
def test_probability_of_improvement_matches_rliable_exactly(pair: str, x: str, y: str) -> None:
    assert probability_of_improvement(SCORES[x], SCORES[y]) == RLIABLE_POI[pair]


def test_bootstrap_intervals_match_rliable() -> None:
    table = aggregate_table(SCORES, reps=REF_REPS, seed=0)
    for agent, metrics in RLIABLE_CIS.items():
        for metric, (lower, upper) in metrics.items():
            result = table[agent][metric]
            assert result.point == pytest.approx(RLIABLE_POINTS[agent][metric], abs=1e-12)
            assert result.lower == pytest.approx(lower, abs=CI_TOL), (agent, metric)
            assert result.upper == pytest.approx(upper, abs=CI_TOL), (agent, metric)


@pytest.mark.parametrize(("pair", "x", "y"), [("A>B", "A", "B"), ("A>C", "A", "C")])
def test_probability_of_improvement_ci_matches_rliable(pair: str, x: str, y: str) -> None:
    result = probability_of_improvement_ci(SCORES[x], SCORES[y], reps=REF_REPS, seed=0)
    assert result.point == RLIABLE_POI[pair]
    lower, upper = RLIABLE_POI_CIS[pair]
    assert result.lower == pytest.approx(lower, abs=CI_TOL)
    assert result.upper == pytest.approx(upper, abs=CI_TOL)


# --------------------------------------------------------------------------------------
# IQM and the other aggregates against scipy / numpy / hand-computed values
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape", [(1, 1), (2, 1), (3, 1), (5, 1), (6, 1), (7, 3), (10, 4), (10, 5), (13, 7), (9,)]
)
def test_iqm_equals_scipy_trim_mean(shape: tuple[int, ...]) -> None:
    x = np.random.default_rng(sum(shape)).normal(size=shape)
    expected = scipy.stats.trim_mean(x, proportiontocut=0.25, axis=None)
    assert iqm(x) == pytest.approx(expected, abs=1e-12, rel=0)


def test_iqm_trimming_rule_by_hand() -> None:
    # n = 6: 0.25 * 6 = 1.5 is rounded down, one value cut from each end.
    assert iqm([100.0, 1.0, 2.0, 3.0, 4.0, -50.0]) == pytest.approx(2.5)
    # n = 7: 1.75 -> 1 per end: mean of 2..6.
    assert iqm([[1.0], [2.0], [3.0], [4.0], [5.0], [6.0], [1000.0]]) == pytest.approx(4.0)
    # n = 8: exactly 2 per end.
    assert iqm(np.arange(8.0).reshape(4, 2)) == pytest.approx(3.5)
    # n = 3: 0.75 -> nothing trimmed.
    assert iqm([0.0, 0.0, 9.0]) == pytest.approx(3.0)


def test_iqm_of_constant_is_the_constant() -> None:
    for shape in [(1, 1), (7, 3), (10, 5)]:
        assert iqm(np.full(shape, 0.37)) == pytest.approx(0.37, abs=1e-15)
        assert aggregate_mean(np.full(shape, 0.37)) == pytest.approx(0.37, abs=1e-15)
        assert aggregate_median(np.full(shape, 0.37)) == pytest.approx(0.37, abs=1e-15)


@pytest.mark.parametrize("metric", list(METRICS))
def test_aggregates_are_batched_over_leading_axes(metric: str) -> None:
    fn = METRICS[metric]
    batch = np.random.default_rng(3).normal(size=(4, 2, 7, 3))
    values = fn(batch)
    assert isinstance(values, np.ndarray)
    assert values.shape == (4, 2)
    for i in range(4):
        for j in range(2):
            assert values[i, j] == pytest.approx(fn(batch[i, j]), abs=1e-12)


def test_aggregates_by_hand() -> None:
    scores = np.array([[0.0, 1.0, 2.0], [2.0, 3.0, 4.0]])  # task means 1, 2, 3
    assert aggregate_mean(scores) == pytest.approx(2.0)
    assert aggregate_median(scores) == pytest.approx(2.0)
    assert optimality_gap(scores) == pytest.approx(1.0 - 5.0 / 6.0)  # 2, 3, 4, 2 clipped to 1
    assert optimality_gap(scores, gamma=10.0) == pytest.approx(10.0 - 2.0)


@pytest.mark.parametrize("bad", [np.array([]), np.array([[np.nan, 1.0]]), np.zeros((0, 3))])
def test_aggregates_reject_empty_or_nan(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        iqm(bad)


def test_aggregates_other_than_iqm_need_a_matrix() -> None:
    with pytest.raises(ValueError, match="num_runs, num_tasks"):
        aggregate_mean([1.0, 2.0])


# --------------------------------------------------------------------------------------
# Probability of improvement
# --------------------------------------------------------------------------------------


def test_probability_of_improvement_by_hand() -> None:
    x = np.array([[1.0], [2.0]])
    y = np.array([[1.0], [0.0]])
    # Pairs: (1, 1) tie -> 1/2, (1, 0), (2, 1), (2, 0) -> 1 each: 3.5 / 4.
    assert probability_of_improvement(x, y) == 0.875
    # Two tasks: the second one has P = 0, so the average is (0.875 + 0) / 2.
    x2 = np.hstack([x, [[0.0], [0.0]]])
    y2 = np.hstack([y, [[1.0], [2.0]]])
    assert probability_of_improvement(x2, y2) == 0.4375


def test_probability_of_improvement_equals_scipy_mann_whitney_u() -> None:
    rng = np.random.default_rng(7)
    x = rng.integers(0, 6, size=(11, 4)).astype(float)  # many ties
    y = rng.integers(0, 6, size=(8, 4)).astype(float)
    u = [scipy.stats.mannwhitneyu(x[:, t], y[:, t]).statistic for t in range(4)]
    assert probability_of_improvement(x, y) == pytest.approx(np.mean(u) / (11 * 8), abs=1e-15)


def test_probability_of_improvement_symmetry() -> None:
    rng = np.random.default_rng(11)
    x, y = rng.normal(size=(10, 5)), rng.normal(size=(13, 5))  # no ties
    assert probability_of_improvement(x, y) + probability_of_improvement(y, x) == pytest.approx(
        1.0, abs=1e-15
    )
    # With ties the half credits also add up to 1.
    a, b = SCORES["A"], SCORES["C"]
    assert probability_of_improvement(a, b) + probability_of_improvement(b, a) == pytest.approx(
        1.0, abs=1e-15
    )
    assert probability_of_improvement(x, x) == 0.5
    assert probability_of_improvement(SCORES["B"], SCORES["B"]) == 0.5


def test_probability_of_improvement_extremes() -> None:
    x = np.ones((10, 3))
    assert probability_of_improvement(x, x - 1.0) == 1.0
    assert probability_of_improvement(x - 1.0, x) == 0.0


def test_probability_of_improvement_needs_same_tasks() -> None:
    with pytest.raises(ValueError, match="same number of tasks"):
        probability_of_improvement(np.zeros((10, 3)), np.zeros((10, 4)))


def test_probability_of_improvement_ci_properties() -> None:
    x, y = SCORES["A"], SCORES["B"]
    result = probability_of_improvement_ci(x, y, reps=500, seed=3)
    assert result.lower <= result.point <= result.upper
    assert result == probability_of_improvement_ci(x, y, reps=500, seed=3)
    assert result != probability_of_improvement_ci(x, y, reps=500, seed=4)
    same = probability_of_improvement_ci(x, x, reps=500, seed=3)
    assert same.point == 0.5
    assert same.lower < 0.5 < same.upper


# --------------------------------------------------------------------------------------
# Stratified bootstrap
# --------------------------------------------------------------------------------------


def test_intervals_contain_point_estimates() -> None:
    rng = np.random.default_rng(5)
    data = {**SCORES, "D": rng.normal(size=(10, 7)), "E": rng.uniform(size=(15, 3))}
    for agent, metrics in aggregate_table(data, reps=1000, seed=1).items():
        for metric, result in metrics.items():
            assert result.lower <= result.point <= result.upper, (agent, metric)
            assert result.lower < result.upper, (agent, metric)


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    first = stratified_bootstrap_ci(SCORES, iqm, reps=500, seed=42)
    assert first == stratified_bootstrap_ci(SCORES, iqm, reps=500, seed=42)
    other = stratified_bootstrap_ci(SCORES, iqm, reps=500, seed=43)
    for agent in SCORES:
        assert other[agent].point == first[agent].point
        assert (other[agent].lower, other[agent].upper) != (first[agent].lower, first[agent].upper)


def test_agent_interval_does_not_depend_on_other_agents() -> None:
    full = stratified_bootstrap_ci(SCORES, iqm, reps=300, seed=0)
    alone = stratified_bootstrap_ci({"C": SCORES["C"]}, iqm, reps=300, seed=0)
    reordered = stratified_bootstrap_ci(dict(reversed(SCORES.items())), iqm, reps=300, seed=0)
    assert alone["C"] == full["C"]
    assert reordered == full
    assert list(full) == ["A", "B", "C"]


def test_resampling_is_stratified_by_task() -> None:
    # Tasks with disjoint score ranges: a resampled column must only hold its own values.
    scores = np.array([[0.1, 10.0, 100.0], [0.2, 20.0, 200.0], [0.3, 30.0, 300.0]])
    seen: list[np.ndarray] = []

    def record(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.copy())
        return aggregate_mean(batch)

    stratified_bootstrap_ci({"s": scores}, record, reps=200, seed=0)
    batch = np.concatenate([b for b in seen if b.ndim == 3])  # not the point estimate
    assert batch.shape == (200, 3, 3)
    for task in range(3):
        assert np.isin(batch[:, :, task], scores[:, task]).all()
    # Runs are drawn independently per task: rows of the original are broken up.
    rows = {tuple(r) for r in scores}
    assert any(tuple(r) not in rows for r in batch.reshape(-1, 3))


def test_single_run_gives_a_degenerate_interval() -> None:
    result = stratified_bootstrap_ci({"one": [[0.2, 0.4, 0.9]]}, iqm, reps=100)["one"]
    assert result == AggregateResult(point=0.5, lower=0.5, upper=0.5)


def test_smaller_confidence_gives_a_nested_interval() -> None:
    wide = stratified_bootstrap_ci(SCORES, iqm, reps=1000, confidence=0.95, seed=0)
    narrow = stratified_bootstrap_ci(SCORES, iqm, reps=1000, confidence=0.5, seed=0)
    for agent in SCORES:
        assert wide[agent].lower <= narrow[agent].lower <= narrow[agent].upper
        assert narrow[agent].upper <= wide[agent].upper


def test_aggregate_table_matches_stratified_bootstrap_ci() -> None:
    table = aggregate_table(SCORES, reps=400, seed=9)
    for metric, fn in METRICS.items():
        single = stratified_bootstrap_ci(SCORES, fn, reps=400, seed=9)
        for agent in SCORES:
            assert table[agent][metric] == single[agent]


def test_unvectorised_aggregate_uses_the_same_replicates() -> None:
    # rliable's own aggregate (scipy's trim_mean on everything) only takes one matrix.
    def rliable_iqm(x: np.ndarray) -> float:
        return scipy.stats.trim_mean(x, proportiontocut=0.25, axis=None)

    slow = stratified_bootstrap_ci(SCORES, rliable_iqm, reps=200, seed=2, vectorized=False)
    fast = stratified_bootstrap_ci(SCORES, iqm, reps=200, seed=2)
    for agent in SCORES:
        assert slow[agent].point == pytest.approx(fast[agent].point, abs=1e-12)
        assert slow[agent].lower == pytest.approx(fast[agent].lower, abs=1e-12)
        assert slow[agent].upper == pytest.approx(fast[agent].upper, abs=1e-12)
    with pytest.raises(ValueError, match="vectorized=False"):
        stratified_bootstrap_ci(SCORES, rliable_iqm, reps=200, seed=2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"reps": 0}, "reps"),
        ({"confidence": 1.0}, "confidence"),
        ({"confidence": 0.0}, "confidence"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bootstrap_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        stratified_bootstrap_ci(SCORES, iqm, **kwargs)


@pytest.mark.parametrize(
    "bad", [np.zeros(10), np.zeros((10, 2, 2)), np.zeros((0, 3)), np.array([[np.inf, 0.0]])]
)
def test_bootstrap_rejects_bad_scores(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="'bad'"):
        stratified_bootstrap_ci({"bad": bad}, iqm)


def test_aggregate_table_rejects_unknown_metric() -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        aggregate_table(SCORES, metrics=("iqm", "max"))


def test_aggregate_result_is_frozen() -> None:
    result = AggregateResult(point=0.5, lower=0.4, upper=0.6)
    with pytest.raises(AttributeError):
        result.point = 1.0  # type: ignore[misc]


# --------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------


def test_normalise_scores() -> None:
    scores = np.array([0.2, 0.5, 0.8, 1.1])
    np.testing.assert_allclose(normalise_scores(scores, 0.2, 0.8), [0.0, 0.5, 1.0, 1.5])
    # Per-task references broadcast over the runs of a (num_runs, num_tasks) matrix.
    matrix = np.array([[0.5, 0.3], [0.7, 0.9]])
    np.testing.assert_allclose(
        normalise_scores(matrix, [0.5, 0.1], [0.7, 0.9]), [[0.0, 0.25], [1.0, 1.0]]
    )


def test_normalise_scores_rejects_equal_references() -> None:
    with pytest.raises(ValueError, match=r"'steady-state'.*high == low"):
        normalise_scores([0.3, 0.4], 0.5, 0.5, scenario="steady-state")
    with pytest.raises(ValueError, match="high == low"):
        normalise_scores([0.3, 0.4], 0.5, 0.5)
    with pytest.raises(ValueError, match=r"'bursty'") as info:
        normalise_scores(
            np.zeros((3, 3)), [0.1, 0.4, 0.2], [0.9, 0.4, 0.8], scenario=["calm", "bursty", "x"]
        )
    assert "calm" not in str(info.value)
    with pytest.raises(ValueError, match=r"index \[1\]"):
        normalise_scores(np.zeros((3, 3)), [0.1, 0.4, 0.2], [0.9, 0.4, 0.8])
    with pytest.raises(ValueError, match="finite"):
        normalise_scores([0.3], np.nan, 1.0, scenario="calm")
