"""The ``idnode`` command: run the node and operate on its data.

::

    idnode [SETTINGS] serve [SETTINGS]  run the node (idnode serve --help lists every setting flag)
    idnode prefix add PREFIX          home a prefix on this node
    idnode prefix list
    idnode prefix delegate PREFIX --site URL [--site URL2] [--derived]
                                      let another node serve PREFIX (its 0.NA/PREFIX names that node's site)
    idnode prefix undelegate PREFIX
    idnode enterprise add (--prefix P | [--under P]) --name N [--credit-code C] [--contact C] [--address A] [--json]
                                      onboard an enterprise (without --prefix: on the next free number under
                                      --under, default the node prefix); prints its identity and secret (shown once)
    idnode enterprise list [--name S] [--credit-code C] [--state active|suspended] [--page N --page-size N] [--json]
    idnode enterprise show PREFIX [--json]
    idnode enterprise update PREFIX [--name N] [--contact C] [--address A] [--credit-code C] [--json]
                                      change those fields ("" removes one, the name excepted)
    idnode enterprise suspend|resume PREFIX
                                      refuse (or allow again) the enterprise's writes; its handles keep resolving
    idnode enterprise rotate-secret PREFIX [--json]
    idnode enterprise app add PREFIX NAME --rights register,update,delete,read [--json]
    idnode enterprise app list PREFIX [--json]
    idnode enterprise app revoke PREFIX NAME
                                      application identities (registry/apps.py): P/APP-NAME with its own secret
                                      a new secret for P/ADMIN (shown once); the old one and its sessions stop
    idnode operator add HANDLE [--json]
                                      create a node-operator identity; prints its secret (shown once)
    idnode node add --prefix P --name N [--json]
                                      onboard a child node; prints its identity 300:0.NA/P and secret (shown once)
    idnode upstream register          publish this node's site at its parent once (registry/upstream.py)
    idnode stats [--from D] [--to D] [--prefix P] [--node C] [--json]
                                      operation statistics per day and prefix (registry/statistics.py)
    idnode feed prune --older-than DAYS
                                      drop change-feed entries older than DAYS (registry/feed.py); followers
                                      behind them are told to start over (410)
    idnode escrow export --full FILE | --since SEQ FILE
                                      write an escrow deposit: every record, or what changed after feed number
                                      SEQ (registry/escrow.py)
    idnode escrow import FILE [--slice RECORDS]
                                      verify and apply a deposit (a DIFF only on top of its predecessor), in
                                      slices of RECORDS lines; run again, a killed import continues
    idnode takeover                   make this mirror the primary: stop following for good, accept writes
                                      (registry/mirror.py; with or without the mirror node running)
    idnode import FILE [--replace]    JSON Lines, one Handle.Net record per line; all or nothing
    idnode resolve HANDLE [--url]     print a record (or only its redirect URL) from the database
    idnode migrate                    apply schema migrations
    idnode qr HANDLE -o FILE.svg|FILE.png [--ecc L|M|Q|H] [--scale N] [--border N]
                                      the QR code of the handle's proxy URL under public_url (registry/qr_cli.py)
    idnode labels --prefix P --out DIR [--format svg|png|none]
                                      one code per handle of P, and labels.html: an A4 sheet to print

Every command reads settings from flags, ``IDNODE_*`` variables and ``--config FILE`` (``resolver/config.py``).
Every option of the settings table is a flag (generated from the table), accepted before the command or after it.
Operator commands work with or without a running node on the same data directory: they start the embedded
database when it is not running and stop it afterwards only if no node uses it (``resolver/database.py``).
Errors a user can fix are printed as one line, never as a traceback; exit status 2 for those, 1 for "not found".
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import asyncpg
import orjson

from registry import apps, lifecycle, progress
from registry.app import extensions
from registry.apps import RIGHTS
from registry.bulk import import_lines
from registry.delegations import delegate, undelegate
from registry.demo import DEMO_HANDLES, DEMO_PREFIX, DEMO_TEMPLATE, Demo, load_demo
from registry.enterprises import Credentials, Enterprise, add_operator, home_prefix, onboard, onboard_next
from registry.escrow import IMPORT_SLICE, Deposit, EscrowError, export_deposit, import_deposit
from registry.feed_store import FeedStore
from registry.lifecycle import STATES, enterprise_json
from registry.mirror_store import MirrorStore, NotAMirror
from registry.nodes import add_node
from registry.paging import paging
from registry.qr_cli import add_commands as add_qr_commands
from registry.qr_cli import run as run_qr
from registry.statistics import REGISTRATION_OPS, StatsStore, parse_range
from registry.store import Actor, EnterpriseRow, RegistryStore
from registry.tls import server_context
from registry.upstream import Published, Upstream, UpstreamError
from resolver import __version__
from resolver.answers import Redirects, build_entry, render
from resolver.config import Settings, add_option_flags, given_flags, load_settings
from resolver.database import migrate, open_database
from resolver.errors import ConfigError, HandleError, HandleNotFound
from resolver.identifiers import ascii_upper, parse, validate_text
from resolver.prefixes import PrefixTable
from resolver.records import HandleValue, ValueFilter, values_from_stored
from resolver.serve import configure_logging, serve
from resolver.store import Store, connect
from resolver.tallies import OUTCOMES

__all__ = ["main"]

T = TypeVar("T")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", type=Path, default=argparse.SUPPRESS, help="TOML settings file (also IDNODE_CONFIG)"
    )
    add_option_flags(common)

    parser = argparse.ArgumentParser(
        prog="idnode",
        description="Industrial-internet identifier resolution node",
        parents=[common],
        epilog="Every settings flag is accepted before the command or after it (idnode --data-dir D serve).",
    )
    parser.add_argument("--version", action="version", version=f"idnode {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("serve", parents=[common], help="run the node")

    prefix_cmd = commands.add_parser("prefix", help="manage homed prefixes")
    prefix_actions = prefix_cmd.add_subparsers(dest="action", required=True)
    prefix_add = prefix_actions.add_parser("add", parents=[common], help="home a prefix on this node")
    prefix_add.add_argument("prefix")
    prefix_actions.add_parser("list", parents=[common], help="list homed and delegated prefixes")
    prefix_delegate = prefix_actions.add_parser(
        "delegate", parents=[common], help="let another node serve a prefix (writes its 0.NA/ prefix handle)"
    )
    prefix_delegate.add_argument("prefix")
    prefix_delegate.add_argument(
        "--site", action="append", required=True, help="base URL of a serving node, e.g. http://10.0.0.5:8000"
    )
    prefix_delegate.add_argument(
        "--derived", action="store_true", help="the same sites also serve the prefixes derived from it (HS_SITE.PREFIX)"
    )
    prefix_undelegate = prefix_actions.add_parser("undelegate", parents=[common], help="remove a prefix's delegation")
    prefix_undelegate.add_argument("prefix")

    # --- enterprise (registry/lifecycle.py) ---
    enterprise_cmd = commands.add_parser("enterprise", help="onboard and manage enterprises")
    enterprise_actions = enterprise_cmd.add_subparsers(dest="action", required=True)
    enterprise_add = enterprise_actions.add_parser("add", parents=[common], help="onboard an enterprise")
    enterprise_add.add_argument("--prefix", help="the enterprise prefix, e.g. 88.118.8 (default: the next free one)")
    enterprise_add.add_argument("--under", help="without --prefix: number under this prefix (default: the node's)")
    enterprise_add.add_argument("--name", required=True)
    for field in ("--credit-code", "--contact", "--address"):
        enterprise_add.add_argument(field, help="unified social credit code" if field == "--credit-code" else None)
    enterprise_add.add_argument("--json", action="store_true", help='print {"prefix", "identity", "secret"}')
    enterprise_list = enterprise_actions.add_parser("list", parents=[common], help="list enterprises")
    enterprise_list.add_argument("--name", help="a substring of the name, any case")
    enterprise_list.add_argument("--credit-code")
    enterprise_list.add_argument("--state", choices=STATES)
    enterprise_list.add_argument("--page", type=int)
    enterprise_list.add_argument("--page-size", type=int)
    enterprise_list.add_argument("--json", action="store_true", help="print the enterprises as JSON Lines")
    enterprise_actions.add_parser("show", parents=[common], help="show one enterprise")
    enterprise_update = enterprise_actions.add_parser("update", parents=[common], help="change an enterprise")
    for field in ("--name", "--contact", "--address", "--credit-code"):
        enterprise_update.add_argument(field)
    for action, what in (
        ("suspend", "refuse the enterprise's writes (its handles keep resolving)"),
        ("resume", "allow a suspended enterprise's writes again"),
        ("rotate-secret", "a new secret for its admin identity (shown once); the old one stops working"),
    ):
        enterprise_actions.add_parser(action, parents=[common], help=what)
    for name, sub in enterprise_actions.choices.items():
        if name not in ("add", "list"):
            sub.add_argument("prefix")
            sub.add_argument("--json", action="store_true", help="print JSON")
    app_cmd = enterprise_actions.add_parser("app", help="application identities of an enterprise")
    app_actions = app_cmd.add_subparsers(dest="app_action", required=True)
    app_add = app_actions.add_parser("add", parents=[common], help="create an app identity (secret shown once)")
    app_add.add_argument("--rights", required=True, help=f"comma-separated: {','.join(RIGHTS)}")
    app_list = app_actions.add_parser("list", parents=[common], help="list the apps")
    app_revoke = app_actions.add_parser("revoke", parents=[common], help="revoke an app; it stops working at once")
    for sub in (app_add, app_list, app_revoke):
        sub.add_argument("prefix")
    for sub in (app_add, app_revoke):
        sub.add_argument("name")
    for sub in (app_add, app_list):
        sub.add_argument("--json", action="store_true", help="print JSON")

    operator_cmd = commands.add_parser("operator", help="node-operator identities")
    operator_actions = operator_cmd.add_subparsers(dest="action", required=True)
    operator_add = operator_actions.add_parser("add", parents=[common], help="create an operator identity")
    operator_add.add_argument("handle", help="identity handle under a homed prefix, e.g. 88.118/OPERATOR")
    operator_add.add_argument("--json", action="store_true", help='print {"identity": ..., "secret": ...}')

    node_cmd = commands.add_parser("node", help="child nodes of this node")
    node_actions = node_cmd.add_subparsers(dest="action", required=True)
    node_add = node_actions.add_parser("add", parents=[common], help="onboard a child node")
    node_add.add_argument("--prefix", required=True, help="the child's prefix, under one homed here, e.g. 88.118")
    node_add.add_argument("--name", required=True)
    node_add.add_argument("--json", action="store_true", help='print {"identity": ..., "secret": ...}')

    upstream_cmd = commands.add_parser("upstream", help="this node's parent")
    upstream_actions = upstream_cmd.add_subparsers(dest="action", required=True)
    upstream_actions.add_parser("register", parents=[common], help="publish this node's site at the parent once")

    stats_cmd = commands.add_parser("stats", parents=[common], help="operation statistics per day and prefix")
    stats_cmd.add_argument("--from", dest="start", help="first UTC day, YYYY-MM-DD (default: --to, or today)")
    stats_cmd.add_argument("--to", dest="end", help="last UTC day, YYYY-MM-DD (default: --from, or today)")
    stats_cmd.add_argument("--prefix", help="only this prefix")
    stats_cmd.add_argument("--node", help="the totals the child node of this prefix reported")
    stats_cmd.add_argument("--json", action="store_true", help="print the JSON GET /api/stats answers")

    feed_cmd = commands.add_parser("feed", help="the change feed (GET /api/changes)")
    feed_actions = feed_cmd.add_subparsers(dest="action", required=True)
    feed_prune = feed_actions.add_parser("prune", parents=[common], help="drop entries older than some days")
    feed_prune.add_argument("--older-than", dest="days", type=float, required=True, metavar="DAYS")

    escrow_cmd = commands.add_parser("escrow", help="escrow deposits (FULL and DIFF)")
    escrow_actions = escrow_cmd.add_subparsers(dest="action", required=True)
    escrow_export = escrow_actions.add_parser("export", parents=[common], help="write a deposit to FILE")
    escrow_scope = escrow_export.add_mutually_exclusive_group(required=True)
    escrow_scope.add_argument("--full", action="store_true", help="every record (a FULL deposit)")
    escrow_scope.add_argument("--since", type=int, metavar="SEQ", help="changes after feed number SEQ (a DIFF)")
    escrow_export.add_argument("file", type=Path)
    escrow_import = escrow_actions.add_parser("import", parents=[common], help="verify and apply a deposit")
    escrow_import.add_argument("file", type=Path)
    escrow_import.add_argument(
        "--slice", type=int, default=IMPORT_SLICE, metavar="RECORDS", help="records applied per transaction"
    )
    commands.add_parser("takeover", parents=[common], help="make this mirror the primary (stops following)")

    import_cmd = commands.add_parser("import", parents=[common], help="import JSON Lines records")
    import_cmd.add_argument("file", type=Path)
    import_cmd.add_argument("--replace", action="store_true", help="overwrite records that already exist")

    resolve_cmd = commands.add_parser("resolve", parents=[common], help="print a record from the database")
    resolve_cmd.add_argument("handle")
    resolve_cmd.add_argument("--url", action="store_true", help="print only the URL the proxy redirects to")

    commands.add_parser("migrate", parents=[common], help="apply schema migrations")
    add_qr_commands(commands, common)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(given_flags(args), os.environ, getattr(args, "config", None))


def _with_store(settings: Settings, work: Callable[[Store], Awaitable[T]]) -> T:
    """Run ``work`` against a migrated database, starting the embedded server if needed."""

    async def run(dsn: str) -> T:
        await migrate(dsn)
        store = await connect(dsn, settings.database)
        try:
            return await work(store)
        finally:
            await store.close()

    with open_database(settings, serving=False) as dsn:
        return asyncio.run(run(dsn))


def _demo_lines(demo: Demo, base: str, tls: bool) -> list[str]:
    """What ``serve --demo`` prints: reads to try, and a registration over HTTPS with the demo admin's secret."""
    example = DEMO_HANDLES[0][0]
    k = "-k " if tls else ""
    user = quote(demo.admin.identity, safe="")
    record = '{"values":[{"index":1,"type":"URL","data":{"format":"string","value":"https://example.com/p/1"}}]}'
    register = (
        f"  curl -k -u '{user}:{demo.admin.secret}' -X PUT -H 'Content-Type: application/json' \\\n"
        f"       -d '{record}' {base}/api/handles/{DEMO_PREFIX}/MY-PRODUCT-1"
    )
    return [
        f"demo: enterprise {DEMO_PREFIX} with data template {DEMO_TEMPLATE}, {demo.added} new demo record(s). Try:",
        f"  curl {k}{base}/api/handles/{example}",
        f"  curl {k}-i {base}/{example}            # proxy redirect",
        f"  open {base}/{example}?noredirect    # the page a QR-code scan shows",
        f"demo admin {demo.admin.identity}, secret {demo.admin.secret} (new at every start). Register a product:",
        register if tls else "  (writes need HTTPS: start with --tls, as make serve does, to try a registration)",
    ]


