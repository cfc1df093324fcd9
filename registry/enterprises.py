"""Onboarding an enterprise: its prefix homed here, its prefix handle, and its first admin identity.

For prefix ``P`` one transaction creates:
- the ``prefixes`` row (homed) and the ``enterprises`` row (name, unified social credit code, contact);
- ``0.NA/P``: HS_ADMIN at 100 granting every permission to the group ``200:0.NA/P``, and at index 200 an
  HS_VLIST listing ``300:P/ADMIN`` — the shape pyhandle's default HS_ADMIN (``200:0.NA/<prefix>``) points at;
- ``P/ADMIN``: a public HS_ADMIN (so an anonymous GET answers 200 rc 1, which pyhandle needs to start) and the
  HS_SECKEY at index 300, stored hashed; the secret is returned once and never again.

Node operators are identities the same way (``idnode operator add``), recorded in the ``operators`` table.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass

import asyncpg

from registry.auth import hash_secret
from resolver.errors import HandleAlreadyExists, HandleNotFound, InvalidHandle
from resolver.identifiers import ascii_upper, parse, prefix_chain, validate_text
from resolver.records import decode_values, values_to_stored

__all__ = ["Credentials", "add_operator", "onboard", "remove_prefix", "validate_prefix"]

ALL_PERMISSIONS = "111111111111"
ADMIN_SUFFIX = "ADMIN"


@dataclass(frozen=True, slots=True)
class Credentials:
    identity: str
    secret: str

    def as_json(self) -> dict[str, str]:
        return {"identity": self.identity, "secret": self.secret}


def validate_prefix(prefix: str) -> str:
    """A prefix: valid handle text without ``/``, dot-separated non-empty segments."""
    validate_text(prefix, max_bytes=64)
    if "/" in prefix or any(not part for part in prefix.split(".")):
        raise InvalidHandle(f"Invalid prefix {prefix!r}: use dot-separated segments such as 88.118.8", handle=prefix)
    return prefix


def _identity_values(handle: str, hashed: str) -> str:
    return values_to_stored(
        decode_values(
            [
                {
                    "index": 100,
                    "type": "HS_ADMIN",
                    "data": {
                        "format": "admin",
                        "value": {"handle": handle, "index": 300, "permissions": ALL_PERMISSIONS},
                    },
                },
                {"index": 300, "type": "HS_SECKEY", "data": hashed, "permissions": "1100"},
            ]
        )
    ).decode()


async def _insert_handle(con: asyncpg.Connection, handle: str, stored: str) -> None:
    parsed = parse(handle, bare_is_prefix=False)
    inserted = await con.fetchval(
        'INSERT INTO handles (handle_key, handle, prefix_key, "values") VALUES ($1, $2, $3, $4::jsonb) '
        "ON CONFLICT DO NOTHING RETURNING 1",
        parsed.key,
        handle,
        parsed.prefix_key,
        stored,
    )
    if not inserted:
        raise HandleAlreadyExists(f"{handle} already exists", handle=handle)


async def _new_secret() -> tuple[str, str]:
    secret = secrets.token_urlsafe(24)
    return secret, await asyncio.to_thread(hash_secret, secret.encode())


async def onboard(
    pool: asyncpg.Pool, prefix: str, *, name: str, credit_code: str | None, contact: str | None, actor: str
) -> Credentials:
    """Create the enterprise of ``prefix`` as described in the module docstring; 409 when it exists."""
    validate_prefix(prefix)
    key = ascii_upper(prefix)
    admin = f"{prefix}/{ADMIN_SUFFIX}"
    secret, hashed = await _new_secret()
    prefix_handle = values_to_stored(
        decode_values(
            [
                {
                    "index": 100,
                    "type": "HS_ADMIN",
                    "data": {
                        "format": "admin",
                        "value": {"handle": f"0.NA/{prefix}", "index": 200, "permissions": ALL_PERMISSIONS},
                    },
                },
                {
                    "index": 200,
                    "type": "HS_VLIST",
                    "data": {"format": "vlist", "value": [{"handle": admin, "index": 300}]},
                },
            ]
        )
    ).decode()
    async with pool.acquire() as con, con.transaction():
        await con.execute("SELECT set_config('idnode.actor', $1, true)", actor)
        if await con.fetchval("SELECT 1 FROM enterprises WHERE prefix_key = $1", key):
            raise HandleAlreadyExists(f"Prefix {prefix} already belongs to an enterprise", handle=prefix)
        parent = next((p for p in prefix_chain(key)[1:]), None)
        await con.execute(
            "INSERT INTO prefixes (prefix_key, prefix, parent_key) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            key,
            prefix,
            parent,
        )
        await con.execute(
            "INSERT INTO enterprises (prefix_key, name, credit_code, contact, created_by) VALUES ($1, $2, $3, $4, $5)",
            key,
            name,
            credit_code,
            contact,
            actor,
        )
        await _insert_handle(con, f"0.NA/{prefix}", prefix_handle)
        await _insert_handle(con, admin, _identity_values(admin, hashed))
    return Credentials(f"300:{admin}", secret)


async def add_operator(pool: asyncpg.Pool, handle: str, *, actor: str) -> Credentials:
    """Create an operator identity handle (its prefix must be homed) and record it as a node operator."""
    parsed = parse(handle, bare_is_prefix=False)
    secret, hashed = await _new_secret()
    async with pool.acquire() as con, con.transaction():
        await con.execute("SELECT set_config('idnode.actor', $1, true)", actor)
        homed = await con.fetchval(
            "SELECT 1 FROM prefixes WHERE prefix_key = ANY($1::text[])", prefix_chain(parsed.prefix_key)
        )
        if not homed:
            raise HandleNotFound(
                f"Prefix {parsed.prefix} is not homed here; run idnode prefix add first", handle=handle
            )
        await _insert_handle(con, handle, _identity_values(handle, hashed))
        await con.execute(
            "INSERT INTO operators (identity_key, identity) VALUES ($1, $2)",
            ascii_upper(f"300:{handle}"),
            f"300:{handle}",
        )
    return Credentials(f"300:{handle}", secret)


async def remove_prefix(pool: asyncpg.Pool, prefix: str, *, force: bool, actor: str) -> int:
    """Unhome ``prefix`` with its enterprise; refuses (409) while it has handles unless ``force``.

    Returns how many handles were deleted. The enterprise's own ``0.NA/P`` and ``P/ADMIN`` do not count as
    "handles of the prefix" for the refusal.
    """
    key = ascii_upper(prefix)
    derived = _like_escape(key) + ".%"
    own = [f"0.NA/{key}", f"{key}/{ADMIN_SUFFIX}"]
    async with pool.acquire() as con, con.transaction():
        await con.execute("SELECT set_config('idnode.actor', $1, true)", actor)
        if not await con.fetchval("SELECT 1 FROM prefixes WHERE prefix_key = $1", key):
            raise HandleNotFound(f"Prefix {prefix} is not homed here", handle=prefix)
        under = "(prefix_key = $1 OR prefix_key LIKE $2)"
        count = await con.fetchval(
            f"SELECT count(*) FROM handles WHERE {under} AND handle_key <> ALL($3::text[])", key, derived, own
        )
        if count and not force:
            raise HandleAlreadyExists(
                f"Prefix {prefix} still has {count} handle(s); add ?force=true to delete them with it", handle=prefix
            )
        status = await con.execute(f"DELETE FROM handles WHERE {under} OR handle_key = $3", key, derived, own[0])
        await con.execute("DELETE FROM enterprises WHERE prefix_key = $1", key)
        await con.execute("DELETE FROM templates WHERE prefix_key = $1", key)
        await con.execute("DELETE FROM prefixes WHERE prefix_key = $1 OR prefix_key LIKE $2", key, derived)
    return int(status.split()[-1])


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
