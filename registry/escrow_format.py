"""The escrow deposit file: JSON Lines with a header and a trailer, after the IIIN Data Escrow draft.

The draft (draft-industrial-internet-identifier-data-escrow-03, research/idis-secondary-node.md §4.2) describes an
XML ``<deposit type="FULL|DIFF" id prevId>`` holding a ``<watermark>``, then ``<deletes>`` (applied first), then
``<contents>``. A deposit here has the same parts, in the same order, one JSON document per line::

    {"deposit":"idnode-escrow/1","type":"DIFF","id":"…","prevId":"…","watermark":1234,"created":"…"}
    {"delete":"handle","key":"88.TEST/PUMP-1"}                  every delete first
    {"prefix":{…row…}}                                          then the contents, one table row per line
    {"handle":{"handle_key":…,"handle":…,"values":[…],"version":…,…}}
    {"trailer":{"deletes":1,"contents":2,"sha256":"…"}}

Why JSON Lines and not the draft's XML: every content line is written by PostgreSQL itself (``to_jsonb`` of the
row, through COPY) and read back by PostgreSQL (COPY into a ``jsonb`` column), so a record never passes through
Python on either side, which is what makes 50,000 records/s and more possible. A handle's values are already
stored as JSON, so they travel as stored (no re-encoding, no escaping). Both ends stream: a line is complete on
its own, and the trailer, which XML would give by its closing tag, says the file is complete. The object schemas
for IDIS deposits were never published (§4.2), so a mapping to the draft's XML would be a guess.

The trailer's SHA-256 covers every byte before it (header included), so one changed byte anywhere is seen; its
counts catch a file cut at a line boundary, and a file without a trailer is a truncated one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import orjson

__all__ = [
    "CONTENT_KINDS",
    "DEPOSIT_FORMAT",
    "Deposit",
    "EscrowError",
    "Header",
    "body_lines",
    "header_line",
    "trailer_line",
    "verify",
]

DEPOSIT_FORMAT = "idnode-escrow/1"
CONTENT_KINDS = ("prefix", "enterprise", "template", "operator", "node", "handle")
"""Every kind the change feed carries, in the order contents are applied (a handle after its prefix)."""
_DELETE = b"delete"
_KINDS = frozenset(kind.encode() for kind in CONTENT_KINDS)
_TYPES = ("FULL", "DIFF")


class EscrowError(Exception):
    """A deposit cannot be written or applied; the message is one line saying why (nothing was applied)."""


@dataclass(frozen=True, slots=True)
class Header:
    """A deposit's first line: its type, id, the id it applies on (DIFF only) and its watermark."""

    type: str
    id: str
    previous: str | None
    watermark: int
    created: str


@dataclass(frozen=True, slots=True)
class Deposit:
    """A verified (or just written) deposit: its header, how many deletes and contents, and its checksum."""

    header: Header
    deletes: int
    contents: int
    sha256: str

    @property
    def records(self) -> int:
        return self.deletes + self.contents


def header_line(header: Header) -> bytes:
    document = {
        "deposit": DEPOSIT_FORMAT,
        "type": header.type,
        "id": header.id,
        "prevId": header.previous,
        "watermark": header.watermark,
        "created": header.created,
    }
    return orjson.dumps(document) + b"\n"


def trailer_line(deletes: int, contents: int, sha256: str) -> bytes:
    return orjson.dumps({"trailer": {"deletes": deletes, "contents": contents, "sha256": sha256}}) + b"\n"


def _parse_header(line: bytes) -> Header:
    try:
        document = orjson.loads(line)
        if document.get("deposit") != DEPOSIT_FORMAT:
            raise ValueError
        header = Header(
            document["type"], document["id"], document["prevId"], document["watermark"], document["created"]
        )
    except (orjson.JSONDecodeError, AttributeError, KeyError, ValueError):
        raise EscrowError(f"not an escrow deposit (the first line is no {DEPOSIT_FORMAT} header)") from None
    if header.type not in _TYPES or not isinstance(header.id, str) or not header.id:
        raise EscrowError("not an escrow deposit (its header has no valid type and id)")
    if not isinstance(header.watermark, int) or header.watermark < 0:
        raise EscrowError("not an escrow deposit (its header has no valid watermark)")
    if (header.type == "DIFF") != isinstance(header.previous, str):
        raise EscrowError("not an escrow deposit (a DIFF names its previous deposit, a FULL none)")
    return header


def body_lines(stream: IO[bytes]) -> Iterator[bytes]:
    """The lines left in ``stream`` but the last (the trailer), each with its newline: the body once the header
    was read."""
    previous = None
    for line in stream:
        if previous is not None:
            yield previous
        previous = line


def verify(path: Path) -> Deposit:
    """Read the whole deposit and check it: header, structure (deletes, then contents, then the trailer), counts and
    checksum. Raises ``EscrowError`` naming the first fault; reads in constant memory."""
    try:
        return _verify(path)
    except OSError as exc:
        raise EscrowError(f"cannot read {path}: {exc.strerror}") from None


def _verify(path: Path) -> Deposit:
    digest = hashlib.sha256()
    deletes = contents = 0
    with path.open("rb") as stream:
        first = stream.readline()
        header = _parse_header(first)
        digest.update(first)
        last = b""
        for number, line in enumerate(stream, start=2):
            if last:
                digest.update(last)
                kind = last[2 : last.find(b'"', 2)] if last.startswith(b'{"') else b""
                if kind == _DELETE:
                    if contents:
                        raise EscrowError(f"line {number - 1}: a delete after the contents (deletes come first)")
                    if header.type == "FULL":
                        raise EscrowError(f"line {number - 1}: a FULL deposit holds no deletes")
                    deletes += 1
                elif kind in _KINDS:
                    contents += 1
                else:
                    raise EscrowError(f"line {number - 1}: neither a delete nor a known record kind")
            last = line
    trailer = _parse_trailer(last)
    if trailer != {"deletes": deletes, "contents": contents, "sha256": digest.hexdigest()}:
        raise EscrowError("checksum or record count differs from the trailer: the deposit was altered")
    return Deposit(header, deletes, contents, digest.hexdigest())


def _parse_trailer(line: bytes) -> dict[str, object]:
    try:
        if not line.endswith(b"\n"):
            raise ValueError
        trailer = orjson.loads(line)["trailer"]
        if not isinstance(trailer, dict):
            raise ValueError
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise EscrowError("truncated deposit: its last line is not the trailer") from None
    return trailer
