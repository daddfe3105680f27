"""The layers as the README draws them: core at the bottom, adapters and policies above it.

* The simulator core (``balloon_gym/core``) imports neither Gymnasium, stable-baselines3 nor
  torch, nor any part of the package above it; importing it loads none of them.
* The policies (``agents/``) never import the training package; training and the trained
  agents share only the export format (:mod:`balloon_gym.policy_export`).
* Privileged views of the simulator (true demand) are core functions, not an agent's.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "balloon_gym" / "core"
ABOVE_CORE = (
    "gymnasium",
    "stable_baselines3",
    "torch",
    "balloon_gym.envs",
    "balloon_gym.agents",
    "balloon_gym.training",
    "balloon_gym.evaluation",
    "balloon_gym.evaluation_cli",
    "balloon_gym.leaderboard",
    "balloon_gym.registration",
    "agents",
)


def _imports(path: Path) -> set[str]:
    """Every module a file imports (absolute names; relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _python_prints(code: str) -> str:
    """What a fresh interpreter prints running ``code`` in the repository root."""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return proc.stdout.strip()


def _offending(paths: list[Path], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    bad = {}
    for path in paths:
        hits = sorted(
            name
            for name in _imports(path)
            if any(name == f or name.startswith(f + ".") for f in forbidden)
        )
        if hits:
            bad[str(path.relative_to(ROOT))] = hits
    return bad


def test_core_sources_import_nothing_above_the_core() -> None:
    assert _offending(sorted(CORE.rglob("*.py")), ABOVE_CORE) == {}


def test_agents_never_import_the_training_package() -> None:
    paths = sorted((ROOT / "agents").glob("*.py"))
    assert paths
    assert _offending(paths, ("balloon_gym.training", "stable_baselines3")) == {}


def test_evaluation_takes_privileged_views_from_the_core() -> None:
    imports = _imports(ROOT / "balloon_gym" / "evaluation.py")
    assert "balloon_gym.core.privileged.true_demand" in imports
    assert not any(name.startswith("balloon_gym.agents.clairvoyant") for name in imports)


@pytest.mark.parametrize(
    "module", ["balloon_gym.core", "balloon_gym.core.step", "balloon_gym.core.privileged"]
)
def test_importing_the_core_loads_no_adapter_and_no_gymnasium(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in "
        "('gymnasium', 'stable_baselines3', 'torch') or m.startswith('balloon_gym.envs') "
        "or m.startswith('balloon_gym.agents') or m.startswith('balloon_gym.training')]\n"
        "print(','.join(sorted(loaded)))\n"
    )
    assert _python_prints(code) == ""


def test_import_balloon_gym_still_registers_every_id_for_gymnasium() -> None:
    """The ids appear whether gymnasium is imported before or after balloon_gym."""
    code = (
        "import balloon_gym\n"
        "import gymnasium as gym\n"
        "assert all(i in gym.registry for i in balloon_gym.ENV_IDS)\n"
        "env = gym.make(balloon_gym.ENV_IDS[0])\n"
        "print(type(env.unwrapped).__name__)\n"
    )
    assert _python_prints(code) == "BalloonEnv"


def test_autoreset_is_written_once_in_the_batch_runner() -> None:
    """Adapters call ``Batch.step_autoreset``; none resets finished episodes itself."""
    for name in ("vector.py", "sb3.py", "single.py"):
        text = (ROOT / "balloon_gym" / "envs" / name).read_text(encoding="utf-8")
        assert "reset_where" not in text, name
    for name in ("vector.py", "sb3.py"):
        text = (ROOT / "balloon_gym" / "envs" / name).read_text(encoding="utf-8")
        assert "step_autoreset(" in text, name
