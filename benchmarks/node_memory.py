"""The resident set of a real node holding N cached handles: whole process, and per handle.

::

    python -m benchmarks.node_memory --database-url postgresql://... --entries 1000000
    python -m benchmarks.node_memory --database-url ... --entries 1000000 --idnode /work/main/.venv/bin/idnode

Method. A fresh benchmark database (``postgres.bench_database``: created on the given server, dropped at the
end) gets ``--entries`` product records of the benchmark data set (``dataset.load``), then one node per
``--idnode`` command (default: this checkout's) is started in turn with one worker and
``cache_max_entries`` at least ``--entries``, so that nothing is evicted. Each node first caches ``2,000``
primer records (pool buffers and code paths warmed by the first loads are not cache memory, as in the harness's
memory step), its resident set is read, every record is resolved once through ``POST /api/resolve``
(``client.fill_cache``), and the resident set is read again. Printed per node: the whole process's RSS after the
fill (the figure issue 14 bounds: 1M cached handles within 1 GiB) and the growth per cached handle.
Several ``--idnode`` commands measure them side by side over the same data (an A/B against another tree).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
from pathlib import Path

from benchmarks import dataset
from benchmarks.client import fill_cache
from benchmarks.postgres import bench_database
from benchmarks.procfs import rss_kib
from benchmarks.servers import idnode_server

_PRIMER = 2000


async def _measure(dsn: str, entries: int, idnode: str | None, workdir: Path) -> None:
    async with idnode_server(dsn, workdir, cache_max_entries=entries + 2 * _PRIMER, executable=idnode) as node:
        await fill_cache(node.url, range(entries, entries + _PRIMER))
        before = rss_kib(node.worker_pid())
        warm = await fill_cache(node.url, range(entries))
        await asyncio.sleep(1)  # let the node finish whatever the last answer left pending
        after = rss_kib(node.worker_pid())
        per_handle = (after - before) * 1024 / entries
        print(
            f"{idnode or 'this checkout'}: {entries:,} handles cached in {warm.seconds:.0f} s; "
            f"RSS {before / 1024:,.1f} MiB before, {after / 1024:,.1f} MiB after "
            f"(whole process, {after * 1024 / (1 << 30):.3f} GiB); {per_handle:,.0f} B per cached handle",
            flush=True,
        )


async def _main(args: argparse.Namespace) -> None:
    async with bench_database(args.database_url, say=print) as db:
        report = await dataset.load(db.dsn, args.entries + _PRIMER, compare_without_triggers=False)
        print(f"loaded {args.entries + _PRIMER:,} records in {report.copy_seconds:.0f} s", flush=True)
        workdir = Path(tempfile.mkdtemp(prefix="idnode-memory-"))
        try:
            for _ in range(args.repeat):
                for idnode in args.idnode or [None]:
                    await _measure(db.dsn, args.entries, idnode, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--database-url", help="a PostgreSQL server (default: an embedded one)")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--idnode", action="append", help="the idnode command to start (repeatable: A/B)")
    parser.add_argument("--repeat", type=int, default=1, help="measure each node this many times, alternating")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
