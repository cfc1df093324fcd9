"""deploy/: every file parses, and what it says agrees with the code.

Checked against the code, not against copies of it: ports against ``Settings().port``, probe and scrape paths
by requesting them from a real node, metric names against a real scrape of that node, and ``IDNODE_*`` names
and values by loading them through ``resolver.config.load_settings``. The helpers that read the dashboard and
the alert rules are shared with tests/test_prometheus.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import asyncpg
import pytest
import yaml

from resolver.config import Settings, load_settings
from resolver.errors import ConfigError
from resolver.store import apply_migrations
from tests.support import (
    REPO,
    Node,
    as_role,
    basic,
    free_port,
    home,
    onboard_enterprise,
    put_record,
    stop_process,
    with_database,
)

DEPLOY = REPO / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "idnode.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
UNIT = DEPLOY / "systemd" / "idnode.service"
ENV_EXAMPLE = DEPLOY / "systemd" / "idnode.env.example"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
KUBERNETES = DEPLOY / "kubernetes"

PENDING_REGISTRY_METRICS: frozenset[str] = frozenset()
"""Metrics the dashboard or alerts use before the registry exposes them. Empty this as they land: a name listed
here that a node does expose fails test_dashboard_and_alert_metrics_exist_in_a_real_scrape."""

PENDING_OPTIONS: frozenset[str] = frozenset()
"""Settings the deploy files use before resolver/config.py has them (resolver/logs.py reads them). Same rule:
an option listed here that config.py knows fails test_every_idnode_variable_is_a_real_setting_with_a_valid_value."""

PROMETHEUS_OWN = frozenset({"up"})
"""Series Prometheus makes itself for every target."""

GRAFANA_SUBSTITUTIONS = {"$__rate_interval": "1m", "$__interval": "15s", "$job": ".+", "$instance": ".+"}
"""What Grafana puts in place of the dashboard's variables, as the "All" choice does."""

_METRIC = re.compile(r"\b((?:idnode|process)_[a-z0-9_]+)\b")
_VARIABLE = re.compile(r"\bIDNODE_[A-Z0-9_]+\b")


# --- readers shared with tests/test_prometheus.py ---------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_expressions() -> list[tuple[str, str]]:
    """``(panel title, PromQL)`` for every target of every panel, Grafana's variables already substituted."""
    out = []
    for panel in _panels(dashboard()["panels"]):
        for target in panel.get("targets", []):
            out.append((f"panel {panel['title']!r} {target['refId']}", grafana_to_promql(target["expr"])))
    return out


def dashboard_variable_expressions() -> list[tuple[str, str]]:
    """The series each ``label_values(series, label)`` variable reads, as PromQL."""
    out = []
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.*),\s*\w+\)", variable["definition"])
            assert match, variable["definition"]
            out.append((f"variable ${variable['name']}", grafana_to_promql(match.group(1))))
    return out


def grafana_to_promql(expr: str) -> str:
    for variable, value in GRAFANA_SUBSTITUTIONS.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def referenced_metrics(expr: str) -> set[str]:
    """The node's metric names an expression reads (``up`` is Prometheus' own and is not included)."""
    return set(_METRIC.findall(expr))


def pending(expr: str) -> bool:
    return bool(referenced_metrics(expr) & PENDING_REGISTRY_METRICS)


# --- parsing ------------------------------------------------------------------------------------------------