def _serve(settings: Settings) -> int:
    async def prepare(dsn: str, base: str) -> None:
        store = await connect(dsn, settings.database)
        try:
            demo = await load_demo(RegistryStore(store.pool))
        finally:
            await store.close()
        print("\n".join(_demo_lines(demo, base, settings.tls)), flush=True)

    serve(
        settings,
        extensions=extensions(),
        prepare=prepare if settings.demo else None,
        announce=lambda line: print(line, flush=True),
        ssl_context=server_context(settings),
    )
    return 0


def _prefix_add(settings: Settings, prefix: str) -> int:
    validate_text(prefix)
    if "/" in prefix:
        raise ConfigError(f"prefix: {prefix!r} contains '/'; give the prefix only, e.g. 88.118.8")
    added = _with_store(settings, lambda store: home_prefix(RegistryStore(store.pool), prefix))
    print(f"prefix {prefix} {'homed' if added else 'was already homed'}")
    return 0


def _prefix_delegate(settings: Settings, args: argparse.Namespace) -> int:
    actor = Actor(f"cli:{getpass.getuser()}")
    name = _with_store(
        settings,
        lambda store: delegate(RegistryStore(store.pool), args.prefix, args.site, derived=args.derived, actor=actor),
    )
    what = "it and the prefixes derived from it" if args.derived else "it"
    print(f"prefix {args.prefix} delegated: {name} names {', '.join(args.site)} as the site serving {what}")
    return 0


