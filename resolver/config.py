"""Typed, frozen settings, read from command-line flags, ``IDNODE_*`` environment variables and a TOML file.

Precedence: flags > environment > TOML file (``--config`` or ``IDNODE_CONFIG``) > defaults. The defaults give a
working node on a laptop. Every option has one flat name used everywhere: flag ``--cache-max-entries``,
variable ``IDNODE_CACHE_MAX_ENTRIES``, TOML key ``cache_max_entries`` (or ``max_entries`` in a ``[cache]``
table). A bad value stops the start with a :class:`ConfigError` naming the option, the value and what it
expected.

The command line's flags are generated from the option table (:func:`add_option_flags` over ``_OPTIONS``), their
help from ``OPTION_TABLE``, so a new option is a flag as soon as it is in both.
"""

from __future__ import annotations

import argparse
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from resolver.answers import Redirects
from resolver.cache import CacheSettings
from resolver.changes import ChangesSettings
from resolver.errors import ConfigError
from resolver.forward_settings import HierarchySettings
from resolver.identifiers import DEFAULT_MAX_HANDLE_BYTES, HARD_MAX_HANDLE_BYTES
from resolver.mirror_settings import MirrorSettings
from resolver.public_url import public_base
from resolver.sites import base_url
from resolver.store import DatabaseSettings

OPTION_TABLE = """
==========================  =================  =====================================================
option                      default            meaning
==========================  =================  =====================================================
host                        127.0.0.1          address to listen on
port                        8000               TCP port
admin_host                  127.0.0.1          address of the admin listener (admin_port)
admin_port                  (none)             serve /metrics on this port instead of the public one
workers                     1                  node processes sharing the port (SO_REUSEPORT)
data_dir                    ./data             embedded PostgreSQL cluster and other local state
database_url                (none)             PostgreSQL DSN; none starts the embedded server
database_replica_urls       (none)             read replicas' DSNs (streaming standbys): cache loads, listing, search
database_replica_max_lag    10                 seconds of replay lag past which a replica is not read
database_pool_min/max       2 / 16             asyncpg pool bounds per process
database_timeout            5                  seconds a database call may take (waiting for a connection included)
max_handle_bytes            255                longest identifier accepted (IDIS; Handle.Net allows 2048)
max_body_bytes              4194304            largest request body: max_batch items of about 2 KiB each
body_timeout                30                 seconds a client may take to send a request body (then 408)
max_import_bytes            1073741824         largest JSON Lines upload to POST /api/enterprises/{prefix}/imports
max_batch                   2000               identifiers per POST /api/resolve
cache_max_entries           1000000            positive cache entries
cache_max_bytes             1073741824         estimated bytes held by positive entries
cache_negative_max_entries  100000             remembered absent handles
cache_safety_ttl            3600               seconds a homed entry lives without a change notification
cache_negative_ttl          300                seconds an absent-handle entry lives
changes_backoff_max         10                 longest pause between LISTEN reconnection attempts
log_level                   INFO               logging threshold
log_format                  text               ``text`` or ``json`` (one object per line, resolver/logs.py)
access_log_sample           0                  fraction of requests logged to idnode.access (0 = off)
slow_request_ms             0                  log requests slower than this to idnode.slow (0 = off)
fast_lane                   true               answer cached look-ups before aiohttp (resolver/fastlane.py)
demo                        false              home 88.888.1 with demo products, a template and an enterprise
tls                         false              serve HTTPS (authentication only counts on a secure channel)
tls_cert / tls_key          (generated)        PEM files; without them a self-signed pair is kept in data_dir
trusted_proxies             (none)             comma-separated addresses/CIDRs whose X-Forwarded-Proto is believed
operators                   (none)             comma-separated node-operator identities, e.g. 300:88.118/OPERATOR
auth_failure_limit          10                 failed logins per identity and client address (IPv6: /64) per minute
snms_token_key              (generated)        signs SNMS bearer tokens (32+ chars); without it one is kept in data_dir
snms_token_lifetime         86400              seconds an SNMS bearer token (POST /identity/token) stays valid
redirect_schemes            (none)             URL schemes the proxy redirects to besides http, https (e.g. ftp)
upstream                    (none)             comma-separated base URLs of the node above (the top level: none)
advertise_url               (none)             this node's public base URL (scheme://host:port), its HS_SITE
public_url                  (request's)        base URL printed in QR codes: scheme://host[:port][/path]
upstream_identity           (none)             identity at the parent (from its `idnode node add`), e.g. 300:0.NA/88.118
upstream_secret             (none)             that identity's secret
upstream_ca                 (none)             PEM file of CAs trusted for the parent and other sites (HTTPS)
upstream_report_interval    60                 seconds between heartbeats and statistics pushed to the parent
forward_timeout             3                  seconds one request to another site may take
forward_min_ttl             5                  shortest TTL of forwarded answers and site information
forward_max_ttl             3600               longest TTL of forwarded answers and site information
forward_negative_ttl        60                 seconds a handle the authoritative site does not have stays absent
serve_stale                 86400              seconds an expired forwarded answer may answer while its site is away
max_referrals               8                  referrals followed to find a prefix's site before giving up
stats_interval              60                 seconds between roll-ups of the operation statistics into PostgreSQL
mirror_of                   (none)             base URL of the primary this node mirrors (a DR node; writes refused)
mirror_identity             (none)             operator identity at the primary that reads its change feed
mirror_secret               (none)             that identity's secret
mirror_ca                   (none)             PEM file of CAs trusted for the primary (HTTPS)
sync_mirrors                0                  mirrors that must hold a handle write before it is acknowledged
sync_mirror_timeout         5                  seconds a write waits for them (then 503 rc 3, not acknowledged)
==========================  =================  =====================================================
"""
"""Every option with its default and meaning, read by ``--help``; data rather than this module's docstring, which
``python -OO`` strips."""

