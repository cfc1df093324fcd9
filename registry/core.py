"""What every registry endpoint shares: who is asking, may they, and how a committed write reaches the cache.

``Registry`` is built once per app by ``registry/app.py`` from the read path's stages (lookup, cache, pool) and
handed to each endpoint module. It owns the registry's counters (``RegistryCounts``), read by the app's
Prometheus collector at scrape time.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import asyncpg
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, Metric

from registry.auth import Authenticator, Identity
from registry.permissions import Perm, Permissions, admin_permissions
from registry.writes import Writer
from resolver.answers import build_entry
from resolver.cache import Cache, CacheEntry
from resolver.errors import AuthenticationNeeded, HandleError
from resolver.identifiers import Handle, ascii_upper, parse
from resolver.lookup import Lookup
from resolver.metrics import LookupCounts
from resolver.records import HandleValue
from resolver.store import StoredRecord

__all__ = ["WRITE_OPS", "WRITE_OUTCOMES", "Registry", "RegistryCounts", "needed_for_change", "outcome_of"]

WRITE_OPS = ("create", "replace", "add_values", "delete", "delete_values", "batch")
WRITE_OUTCOMES = ("ok", "client_error", "conflict", "denied", "error")
_OPERATORS_TTL = 5.0
_DECODED_MAX = 10_000


@dataclass
class RegistryCounts:
    writes: dict[tuple[str, str], int] = field(
        default_factory=lambda: {(op, outcome): 0 for op in WRITE_OPS for outcome in WRITE_OUTCOMES}
    )
    template_failures: int = 0
    batch_items: int = 0


def outcome_of(error: BaseException | None) -> str:
    """The ``outcome`` label of a write that raised ``error`` (None: it succeeded)."""
    if error is None:
        return "ok"
    if isinstance(error, HandleError):
        if error.response_code in (101, 201):
            return "conflict"
        if error.response_code in (400, 401, 402, 403):
            return "denied"
        if error.http_status < 500:
            return "client_error"
    return "error"


def needed_for_change(before: Sequence[HandleValue], after: Sequence[HandleValue]) -> set[Perm]:
    """The HS_ADMIN bits a change from ``before`` to ``after`` needs: add/remove/modify, value or admin."""
    old = {v.index: v for v in before}
    new = {v.index: v for v in after}
    needed: set[Perm] = set()

    def note(value: HandleValue, value_perm: Perm, admin_perm: Perm) -> None:
        needed.add(admin_perm if value.type_key() == "HS_ADMIN" else value_perm)

    for index, value in new.items():
        if index not in old:
            note(value, Perm.ADD_VALUE, Perm.ADD_ADMIN)
        elif old[index].to_json() | {"timestamp": ""} != value.to_json() | {"timestamp": ""}:
            note(value, Perm.MODIFY_VALUE, Perm.MODIFY_ADMIN)
            if old[index].type_key() == "HS_ADMIN" and value.type_key() != "HS_ADMIN":
                needed.add(Perm.REMOVE_ADMIN)
    for index, value in old.items():
        if index not in new:
            note(value, Perm.REMOVE_VALUE, Perm.REMOVE_ADMIN)
    return needed


class Registry:
    """The registry's shared services for one app."""

    def __init__(
        self,
        *,
        lookup: Lookup,
        pool: asyncpg.Pool,
        authenticator: Authenticator,
        configured_operators: Sequence[str],
        max_handle_bytes: int,
        max_batch: int,
        clock: object = time.monotonic,
    ) -> None:
        self.lookup = lookup
        self.cache: Cache = lookup.cache
        self.pool = pool
        self._writer: Writer | None = None
        self.auth = authenticator
        self.permissions = Permissions(self.values_of, self.is_operator)
        self.max_handle_bytes = max_handle_bytes
        self.max_batch = max_batch
        self.counts = RegistryCounts()
        self._configured = {ascii_upper(op) for op in configured_operators}
        self._operators: set[str] = set()
        self._operators_loaded = float("-inf")
        self._clock = clock
        self._internal = LookupCounts()
        self._decoded: dict[tuple[str, int], tuple[HandleValue, ...]] = {}

    @property
    def writer(self) -> Writer:
        """Write transactions, on a pool of their own (see ``open_writes``)."""
        if self._writer is None:
            raise RuntimeError("registry: writes are not open yet (app not started)")
        return self._writer

    def open_writes(self, pool: asyncpg.Pool) -> None:
        """Give write transactions their own pool.

        A write transaction holds its connection while it authorizes, and authorizing may load records through
        the cache, which borrows from the read pool. On one shared pool, as many concurrent writes as the pool
        has connections would each wait for a connection none of them releases (seen under load: every
        connection "idle in transaction" on the row lock). With two pools no cycle is possible: write
        connections wait on read connections, never the reverse.
        """
        self._writer = Writer(pool)

    # --- identity and permission --------------------------------------------------------------------------

    async def identity(self, request: web.Request, handle: str | None = None) -> Identity:
        """The authenticated identity; AuthenticationNeeded (401, 403 on plain HTTP) when there is none."""
        try:
            identity = await self.auth.identify(request)
        except HandleError as exc:
            exc.handle = exc.handle or handle
            raise
        if identity is None:
            raise AuthenticationNeeded(handle=handle)
        return identity

    async def is_operator(self, identity: Identity) -> bool:
        name = ascii_upper(str(identity))
        if name in self._configured:
            return True
        now = self._clock()  # type: ignore[operator]
        if now - self._operators_loaded > _OPERATORS_TTL:
            rows = await self.pool.fetch("SELECT identity_key FROM operators")
            self._operators = {row[0] for row in rows}
            self._operators_loaded = now
        return name in self._operators

    async def entry_of(self, text: str) -> CacheEntry | None:
        """A handle's cache entry, loaded if needed (None when absent or not homed)."""
        try:
            return await self.lookup.resolve(parse(text), self._internal)
        except HandleError:
            return None

    async def values_of(self, text: str) -> Sequence[HandleValue] | None:
        """All values of a handle through the cache (None when absent or not homed).

        Authorization reads the same few records (identities, prefix handles, admin groups) on every write, so
        their decoded values are remembered per cached version; the cache itself keeps only encoded answers.
        """
        entry = await self.entry_of(text)
        if entry is None:
            return None
        memo = (entry.handle, entry.version)
        values = self._decoded.get(memo)
        if values is None:
            if len(self._decoded) >= _DECODED_MAX:
                self._decoded.clear()
            values = self._decoded[memo] = entry.values
        return values

    async def authorize_change(
        self,
        identity: Identity,
        handle: Handle,
        before: Sequence[HandleValue] | None,
        after: Sequence[HandleValue] | None,
    ) -> None:
        """Raise unless ``identity`` may turn ``before`` into ``after`` (None: absent / deleted)."""
        if before is None:
            admins = await self.permissions.prefix_admins(handle.prefix)
            needed = {Perm.ADD_HANDLE}
        else:
            admins = admin_permissions(before) or await self.permissions.prefix_admins(handle.prefix)
            needed = {Perm.DELETE_HANDLE} if after is None else needed_for_change(before, after)
        await self.permissions.require(identity, handle.prefix, admins, needed, handle=handle.text)

    async def require_prefix_admin(self, identity: Identity, prefix: str, perm: Perm, *, echo: str) -> None:
        """Raise unless ``identity`` holds ``perm`` on ``0.NA/<prefix>`` (or is an operator)."""
        admins = await self.permissions.prefix_admins(prefix)
        await self.permissions.require(identity, prefix, admins, {perm}, handle=echo)

    # --- after a write ------------------------------------------------------------------------------------

    def remember(self, record: StoredRecord, values: Sequence[HandleValue] | None = None) -> None:
        """Read-your-writes: this node's cache holds the committed version before the client hears 2xx."""
        self.cache.put(record.key, build_entry(record, values or None))

    def forget(self, key: str) -> None:
        self.cache.evict(key)
        self.cache.put_absent(key)

    def count(self, op: str, error: BaseException | None) -> None:
        self.counts.writes[(op, outcome_of(error))] += 1

    # --- metrics ------------------------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        """The registry's metric families, added to the app's collector."""
        writes = CounterMetricFamily(
            "idnode_registry_writes", "Registry writes by operation and outcome", labels=["op", "outcome"]
        )
        for (op, outcome), value in self.counts.writes.items():
            writes.add_metric([op, outcome], value)
        yield writes
        failures = CounterMetricFamily("idnode_auth_failures", "Failed authentications by reason", labels=["reason"])
        for reason, value in self.auth.failures.items():
            failures.add_metric([reason], value)
        yield failures
        yield CounterMetricFamily(
            "idnode_template_validation_failures",
            "Registrations refused by their data template",
            value=self.counts.template_failures,
        )
        yield CounterMetricFamily(
            "idnode_batch_items", "Items processed by the batch write API", value=self.counts.batch_items
        )


def request_id(request: web.Request) -> str:
    """The client's ``X-Request-Id`` (trimmed) or a fresh one; recorded in history rows."""
    given = request.headers.get("X-Request-Id", "")[:64]
    return given or uuid.uuid4().hex
