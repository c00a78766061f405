"""Position actions beyond SL/TP: partial close, add, reverse (from the table's menu, the
keyboard, and the chart, which calls the window's slots of the same names).

Each one states what will happen and asks first, unless the trader turned on one-click
trading (off by default). Values are checked before anything is sent; the engine's answer
is said in the status bar.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject

from pmgui.domain.enums import Side
from pmgui.domain.errors import ValidationError
from pmgui.domain.models import Market, Position
from pmgui.engine.commands import AddToPosition, ClosePosition, CommandResult, OpenPosition
from pmgui.engine.events import PositionSnapshot
from pmgui.ui.confirm import ConfirmDialog
from pmgui.ui.dialogs import AmountDialog, parse_number
from pmgui.ui.fmt import fmt_money, fmt_price, fmt_qty, is_num

if TYPE_CHECKING:
    from pmgui.ui.main_window import MainWindow


def _side(side: Side) -> str:
    return "▲ LONG" if side is Side.LONG else "▼ SHORT"


def fills_text(res: CommandResult | None, market: Market | None,
               market_for: Callable[[str], Market | None] | None = None) -> str:
    """`: filled 0.500 @ 40,090.0 · realized −$12.30`. With `market_for` (a close of several
    positions) each fill is named by its symbol and shown to its own market's tick and step."""
    if res is None or not res.fills:
        return f": {res.message}" if res is not None and res.message else ""
    parts = []
    for f in res.fills:
        qty, price = getattr(f, "qty", None), getattr(f, "price", None)
        if is_num(qty) and is_num(price):
            symbol = getattr(f, "symbol", None)
            m = market_for(symbol) if market_for is not None and symbol else market
            name = f"{symbol} " if market_for is not None and symbol else ""
            parts.append(f"{name}{fmt_qty(qty, m)} @ {fmt_price(price, m)}")
    quote = market.quote if market is not None and market.quote else "USDT"
    pnl = (f" · realized {fmt_money(res.realized_pnl, quote)}" if is_num(res.realized_pnl)
           else "")
    return (": filled " + ", ".join(parts) + pnl) if parts else ""