def _prefix_undelegate(settings: Settings, prefix: str) -> int:
    actor = Actor(f"cli:{getpass.getuser()}")
    removed = _with_store(settings, lambda store: undelegate(RegistryStore(store.pool), prefix, actor=actor))
    print(f"prefix {prefix} {'undelegated' if removed else 'was not delegated'}")
    return 0 if removed else 1


_PREFIX_ACTIONS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "add": lambda settings, args: _prefix_add(settings, args.prefix),
    "list": lambda settings, _args: _prefix_list(settings),
    "delegate": _prefix_delegate,
    "undelegate": lambda settings, args: _prefix_undelegate(settings, args.prefix),
}


def _prefix_list(settings: Settings) -> int:
    for row in sorted(_with_store(settings, Store.fetch_prefixes), key=lambda r: r.key):
        print(f"{row.prefix}\t{row.kind}")
    return 0


def _print_credentials(credentials: Credentials, as_json: bool, what: str) -> None:
    if as_json:
        print(orjson.dumps(credentials.as_json()).decode())
    else:
        print(f"{what} identity: {credentials.identity}")
        print(f"secret (shown once, store it now): {credentials.secret}")


# --- enterprise (registry/lifecycle.py) ---


def _cli_actor() -> Actor:
    return Actor(f"cli:{getpass.getuser()}")


