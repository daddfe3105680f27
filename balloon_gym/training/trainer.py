"""One training run: build the env stack, train (fresh or resumed), save, evaluate.

A run directory holds:

| file | what |
|---|---|
| ``config.yaml`` | the resolved request: algo, scenarios, seed, timesteps, hyperparameters |
| ``run.json`` | command(s), versions (package, env, SB3, torch), git commit, timing, status |
| ``model.zip``, ``vecnormalize.pkl`` | SB3 model, VecNormalize stats (pickles: own runs only) |
| ``policy.json``, ``policy.pth`` | the safe export that ``evaluate.py --agents ppo:DIR`` loads |
| ``checkpoint/`` | the latest checkpoint: the same four files + ``progress.json`` |
| ``tb/`` | TensorBoard logs |
| ``eval/`` | the final evaluation (``results.csv``, ``leaderboard.md``, plots) |
"""

from __future__ import annotations

import datetime as dt
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from balloon_gym import __version__
from balloon_gym.scenarios import ENV_VERSION
from balloon_gym.training.callbacks import (
    BaselineEvalCallback,
    CheckpointCallback,
    TimingCallback,
    save_atomically,
    write_json,
)
from balloon_gym.training.config import algo_class, sb3_kwargs
from balloon_gym.training.policy import make_export, save_export

CONFIG_FILE = "config.yaml"
RUN_FILE = "run.json"
CHECKPOINT_DIR = "checkpoint"
PROGRESS_FILE = "progress.json"


