"""Per-prefix look-up counts for the operation statistics (运营统计), kept as plain integers.

Every cached entry holds the ``Tally`` of its handle's prefix (``Cache.put`` hands it out), so the hot path counts
a hit per prefix with one attribute increment and no look-up; slower paths ask :meth:`PrefixTallies.of` by key.
``drain`` reads and zeroes every tally at once (no await in between, so nothing counted meanwhile is lost); the
statistics recorder adds what it drained to PostgreSQL once a minute. A tally outlives a drain, so an entry's
reference stays valid. At most ``MAX_PREFIXES`` prefixes are told apart (a client asking for random prefixes must
not grow memory without bound); look-ups of any further prefix are counted under ``OTHER``.
"""

from __future__ import annotations

__all__ = ["MAX_PREFIXES", "OTHER", "OUTCOMES", "PrefixTallies", "Tally", "prefix_of_key"]

OUTCOMES = ("hit", "miss", "not_found", "forwarded", "stale", "error")
MAX_PREFIXES = 100_000
OTHER = "(other)"


class Tally:
    """Look-ups of one prefix by outcome since the last drain."""

    __slots__ = OUTCOMES

    def __init__(self) -> None:
        self.hit = self.miss = self.not_found = self.forwarded = self.stale = self.error = 0

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in OUTCOMES}


def prefix_of_key(key: str) -> str:
    """The prefix a handle key is counted under: its own, or ``P`` for the prefix handle ``0.NA/P``."""
    prefix, _, suffix = key.partition("/")
    return suffix if prefix == "0.NA" and suffix else prefix


class PrefixTallies:
    """One ``Tally`` per prefix key (ASCII upper case), created on first use."""

    __slots__ = ("_tallies",)

    def __init__(self) -> None:
        self._tallies: dict[str, Tally] = {}

    def of(self, key: str) -> Tally:
        """The tally of the prefix of handle key ``key``."""
        prefix = prefix_of_key(key)
        tally = self._tallies.get(prefix)
        if tally is None:
            if len(self._tallies) >= MAX_PREFIXES:
                prefix = OTHER
                tally = self._tallies.get(prefix)
            if tally is None:
                tally = self._tallies[prefix] = Tally()
        return tally

    def drain(self) -> dict[str, dict[str, int]]:
        """Every non-zero tally's counts by prefix, zeroing them."""
        drained: dict[str, dict[str, int]] = {}
        for prefix, tally in self._tallies.items():
            counts = tally.counts()
            if any(counts.values()):
                drained[prefix] = counts
                tally.__init__()
        return drained
