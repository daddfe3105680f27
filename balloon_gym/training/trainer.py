"""One training run: build the env stack, train (fresh or resumed), save, evaluate.

A run directory holds:

| file | what |
|---|---|
| ``config.yaml`` | the resolved request: algo, scenarios, seed, timesteps, hyperparameters |
| ``run.json`` | command(s), versions (package, env, SB3, torch), git commit, host, timing, status |
| ``model.zip``, ``vecnormalize.pkl`` | SB3 model, VecNormalize stats (pickles: own runs only) |
| ``policy.json``, ``policy.pth`` | the safe export that ``evaluate.py --agents ppo:DIR`` loads |
| ``manifest.json`` | SHA-256 of the files above, checked before a resume unpickles anything |
| ``checkpoint/`` | the latest checkpoint: the same files + ``progress.json`` |

``status`` in ``run.json``: ``running``, ``finished``, ``interrupted`` (SIGINT/SIGTERM: the
model at that moment was exported into the run directory; the checkpoint is the last whole
one) or ``failed``.
| ``tb/`` | TensorBoard logs |
| ``eval/`` | the final evaluation (``results.csv``, ``leaderboard.md``, plots) |
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import math
import pickle
import platform
import socket
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
    signals_deferred,
    write_json,
)
from balloon_gym.training.config import (
    ALGOS,
    TrainConfigError,
    algo_class,
    check_resolved,
    sb3_kwargs,
)
from balloon_gym.training.policy import make_export, save_export

CONFIG_FILE = "config.yaml"
RUN_FILE = "run.json"
CHECKPOINT_DIR = "checkpoint"
PROGRESS_FILE = "progress.json"
MANIFEST_FILE = "manifest.json"

#: Files whose SHA-256 the manifest records; the first two are pickles (read on resume only).
HASHED_FILES: tuple[str, ...] = ("model.zip", "vecnormalize.pkl", "policy.json", "policy.pth")
PICKLED_FILES: tuple[str, ...] = HASHED_FILES[:2]

#: Largest ``config.yaml``, ``run.json``, ``progress.json`` or manifest read on resume.
MAX_METADATA_BYTES = 4 * 1024 * 1024


class RunDirectoryError(TrainConfigError):
    """A run directory that cannot be resumed; the message names the file and the problem."""


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
        "hostname": socket.gethostname() or None,
    }


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(directory: Path) -> None:
    """Record the SHA-256 of the run files present in ``directory`` (``manifest.json``)."""
    hashes = {n: sha256_file(directory / n) for n in HASHED_FILES if (directory / n).is_file()}
    write_json(directory / MANIFEST_FILE, {"sha256": hashes})


def _read_small(path: Path) -> bytes:
    """At most :data:`MAX_METADATA_BYTES` of a file, or RunDirectoryError."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_METADATA_BYTES + 1)
    except OSError as err:
        raise RunDirectoryError(f"{path}: cannot read it ({err.strerror or err})") from None
    if len(raw) > MAX_METADATA_BYTES:
        raise RunDirectoryError(f"{path} is larger than {MAX_METADATA_BYTES} bytes")
    return raw


def _read_json(path: Path) -> Any:
    """A small JSON file, or RunDirectoryError (missing, too large, not JSON)."""
    if not path.is_file():
        raise RunDirectoryError(f"{path} is missing; not a resumable train.py run directory")
    raw = _read_small(path)
    try:
        return json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise RunDirectoryError(f"{path}: not valid JSON (nested too deeply)") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise RunDirectoryError(f"{path}: not valid JSON ({str(err)[:200]})") from None


def read_verified(directory: Path, names: tuple[str, ...] = PICKLED_FILES) -> dict[str, bytes]:
    """The bytes of the pickled files of a checkpoint, checked against its manifest.

    ``model.zip`` must be there; ``vecnormalize.pkl`` if the manifest lists it or it exists.
    Nothing is unpickled here; callers unpickle the returned bytes (never the file again).

    Raises:
        RunDirectoryError: Missing or malformed manifest, a file it does not list, a missing
            file, or a hash mismatch.
    """
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.is_file():
        raise RunDirectoryError(
            f"{manifest_path} is missing: the SHA-256 of the pickled checkpoint files cannot "
            "be checked, so they are not loaded; start a new run"
        )
    manifest = _read_json(manifest_path)
    hashes = manifest.get("sha256") if isinstance(manifest, dict) else None
    if not isinstance(hashes, dict) or not all(
        isinstance(v, str) and len(v) == 64 for v in hashes.values()
    ):
        raise RunDirectoryError(f'{manifest_path}: expected {{"sha256": {{file: hex}}}}')
    out: dict[str, bytes] = {}
    for name in names:
        path = directory / name
        if name not in hashes:
            if name == "model.zip" or path.exists():
                raise RunDirectoryError(
                    f"{path}: no SHA-256 in {manifest_path}; refusing to unpickle it"
                )
            continue
        if not path.is_file():
            raise RunDirectoryError(f"{path} is missing (listed in {manifest_path})")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != hashes[name]:
            raise RunDirectoryError(
                f"{path}: SHA-256 does not match {manifest_path}; the file was modified "
                "after train.py wrote it, refusing to unpickle it"
            )
        out[name] = data
    return out


