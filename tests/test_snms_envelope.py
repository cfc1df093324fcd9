"""SNMS status codes for idnode's errors (pure unit: the mapping every SNMS endpoint answers with)."""

from __future__ import annotations

import orjson
import pytest

from registry.snms_envelope import snms_error, snms_status
from resolver.errors import (
    AuthenticationNeeded,
    BadCredentials,
    DatabaseUnavailable,
    HandleAlreadyExists,
    HandleNotFound,
    InsufficientPermissions,
    InternalError,
    InvalidValue,
    ProtocolError,
    TooManyFailures,
)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (AuthenticationNeeded("log in"), -1),
        (BadCredentials(), -1),
        (TooManyFailures(30.0), -1),
        (InsufficientPermissions("no"), -3),
        (InternalError("boom"), -4),
        (DatabaseUnavailable(), -4),
        (HandleNotFound(), -2),
        (HandleAlreadyExists(), -2),
        (InvalidValue("value[0].index: not a number"), -2),
        (ProtocolError("Malformed JSON body"), -2),
    ],
)
def test_each_error_family_has_its_snms_status(error, status):
    assert snms_status(error) == status


def test_the_envelope_names_the_handle_and_keeps_retry_after():
    answer = snms_error(HandleNotFound(handle="88.1/X"))
    assert answer.status == 200
    assert orjson.loads(answer.body) == {"status": -2, "message": "Handle not found: 88.1/X", "data": None}
    busy = snms_error(DatabaseUnavailable())
    assert busy.status == 503
    assert "Retry-After" in busy.headers
    assert orjson.loads(busy.body)["status"] == -4