def _enterprise_add(settings: Settings, args: argparse.Namespace) -> int:
    enterprise = Enterprise(args.name, args.credit_code, args.contact, args.address)

    async def work(store: Store) -> tuple[str, Credentials]:
        registry = RegistryStore(store.pool)
        if args.prefix is None:
            return await onboard_next(registry, enterprise, under=args.under, actor=_cli_actor())
        credentials = await onboard(
            registry,
            args.prefix,
            name=enterprise.name,
            credit_code=enterprise.credit_code,
            contact=enterprise.contact,
            address=enterprise.address,
            actor=_cli_actor(),
        )
        return args.prefix, credentials

    if args.prefix is not None and args.under is not None:
        raise ConfigError("enterprise add: give --prefix or --under, not both")
    prefix, credentials = _with_store(settings, work)
    if args.json:
        print(orjson.dumps({"prefix": prefix, **credentials.as_json()}).decode())
    else:
        _print_credentials(credentials, False, f"enterprise {prefix}")
    return 0


def _print_enterprise(row: EnterpriseRow, as_json: bool) -> None:
    shown = enterprise_json(row)
    if as_json:
        print(orjson.dumps(shown).decode())
    else:
        for key, value in shown.items():
            print(f"{key}\t{'' if value is None else value}")


def _enterprise_list(settings: Settings, args: argparse.Namespace) -> int:
    page = paging({k: str(v) for k, v in (("page", args.page), ("pageSize", args.page_size)) if v is not None})
    total, rows = _with_store(
        settings,
        lambda store: RegistryStore(store.pool).enterprises(
            name=args.name,
            credit_code=args.credit_code,
            status=args.state,
            limit=None if page is None else page.size,
            offset=0 if page is None else page.offset,
        ),
    )
    for row in rows:
        if args.json:
            print(orjson.dumps(enterprise_json(row)).decode())
        else:
            print("\t".join((row.prefix, row.status, row.name, row.credit_code or "")))
    if not args.json:
        print(f"{total} enterprise(s)", file=sys.stderr)
    return 0


