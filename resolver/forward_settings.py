"""Settings of the hierarchy: the node above, how this node describes itself, and the forwarding bounds.

Kept apart from ``forward.py`` so that ``config.py`` (which reads every option) does not import the forwarding
machinery, as ``CacheSettings`` and ``ChangesSettings`` sit apart from nothing heavier than their stages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["HierarchySettings"]


@dataclass(frozen=True, slots=True)
class HierarchySettings:
    """Options ``upstream*``, ``advertise_url``, ``forward_*``, ``serve_stale`` and ``max_referrals``.

    Without ``upstream`` a node follows only its own delegations and answers any other foreign prefix 400 rc 301,
    as before the hierarchy.
    """

    upstream: tuple[str, ...] = ()
    advertise_url: str | None = None
    upstream_identity: str | None = None
    upstream_secret: str | None = None
    upstream_ca: Path | None = None
    report_interval: float = 60.0
    forward_timeout: float = 3.0
    forward_min_ttl: float = 5.0
    forward_max_ttl: float = 3600.0
    forward_negative_ttl: float = 60.0
    serve_stale: float = 86400.0
    max_referrals: int = 8
