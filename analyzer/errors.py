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
    """An option given to the API or CLI is invalid.

    With `option` (the API parameter's name) the message speaks of the parameter
    (`allow='XX': ...`) and `cli_message()` of the flag (`--allow XX: ...`), so neither side
    reads the other's vocabulary.
    """

    def __init__(self, detail: str, option: str | None = None, value: object = None) -> None:
        self.detail, self.option, self.value = detail, option, value
        super().__init__(self._render(f"{option}={value!r}" if value is not None else option or ""))

    def _render(self, subject: str) -> str:
        return f"{subject}: {self.detail}" if subject else self.detail

    def cli_message(self) -> str:
        """The message with the parameter spelt as the CLI flag that sets it."""
        if not self.option:
            return str(self)
        flag = "--" + self.option.replace("_", "-")
        return self._render(f"{flag} {self.value}" if self.value is not None else flag)


class EngineUnavailable(ConfscopeError):
    """An optional engine (tshark, scapy) is not installed."""
