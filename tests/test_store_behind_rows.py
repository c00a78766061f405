"""Level moves written behind store the very rows the synced path stores.

The write-behind path builds its rows its own way for speed (an action's inputs JSON from
the texts of the values it shares with the previous inputs of the same keys, positions'
changed columns grouped into one UPDATE per column set, the `_guard` of the two queueing
calls inline): the same sequence of level moves, written behind in chunks or saved and
recorded synced one at a time, must leave byte-identical `actions`, `positions` (but their
`updated_at`, the time of each call) and `tranches` rows.
"""

from __future__ import annotations

import json
import math
import random
from types import MappingProxyType

from pmgui.domain.enums import ActionType, PositionStatus, Reason, Side, StopKind
from pmgui.domain.models import Action, Position, Tranche, frozen_map
from pmgui.store import Store


def _positions(n: int) -> list[Position]:
    return [Position(
        id=f"S{i:04d}-{'long' if i % 2 == 0 else 'short'}-{i * 7919:x}",
        symbol=f"S{i // 2:04d}/USDT:USDT", side=Side.LONG if i % 2 == 0 else Side.SHORT,
        qty=1.0 + i, entry=100.0 + i, leverage=5.0, opened_at=1_700_000_000.0 + i,
        initial_qty=1.0 + i, sl=95.0 + i, tp=110.0 + i, initial_sl=95.0 + i,
        sl_kind=StopKind.INITIAL, status=PositionStatus.OPEN, preset="trend",
        overrides=frozen_map({"trailing.mode": "adaptive"}) if i % 3 == 0 else frozen_map({}),
        flags=frozenset({"tp1_done"}) if i % 4 == 0 else frozenset(),
        tranches=(Tranche(f"t{i}", 1.0 + i, 100.0 + i, 1_700_000_000.0 + i),),
        exchange="paper") for i in range(n)]


# a trailing rule's parameters: the same objects move after move (as the rules' templates)
_PARAMS = ({"mode": "adaptive", "timeframe": "4h", "base_distance": 0.02,
            "volatility": None, "volatility_mult": 1.0, "momentum": None, "min_distance": 0.004,
            "max_distance": 0.04, "enabled": True, "bars": 14},
           {"mode": "fixed", "timeframe": "1h", "base_distance": 0.015,
            "volatility": 0.0123, "volatility_mult": 1.5, "momentum": -0.0, "min_distance": 0.0,
            "max_distance": 0.03, "enabled": False, "bars": 7})


def _moves(positions: list[Position], count: int, seed: int) -> list[tuple[Position, Action]]:
    """A storm's level moves: new peaks, best prices and trailing levels, their log lines'
    inputs mixing the rule's parameters (shared objects) with the tick's values (new
    objects, some repeated, some equal to others, 0.0 and -0.0, the odd non-finite one, the
    odd other set of keys)."""
    rng = random.Random(seed)
    state = {p.id: p for p in positions}
    out = []
    last_price = 100.0
    for k in range(count):
        pos = state[positions[rng.randrange(len(positions))].id]
        price = last_price if rng.random() < 0.3 else round(100.0 + rng.uniform(-5, 5), 6)
        last_price = price
        level = pos.sl + rng.choice((0.001, 0.25, 1e-9, 3.5))
        changes: dict[str, object] = {"sl": level, "trailing": level, "best_price": price}
        if rng.random() < 0.5:
            changes["peak_roi"] = pos.peak_roi + rng.random()
        if rng.random() < 0.05:  # the odd move that changes the tranches too
            changes["tranches"] = (Tranche(f"t{k}", pos.qty, pos.entry, pos.opened_at,
                                           sl=level),)
        moved = pos.evolve(**changes)
        inputs = dict(_PARAMS[k % 7 == 0])
        inputs.update(price=price, roi=(price - pos.entry) / pos.entry,
                      peak=0.0 if k % 5 else -0.0, move=price - last_price,
                      distance=inputs["base_distance"], best_price=price, level=level,
                      previous_sl=pos.sl, tick=k)
        if k % 97 == 0:
            inputs["distance"] = math.inf  # stored as null
        if k % 89 == 0:
            inputs = {"price": price, "why": "other keys", "n": k}
        if k % 53 == 0:
            inputs["level"] = rng.choice((True, None, "x\u00e9\"", 3))
        action = Action(
            type=ActionType.MOVE_SL, reason=Reason.TRAILING, position_id=pos.id, price=price,
            sl=level, tp=pos.tp, rule="trailing", priority=7,
            ts=1_700_000_100.0 + k / 10, inputs=MappingProxyType(inputs),
            flags=frozenset({"moved"}) if k % 11 == 0 else frozenset(),
            stop_kind=StopKind.TRAILING)
        state[pos.id] = moved
        out.append((moved, action))
    return out


