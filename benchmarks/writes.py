"""The registry write scenarios, run when the node serves ``PUT /api/handles/...``, skipped with a reason when not.

Before the node starts, ``provision`` registers a benchmark operator, ``300:88.999.1/BENCH-OPERATOR``, whose
HS_SECKEY is stored hashed (``registry.auth.hash_secret``), and ``NODE_ENV`` makes it a node operator and trusts
127.0.0.1 as a TLS-terminating proxy: credentials only count on a secure channel, so every write request says
``X-Forwarded-Proto: https``, as a proxy in front of the node would. A Python probe then PUTs one record:

- 405 → every write scenario is skipped: "not available: no write API";
- any other failure → skipped with the status and the node's message;
- success → the scenarios below run with wrk, like the read scenarios.

Scenarios:
- ``mix_95_5``: 95 % cached GETs (Zipf over the hot set), 5 % PUTs replacing records anywhere in the data set
  (each PUT also evicts that record from the cache through LISTEN/NOTIFY, so some GETs miss);
- ``put_single``: only PUTs, each creating a record (numbers from ``WRITE_BASE``, never loaded);
- ``put_batch``: ``POST /api/handles:batch`` with ``BATCH_ITEMS`` creates per request, checked first by a
  two-item probe; identifiers/s is reported;
- ``put_batch_2000`` and ``snms_batch_2000``: ``LARGE_BATCH`` creates per request through the Handle batch API and
  through SNMS's ``POST /identityv2/data/batchCreate`` (with a bearer token from ``POST /identity/token`` as the
  benchmark operator), the same values in both (``snms_values``: no HS_ADMIN, which SNMS cannot spell), so the
  two rows differ only by the API in front of the same set-based write.

Every write carries a data set record's values less its TEMPLATE reference (``write_values``).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp
import asyncpg
import orjson

from benchmarks.dataset import PREFIX, TIMESTAMP, handle_of, record_values
from benchmarks.lua import BatchShape, Keys, batch_write_script, write_script
from benchmarks.plan import Plan
from resolver.identifiers import ascii_upper
from resolver.records import decode_values, values_to_stored

__all__ = ["NODE_ENV", "WRITE_BASE", "Availability", "WriteScenario", "probe", "provision", "write_scenarios"]

WRITE_BASE = 800_000_000
"""Records created by the write scenarios are numbered from here: neither loaded nor in the 404 ranges."""
PROBE_NUMBER = WRITE_BASE - 1
BATCH_ITEMS = 100
LARGE_BATCH = 2000
LARGE_CONNECTIONS = (2,)
"""One 2,000-item batch in the database while the next is parsed; more would only queue (a request takes ~1 s)."""
_OPERATOR_HANDLE = f"{PREFIX}/BENCH-OPERATOR"
_OPERATOR = f"300:{_OPERATOR_HANDLE}"
_SECRET = b"idnode-bench-secret"
NODE_ENV = {"IDNODE_OPERATORS": _OPERATOR, "IDNODE_TRUSTED_PROXIES": "127.0.0.1/32"}
NO_WRITE_API = "not available: no write API (PUT /api/handles/... answers 405)"


def write_values(number: int) -> list[dict[str, object]]:
    """Record ``number``'s values without the TEMPLATE reference (index 1001): the registry checks that a
    referenced data template exists, and the harness registers none."""
    return [v for v in record_values(number) if v["index"] != 1001]


def snms_values(number: int) -> list[dict[str, object]]:
    """``write_values`` less the HS_ADMIN, in SNMS's ``value[]`` shape: ``{index, type, auth, data{format, value}}``."""
    return [
        {"index": v["index"], "type": v["type"], "auth": "public", "data": {"format": "string", "value": v["data"]}}
        for v in write_values(number)
        if v["type"] != "HS_ADMIN"
    ]


def write_body(number: int) -> bytes:
    return orjson.dumps({"values": write_values(number)})


def auth_headers() -> dict[str, str]:
    """Basic credentials of the benchmark operator (username percent-encoded, research §4.1), over "HTTPS"."""
    token = base64.b64encode(quote(_OPERATOR, safe="").encode() + b":" + _SECRET).decode()
    return {"Authorization": f"Basic {token}", "X-Forwarded-Proto": "https", "Content-Type": "application/json"}


async def provision(dsn: str) -> str | None:
    """Register the benchmark operator by plain SQL; returns why not when the registry cannot hash a secret."""
    try:
        from registry.auth import hash_secret
    except ImportError:
        return "not available: registry.auth.hash_secret is missing (no write API)"
    values = [
        {
            "index": 100,
            "type": "HS_ADMIN",
            "data": {
                "format": "admin",
                "value": {"handle": _OPERATOR_HANDLE, "index": 300, "permissions": "111111111111"},
            },
        },
        {"index": 300, "type": "HS_SECKEY", "data": hash_secret(_SECRET), "permissions": "1100"},
    ]
    stored = values_to_stored(decode_values(values, timestamp=TIMESTAMP)).decode()
    con = await asyncpg.connect(dsn)
    try:
        await con.execute(
            'INSERT INTO handles (handle_key, handle, prefix_key, "values") VALUES ($1, $2, $3, $4::jsonb) '
            "ON CONFLICT (handle_key) DO NOTHING",
            ascii_upper(_OPERATOR_HANDLE),
            _OPERATOR_HANDLE,
            ascii_upper(PREFIX),
            stored,
        )
    finally:
        await con.close()
    return None


async def _send(method: str, url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url, data=body, headers=headers or auth_headers()) as response,
    ):
        return response.status, await response.read()


