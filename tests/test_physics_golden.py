"""Golden trajectories: the numpy core replays every shipped scenario bit for bit.

``tests/golden/<scenario>.npz`` holds, per step of a fixed-seed run (``scripts/make_golden.py``),
a SHA-256 of everything the step produced and a few summary columns per host. The core must
reproduce them exactly: these files pin the model's numbers independently of the numba backend.

A model change that changes any number is a new env version: bump
``balloon_gym.scenarios.ENV_VERSION`` and regenerate with ``python scripts/make_golden.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from balloon_gym.scenarios import ENV_VERSION, list_scenarios

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import make_golden

REGENERATE = (
    "the model's numbers changed. If that is intended, it is a new env version: bump "
    "balloon_gym.scenarios.ENV_VERSION and regenerate with `python scripts/make_golden.py`; "
    "otherwise the change broke the physics"
)


def test_every_shipped_scenario_has_a_golden_file():
    files = sorted(p.stem for p in make_golden.GOLDEN_DIR.glob("*.npz"))
    assert files == list_scenarios(), "run `python scripts/make_golden.py` for new scenarios"


@pytest.mark.parametrize("scenario", list_scenarios())
def test_golden_trajectory(scenario):
    with np.load(make_golden.GOLDEN_DIR / f"{scenario}.npz") as f:
        golden = {k: f[k] for k in f.files}
    assert int(golden["env_version"]) == ENV_VERSION, (
        f"{scenario}: golden file made under env v{int(golden['env_version'])}, the env is "
        f"v{ENV_VERSION}; regenerate with `python scripts/make_golden.py`"
    )
    for t, (digest, row) in enumerate(make_golden.trajectory(scenario)):
        for name in make_golden.COLUMNS:
            np.testing.assert_array_equal(
                row[name], golden[name][t], err_msg=f"{scenario}, step {t}, {name}: {REGENERATE}"
            )
        assert np.frombuffer(digest, np.uint8).tobytes() == golden["digest"][t].tobytes(), (
            f"{scenario}, step {t}: the step's state, reward or observation differs from the "
            f"golden run (the summary columns agree); {REGENERATE}"
        )
