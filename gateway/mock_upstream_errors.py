"""Errors raised by the mock upstreams, the relay and fault injection.

Hierarchy::

    MockError                 base of every error the mock upstreams and the relay raise
    ├── FaultSettingsError    a fault setting that fails validation (runtime PUT or scenario)
    └── ListenError           an address the upstreams or the relay cannot listen on (port in use...)

These live here, not in ``gateway/errors.py``, because that module belongs to the gateway server.
"""

from __future__ import annotations


class MockError(Exception):
    """Base class: a problem with the mock upstreams or the relay, reported as one line."""


class FaultSettingsError(MockError, ValueError):
    """Fault settings that fail validation; ``param`` names the offending field ('' if none)."""

    def __init__(self, message: str, *, param: str = "") -> None:
        super().__init__(message)
        self.param = param


class ListenError(MockError, OSError):
    """An address the upstreams or the relay must listen on is in use or not available."""