__all__ = [
    "RegistrySettings",
    "Settings",
    "add_option_flags",
    "given_flags",
    "load_settings",
]


@dataclass(frozen=True, slots=True)
class RegistrySettings:
    """The registry's settings live here, not in ``registry/``: the registry builds on the resolver, never the
    reverse, and this module reads every option. The other stages' settings sit next to them (``CacheSettings`` in
    cache.py, ``ChangesSettings`` in changes.py, ``DatabaseSettings`` in store.py)."""

    trusted_proxies: tuple[str, ...] = ()
    operators: tuple[str, ...] = ()
    auth_failure_limit: int = 10
    auth_failure_window: float = 60.0
    snms_token_key: str | None = None
    snms_token_lifetime: float = 86400.0


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    admin_host: str = "127.0.0.1"
    admin_port: int | None = None
    workers: int = 1
    data_dir: Path = Path("data")
    max_handle_bytes: int = DEFAULT_MAX_HANDLE_BYTES
    max_body_bytes: int = 4 << 20
    body_timeout: float = 30.0
    max_import_bytes: int = 1 << 30
    max_batch: int = 2000
    log_level: str = "INFO"
    log_format: str = "text"
    access_log_sample: float = 0.0
    slow_request_ms: float = 0.0
    fast_lane: bool = True
    demo: bool = False
    redirect_schemes: tuple[str, ...] = ()
    stats_interval: float = 60.0
    public_url: str | None = None
    tls: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    changes: ChangesSettings = field(default_factory=ChangesSettings)
    registry: RegistrySettings = field(default_factory=RegistrySettings)
    hierarchy: HierarchySettings = field(default_factory=HierarchySettings)
    mirror: MirrorSettings = field(default_factory=MirrorSettings)


def _int_in(low: int, high: int) -> Callable[[Any], int]:
    def cast(raw: Any) -> int:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError("not a whole number")
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    cast.__doc__ = f"an integer from {low} to {high}"
    return cast


def _positive_float(raw: Any) -> float:
    """a positive number of seconds"""
    value = float(raw)
    if not math.isfinite(value) or value <= 0:
        raise ValueError("must be a positive, finite number")
    return value


def _bool(raw: Any) -> bool:
    """true or false"""
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("not a boolean")


def _log_level(raw: Any) -> str:
    """one of DEBUG, INFO, WARNING, ERROR"""
    text = str(raw).upper()
    if text not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("unknown level")
    return text


def _words(raw: Any) -> tuple[str, ...]:
    """a comma-separated list"""
    items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
    return tuple(str(item).strip() for item in items if str(item).strip())


def _log_format(raw: Any) -> str:
    """text or json"""
    text = str(raw).strip().lower()
    if text not in {"text", "json"}:
        raise ValueError("unknown format")
    return text


def _lag_bound(raw: Any) -> float:
    """a number of seconds above 2 (two replica health checks)"""
    value = _positive_float(raw)
    if not value > 2:
        raise ValueError("must exceed 2")
    return value


def _fraction(raw: Any) -> float:
    """a number from 0 to 1"""
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be between 0 and 1")
    return value


def _non_negative_float(raw: Any) -> float:
    """a number of milliseconds, 0 or more (0 turns it off)"""
    value = float(raw)
    if not value >= 0.0:
        raise ValueError("must not be negative")
    return value