def _enterprise_change(settings: Settings, args: argparse.Namespace) -> int:
    """show, update, suspend, resume: the enterprise as it is afterwards."""
    fields = {"name": "name", "contact": "contact", "address": "address", "creditCode": "credit_code"}
    patch = {key: getattr(args, attr, None) for key, attr in fields.items()}
    patch = {key: value or None for key, value in patch.items() if value is not None}

    def work(store: Store) -> Awaitable[EnterpriseRow]:
        registry = RegistryStore(store.pool)
        if args.action == "update":
            return lifecycle.update(registry, args.prefix, patch, actor=_cli_actor())
        if args.action == "show":
            return lifecycle.show(registry, args.prefix)
        state = "suspended" if args.action == "suspend" else "active"
        return lifecycle.set_state(registry, args.prefix, state, actor=_cli_actor())

    _print_enterprise(_with_store(settings, work), args.json)
    return 0


def _enterprise_rotate(settings: Settings, args: argparse.Namespace) -> int:
    credentials = _with_store(
        settings, lambda store: lifecycle.rotate_secret(RegistryStore(store.pool), args.prefix, actor=_cli_actor())
    )
    _print_credentials(credentials, args.json, f"enterprise {args.prefix}")
    return 0


def _enterprise_app(settings: Settings, args: argparse.Namespace) -> int:
    """``idnode enterprise app add|list|revoke`` (registry/apps.py)."""

    async def fetch(store: Store, handle: str) -> list[HandleValue] | None:
        rows = await store.fetch_records([ascii_upper(handle)])
        return list(values_from_stored(rows[0].values)) if rows else None

    def work(store: Store) -> Awaitable[Any]:
        registry = RegistryStore(store.pool)
        if args.app_action == "add":
            rights = [right.strip() for right in args.rights.split(",") if right.strip()]
            return apps.add_app(registry, args.prefix, args.name, rights, actor=_cli_actor())
        if args.app_action == "list":
            return apps.list_apps(registry, lambda handle: fetch(store, handle), args.prefix)
        return apps.revoke_app(registry, args.prefix, args.name, actor=_cli_actor())

    result = _with_store(settings, work)
    if args.app_action == "add":
        _print_credentials(Credentials(*result), args.json, f"app {args.name} of {args.prefix}")
    elif args.app_action == "list":
        for app in result:
            print(
                orjson.dumps(app.as_json()).decode()
                if args.json
                else f"{app.name}\t{app.identity}\t{','.join(app.rights)}"
            )
    else:
        print(f"app {args.name} of {args.prefix} revoked")
    return 0