def systemd_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file, each a list of ``(key, value)`` (keys may repeat, as systemd allows)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None and "=" in line, f"{path.name}:{number}: {raw!r}"
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` in order, continuation lines joined."""
    out, pending_line = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending_line and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending_line += line[:-1] + " "
            continue
        line = pending_line + line
        pending_line = ""
        instruction, _, arguments = line.partition(" ")
        out.append((instruction.upper(), arguments.strip()))
    return out


def env_file(path: Path) -> dict[str, str]:
    out = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def kubernetes() -> dict[str, dict[str, Any]]:
    """Every Kubernetes object under deploy/kubernetes, by kind."""
    objects = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            objects[document["kind"]] = document
    return objects


def shape_environments() -> dict[str, dict[str, str]]:
    """The ``IDNODE_*`` settings each deployment shape gives a node (compose, Kubernetes, systemd, the image)."""
    image = {}
    for kind, args in dockerfile_instructions(DOCKERFILE):
        if kind == "ENV":
            image.update(pair.partition("=")[::2] for pair in args.split())
    return {
        "compose": {k: str(v) for k, v in _compose()["services"]["idnode-1"]["environment"].items()},
        "kubernetes": dict(kubernetes()["ConfigMap"]["data"]),
        "systemd": env_file(ENV_EXAMPLE),
        "image": {k: v for k, v in image.items() if k.startswith("IDNODE_")},
    }


RECORD = [{"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.org/h"}}]

_ADMIN_PORT = 9100
"""The admin listener's port in every shape (test_every_shape_takes_registrations_and_keeps_metrics_private)."""


def _compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


def _idnode_services() -> dict[str, dict[str, Any]]:
    return {name: service for name, service in _compose()["services"].items() if name.startswith("idnode")}


# --- tests --------------------------------------------------------------------------------------------------


def test_every_deploy_file_parses() -> None:
    checked = []
    for path in sorted(p for p in DEPLOY.rglob("*") if p.is_file()):
        if path.suffix in (".yml", ".yaml"):
            assert list(yaml.safe_load_all(path.read_text())), path
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".service":
            assert systemd_unit(path)
        elif path.name == "Dockerfile":
            assert dockerfile_instructions(path)
        elif path.suffix == ".env":
            assert env_file(path), path
        elif path.name.endswith((".env.example", ".dockerignore", ".md")):
            assert path.read_text().strip()
        elif path.suffix == ".sh":
            checked_script = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True, check=False)
            assert checked_script.returncode == 0, checked_script.stderr
        else:
            pytest.fail(f"{path.relative_to(REPO)}: no check knows this kind of file; add one")
        checked.append(path.name)
    assert {"alerts.yml", "prometheus.yml", "idnode.json", "idnode.service", "Dockerfile"} <= set(checked)
    assert {"deployment.yaml", "service.yaml", "pdb.yaml", "hpa.yaml", "servicemonitor.yaml"} <= set(checked)


def test_ports_agree_with_the_default_port() -> None:
    port = Settings().port
    admin_port = _ADMIN_PORT
    instructions = dockerfile_instructions(DOCKERFILE)
    assert ("EXPOSE", str(port)) in instructions
    assert f"IDNODE_PORT={port}" in " ".join(args for kind, args in instructions if kind == "ENV")
    assert env_file(ENV_EXAMPLE)["IDNODE_PORT"] == str(port)
    for name, service in _idnode_services().items():
        assert service["environment"]["IDNODE_PORT"] == str(port), name
        assert all(mapping.endswith(f":{port}") for mapping in service["ports"]), name
        assert f":{port}/" in " ".join(service["healthcheck"]["test"]), name
    objects = kubernetes()
    [container] = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert [p["containerPort"] for p in container["ports"]] == [port, admin_port]
    assert objects["ConfigMap"]["data"]["IDNODE_PORT"] == str(port)
    named = {p["name"] for p in container["ports"]}
    assert {p["targetPort"] for p in objects["Service"]["spec"]["ports"]} <= named
    service_ports = {p["name"] for p in objects["Service"]["spec"]["ports"]}
    assert {e["port"] for e in objects["ServiceMonitor"]["spec"]["endpoints"]} <= service_ports
    for job in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]:
        if job["job_name"] == "idnode":
            targets = [t for config in job["static_configs"] for t in config["targets"]]
            assert targets and all(t.endswith(f":{admin_port}") for t in targets)
            assert {t.split(":")[0] for t in targets} <= set(_idnode_services())


async def test_probe_and_scrape_paths_answer_on_a_real_node(node: Node) -> None:
    objects = kubernetes()
    [container] = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    probes = {kind: container[kind]["httpGet"]["path"] for kind in ("readinessProbe", "livenessProbe", "startupProbe")}
    assert probes["readinessProbe"] == "/readyz" and probes["livenessProbe"] == "/healthz"
    paths = set(probes.values())
    for service in _idnode_services().values():
        paths |= set(re.findall(r"127\.0\.0\.1:\d+(/\w+)", " ".join(service["healthcheck"]["test"])))
    healthcheck = " ".join(args for kind, args in dockerfile_instructions(DOCKERFILE) if kind == "HEALTHCHECK")
    paths |= set(re.findall(r"127\.0\.0\.1:\d+(/\w+)", healthcheck))
    paths |= {e["path"] for e in objects["ServiceMonitor"]["spec"]["endpoints"]}
    paths |= {job.get("metrics_path", "/metrics") for job in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]}
    assert paths == {"/readyz", "/healthz", "/metrics"}
    for path in sorted(paths):
        status, _, response = await node.get(path)
        assert status == 200, path
        if path == "/metrics":
            assert response.headers["Content-Type"].startswith("text/plain")


async def _scrape_names(node: Node) -> set[str]:
    async with node.http.get(node.url + "/metrics") as response:
        text = await response.text()
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split(" ")[2])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


async def test_dashboard_and_alert_metrics_exist_in_a_real_scrape(node: Node) -> None:
    exposed = await _scrape_names(node)
    expressions = dashboard_expressions() + dashboard_variable_expressions()
    expressions += [(f"alert {rule['alert']}", rule["expr"]) for rule in alert_rules()]
    used: set[str] = set()
    for where, expr in expressions:
        names = referenced_metrics(expr)
        assert names or "up{" in expr, f"{where} reads no metric: {expr}"
        missing = names - exposed - PENDING_REGISTRY_METRICS
        assert not missing, f"{where} uses {sorted(missing)}, which a node does not expose"
        used |= names
    landed = PENDING_REGISTRY_METRICS & exposed
    assert not landed, f"{sorted(landed)} are exposed now: remove them from PENDING_REGISTRY_METRICS"
    print(f"\nmetrics used by deploy/: {len(used)}; pending registry metrics: {sorted(PENDING_REGISTRY_METRICS)}")
    for family in ("idnode_lookups_total", "idnode_lookup_duration_seconds_bucket", "idnode_cache_entries"):
        assert family in used


def _variables_in_deploy() -> dict[str, set[str]]:
    """Every ``IDNODE_*`` name the deploy files set, with the values they give it ('' when not given here)."""
    found: dict[str, set[str]] = {}

    def add(name: str, value: object) -> None:
        found.setdefault(name, set()).add("" if value is None else str(value))

    for name, value in env_file(ENV_EXAMPLE).items():
        add(name, value)
    for line in ENV_EXAMPLE.read_text().splitlines():  # commented-out examples must be real settings too
        if line.startswith("#IDNODE_"):
            name, _, value = line[1:].partition("=")
            add(name, value)
    for name, value in env_file(DEPLOY / "patroni" / "idnode.env").items():
        add(name, value)
    replicas = load_yaml(DEPLOY / "docker-compose.replicas.yml")["services"]
    for service in [*_idnode_services().values(), *(replicas[name] for name in _idnode_services())]:
        for name, value in service["environment"].items():
            add(name, re.sub(r"\$\{[A-Z_]+:-(\w+)\}", r"\1", value))
    for kind, args in dockerfile_instructions(DOCKERFILE):
        if kind == "ENV":
            for pair in args.split():
                name, _, value = pair.partition("=")
                add(name, value)
    objects = kubernetes()
    for name, value in objects["ConfigMap"]["data"].items():
        add(name, value)
    [container] = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    for variable in container.get("env", []):
        add(variable["name"], variable.get("value"))
    secret = load_yaml(KUBERNETES / "secret.example.yaml")
    for name, value in secret["stringData"].items():
        add(name, value)
    for path in (DEPLOY / "README.md", UNIT, COMPOSE, ALERTS, DASHBOARD):
        for name in _VARIABLE.findall(path.read_text()):
            add(name, None)
    return {name: values for name, values in found.items() if name.startswith("IDNODE_")}


def test_every_idnode_variable_is_a_real_setting_with_a_valid_value(tmp_path: Path) -> None:
    variables = _variables_in_deploy()
    assert {"IDNODE_DATABASE_URL", "IDNODE_PORT", "IDNODE_WORKERS", "IDNODE_LOG_FORMAT"} <= set(variables)
    known_pending = set()
    for variable, values in sorted(variables.items()):
        option = variable.removeprefix("IDNODE_").lower()
        for value in values:
            config = tmp_path / "check.toml"
            config.write_text(f"{option} = {json.dumps(value or _placeholder(option))}\n")
            try:
                load_settings(config_file=config)
            except ConfigError as exc:
                if "unknown option" in str(exc) and option in PENDING_OPTIONS:
                    known_pending.add(option)
                    continue
                if "unknown option" in str(exc) or value:
                    pytest.fail(f"{variable}={value!r} in deploy/ is not accepted: {exc}")
                # only named (in prose), not given a value: a known option is all that is asked
            assert option not in PENDING_OPTIONS, f"config.py knows {option} now: remove it from PENDING_OPTIONS"
    print(f"\nIDNODE_* variables in deploy/: {len(variables)}; pending in config.py: {sorted(known_pending)}")


def _placeholder(option: str) -> str:
    """A value to try an option that deploy/ only names; a refusal of the value still proves the name."""
    return {"database_url": "postgresql://u@h/db"}.get(option, "1")


def test_dashboard_is_ready_for_provisioning() -> None:
    board = dashboard()
    assert board["uid"] and board.get("id") is None
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert {"job", "instance"} <= set(variables)
    ids = []
    for panel in _panels(board["panels"]):
        ids.append(panel["id"])
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert 'job=~"$job"' in target["expr"] and 'instance=~"$instance"' in target["expr"], panel["title"]
    assert len(ids) == len(set(ids))
    provider = load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "idnode.yml")["providers"][0]
    mounts = dict(volume.rsplit(":", 2)[:2] for volume in _compose()["services"]["grafana"]["volumes"][:2])
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    sources = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    assert sources[0]["type"] == "prometheus" and sources[0]["isDefault"]
    assert sources[0]["url"].startswith("http://prometheus:")


def test_every_alert_has_a_severity_a_duration_and_a_runbook() -> None:
    rules = alert_rules()
    names = {rule["alert"] for rule in rules}
    assert {
        "IdnodeDown",
        "IdnodeHighErrorRatio",
        "IdnodeLookupLatencyAboveSLO",
        "IdnodeCacheHitRatioCollapse",
        "IdnodeListenDisconnected",
        "IdnodeDatabaseUnreachable",
        "IdnodeAuthFailureSpike",
    } <= names
    assert len(names) == len(rules)
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        for key in ("summary", "description", "runbook"):
            assert len(rule["annotations"][key].strip()) > 20, (rule["alert"], key)
        assert 'job="idnode"' in rule["expr"], rule["alert"]
    assert "alerts.yml" in load_yaml(PROMETHEUS_CONFIG)["rule_files"]
    assert "idnode" in {job["job_name"] for job in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]}
    [endpoint] = kubernetes()["ServiceMonitor"]["spec"]["endpoints"]
    assert {"targetLabel": "job", "replacement": "idnode"} in endpoint["relabelings"]


def test_the_systemd_unit_is_hardened_and_restarts_on_failure() -> None:
    unit = systemd_unit(UNIT)
    service = dict(unit["Service"])
    assert service["User"] == service["Group"] == "idnode"
    assert service["ExecStart"].endswith("/idnode serve")
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "RestrictSUIDSGID": "yes",
        "CapabilityBoundingSet": "",
        "Restart": "on-failure",
        "KillMode": "mixed",
    }
    assert {key: service.get(key) for key in expected} == expected
    data_dir = env_file(ENV_EXAMPLE)["IDNODE_DATA_DIR"]
    assert data_dir in service["ReadWritePaths"].split()
    assert service["WorkingDirectory"] == data_dir
    assert service["StateDirectory"] == Path(data_dir).name and data_dir.startswith("/var/lib/")
    assert service["EnvironmentFile"].endswith("/idnode.env")
    assert dict(unit["Install"])["WantedBy"] == "multi-user.target"


def test_the_container_serves_on_all_interfaces_as_a_user_under_an_init() -> None:
    instructions = dockerfile_instructions(DOCKERFILE)
    stages = [i for i, (kind, _) in enumerate(instructions) if kind == "FROM"]
    final = instructions[stages[-1] :]
    assert final[0] == ("FROM", "python:3.11-slim")
    final_kinds = dict(final)
    assert json.loads(final_kinds["ENTRYPOINT"])[0].endswith("/tini")
    command = json.loads(final_kinds["CMD"])
    assert command == ["idnode", "serve", "--host", "0.0.0.0"]
    assert final_kinds["USER"] not in ("root", "0")
    assert "pip install" in " ".join(args for kind, args in final if kind == "RUN")
    [container] = kubernetes()["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["args"] == command
    for name, service in _idnode_services().items():
        assert service["init"] is True, name
        assert (COMPOSE.parent / service["build"]["context"] / service["build"]["dockerfile"]).resolve() == DOCKERFILE
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "@postgres:5432/" in service["environment"]["IDNODE_DATABASE_URL"]


def test_compose_runs_the_whole_stack_from_files_that_exist() -> None:
    services = _compose()["services"]
    assert {"postgres", "idnode-1", "idnode-2", "prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name} mounts missing {source}"
    prometheus = " ".join(services["prometheus"]["volumes"])
    assert "./prometheus/alerts.yml:/etc/prometheus/alerts.yml" in prometheus


def test_kubernetes_objects_select_each_other() -> None:
    objects = kubernetes()
    deployment = objects["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert objects["Service"]["spec"]["selector"].items() <= pod_labels.items()
    assert objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert (
        objects["ServiceMonitor"]["spec"]["selector"]["matchLabels"].items()
        <= objects["Service"]["metadata"]["labels"].items()
    )
    target = objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["envFrom"] == [{"configMapRef": {"name": objects["ConfigMap"]["metadata"]["name"]}}]
    [variable] = container["env"]
    secret = objects["Secret"]
    assert variable["valueFrom"]["secretKeyRef"] == {"name": secret["metadata"]["name"], "key": "IDNODE_DATABASE_URL"}
    assert "IDNODE_DATABASE_URL" in secret["stringData"]
    assert "IDNODE_DATABASE_URL" not in objects["ConfigMap"]["data"]
    resources = load_yaml(KUBERNETES / "kustomization.yaml")["resources"]
    assert all((KUBERNETES / name).exists() for name in resources)
    assert "secret.example.yaml" not in resources
    assert set(resources) == {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}


def test_every_shape_takes_registrations_and_keeps_metrics_private() -> None:
    for shape, environ in shape_environments().items():
        settings = load_settings(environ={k: v for k, v in environ.items() if k != "IDNODE_DATABASE_URL"})
        assert settings.tls or settings.registry.trusted_proxies, f"{shape}: plain HTTP only, every write is 403"
        assert settings.admin_port == _ADMIN_PORT, f"{shape}: /metrics is on the public port"
    objects = kubernetes()
    [container] = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    targets = {p["name"]: p["targetPort"] for p in objects["Service"]["spec"]["ports"]}
    [endpoint] = objects["ServiceMonitor"]["spec"]["endpoints"]
    assert named[targets[endpoint["port"]]] == _ADMIN_PORT
    probes = [container[kind]["httpGet"] for kind in ("readinessProbe", "livenessProbe", "startupProbe")]
    assert all(probe["scheme"] == "HTTPS" and named[probe["port"]] == Settings().port for probe in probes)
    for name, service in _idnode_services().items():
        assert "https://127.0.0.1:" in " ".join(service["healthcheck"]["test"]), name
        assert not any(str(_ADMIN_PORT) in mapping for mapping in service["ports"]), name
    healthcheck = " ".join(args for kind, args in dockerfile_instructions(DOCKERFILE) if kind == "HEALTHCHECK")
    assert "https://127.0.0.1:" in healthcheck


def test_compose_migrates_as_the_owner_and_serves_as_a_runtime_role() -> None:
    services = _compose()["services"]
    owner = services["postgres"]["environment"]["POSTGRES_USER"]
    assert f"postgresql://{owner}:" in services["migrate"]["environment"]["IDNODE_DATABASE_URL"]
    assert services["migrate"]["command"] == ["idnode", "migrate"]
    runtime = services["postgres"]["environment"]["RUNTIME_ROLE"]
    assert runtime != owner
    assert "./postgres/roles.sh:/docker-entrypoint-initdb.d/roles.sh:ro" in services["postgres"]["volumes"]
    for name, service in _idnode_services().items():
        assert service["environment"]["IDNODE_DATABASE_URL"].startswith(f"postgresql://{runtime}:"), name
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name


async def test_the_roles_script_leaves_the_runtime_role_unable_to_rewrite_history(server_dsn: str) -> None:
    tag = uuid.uuid4().hex[:10]
    name, runtime = f"idnode_deploy_{tag}", f"idnode_rt_{tag}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        owner_dsn = with_database(server_dsn, name)
        owner = urlsplit(owner_dsn).username or "postgres"
        environ = {**os.environ, "POSTGRES_USER": owner, "POSTGRES_DB": name, "RUNTIME_ROLE": runtime}
        environ.update(RUNTIME_PASSWORD="x", **_libpq(owner_dsn))
        script = subprocess.run(
            ["sh", str(DEPLOY / "postgres" / "roles.sh")], env=environ, capture_output=True, text=True
        )
        assert script.returncode == 0, script.stderr
        await runtime_role_cannot_rewrite_history(owner_dsn, runtime)
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.execute(f"DROP ROLE IF EXISTS {runtime}")
        await admin.close()


async def runtime_role_cannot_rewrite_history(owner_dsn: str, runtime: str) -> None:
    """Migrate as the owner, then show that ``runtime`` can register but cannot delete history."""
    pool = await asyncpg.create_pool(owner_dsn, min_size=1, max_size=1)
    await apply_migrations(pool)
    await pool.close()
    runtime_dsn = as_role(owner_dsn, runtime)
    await home(runtime_dsn, "88.TEST")
    await put_record(runtime_dsn, "88.TEST/h", RECORD)
    con = await asyncpg.connect(runtime_dsn)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await con.execute("DELETE FROM handle_history")
    finally:
        await con.close()


def _libpq(dsn: str) -> dict[str, str]:
    """``PGHOST``/``PGPORT`` for psql from an asyncpg DSN (TCP or a unix-socket directory)."""
    parts = urlsplit(dsn)
    host = parts.hostname or dict(parse_qsl(parts.query)).get("host", "")
    return {"PGHOST": host, "PGPORT": str(parts.port or dict(parse_qsl(parts.query)).get("port", 5432))}


@pytest.mark.parametrize("shape", ["compose", "kubernetes", "systemd", "image"])
async def test_a_node_with_a_shapes_settings_takes_a_registration_and_serves_metrics_privately(
    database: str, tmp_path: Path, shape: str
) -> None:
    credentials = await onboard_enterprise(database, "88.DEPLOY")
    port, admin_port = free_port(), free_port()
    environ = dict(shape_environments()[shape])
    environ.update(
        IDNODE_DATABASE_URL=database,
        IDNODE_HOST="127.0.0.1",
        IDNODE_PORT=str(port),
        IDNODE_ADMIN_HOST="127.0.0.1",
        IDNODE_ADMIN_PORT=str(admin_port),
        IDNODE_DATA_DIR=str(tmp_path),
        IDNODE_WORKERS="1",
        IDNODE_LOG_LEVEL="WARNING",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDNODE_")} | environ | {"PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "registry.cli", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"https://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as http:
            await _until_ready(http, base, process)
            record = {"values": [{"index": 1, "type": "URL", "data": {"format": "string", "value": "https://e.x/1"}}]}
            headers = basic(credentials.identity, credentials.secret)
            async with http.put(f"{base}/api/handles/88.DEPLOY/P-1", json=record, headers=headers) as response:
                assert response.status == 201, await response.text()
            async with http.get(f"http://127.0.0.1:{admin_port}/metrics") as response:
                assert response.status == 200 and "idnode_lookups_total" in await response.text()
            async with http.get(f"{base}/metrics") as response:
                assert response.status != 200
    finally:
        stop_process(process)


async def _until_ready(http: aiohttp.ClientSession, base: str, process: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(base + "/readyz") as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.1)
    pytest.fail(f"no node ready at {base}")
