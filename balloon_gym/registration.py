"""Registration of every shipped scenario with Gymnasium, without importing the adapters.

``import balloon_gym`` must make ``gymnasium.make("BalloonGym/IdleTax-v1")`` work, yet importing
the simulator core (``balloon_gym.core``, which runs ``balloon_gym/__init__.py`` first) must not
load Gymnasium or the adapters. So the ids are registered with string entry points, and only
once Gymnasium is imported: at once if it already is, otherwise right after the first
``import gymnasium`` (a one-shot import hook that then removes itself). Anyone calling
``gymnasium.make`` has imported Gymnasium, so the ids are always there when they are needed.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from balloon_gym.scenarios import env_id, list_scenarios

SINGLE_ENTRY_POINT = "balloon_gym.envs.single:BalloonEnv"
VECTOR_ENTRY_POINT = "balloon_gym.envs.vector:BalloonVectorEnv"


def shipped_env_ids() -> list[str]:
    """The Gymnasium id of every shipped scenario, in the order of :func:`list_scenarios`."""
    return [env_id(name) for name in list_scenarios()]


def register_envs() -> list[str]:
    """Register every shipped scenario with Gymnasium (idempotent); returns the ids."""
    import gymnasium

    ids = []
    for name in list_scenarios():
        eid = env_id(name)
        if eid not in gymnasium.registry:
            gymnasium.register(
                id=eid,
                entry_point=SINGLE_ENTRY_POINT,
                vector_entry_point=VECTOR_ENTRY_POINT,
                kwargs={"scenario": name},
            )
        ids.append(eid)
    return ids


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """A one-shot finder: lets ``gymnasium`` import as usual, then registers the envs."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> Any:
        if fullname != "gymnasium":
            return None
        sys.meta_path.remove(self)  # one shot; the real finders do the import
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_then_register(module: ModuleType) -> None:
            exec_module(module)
            register_envs()

        spec.loader = _Loader(loader, exec_then_register)
        return spec


class _Loader(importlib.abc.Loader):
    """A loader that runs ``exec_module`` through a wrapper (and is otherwise ``inner``)."""

    def __init__(self, inner: importlib.abc.Loader, exec_module: Any) -> None:
        self._inner = inner
        self._exec_module = exec_module

    def create_module(self, spec: Any) -> ModuleType | None:
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._exec_module(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def register_when_gymnasium_loads() -> None:
    """Register now if Gymnasium is imported, else right after it is (see the module doc)."""
    if "gymnasium" in sys.modules:
        register_envs()
    elif not any(isinstance(f, _RegisterAfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterImport())
