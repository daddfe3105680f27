"""The primitives the model's equations are written in, and the register of those equations.

Every per-guest (or per-host) equation of the model is written once, as a small function of
arrays decorated with :func:`equation`, using only arithmetic, comparisons, ``&``/``|`` on
booleans, a few numpy scalar functions (``np.sqrt``, ``np.rint``, ``np.abs``, ``np.floor``) and
the primitives below. The numpy core calls these functions on ``(num_envs, max_guests)`` arrays
(or ``(num_envs, 1)`` host arrays, which broadcast). The numba backend
(``balloon_gym.core.fused``) compiles the very same functions for scalars and calls them inside
its loops over hosts and guests: it rebinds the primitives' names to scalar forms
(``fused.kernels.SCALAR_PRIMITIVES``) and leaves everything else as written. Only the reductions
over a host's guests (projection, water-filling, the reclaim split, the machine-page budget and
the reward's sums) have a numpy and a loop form, and the differential test
(``tests/test_fused.py``) holds those to each other.

Under numpy the primitives are the numpy functions themselves: no wrapper, no overhead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np

F = TypeVar("F", bound=Callable)

#: Every function decorated with :func:`equation`, in definition order.
EQUATIONS: list[Callable] = []

minimum = np.minimum
"""Elementwise minimum (compiled: ``min``)."""
maximum = np.maximum
"""Elementwise maximum (compiled: ``max``)."""
select = np.where
"""``select(cond, a, b)``: ``a`` where ``cond``, else ``b`` (compiled: ``a if cond else b``)."""
per = np.divide
"""``per(x, d)``: ``x / d`` for an observation feature (compiled: ``x * (1 / d)``, so that the
features normalised by one ``d`` share one division; a float32 feature rounds the same to within
one float32 step)."""


def scaled_sin(amp, angle):
    """``amp * sin(angle)`` (compiled: 0 without computing the sine when ``amp == 0``, which
    gives the same sum ``1 + amp * sin``: the sine costs ~13 ns a guest)."""
    return amp * np.sin(angle)


def equation(fn: F) -> F:
    """Register ``fn`` as one of the model's equations (returned unchanged): the numba backend
    compiles every registered function for scalars."""
    EQUATIONS.append(fn)
    return fn


__all__ = [
    "EQUATIONS",
    "equation",
    "maximum",
    "minimum",
    "per",
    "scaled_sin",
    "select",
]
