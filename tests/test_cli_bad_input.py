"""Property tests: generated bad input to ``evaluate.py`` and ``train.py``.

Each example takes a valid command line and spoils one argument with a generated bad value. The
command must exit with code 2, print exactly one line on stderr (no traceback), and create
nothing at ``--out``. The commands run in this process (through their ``main``), with the work
they would start replaced by a failing stub, so a bad value that slipped through validation
fails the test instead of starting an evaluation or a training run.
"""

from __future__ import annotations

import contextlib
import io
import string
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from balloon_gym.agents import AGENTS
from balloon_gym.scenarios import list_scenarios

pytest.importorskip("stable_baselines3")

from balloon_gym import evaluation_cli
from balloon_gym.training import cli as train_cli

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)

# argv as a shell can pass it: any printable text but NUL.
_TEXT = st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=30)
_WORD = st.text(alphabet=string.ascii_letters + string.digits + "_-.:/", min_size=1, max_size=20)


def _number_like(text: str) -> bool:
    """Whether a command line could mean ``text`` as a number (``12``, ``2e5``, ``0E0``)."""
    try:
        float(text)
    except ValueError:
        return False
    return text.isascii()


_NOT_INT = st.one_of(
    _TEXT.filter(lambda s: not _number_like(s)),
    st.sampled_from(["nan", "inf", "-inf", "0x10", "", " ", "1_0_", "١٢"]),
)
_BAD_COUNT = st.one_of(
    _NOT_INT,
    st.integers(max_value=0).map(str),
    st.integers(min_value=2**63).map(str),
)


def _not_known(names: Sequence[str]) -> Callable[[str], bool]:
    known = set(names)
    return lambda s: bool(s.strip(" ,")) and all(x.strip() not in known for x in s.split(","))


_BAD_AGENT = st.one_of(_WORD, _TEXT).filter(_not_known(AGENTS))
_BAD_SCENARIO = st.one_of(_WORD, _TEXT).filter(_not_known(list_scenarios()))


class _RunReachedError(AssertionError):
    """A bad command line got through validation and reached the work."""


def _refuse(*_args: object, **_kwargs: object) -> None:
    raise _RunReachedError("bad input reached the run")


def _check_rejected(main: Callable[[list[str]], int], argv: list[str], out: Path) -> str:
    """Run ``main(argv)``; assert exit 2, one stderr line, nothing at ``out``; the line."""
    err = io.StringIO()
    with (
        contextlib.redirect_stderr(err),
        contextlib.redirect_stdout(io.StringIO()),
        pytest.raises(SystemExit) as exc,
    ):
        main(argv)
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    assert exc.value.code == 2, (argv, err.getvalue())
    assert len(lines) == 1, (argv, err.getvalue())
    assert "Traceback" not in err.getvalue()
    assert not out.exists(), f"{argv} left {out} behind"
    return lines[0]


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


# --------------------------------------------------------------------------- evaluate.py

_EVAL_BASE = {
    "--agents": "esx_idle_tax",
    "--scenarios": "idle-tax",
    "--seeds": "1",
    "--max-episode-steps": "5",
    "--bootstrap-reps": "10",
}
_EVAL_BAD = {
    "--agents": _BAD_AGENT,
    "--scenarios": _BAD_SCENARIO,
    "--seeds": _BAD_COUNT,
    "--max-episode-steps": _BAD_COUNT,
    "--bootstrap-reps": _BAD_COUNT,
    "--timeline-agent": _BAD_AGENT,
}


@SETTINGS
@given(data=st.data(), field=st.sampled_from(sorted(_EVAL_BAD)))
def test_evaluate_rejects_each_bad_argument_in_one_line(data: st.DataObject, field: str) -> None:
    value = data.draw(_EVAL_BAD[field], label=field)
    with _workdir() as tmp, mock.patch.object(evaluation_cli, "evaluate", _refuse):
        out = tmp / "out"
        args = {**_EVAL_BASE, field: value}
        argv = [f"{k}={v}" for k, v in args.items()] + [f"--out={out}", "--no-progress"]
        line = _check_rejected(evaluation_cli.main, argv, out)
        assert "error:" in line