def _int_field(path: Path, data: dict[str, Any], key: str, low: int, high: int) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise RunDirectoryError(f"{path}: {key} must be an integer in {low}..{high}")
    return value


def read_progress(ckpt: Path) -> dict[str, int]:
    """``checkpoint/progress.json``: ``num_timesteps`` and ``segment``, checked."""
    path = ckpt / PROGRESS_FILE
    data = _read_json(path)
    if not isinstance(data, dict):
        raise RunDirectoryError(f"{path}: expected a JSON object")
    return {
        "num_timesteps": _int_field(path, data, "num_timesteps", 0, 10**15),
        "segment": _int_field(path, data, "segment", 0, 10**6),
    }


def read_run_json(path: Path) -> dict[str, Any]:
    """An existing ``run.json``, checked (commands, segments, status)."""
    run = _read_json(path)
    if not isinstance(run, dict):
        raise RunDirectoryError(f"{path}: expected a JSON object")
    commands, segments = run.get("commands"), run.get("segments", [])
    if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
        raise RunDirectoryError(f"{path}: commands must be a list of strings")
    ok = isinstance(segments, list) and all(
        isinstance(s, dict)
        and all(
            isinstance(s.get(k), int | float)
            and not isinstance(s.get(k), bool)
            and math.isfinite(s[k])
            for k in ("learn_wall_s", "env_s")
        )
        for s in segments
    )
    if not ok:
        raise RunDirectoryError(f"{path}: segments must be a list of timing records")
    if not isinstance(run.get("status"), str):
        raise RunDirectoryError(f"{path}: status must be a string")
    return run


