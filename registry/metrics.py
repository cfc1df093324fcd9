"""The registry's counters, bumped as plain integers and turned into metric families at scrape time.

Like the read path's (``resolver/metrics.py``): no label look-up or lock per write; ``collect`` is handed to the
app's collector. Metrics:

- ``idnode_registry_writes_total{op,outcome}``: op is one of ``WRITE_OPS``, outcome one of ``WRITE_OUTCOMES``
  (``outcome_of`` maps an error to it);
- ``idnode_auth_failures_total{reason}``: failed authentications (the authenticator's own counts);
- ``idnode_template_validation_failures_total``: registrations refused by their data template;
- ``idnode_batch_items_total``: items processed by the batch write API.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from prometheus_client.core import CounterMetricFamily, Metric

from resolver.errors import HandleError

__all__ = ["WRITE_OPS", "WRITE_OUTCOMES", "RegistryMetrics", "WriteTally", "outcome_of"]

WRITE_OPS = ("create", "replace", "add_values", "delete", "delete_values", "batch")
WRITE_OUTCOMES = ("ok", "client_error", "conflict", "denied", "error")


def outcome_of(error: BaseException | None) -> str:
    """The ``outcome`` label of a write that raised ``error`` (None: it succeeded)."""
    if error is None:
        return "ok"
    if isinstance(error, HandleError):
        if error.response_code in (101, 201):
            return "conflict"
        if error.response_code in (400, 401, 402, 403):
            return "denied"
        if error.http_status < 500:
            return "client_error"
    return "error"


class WriteTally:
    """The operation a write turned out to be; it may change while the write runs (a PUT that replaced)."""

    __slots__ = ("op",)

    def __init__(self, op: str) -> None:
        self.op = op


class RegistryMetrics:
    """Counters of the write path for one app."""

    __slots__ = ("_auth_failures", "batch_items", "template_failures", "writes")

    def __init__(self, auth_failures: Callable[[], Mapping[str, int]]) -> None:
        self.writes = {(op, outcome): 0 for op in WRITE_OPS for outcome in WRITE_OUTCOMES}
        self.template_failures = 0
        self.batch_items = 0
        self._auth_failures = auth_failures

    @contextmanager
    def counting(self, op: str) -> Iterator[WriteTally]:
        """Count one write by its final ``tally.op`` and by how it ended (raised or not)."""
        tally = WriteTally(op)
        try:
            yield tally
        except BaseException as exc:
            self.writes[(tally.op, outcome_of(exc))] += 1
            raise
        self.writes[(tally.op, "ok")] += 1

    def collect(self) -> Iterator[Metric]:
        """The registry's metric families, added to the app's collector."""
        writes = CounterMetricFamily(
            "idnode_registry_writes", "Registry writes by operation and outcome", labels=["op", "outcome"]
        )
        for (op, outcome), value in self.writes.items():
            writes.add_metric([op, outcome], value)
        yield writes
        failures = CounterMetricFamily("idnode_auth_failures", "Failed authentications by reason", labels=["reason"])
        for reason, value in self._auth_failures().items():
            failures.add_metric([reason], value)
        yield failures
        yield CounterMetricFamily(
            "idnode_template_validation_failures",
            "Registrations refused by their data template",
            value=self.template_failures,
        )
        yield CounterMetricFamily(
            "idnode_batch_items", "Items processed by the batch write API", value=self.batch_items
        )
