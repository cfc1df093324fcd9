"""The import jobs' statements (schema ``0011_import_jobs.sql``): a job created, its progress, its end, and reads.

Every statement runs on the write pool: progress is written there, and a poll must see the latest committed
state, whichever worker or node wrote it. A job whose process stopped writing its heartbeat for ``stale_after``
seconds (killed, its node lost) cannot finish any more: ``expire`` marks it failed, and every read calls it first,
so no job stays "running" forever whatever happened to its node.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import orjson

from registry.bulk import ImportReport

__all__ = ["RUNNING", "ImportJob", "ImportJobStore", "Progress"]

RUNNING = ("queued", "checking", "writing")
"""The states of a job that has not ended."""
_COLUMNS = (
    "id, prefix, actor, replace, state, bytes, lines, checked, rows_total, rows_moved, written, skipped, "
    "error_count, errors::text, message, created_at, started_at, finished_at"
)
_RUNNING = "state IN ('queued', 'checking', 'writing')"


@dataclass(frozen=True, slots=True)
class ImportJob:
    id: UUID
    prefix: str
    actor: str
    replace: bool
    state: str
    bytes: int
    lines: int
    checked: int
    rows: int | None
    moved: int
    written: int | None
    skipped: int | None
    error_count: int
    errors: str
    message: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        """How the API shows a job (``registry/import_api.py`` documents the fields)."""
        return {
            "id": str(self.id),
            "prefix": self.prefix,
            "actor": self.actor,
            "replace": self.replace,
            "state": self.state,
            "bytes": self.bytes,
            "total": self.lines,
            "checked": self.checked,
            "rows": self.rows,
            "moved": self.moved,
            "written": self.written,
            "skipped": self.skipped,
            "errorCount": self.error_count,
            "errors": orjson.loads(self.errors),
            "message": self.message,
            "created": self.created_at.isoformat(),
            "started": None if self.started_at is None else self.started_at.isoformat(),
            "finished": None if self.finished_at is None else self.finished_at.isoformat(),
        }


@dataclass(slots=True)
class Progress:
    """What a running job has done so far, changed by the import's ``stage`` callbacks, written by ``progress``."""

    state: str = "queued"
    checked: int = 0
    rows: int | None = None
    moved: int = 0


class ImportJobStore:
    """The import jobs' data layer, over the write pool (see the module docstring)."""

    __slots__ = ("pool", "stale_after")

    def __init__(self, pool: asyncpg.Pool, *, stale_after: float) -> None:
        self.pool = pool
        self.stale_after = stale_after

    async def create(
        self, job_id: UUID, prefix: str, prefix_key: str, actor: str, *, replace: bool, size: int, lines: int
    ) -> ImportJob:
        row = await self.pool.fetchrow(
            "INSERT INTO import_jobs (id, prefix, prefix_key, actor, replace, bytes, lines) "
            f"VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_COLUMNS}",
            job_id,
            prefix,
            prefix_key,
            actor,
            replace,
            size,
            lines,
        )
        return ImportJob(*row)

    async def progress(self, job_id: UUID, progress: Progress) -> None:
        """Write ``progress`` and the heartbeat (only while the job runs: an expired job stays failed)."""
        await self.pool.execute(
            "UPDATE import_jobs SET state = $2, checked = $3, rows_total = $4, rows_moved = $5, heartbeat_at = now(), "
            f"started_at = CASE WHEN $2 = 'queued' THEN NULL ELSE coalesce(started_at, now()) END "
            f"WHERE id = $1 AND {_RUNNING}",
            job_id,
            progress.state,
            progress.checked,
            progress.rows,
            progress.moved,
        )

    async def finish(self, job_id: UUID, report: ImportReport) -> None:
        """The job's end: done (rows written and skipped), or failed with its line errors."""
        failed = report.error_count > 0
        await self.pool.execute(
            "UPDATE import_jobs SET state = $2, rows_total = $3, rows_moved = CASE WHEN $2 = 'done' THEN $3 "
            "ELSE rows_moved END, written = $4, skipped = $5, error_count = $6, errors = $7::jsonb, message = $8, "
            "finished_at = now(), heartbeat_at = now() WHERE id = $1",
            job_id,
            "failed" if failed else "done",
            report.rows,
            None if failed else report.written,
            None if failed else report.skipped,
            report.error_count,
            orjson.dumps([{"line": e.line, "message": e.message} for e in report.errors]).decode(),
            f"{report.error_count} bad line(s); nothing was imported" if failed else None,
        )

    async def fail(self, job_id: UUID, message: str) -> None:
        """The job ended without a report (the database went away, the node stopped): failed with ``message``."""
        await self.pool.execute(
            f"UPDATE import_jobs SET state = 'failed', message = $2, finished_at = now() WHERE id = $1 AND {_RUNNING}",
            job_id,
            message,
        )

    async def expire(self) -> None:
        """Mark failed every running job whose heartbeat is older than ``stale_after`` (see the module docstring)."""
        await self.pool.execute(
            "UPDATE import_jobs SET state = 'failed', finished_at = now(), message = 'the node running this import "
            f"stopped before it ended (no heartbeat for {self.stale_after:g} s); nothing was imported' "
            f"WHERE {_RUNNING} AND heartbeat_at < now() - make_interval(secs => $1)",
            self.stale_after,
        )

    async def get(self, prefix_key: str, job_id: UUID) -> ImportJob | None:
        """The job ``job_id`` of the enterprise ``prefix_key``; None when it has no such job."""
        await self.expire()
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM import_jobs WHERE id = $1 AND prefix_key = $2", job_id, prefix_key
        )
        return None if row is None else ImportJob(*row)

    async def recent(self, prefix_key: str, *, limit: int | None, offset: int) -> tuple[int, list[ImportJob]]:
        """How many jobs the enterprise has, and the page of them asked for, newest first."""
        await self.expire()
        total = await self.pool.fetchval("SELECT count(*) FROM import_jobs WHERE prefix_key = $1", prefix_key)
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM import_jobs WHERE prefix_key = $1 ORDER BY created_at DESC, id LIMIT $2 OFFSET $3",
            prefix_key,
            limit,
            offset,
        )
        return total, [ImportJob(*row) for row in rows]
