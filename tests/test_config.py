"""resolver/config.py: defaults, the three sources and their precedence, and the errors a bad setting gives."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from resolver.cache import CacheSettings
from resolver.changes import ChangesSettings
from resolver.config import (
    _OPTIONS,
    Settings,
    add_option_flags,
    given_flags,
    load_settings,
)
from resolver.errors import ConfigError
from resolver.store import DatabaseSettings


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "idnode.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _refused(**sources: Any) -> str:
    with pytest.raises(ConfigError) as raised:
        load_settings(**sources)
    return str(raised.value)


# --- defaults -------------------------------------------------------------------------------------------------


def test_defaults_give_a_working_local_node() -> None:
    settings = load_settings()
    assert settings == Settings()
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 8000, 1)
    assert settings.data_dir == Path("data")
    assert (settings.max_handle_bytes, settings.max_body_bytes, settings.max_batch) == (255, 4 << 20, 2000)
    assert (settings.log_level, settings.demo) == ("INFO", False)
    assert settings.database == DatabaseSettings(url=None, pool_min=2, pool_max=16, command_timeout=5.0)
    assert settings.cache == CacheSettings(
        max_entries=1_000_000, max_bytes=1 << 30, negative_max_entries=100_000, safety_ttl=3600.0, negative_ttl=300.0
    )
    assert settings.changes == ChangesSettings(backoff_min=0.1, backoff_max=10.0)


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]


# --- sources --------------------------------------------------------------------------------------------------


def test_environment_variables_set_every_kind_of_option() -> None:
    settings = load_settings(
        environ={
            "IDNODE_PORT": "9000",
            "IDNODE_DATA_DIR": "/var/lib/idnode",
            "IDNODE_DEMO": "yes",
            "IDNODE_LOG_LEVEL": "debug",
            "IDNODE_DATABASE_URL": "postgresql://u@db/idnode",
            "IDNODE_DATABASE_TIMEOUT": "2.5",
            "IDNODE_CACHE_MAX_ENTRIES": "5",
            "IDNODE_CACHE_NEGATIVE_TTL": "30",
            "IDNODE_CHANGES_BACKOFF_MAX": "3",
        }
    )
    assert (settings.port, settings.data_dir, settings.demo, settings.log_level) == (
        9000,
        Path("/var/lib/idnode"),
        True,
        "DEBUG",
    )
    assert (settings.database.url, settings.database.command_timeout) == ("postgresql://u@db/idnode", 2.5)
    assert (settings.cache.max_entries, settings.cache.negative_ttl) == (5, 30.0)
    assert settings.changes.backoff_max == 3.0


def test_unrelated_environment_variables_are_ignored() -> None:
    assert load_settings(environ={"PORT": "1", "IDNODE_NOT_AN_OPTION": "x"}) == Settings()


def test_toml_sets_options_by_flat_key_and_by_section(tmp_path: Path) -> None:
    path = _toml(
        tmp_path,
        'port = 8100\ncache_negative_ttl = 60\n\n[cache]\nmax_entries = 42\n\n[database]\nurl = "postgresql://x/y"\n'
        "pool_max = 4\n\n[changes]\nbackoff_max = 2\n",
    )
    settings = load_settings(config_file=path)
    assert settings.port == 8100
    assert (settings.cache.max_entries, settings.cache.negative_ttl) == (42, 60.0)
    assert (settings.database.url, settings.database.pool_max) == ("postgresql://x/y", 4)
    assert settings.changes.backoff_max == 2.0


def test_idnode_config_names_the_toml_file(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[cache]\nmax_entries = 7\n")
    assert load_settings(environ={"IDNODE_CONFIG": str(path)}).cache.max_entries == 7


def test_config_file_argument_beats_idnode_config(tmp_path: Path) -> None:
    chosen = _toml(tmp_path, "port = 8101\n")
    other = tmp_path / "other.toml"
    other.write_text("port = 8102\n", encoding="utf-8")
    assert load_settings(environ={"IDNODE_CONFIG": str(other)}, config_file=chosen).port == 8101


def test_flags_beat_environment_which_beats_toml(tmp_path: Path) -> None:
    path = _toml(tmp_path, "port = 8100\nhost = '0.0.0.0'\n[cache]\nmax_entries = 1\nmax_bytes = 1000\n")
    environ = {"IDNODE_PORT": "8200", "IDNODE_CACHE_MAX_ENTRIES": "2"}
    settings = load_settings({"port": 8300}, environ, path)
    assert settings.port == 8300  # flag over environment over TOML
    assert settings.cache.max_entries == 2  # environment over TOML
    assert (settings.host, settings.cache.max_bytes) == ("0.0.0.0", 1000)  # TOML over defaults


def test_flags_given_as_none_count_as_not_given() -> None:
    settings = load_settings({"port": None, "host": None}, {"IDNODE_PORT": "8200"})
    assert (settings.port, settings.host) == (8200, "127.0.0.1")


# --- errors ---------------------------------------------------------------------------------------------------


def test_unknown_toml_key_is_refused_naming_it(tmp_path: Path) -> None:
    message = _refused(config_file=_toml(tmp_path, "port = 8000\nprot = 8001\n"))
    assert "prot" in message
    assert "idnode.toml" in message


def test_unknown_key_in_a_toml_section_is_refused_naming_it(tmp_path: Path) -> None:
    message = _refused(config_file=_toml(tmp_path, "[cache]\nmax_entires = 3\n"))
    assert "cache_max_entires" in message


def test_unknown_flag_is_refused_naming_it() -> None:
    assert "bogus" in _refused(flags={"bogus": 1})


def test_missing_config_file_is_refused_naming_it(tmp_path: Path) -> None:
    message = _refused(config_file=tmp_path / "absent.toml")
    assert "absent.toml" in message


def test_invalid_toml_is_refused_naming_the_file(tmp_path: Path) -> None:
    message = _refused(config_file=_toml(tmp_path, "port = = 1\n"))
    assert "idnode.toml" in message and "TOML" in message


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("IDNODE_PORT", "abc", "an integer from 0 to 65535"),
        ("IDNODE_PORT", "65536", "an integer from 0 to 65535"),
        ("IDNODE_WORKERS", "0", "an integer from 1 to 64"),
        ("IDNODE_MAX_HANDLE_BYTES", "4096", "an integer from 16 to 2048"),
        ("IDNODE_CACHE_MAX_ENTRIES", "-1", "an integer"),
        ("IDNODE_CACHE_SAFETY_TTL", "0", "a positive number of seconds"),
        ("IDNODE_CACHE_NEGATIVE_TTL", "soon", "a positive number of seconds"),
        ("IDNODE_DEMO", "maybe", "true or false"),
        ("IDNODE_LOG_LEVEL", "LOUD", "DEBUG, INFO, WARNING, ERROR"),
        ("IDNODE_HOST", "", "a string"),
    ],
)
def test_bad_environment_value_is_refused_naming_variable_value_and_expectation(
    variable: str, value: str, expected: str
) -> None:
    message = _refused(environ={variable: value})
    assert variable in message
    assert repr(value) in message
    assert expected in message


def test_bad_flag_value_is_refused_naming_the_flag_and_value() -> None:
    message = _refused(flags={"port": 70000})
    assert "--port" in message and "70000" in message


def test_bad_toml_value_is_refused_naming_the_option_and_value(tmp_path: Path) -> None:
    message = _refused(config_file=_toml(tmp_path, "[cache]\nmax_entries = -5\n"))
    assert "cache_max_entries" in message and "-5" in message


def test_boolean_for_an_integer_option_is_refused(tmp_path: Path) -> None:
    message = _refused(config_file=_toml(tmp_path, "port = true\n"))
    assert "port" in message


def test_fractional_number_for_an_integer_option_is_refused(tmp_path: Path) -> None:
    message = _refused(config_file=_toml(tmp_path, "[cache]\nmax_entries = 1.9\n"))
    assert "cache_max_entries" in message and "1.9" in message


@pytest.mark.parametrize("value", ["nan", "NaN", "-inf"])
def test_seconds_that_are_not_a_number_are_refused(value: str) -> None:
    message = _refused(environ={"IDNODE_CACHE_SAFETY_TTL": value})
    assert "IDNODE_CACHE_SAFETY_TTL" in message and value in message


def test_pool_min_above_pool_max_is_refused_naming_both() -> None:
    message = _refused(environ={"IDNODE_DATABASE_POOL_MIN": "20"})
    assert "database_pool_min=20" in message and "database_pool_max=16" in message
    message = _refused(flags={"database_pool_min": 5, "database_pool_max": 4})
    assert "database_pool_min=5" in message


def test_pool_min_equal_to_pool_max_is_accepted() -> None:
    settings = load_settings(environ={"IDNODE_DATABASE_POOL_MIN": "4", "IDNODE_DATABASE_POOL_MAX": "4"})
    assert (settings.database.pool_min, settings.database.pool_max) == (4, 4)


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        load_settings(environ={"IDNODE_PORT": "x"})


# --- flags ----------------------------------------------------------------------------------------------------


def _flag_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="idnode", exit_on_error=False)
    add_option_flags(parser)
    return parser


def test_every_option_of_the_table_is_a_flag_with_its_documented_meaning() -> None:
    parser = _flag_parser()
    flags = {action.dest: action for action in parser._actions if action.dest != "help"}
    assert set(flags) == set(_OPTIONS)
    for name, action in flags.items():
        assert action.option_strings[0] == "--" + name.replace("_", "-")
        assert action.help and "(default: " in action.help
        assert not action.help.startswith(" (default"), f"{name} has no row in the table of resolver/config.py"


def test_flags_reach_the_settings_they_name() -> None:
    args = _flag_parser().parse_args(
        ["--cache-max-entries", "5", "--database-timeout", "2.5", "--tls", "--trusted-proxies", "10.0.0.0/8"]
    )
    settings = load_settings(given_flags(args))
    assert (settings.cache.max_entries, settings.database.command_timeout) == (5, 2.5)
    assert settings.tls is True and settings.registry.trusted_proxies == ("10.0.0.0/8",)
    assert load_settings(given_flags(_flag_parser().parse_args(["--no-tls"])), {"IDNODE_TLS": "1"}).tls is False


def test_flags_not_given_leave_the_environment_in_charge() -> None:
    assert given_flags(_flag_parser().parse_args([])) == {}
    assert load_settings(given_flags(_flag_parser().parse_args([])), {"IDNODE_PORT": "8200"}).port == 8200


def test_a_bad_value_is_explained_once() -> None:
    message = _refused(flags={"port": "99999"})
    assert message == "config: --port='99999' is invalid; expected an integer from 0 to 65535"


def test_a_path_option_given_a_number_is_refused_as_a_path(tmp_path: Path) -> None:
    message = _refused(config_file=_toml(tmp_path, "data_dir = 5\n"))
    assert message.endswith("expected a file system path")


def test_hierarchy_options_are_read_and_checked() -> None:
    settings = load_settings(
        {"upstream": "https://parent.example.cn:8443/, https://[2001:db8::1]", "advertise_url": "http://10.0.0.5:8000"}
    )
    assert settings.hierarchy.upstream == ("https://parent.example.cn:8443", "https://[2001:db8::1]:443")
    assert settings.hierarchy.advertise_url == "http://10.0.0.5:8000"
    assert "scheme://host[:port]" in _refused(flags={"advertise_url": "http://10.0.0.5:8000/idnode"})
    assert "exceeds forward_max_ttl" in _refused(flags={"forward_min_ttl": "10", "forward_max_ttl": "5"})
    assert "go together" in _refused(flags={"upstream_identity": "300:0.NA/88.118"})
    secret = {"upstream_identity": "300:0.NA/88.118", "upstream_secret": "s"}
    assert "plain HTTP" in _refused(flags={**secret, "upstream": "http://parent:8000"})
    assert load_settings({**secret, "upstream": "https://parent:8443"}).hierarchy.upstream_secret == "s"


def test_mirror_options_are_read_and_checked() -> None:
    identity = {"mirror_identity": "300:99.OPS/MIRROR", "mirror_secret": "s"}
    settings = load_settings({**identity, "mirror_of": "https://primary:8443", "mirror_ca": "/etc/idnode/primary.pem"})
    assert settings.mirror.mirror_of == "https://primary:8443"
    assert settings.mirror.mirror_ca == Path("/etc/idnode/primary.pem")
    assert (settings.mirror.sync_mirrors, settings.mirror.sync_mirror_timeout) == (0, 5.0)
    assert "plain HTTP" in _refused(flags={**identity, "mirror_of": "http://primary:8000"})
    assert "needs mirror_identity" in _refused(flags={"mirror_of": "https://primary:8443"})
    assert "without mirror_of" in _refused(flags=identity)
    assert "needs workers=1" in _refused(flags={"sync_mirrors": "1", "workers": "2"})
    assert load_settings({"sync_mirrors": "2", "sync_mirror_timeout": "0.5"}).mirror.sync_mirrors == 2
