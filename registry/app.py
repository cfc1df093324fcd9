"""The registry's additions to the node application (write routes, authentication), as app extensions.

The read path (``resolver.app.create_app``) takes a list of extensions and calls each before it registers its
catch-all routes; ``extensions()`` is that list for a full node.
"""

from __future__ import annotations

from resolver.app import Extension

__all__ = ["extensions"]


def extensions() -> list[Extension]:
    """Everything the registry adds to a node; empty until the write API lands."""
    return []
