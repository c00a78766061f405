"""pmgui — a live position monitor and manager for crypto-futures traders."""

__version__ = "0.1.0"
