"""registry/qr.py, registry/qr_api.py, registry/qr_cli.py, resolver/public_url.py: QR labels decoded by a real reader.

Every code is read back with ``zbarimg`` (Debian's ``zbar-tools``, installed by .ci/run): a PNG as it is; an SVG
by redrawing the modules its path draws as a PBM bitmap, so what is decoded is exactly the SVG's geometry. Without
``zbarimg`` these tests fail and say how to install it: a label that was never read must not pass. The decoded URL
is then requested from the node, which must redirect it to the record's own URL: the code leads to the record.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yarl

from registry.qr import proxy_url, qr_code
from resolver.config import Settings
from resolver.identifiers import decode_path
from resolver.public_url import public_base, request_base
from tests.support import SECURE, Node, behind_trusted_proxy, home, put_record, running_node
from tests.test_cli import idnode

LONG = "X" * 100


def _url_record(target: str) -> list[dict[str, Any]]:
    return [{"index": 1, "type": "URL", "data": {"format": "string", "value": target}}]


def zbar(path: Path) -> str:
    """The text of the one QR code in the image at ``path``, as ``zbarimg`` reads it."""
    exe = shutil.which("zbarimg")
    if exe is None:
        pytest.fail("zbarimg not found on PATH: install zbar-tools (apt-get install zbar-tools); .ci/run installs it")
    done = subprocess.run([exe, "--raw", "-q", str(path)], capture_output=True, timeout=30, check=False)
    assert done.returncode == 0, f"zbarimg could not read {path.name}: {done.stderr.decode()}"
    return done.stdout.decode().removesuffix("\n")


def svg_modules(svg: bytes) -> set[tuple[int, int]]:
    """The dark modules ``(row, column)`` that segno's SVG path draws (``M``/``m`` moves, ``h`` horizontal runs)."""
    path = re.search(rb' d="([^"]+)"', svg)
    assert path is not None, svg[:200]
    x = y = 0.0
    dark: set[tuple[int, int]] = set()
    for command, numbers in re.findall(r"([Mmh])([-0-9. ]+)", path.group(1).decode()):
        values = [float(n) for n in numbers.split()]
        if command == "M":
            x, y = values
        elif command == "m":
            x, y = x + values[0], y + values[1]
        else:
            dark.update((int(y), int(x) + n) for n in range(int(values[0])))
            x += values[0]
    return dark


