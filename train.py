"""Train a balloon scheduler with stable-baselines3: a thin wrapper over
:mod:`balloon_gym.training.cli`.

    python train.py                                            # quick PPO run on idle-tax
    python train.py --scenario idle-tax --algo ppo --timesteps 200000 --seed 0 --out DIR
    python train.py --resume DIR

See ``python train.py --help`` and ``docs/training.md``.
"""

import sys

from balloon_gym.training.cli import main

if __name__ == "__main__":
    sys.exit(main())
