"""Compatibility tests: real third-party clients against a live node."""
