"""deploy/prometheus and deploy/grafana against a real Prometheus scraping a real node.

A node with two workers (``idnode serve --workers 2`` over the test database) serves look-ups of every kind; a
real Prometheus on 127.0.0.1 scrapes it every second with the shipped configuration (targets and intervals
changed) and loads the shipped alert rules. Then every dashboard expression and every alert expression is
evaluated through Prometheus' HTTP API and must return at least one series, and a dashboard's series must not
be NaN (a panel showing NaN, as the batch latency did while nothing observed it, issue 8). An alert whose
condition is false on a healthy node returns nothing, so each alert is evaluated with ``bool`` added to its
comparisons (``x > 0.01`` becomes ``x > bool 0.01``): the result then has a series whenever the metrics it reads
have data, whatever the verdict. Each expression is printed with its series count. Expressions reading
``PENDING_REGISTRY_METRICS`` (tests/test_deploy.py) may be empty until the registry exposes them; they are listed
as pending.

Needs the ``prometheus`` and ``promtool`` binaries (Debian package ``prometheus``, installed by .ci/run). Without
them the tests fail and say how to install them: a monitoring setup that was never evaluated must not pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from resolver.sites import own_site
from tests.support import free_port, fresh_database, home, put_record, serve_node, stop_process
from tests.test_deploy import (
    ALERTS,
    PENDING_REGISTRY_METRICS,
    PROMETHEUS_CONFIG,
    alert_rules,
    dashboard_expressions,
    dashboard_variable_expressions,
    pending,
)

pytestmark = pytest.mark.prometheus

RECORD = [
    {"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.org/p"}},
    {"index": 2, "type": "EMAIL", "data": {"format": "string", "value": "ops@example.org"}},
]
_COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)(?!\s*bool)(?=\s*[-+]?[0-9.])")


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on PATH: install prometheus (apt-get install prometheus); .ci/run installs it")
    return path


def with_bool(expr: str) -> str:
    """``expr`` with every comparison against a number turned into a 0/1 value (``> 0.5`` → ``> bool 0.5``)."""
    return _COMPARISON.sub(r"\1 bool", expr)


def test_bool_is_added_to_comparisons_with_numbers_only() -> None:
    assert with_bool('up{job="idnode"} == 0') == 'up{job="idnode"} == bool 0'
    assert with_bool('a{outcome!="x", b=~"y"} / b > 0.01') == 'a{outcome!="x", b=~"y"} / b > bool 0.01'
    assert with_bool("(a < 0.5) and (b > 10)") == "(a < bool 0.5) and (b > bool 10)"
    assert with_bool("a > bool 1") == "a > bool 1"


def test_promtool_accepts_the_shipped_configuration_and_rules(capsys: pytest.CaptureFixture[str]) -> None:
    promtool = binary("promtool")
    for command in (["check", "config", str(PROMETHEUS_CONFIG)], ["check", "rules", str(ALERTS)]):
        result = subprocess.run([promtool, *command], capture_output=True, text=True, timeout=60)
        with capsys.disabled():
            print(f"\npromtool {' '.join(command)}: exit {result.returncode}\n{result.stdout}{result.stderr}")
        assert result.returncode == 0, result.stdout + result.stderr


@contextlib.contextmanager
def prometheus(target: str) -> Iterator[str]:
    """A Prometheus scraping ``target`` every second with the shipped config and rules; yields its URL."""
    executable = binary("prometheus")
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(ALERTS)]
    [job] = [job for job in config["scrape_configs"] if job["job_name"] == "idnode"]
    job["static_configs"] = [{"targets": [target]}]
    config["scrape_configs"] = [job]
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="idnode-prometheus-") as directory:
        path = Path(directory) / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        log = Path(directory) / "prometheus.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [
                    executable,
                    f"--config.file={path}",
                    f"--storage.tsdb.path={Path(directory) / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            yield f"http://127.0.0.1:{port}"
        except BaseException:
            print(log.read_text()[-5000:])
            raise
        finally:
            stop_process(process)


async def _query(http: aiohttp.ClientSession, url: str, expr: str) -> list[dict[str, Any]]:
    async with http.get(url + "/api/v1/query", params={"query": expr}) as response:
        body = await response.json()
    assert body.get("status") == "success", f"{expr}: {body}"
    return body["data"]["result"]


async def _wait_for(check: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError, AssertionError):
            if await check():
                return
        await asyncio.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}")


async def _traffic(url: str) -> None:
    """Every kind of look-up the dashboard shows: hits, misses, absent, negative hits, bad input, proxy, batch."""
    async with aiohttp.ClientSession() as http:
        for _ in range(3):
            for path in (
                "/api/handles/88.TEST/p1",
                "/api/handles/88.TEST/p2",
                "/api/handles/88.TEST/absent",
                "/api/handles/99.OTHER/foreign",
                "/api/handles/77.D/p1",  # delegated to the second node: forwarded (the Hierarchy row)
                "/api/handles/88.TEST/%ZZ",
                "/88.TEST/p1",
                "/88.TEST/absent",
                "/api/handles/88.TEST/p1?type=URL",
            ):
                async with http.get(url + path, allow_redirects=False) as response:
                    await response.read()
            body = orjson.dumps({"handles": ["88.TEST/p1", "88.TEST/p2", "88.TEST/nope", "bad"]})
            async with http.post(url + "/api/resolve", data=body) as response:
                assert response.status == 200
            async with http.put(
                url + "/api/handles/88.TEST/p3", data=b"{}", headers={"Authorization": "Basic bm9ib2R5Om5vcGU="}
            ) as response:
                assert response.status >= 400  # a refused write: counted by the registry


async def test_every_dashboard_and_alert_expression_returns_data(
    database: str, server_dsn: str, template_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await home(database, "88.TEST")
    await put_record(database, "88.TEST/p1", RECORD)
    await put_record(database, "88.TEST/p2", RECORD)
    async with fresh_database(server_dsn, template_database) as other:
        await home(other, "77.D")
        await put_record(other, "77.D/p1", RECORD)
        with serve_node(other) as authority:
            site = {"format": "site", "value": own_site(authority.url)}
            await put_record(database, "0.NA/77.D", [{"index": 1, "type": "HS_SITE", "data": site}])
            await _check_expressions(database, capsys)


async def _check_expressions(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    with serve_node(database, "--workers", "2") as node, prometheus(node.url.removeprefix("http://")) as prom:
        async with aiohttp.ClientSession() as http:

            async def scraped(times: int) -> bool:
                result = await _query(http, prom, 'count_over_time(up{job="idnode"}[5m])')
                return bool(result) and float(result[0]["value"][1]) >= times

            await _wait_for(lambda: scraped(2), "two scrapes of the node")
            await _traffic(node.url)
            before = float((await _query(http, prom, 'count_over_time(up{job="idnode"}[5m])'))[0]["value"][1])
            await _wait_for(lambda: scraped(before + 3), "three scrapes after the traffic")

            async def rules_evaluated() -> bool:
                async with http.get(prom + "/api/v1/rules") as response:
                    groups = (await response.json())["data"]["groups"]
                rules = [rule for group in groups for rule in group["rules"]]
                return len(rules) == len(alert_rules()) and all(
                    rule.get("lastEvaluation", "0001")[:4] != "0001" for rule in rules
                )

            await _wait_for(rules_evaluated, "every alert rule to be evaluated once")
            async with http.get(prom + "/api/v1/rules") as response:
                loaded = [r for g in (await response.json())["data"]["groups"] for r in g["rules"]]
            [up] = await _query(http, prom, 'up{job="idnode"}')

            checks = [(where, expr, expr) for where, expr in dashboard_expressions() + dashboard_variable_expressions()]
            checks += [(f"alert {rule['alert']}", rule["expr"], with_bool(rule["expr"])) for rule in alert_rules()]
            report, failures, waiting = [], [], []
            for where, original, evaluated in checks:
                series = await _query(http, prom, evaluated)
                line = f"{len(series):>3} series  {where}: {' '.join(evaluated.split())}"
                if where.startswith("alert "):
                    firing = await _query(http, prom, original)
                    line += f"  [condition true for {len(firing)}]"
                not_a_number = [s for s in series if s["value"][1] == "NaN" and not where.startswith("alert ")]
                if not_a_number:  # a panel that shows NaN: a histogram nothing observes, a ratio of nothing
                    failures.append(f"NaN in {len(not_a_number)} " + line)
                elif series:
                    report.append("ok  " + line)
                elif pending(original):
                    waiting.append("pending registry metrics  " + line)
                else:
                    failures.append("EMPTY " + line)

    with capsys.disabled():
        print(f"\nPrometheus evaluated {len(checks)} expressions against a 2-worker node:")
        for line in report + waiting + failures:
            print("  " + line)
        print(f"  pending registry metrics allowed to be empty: {sorted(PENDING_REGISTRY_METRICS)}")
    assert up["value"][1] == "1", "Prometheus could not scrape the node"
    assert all(rule["health"] == "ok" for rule in loaded), [(r["name"], r.get("lastError")) for r in loaded]
    assert not failures, "expressions without data, or NaN:\n" + "\n".join(failures)
