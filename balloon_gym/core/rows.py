"""Per-host reductions over the guest axis, in the hot path of the step.

``x.sum(axis=1)`` over a short last axis is slow in numpy (about 40 us for 1024 x 8 here): it
reduces row by row. A matrix-vector product with a vector of ones does the same sum through BLAS
in a few microseconds. Results agree with ``sum`` to float rounding.
"""

from __future__ import annotations

import numpy as np


def row_sum(x: np.ndarray) -> np.ndarray:
    """Sum over the last axis of a ``(num_envs, max_guests)`` array, shape ``(num_envs,)``."""
    return x @ np.ones(x.shape[-1])


def row_sum_keep(x: np.ndarray) -> np.ndarray:
    """Sum over the last axis, shape ``(num_envs, 1)``."""
    return x @ np.ones((x.shape[-1], 1))
