"""The matching engine shared by the Bybit and OKX emulators (tests/fakes/bybit_server.py,
okx_server.py): an account with one-way or hedge position mode, cross or isolated margin
per symbol, market / limit / conditional orders that trigger on the last or the mark price,
reduce-only semantics, a wallet. The venue servers only translate their protocol to it.

Positions are keyed (symbol, leg): leg "net" in one-way mode (signed quantity), "long" /
"short" in hedge mode (positive quantity). Every order change calls `on_order(order)` and
every position change `on_position(position)` so the servers can push them.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

TAKER_FEE = Decimal("0.0005")


def d(value: Any) -> Decimal:
    return Decimal(str(value))


def s(value: Decimal | float | int) -> str:
    text = format(d(value).normalize(), "f")
    return text if text not in ("-0", "") else "0"


def ms() -> int:
    return int(time.time() * 1000)


class VenueError(Exception):
    """A refusal; `kind` says what happened, the server turns it into the venue's code."""

    def __init__(self, kind: str, msg: str) -> None:
        super().__init__(msg)
        self.kind = kind
        self.msg = msg


@dataclass
class VMarket:
    id: str  # venue id: BTCUSDT / BTC-USDT-SWAP
    base: str
    quote: str = "USDT"
    tick: str = "0.1"
    step: str = "0.001"  # quantity step (OKX: contracts)
    min_qty: str = "0.001"
    contract_size: str = "1"
    max_leverage: int = 100


@dataclass
class VPosition:
    symbol: str
    leg: str  # net | long | short
    qty: Decimal = Decimal(0)  # net: signed; long/short: >= 0
    entry: Decimal = Decimal(0)
    leverage: int = 10
    created: int = 0
    updated: int = 0
    sl: Decimal = Decimal(0)  # Bybit position TP/SL (trading-stop), 0 = none
    tp: Decimal = Decimal(0)
    sl_ref: str = "last"  # what the position TP/SL trigger on
    tp_ref: str = "last"

    @property
    def signed(self) -> Decimal:
        return -self.qty if self.leg == "short" else self.qty

    @property
    def side(self) -> str:
        return "long" if self.signed > 0 else "short" if self.signed < 0 else ""


@dataclass
class VOrder:
    id: str
    client_id: str
    symbol: str
    side: str  # buy | sell
    kind: str  # market | limit | stop | take_profit
    qty: Decimal
    leg: str  # net | long | short
    price: Decimal = Decimal(0)
    trigger: Decimal = Decimal(0)
    trigger_ref: str = "last"  # last | mark
    reduce_only: bool = False
    margin_mode: str = "cross"
    status: str = "new"  # new | partially_filled | filled | cancelled | rejected | triggered
    filled: Decimal = Decimal(0)
    cum_quote: Decimal = Decimal(0)
    fee: Decimal = Decimal(0)
    created: int = 0
    updated: int = 0
    algo: bool = False  # OKX: lives in the algo book
    parent: str | None = None  # the conditional order that created this one
    child: str | None = None  # the order this conditional one created
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def avg(self) -> Decimal:
        return self.cum_quote / self.filled if self.filled else Decimal(0)

    @property
    def is_open(self) -> bool:
        return self.status in ("new", "partially_filled")

    @property
    def conditional(self) -> bool:
        return self.kind in ("stop", "take_profit")


@dataclass
class VTrade:
    """One execution of an order (OKX: a row of its fills)."""

    id: str
    order_id: str
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    fee: Decimal
    ts: int