@dataclass
class TrainRequest:
    """A validated training run (what the command line decides).

    Attributes:
        algo: Key of :data:`balloon_gym.training.config.ALGOS`.
        scenarios: Training scenarios (one batch, round-robin).
        seed: Training seed (env seed ``1000 + seed``, below the evaluation seeds).
        timesteps: Total environment steps (summed over the batch).
        out: Run directory.
        config: Resolved hyperparameters.
        resume: Continue the run in ``out`` from its checkpoint.
        progress: Show a progress bar.
        final_eval_seeds: Evaluation seeds of the final evaluation (0: none).
        command: The command line, for ``run.json``.
    """

    algo: str
    scenarios: list[str]
    seed: int
    timesteps: int
    out: Path
    config: dict[str, Any]
    resume: bool = False
    progress: bool = True
    final_eval_seeds: int = 10
    command: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def git_commit() -> str | None:
    """The repository's HEAD commit, if this is a git checkout (read-only)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def versions() -> dict[str, Any]:
    """Package, env and library versions for ``run.json``."""
    import stable_baselines3
    import torch

    return {
        "package_version": __version__,
        "env_version": f"v{ENV_VERSION}",
        "stable_baselines3": stable_baselines3.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "git_commit": git_commit(),
    }


def request_to_yaml(req: TrainRequest) -> dict[str, Any]:
    """The ``config.yaml`` content of a request."""
    return {
        "algo": req.algo,
        "scenarios": list(req.scenarios),
        "seed": req.seed,
        "timesteps": req.timesteps,
        "hyperparameters": req.config,
    }


class Trainer:
    """Builds the env and model of a request, trains, saves and evaluates.

    Args:
        req: The request.
        log: Where to print progress lines.
    """

    def __init__(self, req: TrainRequest, log: Any = print) -> None:
        self.req, self.log = req, log
        self.ckpt = req.out / CHECKPOINT_DIR
        self.segment = 0
        if req.resume:
            progress = yaml.safe_load((self.ckpt / PROGRESS_FILE).read_text(encoding="utf-8"))
            self.segment = int(progress.get("segment", 0)) + 1
        self._build()

    def _build(self) -> None:
        from stable_baselines3.common.vec_env import VecNormalize

        from balloon_gym.training.envs import find_wrapper, make_train_env

        req, cfg = self.req, self.req.config
        self.venv, self.timer = make_train_env(req.scenarios, cfg, req.seed, self.segment)
        cls = algo_class(req.algo)
        tb = str(req.out / "tb")
        if req.resume:
            norm = find_wrapper(self.venv, VecNormalize)
            if norm is not None:
                loaded = VecNormalize.load(str(self.ckpt / "vecnormalize.pkl"), norm.venv)
                loaded.training = True
                self.venv = loaded
            # Our own checkpoint: SB3's pickle loader is acceptable here (never for others').
            self.model = cls.load(
                str(self.ckpt / "model.zip"), env=self.venv, tensorboard_log=tb, device="cpu"
            )
        else:
            self.model = cls(
                "MlpPolicy",
                self.venv,
                seed=req.seed,
                verbose=0,
                tensorboard_log=tb,
                device="cpu",
                **sb3_kwargs(cfg),
            )
        self.norm = find_wrapper(self.venv, VecNormalize)
        self.max_guests = int(self.venv.action_space.shape[0]) // 2

    def export(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The current safe export (spec, state_dict) of the model."""
        norm = self.norm
        use = norm is not None and norm.norm_obs
        residual = None
        if self.req.config.get("residual"):
            residual = {
                "base": self.req.config["residual"],
                "scale": float(self.req.config.get("residual_scale", 0.5)),
            }
            if self.req.config.get("residual_vcpu_scale") is not None:
                residual["vcpu_scale"] = float(self.req.config["residual_vcpu_scale"])
        meta = {
            "max_guests": self.max_guests,
            "residual": residual,
            "scenarios": self.req.scenarios,
            "env_version": f"v{ENV_VERSION}",
            "package_version": __version__,
        }
        return make_export(
            self.model,
            norm.obs_rms if use else None,
            norm.clip_obs if use else 10.0,
            norm.epsilon if use else 1e-8,
            meta,
        )

    def save(self, directory: Path) -> None:
        """Write model, VecNormalize statistics, safe export and progress into ``directory``."""
        self.model.save(str(directory / "model.zip"))
        if self.norm is not None:
            self.norm.save(str(directory / "vecnormalize.pkl"))
        save_export(directory, *self.export())
        write_json(
            directory / PROGRESS_FILE,
            {"num_timesteps": int(self.model.num_timesteps), "segment": self.segment},
        )

    def _write_run(self, status: str, timing: dict[str, float] | None = None) -> None:
        path = self.req.out / RUN_FILE
        run = {}
        if path.is_file():
            import json

            run = json.loads(path.read_text(encoding="utf-8"))
        run.setdefault("commands", [])
        if not run["commands"] or run["commands"][-1] != self.req.command:
            run["commands"].append(self.req.command)
        segments = run.setdefault("segments", [])
        if timing is not None:
            segments.append({"segment": self.segment, **timing})
        run.update(versions())
        run.update(
            {
                "status": status,
                "num_timesteps": int(self.model.num_timesteps),
                "target_timesteps": self.req.timesteps,
                "updated": dt.datetime.now().isoformat(timespec="seconds"),
            }
        )
        if segments:
            wall = sum(s["learn_wall_s"] for s in segments)
            env = sum(s["env_s"] for s in segments)
            run["env_share_of_training_wall_time"] = env / max(wall, 1e-9)
        write_json(path, run)

    def train(self) -> dict[str, Any]:
        """Train to ``timesteps`` in total, checkpointing; save the final files.

        Returns:
            Timing and the periodic evaluations' history.
        """
        req, cfg = self.req, self.req.config
        out = req.out
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG_FILE).write_text(
            yaml.safe_dump(request_to_yaml(req), sort_keys=False), encoding="utf-8"
        )
        self._write_run("running")
        remaining = req.timesteps - int(self.model.num_timesteps)
        timing = TimingCallback(self.timer)
        evaluator = BaselineEvalCallback(
            self.export,
            req.scenarios,
            int(cfg.get("eval_seeds", 3)),
            int(cfg.get("eval_freq", 0)),
            cfg.get("max_episode_steps"),
            log=self.log,
        )
        ckpt = CheckpointCallback(int(cfg.get("checkpoint_freq", 0)), self.save, self.ckpt)
        if remaining > 0:
            self.log(
                f"training {req.algo} on {','.join(req.scenarios)} (seed {req.seed}) from "
                f"{self.model.num_timesteps} to {req.timesteps} timesteps into {out}"
            )
            self.model.learn(
                total_timesteps=remaining,
                callback=[timing, evaluator, ckpt],
                progress_bar=req.progress,
                tb_log_name="run",
                reset_num_timesteps=not req.resume,
            )
        summary = timing.summary()
        save_atomically(self.save, self.ckpt)
        self.save(out)
        self._write_run("finished", summary)
        self.log(
            f"done: {self.model.num_timesteps} timesteps in {summary['learn_wall_s']:.1f} s; "
            f"simulator {100 * summary['env_share']:.1f} % of it"
        )
        return {**summary, "history": evaluator.history}
