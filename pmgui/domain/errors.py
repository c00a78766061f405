"""Typed errors with messages written for a trader, not a developer."""

from __future__ import annotations


class PmguiError(Exception):
    """Base of every error pmgui raises on purpose. `str(e)` is shown to the user as is."""


class ValidationError(PmguiError):
    """Bad input: a command, a dialog value, a config value. Nothing was changed."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class PositionNotFound(PmguiError):
    pass


class ExchangeError(PmguiError):
    """The exchange refused or failed; `retryable` says whether trying again may help."""

    retryable = False


class RetryableExchangeError(ExchangeError):
    retryable = True


class InsufficientFunds(ExchangeError):
    pass


class InvalidOrder(ExchangeError):
    pass


class OrderWouldTriggerImmediately(InvalidOrder):
    pass


class AuthenticationError(ExchangeError):
    pass


class StoreError(PmguiError):
    """The database cannot be used (corrupt, newer schema, unwritable). Never overwritten."""


class ConfigError(PmguiError):
    """A configuration file is wrong; the message names the key and the line."""
