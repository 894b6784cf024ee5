from __future__ import annotations

import pytest

from voicebot.script.conversation import CustomerTurn, parse_typed_line
from voicebot.script.engine import CallerHangup, Dtmf, Heard, Silence


@pytest.mark.parametrize(
    "line,events",
    [
        ("yes", [Heard("yes")]),
        ("  hello there ", [Heard("hello there")]),
        ("", [Silence()]),
        ("/silence", [Silence()]),
        ("/dtmf 12#", [Dtmf("1"), Dtmf("2"), Dtmf("#")]),
        ("/hangup", [CallerHangup()]),
    ],
)
def test_typed_lines(line, events):
    assert parse_typed_line(line).events() == events


@pytest.mark.parametrize("line", ["/dtmf", "/dtmf 1a", "/jump"])
def test_bad_typed_lines(line):
    with pytest.raises(ValueError):
        parse_typed_line(line)


def test_describe():
    assert CustomerTurn(text="hi", confidence=0.4).describe() == '"hi" (confidence 0.4)'
    assert CustomerTurn(dtmf="1").describe() == "(presses 1)"
