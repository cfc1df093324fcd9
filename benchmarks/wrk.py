"""One wrk run: closed-loop load at a fixed number of connections, read back through the Lua reporter.

Closed loop means each connection sends its next request when the previous answer arrives, so the latencies
are latency-at-concurrency, not latency at an offered rate (that is ``fixedrate.py``). The generator is pinned
to its own core (``cpus``) when taskset is available, away from the server's.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

from benchmarks.lua import parse_report

__all__ = ["LoadResult", "run_wrk"]

_GRACE = 30.0


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What a load generator measured: counts, seconds, latency percentiles (µs) and failures."""

    requests: int
    seconds: float
    latency_us: dict[str, float]
    errors: dict[str, int]
    bytes: int = 0

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def failures(self) -> int:
        """Connection, read, write and timeout errors (HTTP status counts are in ``errors['status']``)."""
        return sum(v for k, v in self.errors.items() if k != "status")


async def run_command(command: list[str], timeout: float) -> str:
    """Run ``command``, return its stdout; kill it (by its pid) when it overruns ``timeout``."""
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        raise RuntimeError(
            f"{Path(command[0]).name} exited {process.returncode}: {err.decode(errors='replace')[-500:]}"
        )
    return out.decode(errors="replace")


async def run_wrk(
    wrk: str,
    url: str,
    script: Path,
    *,
    connections: int,
    threads: int,
    seconds: float,
    cpus: str | None,
    taskset: str | None,
    timeout_s: float = 10.0,
) -> LoadResult:
    """Drive ``url`` for ``seconds`` with the Lua ``script``; the result comes from the script's reporter."""
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={max(1, round(timeout_s))}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    if cpus is not None and taskset is not None:
        command = [taskset, "-c", cpus, *command]
    output = await run_command(command, seconds + _GRACE)
    report = parse_report(output)
    return LoadResult(
        requests=int(report["requests"]),
        seconds=int(report["duration_us"]) / 1e6,
        latency_us={k: float(v) for k, v in dict(report["latency_us"]).items()},
        errors={k: int(v) for k, v in dict(report["errors"]).items()},
        bytes=int(report["bytes"]),
    )