def _url_schemes(raw: Any) -> tuple[str, ...]:
    """comma-separated URL schemes, never javascript, vbscript, data, blob or file"""
    schemes = tuple(scheme.lower() for scheme in _words(raw))
    Redirects(schemes)  # refuses what may not be a redirect target, naming it
    return schemes


def _path(raw: Any) -> Path:
    """a file system path"""
    if not isinstance(raw, str | Path) or not str(raw):
        raise ValueError("must be a non-empty path")
    return Path(raw)


def _base_url(raw: Any) -> str:
    """an http:// or https:// URL of the form scheme://host[:port]"""
    return base_url(_text(raw))


def _base_urls(raw: Any) -> tuple[str, ...]:
    """comma-separated http:// or https:// URLs of the form scheme://host[:port]"""
    urls = tuple(base_url(word) for word in _words(raw))
    if not urls:
        raise ValueError("no URL given")
    return urls


_DSN_START = re.compile(r",\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)")
"""A comma that starts another URL (``scheme://``), not one between the hosts of a multi-host DSN."""


def _dsns(raw: Any) -> tuple[str, ...]:
    """postgresql:// DSNs, comma-separated (a multi-host DSN's own commas stay in it)"""
    items = raw if isinstance(raw, list | tuple) else _DSN_START.split(str(raw).strip())
    dsns = tuple(str(item).strip() for item in items if str(item).strip())
    if not all(dsn.startswith(("postgresql://", "postgres://")) for dsn in dsns):
        raise ValueError("not a postgresql:// DSN")
    return dsns


def _public_url(raw: Any) -> str:
    """an http:// or https:// URL of the form scheme://host[:port][/path]"""
    return public_base(_text(raw))


def _text(raw: Any) -> str:
    """a string"""
    if not isinstance(raw, str) or not raw:
        raise ValueError("must be a non-empty string")
    return raw


def _token_key(raw: Any) -> str:
    """a string of at least 32 characters"""
    if not isinstance(raw, str) or len(raw.encode("utf-8")) < 32:
        raise ValueError("must be at least 32 characters")
    return raw


_BIG = 2**62
# option name → (section or None, field name, cast)
_OPTIONS: dict[str, tuple[str | None, str, Callable[[Any], Any]]] = {
    "host": (None, "host", _text),
    "port": (None, "port", _int_in(0, 65535)),
    "admin_host": (None, "admin_host", _text),
    "admin_port": (None, "admin_port", _int_in(0, 65535)),
    "workers": (None, "workers", _int_in(1, 64)),
    "data_dir": (None, "data_dir", _path),
    "max_handle_bytes": (None, "max_handle_bytes", _int_in(16, HARD_MAX_HANDLE_BYTES)),
    "max_body_bytes": (None, "max_body_bytes", _int_in(1024, 64 << 20)),
    "max_batch": (None, "max_batch", _int_in(1, 100_000)),
    "body_timeout": (None, "body_timeout", _positive_float),
    "max_import_bytes": (None, "max_import_bytes", _int_in(1024, 1 << 40)),
    "log_level": (None, "log_level", _log_level),
    "log_format": (None, "log_format", _log_format),
    "access_log_sample": (None, "access_log_sample", _fraction),
    "slow_request_ms": (None, "slow_request_ms", _non_negative_float),
    "fast_lane": (None, "fast_lane", _bool),
    "demo": (None, "demo", _bool),
    "database_url": ("database", "url", _text),
    "database_replica_urls": ("database", "replica_urls", _dsns),
    "database_replica_max_lag": ("database", "replica_max_lag", _lag_bound),
    "database_pool_min": ("database", "pool_min", _int_in(1, 1000)),
    "database_pool_max": ("database", "pool_max", _int_in(1, 1000)),
    "database_timeout": ("database", "command_timeout", _positive_float),
    "cache_max_entries": ("cache", "max_entries", _int_in(0, _BIG)),
    "cache_max_bytes": ("cache", "max_bytes", _int_in(0, _BIG)),
    "cache_negative_max_entries": ("cache", "negative_max_entries", _int_in(0, _BIG)),
    "cache_safety_ttl": ("cache", "safety_ttl", _positive_float),
    "cache_negative_ttl": ("cache", "negative_ttl", _positive_float),
    "changes_backoff_max": ("changes", "backoff_max", _positive_float),
    "tls": (None, "tls", _bool),
    "tls_cert": (None, "tls_cert", _path),
    "tls_key": (None, "tls_key", _path),
    "trusted_proxies": ("registry", "trusted_proxies", _words),
    "operators": ("registry", "operators", _words),
    "auth_failure_limit": ("registry", "auth_failure_limit", _int_in(1, 1_000_000)),
    "snms_token_key": ("registry", "snms_token_key", _token_key),
    "snms_token_lifetime": ("registry", "snms_token_lifetime", _positive_float),
    "redirect_schemes": (None, "redirect_schemes", _url_schemes),
    "upstream": ("hierarchy", "upstream", _base_urls),
    "advertise_url": ("hierarchy", "advertise_url", _base_url),
    "upstream_identity": ("hierarchy", "upstream_identity", _text),
    "upstream_secret": ("hierarchy", "upstream_secret", _text),
    "upstream_ca": ("hierarchy", "upstream_ca", _path),
    "upstream_report_interval": ("hierarchy", "report_interval", _positive_float),
    "forward_timeout": ("hierarchy", "forward_timeout", _positive_float),
    "forward_min_ttl": ("hierarchy", "forward_min_ttl", _positive_float),
    "forward_max_ttl": ("hierarchy", "forward_max_ttl", _positive_float),
    "forward_negative_ttl": ("hierarchy", "forward_negative_ttl", _positive_float),
    "serve_stale": ("hierarchy", "serve_stale", _non_negative_float),
    "max_referrals": ("hierarchy", "max_referrals", _int_in(1, 64)),
    "stats_interval": (None, "stats_interval", _positive_float),
    "public_url": (None, "public_url", _public_url),
    "mirror_of": ("mirror", "mirror_of", _base_url),
    "mirror_identity": ("mirror", "mirror_identity", _text),
    "mirror_secret": ("mirror", "mirror_secret", _text),
    "mirror_ca": ("mirror", "mirror_ca", _path),
    "sync_mirrors": ("mirror", "sync_mirrors", _int_in(0, 64)),
    "sync_mirror_timeout": ("mirror", "sync_mirror_timeout", _positive_float),
}


