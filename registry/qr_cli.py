"""``idnode qr`` and ``idnode labels``: QR codes of proxy URLs written to files, for printing (``registry/qr.py``).

::

    idnode qr HANDLE -o FILE.svg|FILE.png [--ecc L|M|Q|H] [--scale N] [--border N]
    idnode labels --prefix P --out DIR [--format svg|png|none] [--ecc ...] [--scale N] [--border N]

Both encode ``<public_url>/<handle>``: ``public_url`` must be set (``--public-url``, ``IDNODE_PUBLIC_URL`` or the
TOML file), since a printed code outlives any request that could tell the node's address. A handle must exist in
this node's database (exit status 1 otherwise: never a code of nothing). ``labels`` writes one file per handle of
the prefix (its suffix percent-encoded as the file name; ``--format none`` skips them) and ``labels.html``: an A4
sheet, three 56 mm codes a row, each handle written under its code, to print from a browser.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from registry.qr import (
    BORDER,
    ECC_LEVELS,
    FORMATS,
    MAX_BORDER,
    MAX_SCALE,
    SCALE,
    Label,
    label_sheet,
    proxy_url,
    qr_code,
    render,
)
from registry.store import RegistryStore
from resolver.config import Settings
from resolver.errors import ConfigError
from resolver.identifiers import ascii_upper, parse
from resolver.store import Store

__all__ = ["SHEET", "add_commands", "run"]

SHEET = "labels.html"

WithStore = Callable[[Settings, Callable[[Store], Any]], Any]


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``qr`` and ``labels`` to the ``idnode`` command's subparsers."""
    qr_cmd = commands.add_parser("qr", parents=[common], help="write the QR code of a handle's proxy URL")
    qr_cmd.add_argument("handle")
    qr_cmd.add_argument("-o", "--output", type=Path, required=True, help="FILE.svg or FILE.png")
    labels_cmd = commands.add_parser("labels", parents=[common], help="QR labels of every handle of a prefix")
    labels_cmd.add_argument("--prefix", required=True)
    labels_cmd.add_argument("--out", type=Path, required=True, help="directory (created if needed)")
    labels_cmd.add_argument(
        "--format", choices=(*FORMATS, "none"), default="svg", help=f"one file per handle (always: {SHEET})"
    )
    for command in (qr_cmd, labels_cmd):
        command.add_argument("--ecc", type=str.upper, choices=ECC_LEVELS, default="M", help="error correction")
        command.add_argument("--scale", type=int, default=SCALE, help=f"pixels a module, 1 to {MAX_SCALE}")
        command.add_argument("--border", type=int, default=BORDER, help=f"quiet zone in modules, 0 to {MAX_BORDER}")


def _checked(settings: Settings, args: argparse.Namespace) -> str:
    """The base URL, once the options are known to be within bounds."""
    if not 1 <= args.scale <= MAX_SCALE:
        raise ConfigError(f"{args.command}: --scale must be from 1 to {MAX_SCALE}")
    if not 0 <= args.border <= MAX_BORDER:
        raise ConfigError(f"{args.command}: --border must be from 0 to {MAX_BORDER}")
    if settings.public_url is None:
        raise ConfigError(
            f"{args.command}: set public_url (--public-url https://id.example.cn), the address printed in the codes"
        )
    return settings.public_url


def _image(base: str, handle: str, kind: str, args: argparse.Namespace, *, sized: bool = True) -> bytes:
    code = qr_code(proxy_url(base, handle), args.ecc)
    return render(code, kind, scale=args.scale, border=args.border, title=handle, sized=sized)


def run(settings: Settings, args: argparse.Namespace, with_store: WithStore) -> int:
    """``idnode qr`` or ``idnode labels``; ``with_store`` runs a coroutine function against the database."""
    base = _checked(settings, args)
    if args.command == "qr":
        kind = args.output.suffix.lower().lstrip(".")
        if kind not in FORMATS:
            raise ConfigError(f"qr: the output file must end in .svg or .png, got {args.output.name!r}")
        handle = parse(args.handle, max_bytes=settings.max_handle_bytes)
        if not with_store(settings, lambda store: store.fetch_records([handle.key])):
            print(f"{args.handle}: not found", file=sys.stderr)
            return 1
        args.output.write_bytes(_image(base, handle.text, kind, args))
        print(f"qr: {args.output} encodes {proxy_url(base, handle.text)}")
        return 0
    prefix = args.prefix[5:] if args.prefix.upper().startswith("0.NA/") else args.prefix
    handles = with_store(settings, lambda store: RegistryStore(store.pool).list_handles(ascii_upper(prefix)))
    if not handles:
        print(f"labels: prefix {prefix} has no handles on this node", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    labels = []
    for handle in handles:
        labels.append(Label(handle, _image(base, handle, "svg", args, sized=False)))
        if args.format != "none":
            name = quote(handle.split("/", 1)[1], safe="") + "." + args.format
            (args.out / name).write_bytes(_image(base, handle, args.format, args))
    (args.out / SHEET).write_text(label_sheet(prefix, labels), encoding="utf-8")
    files = f"{len(handles)} {args.format.upper()} file(s) and " if args.format != "none" else ""
    print(f"labels: {files}{SHEET} ({len(handles)} labels) written to {args.out}")
    return 0
