"""Observation and action spaces shared by every adapter (DESIGN 3.7, 3.8)."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from balloon_gym.core.observe import observation_size


def observation_space(max_guests: int) -> spaces.Box:
    """Flat float32 Box in [0, 1]: guest features guest-major, then host features."""
    n = observation_size(max_guests)
    return spaces.Box(0.0, 1.0, shape=(n,), dtype=np.float32)


def action_space(max_guests: int) -> spaces.Box:
    """Box(-1, 1, (2 * max_guests,)): memory action per guest slot, then vCPU action per slot."""
    return spaces.Box(-1.0, 1.0, shape=(2 * max_guests,), dtype=np.float32)
