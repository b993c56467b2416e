"""Errors that belong to one clip: they end as a row of the failures table, never stop a run."""

from __future__ import annotations


class ClipError(Exception):
    """A problem with one clip, raised where the cause is known.

    ``kind`` is a short machine-readable class for the failures table
    (``bad_input``, ``decode``, ``mask``, ``oom``, ``model`` ...).
    """

    def __init__(self, message: str, kind: str = "bad_input"):
        super().__init__(message)
        self.kind = kind


class ConfigError(Exception):
    """A problem with the run as a whole (bad config, unreadable dataset): stops before any GPU work."""
