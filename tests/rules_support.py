"""Builders shared by the rule tests: positions, markets and a tiny tick-by-tick driver."""

from __future__ import annotations

from dataclasses import replace

from pmgui.domain.enums import ActionType, Side, StopKind
from pmgui.domain.models import Action, Indicators, Market, MarketState, Position
from pmgui.rules.params import Params, resolve_params
from pmgui.rules.policy import evaluate, observe

MARKET = Market(symbol="BTC/USDT:USDT", tick_size=0.01, amount_step=0.001, min_amount=0.001)


def pos(side: Side = Side.LONG, entry: float = 100.0, qty: float = 1.0, leverage: float = 1.0,
        fee: float = 0.0, **kw: object) -> Position:
    base = {"id": "p1", "symbol": MARKET.symbol, "side": side, "qty": qty, "entry": entry,
            "leverage": leverage, "opened_at": 0.0, "initial_qty": qty, "fee_rate": fee}
    base.update(kw)
    return Position(**base)  # type: ignore[arg-type]


def mkt(price: float, ts: float = 1.0, market: Market = MARKET, **ind: float | None
        ) -> MarketState:
    return MarketState(symbol=market.symbol, price=price, ts=ts, market=market,
                       indicators=Indicators(**ind))  # type: ignore[arg-type]


def only(preset: str = "manual", **overrides: object) -> Params:
    """Params of a preset with overrides written as rule__param=value."""
    return resolve_params(preset, {k.replace("__", "."): v for k, v in overrides.items()})


def rules_only(*rules: str, **overrides: object) -> Params:
    """Exactly `rules` enabled (everything else off), plus overrides."""
    from pmgui.rules.params import RULE_IDS
    ov: dict[str, object] = {f"{r}.enabled": (r in rules) for r in RULE_IDS}
    ov.update({k.replace("__", "."): v for k, v in overrides.items()})
    return resolve_params("manual", ov)


def step(p: Position, price: float, params: Params, ts: float = 1.0, market: Market = MARKET,
         **ind: float | None) -> tuple[Position, list[Action]]:
    """observe → evaluate → apply (as the engine would, fills at the price)."""
    p = observe(p, price)
    acts = evaluate(p, mkt(price, ts, market, **ind), params)
    return apply(p, acts, ts), acts


def apply(p: Position, acts: list[Action], ts: float = 1.0) -> Position:
    for a in acts:
        if a.type is ActionType.MOVE_SL:
            kind = a.stop_kind or StopKind.MANUAL
            p = replace(p, sl=a.sl, sl_kind=kind,
                        trailing=a.sl if kind is StopKind.TRAILING else p.trailing)
        elif a.type is ActionType.MOVE_TP:
            p = replace(p, tp=a.tp)
        elif a.type is ActionType.REDUCE:
            assert a.qty is not None
            p = replace(p, qty=round(p.qty - a.qty, 9))
        elif a.type is ActionType.ADD:
            assert a.qty is not None
            p = replace(p, qty=round(p.qty + a.qty, 9))
        elif a.type is ActionType.CLOSE:
            from pmgui.domain.enums import PositionStatus
            p = replace(p, qty=0.0, status=PositionStatus.CLOSED, closed_at=ts,
                        exit_price=a.price, exit_reason=a.reason.value)
        p = replace(p, flags=p.flags | a.flags)
        if a.type in (ActionType.ADD, ActionType.CANCEL):
            # an add fills at once in this driver, a cancel withdraws it: nothing rests
            p = replace(p, flags=frozenset(f for f in p.flags
                                           if not f.startswith("add_on_open:")))
    return p
