"""The safe export of trained policies: same actions as SB3, no code from untrusted files."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, PPO, SAC, TD3
from stable_baselines3.common.vec_env import VecNormalize

from balloon_gym.agents import AgentSpecError, check_agent_spec, make_agent
from balloon_gym.agents.trained import TrainedPolicy, load_trained
from balloon_gym.core.observe import GUEST_FEATURES
from balloon_gym.envs.sb3 import BalloonSB3VecEnv
from balloon_gym.evaluation import run_batch
from balloon_gym.training.policy import SPEC_FILE, WEIGHTS_FILE, make_export, save_export

META = {"residual": None, "env_version": "v1", "package_version": "test"}


def _export(model, venv: VecNormalize | None, directory: Path, **meta) -> Path:
    max_guests = int(model.action_space.shape[0]) // 2
    rms = venv.obs_rms if venv is not None else None
    spec, state = make_export(
        model,
        rms,
        venv.clip_obs if venv is not None else 10.0,
        venv.epsilon if venv is not None else 1e-8,
        {**META, "max_guests": max_guests, "scenarios": ["idle-tax"], **meta},
    )
    save_export(directory, spec, state)
    return directory


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[PPO, VecNormalize, Path]:
    torch.manual_seed(0)
    venv = VecNormalize(BalloonSB3VecEnv(4, "idle-tax", max_episode_steps=20), gamma=0.95)
    venv.seed(1000)
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=16,
        batch_size=32,
        n_epochs=2,
        seed=0,
        device="cpu",
        policy_kwargs={"net_arch": [16, 16], "log_std_init": -1.0},
    )
    model.learn(128)  # non-trivial weights and normalisation statistics
    return model, venv, _export(model, venv, tmp_path_factory.mktemp("ppo"))


def test_rebuilt_ppo_acts_like_sb3(ppo_run: tuple[PPO, VecNormalize, Path]) -> None:
    model, venv, directory = ppo_run
    policy = load_trained("ppo", directory, None)
    raw = venv.get_original_obs()
    assert not np.allclose(venv.obs_rms.mean, 0.0)  # the statistics are really applied
    expected, _ = model.predict(venv.normalize_obs(raw), deterministic=True)
    actions, state = policy.predict(raw)
    assert state is None
    np.testing.assert_allclose(actions, expected, atol=1e-5)
    one, _ = policy.predict(raw[0])
    np.testing.assert_allclose(one, expected[0], atol=1e-5)


@pytest.mark.parametrize("cls", [SAC, TD3, A2C])
def test_rebuilt_actor_of_other_algos(cls: type, tmp_path: Path) -> None:
    torch.manual_seed(1)
    venv = BalloonSB3VecEnv(2, "idle-tax")
    model = cls("MlpPolicy", venv, seed=0, device="cpu", policy_kwargs={"net_arch": [8, 8]})
    directory = _export(model, None, tmp_path)
    policy = load_trained("sb3", directory, None)
    obs = venv.reset()
    expected, _ = model.predict(obs, deterministic=True)
    np.testing.assert_allclose(policy.predict(obs)[0], expected, atol=1e-5)
    assert json.loads((directory / SPEC_FILE).read_text())["squash"] is (cls is SAC)


@pytest.mark.parametrize("vcpu_scale", [None, 2.0])
def test_residual_adds_the_scaled_correction_to_the_baseline(
    ppo_run: tuple[PPO, VecNormalize, Path], tmp_path: Path, vcpu_scale: float | None
) -> None:
    model, venv, _ = ppo_run
    residual = {"base": "esx_idle_tax", "scale": 0.5}
    if vcpu_scale is not None:
        residual["vcpu_scale"] = vcpu_scale
    directory = _export(model, venv, tmp_path, residual=residual)
    policy = load_trained("ppo", directory, None)
    raw = venv.get_original_obs()
    base, _ = make_agent("esx_idle_tax", venv).predict(raw)
    scale = np.array([0.5, 0.5, vcpu_scale or 0.5, vcpu_scale or 0.5])  # 2 guests: mem, vcpu
    want = np.clip(base + scale * policy.network_action(raw), -1, 1)
    np.testing.assert_allclose(policy.predict(raw)[0], want, atol=1e-6)


def test_wider_policy_acts_on_a_narrower_env(tmp_path: Path) -> None:
    venv = BalloonSB3VecEnv(2, ["idle-tax", "trace-replay"])  # padded to 8 guest slots
    model = PPO("MlpPolicy", venv, seed=0, device="cpu", policy_kwargs={"net_arch": [8]})
    directory = _export(model, None, tmp_path)
    narrow = load_trained("ppo", directory, 2)
    wide = load_trained("ppo", directory, None)
    obs = venv.reset()
    num = len(GUEST_FEATURES)
    idle_tax_obs = np.concatenate([obs[0:1, : 2 * num], obs[0:1, 8 * num :]], axis=1)
    assert idle_tax_obs.shape[1] == BalloonSB3VecEnv(1, "idle-tax").observation_space.shape[0]
    got = narrow.predict(idle_tax_obs)[0]
    full = wide.predict(obs[0:1])[0]
    np.testing.assert_allclose(got, np.concatenate([full[:, :2], full[:, 8:10]], axis=1))
    with pytest.raises(ValueError, match="trained with 8 guest slots"):
        TrainedPolicy(narrow.spec, narrow.actor, 32)


def test_trained_agent_runs_through_the_evaluation_path(
    ppo_run: tuple[PPO, VecNormalize, Path],
) -> None:
    _, _, directory = ppo_run
    spec = f"ppo:{directory}"
    check_agent_spec(spec)
    result = run_batch(lambda env: make_agent(spec, env), "idle-tax", (10000, 10001), 5)
    assert result.metrics["score"].shape == (2,)


class _Evil:
    """Unpickling this creates a file: what a malicious ``policy.pth`` could do."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_malicious_pickle_is_refused_without_running_it(
    ppo_run: tuple[PPO, VecNormalize, Path], tmp_path: Path, how: str
) -> None:
    _, _, good = ppo_run
    directory = tmp_path / "evil"
    directory.mkdir()
    (directory / SPEC_FILE).write_text((good / SPEC_FILE).read_text())
    marker = tmp_path / "pwned"
    payload = {"0.weight": _Evil(marker)}
    if how == "torch.save":
        torch.save(payload, directory / WEIGHTS_FILE)
    else:
        (directory / WEIGHTS_FILE).write_bytes(pickle.dumps(payload))
    assert not marker.exists()
    with pytest.raises(ValueError, match=r"policy\.pth: refused"):
        load_trained("ppo", directory, None)
    assert not marker.exists()
    with pytest.raises(AgentSpecError, match="refused"):
        check_agent_spec(f"ppo:{directory}")
    assert not marker.exists()


