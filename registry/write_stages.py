"""The stages every handle write passes through, built once and shared by the single and the batch endpoints.

``replication`` brackets each write: refused on a mirror before anything else, and after its commit held until
``sync_mirrors`` mirrors have it (``registry/replication.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.auth import Authenticator
from registry.cached import CachedRecords
from registry.metrics import RegistryMetrics
from registry.permissions import Permissions
from registry.replication import Replication
from registry.templates import TemplateCheck
from resolver.prefixes import PrefixTable

__all__ = ["WriteStages"]


@dataclass(frozen=True, slots=True)
class WriteStages:
    """Who may write (auth, permissions), what is valid (prefixes, templates, size), what is counted, and where the
    write must also be before it is acknowledged (replication)."""

    prefixes: PrefixTable
    records: CachedRecords
    auth: Authenticator
    permissions: Permissions
    check_template: TemplateCheck
    metrics: RegistryMetrics
    max_handle_bytes: int
    replication: Replication
