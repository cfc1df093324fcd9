"""The read path of idnode and the core it shares with the registry: identifiers, records, cache, store."""

__version__ = "0.1.0"
