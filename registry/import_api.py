"""``/api/enterprises/{prefix}/imports``: an enterprise system uploads JSON Lines and polls the import's job.

- ``POST /api/enterprises/{prefix}/imports[?replace=true]`` (``replace`` a Handle.Net flag: empty, ``true`` or
  ``yes``) with a body of JSON Lines, one Handle.Net record per line as ``idnode import`` reads them
  (``Content-Type: application/x-ndjson``, ``application/jsonl`` or ``application/json-lines``; ``Content-Encoding:
  gzip`` is undone by the server, and the limit counts the uncompressed bytes) → 202 ``{"responseCode": 1, "job":
  <job>}`` with ``Location`` naming the job. The body is streamed to a spool file in ``<data_dir>/imports``
  (unlinked at once, so nothing is left behind whatever happens to the process; never the whole body in memory),
  its lines counted on the way; over ``max_import_bytes`` → 413 rc 4 and the connection is closed, another media
  type → 415 rc 4, no chunk for ``body_timeout`` seconds → 408 rc 4, an empty body → 400 rc 4. The import then
  runs in the background in this process (one at a time per process; the others wait in state ``queued``)
  through ``registry/bulk.import_lines``: the same checks and the same all-or-nothing transaction as ``idnode
  import``, with a ``Scope`` that refuses lines outside ``{prefix}``.
- ``GET /api/enterprises/{prefix}/imports/{id}`` → ``{"responseCode": 1, "job": <job>}``; 404 rc 100 when the
  enterprise has no such job.
- ``GET /api/enterprises/{prefix}/imports[?page=&pageSize=]`` → ``{"responseCode": 1, "totalCount": "N",
  "imports": [<job>, ...]}``, newest first; without paging the newest ``LIST_DEFAULT``.

A job is ``{"id", "prefix", "actor", "replace", "state", "bytes", "total", "checked", "rows", "moved", "written",
"skipped", "errorCount", "errors", "message", "created", "started", "finished"}``: ``state`` goes ``queued`` →
``checking`` (``checked`` of ``total`` lines read and checked) → ``writing`` (``moved`` of ``rows`` valid
records through the final step) → ``done`` (``written`` records created or changed, ``skipped`` already present,
or unchanged with ``replace``) or ``failed`` (``errorCount`` bad lines, the first 100 in ``errors`` as
``{"line", "message"}``, and nothing imported; or ``message`` says why the import stopped). Jobs live in
PostgreSQL (``registry/import_store.py``), so any worker or node of the database answers a poll; progress is
written at most every ``PROGRESS_INTERVAL`` seconds, which is also the heartbeat: a job whose process died is
marked failed ``STALE_AFTER`` seconds later, at the next read.

Who may: the enterprise's identities holding ``ADD_HANDLE`` on ``0.NA/{prefix}`` (its ``P/ADMIN``, an app with
the ``register`` right), and with ``replace`` also ``MODIFY_VALUE``/``ADD_VALUE``/``REMOVE_VALUE`` (an app's
``update``), or a node operator; refused as a PUT is (401 rc 402 without credentials, 403 rc 400/401; a
suspended enterprise's upload 403 rc 401; on a mirror 403 rc 401, by ``Replication.guard_routes``). Its jobs are
shown to the enterprise's own identities and to operators; an unknown enterprise is 404 rc 100.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import IO, Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from registry.auth import Authenticator, Identity
from registry.bulk import Admins, Scope, Stage, import_lines
from registry.import_store import ImportJobStore, Progress
from registry.lifecycle import show
from registry.paging import paging
from registry.permissions import Perm, Permissions, within_prefix
from registry.store import Actor, EnterpriseRow, RegistryStore
from resolver.app import Core
from resolver.errors import BodyTimeout, HandleError, HandleNotFound, InvalidAdmin, PayloadTooLarge, ProtocolError
from resolver.identifiers import ascii_upper
from resolver.responses import answers_errors, flag, json_response
from resolver.store import Store, unavailable

__all__ = ["LIST_DEFAULT", "MEDIA_TYPES", "PROGRESS_INTERVAL", "STALE_AFTER", "ImportsAPI"]

log = logging.getLogger("idnode.imports")

MEDIA_TYPES = frozenset({"application/x-ndjson", "application/jsonl", "application/json-lines"})
PROGRESS_INTERVAL = 0.5
"""Seconds between two writes of a running job's progress (and heartbeat)."""
STALE_AFTER = 60.0
"""Seconds without a heartbeat after which a running job is failed: its process is gone."""
LIST_DEFAULT = 100
"""Jobs listed when no page is asked for."""
_UPDATE = frozenset({Perm.MODIFY_VALUE, Perm.ADD_VALUE, Perm.REMOVE_VALUE})
_ADMINISTER = frozenset({Perm.MODIFY_ADMIN, Perm.ADD_ADMIN, Perm.REMOVE_ADMIN})
_STATES = {"check": "checking", "write": "writing"}