class VenueCore:
    def __init__(self) -> None:
        self.markets: dict[str, VMarket] = {}
        self.prices: dict[str, Decimal] = {}
        self.marks: dict[str, Decimal] = {}
        self.positions: dict[tuple[str, str], VPosition] = {}
        self.orders: dict[str, VOrder] = {}
        self.hedge_mode = False
        self.margin_modes: dict[str, str] = {}  # symbol → cross | isolated
        self.leverage: dict[str, int] = {}
        self.wallet = Decimal("100000")
        self._ids = itertools.count(1_000_001)
        self.on_order: Callable[[VOrder], Awaitable[None]] | None = None
        self.on_position: Callable[[VPosition], Awaitable[None]] | None = None
        self.insufficient = False
        # OKX: a triggered algo order creates a new order (its child); Bybit: the
        # conditional order itself becomes a market order and fills under its own id
        self.conditional_children = True
        self.taker_fee = TAKER_FEE  # what the account is charged (the market lists 5 bp)
        self.trades: list[VTrade] = []  # every execution, in the order they happened

    # ------------------------------------------------------------ setup
    def add_market(self, m: VMarket, price: str | float) -> None:
        self.markets[m.id] = m
        self.prices[m.id] = d(price)
        self.leverage.setdefault(m.id, 10)

    def mark(self, symbol: str) -> Decimal:
        return self.marks.get(symbol, self.prices[symbol])

    def leg_for(self, side: str, reduce_only: bool) -> str:
        if not self.hedge_mode:
            return "net"
        return "long" if (side == "buy") != reduce_only else "short"

    def position(self, symbol: str, leg: str) -> VPosition:
        key = (symbol, leg)
        if key not in self.positions:
            self.positions[key] = VPosition(symbol, leg, leverage=self.leverage.get(symbol, 10))
        return self.positions[key]

    def set_position(self, symbol: str, side: str, qty: str | float, entry: str | float,
                     leverage: int | None = None) -> VPosition:
        """A position opened elsewhere (the venue's app, another bot)."""
        leg = "net" if not self.hedge_mode else side
        pos = self.position(symbol, leg)
        q = d(qty)
        pos.qty = -q if (leg == "net" and side == "short") else q
        pos.entry = d(entry)
        pos.created = pos.created or ms()
        pos.updated = ms()
        if leverage:
            pos.leverage = leverage
            self.leverage[symbol] = leverage
        return pos

    def open_positions(self) -> list[VPosition]:
        return [p for p in self.positions.values() if p.qty != 0]

    def open_orders(self, symbol: str | None = None) -> list[VOrder]:
        return [o for o in self.orders.values()
                if o.is_open and (symbol is None or o.symbol == symbol)]

    def find(self, oid: str | None = None, client_id: str | None = None) -> VOrder | None:
        if oid:
            return self.orders.get(oid)
        if client_id:
            matches = [o for o in self.orders.values() if o.client_id == client_id
                       and o.parent is None]
            return matches[-1] if matches else None
        return None

    # ------------------------------------------------------------ orders
    async def place(self, *, symbol: str, side: str, kind: str, qty: Decimal,
                    client_id: str, leg: str, price: Decimal = Decimal(0),
                    trigger: Decimal = Decimal(0), trigger_ref: str = "last",
                    reduce_only: bool = False, margin_mode: str | None = None,
                    algo: bool = False, extra: dict[str, Any] | None = None) -> VOrder:
        m = self.markets.get(symbol)
        if m is None:
            raise VenueError("symbol", f"unknown symbol {symbol}")
        if side not in ("buy", "sell"):
            raise VenueError("param", f"invalid side {side}")
        if qty <= 0 or qty % d(m.step) != 0 or qty < d(m.min_qty):
            raise VenueError("qty", f"invalid quantity {qty}")
        if client_id and any(o.client_id == client_id and o.parent is None
                             for o in self.orders.values()):
            raise VenueError("duplicate", f"duplicate client order id {client_id}")
        if (leg == "net") == self.hedge_mode:
            raise VenueError("position_mode", "position mode does not match the order")
        sym_mode = self.margin_modes.get(symbol, "cross")
        if margin_mode is not None and margin_mode != sym_mode:
            raise VenueError("margin_mode", f"the position is {sym_mode} margin, order says "
                             f"{margin_mode}")
        closes = reduce_only or (leg == "long" and side == "sell") or \
            (leg == "short" and side == "buy")
        pos = self.positions.get((symbol, leg))
        if closes:
            signed = pos.signed if pos else Decimal(0)
            if signed == 0 or (signed > 0) == (side == "buy"):
                raise VenueError("reduce_only", "reduce-only order has no position to reduce")
        elif self.insufficient:
            raise VenueError("funds", "insufficient available balance")
        if kind in ("stop", "take_profit"):
            if trigger <= 0:
                raise VenueError("param", "trigger price missing")
            ref = self.mark(symbol) if trigger_ref == "mark" else self.prices[symbol]
            if self._would_trigger(kind, side, trigger, ref):
                raise VenueError("trigger", f"trigger price {trigger} is already crossed "
                                 f"(current {ref})")
        now = ms()
        order = VOrder(id=str(next(self._ids)), client_id=client_id, symbol=symbol, side=side,
                       kind=kind, qty=qty, leg=leg, price=price, trigger=trigger,
                       trigger_ref=trigger_ref, reduce_only=closes, margin_mode=sym_mode,
                       created=now, updated=now, algo=algo, extra=dict(extra or {}))
        self.orders[order.id] = order
        await self._emit(order)
        if kind == "market":
            await self.fill(order, self.prices[symbol])
        elif kind == "limit" and self._limit_crosses(order, self.prices[symbol]):
            await self.fill(order, order.price)
        return order

    async def cancel(self, order: VOrder) -> VOrder:
        if not order.is_open:
            raise VenueError("not_found", "order not exists or too late to cancel")
        order.status = "cancelled"
        order.updated = ms()
        await self._emit(order)
        return order

    @staticmethod
    def _would_trigger(kind: str, side: str, trigger: Decimal, price: Decimal) -> bool:
        if kind == "stop":  # a sell stop fires when the price falls to it
            return price <= trigger if side == "sell" else price >= trigger
        return price >= trigger if side == "sell" else price <= trigger

    @staticmethod
    def _limit_crosses(order: VOrder, price: Decimal) -> bool:
        return price <= order.price if order.side == "buy" else price >= order.price

    async def fill(self, order: VOrder, price: Decimal) -> None:
        pos = self.position(order.symbol, order.leg)
        qty = order.qty - order.filled
        direction = Decimal(1) if order.side == "buy" else Decimal(-1)
        if order.reduce_only:
            signed = pos.signed
            if signed == 0 or (signed > 0) == (direction > 0):
                order.status = "cancelled"
                order.updated = ms()
                order.extra["cancel_reason"] = "reduce_only"
                await self._emit(order)
                return
            qty = min(qty, abs(signed))
        realized = Decimal(0)
        signed = pos.signed
        delta = direction * qty
        if signed == 0 or (signed > 0) == (delta > 0):
            total = signed + delta
            pos.entry = (pos.entry * abs(signed) + price * qty) / abs(total)
            new = total
        else:
            closing = min(qty, abs(signed))
            realized = (price - pos.entry) * closing * (1 if signed > 0 else -1)
            new = signed + direction * closing
            if new == 0:
                pos.entry = Decimal(0)
            if qty > closing:  # one-way flip
                new = direction * (qty - closing)
                pos.entry = price
        pos.qty = -new if pos.leg == "short" else new
        if pos.leg == "net" or pos.qty != 0:
            pos.created = pos.created or ms()
        if pos.qty == 0:
            pos.created = 0
            pos.sl = pos.tp = Decimal(0)
        pos.updated = ms()
        fee = price * qty * self.taker_fee * d(self.markets[order.symbol].contract_size)
        self.wallet += realized * d(self.markets[order.symbol].contract_size) - fee
        order.filled += qty
        order.cum_quote += price * qty
        order.fee += fee
        order.status = "filled" if order.filled >= order.qty else "partially_filled"
        order.updated = ms()
        self.trades.append(VTrade(str(next(self._ids)), order.id, order.symbol, order.side,
                                  qty, price, fee, order.updated))
        order.extra["last_qty"] = qty
        order.extra["last_price"] = price
        await self._emit(order)
        if self.on_position is not None:
            await self.on_position(pos)

    async def set_price(self, symbol: str, price: str | float, mark: str | float | None = None
                        ) -> None:
        """Move the last price (and the mark with it unless `mark` says otherwise)."""
        self.prices[symbol] = d(price)
        self.marks[symbol] = d(mark) if mark is not None else d(price)
        await self.match(symbol)

    async def set_mark(self, symbol: str, mark: str | float) -> None:
        self.marks[symbol] = d(mark)
        await self.match(symbol)

    async def match(self, symbol: str) -> None:
        price = self.prices[symbol]
        for o in list(self.orders.values()):
            if o.symbol != symbol or not o.is_open:
                continue
            if o.kind == "limit" and self._limit_crosses(o, price):
                await self.fill(o, o.price)
            elif o.conditional:
                ref = self.mark(symbol) if o.trigger_ref == "mark" else price
                if self._would_trigger(o.kind, o.side, o.trigger, ref):
                    await self.trigger(o, price)
        for pos in [p for p in self.positions.values() if p.symbol == symbol and p.qty]:
            for level, kind, ref in ((pos.sl, "stop", pos.sl_ref),
                                     (pos.tp, "take_profit", pos.tp_ref)):
                at = self.mark(symbol) if ref == "mark" else price
                if level and pos.qty and self._would_trigger(
                        kind, "sell" if pos.signed > 0 else "buy", level, at):
                    await self.place(symbol=symbol, side="sell" if pos.signed > 0 else "buy",
                                     kind="market", qty=abs(pos.signed), client_id="",
                                     leg=pos.leg, reduce_only=True,
                                     extra={"create_type": "CreateByStopLoss"
                                            if kind == "stop" else "CreateByTakeProfit"})

    async def trigger(self, cond: VOrder, price: Decimal) -> VOrder:
        """A conditional order fires: it creates a market order (its child)."""
        cond.status = "triggered"
        cond.updated = ms()
        if not self.conditional_children:
            await self._emit(cond)
            cond.status = "new"
            await self.fill(cond, price)
            return cond
        child = VOrder(id=str(next(self._ids)), client_id=cond.client_id if not cond.algo
                       else "", symbol=cond.symbol, side=cond.side, kind="market",
                       qty=cond.qty, leg=cond.leg, reduce_only=cond.reduce_only,
                       margin_mode=cond.margin_mode, created=cond.updated,
                       updated=cond.updated, parent=cond.id)
        cond.child = child.id
        self.orders[child.id] = child
        await self._emit(cond)
        await self._emit(child)
        await self.fill(child, price)
        cond.filled = child.filled
        cond.cum_quote = child.cum_quote
        cond.status = "filled" if child.status == "filled" else "cancelled"
        cond.updated = ms()
        await self._emit(cond)
        return child

    async def _emit(self, order: VOrder) -> None:
        if self.on_order is not None:
            await self.on_order(order)