def _copy_run(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for name in (SPEC_FILE, WEIGHTS_FILE):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def test_bad_exports_give_clear_errors(ppo_run: tuple[PPO, VecNormalize, Path], tmp_path: Path):
    _, _, good = ppo_run
    spec = json.loads((good / SPEC_FILE).read_text())
    cases = {
        "unknown key": ({**spec, "extra": 1}, r"policy\.json: unknown key\(s\) \['extra'\]"),
        "missing key": ({k: v for k, v in spec.items() if k != "algo"}, "missing key"),
        "shape mismatch": ({**spec, "net_arch": [32, 16]}, r"policy\.pth: weights do not match"),
        "bad activation": ({**spec, "activation": "os.system"}, 'activation "os.system"'),
        "bad norm": ({**spec, "obs_norm": {**spec["obs_norm"], "mean": [0.0]}}, "obs_norm.mean"),
    }
    for i, (bad, message) in enumerate(cases.values()):
        directory = _copy_run(good, tmp_path / f"case{i}")
        (directory / SPEC_FILE).write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=message):
            load_trained("ppo", directory, None)
    with pytest.raises(ValueError, match=r"policy\.json: missing"):
        load_trained("ppo", tmp_path / "nowhere", None)
    with pytest.raises(ValueError, match="holds a ppo policy, not sac"):
        load_trained("sac", good, None)