def _documented() -> dict[str, tuple[str, str]]:
    """``option → (default, meaning)`` from ``OPTION_TABLE``; a row ``a_min/max`` names two options."""
    lines = OPTION_TABLE.splitlines()
    rulers = [n for n, line in enumerate(lines) if line.startswith("====")]
    spans = [match.span() for match in re.finditer("=+", lines[rulers[0]])]
    rows: dict[str, tuple[str, str]] = {}
    for line in lines[rulers[1] + 1 : rulers[2]]:
        names, default, meaning = (line[start:end].strip() for start, end in (*spans[:2], (spans[2][0], None)))
        first, *others = (name.strip() for name in names.split("/"))
        for name in (first, *(o if o in _OPTIONS else first.rsplit("_", 1)[0] + "_" + o for o in others)):
            rows[name] = (default, meaning)
    return rows


def _flag(name: str) -> str:
    """``cache_max_entries → --cache-max-entries``."""
    return "--" + name.replace("_", "-")


def add_option_flags(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` one flag per option (booleans also get ``--no-…``), each absent from the result unless given.

    Values stay strings: :func:`load_settings` casts them, so a bad flag reads like a bad variable. Absent (not
    ``None``) defaults let a flag be given before the subcommand or after it without one hiding the other.
    """
    documented = _documented()
    for name, (_section, _attr, cast) in _OPTIONS.items():
        flag = _flag(name)
        default, meaning = documented.get(name, ("", ""))
        help_text = f"{meaning} (default: {default.strip('()') or 'none'})".replace("%", "%%")
        if cast is _bool:
            parser.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text
            )
        else:
            metavar = name.rsplit("_", 1)[-1].upper()
            parser.add_argument(flag, dest=name, default=argparse.SUPPRESS, metavar=metavar, help=help_text)


def given_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The options given as flags in ``args`` (parsed with :func:`add_option_flags`), for :func:`load_settings`."""
    given = vars(args)
    return {name: given[name] for name in _OPTIONS if name in given}


def _flatten_toml(document: Mapping[str, Any], path: Path) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in document.items():
        if isinstance(value, dict):
            for inner, inner_value in value.items():
                flat[f"{key}_{inner}"] = inner_value
        else:
            flat[key] = value
    unknown = sorted(set(flat) - set(_OPTIONS))
    if unknown:
        raise ConfigError(f"config: {path}: unknown option(s) {', '.join(unknown)}")
    return flat


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return _flatten_toml(tomllib.load(handle), path)
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config: {path} is not valid TOML: {exc}") from None


def load_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Merge the three sources into :class:`Settings`; ``None`` flags count as not given."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    environ = environ or {}
    path = config_file or (Path(environ["IDNODE_CONFIG"]) if environ.get("IDNODE_CONFIG") else None)
    merged: dict[str, tuple[Any, str]] = {}
    if path is not None:
        merged.update({k: (v, f"{path}: {k}") for k, v in _read_toml(path).items()})
    for name in _OPTIONS:
        env_name = "IDNODE_" + name.upper()
        if env_name in environ:
            merged[name] = (environ[env_name], env_name)
    for name, value in flags.items():
        if name not in _OPTIONS:
            raise ConfigError(f"config: unknown option {name}")
        merged[name] = (value, _flag(name))
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {
        "database": {},
        "cache": {},
        "changes": {},
        "registry": {},
        "hierarchy": {},
        "mirror": {},
    }
    for name, (raw, source) in merged.items():
        section, attr, cast = _OPTIONS[name]
        try:
            value = cast(raw)
        except (TypeError, ValueError):
            expected = (cast.__doc__ or "").strip() or "a valid value"
            raise ConfigError(f"config: {source}={raw!r} is invalid; expected {expected}") from None
        (sections[section] if section else top)[attr] = value
    settings = Settings(**top)
    settings = replace(
        settings,
        database=replace(settings.database, **sections["database"]),
        cache=replace(settings.cache, **sections["cache"]),
        changes=replace(settings.changes, **sections["changes"]),
        registry=replace(settings.registry, **sections["registry"]),
        hierarchy=replace(settings.hierarchy, **sections["hierarchy"]),
        mirror=replace(settings.mirror, **sections["mirror"]),
    )
    hierarchy = settings.hierarchy
    if hierarchy.forward_min_ttl > hierarchy.forward_max_ttl:
        raise ConfigError(
            f"config: forward_min_ttl={hierarchy.forward_min_ttl:g} "
            f"exceeds forward_max_ttl={hierarchy.forward_max_ttl:g}"
        )
    if (hierarchy.upstream_identity is None) != (hierarchy.upstream_secret is None):
        raise ConfigError("config: upstream_identity and upstream_secret go together")
    plain = [url for url in hierarchy.upstream if not url.startswith("https://")]
    if hierarchy.upstream_identity is not None and plain:
        raise ConfigError(
            f"config: upstream {plain[0]} is plain HTTP; the upstream identity's secret is only sent over HTTPS "
            "(give the parent's https:// URL, and upstream_ca for a self-signed certificate)"
        )
    _check_mirror(settings)
    _check_failover_url(settings.database.url)
    if settings.database.pool_min > settings.database.pool_max:
        raise ConfigError(
            f"config: database_pool_min={settings.database.pool_min} exceeds "
            f"database_pool_max={settings.database.pool_max}"
        )
    return settings


def _check_failover_url(url: str | None) -> None:
    """A ``database_url`` naming several hosts must say which one to use: without ``target_session_attrs`` asyncpg
    takes the first that answers, and after a failover that may be the old primary come back as a standby, where
    every write and the LISTEN would fail until an operator intervenes."""
    if url is None:
        return
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    hosts = parts.netloc.rpartition("@")[2].split(",") + ",".join(query.get("host", [])).split(",")[1:]
    if len(hosts) > 1 and query.get("target_session_attrs", [""])[-1] not in ("read-write", "primary"):
        raise ConfigError(
            "config: database_url names several hosts; add target_session_attrs=read-write so that the node "
            "connects to the primary among them"
        )


def _check_mirror(settings: Settings) -> None:
    """A mirror authenticates at its primary, only over HTTPS; a primary's mirrors report to the one process that
    waits for them."""
    mirror = settings.mirror
    if mirror.mirror_of is not None and (mirror.mirror_identity is None or mirror.mirror_secret is None):
        raise ConfigError("config: mirror_of needs mirror_identity and mirror_secret (an operator identity there)")
    if mirror.mirror_of is None and mirror.mirror_identity is not None:
        raise ConfigError("config: mirror_identity is given without mirror_of")
    if mirror.mirror_identity is not None and not str(mirror.mirror_of).startswith("https://"):
        raise ConfigError(
            f"config: mirror_of {mirror.mirror_of} is plain HTTP; the mirror identity's secret is only sent over "
            "HTTPS (give the primary's https:// URL, and mirror_ca for a self-signed certificate)"
        )
    if mirror.sync_mirrors and settings.workers != 1:
        raise ConfigError(
            f"config: sync_mirrors={mirror.sync_mirrors} needs workers=1 "
            "(mirrors confirm to the process they read the feed from)"
        )