def _enterprise(settings: Settings, args: argparse.Namespace) -> int:
    """``idnode enterprise ACTION``: exit status 1 when the enterprise (or app) does not exist."""
    actions: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
        "add": _enterprise_add,
        "list": _enterprise_list,
        "rotate-secret": _enterprise_rotate,
        "app": _enterprise_app,
    }
    try:
        return actions.get(args.action, _enterprise_change)(settings, args)
    except HandleNotFound as exc:
        print(f"idnode: {exc.message}", file=sys.stderr)
        return 1


# --- end of enterprise ---


def _operator_add(settings: Settings, args: argparse.Namespace) -> int:
    actor = Actor(f"cli:{getpass.getuser()}")
    credentials = _with_store(settings, lambda store: add_operator(RegistryStore(store.pool), args.handle, actor=actor))
    _print_credentials(credentials, args.json, "operator")
    return 0


def _node_add(settings: Settings, args: argparse.Namespace) -> int:
    actor = Actor(f"cli:{getpass.getuser()}")
    credentials = _with_store(
        settings, lambda store: add_node(RegistryStore(store.pool), args.prefix, name=args.name, actor=actor)
    )
    _print_credentials(credentials, args.json, f"child node {args.prefix}")
    return 0


def _upstream_register(settings: Settings) -> int:
    hierarchy = settings.hierarchy
    if not hierarchy.upstream or hierarchy.upstream_identity is None:
        raise ConfigError("upstream register: set upstream, upstream_identity and upstream_secret first")
    if hierarchy.advertise_url is None:
        raise ConfigError("upstream register: set advertise_url, the base URL this node's site announces")

    async def work(store: Store) -> list[Published]:
        homed = PrefixTable(await store.fetch_prefixes()).homed()
        if not homed:
            raise ConfigError("upstream register: no prefix is homed here, so there is nothing to publish")
        upstream = Upstream(hierarchy, homed=lambda: homed)
        try:
            return await upstream.publish()
        finally:
            await upstream.close()

    try:
        published = _with_store(settings, work)
    except UpstreamError as exc:
        for done in exc.published:
            print(f"published {done.describe()}")
        print(f"idnode: {exc}", file=sys.stderr)
        return 1
    for done in published:
        print(f"published {done.describe()}, site {hierarchy.advertise_url}")
    return 0


