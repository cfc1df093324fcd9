"""A record's lifecycle state, stored as one ``IDNODE_STATUS`` value: active, recalled or withdrawn.

The value's data is a JSON object (string data, so any Handle client can write and read it)::

    {"state": "recalled", "notice": "Batch B-0314 may leak; stop using it.", "link": "https://maker.example/recall"}
    {"state": "withdrawn", "notice": "Replaced by CP-40B.", "successor": "88.888.1/PUMP-2026-000124"}

- ``state``: ``active`` (the same as no value), ``recalled`` or ``withdrawn``; required.
- ``notice``: text shown first on the page (at most ``MAX_NOTICE_CHARS``).
- ``link``: an ``http(s)`` URL; for ``recalled`` required: the proxy's default redirect goes there.
- ``successor``: for ``withdrawn``, a handle (served as this node's ``/<handle>``) or an ``http(s)`` URL; the 410
  answer carries ``Link: <successor>; rel="successor-version"`` (RFC 5829).

What the proxy does with it is ``resolver/proxy.py``'s (research/product-resolvers.md §2 step 1, §5 #12); the
Handle API (``/api/handles/...``) serves the value as any other. :func:`parse` is also the write path's check
(``registry/templates.py`` ``TemplateCheck``), so a stored status is one the proxy can act on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["ACTIVE", "RECALLED", "STATES", "STATUS_TYPE", "WITHDRAWN", "Status", "StatusError", "parse"]

STATUS_TYPE = "IDNODE_STATUS"
ACTIVE, RECALLED, WITHDRAWN = "active", "recalled", "withdrawn"
STATES = (ACTIVE, RECALLED, WITHDRAWN)
MAX_NOTICE_CHARS = 2000
MAX_STATUS_BYTES = 8 * 1024
_MEMBERS = frozenset({"state", "notice", "link", "successor"})
_WEB_URL = re.compile(r"https?://[^\s<>\"'`\\]+", re.IGNORECASE)
_HANDLE = re.compile(r"[^\s/<>\"'`\\]+/[^\s<>\"'`\\]+")


class StatusError(ValueError):
    """An ``IDNODE_STATUS`` value the proxy could not act on; the message names the problem."""


@dataclass(frozen=True, slots=True)
class Status:
    state: str
    notice: str = ""
    link: str = ""
    successor: str = ""

    @property
    def successor_is_handle(self) -> bool:
        return bool(self.successor) and not _WEB_URL.fullmatch(self.successor)


def parse(text: str) -> Status:
    """The status in an ``IDNODE_STATUS`` value's data; raises :class:`StatusError`."""
    if len(text) > MAX_STATUS_BYTES:
        raise StatusError(f"{STATUS_TYPE} is longer than {MAX_STATUS_BYTES} characters")
    try:
        raw: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise StatusError(f'{STATUS_TYPE} must be a JSON object such as {{"state": "recalled", ...}}') from None
    if not isinstance(raw, dict):
        raise StatusError(f"{STATUS_TYPE} must be a JSON object")
    unknown = set(raw) - _MEMBERS
    if unknown:
        raise StatusError(f"{STATUS_TYPE}: unknown member {sorted(unknown)[0][:64]!r}")
    for name in _MEMBERS:
        if name in raw and not isinstance(raw[name], str):
            raise StatusError(f"{STATUS_TYPE}: {name} must be a string")
    state = raw.get("state")
    if state not in STATES:
        raise StatusError(f"{STATUS_TYPE}: state must be one of {', '.join(STATES)}")
    status = Status(state, raw.get("notice", ""), raw.get("link", ""), raw.get("successor", ""))
    if len(status.notice) > MAX_NOTICE_CHARS or "\x00" in status.notice:
        raise StatusError(f"{STATUS_TYPE}: notice must be at most {MAX_NOTICE_CHARS} characters, without NUL")
    if status.link and not _WEB_URL.fullmatch(status.link):
        raise StatusError(f"{STATUS_TYPE}: link must be an http or https URL")
    if state == RECALLED and not status.link:
        raise StatusError(f"{STATUS_TYPE}: a recalled record needs a link (the recall notice's page)")
    if status.successor:
        if state != WITHDRAWN:
            raise StatusError(f"{STATUS_TYPE}: only a withdrawn record has a successor")
        if not (_WEB_URL.fullmatch(status.successor) or _HANDLE.fullmatch(status.successor)):
            raise StatusError(f"{STATUS_TYPE}: successor must be a handle (prefix/suffix) or an http or https URL")
        if len(status.successor) > 2048:
            raise StatusError(f"{STATUS_TYPE}: successor is too long")
    return status
