"""Schemathesis hooks for ``tests/test_fuzz.py`` (loaded through ``SCHEMATHESIS_HOOKS``): JSON Lines uploads
(``POST /api/enterprises/{prefix}/imports``) are sent as the text Schemathesis generates for them, which it
cannot serialize by itself."""

from __future__ import annotations

import schemathesis

schemathesis.serializer.alias(["application/x-ndjson", "application/jsonl", "application/json-lines"], "text/plain")
