"""``GET /api/handles/{handle}/history``: every version of a handle with actor, time and values (idnode extension).

The path shares its space with handles: ``88.1/X/history`` is first looked up as a handle of that name, and only
when there is none does the read API hand it here (``HandleHooks.fallback``). Admins of the handle with
READ_VALUE only; secret keys are redacted. A deleted handle's history stays readable by the admins its last
version named.
"""

from __future__ import annotations

from aiohttp import web

from registry.auth import Authenticator
from registry.permissions import Perm, Permissions
from registry.store import RegistryStore
from resolver.errors import HandleNotFound
from resolver.identifiers import parse
from resolver.records import redact_secrets, values_from_stored
from resolver.responses import json_response

__all__ = ["HandleHistory"]

SUFFIX = "/history"


class HandleHistory:
    """The read API's fallback for unknown handles ending in ``/history``."""

    def __init__(
        self, store: RegistryStore, auth: Authenticator, permissions: Permissions, *, max_handle_bytes: int
    ) -> None:
        self.store = store
        self.auth = auth
        self.permissions = permissions
        self.max_handle_bytes = max_handle_bytes

    def claims(self, text: str) -> bool:
        """Whether an unknown handle ``text`` names the history of another handle."""
        return text.endswith(SUFFIX) and len(text) > len(SUFFIX)

    async def answer(self, request: web.Request, text: str) -> web.StreamResponse:
        """Every version of the handle ``text`` names (``text`` is claimed, see :meth:`claims`)."""
        name = text[: -len(SUFFIX)]
        handle = parse(name, max_bytes=self.max_handle_bytes, bare_is_prefix=False)
        identity = await self.auth.require(request, name)
        rows = await self.store.history(handle.key)
        if not rows:
            raise HandleNotFound(handle=name)
        last = next((values_from_stored(r.values) for r in reversed(rows) if r.values is not None), ())
        await self.permissions.require_on_handle(identity, handle, last, Perm.READ_VALUE, echo=name)
        history = [
            {
                "seq": row.seq,
                "version": row.version,
                "op": row.op,
                "actor": row.actor,
                "at": row.at.isoformat(),
                "requestId": row.request_id,
                "values": None
                if row.values is None
                else [v.to_json() for v in redact_secrets(values_from_stored(row.values))],
            }
            for row in rows
        ]
        return json_response({"responseCode": 1, "handle": name, "history": history})