def read_run_config(run: Path) -> dict[str, Any]:
    """``config.yaml`` of a run directory, checked (algo, scenarios, seed, hyperparameters).

    Raises:
        RunDirectoryError: Naming the file and the problem.
    """
    from balloon_gym.training.envs import MAX_SEED

    path = run / CONFIG_FILE
    if not path.is_file():
        raise RunDirectoryError(f"{path} is missing; not a train.py run directory")
    raw = _read_small(path)
    try:
        saved = yaml.safe_load(raw.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as err:
        msg = " ".join(str(err).split())[:200] or type(err).__name__
        raise RunDirectoryError(f"{path}: not valid YAML ({msg})") from None
    keys = ("algo", "scenarios", "seed", "timesteps", "hyperparameters")
    if not isinstance(saved, dict) or any(k not in saved for k in keys):
        raise RunDirectoryError(f"{path}: expected a mapping with keys {', '.join(keys)}")
    if saved["algo"] not in ALGOS:
        raise RunDirectoryError(f"{path}: algo must be one of {', '.join(ALGOS)}")
    scenarios = saved["scenarios"]
    if not isinstance(scenarios, list) or not scenarios:
        raise RunDirectoryError(f"{path}: scenarios must be a non-empty list of names")
    if not all(isinstance(x, str) and x for x in scenarios):
        raise RunDirectoryError(f"{path}: scenarios must be a non-empty list of names")
    _int_field(path, saved, "seed", 0, MAX_SEED - 1)
    _int_field(path, saved, "timesteps", 1, 10**12)
    try:
        saved["hyperparameters"] = check_resolved(
            saved["algo"], saved["hyperparameters"], f"{path}: hyperparameters."
        )
    except RunDirectoryError:
        raise
    except TrainConfigError as err:
        raise RunDirectoryError(str(err)) from None
    return saved


def check_resumable(run: Path) -> dict[str, Any]:
    """Everything ``--resume run`` reads, checked before anything is unpickled or written.

    Returns:
        The checked ``config.yaml``.

    Raises:
        RunDirectoryError: Naming the file and the problem.
    """
    if not run.is_dir():
        raise RunDirectoryError(f"{run} is not a directory")
    saved = read_run_config(run)
    read_run_json(run / RUN_FILE)
    read_progress(run / CHECKPOINT_DIR)
    read_verified(run / CHECKPOINT_DIR)
    return saved


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
        self._wrote_run = False
        if req.resume:
            self.segment = read_progress(self.ckpt)["segment"] + 1
        self._build()

    def _build(self) -> None:
        from stable_baselines3.common.vec_env import VecNormalize

        from balloon_gym.training.envs import find_wrapper, make_train_env

        req, cfg = self.req, self.req.config
        self.venv, self.timer = make_train_env(req.scenarios, cfg, req.seed, self.segment)
        cls = algo_class(req.algo)
        tb = str(req.out / "tb")
        if req.resume:
            try:
                self._load_checkpoint(cls, tb)
            except (ValueError, KeyError, AssertionError) as err:  # e.g. other spaces
                if isinstance(err, RunDirectoryError):
                    raise
                msg = " ".join(str(err).split())[:300]
                raise RunDirectoryError(
                    f"{self.ckpt}: does not fit {CONFIG_FILE}'s scenarios and algo ({msg})"
                ) from None
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

    def _load_checkpoint(self, cls: type, tb: str) -> None:
        """VecNormalize statistics and the model from the checkpoint (hashes checked first)."""
        from stable_baselines3.common.vec_env import VecNormalize

        from balloon_gym.training.envs import find_wrapper

        # Our own checkpoint: unpickled only after its SHA-256 matched the manifest, and
        # from the bytes that were checked (never others' files: see policy.py).
        data = read_verified(self.ckpt)
        norm = find_wrapper(self.venv, VecNormalize)
        if norm is not None:
            if "vecnormalize.pkl" not in data:
                raise RunDirectoryError(f"{self.ckpt / 'vecnormalize.pkl'} is missing")
            loaded = pickle.loads(data["vecnormalize.pkl"])  # hash-verified bytes
            if not isinstance(loaded, VecNormalize):
                raise RunDirectoryError(f"{self.ckpt / 'vecnormalize.pkl'}: not VecNormalize")
            loaded.set_venv(norm.venv)
            loaded.training = True
            self.venv = loaded
        self.model = cls.load(
            io.BytesIO(data["model.zip"]), env=self.venv, tensorboard_log=tb, device="cpu"
        )

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
        write_manifest(directory)

    def _write_run(self, status: str, timing: dict[str, float] | None = None) -> None:
        path = self.req.out / RUN_FILE
        keep = path.is_file() and (self.req.resume or self._wrote_run)
        run = read_run_json(path) if keep else {}  # --overwrite: a fresh record
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
        self._wrote_run = True

    def _save_interrupted(self, timing: dict[str, float]) -> None:
        """Export the current model into the run directory and mark the run interrupted.

        The checkpoint is left as it is (the last whole one, for ``--resume``); the run
        directory gets the model as it was when the signal came, so ``ppo:DIR`` loads it.
        """
        with signals_deferred():
            self.save(self.req.out)
            self._write_run("interrupted", timing)
        self.log(
            f"interrupted at {self.model.num_timesteps} timesteps: policy exported to "
            f"{self.req.out}; continue with python train.py --resume {self.req.out}"
        )

    def train(self) -> dict[str, Any]:
        """Train to ``timesteps`` in total, checkpointing; save the final files.

        Returns:
            Timing and the periodic evaluations' history.
        """
        req, cfg = self.req, self.req.config
        out = req.out
        with signals_deferred():
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
            try:
                self.model.learn(
                    total_timesteps=remaining,
                    callback=[timing, evaluator, ckpt],
                    progress_bar=req.progress,
                    tb_log_name="run",
                    reset_num_timesteps=not req.resume,
                )
            except KeyboardInterrupt:  # SIGINT, or SIGTERM via raise_on_sigterm
                self._save_interrupted(timing.summary())
                raise
            except Exception:
                with contextlib.suppress(Exception):
                    self._write_run("failed")
                raise
        summary = timing.summary()
        with signals_deferred():  # a whole checkpoint and export, or none
            save_atomically(self.save, self.ckpt)
            self.save(out)
            self._write_run("finished", summary)
        self.log(
            f"done: {self.model.num_timesteps} timesteps in {summary['learn_wall_s']:.1f} s; "
            f"simulator {100 * summary['env_share']:.1f} % of it"
        )
        return {**summary, "history": evaluator.history}