class UploadTooLarge(PayloadTooLarge):
    """An upload over ``max_import_bytes``; the rest of it is not read, so the connection is closed."""

    closes_connection = True

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.message = f"Upload larger than {limit} bytes (max_import_bytes)"


class UnsupportedMediaType(ProtocolError):
    http_status = 415


class ImportsAPI:
    """``/api/enterprises/{prefix}/imports[/{id}]``, and the imports this process runs."""

    def __init__(self, core: Core, store: RegistryStore, auth: Authenticator, permissions: Permissions) -> None:
        self.store = store
        self.auth = auth
        self.permissions = permissions
        self.prefixes = core.lookup.prefixes
        self.settings = core.settings
        self.spool_dir = core.settings.data_dir / "imports"
        self.jobs = ImportJobStore(store.write, stale_after=STALE_AFTER)
        self.turn = asyncio.Semaphore(1)
        self.running: set[asyncio.Task[None]] = set()
        """This process's import tasks, held here so that none is garbage-collected while it runs."""

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/enterprises/{prefix}/imports", self.create),
            web.get("/api/enterprises/{prefix}/imports", self.list),
            web.get("/api/enterprises/{prefix}/imports/{id}", self.get),
        ]

    # --- who may -------------------------------------------------------------------------------------------------

    async def _enterprise(self, request: web.Request) -> tuple[Identity, EnterpriseRow]:
        prefix = request.match_info["prefix"]
        identity = await self.auth.require(request, prefix)
        return identity, await show(self.store, prefix)

    async def _scope(self, identity: Identity, prefix: str, replace: bool) -> Scope:
        """The upload's scope once ``identity`` may import into ``prefix``; refused as a PUT would be."""
        admins = await self.permissions.prefix_admins(prefix)
        needed = {Perm.ADD_HANDLE, *(_UPDATE if replace else ())}
        await self.permissions.require(identity, prefix, admins, needed, handle=prefix)
        if await self.permissions.is_operator(identity):
            return Scope(prefix, None)

        async def may_replace(own: Admins | None, changes_admins: bool) -> str | None:
            try:
                await self.permissions.require(
                    identity,
                    prefix,
                    admins if own is None else own,
                    _UPDATE | (_ADMINISTER if changes_admins else set()),
                )
            except HandleError as exc:
                return exc.message or "not permitted"
            return None

        return Scope(prefix, may_replace)

    async def _reader(self, request: web.Request) -> EnterpriseRow:
        """The enterprise whose jobs ``request`` asks about, once its identity may see them."""
        identity, enterprise = await self._enterprise(request)
        if not within_prefix(identity, enterprise.prefix) and not await self.permissions.is_operator(identity):
            raise InvalidAdmin(f"{identity} may not see the imports of {enterprise.prefix}", handle=enterprise.prefix)
        return enterprise

    # --- endpoints -----------------------------------------------------------------------------------------------

    @answers_errors
    async def create(self, request: web.Request) -> web.StreamResponse:
        replace = flag(request.query, "replace")
        identity, enterprise = await self._enterprise(request)
        scope = await self._scope(identity, enterprise.prefix, replace)
        if request.content_type not in MEDIA_TYPES:
            raise UnsupportedMediaType(
                f"Unsupported media type {request.content_type}: send JSON Lines as {', '.join(sorted(MEDIA_TYPES))}"
            )
        spool, size, lines = await self._receive(request)
        try:
            job_id = uuid.uuid4()
            job = await self.jobs.create(
                job_id,
                enterprise.prefix,
                ascii_upper(enterprise.prefix),
                str(identity),
                replace=replace,
                size=size,
                lines=lines,
            )
        except BaseException:
            spool.close()
            raise
        task = asyncio.create_task(self._run(job_id, spool, scope, replace, Actor(str(identity), str(job_id)), lines))
        self.running.add(task)
        task.add_done_callback(self.running.discard)
        location = f"/api/enterprises/{enterprise.prefix}/imports/{job_id}"
        return json_response({"responseCode": 1, "job": job.as_json()}, status=202, headers={"Location": location})

    @answers_errors
    async def get(self, request: web.Request) -> web.StreamResponse:
        enterprise = await self._reader(request)
        text = request.match_info["id"]
        try:
            job_id = uuid.UUID(text)
        except ValueError:
            job_id = None
        job = None if job_id is None else await self.jobs.get(ascii_upper(enterprise.prefix), job_id)
        if job is None:
            raise HandleNotFound(f"{enterprise.prefix} has no import {text[:64]}", handle=enterprise.prefix)
        return json_response({"responseCode": 1, "job": job.as_json()})

    @answers_errors
    async def list(self, request: web.Request) -> web.StreamResponse:
        page = paging(request.query)
        enterprise = await self._reader(request)
        total, jobs = await self.jobs.recent(
            ascii_upper(enterprise.prefix),
            limit=LIST_DEFAULT if page is None else page.size,
            offset=0 if page is None else page.offset,
        )
        body: dict[str, Any] = {"responseCode": 1, "totalCount": str(total)}
        if page is not None:
            body.update(page=page.number, pageSize=page.size)
        body["imports"] = [job.as_json() for job in jobs]
        return json_response(body)

    # --- the upload ----------------------------------------------------------------------------------------------

    async def _receive(self, request: web.Request) -> tuple[IO[bytes], int, int]:
        """The body spooled to an unlinked file (rewound), its size and its line count."""
        limit = self.settings.max_import_bytes
        if request.content_length is not None and request.content_length > limit:
            raise UploadTooLarge(limit)
        seconds = self.settings.body_timeout
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        spool = tempfile.TemporaryFile(dir=self.spool_dir)  # noqa: SIM115 (closed by the job, or on error below)
        size = newlines = 0
        last = b"\n"
        try:
            while True:
                try:
                    async with asyncio.timeout(seconds):  # between two chunks: a large upload may take long
                        chunk = await request.content.readany()
                except TimeoutError:
                    raise BodyTimeout(seconds) from None
                except HttpProcessingError as exc:
                    raise ProtocolError(f"Unreadable upload: {exc.message}") from None
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise UploadTooLarge(limit)
                newlines += chunk.count(b"\n")
                last = chunk[-1:]
                spool.write(chunk)
            if size == 0:
                raise ProtocolError("The upload is empty: send one JSON record per line")
            spool.seek(0)
        except BaseException:
            spool.close()
            raise
        return spool, size, newlines + (last != b"\n")

    # --- the import ----------------------------------------------------------------------------------------------

    async def _run(
        self, job_id: uuid.UUID, spool: IO[bytes], scope: Scope, replace: bool, actor: Actor, lines: int
    ) -> None:
        """Import the spooled upload, writing the job's progress, and its end whatever happens."""
        progress = Progress()
        beat = asyncio.create_task(self._beat(job_id, progress))
        try:
            async with self.turn:
                report = await import_lines(
                    Store(self.store.write),
                    spool,
                    self.prefixes,
                    max_handle_bytes=self.settings.max_handle_bytes,
                    replace=replace,
                    actor=actor,
                    total_lines=lines,
                    stage=_stages(progress),
                    scope=scope,
                )
            await _stop(beat)
            await self.jobs.finish(job_id, report)
        except asyncio.CancelledError:
            await _stop(beat)
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    self.jobs.fail(job_id, "the node stopped before this import ended; nothing was imported")
                )
            raise
        except Exception as exc:
            await _stop(beat)
            if unavailable(exc):
                message = "the database became unavailable; nothing was imported"
            else:
                message = f"internal error (import {job_id}); nothing was imported"
                log.exception("import %s failed", job_id)
            with contextlib.suppress(Exception):
                await self.jobs.fail(job_id, message)
        finally:
            spool.close()

    async def _beat(self, job_id: uuid.UUID, progress: Progress) -> None:
        """Write the job's progress every ``PROGRESS_INTERVAL`` seconds (a failed write is retried at the next)."""
        while True:
            try:
                await self.jobs.progress(job_id, progress)
            except Exception as exc:
                log.warning("import %s: progress not written: %r", job_id, exc)
            await asyncio.sleep(PROGRESS_INTERVAL)


def _stages(progress: Progress) -> Stage:
    """``import_lines``'s ``stage``: each stage's counts go into ``progress`` (no I/O: ``_beat`` writes them)."""

    def stage(title: str, total: int | None, _unit: str) -> AbstractContextManager[Callable[[int], None]]:
        progress.state = _STATES[title]
        if title == "write":
            progress.rows = total

            def moved(count: int) -> None:
                progress.moved += count

            return contextlib.nullcontext(moved)

        def checked(count: int) -> None:
            progress.checked += count

        return contextlib.nullcontext(checked)

    return stage


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
