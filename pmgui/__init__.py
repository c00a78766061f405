"""pmgui — a live position monitor and manager for crypto-futures traders."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    # the installed version is read from the package metadata only when asked
    # (importlib.metadata costs tens of milliseconds at every start otherwise)
    if name == "__version__":
        from pmgui.identity import version

        value = globals()["__version__"] = version()
        return value
    raise AttributeError(f"module 'pmgui' has no attribute {name!r}")
