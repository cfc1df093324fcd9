"""Cached answers kept gzip-compressed: less memory per handle, and gzip clients served the stored bytes as they are.

Why gzip and not a better codec: a gzip-accepting client (browsers, ``requests``, pyhandle, aiohttp, most HTTP
libraries) can be sent the cached bytes unchanged with ``Content-Encoding: gzip``, so the common case costs no work
per request at all, while a zstd dictionary (ten times smaller on these records) would have to be transcoded for
every client. Handle.Net itself gzips its JSON answers (transcript B21b), so clients already handle it.

Measured on the benchmark's 1,249 B product answer (2026-12-02, one core): level 9 gives 428 B (level 1: 444 B)
for ~19 µs once per cache fill; decompressing for a client that does not accept gzip costs ~4.4 µs per request,
against ~30 µs for the rest of a cached look-up. Answers that gzip does not shrink by at least
``_MIN_SAVING`` (short ones: the 18-byte gzip frame eats the gain) stay plain; the first byte tells the two apart
(``0x1f`` starts every gzip stream, ``{`` every JSON answer).
"""

from __future__ import annotations

import zlib
from collections import OrderedDict

__all__ = ["PLAIN_COPIES_BYTES", "PlainCopies", "accepts_gzip", "compress_answer", "is_gzip", "plain_answer"]

_LEVEL = 9
_GZIP_WBITS = 31  # 16 + 15: a gzip container (header, CRC-32, size), as Content-Encoding: gzip needs
_MIN_SAVING = 0.1
_GZIP_MAGIC = 0x1F
_ACCEPT_MEMO_MAX = 256
PLAIN_COPIES_BYTES = 8 << 20
"""Memory for decompressed copies of the answers served most recently to clients that do not take gzip."""
_accept_memo: dict[str, bool] = {}


def compress_answer(body: bytes) -> bytes:
    """``body`` gzip-compressed when that saves at least ``_MIN_SAVING`` of it, else ``body`` itself."""
    packed = zlib.compress(body, _LEVEL, wbits=_GZIP_WBITS)
    return packed if len(packed) <= len(body) * (1 - _MIN_SAVING) else body


def is_gzip(answer: bytes) -> bool:
    return bool(answer) and answer[0] == _GZIP_MAGIC


def plain_answer(answer: bytes) -> bytes:
    """The JSON bytes of a stored answer, decompressed when it is gzip."""
    return zlib.decompress(answer, _GZIP_WBITS) if is_gzip(answer) else answer


class PlainCopies:
    """Decompressed copies of the answers served most recently, least recently used out first.

    Decompressing per request cost ~8 µs of a ~35 µs cached look-up for a client without gzip (wrk A/B, one core,
    2026-12-02: −19 % look-ups/s); look-ups follow a Zipf-like law, so a few MiB of copies of the hottest answers
    serve most of them. A copy is keyed by the identity of the stored answer it was made from and holds that
    answer, so the key cannot be reused while the copy lives, and a record's new version (a new answer object)
    never meets an old copy.
    """

    __slots__ = ("_bytes", "_copies", "max_bytes")

    def __init__(self, max_bytes: int = PLAIN_COPIES_BYTES) -> None:
        self.max_bytes = max_bytes
        self._copies: OrderedDict[int, tuple[bytes, bytes]] = OrderedDict()
        self._bytes = 0

    def of(self, answer: bytes) -> bytes:
        """The JSON of a gzip ``answer``, from the copies or decompressed (and kept) now."""
        copies = self._copies
        found = copies.get(id(answer))
        if found is not None:
            copies.move_to_end(id(answer))
            return found[1]
        plain = zlib.decompress(answer, _GZIP_WBITS)
        copies[id(answer)] = (answer, plain)
        self._bytes += len(answer) + len(plain)
        while self._bytes > self.max_bytes and copies:
            _, (old, old_plain) = copies.popitem(last=False)
            self._bytes -= len(old) + len(old_plain)
        return plain


def accepts_gzip(header: str) -> bool:
    """Whether an ``Accept-Encoding`` value allows gzip (RFC 9110 §12.5.3): ``gzip`` (or ``x-gzip``, or ``*`` when
    gzip is not named) with a q-value above 0. Remembered per distinct header value, since clients repeat theirs."""
    known = _accept_memo.get(header)
    if known is None:
        if len(_accept_memo) >= _ACCEPT_MEMO_MAX:
            _accept_memo.clear()
        known = _accept_memo[header] = _allows_gzip(header)
    return known


def _allows_gzip(header: str) -> bool:
    weights: dict[str, float] = {}
    for item in header.split(","):
        coding, _, parameters = item.partition(";")
        coding = coding.strip().lower()
        if coding:
            weights[coding] = _quality(parameters)
    for name in ("gzip", "x-gzip"):
        if name in weights:
            return weights[name] > 0
    return weights.get("*", 0.0) > 0


def _quality(parameters: str) -> float:
    """The ``q`` of a coding's parameters; 1 when absent, 0 when malformed (the client's preference is unknown)."""
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                quality = float(value.strip())
            except ValueError:
                return 0.0
            return quality if 0.0 <= quality <= 1.0 else 0.0
    return 1.0