@SETTINGS
@given(yaml_text=_TEXT)
def test_evaluate_rejects_a_bad_scenario_file_in_one_line(yaml_text: str) -> None:
    with _workdir() as tmp, mock.patch.object(evaluation_cli, "evaluate", _refuse):
        scenario = tmp / "bad.yaml"
        scenario.write_text(f"name: bad\nguests: {yaml_text!r}\n", encoding="utf-8")
        out = tmp / "out"
        argv = [f"--scenarios={scenario}", "--agents=static", "--seeds=1", f"--out={out}"]
        _check_rejected(evaluation_cli.main, argv, out)


def test_evaluate_rejects_an_out_below_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x", encoding="utf-8")
    out = tmp_path / "file" / "out"
    with mock.patch.object(evaluation_cli, "evaluate", _refuse):
        line = _check_rejected(evaluation_cli.main, ["--agents=static", f"--out={out}"], out)
    assert "--out" in line


# --------------------------------------------------------------------------- train.py

_TRAIN_BASE = {
    "--scenario": "idle-tax",
    "--algo": "ppo",
    "--timesteps": "64",
    "--seed": "0",
    "--eval-seeds": "0",
}
_HP_KEYS = ["learning_rate", "n_steps", "gamma", "batch_size", "n_envs", "eval_freq"]
_BAD_HP = st.one_of(
    st.tuples(st.sampled_from(_HP_KEYS), _NOT_INT).map(lambda kv: f"{kv[0]}={kv[1]}"),
    st.tuples(
        st.sampled_from(_HP_KEYS), st.sampled_from(["-1", "nan", "inf", "1e400", "2.5e99"])
    ).map(lambda kv: f"{kv[0]}={kv[1]}"),
    _WORD.filter(lambda s: "=" not in s),
    st.tuples(_WORD.filter(lambda s: s not in _HP_KEYS), _WORD).map(lambda kv: "=".join(kv)),
)
_TRAIN_BAD = {
    "--scenario": _BAD_SCENARIO,
    "--algo": _WORD.filter(lambda s: s not in {"ppo", "sac", "a2c", "td3"}),
    "--timesteps": _BAD_COUNT,
    "--seed": st.one_of(_NOT_INT, st.integers(max_value=-1).map(str)),
    "--eval-seeds": st.one_of(_NOT_INT, st.integers(max_value=-1).map(str)),
    "--hp": _BAD_HP,
}


@SETTINGS
@given(data=st.data(), field=st.sampled_from(sorted(_TRAIN_BAD)))
def test_train_rejects_each_bad_argument_in_one_line(data: st.DataObject, field: str) -> None:
    value = data.draw(_TRAIN_BAD[field], label=field)
    with _workdir() as tmp, mock.patch("balloon_gym.training.trainer.Trainer", _refuse):
        out = tmp / "run"
        args = {**_TRAIN_BASE, field: value}
        argv = [f"{k}={v}" for k, v in args.items()] + [f"--out={out}", "--no-progress"]
        line = _check_rejected(train_cli.main, argv, out)
        assert "error:" in line


@SETTINGS
@given(run_json=_TEXT, config_yaml=_TEXT)
def test_train_resume_rejects_a_malformed_run_directory(run_json: str, config_yaml: str) -> None:
    with _workdir() as tmp, mock.patch("balloon_gym.training.trainer.Trainer", _refuse):
        run = tmp / "run"
        (run / "checkpoint").mkdir(parents=True)
        (run / "run.json").write_text(run_json, encoding="utf-8")
        (run / "config.yaml").write_text(config_yaml, encoding="utf-8")
        (run / "checkpoint" / "model.zip").write_bytes(b"not a zip")
        before = sorted(p.name for p in run.rglob("*"))
        err = io.StringIO()
        with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exc:
            train_cli.main([f"--resume={run}", "--no-progress"])
        assert exc.value.code == 2, err.getvalue()
        assert len(err.getvalue().strip().splitlines()) == 1, err.getvalue()
        assert sorted(p.name for p in run.rglob("*")) == before


def test_train_rejects_a_hyperparameter_given_twice(tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = ["--hp", "learning_rate=1e-3", "learning_rate=2e-3", f"--out={out}", "--eval-seeds=0"]
    with mock.patch("balloon_gym.training.trainer.Trainer", _refuse):
        line = _check_rejected(train_cli.main, argv, out)
    assert "learning_rate is given twice" in line