def _stats(settings: Settings, args: argparse.Namespace) -> int:
    start, end = parse_range(args.start, args.end, today=datetime.now(UTC).date())
    days = _with_store(
        settings, lambda store: StatsStore(store.pool).days(start, end, prefix=args.prefix, node=args.node)
    )
    if args.json:
        body: dict[str, Any] = {"responseCode": 1, "from": start.isoformat(), "to": end.isoformat()}
        if args.node is not None:
            body["node"] = args.node
        body["days"] = [day.as_json() for day in days]
        print(orjson.dumps(body).decode())
        return 0
    columns = ["day", "prefix", *OUTCOMES, *REGISTRATION_OPS]
    print("\t".join(columns))
    for day in days:
        counts = [*day.lookups.values(), *day.registrations.values()]
        print("\t".join([day.day.isoformat(), day.prefix, *map(str, counts)]))
    return 0


def _line_count(path: Path) -> int | None:
    """Lines in ``path`` (the import's progress total), None when it is not a regular file (a pipe is read once)."""
    if not path.is_file():
        return None
    count, last = 0, b"\n"
    with path.open("rb") as data:
        while block := data.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def _import(settings: Settings, path: Path, replace: bool) -> int:
    try:
        handle = path.open("rb")
        total = _line_count(path)
    except OSError as exc:
        raise ConfigError(f"import: cannot read {path}: {exc.strerror}") from None

    def stage(title: str, total: int | None, unit: str) -> AbstractContextManager[Callable[[int], None]]:
        return progress.stage(f"import: {title}", total, unit, stream=sys.stderr)

    async def work(store: Store) -> Any:
        prefixes = PrefixTable(await store.fetch_prefixes())
        with handle:
            return await import_lines(
                store,
                handle,
                prefixes,
                max_handle_bytes=settings.max_handle_bytes,
                replace=replace,
                actor=f"cli:{getpass.getuser()}",
                total_lines=total,
                stage=stage,
            )

    report = _with_store(settings, work)
    if report.error_count:
        for error in report.errors:
            print(f"{path}:{error}", file=sys.stderr)
        more = report.error_count - len(report.errors)
        if more > 0:
            print(f"{path}: ... and {more} more error(s)", file=sys.stderr)
        print(f"import: {report.error_count} bad line(s); nothing was imported", file=sys.stderr)
        return 2
    print(f"import: {report.written} record(s) written, {report.skipped} already present and skipped")
    return 0