class PositionActions(QObject):
    """The selected position's trading actions, on behalf of the window."""

    def __init__(self, win: MainWindow) -> None:
        super().__init__(win)
        self.win = win

    def _ask_or_do(self, title: str, text: str, confirm: str, do: Callable[[], object],
                   name: str, position_id: str | None = None) -> None:
        """One-click trading acts at once; otherwise the question states what will happen."""
        if self.win.settings.one_click:
            do()
            return
        if self.win.confirm_dialog is not None and self.win.confirm_dialog.isVisible():
            return
        dlg = ConfirmDialog(title, text, confirm, self.win, object_name=name)
        dlg.position_id = position_id
        dlg.confirmed.connect(do)
        self.win.confirm_dialog = dlg
        dlg.open()

    def close_part(self, fraction: float) -> None:
        """Close `fraction` of the selected position at market (25/50/75 % or custom)."""
        snap = self.win.selected_snapshot()
        if snap is None:
            self.win.notify("Partial close: no position selected")
            return
        if not 0 < fraction <= 1:
            self.win.notify(f"✖ Partial close: {fraction * 100:g} % is not between 0 and 100 %")
            return
        p = snap.position
        market = self.win.engine.market(p.symbol)
        qty = p.qty * fraction
        if market is not None:
            qty = market.floor_amount(qty)
            if qty <= 0 or (market.min_amount and qty < market.min_amount):
                self.win.notify(f"✖ {p.symbol}: {fraction * 100:g} % is "
                            f"{fmt_qty(p.qty * fraction, market)}, below the minimum "
                            f"{fmt_qty(market.min_amount, market)}")
                return
        pct = f"{fraction * 100:g} %"
        text = (f"Close {pct} of {p.symbol} {_side(p.side)}: {fmt_qty(qty, market)} of "
                f"{fmt_qty(p.qty, market)} with a reduce-only MARKET order (last price "
                f"{fmt_price(snap.mark, market)}). The SL/TP orders are resized to the rest.")
        self._ask_or_do(f"Close {pct}", text, f"Close {pct}",
                        lambda: self._send_partial(p.id, p.symbol, fraction), "partialConfirm",
                        p.id)

    def _send_partial(self, pid: str, symbol: str, fraction: float) -> bool:
        key = ("close", pid)
        if self.win.runner.busy(key):
            self.win.notify(f"{symbol}: a close is already on its way")
            return False
        self.win.notify(f"Closing {fraction * 100:g} % of {symbol}…")
        market = self.win.engine.market(symbol)

        def done(res: CommandResult | None, err: str | None) -> None:
            if err is not None:
                self.win.notify(f"✖ {symbol}: partial close failed: {err}", alert=True)
                return
            self.win.notify(f"✔ {symbol}: {fraction * 100:g} % closed"
                            f"{fills_text(res, market)}")  # its own fills and realized P/L

        return self.win.runner.submit(ClosePosition(pid, fraction, "manual"), done, key=key)

    def close_custom(self) -> AmountDialog | None:
        snap = self.win.selected_snapshot()
        if snap is None:
            self.win.notify("Partial close: no position selected")
            return None
        p = snap.position
        market = self.win.engine.market(p.symbol)

        def parse(text: str) -> tuple[float, str]:
            pct = parse_number(text, "Percent")
            if not 0 < pct <= 100:
                raise ValidationError("enter a percentage above 0 and at most 100",
                                      field="percent")
            qty = market.floor_amount(p.qty * pct / 100) if market else p.qty * pct / 100
            if qty <= 0 or (market is not None and market.min_amount
                            and qty < market.min_amount):
                raise ValidationError(f"{pct:g} % is below the minimum order size",
                                      field="percent")
            return pct / 100, f"closes {fmt_qty(qty, market)} of {fmt_qty(p.qty, market)}"

        dlg = AmountDialog(f"Close part of {p.symbol}", "Close %", parse, self.win,
                           object_name="closePartDialog", ok_text="Close")
        dlg.chosen.connect(lambda f: self._send_partial(p.id, p.symbol, f))
        dlg.position_id = p.id
        self.win.dialog = dlg
        dlg.open()
        return dlg

    def add_to_position(self) -> AmountDialog | None:
        snap = self.win.selected_snapshot()
        if snap is None:
            self.win.notify("Add: no position selected")
            return None
        p = snap.position
        market = self.win.engine.market(p.symbol)
        base = (market.base if market is not None and market.base else p.symbol.split("/")[0])

        def parse(text: str) -> tuple[float, str]:
            qty = parse_number(text, "Quantity")
            if not qty > 0:
                raise ValidationError("enter a positive quantity", field="qty")
            if market is not None:
                qty = market.floor_amount(qty)
                if qty <= 0 or (market.min_amount and qty < market.min_amount):
                    raise ValidationError(f"below the minimum "
                                          f"{fmt_qty(market.min_amount, market)} {base}",
                                          field="qty")
            price = snap.mark if is_num(snap.mark) else p.entry
            new_qty = p.qty + qty
            avg = (p.entry * p.qty + price * qty) / new_qty
            margin = price * qty * p.contract_size / p.leverage
            return qty, (f"new size {fmt_qty(new_qty, market)} {base} · average entry ≈ "
                         f"{fmt_price(avg, market)} · margin +{margin:,.2f}")

        dlg = AmountDialog(f"Add to {p.symbol} {_side(p.side)}", f"Add ({base})", parse,
                           self.win, object_name="addDialog", ok_text="Add at market")

        def send(qty: float) -> None:
            def done(res: CommandResult | None, err: str | None) -> None:
                self.win.notify(f"✖ {p.symbol}: add failed: {err}" if err else
                            f"✔ {p.symbol}: add of {fmt_qty(qty, market)} sent")
            self.win.runner.submit(AddToPosition(p.id, qty), done, key=("add", p.id))

        dlg.chosen.connect(send)
        dlg.position_id = p.id
        self.win.dialog = dlg
        dlg.open()
        return dlg

    def reverse(self) -> None:
        snap = self.win.selected_snapshot()
        if snap is None:
            self.win.notify("Reverse: no position selected")
            return
        p = snap.position
        market = self.win.engine.market(p.symbol)
        other = Side.SHORT if p.side is Side.LONG else Side.LONG
        text = (f"Reverse {p.symbol}: close the {_side(p.side)} {fmt_qty(p.qty, market)} at "
                f"market, then open {_side(other)} {fmt_qty(p.qty, market)} at "
                f"{p.leverage:g}× (preset {p.preset}, no SL/TP until you set them or the "
                f"preset does).")
        self._ask_or_do("Reverse position", text, "Reverse",
                        lambda: self._send_reverse(p, other), "reverseConfirm", p.id)

    def _send_reverse(self, p: Position, other: Side) -> None:
        key = ("close", p.id)
        if self.win.runner.busy(key):
            return

        def opened(res: CommandResult | None, err: str | None) -> None:
            self.win.notify(f"✖ {p.symbol}: closed, but the reverse entry failed: {err}"
                        if err else f"✔ {p.symbol} reversed to {_side(other)}", alert=True)

        def closed(res: CommandResult | None, err: str | None) -> None:
            if err is not None:
                self.win.notify(f"✖ {p.symbol}: reverse stopped, close failed: {err}", alert=True)
                return
            self.win._closed_ok.add(p.id)
            self.win.runner.submit(
                OpenPosition(p.symbol, other, p.qty, p.leverage, preset=p.preset), opened)

        self.win.notify(f"Reversing {p.symbol}…")
        self.win.runner.submit(ClosePosition(p.id, 1.0, "manual"), closed, key=key)