def _reference_json(inputs) -> str:
    """What the inputs column holds, by `json.dumps` itself (non-finite floats: null)."""
    clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v
             for k, v in inputs.items()}
    return json.dumps(clean, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _rows(store: Store) -> dict[str, list[tuple]]:
    conn = store.db.conn
    cur = conn.execute("SELECT * FROM positions ORDER BY id")
    names = [d[0] for d in cur.description]
    keep = [i for i, n in enumerate(names) if n != "updated_at"]
    return {
        "actions": conn.execute("SELECT * FROM actions ORDER BY id").fetchall(),
        "actions_types": conn.execute(
            "SELECT id, typeof(price), typeof(sl), typeof(inputs) FROM actions "
            "ORDER BY id").fetchall(),
        "positions": [tuple(r[i] for i in keep) for r in cur.fetchall()],
        "tranches": conn.execute(
            "SELECT * FROM tranches ORDER BY position_id, seq").fetchall(),
    }


def _both_paths(tmp_path, positions, moves, build_every: int, flush: bool):
    """The rows `moves` leave through the behind path (a chunk's lines built every
    `build_every` moves, and written there too with `flush`) and through the synced path."""
    behind, synced = Store.open(tmp_path / "behind.db"), Store.open(tmp_path / "synced.db")
    try:
        for s in (behind, synced):
            s.save_positions(positions)
        for i, (pos, action) in enumerate(moves):
            behind.record_action_behind(action, symbol=pos.symbol)
            behind.save_position_behind(pos)
            if i % build_every == build_every - 1:  # the tick path: lines built, then written
                behind.build_behind()
                if flush:
                    behind.flush_behind(1e-9)
            synced.record_action(action, symbol=pos.symbol)
            synced.save_position(pos)
        assert behind.behind > 0
        behind.flush_behind()
        assert behind.behind == 0
        return _rows(behind), _rows(synced)
    finally:
        behind.close()
        synced.close()


def test_level_moves_written_behind_store_the_rows_the_synced_path_stores(tmp_path):
    positions = _positions(40)
    moves = _moves(positions, 1500, seed=27)
    got, want = _both_paths(tmp_path, positions, moves, build_every=7, flush=True)
    assert len(want["actions"]) == len(moves)
    for table in want:
        assert got[table] == want[table], table
    # both paths share the row builders: the inputs text checked against json itself
    texts = [r[12] for r in want["actions"]]
    assert texts == [_reference_json(a.inputs) for _, a in moves]
    # the odd inputs took the general path: non-finite stored as null, other keys
    assert sum('"distance":null' in t for t in texts) >= 10
    assert sum('"why":"other keys"' in t for t in texts) >= 10
    assert sum('"momentum":-0.0' in t for t in texts) >= 10


def test_behind_rows_equal_when_built_after_every_move(tmp_path):
    """Each line built alone (the memo of the last inputs changes at every line)."""
    positions = _positions(3)
    moves = _moves(positions, 200, seed=5)
    got, want = _both_paths(tmp_path, positions, moves, build_every=1, flush=False)
    for table in want:
        assert got[table] == want[table], table
    assert [r[12] for r in got["actions"]] == [_reference_json(a.inputs) for _, a in moves]