def _refused(good: Path, directory: Path, text: str | bytes, message: str) -> None:
    """``policy.json`` replaced by ``text``: a clear ValueError, also through AgentSpecError."""
    _copy_run(good, directory)
    raw = text.encode() if isinstance(text, str) else text
    (directory / SPEC_FILE).write_bytes(raw)
    with pytest.raises(ValueError, match=message) as err:
        load_trained("ppo", directory, None)
    assert "\n" not in str(err.value) and len(str(err.value)) < 600
    with pytest.raises(AgentSpecError, match=message):
        check_agent_spec(f"ppo:{directory}")


def test_crafted_policy_json_is_refused_before_building_a_network(
    ppo_run: tuple[PPO, VecNormalize, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from balloon_gym import policy_export as policy_module

    _, _, good = ppo_run
    spec = json.loads((good / SPEC_FILE).read_text())

    def never(*_args, **_kwargs):
        raise AssertionError("build_actor called for a refused file")

    monkeypatch.setattr(policy_module, "build_actor", never)
    cases = {
        "wide": ({**spec, "net_arch": [4096] * 16}, "parameters; at most"),  # ~270M weights
        "deep": ({**spec, "net_arch": [8] * 5000}, "at most 16 integer widths"),
        "too wide": ({**spec, "net_arch": [300_000]}, "widths in 1..4096"),
        "bool width": ({**spec, "net_arch": [True, 16]}, "net_arch \\[true, 16\\]"),
        "bool guests": ({**spec, "max_guests": True}, "max_guests must be an integer"),
        "bool version": ({**spec, "format_version": True}, "not a balloon-gym-policy v1"),
        "many guests": (
            {**spec, "max_guests": 10**6},
            r"max_guests must be an integer in 1\.\.1024",
        ),
        "clip order": ({**spec, "clip_actions": [1, -1]}, "need -1 <= low < high <= 1"),
        "clip bool": ({**spec, "clip_actions": [False, True]}, "clip_actions must be a list"),
        "env version": ({**spec, "env_version": "v9"}, 'env_version "v9" unknown'),
        "algo type": ({**spec, "algo": ["ppo"]}, 'algo \\["ppo"\\] unknown'),
        "scenarios": ({**spec, "scenarios": "idle-tax"}, "scenarios must be a list"),
        "residual": (
            {**spec, "residual": {"base": "esx_idle_tax", "scale": float("inf")}},
            "not valid JSON|residual.scale",
        ),
    }
    for i, (bad, message) in enumerate(cases.values()):
        _refused(good, tmp_path / f"case{i}", json.dumps(bad), message)
    huge = json.dumps(spec).replace('"max_guests": 2', '"max_guests": ' + "9" * 5000)
    _refused(good, tmp_path / "huge-int", huge, "not valid JSON")
    _refused(good, tmp_path / "deep", "[" * 200_000 + "]" * 200_000, "nested too deeply")
    _refused(good, tmp_path / "binary", b"\xff\xfe{", "not valid JSON")
    big = json.dumps({**spec, "package_version": "x" * (9 * 1024 * 1024)})
    _refused(good, tmp_path / "big", big, "the most a policy.json may be")


def test_policy_pth_must_match_the_json_before_loading(
    ppo_run: tuple[PPO, VecNormalize, Path], tmp_path: Path
) -> None:
    _, _, good = ppo_run
    state = torch.load(good / WEIGHTS_FILE, weights_only=True)
    cases = {
        "transposed": ({**state, "0.weight": state["0.weight"].T.contiguous()}, "has shape"),
        "extra": ({**state, "9.weight": torch.zeros(1)}, r"unexpected \['9.weight'\]"),
        "missing": ({k: v for k, v in state.items() if k != "0.bias"}, r"missing \['0.bias'\]"),
        "nan": ({**state, "0.bias": torch.full_like(state["0.bias"], float("nan"))}, "finite"),
        "ints": ({**state, "0.bias": state["0.bias"].long()}, "floating-point"),
    }
    for i, (weights, message) in enumerate(cases.values()):
        directory = _copy_run(good, tmp_path / f"case{i}")
        torch.save(weights, directory / WEIGHTS_FILE)
        with pytest.raises(ValueError, match=message):
            load_trained("ppo", directory, None)
    directory = _copy_run(good, tmp_path / "padded")
    (directory / WEIGHTS_FILE).write_bytes(b"\0" * (2 * 1024 * 1024))
    with pytest.raises(ValueError, match=r"more than policy\.json's network needs"):
        load_trained("ppo", directory, None)
