"""Access tokens for the engine service: scopes `read` and `trade`, stored hashed.

Where: `tokens.json` beside the configuration file (not in the database). Why: the running
engine holds the database's writer lock, and `pmgui token create` must work while it runs;
the service re-reads the file when it changes, so a new or revoked token takes effect at
once. The file (mode 0600) holds only SHA-256 digests: a token is 32 random bytes, so a fast
hash is as strong as a slow one, and a leaked file lets nobody in. The token itself is
printed once at creation and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pmgui.domain.errors import PmguiError

SCOPES = ("read", "trade")
PREFIX = "pmgui_"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: str
    scope: str
    label: str
    created: float


def tokens_path(config_path: Path | None) -> Path:
    """`tokens.json` beside the configuration file in use."""
    from pmgui.config import default_config_path

    return (config_path or default_config_path()).with_name("tokens.json")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenStore:
    """The token file; safe to use from several threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._cache: tuple[bytes, list[dict]] | None = None

    def _read(self) -> list[dict]:
        """The file's valid entries. The cache is keyed on the file's bytes, not its mtime
        and size: `pmgui token revoke` then `create` in another process can leave both equal
        (a coarse file-system clock, a label of the same length), and a revoked token would
        have stayed valid in the running service. The file is small and read per command,
        never per tick."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as e:
            raise PmguiError(f"cannot read the token file {self.path}: {e}") from None
        if self._cache is not None and self._cache[0] == raw:
            return self._cache[1]
        try:
            data = json.loads(raw.decode("utf-8"))
        except ValueError as e:
            raise PmguiError(f"cannot read the token file {self.path}: {e}") from None
        entries = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise PmguiError(f"{self.path}: not a pmgui token file")
        valid = [e for e in entries if isinstance(e, dict) and e.get("scope") in SCOPES
                 and isinstance(e.get("hash"), str) and isinstance(e.get("id"), str)]
        self._cache = (raw, valid)
        return valid

    def _write(self, entries: list[dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"tokens": entries}, fh, indent=1)
        os.replace(tmp, self.path)
        self._cache = None

    def create(self, scope: str, label: str = "") -> tuple[str, TokenInfo]:
        """A new token of `scope`: (the token, shown once; its stored description)."""
        if scope not in SCOPES:
            raise PmguiError(f"unknown scope {scope!r}: choose read or trade")
        token = PREFIX + secrets.token_urlsafe(32)
        info = TokenInfo(secrets.token_hex(4), scope, label, time.time())
        with self._lock:
            entries = list(self._read())
            entries.append({"id": info.id, "scope": scope, "label": label,
                            "created": info.created, "hash": digest(token)})
            self._write(entries)
        return token, info

    def list(self) -> list[TokenInfo]:
        with self._lock:
            return [TokenInfo(e["id"], e["scope"], str(e.get("label", "")),
                              float(e.get("created", 0))) for e in self._read()]

    def revoke(self, token_id: str) -> bool:
        with self._lock:
            entries = self._read()
            kept = [e for e in entries if e["id"] != token_id]
            if len(kept) == len(entries):
                return False
            self._write(kept)
            return True

    def scope_of(self, token: str) -> str | None:
        """The scope `token` grants, or None (constant-time comparison of digests)."""
        if not token:
            return None
        d = digest(token)
        with self._lock:
            entries = self._read()
        found = None
        for e in entries:
            if hmac.compare_digest(e["hash"], d):
                found = e["scope"]
        return found


class Authenticator:
    """The token store plus tokens that live only as long as this process (the session token
    a background engine writes beside its database for the window that hands over to it)."""

    def __init__(self, store: TokenStore | None) -> None:
        self.store = store
        self._session: dict[str, str] = {}

    def add_session_token(self, scope: str = "trade") -> str:
        token = PREFIX + secrets.token_urlsafe(32)
        self._session[digest(token)] = scope
        return token

    def scope_of(self, token: str) -> str | None:
        d = digest(token)
        for h, scope in self._session.items():
            if hmac.compare_digest(h, d):
                return scope
        return self.store.scope_of(token) if self.store is not None else None
