"""One error hierarchy for the whole toolkit.

Only `ConfscopeError` (and its subclasses) may leave the public API on bad input; the CLI turns
it into a one-line message and exit code 2.
"""

from __future__ import annotations


class ConfscopeError(Exception):
    """Base of every error confscope raises on purpose."""


class CaptureFormatError(ConfscopeError):
    """The input is not a capture confscope can read at all (empty, wrong magic, ERF, text)."""


class GeoDatabaseError(ConfscopeError):
    """A geolocation database the user named cannot be opened or is of an unknown kind."""


class OptionError(ConfscopeError):
    """An option given to the API or CLI is invalid."""


class EngineUnavailable(ConfscopeError):
    """An optional engine (tshark, scapy) is not installed."""
