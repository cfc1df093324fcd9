"""Site records (resolver/sites.py), the hop header (resolver/sites_client.py) and ``idnode prefix delegate``."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import orjson
import pytest
from aiohttp.test_utils import make_mocked_request

from resolver.records import decode_values
from resolver.sites import base_url, own_site, site_urls
from resolver.sites_client import hops_of
from tests.support import home
from tests.test_cli import idnode


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("HTTPS://node.example.cn/", "https://node.example.cn:443"),
        ("http://[::1]:9", "http://[::1]:9"),
        ("http://example.org", "http://example.org:80"),
    ],
)
def test_base_urls_are_scheme_host_and_port(given: str, expected: str) -> None:
    assert base_url(given) == expected


@pytest.mark.parametrize(
    "given", ["ftp://h:1", "http://", "http://h:1/api", "http://h:1/?x=1", "http://u:p@h:1", "http://h:99999", "h:80"]
)
def test_anything_else_is_refused(given: str) -> None:
    with pytest.raises(ValueError):
        base_url(given)


def test_own_site_round_trips_to_its_url() -> None:
    for url in ("http://127.0.0.1:8000", "https://node.example.cn:443", "http://[2001:db8::1]:80"):
        assert site_urls(own_site(url)) == (url,)


def test_site_urls_reads_a_handle_net_site_and_skips_what_it_cannot_use() -> None:
    site = {
        "servers": [
            {
                "serverId": 1,
                "address": "::ffff:10.0.0.5",  # IPv4 as Handle.Net keeps it
                "interfaces": [
                    {"query": True, "admin": True, "protocol": "TCP", "port": 2641},
                    {"query": True, "admin": False, "protocol": "HTTP", "port": 8000},
                    {"query": False, "admin": True, "protocol": "HTTPS", "port": 8443},
                    {"query": True, "protocol": "HTTPS", "port": "8443"},
                    {"query": True, "protocol": "HTTP", "port": 70000},
                ],
            },
            {"address": "", "interfaces": [{"protocol": "HTTP", "port": 1}]},
            "not a server",
            {"address": "node.example.cn", "interfaces": [{"protocol": "https", "port": 443}]},
        ]
    }
    assert site_urls(site) == ("http://10.0.0.5:8000", "https://node.example.cn:443")
    assert site_urls({"servers": "x"}) == site_urls(None) == site_urls([]) == ()


@pytest.mark.parametrize(("header", "hops"), [(None, 0), ("0", 0), ("3", 3), ("x", 1 << 20), ("1" * 9, 1 << 20)])
def test_hops_of_a_request(header: str | None, hops: int) -> None:
    headers = {} if header is None else {"Idnode-Forwarded": header}
    assert hops_of(make_mocked_request("GET", "/api/handles/1/2", headers=headers)) == hops


async def _kinds(dsn: str) -> dict[str, str]:
    con = await asyncpg.connect(dsn)
    try:
        return {row[0]: row[1] for row in await con.fetch("SELECT prefix_key, kind FROM prefixes")}
    finally:
        await con.close()


async def test_prefix_delegate_and_undelegate(database: str, tmp_path: Path) -> None:
    await home(database, "88.118")
    result = idnode(database, tmp_path, "prefix", "delegate", "88.118.8", "--site", "http://10.0.0.8:8000", "--derived")
    assert result.returncode == 0, result.stderr
    assert (await _kinds(database))["88.118.8"] == "delegated"
    shown = idnode(database, tmp_path, "resolve", "0.NA/88.118.8")
    values = orjson.loads(shown.stdout)["values"]
    assert [(v["index"], v["type"]) for v in values] == [(1, "HS_SITE"), (2, "HS_SITE.PREFIX")]
    assert site_urls(values[0]["data"]["value"]) == ("http://10.0.0.8:8000",)
    listed = idnode(database, tmp_path, "prefix", "list")
    assert "88.118.8\tdelegated" in listed.stdout
    bad = idnode(database, tmp_path, "prefix", "delegate", "88.118.9", "--site", "http://10.0.0.8:8000/path")
    assert bad.returncode == 2 and "no path" in bad.stderr and "Traceback" not in bad.stderr
    result = idnode(database, tmp_path, "prefix", "undelegate", "88.118.8")
    assert result.returncode == 0, result.stderr
    assert "88.118.8" not in await _kinds(database)
    assert idnode(database, tmp_path, "prefix", "undelegate", "88.118.8").returncode == 1
    homed = idnode(database, tmp_path, "prefix", "add", "88.118.9")
    assert homed.returncode == 0
    idnode(database, tmp_path, "prefix", "delegate", "88.118.9", "--site", "http://10.0.0.9:8000")
    assert (await _kinds(database))["88.118.9"] == "homed"  # a homed prefix stays homed


def test_stored_site_values_keep_handle_net_key_order() -> None:
    """jsonb keeps no key order; a site value is given back in the order of transcript F6."""
    shuffled = orjson.loads(orjson.dumps(own_site("http://h:1"), option=orjson.OPT_SORT_KEYS))
    value = decode_values([{"index": 1, "type": "HS_SITE", "data": {"format": "site", "value": shuffled}}])[0]
    site = value.to_json()["data"]["value"]
    assert list(site) == list(own_site("http://h:1"))
    server = site["servers"][0]
    assert list(server) == ["serverId", "address", "publicKey", "interfaces"]
    assert list(server["publicKey"]) == ["format", "value"]
    assert list(server["interfaces"][0]) == ["query", "admin", "protocol", "port"]
