"""A small Python HTTP client for what wrk cannot do: fill the cache and make the smoke look-ups.

Filling the cache goes through ``POST /api/resolve`` with the largest batch the node accepts: misses of one
request are loaded in one query, so a hundred thousand handles are cached in seconds, and the RSS delta that
follows is the cache's (``suite.py``). With several workers each has its own cache and the kernel picks the
worker per connection, so each pass uses fresh connections and ``passes`` raises the chance that every worker
saw every key.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
import orjson

from benchmarks.dataset import handle_of

__all__ = ["WarmReport", "fill_cache", "get_answers", "get_many"]

_BATCH = 2000


@dataclass(frozen=True, slots=True)
class WarmReport:
    identifiers: int
    seconds: float


async def fill_cache(
    url: str, numbers: Sequence[int], *, passes: int = 1, batch: int = _BATCH, found: bool = True
) -> WarmReport:
    """Resolve every record in ``numbers`` through ``POST /api/resolve``.

    Raises unless every answer is rc 1 (``found``) or every answer is rc 100, handle not found (not ``found``:
    that fills the negative cache).
    """
    expected = 1 if found else 100
    started = time.perf_counter()
    sent = 0
    for _ in range(passes):
        connector = aiohttp.TCPConnector(force_close=passes > 1)
        async with aiohttp.ClientSession(connector=connector) as http:
            for start in range(0, len(numbers), batch):
                handles = [handle_of(n) for n in numbers[start : start + batch]]
                async with http.post(url + "/api/resolve", data=orjson.dumps({"handles": handles})) as response:
                    body = await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"warm-up: /api/resolve answered {response.status}: {body[:200]!r}")
                results = orjson.loads(body)["results"]
                bad = [r for r in results if r.get("responseCode") != expected]
                if bad:
                    raise RuntimeError(
                        f"warm-up: {len(bad)} handles answered otherwise than rc {expected}, e.g. {bad[0]}"
                    )
                sent += len(handles)
    return WarmReport(sent, time.perf_counter() - started)


async def get_answers(url: str, paths: Sequence[str]) -> list[tuple[int, bytes]]:
    """GET each path once over one keep-alive connection; returns each answer's status and body, in order."""
    answers: list[tuple[int, bytes]] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as http:
        for path in paths:
            async with http.get(url + path, allow_redirects=False) as response:
                answers.append((response.status, await response.read()))
    return answers


async def get_many(url: str, paths: Sequence[str]) -> dict[int, int]:
    """GET each path once over one keep-alive connection; returns how many answers had each status."""
    statuses: dict[int, int] = {}
    for status, _ in await get_answers(url, paths):
        statuses[status] = statuses.get(status, 0) + 1
    return statuses
