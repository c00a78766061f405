"""API credentials from the OS keyring or environment variables (DESIGN §5, §9).

Never from the config file, SQLite or logs: `Credentials.__repr__`/`__str__` mask the
secrets so that a stray log line or traceback cannot leak them.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from pmgui.domain.errors import AuthenticationError, PmguiError, ValidationError

log = logging.getLogger(__name__)

KEYRING_SERVICE = "pmgui"
ENV_KEY = "PMGUI_API_KEY"
ENV_SECRET = "PMGUI_API_SECRET"
ENV_PASSWORD = "PMGUI_API_PASSWORD"
ENV_NO_KEYRING = "PMGUI_NO_KEYRING"


def _mask(value: str | None) -> str:
    if not value:
        return "<unset>"
    return f"{value[:4]}…" if len(value) > 12 else "***"


@dataclass(frozen=True, slots=True)
class Credentials:
    """An exchange API key. `password` is the passphrase some venues need (OKX)."""

    api_key: str = field(repr=False)
    secret: str = field(repr=False)
    password: str | None = field(default=None, repr=False)
    source: str = "env"  # "keyring" | "env" | "explicit": shown to the trader, never a secret

    def __post_init__(self) -> None:
        if not self.api_key or not self.secret:
            raise AuthenticationError(
                f"Incomplete API credentials from {self.source}: both the API key and the "
                "secret are required")

    def __repr__(self) -> str:
        return (f"Credentials(api_key={_mask(self.api_key)}, secret=***, "
                f"password={'***' if self.password else '<unset>'}, source={self.source!r})")

    __str__ = __repr__

    def ccxt_config(self) -> dict[str, str]:
        """The ccxt constructor keys (apiKey/secret/password)."""
        cfg = {"apiKey": self.api_key, "secret": self.secret}
        if self.password:
            cfg["password"] = self.password
        return cfg


def _from_keyring(exchange_id: str) -> Credentials | None:
    try:
        import keyring
        from keyring.errors import KeyringError
    except ImportError:  # pragma: no cover - keyring is a declared dependency
        return None
    try:
        raw = keyring.get_password(KEYRING_SERVICE, exchange_id)
    except KeyringError as e:
        log.warning("OS keyring unavailable (%s); trying environment variables",
                    type(e).__name__)
        return None
    except Exception as e:  # a broken backend must not stop env-var credentials
        log.warning("OS keyring failed (%s); trying environment variables", type(e).__name__)
        return None
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        raise AuthenticationError(
            f"The keyring entry (service '{KEYRING_SERVICE}', user '{exchange_id}') is not "
            'JSON; store {"apiKey": "...", "secret": "...", "password": "..."}') from None
    if not isinstance(data, dict):
        raise AuthenticationError(
            f"The keyring entry (service '{KEYRING_SERVICE}', user '{exchange_id}') must be a "
            'JSON object {"apiKey": ..., "secret": ..., "password": ...}')
    password = data.get("password") or None
    return Credentials(str(data.get("apiKey") or ""), str(data.get("secret") or ""),
                       str(password) if password else None, source="keyring")


def load_credentials(exchange_id: str,
                     environ: Mapping[str, str] | None = None) -> Credentials | None:
    """Credentials for `exchange_id`: keyring first (unless PMGUI_NO_KEYRING=1), then env.

    Returns None when neither holds any; raises AuthenticationError when what is there is
    incomplete or malformed (a half-configured key is a mistake worth telling, not hiding).
    """
    env = os.environ if environ is None else environ
    if env.get(ENV_NO_KEYRING, "") not in ("1", "true", "yes"):
        found = _from_keyring(exchange_id)
        if found is not None:
            return found
    key = env.get(ENV_KEY, "")
    secret = env.get(ENV_SECRET, "")
    if not key and not secret:
        return None
    if not key or not secret:
        missing = ENV_KEY if not key else ENV_SECRET
        raise AuthenticationError(f"{missing} is not set: both {ENV_KEY} and {ENV_SECRET} are "
                                  "required")
    return Credentials(key, secret, env.get(ENV_PASSWORD) or None, source="env")


class KeyringUnavailable(PmguiError):
    """The OS keyring cannot be used (no backend, locked, disabled); the message says why."""


def _backend(backend: object | None, environ: Mapping[str, str] | None) -> object:
    """The keyring backend to write to: the given one, else the OS default.

    PMGUI_NO_KEYRING=1 disables the default (tests and headless set-ups must never touch
    the user's keyring); an explicitly passed backend is always used.
    """
    if backend is not None:
        return backend
    env = os.environ if environ is None else environ
    if env.get(ENV_NO_KEYRING, "") in ("1", "true", "yes"):
        raise KeyringUnavailable(f"the OS keyring is disabled ({ENV_NO_KEYRING} is set); use "
                                 f"{ENV_KEY} / {ENV_SECRET} instead")
    try:
        import keyring
    except ImportError:  # pragma: no cover - keyring is a declared dependency
        raise KeyringUnavailable("the keyring package is not installed") from None
    return keyring.get_keyring()


def _keyring_failure(action: str, e: Exception) -> KeyringUnavailable:
    from keyring.errors import NoKeyringError

    if isinstance(e, NoKeyringError):
        return KeyringUnavailable(
            f"no OS keyring is available to {action} the API key (install/unlock a Secret "
            f"Service, KWallet, macOS Keychain or Windows Credential Locker), or set "
            f"{ENV_KEY} / {ENV_SECRET} in the environment instead")
    # the type only: a backend's message might echo what it was given
    return KeyringUnavailable(f"the OS keyring could not {action} the API key "
                              f"({type(e).__name__})")


def store_credentials(exchange_id: str, creds: Credentials, *, backend: object | None = None,
                      environ: Mapping[str, str] | None = None) -> None:
    """Save `creds` for `exchange_id` in the keyring as the JSON `load_credentials` reads.

    Raises KeyringUnavailable when there is no usable keyring (nothing is written then) and
    ValidationError for an empty exchange id. Secrets never appear in a message or log.
    """
    if not exchange_id or not exchange_id.strip():
        raise ValidationError("the exchange id must not be empty", field="exchange")
    kr = _backend(backend, environ)
    payload = {"apiKey": creds.api_key, "secret": creds.secret}
    if creds.password:
        payload["password"] = creds.password
    try:
        kr.set_password(KEYRING_SERVICE, exchange_id, json.dumps(payload))  # type: ignore[attr-defined]
    except Exception as e:
        raise _keyring_failure("store", e) from None
    log.info("API credentials for %s stored in the OS keyring", exchange_id)


def delete_credentials(exchange_id: str, *, backend: object | None = None,
                       environ: Mapping[str, str] | None = None) -> bool:
    """Remove the keyring entry of `exchange_id`; False when there was none."""
    from keyring.errors import PasswordDeleteError

    kr = _backend(backend, environ)
    try:
        if kr.get_password(KEYRING_SERVICE, exchange_id) is None:  # type: ignore[attr-defined]
            return False
        kr.delete_password(KEYRING_SERVICE, exchange_id)  # type: ignore[attr-defined]
    except PasswordDeleteError:
        return False
    except Exception as e:
        raise _keyring_failure("delete", e) from None
    log.info("API credentials for %s removed from the OS keyring", exchange_id)
    return True


def credentials_stored(exchange_id: str, *, backend: object | None = None,
                       environ: Mapping[str, str] | None = None) -> bool:
    """Whether the keyring holds an entry for `exchange_id` (its content is not returned)."""
    kr = _backend(backend, environ)
    try:
        return kr.get_password(KEYRING_SERVICE, exchange_id) is not None  # type: ignore[attr-defined]
    except Exception as e:
        raise _keyring_failure("read", e) from None
