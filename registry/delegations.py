"""Delegating a prefix to another node: its prefix handle ``0.NA/<P>`` here names the site(s) that serve it.

``idnode prefix delegate P --site URL [--site URL2] [--derived]`` writes, into ``0.NA/P``, one HS_SITE per URL
(alternative sites, Handle's mirrors: a client may use any; idnode's forwarder fails over among them) at indexes
1…n, and with ``--derived`` as many HS_SITE.PREFIX values at n+1…2n, so the same sites serve the prefixes derived
from P (``P.x``), as a secondary node does for the enterprise prefixes it allocates. Every other value of the
prefix handle (its HS_ADMIN, a child node's identity key) is kept. ``undelegate`` removes the site values, and the
handle with them when nothing else is left.

The prefix table follows the prefix handle by itself (``schema/0005_delegations.sql``), so an operator's PUT of
``0.NA/P`` with an HS_SITE over the API delegates exactly as this does.
"""

from __future__ import annotations

from collections.abc import Sequence

from registry.enterprises import validate_prefix
from registry.store import Actor, RegistryStore
from resolver.errors import ProtocolError
from resolver.identifiers import parse
from resolver.records import HandleValue, decode_values, values_from_stored, values_to_stored
from resolver.sites import SITE_PREFIX_TYPE, SITE_TYPE, base_url, own_site

__all__ = ["delegate", "undelegate"]

_SITE_TYPES = frozenset({SITE_TYPE, SITE_PREFIX_TYPE})
MAX_SITES = 20


def _site_values(urls: Sequence[str], *, derived: bool) -> list[HandleValue]:
    described = [own_site(url, description=f"delegated site {url}") for url in urls]
    items = [
        {"index": n, "type": SITE_TYPE, "data": {"format": "site", "value": s}} for n, s in enumerate(described, 1)
    ]
    if derived:
        start = len(described) + 1
        items += [
            {"index": n, "type": SITE_PREFIX_TYPE, "data": {"format": "site", "value": s}}
            for n, s in enumerate(described, start)
        ]
    return decode_values(items)


async def delegate(store: RegistryStore, prefix: str, sites: Sequence[str], *, derived: bool, actor: Actor) -> str:
    """Point ``prefix`` at ``sites`` (base URLs); returns the prefix handle written."""
    validate_prefix(prefix)
    if not sites or len(sites) > MAX_SITES:
        raise ProtocolError(f"Give from 1 to {MAX_SITES} --site URLs")
    try:
        urls = [base_url(site) for site in sites]
    except ValueError as exc:
        raise ProtocolError(f"--site: {exc}") from None
    handle = parse(f"0.NA/{prefix}", bare_is_prefix=False)
    added = _site_values(urls, derived=derived)
    async with store.transaction(actor) as tx:
        current = await tx.lock(handle.key)
        kept = [] if current is None else [v for v in values_from_stored(current[1]) if v.type_key() not in _SITE_TYPES]
        taken = {v.index for v in added}
        clashes = sorted(v.index for v in kept if v.index in taken)
        if clashes:
            raise ProtocolError(
                f"{handle.name} already uses index {clashes[0]}; the site values need 1 to {len(added)}"
            )
        stored = values_to_stored(sorted([*kept, *added], key=lambda v: v.index)).decode()
        if current is None:
            await tx.insert(handle.key, handle.name, "0.NA", stored, None)
        else:
            await tx.update(handle.key, stored, None)
    return handle.name


async def undelegate(store: RegistryStore, prefix: str, *, actor: Actor) -> bool:
    """Remove ``prefix``'s site values; False when it had none."""
    validate_prefix(prefix)
    handle = parse(f"0.NA/{prefix}", bare_is_prefix=False)
    async with store.transaction(actor) as tx:
        current = await tx.lock(handle.key)
        if current is None:
            return False
        values = values_from_stored(current[1])
        kept = [v for v in values if v.type_key() not in _SITE_TYPES]
        if len(kept) == len(values):
            return False
        if kept:
            await tx.update(handle.key, values_to_stored(kept).decode(), None)
        else:
            await tx.delete(handle.key)
    return True
