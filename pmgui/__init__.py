"""pmgui — a live position monitor and manager for crypto-futures traders."""

from pmgui.identity import version as _version

__version__ = _version()
