"""``python -m benchmarks``: the idnode benchmark harness (issue 5). See benchmarks/README.md.

::

    python -m benchmarks                 # full run: 1,000,000 records, 3 s warm-up, 3 × 10 s runs
    python -m benchmarks --quick         # every scenario, small and short (< 2 minutes)
    python -m benchmarks --smoke         # seconds, no wrk: the harness still works, cached look-ups hit no DB
    python -m benchmarks --database-url postgresql://user@127.0.0.1:5432/postgres

Results go to ``benchmarks/results/<date>-<host>.json`` (``-quick`` added for ``--quick``) and a Markdown
table is printed. Exit status: 0 done, 1 the run failed (smoke: a check failed), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.plan import full_plan, quick_plan, with_overrides
from benchmarks.report import markdown, write_json
from benchmarks.smoke import run_smoke
from benchmarks.suite import Options, run_suite

RESULTS = Path(__file__).resolve().parent / "results"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small data, short runs (under two minutes)")
    mode.add_argument("--smoke", action="store_true", help="CI check of the harness: seconds, no wrk, no timings")
    parser.add_argument("--database-url", help="PostgreSQL server DSN; a database is created on it and dropped")
    parser.add_argument("--records", type=int, help="records to load (full 1,000,000; quick 20,000)")
    parser.add_argument("--hot-keys", type=int, help="records in the cached hot set (full 100,000; quick 5,000)")
    parser.add_argument("--duration", type=float, dest="run_s", help="seconds per measured run")
    parser.add_argument("--warmup", type=float, dest="warmup_s", help="seconds of warm-up before each series")
    parser.add_argument("--repeats", type=int, help="measured runs per series")
    parser.add_argument("--rate", type=float, help="offered req/s for the fixed-rate runs (default: half of best)")
    parser.add_argument("--no-install", action="store_true", help="do not apt-get missing tools")
    parser.add_argument("--output", type=Path, help="results file (default benchmarks/results/<date>-<host>.json)")
    return parser


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.smoke:
        return asyncio.run(run_smoke(args.database_url, say=_say))
    base = quick_plan() if args.quick else full_plan()
    try:
        plan = with_overrides(
            base,
            records=args.records,
            hot_keys=args.hot_keys
            if args.hot_keys is not None
            else (min(base.hot_keys, args.records) if args.records is not None else None),
            run_s=args.run_s,
            warmup_s=args.warmup_s,
            repeats=args.repeats,
            rate=args.rate,
        )
    except ValueError as exc:
        print(f"benchmarks: {exc}", file=sys.stderr)
        return 2
    options = Options(plan, args.database_url, install=not args.no_install)
    try:
        results = asyncio.run(run_suite(options, _say))
    except KeyboardInterrupt:
        return 130
    except (RuntimeError, OSError) as exc:
        print(f"benchmarks: {exc}", file=sys.stderr)
        return 1
    suffix = "-quick" if plan.mode == "quick" else ""
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    path = args.output or RESULTS / f"{date}-{socket.gethostname()}{suffix}.json"
    write_json(results, path)
    print(markdown(results))
    _say(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
