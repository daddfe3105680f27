"""``python -m balloon_gym.demo``: one episode of a baseline, printed; bad input exits 2."""

from __future__ import annotations

import pytest

from balloon_gym.demo import main


def test_demo_prints_an_episode(capsys: pytest.CaptureFixture) -> None:
    assert main(["--scenario", "idle-tax", "--steps", "3", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "score (mean share-weighted throughput)" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scenario", "nope"], "unknown scenario 'nope'"),
        (["--steps", "0"], "--steps must be in 1..1000000"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_demo_rejects_bad_input_in_one_line(
    capsys: pytest.CaptureFixture, argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
