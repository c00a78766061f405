"""The SQLite schema of DESIGN §6, created through sqlite-utils.

Why explicit `create()` calls instead of letting sqlite-utils infer tables from the first
insert: the column types, NOT NULL constraints, primary keys and foreign keys are part of the
contract (a fill id is unique, an order link points at a journaled order), and an inferred
schema would depend on whichever row happened to come first.

Tables (schema version 1):
- `meta`        key/value: `schema_version`, `app`, `created_at`.
- `positions`   one row per position (open and closed), every `Position` field; `overrides`
                is a JSON object, `flags` a sorted JSON list.
- `tranches`    the fills that built a position (seed 002), ordered by `seq`.
- `orders`      every order pmgui intended or placed, keyed by its client order id; a row in
                status `pending` is the journal entry written BEFORE the order is sent.
- `order_links` position ↔ order with the role the order plays (entry, SL, TP, reduce, add).
- `fills`       executions, keyed by the exchange's fill id (idempotent recording).
- `actions`     every rule decision and manual command, with its reason and inputs (JSON).
- `equity`      account equity and wallet balance over time.
- `settings`    key → JSON value.
"""

from __future__ import annotations

from pmgui.store.sqlite_lib import Database

TABLES = ("meta", "positions", "tranches", "orders", "order_links", "fills", "actions", "equity",
          "settings")


def create_v1(db: Database) -> None:
    """Create every table and index of schema version 1 (called inside a transaction)."""
    db["meta"].create({"key": str, "value": str}, pk="key", not_null={"value"})

    db["positions"].create(
        {
            "id": str, "symbol": str, "side": str, "status": str, "qty": float, "entry": float,
            "leverage": float, "opened_at": float, "initial_qty": float, "sl": float,
            "tp": float, "initial_sl": float, "sl_kind": str, "trailing": float,
            "liquidation": float, "fee_rate": float, "contract_size": float, "preset": str,
            "overrides": str, "automation": int, "peak_roi": float, "best_price": float,
            "flags": str, "realized_pnl": float, "fees_paid": float, "closed_at": float,
            "exit_price": float, "exit_reason": str, "exchange": str, "updated_at": float,
        },
        pk="id",
        not_null={"symbol", "side", "status", "qty", "entry", "leverage", "opened_at",
                  "initial_qty", "sl_kind", "fee_rate", "contract_size", "preset", "overrides",
                  "automation", "peak_roi", "flags", "realized_pnl", "fees_paid", "exchange",
                  "updated_at"},
    )
    db["positions"].create_index(["status"], index_name="idx_positions_status")
    db["positions"].create_index(["symbol", "side"], index_name="idx_positions_symbol_side")
    db["positions"].create_index(["closed_at"], index_name="idx_positions_closed_at")

    db["tranches"].create(
        {"position_id": str, "id": str, "seq": int, "qty": float, "entry": float,
         "opened_at": float, "sl": float, "tp": float, "source": str},
        pk=("position_id", "id"),
        not_null={"seq", "qty", "entry", "opened_at", "source"},
        foreign_keys=[("position_id", "positions", "id")],
    )

    db["orders"].create(
        {
            "client_id": str, "symbol": str, "side": str, "type": str, "amount": float,
            "status": str, "exchange_id": str, "price": float, "trigger_price": float,
            "filled": float, "average": float, "reduce_only": int, "position_id": str,
            "role": str, "reason": str, "created_at": float, "updated_at": float, "error": str,
        },
        pk="client_id",
        not_null={"symbol", "side", "type", "amount", "status", "filled", "reduce_only", "role",
                  "created_at", "updated_at"},
    )
    db["orders"].create_index(["status"], index_name="idx_orders_status")
    db["orders"].create_index(["position_id"], index_name="idx_orders_position")
    db["orders"].create_index(["exchange_id"], index_name="idx_orders_exchange_id")

    db["order_links"].create(
        {"position_id": str, "client_id": str, "role": str, "created_at": float},
        pk=("position_id", "client_id"),
        not_null={"role", "created_at"},
        foreign_keys=[("client_id", "orders", "client_id")],
    )
    db["order_links"].create_index(["client_id"], index_name="idx_order_links_client")

    db["fills"].create(
        {"id": str, "order_client_id": str, "position_id": str, "symbol": str, "side": str,
         "qty": float, "price": float, "fee": float, "ts": float, "exchange_order_id": str,
         "liquidation": int},
        pk="id",
        not_null={"symbol", "side", "qty", "price", "fee", "ts", "liquidation"},
    )
    db["fills"].create_index(["position_id", "ts"], index_name="idx_fills_position")
    db["fills"].create_index(["order_client_id"], index_name="idx_fills_order")

    db["actions"].create(
        {"id": int, "ts": float, "position_id": str, "symbol": str, "type": str, "reason": str,
         "price": float, "qty": float, "sl": float, "tp": float, "rule": str, "priority": int,
         "inputs": str, "flags": str, "stop_kind": str, "is_limit": int, "ok": int,
         "detail": str},
        pk="id",
        not_null={"ts", "position_id", "symbol", "type", "reason", "price", "rule", "priority",
                  "inputs", "flags", "is_limit", "ok", "detail"},
    )
    db["actions"].create_index(["position_id", "id"], index_name="idx_actions_position")

    db["equity"].create({"ts": float, "equity": float, "balance": float}, pk="ts",
                        not_null={"equity", "balance"})

    db["settings"].create({"key": str, "value": str}, pk="key", not_null={"value"})
