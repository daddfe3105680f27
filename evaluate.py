"""Evaluate schedulers on BalloonBench: a thin wrapper over :mod:`balloon_gym.evaluation`.

    python evaluate.py --out results/balloonbench-v1
    python evaluate.py --agents esx_idle_tax,proportional_share --scenarios idle-tax,diurnal \
        --seeds 10 --out runs/eval-esx

See ``python evaluate.py --help`` and ``docs/baselines.md``.
"""

import sys

from balloon_gym.evaluation_cli import main

if __name__ == "__main__":
    sys.exit(main())
