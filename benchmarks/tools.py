"""The external programs the harness drives, found on PATH or installed from Debian with apt-get.

- ``wrk``: closed-loop load at a fixed number of connections, with a Lua script choosing the keys. Required
  for the timed benchmarks (not for ``--smoke``).
- ``nginx`` (package ``nginx-light``, else ``nginx``): the static-file baseline, the "physical limit" on this
  machine. Optional: without it the nginx row is skipped.
- ``hey``: the fixed-rate generator (``-q`` is requests/s per worker) for latency at an offered rate. Optional.
  Debian's ``bombardier`` package is *not* the HTTP benchmarking tool of that name (it is a game in
  /usr/games), so it is never installed or used; wrk2, vegeta and k6 are not packaged for Debian 12.

Installing needs root and apt; the setup step says what it installs, and carries on without an optional tool
when the install fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

__all__ = ["Tools", "find_tools"]

_SBIN = ("/usr/sbin", "/sbin")
_APT_TIMEOUT = 600
_LOCK_WAIT = "DPkg::Lock::Timeout=180"


@dataclass(frozen=True, slots=True)
class Tools:
    """Paths of the programs found (None when missing) and what the setup step did to get them."""

    wrk: str | None
    nginx: str | None
    hey: str | None
    taskset: str | None
    notes: tuple[str, ...]


def _which(name: str) -> str | None:
    found = shutil.which(name)
    if found is None:
        for folder in _SBIN:
            candidate = os.path.join(folder, name)
            if os.access(candidate, os.X_OK):
                return candidate
    return found


def _apt_install(packages: list[str], say: list[str]) -> bool:
    """``apt-get install`` the packages (after one ``apt-get update``); False when apt is unusable or fails."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        say.append(f"cannot install {', '.join(packages)}: needs root and apt-get")
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "-o", _LOCK_WAIT, "update", "-qq"],
        ["apt-get", "-o", _LOCK_WAIT, "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=_APT_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as exc:
            say.append(f"apt-get failed: {exc}")
            return False
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
            say.append(f"`{' '.join(command[:4])} ...` failed: {last[0]}")
            return False
    return True


def find_tools(*, install: bool, need_wrk: bool) -> Tools:
    """Locate wrk, nginx, hey and taskset; with ``install``, apt-get the missing ones first and say so."""
    notes: list[str] = []
    wanted = {"wrk": ["wrk"], "nginx": ["nginx-light", "nginx"], "hey": ["hey"]}
    if not need_wrk:
        wanted = {}
    missing = [name for name in wanted if _which(name) is None]
    if missing and install:
        for name in missing:
            for package in wanted[name]:
                notes.append(f"setup: {name} not found; installing Debian package {package} with apt-get")
                if _apt_install([package], notes) and _which(name) is not None:
                    notes.append(f"setup: installed {package}")
                    break
    elif missing:
        notes.append(f"setup: not installing missing {', '.join(missing)} (--no-install)")
    tools = Tools(_which("wrk"), _which("nginx"), _which("hey"), _which("taskset"), tuple(notes))
    if tools.taskset is None:
        notes.append("setup: taskset not found; server and load generator will not be pinned to cores")
    return Tools(tools.wrk, tools.nginx, tools.hey, tools.taskset, tuple(notes))
