"""Callbacks of a training run: checkpoints, and periodic evaluation against the baselines.

:class:`BaselineEvalCallback` scores the current deterministic policy on fixed evaluation seeds
(``10000..``) through :func:`balloon_gym.evaluation.run_batch`, the code ``evaluate.py`` uses,
after exporting it exactly as a finished run is exported (so what is evaluated is what
``ppo:DIR`` loads). The baselines' scores on the same seeds are computed once, at the start.
The final model is the last one: evaluation seeds are never used to pick a checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from balloon_gym.agents import make_agent
from balloon_gym.evaluation import evaluation_seeds, run_batch

#: Baselines scored once at the start of a run, logged beside the policy's score.
EVAL_BASELINES: tuple[str, ...] = ("proportional_share", "esx_idle_tax", "mom")

Exporter = Callable[[], tuple[dict[str, Any], dict[str, Any]]]
"""Returns the current ``(spec, state_dict)`` export of the model being trained."""


def policy_from_export(spec: dict[str, Any], state: dict[str, Any], max_guests: int) -> Any:
    """A :class:`~balloon_gym.agents.trained.TrainedPolicy` from an in-memory export."""
    from balloon_gym.agents.trained import TrainedPolicy
    from balloon_gym.training.policy import build_actor

    actor = build_actor(spec)
    actor.load_state_dict(state, strict=True)
    actor.eval()
    return TrainedPolicy(spec, actor, max_guests, name="current")


class BaselineEvalCallback(BaseCallback):
    """Every ``eval_freq`` timesteps, score the policy on ``num_seeds`` evaluation seeds.

    Args:
        exporter: The current export of the model.
        scenarios: Scenarios to evaluate on (each as its own batch).
        num_seeds: Evaluation seeds ``10000 .. 10000 + num_seeds - 1``.
        eval_freq: Timesteps between evaluations (0: never).
        max_episode_steps: Episode length (None: each scenario's).
        log: Where to print one line per evaluation.
    """

    def __init__(
        self,
        exporter: Exporter,
        scenarios: Sequence[str],
        num_seeds: int,
        eval_freq: int,
        max_episode_steps: int | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        super().__init__()
        self.exporter, self.scenarios = exporter, list(scenarios)
        self.seeds = evaluation_seeds(max(1, num_seeds))
        self.eval_freq, self.max_episode_steps, self.log = eval_freq, max_episode_steps, log
        self.baselines: dict[str, dict[str, float]] = {}
        self.history: list[dict[str, Any]] = []
        self._next = 0

    def _score(self, policy_factory: Callable[[Any], Any], scenario: str) -> float:
        res = run_batch(policy_factory, scenario, self.seeds, self.max_episode_steps)
        return float(np.mean(res.metrics["score"]))

    def _on_training_start(self) -> None:
        self._next = (
            (self.num_timesteps // self.eval_freq + 1) * self.eval_freq
            if (self.eval_freq > 0)
            else 0
        )
        if self.eval_freq <= 0:
            return
        for scenario in self.scenarios:
            row = {
                name: self._score(lambda env, n=name: make_agent(n, env), scenario)
                for name in EVAL_BASELINES
            }
            self.baselines[scenario] = row
            for name, score in row.items():
                self.logger.record(f"eval_baseline/{scenario}/{name}", score)
            self.log(
                f"[eval] baselines on {scenario} (seeds {self.seeds[0]}..{self.seeds[-1]}): "
                + ", ".join(f"{k} {v:.4f}" for k, v in row.items())
            )

    def evaluate_now(self) -> dict[str, float]:
        """Score the current policy on every scenario; logs and returns the scores."""
        spec, state = self.exporter()
        scores = {}
        for scenario in self.scenarios:
            scores[scenario] = self._score(
                lambda env: policy_from_export(spec, state, env.single_action_space.shape[0] // 2),
                scenario,
            )
            self.logger.record(f"eval/score/{scenario}", scores[scenario])
            best = max(self.baselines.get(scenario, {}).values(), default=float("nan"))
            self.logger.record(f"eval/vs_best_baseline/{scenario}", scores[scenario] - best)
        self.history.append({"timesteps": int(self.num_timesteps), **scores})
        esx = {s: self.baselines.get(s, {}).get("esx_idle_tax", np.nan) for s in scores}
        text = ", ".join(f"{s} {v:.4f} (esx_idle_tax {esx[s]:.4f})" for s, v in scores.items())
        self.log(f"[eval] {self.num_timesteps} steps: {text}")
        return scores

    def _on_step(self) -> bool:
        if self.eval_freq > 0 and self.num_timesteps >= self._next:
            self._next += self.eval_freq
            self.evaluate_now()
        return True


class CheckpointCallback(BaseCallback):
    """Every ``save_freq`` timesteps, save the run's checkpoint (atomically, one kept).

    Args:
        save_freq: Timesteps between checkpoints (0: none during training).
        save: ``save(directory)`` writes model, VecNormalize statistics, export and progress.
        directory: The checkpoint directory (replaced as a whole each time).
    """

    def __init__(self, save_freq: int, save: Callable[[Path], None], directory: Path) -> None:
        super().__init__()
        self.save_freq, self.save, self.directory = save_freq, save, Path(directory)
        self._next = 0

    def _on_training_start(self) -> None:
        if self.save_freq > 0:
            self._next = (self.num_timesteps // self.save_freq + 1) * self.save_freq

    def _on_step(self) -> bool:
        if self.save_freq > 0 and self.num_timesteps >= self._next:
            self._next += self.save_freq
            save_atomically(self.save, self.directory)
        return True


class Interrupted(KeyboardInterrupt):
    """A termination signal (SIGTERM), raised like SIGINT's ``KeyboardInterrupt``.

    Attributes:
        signum: The signal number.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def raise_on_sigterm(signum: int, _frame: Any) -> None:
    """Signal handler: raise :class:`Interrupted` (install for SIGTERM in the main thread)."""
    raise Interrupted(signum)


_deferring: list[bool] = []  # non-empty inside signals_deferred (main thread only)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM that arrive inside the block are raised when it ends.

    Keeps a save whole: a checkpoint swap or an export is never cut in half. Outside the main
    thread (where handlers cannot be set) the block runs unprotected.
    """
    if threading.current_thread() is not threading.main_thread() or _deferring:
        yield  # not settable here, or an enclosing block already defers
        return
    pending: list[int] = []

    def remember(signum: int, _frame: Any) -> None:
        pending.append(signum)

    old = {s: signal.signal(s, remember) for s in (signal.SIGINT, signal.SIGTERM)}
    _deferring.append(True)
    try:
        yield
    finally:
        _deferring.pop()
        for s, handler in old.items():
            signal.signal(s, handler)
    if pending:
        if pending[0] == signal.SIGINT:
            raise KeyboardInterrupt
        raise Interrupted(pending[0])


def save_atomically(save: Callable[[Path], None], directory: Path) -> None:
    """Write into ``directory.tmp``, then swap it in for ``directory`` (signals deferred)."""
    tmp = directory.with_name(directory.name + ".tmp")
    old = directory.with_name(directory.name + ".old")
    with signals_deferred():
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save(tmp)
        if directory.exists():
            shutil.rmtree(old, ignore_errors=True)
            directory.rename(old)
        tmp.rename(directory)
        shutil.rmtree(old, ignore_errors=True)


class TimingCallback(BaseCallback):
    """Logs the simulator's share of the wall time since training (re)started.

    Args:
        timer: Object with ``env_time_s`` (the :class:`~balloon_gym.training.envs.TimedVecEnv`).
    """

    def __init__(self, timer: Any) -> None:
        super().__init__()
        self.timer = timer
        self.start = time.perf_counter()
        self.env_start = 0.0

    def _on_training_start(self) -> None:
        self.start, self.env_start = time.perf_counter(), self.timer.env_time_s

    def _on_rollout_end(self) -> None:
        wall = time.perf_counter() - self.start
        self.logger.record("time/env_share", (self.timer.env_time_s - self.env_start) / wall)

    def _on_step(self) -> bool:
        return True

    def summary(self) -> dict[str, float]:
        """``learn_wall_s``, ``env_s``, ``env_share`` since training started."""
        wall = time.perf_counter() - self.start
        env = self.timer.env_time_s - self.env_start
        return {"learn_wall_s": wall, "env_s": env, "env_share": env / max(wall, 1e-9)}


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON."""
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
