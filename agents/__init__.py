"""Scheduling policies for balloon-gym (installed as ``balloon_gym.agents``).

Every policy has stable-baselines3's ``predict`` (:class:`~balloon_gym.agents.base.Policy`), so
the baselines below and trained SB3 models share one evaluation path. Build one by name::

    from balloon_gym.agents import AGENTS, make_agent
    policy = make_agent("esx_idle_tax", env, tax_rate=0.5)
    actions, state = policy.predict(obs, state=None, episode_start=starts)

| name | rule | source |
|---|---|---|
| ``static`` | shares-proportional allocation fixed at the episode start | - |
| ``proportional_share`` | ESX min-funding revocation, ``rho = S / P`` | Waldspurger 2002 |
| ``esx_idle_tax`` | the same with the idle memory tax (``tau`` 0.75) | Waldspurger 2002 |
| ``squeezed`` | same fraction of every guest's dynamic range | Xen XAPI squeezed |
| ``mom`` | oVirt MOM's balloon rules (20 % / 5 % / 20 % / 5 %) | oVirt MOM |
| ``hyperv`` | demand + 20 % buffer, weights under shortage | Hyper-V Dynamic Memory |
| ``clairvoyant`` | true demand ahead (privileged; normaliser's top) | - |
| ``random`` | uniform random actions | - |

Trained agents are named ``kind:path`` (e.g. ``ppo:runs/idle-tax-ppo``), a run directory of
``train.py`` loaded safely by :mod:`balloon_gym.agents.trained`; see :func:`make_agent`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from balloon_gym.agents.base import Policy, max_guests_of, split_observation
from balloon_gym.agents.clairvoyant import Clairvoyant
from balloon_gym.agents.esx import EsxIdleTax, ProportionalShare
from balloon_gym.agents.hyperv import HyperV
from balloon_gym.agents.mom import Mom
from balloon_gym.agents.random_policy import RandomPolicy
from balloon_gym.agents.squeezed import Squeezed
from balloon_gym.agents.static import Static

#: Baseline name -> class; every class takes ``max_guests`` first, then its own keywords.
AGENTS: dict[str, Callable[..., Policy]] = {
    "static": Static,
    "proportional_share": ProportionalShare,
    "esx_idle_tax": EsxIdleTax,
    "squeezed": Squeezed,
    "mom": Mom,
    "hyperv": HyperV,
    "clairvoyant": Clairvoyant,
    "random": RandomPolicy,
}

#: The real systems' policies; the leaderboard compares against the best of them.
CLASSIC_AGENTS: tuple[str, ...] = (
    "static",
    "proportional_share",
    "esx_idle_tax",
    "squeezed",
    "mom",
    "hyperv",
)

#: Kinds of trained agents that ``kind:path`` specs name (``sb3``: whichever the export holds).
TRAINED_KINDS: tuple[str, ...] = ("ppo", "sac", "a2c", "td3", "sb3")


class AgentSpecError(ValueError):
    """An agent name or ``kind:path`` spec that cannot be built; the message says the fix."""


def check_agent_spec(spec: str) -> None:
    """Fail fast on a name that :func:`make_agent` cannot build.

    Raises:
        AgentSpecError: For an unknown name, an unknown trained kind, or a ``kind:path`` whose
            directory holds no valid export (the message names the file and the problem).
    """
    if ":" in spec:
        kind, _, path = spec.partition(":")
        if kind not in TRAINED_KINDS or not path:
            raise AgentSpecError(
                f"agent {spec!r}: trained agents are kind:DIR with kind one of "
                f"{', '.join(TRAINED_KINDS)} and DIR a train.py run directory"
            )
        try:
            from balloon_gym.agents.trained import check_trained_spec

            check_trained_spec(kind, path)
        except ImportError as err:
            raise AgentSpecError(
                f"agent {spec!r}: trained agents need the train extra ({err})"
            ) from None
        except ValueError as err:
            raise AgentSpecError(f"agent {spec!r}: {err}") from None
        return
    if spec not in AGENTS:
        raise AgentSpecError(f"unknown agent {spec!r}; known agents: {', '.join(AGENTS)}")


def make_agent(name: str, env_or_spaces: Any, **kwargs: Any) -> Policy:
    """Build a policy by name for an env.

    Args:
        name: A key of :data:`AGENTS`, or a trained agent ``kind:path``.
        env_or_spaces: The env it will act on (a ``BalloonVectorEnv``, ``BalloonEnv``, SB3
            ``BalloonSB3VecEnv``) or ``(observation_space, action_space)``. ``clairvoyant`` is
            bound to the env when it has a ``batch`` (its privileged channel, see
            :meth:`Clairvoyant.bind`); given only spaces, call ``policy.bind(env)`` before use.
        **kwargs: The policy's own parameters (e.g. ``tax_rate=0.5`` for ``esx_idle_tax``,
            ``seed=1`` for ``random``).

    Raises:
        AgentSpecError: For an unknown name or an invalid ``kind:path`` spec.
        ValueError: If the env's spaces are not balloon-gym's.
    """
    max_guests = max_guests_of(env_or_spaces)
    if ":" in name:
        kind, _, path = name.partition(":")
        check_agent_spec(name)
        from balloon_gym.agents.trained import load_trained

        return load_trained(kind, path, max_guests)
    check_agent_spec(name)
    if name == "clairvoyant":
        source = env_or_spaces if hasattr(env_or_spaces, "batch") else None
        return Clairvoyant(max_guests, source=source, **kwargs)
    return AGENTS[name](max_guests, **kwargs)


__all__ = [
    "AGENTS",
    "CLASSIC_AGENTS",
    "TRAINED_KINDS",
    "AgentSpecError",
    "Clairvoyant",
    "EsxIdleTax",
    "HyperV",
    "Mom",
    "Policy",
    "ProportionalShare",
    "RandomPolicy",
    "Squeezed",
    "Static",
    "check_agent_spec",
    "make_agent",
    "split_observation",
]
