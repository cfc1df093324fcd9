"""Settings of replication: following another node as its mirror (DR node), and waiting for mirrors (primary).

Kept apart from ``registry/mirror.py`` so that ``config.py`` (which reads every option, and may not import the
registry) stays free of the follower's machinery, as ``HierarchySettings`` sits apart from ``forward.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["MirrorSettings"]


@dataclass(frozen=True, slots=True)
class MirrorSettings:
    """Options ``mirror_of``, ``mirror_identity``, ``mirror_secret``, ``mirror_ca`` (a mirror follows the change
    feed of ``mirror_of`` as that operator identity) and ``sync_mirrors``, ``sync_mirror_timeout`` (a primary
    acknowledges a handle write only once that many mirrors hold it)."""

    mirror_of: str | None = None
    mirror_identity: str | None = None
    mirror_secret: str | None = None
    mirror_ca: Path | None = None
    sync_mirrors: int = 0
    sync_mirror_timeout: float = 5.0
