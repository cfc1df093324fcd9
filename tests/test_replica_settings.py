"""``database_replica_urls`` and ``database_replica_max_lag`` in their three forms, and what a bad one says."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from resolver.config import add_option_flags, given_flags, load_settings
from resolver.errors import ConfigError

ONE = "postgresql://idnode:pw@replica-1:5432/idnode"
TWO = "postgres://idnode@replica-2/idnode?sslmode=require"
MULTI_HOST = "postgresql://idnode:pw@10.0.0.11:5432,10.0.0.12:5432/idnode?target_session_attrs=prefer-standby"


def test_no_replicas_by_default() -> None:
    database = load_settings().database
    assert (database.replica_urls, database.replica_max_lag) == ((), 10.0)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (ONE, (ONE,)),
        (f"{ONE},{TWO}", (ONE, TWO)),
        (f"{ONE}, {TWO}", (ONE, TWO)),
        (MULTI_HOST, (MULTI_HOST,)),  # a multi-host DSN's commas separate its hosts, not DSNs
        (f"{MULTI_HOST},{ONE}", (MULTI_HOST, ONE)),
    ],
)
def test_the_environment_gives_comma_separated_dsns(raw: str, expected: tuple[str, ...]) -> None:
    environ = {"IDNODE_DATABASE_REPLICA_URLS": raw, "IDNODE_DATABASE_REPLICA_MAX_LAG": "30"}
    database = load_settings(environ=environ).database
    assert (database.replica_urls, database.replica_max_lag) == (expected, 30.0)


def test_a_toml_list_and_a_flag(tmp_path: Path) -> None:
    config = tmp_path / "idnode.toml"
    config.write_text(f'[database]\nreplica_urls = ["{ONE}", "{MULTI_HOST}"]\nreplica_max_lag = 5\n')
    database = load_settings(config_file=config).database
    assert (database.replica_urls, database.replica_max_lag) == ((ONE, MULTI_HOST), 5.0)

    parser = argparse.ArgumentParser()
    add_option_flags(parser)
    args = parser.parse_args(["--database-replica-urls", f"{ONE},{TWO}", "--database-replica-max-lag", "12"])
    database = load_settings(given_flags(args), {"IDNODE_DATABASE_REPLICA_URLS": MULTI_HOST}).database
    assert (database.replica_urls, database.replica_max_lag) == ((ONE, TWO), 12.0)  # the flag wins


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("IDNODE_DATABASE_REPLICA_URLS", "replica-1:5432", "postgresql:// DSNs"),
        ("IDNODE_DATABASE_REPLICA_URLS", f"{ONE},mysql://x/y", "postgresql:// DSNs"),
        ("IDNODE_DATABASE_REPLICA_MAX_LAG", "2", "above 2"),
        ("IDNODE_DATABASE_REPLICA_MAX_LAG", "soon", "above 2"),
    ],
)
def test_a_bad_value_is_refused_naming_the_option(name: str, raw: str, expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={name: raw})
    assert name in str(raised.value) and expected in str(raised.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://idnode@h1:5432,h2:5432/idnode",
        "postgresql://idnode@h1:5432,h2:5432/idnode?target_session_attrs=any",
        "postgresql://idnode@/idnode?host=/run/a,/run/b",
    ],
)
def test_a_multi_host_database_url_must_ask_for_the_primary(url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={"IDNODE_DATABASE_URL": url})
    assert "target_session_attrs=read-write" in str(raised.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://idnode@h1:5432,h2:5432/idnode?target_session_attrs=read-write",
        "postgresql://idnode@h1,h2/idnode?target_session_attrs=primary",
        "postgresql://idnode@db:5432/idnode",
        "postgresql://postgres@/postgres?host=/tmp/pg",
    ],
)
def test_single_host_and_primary_seeking_urls_are_accepted(url: str) -> None:
    assert load_settings(environ={"IDNODE_DATABASE_URL": url}).database.url == url
