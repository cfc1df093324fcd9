"""The stages every handle write passes through, built once and shared by the single and the batch endpoints."""

from __future__ import annotations

from dataclasses import dataclass

from registry.auth import Authenticator
from registry.cached import CachedRecords
from registry.metrics import RegistryMetrics
from registry.permissions import Permissions
from registry.templates import TemplateCheck
from resolver.prefixes import PrefixTable

__all__ = ["WriteStages"]


@dataclass(frozen=True, slots=True)
class WriteStages:
    """Who may write (auth, permissions), what is valid (prefixes, templates, size) and what is counted."""

    prefixes: PrefixTable
    records: CachedRecords
    auth: Authenticator
    permissions: Permissions
    check_template: TemplateCheck
    metrics: RegistryMetrics
    max_handle_bytes: int
