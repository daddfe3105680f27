"""``render_mode="ansi"``: a readable table of one host and its guests."""

from __future__ import annotations

import numpy as np

from balloon_gym.core.params import Params
from balloon_gym.core.state import State, consumed_mib, host_free_mib, host_memory_state

_STATES = ("high", "soft", "hard", "low")


def render_host(state: State, params: Params, i: int = 0, names: list[str] | None = None) -> str:
    """Text table of host ``i``: memory state, then one row per guest (MiB unless stated)."""
    free = host_free_mib(state, params)
    mem_state = host_memory_state(free, params)
    host_mem = params.host_mem_mib[i, 0]
    lines = [
        f"t={int(state.t[i])} step(s)  host {host_mem:.0f} MiB  free {free[i]:.0f} MiB "
        f"({100 * free[i] / host_mem:.1f} %, {_STATES[mem_state[i]]})  "
        f"host swap out {state.host_swap_out[i]:.0f} MiB  pCPU load "
        f"{state.cpu_alloc[i].sum():.1f}/{params.pcpus[i, 0]:.0f}",
        f"{'guest':<16}{'mem':>7}{'target':>8}{'balloon':>8}{'anon':>7}{'swap':>6}"
        f"{'cache':>7}{'free':>7}{'used':>7}{'hswap':>7}{'vcpu':>6}{'drv':>5}{'tput':>6}",
    ]
    used = consumed_mib(state, params)
    slots = np.flatnonzero(params.guest_mask[i])
    labels = [names[g] if names and g < len(names) else f"guest-{g}" for g in slots]
    width = max([16, *(len(n) + 1 for n in labels)])
    lines[1] = f"{'guest':<{width}}" + lines[1][16:]
    for g, name in zip(slots, labels, strict=True):
        active = params.vcpus[i, g] - state.reserved_vcpus[i, g]
        lines.append(
            f"{name:<{width}}{params.mem_mib[i, g]:7.0f}{state.alloc_target[i, g]:8.0f}"
            f"{state.balloon[i, g]:8.0f}{state.anon_res[i, g]:7.0f}{state.anon_swap[i, g]:6.0f}"
            f"{state.cache[i, g]:7.0f}{state.free[i, g]:7.0f}{used[i, g]:7.0f}"
            f"{state.host_swap[i, g]:7.0f}{active:3.0f}/{params.vcpus[i, g]:<2.0f}"
            f"{'up' if state.driver_up[i, g] else 'OUT':>5}{state.throughput[i, g]:6.2f}"
        )
    return "\n".join(lines) + "\n"
