"""Venue adapters: one class per first-class venue over the shared ccxt base.

`create_exchange` (pmgui.exchange.venues.factory) picks the class; `mapping` turns ccxt's
dicts into domain objects; `codes` maps each venue's error codes.
"""
