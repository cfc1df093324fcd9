"""Schemathesis fuzzes the whole API from the document the node serves (``GET /api/openapi.json``), over TLS,
anonymously, as an enterprise and as the node operator: no answer may be a 5xx, and every answer must be one
the document describes (status, media type, headers, body schema), while requests the document calls invalid
must be refused.

Schemathesis runs as its own process (its CLI runs every phase: examples, coverage of edge values including NUL
characters, random fuzzing, stateful sequences) while the node serves from this test's event loop. The seed is
fixed, so a failure reproduces; the output names each failing case with a ``curl`` line to replay it.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from registry.enterprises import Credentials
from tests.support import (
    REPO,
    Node,
    basic,
    enterprises_and_operator,
    fresh_database,
    put_record,
    running_node,
    self_signed_context,
)

SEED = 20261201
EXAMPLES = 40
"""Per operation and phase; about 20 s per identity on the project's 2-core machine."""

CONFIG = """
# Schemathesis drops generated path values it cannot place in a URL; on GET /api/handles/{handle}/history that
# can be most of them for a seed, which Hypothesis reports as a health-check error, not as a finding.
suppress-health-check = ["filter_too_much"]

[checks]
# Requests the document allows may still be refused: it types a handle as any string, while the node refuses
# control characters and prefixes it does not home with a documented 400.
positive_data_acceptance.enabled = false

[[operations]]
# Any method on /api/handles is read as a request for the empty handle, 400 rc 102 as Handle.Net answers it
# (transcripts C3, C4); and a handle may end in "/history", so a PUT or DELETE on .../history is a write of that
# handle, documented under /api/handles/{handle}.
# OPTIONS on these paths is answered by the handle route, with Handle.Net's fixed Allow list for a handle
# (transcript B22), naming methods that only /api/handles/{handle} has.
include-path = ["/api/handles", "/api/handles/{handle}/history"]
checks.unsupported_method.enabled = false
checks.allow_header_conformance.enabled = false

[[operations]]
# The SNMS-compatible API answers everything with HTTP 200 and its envelope, as SNMS does (README "SNMS
# compatibility"): a missing token is status -1, a malformed body or a method it does not have -2. The answers
# must still match the documented envelope and never be a 5xx. /snms/api/v5/template likewise.
include-path-regex = "^/(identity|snms/)"
checks.negative_data_rejection.enabled = false
checks.missing_required_header.enabled = false
checks.ignored_auth.enabled = false
checks.unsupported_method.enabled = false
"""
"""Every other check runs: no 5xx; status, media type, headers and body as documented; requests the document
calls invalid refused with a 4xx; ``Allow`` of OPTIONS as documented."""

OWN_NAMES = """
[[operations]]
# The enterprise writes to a handle and templates of its own, so that values and template items are decoded,
# authorized and stored rather than refused at "prefix not homed here" (the anonymous run fuzzes the names).
include-path = "/api/handles/{handle}"
parameters = { "path.handle" = "88.A/fuzz" }

[[operations]]
include-path-regex = "^/api/templates/"
parameters = { "path.prefix" = "88.A" }
"""

_GENERATED = re.compile(r"(\d+) generated")


@dataclass
class Fuzzed:
    node: Node
    credentials: dict[str, Credentials]
    directory: Path


@pytest.fixture(scope="module")
async def fuzzed(
    server_dsn: str, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Fuzzed]:
    """A node over TLS with enterprises A and B, the operator and one record of A's (module-wide: the three runs
    share it; their writes are what a fuzzer may do to a real node)."""
    directory = tmp_path_factory.mktemp("fuzz")
    async with fresh_database(server_dsn, template_database) as database:
        credentials = await enterprises_and_operator(database)
        await put_record(database, "88.A/doc", [{"index": 1, "type": "URL", "data": "https://example.org/doc"}])
        async with running_node(database, ssl_context=self_signed_context(directory / "tls")) as node:
            yield Fuzzed(node, credentials, directory)


async def _fuzz(fuzzed: Fuzzed, config: str, *headers: str) -> tuple[int, str]:
    """Run Schemathesis against the node with ``config`` (TOML); returns its exit status and its report."""
    workdir = fuzzed.directory / f"run-{len(list(fuzzed.directory.iterdir()))}"
    workdir.mkdir()
    (workdir / "schemathesis.toml").write_text(config)
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(workdir / "schemathesis.toml"),
        "run", f"{fuzzed.node.url}/api/openapi.json",
        "--tls-verify", "false",
        "--seed", str(SEED),
        "--max-examples", str(EXAMPLES),
        "--workers", "1",
        "--generation-database", "none",
        "--no-color",
    ]  # fmt: skip
    for header in headers:
        command += ["--header", header]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.fuzz_hooks", "PYTHONPATH": str(REPO)}
    process = await asyncio.create_subprocess_exec(
        *command, cwd=workdir, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode(errors="replace")


@pytest.mark.parametrize("role", [None, "A", "operator"], ids=["anonymous", "enterprise", "operator"])
async def test_fuzzing_the_served_document_finds_no_5xx_and_no_answer_it_does_not_describe(
    fuzzed: Fuzzed, role: str | None
) -> None:
    headers = []
    if role is not None:
        found = fuzzed.credentials[role]
        headers.append("Authorization: " + basic(found.identity, found.secret)["Authorization"])
    status, report = await _fuzz(fuzzed, CONFIG + (OWN_NAMES if role == "A" else ""), *headers)
    assert status == 0, report[-30000:]
    generated = _GENERATED.search(report)
    assert generated is not None and int(generated.group(1)) > 1000, report[-3000:]