def svg_to_pbm(svg: bytes, into: Path, pixels: int = 4) -> Path:
    """The SVG's modules drawn as a plain PBM, ``pixels`` a module (the border is the SVG's own)."""
    width = re.search(rb'width="([0-9.]+)"', svg)
    scale = re.search(rb"scale\(([0-9.]+)\)", svg)
    assert width is not None
    size = round(float(width.group(1)) / (float(scale.group(1)) if scale else 1.0))
    dark = svg_modules(svg)
    rows = []
    for row in range(size * pixels):
        line = " ".join("1" if (row // pixels, col // pixels) in dark else "0" for col in range(size * pixels))
        rows.append(line)
    into.write_text(f"P1\n{size * pixels} {size * pixels}\n" + "\n".join(rows) + "\n")
    return into


# --- the URL a code holds -------------------------------------------------------------------------------------


def test_public_base_is_normalised_and_refuses_what_cannot_be_printed() -> None:
    assert public_base("HTTPS://ID.Example.CN:443/") == "https://id.example.cn"
    assert public_base("http://10.0.0.5:8000/hdl/") == "http://10.0.0.5:8000/hdl"
    assert public_base("http://[2001:DB8::1]:80") == "http://[2001:db8::1]"
    for bad in (
        "ftp://x.cn",
        "https://",
        "https://u:p@x.cn",
        "https://x.cn/?a=1",
        "https://x.cn/#f",
        "https://x.cn:99999",
    ):
        with pytest.raises(ValueError):
            public_base(bad)
    assert request_base(True, "Node.Example:8443") == "https://node.example:8443"
    assert request_base(False, "127.0.0.1:80") == "http://127.0.0.1"
    for hostile in ("evil.example/x", "a@b", "x.cn:8080/p?q", "<script>", "", "a b"):
        assert request_base(False, hostile) is None


def test_proxy_url_is_upper_case_when_that_makes_it_alphanumeric_and_decodes_back_to_the_handle() -> None:
    base = "https://id.example.cn"
    typical = proxy_url(base, "88.118.8/Pump-CP40-0001")
    assert typical == "HTTPS://ID.EXAMPLE.CN/88.118.8/PUMP-CP40-0001"
    small, plain = qr_code(typical), qr_code("https://id.example.cn/88.118.8/Pump-CP40-0001")
    assert (small.mode, small.designator, plain.mode, plain.designator) == ("alphanumeric", "3-M", "byte", "4-M")
    print(
        f"\nQR for a typical handle: {typical} is {small.designator} ({small.symbol_size(border=0)[0]} modules); "
        f"as written, {plain.designator} ({plain.symbol_size(border=0)[0]} modules)"
    )
    assert proxy_url("https://x.cn/hdl", "88.1/a") == "https://x.cn/hdl/88.1/a"  # the path's case is kept
    for handle in ("88.1/a_b?c#d", "88.1/100%", "88.1/产品 1", "88.1/a/b", "88.1/~x"):
        url = proxy_url(base, handle)
        assert decode_path(urlsplit(url).path[1:]).upper() == handle.upper(), url
        assert "?" not in url and "#" not in url and " " not in url


# --- GET /qr/{handle}.svg|png ---------------------------------------------------------------------------------


async def _qr(node: Node, path: str, **kwargs: Any) -> tuple[int, bytes, Any]:
    async with node.http.get(node.raw_url(path), allow_redirects=False, **kwargs) as response:
        return response.status, await response.read(), response


async def _follows_to(node: Node, decoded: str, target: str) -> None:
    """The decoded URL, asked of the node, redirects to ``target``."""
    async with node.http.get(yarl.URL(decoded, encoded=True), allow_redirects=False) as response:
        assert (response.status, response.headers.get("Location")) == (302, target), decoded


async def test_png_and_svg_decode_to_the_proxy_url_which_leads_to_the_record(database: str, tmp_path: Path) -> None:
    await home(database, "88.TEST")
    await put_record(database, "88.TEST/Pump-1", _url_record("https://example.org/pump-1"))
    await put_record(database, "88.TEST/a_b?c", _url_record("https://example.org/odd"))
    async with running_node(database) as node:
        origin = node.url.upper()
        for path, expected, target in (
            ("/qr/88.TEST/Pump-1", f"{origin}/88.TEST/PUMP-1", "https://example.org/pump-1"),
            ("/qr/88.TEST/a_b%3Fc", f"{node.url}/88.TEST/a_b%3Fc", "https://example.org/odd"),
            ("/qr/hdl:88.TEST/Pump-1", f"{origin}/88.TEST/PUMP-1", "https://example.org/pump-1"),
        ):
            status, png, response = await _qr(node, path + ".png")
            assert (status, response.content_type) == (200, "image/png"), png[:200]
            assert response.headers["Cache-Control"] == "private, max-age=3600"
            assert zbar(_write(tmp_path / "code.png", png)) == expected
            status, svg, response = await _qr(node, path + ".svg?scale=2&border=4")
            assert (status, response.content_type) == (200, "image/svg+xml")
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert zbar(svg_to_pbm(svg, tmp_path / "code.pbm")) == expected
            await _follows_to(node, expected, target)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


async def test_error_correction_size_and_border_are_honoured_within_bounds(database: str, tmp_path: Path) -> None:
    await home(database, "88.TEST")
    await put_record(database, "88.TEST/P1", _url_record("https://example.org/p1"))
    await put_record(database, f"88.TEST/{LONG}", _url_record("https://example.org/long"))
    async with running_node(database) as node:
        sides = {}
        for ecc in ("l", "M", "Q", "H"):
            status, svg, _ = await _qr(node, f"/qr/88.TEST/P1.svg?ecc={ecc}&border=0&scale=1")
            assert status == 200
            sides[ecc.upper()] = int(re.search(rb'width="([0-9]+)"', svg).group(1))  # type: ignore[union-attr]
            status, png, _ = await _qr(node, f"/qr/88.TEST/P1.png?ecc={ecc}")
            assert zbar(_write(tmp_path / f"{ecc}.png", png)) == f"{node.url.upper()}/88.TEST/P1"
        assert sides["L"] <= sides["M"] <= sides["Q"] <= sides["H"] and sides["L"] < sides["H"], sides
        _, small, _ = await _qr(node, "/qr/88.TEST/P1.svg?scale=1&border=0")
        _, large, _ = await _qr(node, "/qr/88.TEST/P1.svg?scale=10&border=2")
        width = int(re.search(rb'width="([0-9]+)"', large).group(1))  # type: ignore[union-attr]
        assert width == (int(re.search(rb'width="([0-9]+)"', small).group(1)) + 4) * 10  # type: ignore[union-attr]
        for query, word in (
            ("ecc=X", "ecc"),
            ("scale=0", "scale"),
            ("scale=33", "scale"),
            ("scale=abc", "scale"),
            ("scale=-1", "scale"),
            ("border=17", "border"),
            ("ecc=H&scale=32&border=16", "pixels"),
        ):
            status, body, response = await _qr(node, f"/qr/88.TEST/{LONG}.png?{query}")
            assert (status, response.content_type) == (400, "application/json"), query
            assert word in body.decode(), body


async def test_unknown_handles_and_bad_paths_get_precise_errors_never_a_code(database: str) -> None:
    await home(database, "88.TEST")
    await put_record(database, "88.TEST/P1", _url_record("https://example.org/p1"))
    async with running_node(database) as node:
        for path, status, rc in (
            ("/qr/88.TEST/absent.svg", 404, 100),
            ("/qr/88.TEST/absent.png", 404, 100),
            ("/qr/88.TEST/%ZZ.svg", 400, 102),
            ("/qr/88.TEST/P1.gif", 400, 4),
            ("/qr/88.TEST/P1", 400, 4),
            ("/qr/.svg", 400, 102),
        ):
            got, body, response = await _qr(node, path)
            assert (got, response.content_type) == (status, "application/json"), (path, body[:200])
            assert f'"responseCode":{rc}' in body.decode(), (path, body)
        status, _, response = await _qr(node, "/qr/88.TEST/P1.svg", headers={"Host": "evil.example/x"})
        assert status == 400


async def test_origin_trusts_forwarded_proto_only_from_trusted_proxies_and_never_forwarded_host(
    database: str, tmp_path: Path
) -> None:
    await home(database, "88.TEST")
    await put_record(database, "88.TEST/P1", _url_record("https://example.org/p1"))
    forged = {**SECURE, "X-Forwarded-Host": "evil.example", "Host": "id.example.cn"}
    async with running_node(database, behind_trusted_proxy()) as node:
        _, png, _ = await _qr(node, "/qr/88.TEST/P1.png", headers=forged)
        assert zbar(_write(tmp_path / "a.png", png)) == "HTTPS://ID.EXAMPLE.CN/88.TEST/P1"
    async with running_node(database) as node:  # 127.0.0.1 is not a trusted proxy here
        _, png, _ = await _qr(node, "/qr/88.TEST/P1.png", headers=forged)
        assert zbar(_write(tmp_path / "b.png", png)) == "HTTP://ID.EXAMPLE.CN/88.TEST/P1"
    async with running_node(database, Settings(public_url="https://id.example.cn/hdl")) as node:
        status, png, response = await _qr(node, "/qr/88.TEST/P1.png", headers=forged)
        assert (status, response.headers["Cache-Control"]) == (200, "public, max-age=3600")
        assert zbar(_write(tmp_path / "c.png", png)) == "https://id.example.cn/hdl/88.TEST/P1"


# --- idnode qr / idnode labels --------------------------------------------------------------------------------


async def test_cli_writes_codes_and_a_label_sheet_for_a_prefix(database: str, tmp_path: Path) -> None:
    await home(database, "88.TEST")
    for name in ("P1", "P2", "<b>&x"):
        await put_record(database, f"88.TEST/{name}", _url_record(f"https://example.org/{name}"))
    public = "--public-url=https://id.example.cn"
    done = idnode(database, tmp_path, "qr", "88.TEST/P1", "-o", "one.png", "--ecc", "h", public)
    assert done.returncode == 0, done.stderr
    assert zbar(tmp_path / "one.png") == "HTTPS://ID.EXAMPLE.CN/88.TEST/P1"
    done = idnode(database, tmp_path, "qr", "88.TEST/P1", "-o", "one.svg", public)
    assert zbar(svg_to_pbm((tmp_path / "one.svg").read_bytes(), tmp_path / "one.pbm")) == (
        "HTTPS://ID.EXAMPLE.CN/88.TEST/P1"
    )
    assert idnode(database, tmp_path, "qr", "88.TEST/none", "-o", "x.png", public).returncode == 1
    assert not (tmp_path / "x.png").exists()
    refused = idnode(database, tmp_path, "qr", "88.TEST/P1", "-o", "x.gif", public)
    assert refused.returncode == 2 and ".svg or .png" in refused.stderr
    unset = idnode(database, tmp_path, "qr", "88.TEST/P1", "-o", "x.png")
    assert unset.returncode == 2 and "public_url" in unset.stderr and "Traceback" not in unset.stderr
    assert idnode(database, tmp_path, "qr", "88.TEST/P1", "-o", "x.png", "--scale", "99", public).returncode == 2

    done = idnode(database, tmp_path, "labels", "--prefix", "88.test", "--out", "labels", "--format", "png", public)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "labels"
    assert sorted(p.name for p in out.iterdir()) == ["%3Cb%3E%26x.png", "P1.png", "P2.png", "labels.html"]
    assert zbar(out / "P2.png") == "HTTPS://ID.EXAMPLE.CN/88.TEST/P2"
    assert zbar(out / "%3Cb%3E%26x.png") == "HTTPS://ID.EXAMPLE.CN/88.TEST/%3CB%3E%26X"
    sheet = (out / "labels.html").read_text()
    assert sheet.count('<div class="label">') == 3 and "<p>88.TEST/&lt;b&gt;&amp;x</p>" in sheet
    assert "<b>" not in sheet and "size: A4" in sheet and "viewBox" in sheet
    assert idnode(database, tmp_path, "labels", "--prefix", "77.NONE", "--out", "none", public).returncode == 1