def quit_text(exchange_id: str, market_for: Callable[[str], Market | None],
              snaps: list[PositionSnapshot]) -> str:
    """What quitting means for the open positions: what stays on the exchange, what stops."""
    protected, exposed = [], []
    for sn in snaps:
        p = sn.position
        m = market_for(p.symbol)
        levels = []
        if p.sl is not None:
            levels.append(f"SL {fmt_price(p.sl, m)}")
        if p.tp is not None:
            levels.append(f"TP {fmt_price(p.tp, m)}")
        line = f"• {p.symbol} {_side(p.side)} {fmt_qty(p.qty, m)}"
        if sn.protection.value == "on_exchange":
            protected.append(f"{line}: {' · '.join(levels)} stay on the exchange")
        else:
            why = ("NO stop at all" if p.sl is None
                   else "its stop is only guarded by pmgui, which stops")
            exposed.append(f"{line}: {why}")
    auto = [sn.position.symbol for sn in snaps if sn.position.automation]
    trailing = [sn.position.symbol for sn in snaps if sn.position.trailing is not None]
    parts = [f"{len(snaps)} position{'s' if len(snaps) != 1 else ''} stay open on "
             f"{exchange_id}."]
    if protected:
        parts.append("Protected on the exchange while pmgui is closed:\n"
                     + "\n".join(protected))
    if exposed:
        parts.append("NOT protected on the exchange:\n" + "\n".join(exposed))
    stops = ["the rules stop (breakeven, partial take-profits, add-ons, emergency caps)"
             + (f" for {', '.join(auto)}" if auto else "")]
    if trailing:
        stops.append(f"trailing stops stop following the price ({', '.join(trailing)}): "
                     f"their last level stays")
    parts.append("When pmgui quits: " + "; ".join(stops) + ".")
    return "\n\n".join(parts)
