"""What a cached handle really costs in memory, next to ``CacheEntry.size``, the estimate ``cache_max_bytes`` bounds.

::

    python -m benchmarks.cache_size [--entries 20000]               # traced memory, every shape
    python -m benchmarks.cache_size --rss --shape product --entries 100000   # resident set, one shape

Method. For each record shape below, ``--entries`` records are built the way the cache's loader builds them (a
``StoredRecord`` with its own key and handle strings, the stored JSON the node writes, then
``answers.build_entry``) and put into a ``Cache``, under ``tracemalloc``. Once the records themselves are dropped,
the growth of traced memory divided by the number of entries is what one cached handle holds: the entry object,
its body, handle, redirect target and (for records with hidden values) stored JSON, the key, the version and
expiry objects, and the cache map's slot and node. That real size is printed with the mean estimate and their
ratio. tracemalloc counts the bytes Python asks the allocator for; the resident set (``--rss``, measured without
tracemalloc, one shape per process so that no freed memory of another shape is reused) adds the allocator's
rounding and fragmentation.

Shapes: ``small`` (a URL and an e-mail address, ~0.3 KB answer), ``product`` (the benchmark data set's record,
~1.1 KB), ``hidden`` (the product record with an admin-only value, so the stored JSON is kept too) and ``large``
(a URL and an 8 KB description).
"""

from __future__ import annotations

import argparse
import gc
import os
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.dataset import handle_of, record_values
from benchmarks.procfs import rss_kib
from resolver.answers import build_entry
from resolver.cache import Cache, CacheEntry, CacheSettings
from resolver.identifiers import ascii_upper
from resolver.records import decode_values, values_to_stored
from resolver.store import StoredRecord

__all__ = ["SHAPES", "Measurement", "measure"]


def _small(number: int) -> list[dict[str, Any]]:
    return [
        {"index": 1, "type": "URL", "data": f"https://example.com/p/{number}"},
        {"index": 2, "type": "EMAIL", "data": "service@example.com"},
    ]


def _hidden(number: int) -> list[dict[str, Any]]:
    private = {"index": 3000, "type": "COST", "data": f"{number % 997}.00 CNY", "permissions": "1100"}
    return [*record_values(number), private]


def _large(number: int) -> list[dict[str, Any]]:
    description = "离心泵 centrifugal pump, technical description. " * 160
    return [*_small(number), {"index": 3, "type": "DESC", "data": description[: 8000 - number % 100]}]


SHAPES: dict[str, Callable[[int], list[dict[str, Any]]]] = {
    "small": _small,
    "product": record_values,
    "hidden": _hidden,
    "large": _large,
}


@dataclass(frozen=True, slots=True)
class Measurement:
    shape: str
    entries: int
    body: float
    """Mean answer body, bytes."""
    real: float
    """Mean traced bytes per cached handle."""
    estimate: float
    """Mean ``CacheEntry.size``."""

    @property
    def ratio(self) -> float:
        return self.real / self.estimate


def measure(shape: str, entries: int, *, rss: bool = False) -> Measurement:
    """Real and estimated bytes per cached handle for ``entries`` records of ``shape``: real is the traced memory,
    or with ``rss`` the growth of this process's resident set (run one shape per process for that)."""
    make = SHAPES[shape]
    stored = [(number, values_to_stored(decode_values(make(number)))) for number in range(entries)]
    cache = Cache(CacheSettings(max_entries=entries, max_bytes=1 << 62), _no_load)
    gc.collect()
    if not rss:
        tracemalloc.start()
    try:
        before = _used(rss)
        for number, text in stored:
            handle = "".join(handle_of(number))
            # fresh strings per record, as each row from the database is (the JSON arrives as text)
            record = StoredRecord(ascii_upper(handle), handle, 1_000_000 + number, text.decode())
            cache.put(record.key, build_entry(record))
        del record
        gc.collect()
        real = _used(rss) - before
    finally:
        if not rss:
            tracemalloc.stop()
    kept = [cache.get(ascii_upper(handle_of(number))) for number, _ in stored]
    sizes = [entry.size for entry in kept if entry is not None]
    bodies = [len(entry.body) for entry in kept if entry is not None]
    return Measurement(shape, len(sizes), sum(bodies) / len(bodies), real / len(sizes), sum(sizes) / len(sizes))


def _used(rss: bool) -> int:
    return rss_kib(os.getpid()) * 1024 if rss else tracemalloc.get_traced_memory()[0]


async def _no_load(_keys: object) -> dict[str, CacheEntry]:
    return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--shape", choices=list(SHAPES), action="append", help="only these shapes (repeatable)")
    parser.add_argument("--rss", action="store_true", help="real = resident set growth (one --shape per run)")
    args = parser.parse_args()
    print(f"{'shape':<8} {'entries':>8} {'body B':>8} {'real B':>8} {'estimate B':>11} {'real/estimate':>14}")
    for shape in args.shape or SHAPES:
        m = measure(shape, args.entries, rss=args.rss)
        print(f"{m.shape:<8} {m.entries:>8} {m.body:>8.0f} {m.real:>8.0f} {m.estimate:>11.0f} {m.ratio:>14.2f}")


if __name__ == "__main__":
    main()