def _resolve(settings: Settings, text: str, url_only: bool) -> int:
    handle = parse(text, max_bytes=settings.max_handle_bytes)
    records = _with_store(settings, lambda store: store.fetch_records([handle.key]))
    if not records:
        print(f"{text}: not found", file=sys.stderr)
        return 1
    entry = build_entry(records[0], redirects=Redirects(settings.redirect_schemes))
    if url_only:
        if entry.location is None:
            print(f"{text}: has no URL value the proxy redirects to", file=sys.stderr)
            return 1
        print(entry.location)
    else:
        print(render(entry, text, ValueFilter(), pretty=True).decode())
    return 0


def _feed_prune(settings: Settings, days: float) -> int:
    if not days >= 0:
        raise ConfigError("feed prune: --older-than must be a number of days, 0 or more")
    dropped, oldest = _with_store(settings, lambda store: FeedStore(store.pool).prune(days))
    print(f"feed: dropped {dropped} entries; the oldest kept is number {oldest}")
    return 0


def _escrow(settings: Settings, args: argparse.Namespace) -> int:
    """Export or import a deposit on one connection of its own (no statement timeout: a deposit may be large)."""

    async def run(dsn: str) -> Deposit:
        await migrate(dsn)
        con = await asyncpg.connect(dsn, server_settings={"application_name": "idnode-escrow"})
        try:
            if args.action == "export":
                return await export_deposit(con, args.file, since=None if args.full else args.since)
            return await import_deposit(con, args.file, slice_records=args.slice)
        finally:
            await con.close()

    started = time.perf_counter()
    with open_database(settings, serving=False) as dsn:
        deposit = asyncio.run(run(dsn))
    elapsed = max(time.perf_counter() - started, 1e-6)
    header = deposit.header
    done = "wrote" if args.action == "export" else "applied"
    print(
        f"escrow: {done} {header.type} deposit {header.id} (watermark {header.watermark}): {deposit.deletes} deletes, "
        f"{deposit.contents} records in {elapsed:.2f} s ({deposit.records / elapsed:,.0f} records/s)"
    )
    return 0


def _takeover(settings: Settings) -> int:
    try:
        state = _with_store(settings, lambda store: MirrorStore(store.pool).takeover())
    except NotAMirror as exc:
        print(f"idnode: {exc}", file=sys.stderr)
        return 1
    print(
        f"took over from {state.source} at its change {state.watermark} ({state.taken_over_at:%Y-%m-%d %H:%M:%S %Z});"
        " this node no longer follows it and accepts writes (a running node from its next write on)"
    )
    return 0


def _migrate(settings: Settings) -> int:
    with open_database(settings, serving=False) as dsn:
        result = asyncio.run(migrate(dsn))
    print(f"schema at version {result.current}; applied now: {', '.join(result.applied) or 'nothing'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
        configure_logging(settings.log_level, settings.log_format)
        if args.command == "serve":
            return _serve(settings)
        if args.command == "prefix":
            return _PREFIX_ACTIONS[args.action](settings, args)
        if args.command == "enterprise":
            return _enterprise(settings, args)
        if args.command == "operator":
            return _operator_add(settings, args)
        if args.command == "node":
            return _node_add(settings, args)
        if args.command == "upstream":
            return _upstream_register(settings)
        if args.command == "stats":
            return _stats(settings, args)
        if args.command == "feed":
            return _feed_prune(settings, args.days)
        if args.command == "escrow":
            return _escrow(settings, args)
        if args.command == "takeover":
            return _takeover(settings)
        if args.command == "import":
            return _import(settings, args.file, args.replace)
        if args.command == "resolve":
            return _resolve(settings, args.handle, args.url)
        if args.command in ("qr", "labels"):
            return run_qr(settings, args, _with_store)
        return _migrate(settings)
    except ConfigError as exc:
        print(f"idnode: {exc}", file=sys.stderr)
        return 2
    except HandleError as exc:
        print(f"idnode: {exc.message}", file=sys.stderr)
        return 2
    except EscrowError as exc:
        print(f"idnode: escrow: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
