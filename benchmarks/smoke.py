"""``python -m benchmarks --smoke``: a CI-safe check, in seconds, that the harness still runs end to end.

No wrk, no nginx, no timing assertions. It starts a database and a node exactly as a real run does (COPY of a
tiny data set, ``idnode serve`` over ``--database-url``), makes requests with a Python client, and checks:

1. cold look-ups reach PostgreSQL: the positive control, proving the query detector sees queries;
2. cached look-ups (API and proxy 302) issue **zero** database queries;
3. an absent handle is queried once, then answered from the negative cache without a query;
4. the measurement plumbing works: a Meter run over the node's processes reports CPU per request;
5. every wrk script of the catalogue is generated, and the wrk report parser reads a sample line;
6. the results render as Markdown and JSON;
7. forwarding (issue 9), what the ``forwarded_*`` scenarios measure: a second node over its own empty database,
   homing nothing, with the first as its upstream, answers look-ups 200 with the first node's exact bodies,
   counts them ``forwarded``, and answers them again from its own cache (counted ``hit``); and a series against
   such a node whose upstream is down (every answer 503) fails instead of reporting req/s.

How queries are detected (pg_stat_statements is not available), two exact and immediate sources, either of
which counts as "queried":
- the latest ``pg_stat_activity.query_start`` of the node's backends (``application_name = 'idnode'``),
  compared with the server clock read just before the requests: catches any query on the node's pool;
- the node's own ``idnode_cache_loads_total`` from ``/metrics`` (when the node has it): the read path's
  load queries.
The ``pg_stat_database`` deltas (``xact_commit``, ``tup_returned``) are printed too, but a backend may flush
them up to 10 s late (measured: 10 s after 50 cold look-ups), so they are not the check.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from benchmarks import dataset
from benchmarks.client import fill_cache, get_answers, get_many
from benchmarks.lua import parse_report
from benchmarks.measure import Load, Meter, Series
from benchmarks.nodemetrics import NodeCounters, scrape
from benchmarks.plan import Plan
from benchmarks.postgres import BenchDatabase, bench_database
from benchmarks.report import Results, markdown, write_json
from benchmarks.scenarios import catalogue
from benchmarks.servers import Server, free_port, idnode_server
from benchmarks.writes import write_scenarios
from benchmarks.wrk import LoadResult

__all__ = ["run_smoke"]

RECORDS = 200
_SAMPLE = (
    'WRK_JSON {"requests":10,"duration_us":1000000,"bytes":100,"errors":{"connect":0,"read":0,"write":0,'
    '"status":0,"timeout":0},"latency_us":{"p50":1,"p90":2,"p99":3,"p99.9":4,"mean":1.5,"max":5}}'
)


class _Checks:
    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.passed = 0
        self.failed = 0

    def check(self, ok: bool, what: str, detail: str = "") -> None:
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        self.say(f"smoke: {'ok  ' if ok else 'FAIL'} {what}" + (f" ({detail})" if detail else ""))


async def _queried_during(
    db: BenchDatabase, url: str, action: Callable[[], Awaitable[object]]
) -> tuple[bool, float | None, object, str]:
    """Run ``action``; return (a node backend started a query meanwhile, the node's load-query count or None,
    what ``action`` returned, the counters as text)."""
    node_before = await scrape(url)
    started, counters = await db.now(), await db.counters()
    outcome = await action()
    last = await db.last_node_query_start()
    delta = (await db.counters()).minus(counters)
    node_after = await scrape(url)
    loads = node_after.loads - node_before.loads if node_after is not None and node_before is not None else None
    detail = (
        f"node idnode_cache_loads_total Δ={'n/a' if loads is None else int(loads)}; "
        f"pg_stat_database Δ xact_commit={delta.xact_commit}, tup_returned={delta.tup_returned} (approximate)"
    )
    return last is not None and last > started, loads, outcome, detail


def _api(numbers: range) -> list[str]:
    return [f"/api/handles/{dataset.handle_of(n)}" for n in numbers]


async def run_smoke(database_url: str | None, *, say: Callable[[str], None]) -> int:
    """Run the checks above; 0 when all pass."""
    checks = _Checks(say)
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="idnode-bench-smoke-"))
    try:
        async with bench_database(database_url, say=say) as db:
            report = await dataset.load(db.dsn, RECORDS, compare_without_triggers=False)
            checks.check(report.rows == RECORDS, f"COPY of {RECORDS} records", f"{report.rows_per_second:,.0f} rows/s")
            async with idnode_server(db.dsn, workdir) as node:
                await _node_checks(checks, db, node, workdir)
                await _forwarding_checks(checks, db, node, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    say(f"smoke: {checks.passed} passed, {checks.failed} failed in {time.perf_counter() - started:.1f} s")
    return 0 if checks.failed == 0 else 1


async def _node_checks(checks: _Checks, db: BenchDatabase, node: Server, workdir: Path) -> None:
    cold = range(0, 20)
    seen, loads, statuses, detail = await _queried_during(db, node.url, lambda: get_many(node.url, _api(cold)))
    checks.check(statuses == {200: len(cold)}, "cold look-ups answer 200", str(statuses))
    checks.check(seen and loads != 0, "cold look-ups are seen querying PostgreSQL (positive control)", detail)

    await fill_cache(node.url, range(RECORDS))
    paths = _api(range(RECORDS)) * 2 + [f"/{dataset.handle_of(n)}" for n in range(0, RECORDS, 10)]
    seen, loads, statuses, detail = await _queried_during(db, node.url, lambda: get_many(node.url, paths))
    checks.check(statuses == {200: 2 * RECORDS, 302: RECORDS // 10}, "cached look-ups and redirects", str(statuses))
    checks.check(not seen and not loads, "cached look-ups issue zero database queries", detail)

    absent = [f"/api/handles/{dataset.handle_of(dataset.ABSENT_BASE)}"]
    queried_first, _, first, _ = await _queried_during(db, node.url, lambda: get_many(node.url, absent))
    queried_again, _, again, _ = await _queried_during(db, node.url, lambda: get_many(node.url, absent * 5))
    checks.check(
        first == {404: 1} and again == {404: 5} and queried_first and not queried_again,
        "absent handle: one query, then negative-cache hits",
        f"first queried={queried_first}, repeats queried={queried_again}",
    )

    load = _python_load(node.url, _api(range(RECORDS)))
    series = await Meter(node, db, busy_window=0.05).series("cached", "python", load, warmup=0, seconds=1, repeats=1)
    cpu = series.median("cpu_us_per_request")
    checks.check(
        cpu is not None and cpu >= 0, "Meter reports the node's CPU per request", f"{cpu:.0f} µs/req" if cpu else ""
    )

    plan = Plan(mode="smoke", records=RECORDS, hot_keys=50, warmup_s=0, run_s=1, repeats=1)
    scripts = [s.script for s in catalogue(plan)] + [w.script for w in write_scenarios(plan)]
    parsed = None
    with contextlib.suppress(ValueError):
        parsed = parse_report("wrk output\n" + _SAMPLE)
    checks.check(
        all("function done" in s for s in scripts) and parsed is not None and parsed["requests"] == 10,
        f"{len(scripts)} wrk scripts generated, report parser works",
    )

    results = Results({"date": "smoke", "host": "smoke", "mode": "smoke"}, series=[series])
    results.series.append(Series("writes", "c64", skipped="not available: smoke"))
    table = markdown(results)
    path = write_json(results, workdir / "results" / "smoke.json")
    checks.check("| cached | python |" in table and path.exists(), "results render as Markdown and JSON")


def _python_load(url: str, paths: Sequence[str]) -> Load:
    """A Meter load of one GET per path, for want of wrk; answers of 400 and up count as status errors, as in wrk."""

    async def load(_seconds: float) -> LoadResult:
        begun = time.perf_counter()
        statuses = await get_many(url, paths)
        errors = sum(count for status, count in statuses.items() if status >= 400)
        return LoadResult(sum(statuses.values()), time.perf_counter() - begun, {}, {"status": errors})

    return load


async def _forwarding_checks(checks: _Checks, db: BenchDatabase, upstream: Server, workdir: Path) -> None:
    paths = _api(range(0, RECORDS, 10))
    async with db.sibling("fwd") as empty:
        async with idnode_server(empty.dsn, workdir, upstream=upstream.url) as node:
            before = await scrape(node.url)
            asked = await get_answers(node.url, paths)
            middle = await scrape(node.url)
            again = await get_answers(node.url, paths)
            after = await scrape(node.url)
        async with idnode_server(empty.dsn, workdir, upstream=f"http://127.0.0.1:{free_port()}") as broken:
            try:
                series = await Meter(broken, empty, busy_window=0.05).series(
                    "forwarded_cold", "python", _python_load(broken.url, paths), warmup=0, seconds=1, repeats=1
                )
                storm = f"the series reported {series.best.load.per_second if series.best else 0:,.0f} req/s"
            except RuntimeError as exc:
                storm = str(exc)
    authoritative = await get_answers(upstream.url, paths)
    same = sum(a == b for a, b in zip(asked, authoritative, strict=True))
    checks.check(
        same == len(paths) and all(status == 200 for status, _ in asked),
        "forwarded look-ups answer 200 with the authoritative node's body",
        f"{same} of {len(paths)} equal; statuses {sorted({status for status, _ in asked})}",
    )
    forwarded, hits = _outcome(before, middle, "forwarded"), _outcome(middle, after, "hit")
    checks.check(
        again == asked and forwarded == len(paths) and hits == len(paths),
        "forwarded answers are counted forwarded, then served from the asking node's cache",
        f"{len(paths)} look-ups: forwarded {forwarded}, then hits {hits}",
    )
    checks.check(
        storm == f"{len(paths)} of {len(paths)} answers were 4xx/5xx",
        "a series of failed forwards (upstream down) fails instead of reporting req/s",
        storm,
    )


def _outcome(before: NodeCounters | None, after: NodeCounters | None, outcome: str) -> int | None:
    """Look-ups with ``outcome`` between two scrapes of the node's counters; None when it has no /metrics."""
    if before is None or after is None:
        return None
    return int(after.minus(before).lookups.get(outcome, 0.0))
