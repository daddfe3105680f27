"""Training learnable schedulers with stable-baselines3 (``python train.py``).

* :mod:`balloon_gym.training.config`: the algorithm YAML (``configs/algos/<algo>.yaml``), keyed
  by scenario with a ``default`` entry, merged with command-line overrides, validated.
* :mod:`balloon_gym.training.envs`: the training VecEnv stack (``BalloonSB3VecEnv`` over the
  native batch, an optional residual-over-a-baseline wrapper, timers, ``VecNormalize``).
* :mod:`balloon_gym.training.policy`: the safe export of a trained actor (``policy.pth`` state
  dict + ``policy.json``) and its loader, which never unpickles code.
* :mod:`balloon_gym.training.callbacks`: checkpoints and periodic evaluation against baselines.
* :mod:`balloon_gym.training.trainer`: one training run (fresh or resumed).
* :mod:`balloon_gym.training.cli`: the ``train.py`` command line.

Everything here needs the ``train`` extra (torch, stable-baselines3).
"""

from __future__ import annotations

__all__: list[str] = []
