"""`pmgui replay --help` describes every option and lists the presets."""

from __future__ import annotations

import argparse

from pmgui.cli import build_parser
from pmgui.rules.presets import PRESETS


def test_replay_help_describes_every_option_and_lists_the_presets(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    replay = sub.choices["replay"]
    for action in replay._actions:
        assert action.help, f"{action.option_strings or action.dest} has no description"
    text = replay.format_help()
    assert "presets:" in text
    for name in PRESETS:
        assert f"\n  {name} " in text
    assert all(len(line) <= 80 for line in text.splitlines())
