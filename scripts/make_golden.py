#!/usr/bin/env python
"""Write the golden trajectories of the numpy core: ``tests/golden/<scenario>.npz``.

``python scripts/make_golden.py [--check] [SCENARIO ...]``

One file per shipped scenario: ``NUM_ENVS`` hosts run ``STEPS`` steps of ``balloon_gym.core``
(numpy, the reference) from a fixed seed, on sticky random actions drawn from their own seed
(the same action sequence whatever the model does). Per step the file keeps a SHA-256 of every
byte the step produced (every ``State`` field, the reward, its parts and the float32
observation), which pins the model bit for bit, and a few summary columns per host (reward,
mean throughput, stall, host swap, OOM kills, balloon size), which say where a trajectory left
the golden one when the hash no longer matches. ``tests/test_physics_golden.py`` replays them.

The files hold the env version (``balloon_gym.scenarios.ENV_VERSION``) they were made under.
The model's numbers are the env's contract: regenerate the files only together with a bump of
``ENV_VERSION`` (a model change that changes any number is a new env version).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from balloon_gym import core
from balloon_gym.core.params import repeat_params
from balloon_gym.scenarios import ENV_VERSION, list_scenarios, load_scenario

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "tests" / "golden"
STEPS = 300
NUM_ENVS = 2
SEED = 20261129
#: Per-host summary columns, each ``(STEPS, NUM_ENVS)``.
COLUMNS = ("reward", "throughput", "stall_s", "host_swap", "ooms", "balloon")


def _digest(state: core.State, out: core.StepOutput, obs: np.ndarray) -> bytes:
    h = hashlib.sha256()
    for array in (*state, out.reward, *out.parts.values(), obs):
        h.update(np.ascontiguousarray(array).tobytes())
    return h.digest()


def trajectory(scenario: str) -> Iterator[tuple[bytes, dict[str, np.ndarray]]]:
    """Each step's digest and summary columns (per host) of the golden run of ``scenario``."""
    params = repeat_params(core.params_from_scenario(load_scenario(scenario)), NUM_ENVS)
    rng = np.random.default_rng(SEED)
    actions = np.random.default_rng(SEED + 1)
    shape = (NUM_ENVS, 2 * params.max_guests)
    state = core.reset(params, rng)
    action = actions.uniform(-1.0, 1.0, shape)
    for _ in range(STEPS):
        if actions.random() < 0.1:  # sticky: balloons get to reach their targets
            action = actions.uniform(-1.0, 1.0, shape)
        state, out = core.step(state, action, params, rng)
        obs = core.observe(state, params)
        yield (
            _digest(state, out, obs),
            {
                "reward": out.reward,
                "throughput": state.throughput.sum(axis=1),
                "stall_s": state.stall_s.sum(axis=1),
                "host_swap": state.host_swap.sum(axis=1),
                "ooms": out.parts["ooms"],
                "balloon": state.balloon.sum(axis=1),
            },
        )


def golden_arrays(scenario: str) -> dict[str, np.ndarray]:
    """What the golden file of ``scenario`` holds, computed by the current code."""
    digests, rows = [], []
    for digest, row in trajectory(scenario):
        digests.append(np.frombuffer(digest, dtype=np.uint8))
        rows.append(row)
    arrays = {name: np.stack([r[name] for r in rows]) for name in COLUMNS}
    return {
        "env_version": np.array(ENV_VERSION),
        "seed": np.array(SEED),
        "digest": np.stack(digests),
        **arrays,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenarios", nargs="*", help="default: every shipped scenario")
    ap.add_argument("--check", action="store_true", help="compare with the files, write nothing")
    args = ap.parse_args(argv)
    names = args.scenarios or list_scenarios()
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    failed = 0
    for name in names:
        arrays = golden_arrays(name)
        path = GOLDEN_DIR / f"{name}.npz"
        if args.check:
            with np.load(path) as old:
                same = all(np.array_equal(old[k], v) for k, v in arrays.items())
            print(f"{name}: {'same' if same else 'DIFFERENT'}")
            failed += not same
        else:
            np.savez_compressed(path, **arrays)
            print(f"{name}: {path.stat().st_size} bytes")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
