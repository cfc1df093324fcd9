"""The scenario catalogue: what each scenario sends, to which server, and what answers it expects.

Targets (each started once per run, in this order, by ``suite.py``):

- ``hello``: aiohttp hello-world, one process on the server core: the Python baseline.
- ``nginx``: Debian's nginx, one worker, a static ~400-byte JSON file: the "physical limit".
- ``node``: idnode with its default cache, on the server core. The hot set (records ``0 .. hot_keys-1``) is
  cached through ``/api/resolve`` before the first run, so the cached scenarios never miss.
- ``node-nolane``: idnode as ``node`` but with ``IDNODE_FAST_LANE=0``, hot set cached: every request goes through
  aiohttp, the same-run A/B of the fast lane (resolver/fastlane.py).
- ``node-cold``: idnode with ``IDNODE_CACHE_MAX_ENTRIES`` = ``cold_cache_entries`` (1,000): uniform keys over
  all records make nearly every look-up a PostgreSQL point select.
- ``node-fwd`` / ``node-fwd-cold``: forwarding (issue 9). A second idnode over its own empty database, homing
  nothing, with ``upstream`` = the ``node`` target, which homes the data set: every handle it is asked for is
  fetched from ``node`` over HTTP. They run while ``node`` is up (``FORWARDING_TARGETS``), pinned to the server
  core with it. ``node-fwd`` has the default cache, and the hot set is resolved through it first, so its answers
  come from its own cache; ``node-fwd-cold`` has ``forward_cold_cache_entries`` (100), so nearly every look-up
  is forwarded and answered from ``node``'s cache.
- ``hello-w2`` / ``node-w2``: two worker processes sharing the port, nothing pinned, two wrk threads (the
  anchors' §2c set-up); wrk shares the two cores with the servers.

Key sets: cached look-ups draw Zipf-distributed ranks over the hot set (``proxy_links`` over the same number of
records with typed links, ``dataset.LINKED_BASE``, cached with the hot set); cold look-ups draw uniformly over all
records; "404 (cold)" draws uniformly over a billion numbers that were never loaded (each a miss, then a
negative entry); "404 (cached)" draws Zipf over 1,000 absent numbers, which the warm-up turns into negative
entries. Batches draw uniformly over the hot set, so every identifier is a cache hit. Forwarded look-ups draw
Zipf over the hot set when cached at the asking node, like ``cached``, and uniformly over the hot set when not.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.dataset import ABSENT_BASE, LINKED_BASE
from benchmarks.lua import Keys, batch_script, get_script, static_script
from benchmarks.plan import Plan

__all__ = ["FORWARDING_TARGETS", "TARGETS", "Scenario", "absent_hot_numbers", "catalogue"]

TARGETS = ("hello", "nginx", "node", "node-fwd", "node-fwd-cold", "node-nolane", "node-cold", "hello-w2", "node-w2")
FORWARDING_TARGETS = ("node-fwd", "node-fwd-cold")
"""Targets that ask the ``node`` target for every handle: the suite runs them while ``node`` is up."""
_ABSENT_SPAN = 1_000_000_000 - ABSENT_BASE - 1
_ABSENT_HOT = 1000


@dataclass(frozen=True, slots=True)
class Scenario:
    """One kind of request stream against one target."""

    name: str
    title: str
    target: str
    script: str
    path: str = "/"
    items_per_request: int = 1
    expect_status_errors: bool = False
    sweep: bool = False
    """Run at ``plan.sweep_connections`` (the baselines and the cached look-up) instead of ``plan.connections``."""
    fixed_connections: tuple[int, ...] = ()
    """Run at these instead (large batches: 64 requests of 2,000 writes each would queue past wrk's timeout)."""

    def connections(self, plan: Plan) -> tuple[int, ...]:
        if self.fixed_connections:
            return self.fixed_connections
        if self.target.endswith("-w2"):
            return (plan.workers2_connections,)
        return plan.sweep_connections if self.sweep else plan.connections


def catalogue(plan: Plan) -> list[Scenario]:
    """Every timed scenario of a run, in the order it is run."""
    hot = Keys.zipf(0, plan.hot_keys, plan.zipf_exponent)
    scenarios = [
        Scenario("hello", "aiohttp hello-world (uvloop)", "hello", static_script(), path="/hello", sweep=True),
        Scenario(
            "hello_1k",
            "aiohttp hello-world, 1.1 KB JSON body (the cached answer's size)",
            "hello",
            static_script(),
            path="/hello1k",
            sweep=True,
        ),
        Scenario("nginx", "nginx static 400 B JSON", "nginx", static_script(), path="/static.json", sweep=True),
        Scenario("cached", "cached look-up (Zipf)", "node", get_script("/api/handles/", hot), sweep=True),
        Scenario(
            "cached_gzip",
            "cached look-up, client accepts gzip (Zipf)",
            "node",
            get_script("/api/handles/", hot, {"Accept-Encoding": "gzip"}),
        ),
        Scenario("proxy", "proxy redirect 302 (Zipf, cached)", "node", get_script("/", hot)),
        Scenario(
            "proxy_links",
            "proxy redirect 302, typed links + Vary (Zipf, cached)",
            "node",
            get_script("/", Keys.zipf(LINKED_BASE, plan.hot_keys, plan.zipf_exponent)),
        ),
        Scenario(
            "notfound_cached",
            "404, negative-cached (Zipf over 1,000)",
            "node",
            get_script("/api/handles/", Keys.zipf(ABSENT_BASE, _ABSENT_HOT, plan.zipf_exponent)),
            expect_status_errors=True,
        ),
        Scenario(
            "notfound_cold",
            "404, uncached (uniform over 10⁸ absent keys)",
            "node",
            get_script("/api/handles/", Keys.uniform(ABSENT_BASE + _ABSENT_HOT, _ABSENT_SPAN - _ABSENT_HOT)),
            expect_status_errors=True,
        ),
    ]
    for size in plan.batch_sizes:
        scenarios.append(
            Scenario(
                f"batch{size}",
                f"batch resolve, {size} ids/request (cached)",
                "node",
                batch_script(Keys.uniform(0, plan.hot_keys), size),
                items_per_request=size,
            )
        )
    scenarios += [
        Scenario(
            "forwarded_cached",
            "forwarded look-up, cached at the asking node (Zipf)",
            "node-fwd",
            get_script("/api/handles/", hot),
        ),
        Scenario(
            "forwarded_cold",
            f"forwarded look-up, uncached at the asking node (uniform over the hot set, cache "
            f"{plan.forward_cold_cache_entries:,})",
            "node-fwd-cold",
            get_script("/api/handles/", Keys.uniform(0, plan.hot_keys)),
        ),
        Scenario("cached_nolane", "cached look-up (Zipf), lane off", "node-nolane", get_script("/api/handles/", hot)),
        Scenario("proxy_nolane", "proxy redirect 302 (Zipf, cached), lane off", "node-nolane", get_script("/", hot)),
        Scenario(
            "cold",
            f"cold look-up (uniform, cache {plan.cold_cache_entries:,})",
            "node-cold",
            get_script("/api/handles/", Keys.uniform(0, plan.records)),
        ),
        Scenario("hello_w2", "aiohttp hello-world, 2 workers", "hello-w2", static_script(), path="/hello"),
        Scenario("cached_w2", "cached look-up (Zipf), 2 workers", "node-w2", get_script("/api/handles/", hot)),
    ]
    return scenarios


def absent_hot_numbers() -> range:
    """The absent records of the "404 (cached)" scenario, to turn into negative entries before it runs."""
    return range(ABSENT_BASE, ABSENT_BASE + _ABSENT_HOT)
