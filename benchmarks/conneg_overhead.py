"""What the product decision order costs the proxy's hot 302: a record with typed links against a plain one.

::

    python -m benchmarks.conneg_overhead [--iterations 20000] [--rounds 7]

Method. Two records of the benchmark data set are cached the way the node caches them (``answers.build_entry``):
record 1 (plain: a URL, the template attributes) and record ``LINKED_BASE + 1`` (the same with a ``10320/loc``
of three typed links, a default one, in two languages). ``Proxy.resolve`` is called directly on a request
prepared with ``aiohttp.test_utils.make_mocked_request`` (a wrk-like request: ``Host`` only, or a phone's
``Accept`` and ``Accept-Language`` with ``--browser``), driven with ``coroutine.send(None)`` (a cache hit never
suspends), and the answer's headers are serialised with aiohttp's own C serialiser, since the extra ``Vary`` and
``Link`` headers cost there too. Rounds alternate the two records; the minimum per call of each is printed, with
the difference. Time is the process's CPU time (``time.process_time``), not the wall clock, so that other work on
a shared machine preempting the run does not count. What it leaves out (the same for both): aiohttp's request
parsing and the socket write, about 35 µs of the ~40 µs a proxy 302 costs in the wrk row (benchmarks/README.md),
which is what the difference is to be read against. It complements the ``proxy_links`` wrk row, whose ratio to
``proxy`` moves by ±10 % on a busy two-core machine. It never asserts a timing.
"""

from __future__ import annotations

import argparse
import time
import timeit
from collections.abc import Callable

from aiohttp.http_writer import _serialize_headers
from aiohttp.test_utils import make_mocked_request

from benchmarks.dataset import LINKED_BASE, TIMESTAMP, handle_of, record_values
from resolver.answers import build_entry
from resolver.cache import Cache, CacheEntry, CacheSettings
from resolver.identifiers import ascii_upper
from resolver.lookup import Lookup
from resolver.metrics import NodeMetrics
from resolver.prefixes import PrefixTable
from resolver.proxy import Proxy
from resolver.records import decode_values, values_to_stored
from resolver.store import StoredRecord

PHONE = {
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    "Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8",
}


async def _nothing(_keys: object) -> dict[str, CacheEntry]:
    return {}


def _call(proxy: Proxy, number: int, headers: dict[str, str]) -> Callable[[], None]:
    request = make_mocked_request("GET", "/" + handle_of(number), headers={"Host": "127.0.0.1:8000", **headers})

    def once() -> None:
        coroutine = proxy.resolve(request)
        try:
            coroutine.send(None)
        except StopIteration as done:
            response = done.value
        else:
            raise SystemExit("conneg_overhead: the hot path suspended: not a cache hit")
        assert response.status == 302
        _serialize_headers("HTTP/1.1 302 Found", response.headers)

    return once


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--browser", action="store_true", help="send a phone browser's Accept and Accept-Language")
    options = parser.parse_args()
    cache = Cache(CacheSettings(), _nothing)
    for number in (1, LINKED_BASE + 1):
        handle = handle_of(number)
        stored = values_to_stored(decode_values(record_values(number), timestamp=TIMESTAMP)).decode()
        record = StoredRecord(ascii_upper(handle), handle, 1, stored)
        cache.put(record.key, build_entry(record))
    proxy = Proxy(Lookup(cache, PrefixTable()), NodeMetrics(), max_handle_bytes=1024)
    headers = PHONE if options.browser else {}
    calls = {"plain": _call(proxy, 1, headers), "typed links": _call(proxy, LINKED_BASE + 1, headers)}
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(options.rounds):
        for name, call in calls.items():
            timer = timeit.Timer(call, timer=time.process_time)
            seconds = timer.timeit(number=options.iterations) / options.iterations
            best[name] = min(best[name], seconds)
    for name, seconds in best.items():
        print(f"{name:12} {seconds * 1e6:6.2f} µs per hot 302 (handler + header serialisation, best of rounds)")
    print(f"difference   {(best['typed links'] - best['plain']) * 1e6:6.2f} µs")


if __name__ == "__main__":
    main()
