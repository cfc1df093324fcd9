"""The registry's data layer: every SQL statement of the write path, and which pool each one runs on.

The HTTP classes never touch a pool or a connection; they call this module. Grouped by what they store:
handles (writes, listing, history, reverse look-up), data templates, sessions, operators, and tenants (prefixes
and enterprises). Statements of the read path (cache loads, the prefix table) stay in ``resolver/store.py``.

Which pool (the one rule): a statement that only reads runs on the **read** pool; a statement or transaction
that changes anything runs on the **write** pool. Listing and search run on ``scans``: the read replicas when the
node has some (``resolver/replicas.py`` decides when a replica is current enough), else the read pool.
A write transaction holds its connection while it authorizes,
and authorizing reads records through the cache, which borrows from the read pool. With one shared pool, as many
concurrent writes as the pool has connections would each wait for a connection none of them releases (seen under
load: every connection "idle in transaction" on the row lock). With two pools write connections may wait on read
connections, never the reverse, so no cycle is possible. The CLI passes one pool for both: it never nests.

Who wrote it: the history triggers (``resolver/schema``) read the transaction-local settings ``idnode.actor`` and
``idnode.request_id``; ``Actor`` carries them and every writing statement sets them in its own transaction, either
in a ``transaction(actor)`` block or within the statement itself (a CTE), so one-statement writes need no
``BEGIN``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg

if TYPE_CHECKING:
    from registry.enterprises import Enterprise

__all__ = [
    "Actor",
    "EnterpriseRow",
    "HistoryRow",
    "RegistryStore",
    "TemplateRow",
    "WriteTransaction",
    "like_pattern",
    "set_actor",
]

_ACTOR_SETTINGS = "set_config('idnode.actor', ${0}, true), set_config('idnode.request_id', ${1}, true)"
"""Who changes what, for the history trigger: set by the statement that opens a write transaction, or by a CTE of a
one-statement write (saving a round trip); ``{0}``/``{1}`` are the parameter numbers."""
_SET_ACTOR = "SELECT " + _ACTOR_SETTINGS.format(1, 2)
_ACTOR_CTE = "WITH actor AS (SELECT " + _ACTOR_SETTINGS + ") "
_LOCK = 'SELECT handle, "values"::text FROM handles WHERE handle_key = $1 FOR UPDATE'
_LOCK_MANY = 'SELECT handle_key, "values"::text FROM handles WHERE handle_key = ANY($1::text[]) FOR UPDATE'
_INSERT = (
    'INSERT INTO handles (handle_key, handle, prefix_key, "values", template_version) '
    "VALUES ($1, $2, $3, $4::jsonb, $5) ON CONFLICT (handle_key) DO NOTHING RETURNING version"
)
_INSERT_ALONE = _ACTOR_CTE.format(6, 7) + (
    'INSERT INTO handles (handle_key, handle, prefix_key, "values", template_version) '
    "SELECT $1, $2, $3, $4::jsonb, $5 FROM actor ON CONFLICT (handle_key) DO NOTHING RETURNING version"
)
_INSERT_OR_SHOW = _ACTOR_CTE.format(6, 7) + (
    ', created AS (INSERT INTO handles (handle_key, handle, prefix_key, "values", template_version) '
    "SELECT $1, $2, $3, $4::jsonb, $5 FROM actor ON CONFLICT (handle_key) DO NOTHING RETURNING version) "
    "SELECT version, NULL::text FROM created UNION ALL "
    'SELECT version, "values"::text FROM handles WHERE handle_key = $1 AND NOT EXISTS (SELECT FROM created)'
)
_UPDATE = (
    'UPDATE handles SET "values" = $2::jsonb, template_version = $3 WHERE handle_key = $1 RETURNING handle, version'
)
_UPDATE_IF = _ACTOR_CTE.format(5, 6) + (
    'UPDATE handles SET "values" = $2::jsonb, template_version = $3 FROM actor '
    "WHERE handle_key = $1 AND version = $4 RETURNING handle, version"
)
_INSERT_MANY = (
    'INSERT INTO handles (handle_key, handle, prefix_key, "values", template_version) '
    "SELECT k, h, p, v::jsonb, t FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) "
    "AS u(k, h, p, v, t) ON CONFLICT (handle_key) DO NOTHING RETURNING handle_key, version"
)
_UPDATE_MANY = (
    'UPDATE handles h SET "values" = u.v::jsonb, template_version = u.t '
    "FROM unnest($1::text[], $2::text[], $3::text[]) AS u(k, v, t) "
    "WHERE h.handle_key = u.k RETURNING h.handle_key, h.version"
)
_TENANCY_LOCK = int.from_bytes(b"idnode:t")
"""The advisory lock key that serializes changes of tenancy (``WriteTransaction.lock_tenancy``)."""
_UNDER = "(prefix_key = $1 OR prefix_key LIKE $2)"
"""A prefix and every prefix derived from it; $2 is ``like_pattern(key) + '.%'``."""


def like_pattern(text: str) -> str:
    """``text`` as a LIKE pattern matching itself: ``\\``, ``%`` and ``_`` escaped (``*`` is left to callers)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change, as history records it: an identity (or ``cli:<user>``) and the request id."""

    name: str
    request_id: str = ""


async def set_actor(con: asyncpg.Connection, actor: Actor) -> None:
    """Attribute the rest of ``con``'s transaction to ``actor`` (the import's COPY path uses it too)."""
    await con.execute(_SET_ACTOR, actor.name, actor.request_id)


@dataclass(frozen=True, slots=True)
class HistoryRow:
    seq: int
    version: int
    op: str
    actor: str | None
    at: datetime
    request_id: str | None
    values: str | None


@dataclass(frozen=True, slots=True)
class EnterpriseRow:
    """An enterprise as ``GET /api/enterprises`` shows it (``prefix`` spelled as it was homed)."""

    prefix: str
    name: str
    credit_code: str | None
    contact: str | None
    address: str | None
    status: str
    created_at: datetime
    created_by: str | None


_ENTERPRISE_COLUMNS = (
    "p.prefix, e.name, e.credit_code, e.contact, e.address, e.status, e.created_at, e.created_by "
    "FROM enterprises e JOIN prefixes p USING (prefix_key)"
)
ENTERPRISE_FIELDS = ("name", "credit_code", "contact", "address")
"""The columns ``RegistryStore.update_enterprise`` may change."""


@dataclass(frozen=True, slots=True)
class TemplateRow:
    """A data template version: its items and SNMS classification (industry codes, carrier type) as JSON text."""

    description: str | None
    items: str
    created_at: datetime
    classification: str | None


_TEMPLATE_COLUMNS = "description, items::text, created_at, classification::text FROM templates"


class WriteTransaction:
    """The statements that run inside one write transaction (locks hold until it commits)."""

    __slots__ = ("_con",)

    def __init__(self, con: asyncpg.Connection) -> None:
        self._con = con

    async def lock(self, key: str) -> tuple[str, str] | None:
        """``(handle, values JSON)`` of the record, locked until commit; None when absent."""
        row = await self._con.fetchrow(_LOCK, key)
        return None if row is None else (row[0], row[1])

    async def lock_many(self, keys: Sequence[str]) -> dict[str, str]:
        """Values JSON by key of the records among ``keys``, locked until commit."""
        return {row[0]: row[1] for row in await self._con.fetch(_LOCK_MANY, list(keys))}

    async def insert(self, key: str, handle: str, prefix_key: str, stored: str, template: str | None) -> int | None:
        """Create a record; its version, or None when the key exists (a concurrent create won)."""
        return await self._con.fetchval(_INSERT, key, handle, prefix_key, stored, template)

    async def update(self, key: str, stored: str, template: str | None) -> tuple[str, int]:
        """Replace a locked record's values; ``(handle, new version)``."""
        row = await self._con.fetchrow(_UPDATE, key, stored, template)
        return row[0], row[1]

    async def delete(self, key: str) -> None:
        await self._con.execute("DELETE FROM handles WHERE handle_key = $1", key)

    async def insert_many(self, rows: Sequence[tuple[str, str, str, str, str | None]]) -> dict[str, int]:
        """Create ``(key, handle, prefix_key, values, template)`` rows in one statement; versions of those created."""
        if not rows:
            return {}
        return {row[0]: row[1] for row in await self._con.fetch(_INSERT_MANY, *_columns(rows, 5))}

    async def update_many(self, rows: Sequence[tuple[str, str, str | None]]) -> dict[str, int]:
        """Replace ``(key, values, template)`` of locked records in one statement; their new versions."""
        if not rows:
            return {}
        return {row[0]: row[1] for row in await self._con.fetch(_UPDATE_MANY, *_columns(rows, 3))}

    async def delete_many(self, keys: Sequence[str]) -> None:
        if keys:
            await self._con.execute("DELETE FROM handles WHERE handle_key = ANY($1::text[])", list(keys))

    # --- tenants ----------------------------------------------------------------------------------------------

    async def lock_tenancy(self) -> None:
        """Hold the tenancy lock until commit; first in every transaction that adds or removes tenants.

        The nesting check reads ``enterprises`` at READ COMMITTED without a lock, so two onboardings (``88.118.8``
        and ``88.118.8.1``) that both checked before either committed both passed. A transaction-scoped advisory
        lock makes such changes take turns (they are rare) without blocking readers of the tables.
        """
        await self._con.execute("SELECT pg_advisory_xact_lock($1)", _TENANCY_LOCK)

    async def has_enterprise(self, prefix_key: str) -> bool:
        return bool(await self._con.fetchval("SELECT 1 FROM enterprises WHERE prefix_key = $1", prefix_key))

    async def homed_among(self, keys: Sequence[str]) -> list[str]:
        """Which of ``keys`` are homed prefixes."""
        rows = await self._con.fetch(
            "SELECT prefix_key FROM prefixes WHERE prefix_key = ANY($1::text[]) AND kind = 'homed'", list(keys)
        )
        return [row[0] for row in rows]

    async def enterprise_prefixes(self, keys: Sequence[str]) -> list[str]:
        """Which of ``keys`` belong to an enterprise."""
        rows = await self._con.fetch(
            "SELECT prefix_key FROM enterprises WHERE prefix_key = ANY($1::text[])", list(keys)
        )
        return [row[0] for row in rows]

    async def enterprises_under(self, prefix_key: str) -> list[str]:
        """Enterprise prefixes derived from ``prefix_key`` (``88.118`` → ``88.118.8``, …)."""
        rows = await self._con.fetch(
            "SELECT prefix_key FROM enterprises WHERE prefix_key LIKE $1", like_pattern(prefix_key) + ".%"
        )
        return [row[0] for row in rows]

    async def add_prefix(self, prefix: str, key: str, parent_key: str | None) -> bool:
        status = await self._con.execute(
            "INSERT INTO prefixes (prefix_key, prefix, parent_key) VALUES ($1, $2, $3) ON CONFLICT (prefix_key) "
            "DO UPDATE SET kind = 'homed', parent_key = EXCLUDED.parent_key WHERE prefixes.kind = 'delegated'",
            key,
            prefix,
            parent_key,
        )
        return status.endswith(" 1")

    async def add_enterprise(self, key: str, enterprise: Enterprise, created_by: str) -> None:
        await self._con.execute(
            "INSERT INTO enterprises (prefix_key, name, credit_code, contact, address, created_by) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            key,
            enterprise.name,
            enterprise.credit_code,
            enterprise.contact,
            enterprise.address,
            created_by,
        )

    async def node_prefixes(self) -> list[str]:
        """Homed prefixes that are no enterprise's and lie under no other homed prefix (the node's own range)."""
        rows = await self._con.fetch(
            "SELECT p.prefix FROM prefixes p WHERE p.kind = 'homed' "
            "AND NOT EXISTS (SELECT 1 FROM enterprises e WHERE e.prefix_key = p.prefix_key) "
            "AND NOT EXISTS (SELECT 1 FROM prefixes q "
            "WHERE q.kind = 'homed' AND starts_with(p.prefix_key, q.prefix_key || '.')) "
            "ORDER BY p.prefix_key"
        )
        return [row[0] for row in rows]

    async def numbered_under(self, prefix_key: str) -> set[int]:
        """The numbers ``n`` for which ``<prefix_key>.n`` or a prefix derived from it is taken (homed, delegated,
        or an enterprise's): what the allocation of the next enterprise prefix skips."""
        rows = await self._con.fetch(
            "SELECT substr(prefix_key, $2) FROM prefixes WHERE prefix_key LIKE $1 "
            "UNION SELECT substr(prefix_key, $2) FROM enterprises WHERE prefix_key LIKE $1",
            like_pattern(prefix_key) + ".%",
            len(prefix_key) + 2,
        )
        first = (row[0].split(".", 1)[0] for row in rows)
        return {int(part) for part in first if part.isascii() and part.isdigit() and len(part) < 10}

    async def add_node(self, key: str, prefix: str, name: str, identity: str, created_by: str) -> None:
        """Record a child node (``registry/nodes.py``); its prefix is the primary key."""
        await self._con.execute(
            "INSERT INTO nodes (prefix_key, prefix, name, identity, created_by) VALUES ($1, $2, $3, $4, $5)",
            key,
            prefix,
            name,
            identity,
            created_by,
        )

    async def add_operator(self, key: str, identity: str) -> None:
        await self._con.execute("INSERT INTO operators (identity_key, identity) VALUES ($1, $2)", key, identity)

    async def count_under(self, prefix_key: str, *, besides: Sequence[str]) -> int:
        """Handles under ``prefix_key`` or a prefix derived from it, not counting the keys ``besides``."""
        return await self._con.fetchval(
            f"SELECT count(*) FROM handles WHERE {_UNDER} AND handle_key <> ALL($3::text[])",
            prefix_key,
            like_pattern(prefix_key) + ".%",
            list(besides),
        )

    async def remove_prefix(self, prefix_key: str) -> int:
        """Delete a prefix and every prefix derived from it: their handles, prefix handles (``0.NA/P``, whose own
        prefix is ``0.NA``), enterprises and templates; how many handles were deleted. A derived enterprise
        left behind would refuse onboarding its prefix again. History stays: it is append-only."""
        derived = like_pattern(prefix_key) + ".%"
        status = await self._con.execute(
            f"DELETE FROM handles WHERE {_UNDER} OR handle_key = '0.NA/' || $1 OR handle_key LIKE '0.NA/' || $2",
            prefix_key,
            derived,
        )
        for table in ("enterprises", "templates", "prefixes"):
            await self._con.execute(f"DELETE FROM {table} WHERE {_UNDER}", prefix_key, derived)
        return int(status.split()[-1])

    # --- templates --------------------------------------------------------------------------------------------

    async def template_use_count(self, reference: str) -> int:
        return await self._con.fetchval("SELECT count(*) FROM handles WHERE template_version = $1", reference)

    async def lock_template(self, prefix_key: str, version: str) -> TemplateRow | None:
        """A template version, locked until commit (a revision and a deletion take turns); None when absent."""
        row = await self._con.fetchrow(
            f"SELECT {_TEMPLATE_COLUMNS} WHERE prefix_key = $1 AND version = $2 FOR UPDATE", prefix_key, version
        )
        return None if row is None else TemplateRow(*row)

    async def revise_template(
        self, prefix_key: str, version: str, description: str | None, items: str, classification: str | None
    ) -> None:
        """Replace a locked version's content; the change-feed trigger records it with the transaction's actor."""
        await self._con.execute(
            "UPDATE templates SET description = $3, items = $4::jsonb, classification = $5::jsonb "
            "WHERE prefix_key = $1 AND version = $2",
            prefix_key,
            version,
            description,
            items,
            classification,
        )

    async def delete_template(self, prefix_key: str, version: str) -> bool:
        status = await self._con.execute(
            "DELETE FROM templates WHERE prefix_key = $1 AND version = $2", prefix_key, version
        )
        return not status.endswith(" 0")


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as ``width`` column lists, the shape ``unnest`` takes."""
    return [[row[i] for row in rows] for i in range(width)]


class RegistryStore:
    """The registry's statements over a read pool and a write pool (see the module docstring for the rule)."""

    __slots__ = ("read", "scans", "write")

    def __init__(self, read: asyncpg.Pool, write: asyncpg.Pool | None = None, scans: Any = None) -> None:
        self.read = read
        self.write = write if write is not None else read
        self.scans = scans if scans is not None else read
        """Listing and search: the read replicas when the node has some (``resolver/replicas.py``), else ``read``."""

    @asynccontextmanager
    async def transaction(self, actor: Actor) -> AsyncIterator[WriteTransaction]:
        """One write transaction on the write pool, its changes attributed to ``actor``."""
        async with self.write.acquire() as con, con.transaction():
            await set_actor(con, actor)
            yield WriteTransaction(con)

    # --- handles: one-statement writes (no transaction to open, no lock round trip) ---------------------------

    async def insert_alone(
        self, key: str, handle: str, prefix_key: str, stored: str, template: str | None, actor: Actor
    ) -> int | None:
        """Create a record in one statement; its version, or None when the key exists."""
        return await self.write.fetchval(
            _INSERT_ALONE, key, handle, prefix_key, stored, template, actor.name, actor.request_id
        )

    async def insert_or_show(
        self, key: str, handle: str, prefix_key: str, stored: str, template: str | None, actor: Actor
    ) -> tuple[int, str | None] | None:
        """Create a record in one statement, or show the one that is there: ``(version, None)`` when created,
        ``(version, stored values)`` of the existing record, None when neither (it was created by a writer that
        committed after this statement began, so its snapshot cannot show it)."""
        row = await self.write.fetchrow(
            _INSERT_OR_SHOW, key, handle, prefix_key, stored, template, actor.name, actor.request_id
        )
        return None if row is None else (row[0], row[1])

    async def update_if(
        self, key: str, stored: str, template: str | None, version: int, actor: Actor
    ) -> tuple[str, int] | None:
        """Replace a record in one statement if it is still at ``version``; ``(handle, new version)`` or None."""
        row = await self.write.fetchrow(_UPDATE_IF, key, stored, template, version, actor.name, actor.request_id)
        return None if row is None else (row[0], row[1])

    async def create_missing(self, rows: Sequence[tuple[str, str, str, str, str | None]], actor: Actor) -> int:
        """Insert ``(key, handle, prefix_key, values, template)`` rows whose key is not stored yet; how many were new.

        For small seed data (the demo); imports go through ``registry/bulk.py`` (COPY).
        """
        if not rows:
            return 0
        async with self.transaction(actor) as tx:
            created = await tx.insert_many(rows)
        return len(created)

    # --- handles: reading ---------------------------------------------------------------------------------------

    async def count_handles(self, prefix_key: str) -> int:
        return await self.scans.fetchval("SELECT count(*) FROM handles WHERE prefix_key = $1", prefix_key)

    async def list_handles(self, prefix_key: str, *, limit: int | None = None, offset: int = 0) -> list[str]:
        """Handle names of one prefix in key order; a page of them when ``limit`` is given."""
        rows = await self.scans.fetch(
            "SELECT handle FROM handles WHERE prefix_key = $1 ORDER BY handle_key LIMIT $2 OFFSET $3",
            prefix_key,
            limit,
            offset,
        )
        return [row[0] for row in rows]

    async def history(self, key: str) -> list[HistoryRow]:
        rows = await self.read.fetch(
            'SELECT seq, version, op, actor, at, request_id, "values"::text FROM handle_history '
            "WHERE handle_key = $1 ORDER BY seq",
            key,
        )
        return [HistoryRow(*row) for row in rows]

    async def searchable_types(self) -> set[str]:
        return {row[0] for row in await self.read.fetch("SELECT type_key FROM search_types")}

    async def search(
        self, criteria: Sequence[tuple[str, str]], *, within: str | None, limit: int, besides: Sequence[str] = ()
    ) -> list[str]:
        """Handles holding every ``(type, value)`` of ``criteria`` (``*`` in a value is a wildcard).

        ``within``: only handles under that prefix or one derived from it, less the prefixes (and their derived
        prefixes) of enterprises other than ``within``'s own (None: anywhere). ``besides``: prefix keys left out.
        """
        clauses, args = [], []
        for kind, value in criteria:
            op = "LIKE" if "*" in value else "="
            args += [kind, like_pattern(value).replace("*", "%") if op == "LIKE" else value]
            clauses.append(
                f"h.handle_key IN (SELECT handle_key FROM handle_search WHERE type_key = ${len(args) - 1} "
                f"AND value {op} ${len(args)})"
            )
        if within is not None:
            args += [within, like_pattern(within) + ".%"]
            own, derived = len(args) - 1, len(args)
            clauses.append(f"(h.prefix_key = ${own} OR h.prefix_key LIKE ${derived})")
            clauses.append(
                f"NOT EXISTS (SELECT 1 FROM enterprises e WHERE e.prefix_key LIKE ${derived} AND "
                "(h.prefix_key = e.prefix_key OR starts_with(h.prefix_key, e.prefix_key || '.')))"
            )
        if besides:
            args.append(list(besides))
            clauses.append(f"h.prefix_key <> ALL(${len(args)}::text[])")
        args.append(limit)
        rows = await self.scans.fetch(
            f"SELECT h.handle FROM handles h WHERE {' AND '.join(clauses)} ORDER BY h.handle_key LIMIT ${len(args)}",
            *args,
        )
        return [row[0] for row in rows]

    async def class_pattern_holder(self, prefix_key: str, head: str, tail: str, besides: str) -> str | None:
        """The class record other than ``besides`` holding the pattern ``(head, tail)`` of the prefix, if any
        (``resolver/classes.py``; asked of the primary: the refusal must not depend on a replica's lag)."""
        return await self.write.fetchval(
            "SELECT class_handle FROM class_patterns WHERE prefix_key = $1 AND head = $2 AND tail = $3 "
            "AND class_key <> $4",
            prefix_key,
            head,
            tail,
            besides,
        )

    # --- templates ------------------------------------------------------------------------------------------

    async def template_items(self, prefix_key: str, version: str) -> str | None:
        return await self.read.fetchval(
            "SELECT items::text FROM templates WHERE prefix_key = $1 AND version = $2", prefix_key, version
        )

    async def template(self, prefix_key: str, version: str) -> TemplateRow | None:
        row = await self.read.fetchrow(
            f"SELECT {_TEMPLATE_COLUMNS} WHERE prefix_key = $1 AND version = $2", prefix_key, version
        )
        return None if row is None else TemplateRow(*row)

    async def template_versions(self, prefix_key: str) -> list[str]:
        rows = await self.read.fetch(
            "SELECT version FROM templates WHERE prefix_key = $1 ORDER BY created_at, version", prefix_key
        )
        return [row[0] for row in rows]

    async def publish_template(
        self,
        prefix_key: str,
        prefix: str,
        version: str,
        description: str | None,
        items: str,
        created_by: str,
        classification: str | None = None,
    ) -> bool:
        """Store a new template version; False when that version exists already (it is changed only by a
        revision, ``WriteTransaction.revise_template``)."""
        status = await self.write.execute(
            "INSERT INTO templates (prefix_key, prefix, version, description, items, created_by, classification) "
            "VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7::jsonb) ON CONFLICT DO NOTHING",
            prefix_key,
            prefix,
            version,
            description,
            items,
            created_by,
            classification,
        )
        return status.endswith(" 1")

    # --- sessions -------------------------------------------------------------------------------------------

    async def session(self, session_id: str) -> tuple[str, bytes, str | None] | None:
        """``(id, nonce, identity)`` of a session that has not expired."""
        row = await self.write.fetchrow(  # a session opened a moment ago, maybe by another worker
            "SELECT id, nonce, identity FROM sessions WHERE id = $1 AND expires_at > now()", session_id
        )
        return None if row is None else (row[0], bytes(row[1]), row[2])

    async def open_session(self, session_id: str, nonce: bytes, identity: str | None, expires_at: datetime) -> None:
        """Store a new session, dropping sessions expired for a day (cheap with the expiry index)."""
        await self.write.execute("DELETE FROM sessions WHERE expires_at < now() - interval '1 day'")
        await self.write.execute(
            "INSERT INTO sessions (id, nonce, identity, expires_at) VALUES ($1, $2, $3, $4)",
            session_id,
            nonce,
            identity,
            expires_at,
        )

    async def bind_session(self, session_id: str, identity: str) -> None:
        await self.write.execute("UPDATE sessions SET identity = $2 WHERE id = $1", session_id, identity)

    async def close_session(self, session_id: str) -> None:
        await self.write.execute("DELETE FROM sessions WHERE id = $1", session_id)

    # --- operators and tenants ------------------------------------------------------------------------------

    async def enterprises(
        self, *, name: str | None, credit_code: str | None, status: str | None, limit: int | None, offset: int
    ) -> tuple[int, list[EnterpriseRow]]:
        """``(how many match, the page of them in prefix order)``; ``name`` matches a substring, case-insensitively."""
        clauses, args = ["true"], []
        for column, value, op in (
            ("e.name", None if name is None else f"%{like_pattern(name)}%", "ILIKE"),
            ("e.credit_code", credit_code, "="),
            ("e.status", status, "="),
        ):
            if value is not None:
                args.append(value)
                clauses.append(f"{column} {op} ${len(args)}")
        where = " AND ".join(clauses)
        async with self.read.acquire() as con, con.transaction(isolation="repeatable_read", readonly=True):
            total = await con.fetchval(
                f"SELECT count(*) FROM enterprises e JOIN prefixes p USING (prefix_key) WHERE {where}", *args
            )
            rows = await con.fetch(
                f"SELECT {_ENTERPRISE_COLUMNS} WHERE {where} ORDER BY e.prefix_key "
                f"LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}",
                *args,
                limit,
                offset,
            )
        return total, [EnterpriseRow(*row) for row in rows]

    async def enterprise(self, prefix_key: str) -> EnterpriseRow | None:
        row = await self.write.fetchrow(f"SELECT {_ENTERPRISE_COLUMNS} WHERE e.prefix_key = $1", prefix_key)
        return None if row is None else EnterpriseRow(*row)

    async def update_enterprise(self, prefix_key: str, changes: dict[str, str | None], actor: Actor) -> bool:
        """Set ``changes`` (columns of ``ENTERPRISE_FIELDS`` or ``status``); False when there is no such enterprise.
        The change-feed trigger records the update with ``actor``."""
        columns = list(changes)
        if any(column not in (*ENTERPRISE_FIELDS, "status") for column in columns):
            raise ValueError(f"not an enterprise column: {columns}")
        assignments = ", ".join(f"{column} = ${n + 2}" for n, column in enumerate(columns)) or "name = name"
        async with self.write.acquire() as con, con.transaction():
            await set_actor(con, actor)
            status = await con.execute(
                f"UPDATE enterprises SET {assignments} WHERE prefix_key = $1", prefix_key, *changes.values()
            )
        return not status.endswith(" 0")

    async def suspended_prefixes(self) -> set[str]:
        rows = await self.read.fetch("SELECT prefix_key FROM enterprises WHERE status = 'suspended'")
        return {row[0] for row in rows}

    async def close_sessions_of(self, identity_handle_key: str) -> int:
        """End every session bound to the identity handle (any index); how many there were."""
        status = await self.write.execute(
            "DELETE FROM sessions WHERE upper(substr(identity, strpos(identity, ':') + 1)) = $1", identity_handle_key
        )
        return int(status.split()[-1])

    async def operator_keys(self) -> set[str]:
        return {row[0] for row in await self.read.fetch("SELECT identity_key FROM operators")}

    async def add_prefix(self, prefix: str, key: str, parent_key: str | None = None) -> bool:
        """Home ``prefix``; False when it was homed already."""
        async with self.write.acquire() as con:
            return await WriteTransaction(con).add_prefix(prefix, key, parent_key)
