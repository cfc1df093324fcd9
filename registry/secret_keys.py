"""HS_SECKEY values on their way into storage: checked cheaply first, hashed only once a write is authorized.

Hashing a secret key costs a PBKDF2 run (~15 ms of CPU by design). Hashing before the permission check let any
authenticated identity burn that on a prefix it may not touch (a refused 1,000-secret PUT took 14.4 s of CPU),
so a write goes in two steps:

1. ``prepare_secrets`` (cheap, before authorization): a placeholder sent back (what an authenticated read shows)
   keeps the stored key at that index; a value that claims to be a stored hash must be a usable one (iterations
   within ``MIN_ITERATIONS``..``MAX_ITERATIONS``, see ``registry/auth.py``); at most ``MAX_SECRETS`` keys to hash
   per request; the value made unreadable to the public (``1100``-style permissions).
2. ``hash_secrets`` (after authorization and template validation): each plain key hashed off the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from registry.auth import StoredSecret, hash_secret, is_hashed_secret
from resolver.errors import InvalidValue
from resolver.records import SECRET_PLACEHOLDER, SECRET_TYPES, HandleValue

__all__ = ["MAX_SECRETS", "any_secret", "hash_secrets", "prepare_secrets", "secrets_to_hash"]

MAX_SECRETS = 8
"""Plain secret keys one request may ask the node to hash (a batch counts all its items together)."""


def prepare_secrets(values: Iterable[HandleValue], before: Sequence[HandleValue] = ()) -> list[HandleValue]:
    """``values`` with every secret key private and either a usable stored hash or plain text to hash later."""
    old = {v.index: v for v in before if v.type_key() in SECRET_TYPES}
    out = []
    for value in values:
        if value.type_key() in SECRET_TYPES:
            secret = str(value.value)
            if secret == SECRET_PLACEHOLDER:
                if value.index not in old:
                    raise InvalidValue(f"Value {value.index}: give the secret key itself, not the placeholder")
                secret = str(old[value.index].value)
            elif is_hashed_secret(secret) and StoredSecret.parse(secret) is None:
                raise InvalidValue(
                    f"Value {value.index}: not a usable pbkdf2-sha1 hash (iterations must be within the node's "
                    "accepted range); send the secret key itself to have it hashed"
                )
            value = value._replace(format="string", value=secret, permissions=value.permissions[:2] + "00")
        out.append(value)
    if secrets_to_hash(out) > MAX_SECRETS:
        raise InvalidValue(f"At most {MAX_SECRETS} secret keys can be set in one request")
    return out


def any_secret(values: Iterable[HandleValue]) -> bool:
    """Whether ``values`` hold a secret key in any form (plain, hashed, or the placeholder)."""
    return any(v.type_key() in SECRET_TYPES for v in values)


def secrets_to_hash(values: Iterable[HandleValue]) -> int:
    """How many plain secret keys ``values`` hold (each costs a PBKDF2 run when stored).

    A placeholder sent back keeps the stored hash (or is refused by ``prepare_secrets``): it costs nothing, so it
    does not count.
    """
    return sum(1 for v in values if v.type_key() in SECRET_TYPES and _plain(str(v.value)))


def _plain(secret: str) -> bool:
    return secret != SECRET_PLACEHOLDER and not is_hashed_secret(secret)


async def hash_secrets(values: Sequence[HandleValue]) -> list[HandleValue]:
    """``values`` (already prepared and authorized) with every plain secret key replaced by its stored hash."""
    out = []
    for value in values:
        if value.type_key() in SECRET_TYPES and _plain(str(value.value)):
            stored = await asyncio.to_thread(hash_secret, str(value.value).encode("utf-8"))
            value = value._replace(value=stored)
        out.append(value)
    return out