@dataclass(frozen=True, slots=True)
class Availability:
    """Why each kind of write scenario cannot run (None: it can), and the SNMS bearer token when it can."""

    single: str | None
    batch: str | None
    snms: str | None
    token: str = ""

    def why_not(self, kind: str) -> str | None:
        return {"single": self.single, "batch": self.batch, "snms": self.snms}[kind]


async def probe(url: str) -> Availability:
    """What the node's write API can do: a PUT, a two-item batch, and an SNMS login and two-item batchCreate."""
    status, body = await _send("PUT", f"{url}/api/handles/{handle_of(PROBE_NUMBER)}", write_body(PROBE_NUMBER))
    if status == 405:
        return Availability(NO_WRITE_API, NO_WRITE_API, NO_WRITE_API)
    if status >= 300:
        reason = f"not available: the probe PUT answered {status} {body[:160].decode(errors='replace')}"
        return Availability(reason, reason, reason)
    items = [{"op": "create", "handle": handle_of(PROBE_NUMBER - n), "values": write_values(0)} for n in (1, 2)]
    status, body = await _send("POST", f"{url}/api/handles:batch", orjson.dumps({"items": items}))
    batch = None
    try:
        results = orjson.loads(body).get("results", [])
    except (orjson.JSONDecodeError, AttributeError):
        results = []
    if status in (404, 405):
        batch = f"not available: POST /api/handles:batch answered {status}"
    elif status != 200 or len(results) != 2 or any(r.get("responseCode") != 1 for r in results):
        batch = f"not available: the probe batch answered {status} {body[:160].decode(errors='replace')}"
    token, snms = await _snms_probe(url)
    return Availability(None, batch, snms, token)


async def _snms_probe(url: str) -> tuple[str, str | None]:
    """(bearer token, why SNMS batches cannot run or None): log in as the operator, batchCreate two records."""
    login = orjson.dumps({"username": _OPERATOR_HANDLE, "password": _SECRET.decode()})
    plain = {"X-Forwarded-Proto": "https", "Content-Type": "application/json"}
    status, body = await _send("POST", f"{url}/identity/token", login, plain)
    try:
        envelope = orjson.loads(body)
        token = str(envelope["data"]["token"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return "", f"not available: POST /identity/token answered {status} {body[:160].decode(errors='replace')}"
    records = [{"handle": handle_of(PROBE_NUMBER - n), "value": snms_values(0)} for n in (3, 4)]
    headers = {**plain, "Authorization": f"Bearer {token}"}
    status, body = await _send("POST", f"{url}/identityv2/data/batchCreate", orjson.dumps(records), headers)
    envelope = orjson.loads(body) if status == 200 else {}
    if envelope.get("status") != 1 or any(item.get("code") != 1 for item in envelope.get("data") or [{}]):
        return "", f"not available: the probe batchCreate answered {status} {body[:160].decode(errors='replace')}"
    return token, None


@dataclass(frozen=True, slots=True)
class WriteScenario:
    name: str
    title: str
    script: str
    items_per_request: int
    kind: str = "single"
    """``single``, ``batch`` or ``snms``: which probe must have passed (``Availability.why_not``)."""
    connections: tuple[int, ...] = ()
    """wrk connections when not the plan's (``LARGE_CONNECTIONS`` for the 2,000-item batches)."""


def write_scenarios(plan: Plan, token: str = "") -> list[WriteScenario]:
    """The write scenarios with their wrk scripts; ``token`` is the SNMS bearer token from ``probe``."""
    headers = auth_headers()
    body = write_body(0).decode()
    hot = Keys.zipf(0, plan.hot_keys, plan.zipf_exponent)
    fresh = Keys.uniform(WRITE_BASE, 100_000_000)
    values = orjson.dumps(write_values(0)).decode()
    plain_values = orjson.dumps([v for v in write_values(0) if v["type"] != "HS_ADMIN"]).decode()
    snms = orjson.dumps(snms_values(0)).decode()
    snms_headers = {**headers, "Authorization": f"Bearer {token}"}
    return [
        WriteScenario(
            "mix_95_5",
            "registry: 95/5 read/write mix",
            write_script(hot, Keys.uniform(0, plan.records), write_fraction=0.05, body=body, headers=headers),
            1,
        ),
        WriteScenario(
            "put_single",
            "registry: single PUT (create)",
            write_script(None, fresh, write_fraction=1.0, body=body, headers=headers),
            1,
        ),
        WriteScenario(
            "put_batch",
            f"registry: batch API, {BATCH_ITEMS} creates/request",
            batch_write_script(fresh, BATCH_ITEMS, shape=_handle_batch(values), headers=headers),
            BATCH_ITEMS,
            kind="batch",
        ),
        _large("put_batch_2000", "registry: batch API", _handle_batch(plain_values), headers, fresh, "batch"),
        _large("snms_batch_2000", "SNMS batchCreate", _snms_batch(snms), snms_headers, fresh, "snms"),
    ]


def _large(name: str, api: str, shape: BatchShape, headers: dict[str, str], keys: Keys, kind: str) -> WriteScenario:
    """A ``LARGE_BATCH`` scenario: the same values through either API, at ``LARGE_CONNECTIONS``."""
    script = batch_write_script(keys, LARGE_BATCH, shape=shape, headers=headers)
    title = f"{api}, {LARGE_BATCH} creates/request (SNMS's values)"
    return WriteScenario(name, title, script, LARGE_BATCH, kind=kind, connections=LARGE_CONNECTIONS)


def _handle_batch(values_json: str) -> BatchShape:
    return BatchShape("POST", "/api/handles:batch", '{"items":[', '{"op":"create","handle":"',
                      f'","values":{values_json}}}', "]}")  # fmt: skip


def _snms_batch(values_json: str) -> BatchShape:
    return BatchShape("POST", "/identityv2/data/batchCreate", "[", '{"handle":"', f'","value":{values_json}}}', "]")
