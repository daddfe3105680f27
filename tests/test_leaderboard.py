"""The leaderboard: normalisation, aggregates, best classic baseline, markdown and plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from balloon_gym.leaderboard import build_leaderboard, render_markdown, write_leaderboard

SCENARIOS = ("a", "b")
SEEDS = (10000, 10001, 10002, 10003)


def _rows(scores: dict[str, dict[str, list[float]]]) -> list[dict]:
    """Results rows from ``agent -> scenario -> score per seed``."""
    rows = []
    for agent, per in scores.items():
        for scenario, values in per.items():
            for seed, score in zip(SEEDS, values, strict=True):
                rows.append(
                    {
                        "scenario": scenario,
                        "agent": agent,
                        "seed": seed,
                        "score": score,
                        "ooms": 1.0 if agent == "random" else 0.0,
                        "host_swap_gib": 0.5,
                        "sla_misses": 0.0,
                        "fairness": 0.9,
                        "balloon_churn_gib": 2.0,
                        "wall_s": 0.25,
                    }
                )
    return rows


def _const(a: float, b: float) -> dict[str, list[float]]:
    return {"a": [a] * 4, "b": [b] * 4}


@pytest.fixture
def rows() -> list[dict]:
    return _rows(
        {
            "proportional_share": _const(0.5, 0.8),
            "clairvoyant": _const(0.9, 1.0),
            "esx_idle_tax": {"a": [0.8, 0.82, 0.78, 0.8], "b": [0.9, 0.92, 0.88, 0.9]},
            "mom": _const(0.6, 0.85),
            "random": _const(0.3, 0.5),
        }
    )


def test_normalisation_references_and_ranking(rows: list[dict]) -> None:
    board = build_leaderboard(rows, reps=200)
    assert board.normalised and not board.excluded
    assert board.references == {"a": (0.5, 0.9), "b": (0.8, 1.0)}
    assert board.aggregate["proportional_share"].iqm.point == pytest.approx(0.0)
    assert board.aggregate["clairvoyant"].iqm.point == pytest.approx(1.0)
    # esx: a -> (0.8 - 0.5) / 0.4 = 0.75 (+-0.05), b -> (0.9 - 0.8) / 0.2 = 0.5 (+-0.1)
    assert board.per_scenario["a"]["esx_idle_tax"].iqm.point == pytest.approx(0.75)
    assert board.agents[:2] == ["clairvoyant", "esx_idle_tax"]
    assert board.agents[-1] == "random"
    assert board.best_classic == "esx_idle_tax"
    assert board.aggregate["esx_idle_tax"].poi is None
    assert board.aggregate["clairvoyant"].poi.point == pytest.approx(1.0)
    assert board.aggregate["random"].poi.point == pytest.approx(0.0)
    assert board.aggregate["random"].side["ooms"] == pytest.approx(1.0)
    assert board.aggregate["mom"].wall_s == pytest.approx(0.25 * 8)
    lower, upper = (
        board.aggregate["esx_idle_tax"].iqm.lower,
        board.aggregate["esx_idle_tax"].iqm.upper,
    )
    assert lower <= board.aggregate["esx_idle_tax"].iqm.point <= upper


def test_degenerate_scenario_is_left_out_of_the_aggregate() -> None:
    rows = _rows(
        {
            "proportional_share": _const(0.5, 0.8),
            "clairvoyant": _const(0.9, 0.8),  # b: same as the low reference
            "mom": _const(0.7, 0.8),
        }
    )
    board = build_leaderboard(rows, reps=100)
    assert board.excluded == ["b"]
    assert any("undefined" in n for n in board.notes)
    assert board.aggregate["mom"].iqm.point == pytest.approx(0.5)
    assert board.per_scenario["b"]["mom"].iqm.point == pytest.approx(0.8)  # raw there


def test_without_references_raw_scores_are_aggregated() -> None:
    board = build_leaderboard(_rows({"mom": _const(0.6, 0.8), "static": _const(0.5, 0.7)}), 100)
    assert not board.normalised
    assert board.aggregate["mom"].iqm.point == pytest.approx(0.7)
    assert "raw scores" in board.notes[0]


def test_incomplete_grid_is_rejected(rows: list[dict]) -> None:
    with pytest.raises(ValueError, match="full grid"):
        build_leaderboard(rows[:-1], reps=100)
    with pytest.raises(ValueError, match="no results"):
        build_leaderboard([], reps=100)


def test_markdown_and_plots(rows: list[dict], tmp_path: Path) -> None:
    files = write_leaderboard(rows, tmp_path, meta={"command": "python evaluate.py"}, reps=100)
    assert files == ["leaderboard.md", "scores.png", "scores_per_scenario.png"]
    for name in files:
        assert (tmp_path / name).stat().st_size > 0
    text = (tmp_path / "leaderboard.md").read_text()
    assert "## Aggregate" in text and "### a" in text and "`esx_idle_tax`" in text
    assert "P(> best)" in text and "References: proportional_share 0.5000" in text
    board = build_leaderboard(rows, reps=100)
    assert render_markdown(board, {}, []).count("| 1 |") == 1 + len(SCENARIOS)


def test_bootstrap_is_deterministic(rows: list[dict]) -> None:
    a = build_leaderboard(rows, reps=300).aggregate
    b = build_leaderboard(rows, reps=300).aggregate
    for agent in a:
        assert a[agent].iqm == b[agent].iqm
    assert np.isfinite([a[x].iqm.lower for x in a]).all()
